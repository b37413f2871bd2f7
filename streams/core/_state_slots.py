"""The state kernel's arrays: one fixed-size int64 slot per customer, and a batch's event rows.

A batch's customers are loaded into an *arena*: one int64 row per customer (a *slot*, laid out by
:class:`Layout` from the state config) and four float64 cells beside it; a batch's events are rows
of int64 and float64 columns (``E_*``, ``T_*``). The codec (:mod:`streams.core._state_codec`)
fills and empties slots, the event kernels (:mod:`streams.core._state_kernel`,
:mod:`streams.core._loan_kernel`) change them. Hashes (unsigned 64-bit in the state) are stored
minus ``2**63``, which keeps their order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from streams.core.state import (
    _MAX_PAYERS,
    _ROW_LEN,
    StateConfig,
)

#: every name: the kernel modules read the layout by name (``from ... import *``)
__all__ = [
    "AGGREGATE_OVERFLOW",
    "APPLIED",
    "DECLINED",
    "DUPLICATE",
    "EV_FIELDS",
    "E_AMT",
    "E_BAL",
    "E_DUE",
    "E_FIRM",
    "E_GUAR",
    "E_H",
    "E_KIND",
    "E_LOAN",
    "E_PAYER",
    "E_PRINCIPAL",
    "E_RATE",
    "E_RCAT",
    "E_RDPD",
    "E_REF",
    "E_REPAY",
    "E_ROWED",
    "E_SCHED0",
    "E_SCHED_N",
    "E_SEQ",
    "E_SLOT",
    "F_FLOOR",
    "F_HOLDING",
    "F_LAST",
    "F_YEARS",
    "H_BAL",
    "H_BAL_T",
    "H_BOUNCED_DAY",
    "H_BOUNCED_N",
    "H_FOLD_DAY",
    "H_LAST_CREDIT",
    "H_NIDS",
    "H_NL",
    "H_NM",
    "H_NPAY",
    "H_PROFILE_T",
    "K_BOUNCED",
    "K_CHANGED",
    "K_CLOSED",
    "K_CREDIT",
    "K_DEBIT",
    "K_DUE",
    "K_LINE",
    "K_OPENED",
    "K_PAY",
    "K_REVERSAL",
    "K_STATUS",
    "L_BASE_SEQ",
    "L_CLOSED",
    "L_CONSEC",
    "L_F_DAY",
    "L_GUAR",
    "L_H",
    "L_LAST30",
    "L_METH_T",
    "L_N",
    "L_ND",
    "L_NPEND",
    "L_NREP",
    "L_OPENED",
    "L_PAID",
    "L_PRINCIPAL",
    "L_RATE",
    "L_RATE0",
    "L_RATE_T",
    "L_REPAY",
    "L_R_CAT",
    "L_R_DAY",
    "L_R_DUE",
    "L_R_OWED",
    "L_R_PAID",
    "L_SCHED_T",
    "L_SHORT",
    "L_S_N",
    "L_S_U",
    "L_U",
    "NONE",
    "TOO_LATE",
    "T_HOLDING",
    "T_TIME",
    "T_YEARS",
    "Y_IDS",
    "Y_IDT",
    "Y_ID_CAP",
    "Y_LOANS",
    "Y_LOAN_CAP",
    "Y_LOAN_LEN",
    "Y_MONTHS",
    "Y_MONTH_CAP",
    "Y_PAY",
    "Y_PEND_CAP",
    "Y_REP_CAP",
    "Y_SCHED_CAP",
    "Y_SLOT",
    "_DAY",
    "_HDR",
    "_H_OFFSET",
    "_LHDR",
    "_LOAN_LIMIT",
    "_NONE",
    "_OK",
    "_PACKED_LHDR",
    "_R",
    "_REP",
    "Layout",
    "_bisect_left",
    "_bisect_right",
    "_day_of",
    "_find_row",
    "_insert_row",
]

# outcomes (APPLIED .. AGGREGATE_OVERFLOW mirror state.Outcome; an unknown loan declines)
APPLIED, DUPLICATE, TOO_LATE, AGGREGATE_OVERFLOW, DECLINED = range(5)
_OK = -1  # internal: the event's own part went through

# event kinds
K_CREDIT, K_DEBIT, K_BOUNCED, K_DUE, K_PAY, K_REVERSAL, K_OPENED, K_CHANGED, K_CLOSED = range(9)
K_STATUS = 9  # the lender's delinquency status of a loan
K_LINE = 10  # a credit line's contract, draw or statement: the kernel declines it
# int64 event columns
(E_SLOT, E_KIND, E_H, E_LOAN, E_AMT, E_BAL, E_PAYER, E_SEQ, E_DUE, E_REF) = range(10)
(E_PRINCIPAL, E_RATE, E_REPAY, E_GUAR, E_SCHED0, E_SCHED_N, E_FIRM) = range(10, 17)
EV_FIELDS = 17
# a status's figures, in columns its kind does not otherwise use: days past due, owed cents
# (-1 unknown), five-category class (-1 none)
E_RDPD, E_ROWED, E_RCAT = E_SEQ, E_DUE, E_REF
_NONE = -(1 << 62)  # "absent" for optional int columns (balance, rate, payer, methods)
NONE = _NONE  # (public: the intake kernel writes it too)
# float64 event columns
T_TIME, T_YEARS, T_HOLDING = range(3)

# slot header
(H_NIDS, H_NM, H_NL, H_NPAY, H_BAL, H_BAL_T, H_LAST_CREDIT) = range(7)
(H_BOUNCED_DAY, H_BOUNCED_N, H_PROFILE_T, H_FOLD_DAY) = range(7, 11)
_HDR = 11
# float cells
F_LAST, F_FLOOR, F_YEARS, F_HOLDING = range(4)
# loan header: the first 24 as the feature kernel's packed loans, then what only apply needs
(L_OPENED, L_CLOSED, L_RATE0, L_RATE, L_REPAY, L_GUAR, L_H, L_SHORT) = range(8)
(L_F_DAY, L_PAID, L_U, L_S_U, L_N, L_S_N, L_CONSEC, L_LAST30, L_ND, L_NPEND) = range(8, 18)
# the lender's reports (state.Report): the cursor (day -1: none in force), pending reports
(L_R_DAY, L_R_DUE, L_R_OWED, L_R_PAID, L_R_CAT, L_NREP) = range(18, 24)
(L_PRINCIPAL, L_RATE_T, L_METH_T, L_SCHED_T, L_BASE_SEQ) = range(24, 29)
_LHDR = 29
_PACKED_LHDR = 24  # features_kernel._LOAN
_REP = 6  # a pending report in a slot: (day, whole-second time, id hash, dpd, owed, class)
_H_OFFSET = 1 << 63
_LOAN_LIMIT = 1 << 60  # a loan sum beyond this: decline (the reference has unbounded ints)
_DAY = 86400.0
_R = _ROW_LEN

# layout vector indices (what the kernel reads of Layout)
(Y_IDS, Y_IDT, Y_ID_CAP, Y_MONTHS, Y_MONTH_CAP, Y_PAY, Y_LOANS, Y_LOAN_CAP) = range(8)
(Y_LOAN_LEN, Y_SCHED_CAP, Y_PEND_CAP, Y_SLOT, Y_REP_CAP) = range(8, 13)


@dataclass(frozen=True)
class Layout:
    """Where each part of a slot lives, from the state config (capacities: one more id and one
    more loan than the state keeps between events, as ``apply`` holds them for a moment)."""

    cfg: StateConfig
    month_cap: int = 16
    sched_cap: int = 64
    pend_cap: int = 16
    rep_cap: int = 16  # pending reports per loan (one per day, within ~2 lateness bounds)

    @property
    def vector(self) -> np.ndarray:
        id_cap = self.cfg.max_recent_ids + 1
        ids = _HDR
        idt = ids + id_cap
        months = idt + id_cap
        pay = months + self.month_cap * _R
        loans = pay + _MAX_PAYERS
        loan_cap = self.cfg.max_loans + 1
        loan_len = _LHDR + 2 * self.sched_cap + 4 * self.pend_cap + _REP * self.rep_cap
        slot = loans + loan_cap * loan_len
        v = (ids, idt, id_cap, months, self.month_cap, pay, loans, loan_cap, loan_len)
        caps = (self.sched_cap, self.pend_cap, slot, self.rep_cap)
        return np.array((*v, *caps), dtype=np.int64)


# -- small helpers (CPython's bisect, so unsorted inputs give the reference's answer too) ------
@njit(nogil=True, cache=True)
def _bisect_left(a: np.ndarray, lo: int, hi: int, x: int) -> int:
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(nogil=True, cache=True)
def _bisect_right(a: np.ndarray, lo: int, hi: int, x: float) -> int:
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(nogil=True, cache=True)
def _day_of(t: float) -> int:
    return int(t // _DAY)


@njit(nogil=True, cache=True)
def _find_row(s: np.ndarray, om: int, month: int) -> int:
    """Row index of ``month`` (rows sorted, newest last), or -1."""
    for k in range(s[H_NM] - 1, -1, -1):
        m = s[om + k * _R]
        if m == month:
            return k
        if m < month:
            break
    return -1


@njit(nogil=True, cache=True)
def _insert_row(s: np.ndarray, om: int, cap: int, month: int) -> int:
    """Insert an empty row for ``month`` in order; its index, or -1 if the slot is full."""
    nm = s[H_NM]
    if nm >= cap:
        return -1
    k = nm
    while k > 0 and s[om + (k - 1) * _R] > month:
        k -= 1
    for j in range(nm * _R - 1, k * _R - 1, -1):
        s[om + j + _R] = s[om + j]
    r = om + k * _R
    for j in range(_R):
        s[r + j] = 0
    s[r] = month
    s[H_NM] = nm + 1
    return k
