"""The numba twin of ``CustomerState.apply``: a whole batch of events in one call.

A batch's customers are loaded into an *arena*: one fixed-size int64 row per customer (a slot,
layout in :class:`Layout`) and four float64 cells beside it, straight from their stored state
bytes (:func:`load`: a numba reader of the msgpack ``CustomerState.to_bytes`` writes).
:func:`apply_many` walks the batch's events (:class:`EventColumns`) in arrival order, applies each
to its customer's slot exactly as :meth:`~streams.core.state.CustomerState.apply` would (dedupe,
lateness, transactions, repayments and reversals, loan events, weekly folds) and, after every
applied event, writes the customer's feature row at the new watermark through
:func:`streams.core._features_kernel.fill_packed` (the slot is copied into the packed layout first).
:func:`save` writes the slots back as the bytes msgspec would write for the reference's state.

The Python state stays the reference and the fallback: ``tests/unit/test_state_kernel.py`` holds
the two to equal state bytes, outcomes and feature rows on random histories. Whatever the kernel
cannot reproduce exactly it *declines*: a state that does not fit a slot (too many ids, months,
loans, instalments or pending payments; an int beyond int64) is not loaded, and an event that would
overflow a slot, a repayment for a loan the state does not know (the pipeline parks those), a loan
sum drifting near the int64 range or a feature row the feature kernel declines marks the customer
*declined* from that event on (:data:`DECLINED`): the pipeline then runs that customer's whole batch
through the Python path, from its untouched stored state.

Hashes (unsigned 64-bit in the state) are stored minus ``2**63``, which keeps their order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b as _blake2b
from typing import Protocol

import msgspec
import numpy as np
from numba import njit

from schemas.events import (
    GUARANTEE_METHODS,
    REPAYMENT_METHODS,
    InputEvent,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)
from streams.core._features_kernel import _advance, fill_packed, month_of_day
from streams.core.delinquency import day_of_date
from streams.core.features import FEATURES
from streams.core.state import (
    _I64_MAX,
    _MAX_PAYERS,
    _ROW_LEN,
    _SHORT_BITS,
    _SUM_LIMIT,
    _WINDOW_MONTHS,
    BAL_MIN,
    BAL_N,
    BAL_SUM,
    BOUNCED,
    DPD_MAX,
    INFLOW,
    LATE,
    PREDUE_SHORT,
    CustomerState,
    Loan,
    StateConfig,
    _cents,
    _hash,
)

__all__ = [
    "AGGREGATE_OVERFLOW",
    "APPLIED",
    "DECLINED",
    "DUPLICATE",
    "EV_FIELDS",
    "TOO_LATE",
    "Applied",
    "EventColumns",
    "Layout",
    "apply_batch",
    "apply_many",
    "decode_many",
    "encode_many",
    "load",
    "save",
]

# outcomes (APPLIED .. AGGREGATE_OVERFLOW mirror state.Outcome; an unknown loan declines)
APPLIED, DUPLICATE, TOO_LATE, AGGREGATE_OVERFLOW, DECLINED = range(5)
_OK = -1  # internal: the event's own part went through

# event kinds
K_CREDIT, K_DEBIT, K_BOUNCED, K_DUE, K_PAY, K_REVERSAL, K_OPENED, K_CHANGED, K_CLOSED = range(9)
# int64 event columns
(E_SLOT, E_KIND, E_H, E_LOAN, E_AMT, E_BAL, E_PAYER, E_SEQ, E_DUE, E_REF) = range(10)
(E_PRINCIPAL, E_RATE, E_REPAY, E_GUAR, E_SCHED0, E_SCHED_N, E_FIRM) = range(10, 17)
EV_FIELDS = 17
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
# loan header: the first 18 as the feature kernel's packed loans, then what only apply needs
(L_OPENED, L_CLOSED, L_RATE0, L_RATE, L_REPAY, L_GUAR, L_H, L_SHORT) = range(8)
(L_F_DAY, L_PAID, L_U, L_S_U, L_N, L_S_N, L_CONSEC, L_LAST30, L_ND, L_NPEND) = range(8, 18)
(L_PRINCIPAL, L_RATE_T, L_METH_T, L_SCHED_T, L_BASE_SEQ) = range(18, 23)
_LHDR = 23
_PACKED_LHDR = 18  # features_kernel._LOAN
_H_OFFSET = 1 << 63
_LOAN_LIMIT = 1 << 60  # a loan sum beyond this: decline (the reference has unbounded ints)
_DAY = 86400.0
_R = _ROW_LEN

# layout vector indices (what the kernel reads of Layout)
(Y_IDS, Y_IDT, Y_ID_CAP, Y_MONTHS, Y_MONTH_CAP, Y_PAY, Y_LOANS, Y_LOAN_CAP) = range(8)
(Y_LOAN_LEN, Y_SCHED_CAP, Y_PEND_CAP, Y_SLOT) = range(8, 12)


@dataclass(frozen=True)
class Layout:
    """Where each part of a slot lives, from the state config (capacities: one more id and one
    more loan than the state keeps between events, as ``apply`` holds them for a moment)."""

    cfg: StateConfig
    month_cap: int = 16
    sched_cap: int = 64
    pend_cap: int = 16

    @property
    def vector(self) -> np.ndarray:
        id_cap = self.cfg.max_recent_ids + 1
        ids = _HDR
        idt = ids + id_cap
        months = idt + id_cap
        pay = months + self.month_cap * _R
        loans = pay + _MAX_PAYERS
        loan_cap = self.cfg.max_loans + 1
        loan_len = _LHDR + 2 * self.sched_cap + 4 * self.pend_cap
        slot = loans + loan_cap * loan_len
        v = (ids, idt, id_cap, months, self.month_cap, pay, loans, loan_cap, loan_len)
        return np.array((*v, self.sched_cap, self.pend_cap, slot), dtype=np.int64)


# -- state bytes <-> slots ------------------------------------------------------------------------
# A slot is filled straight from a state's stored bytes (version byte + msgspec msgpack of the
# array-like CustomerState) and written back as the same bytes msgspec would write, so a customer
# on the kernel path never becomes Python objects: decoding and re-encoding those cost ~30 us
# per customer and batch, more than the kernel's whole work on its events.
_SIGN = -(1 << 63)  # xor with it: unsigned hash bits <-> the slot's offset hash
# array lengths of the msgspec array_like structs (a field added to either makes every state
# decline here and the writer's bytes differ: tests/unit/test_state_kernel.py fails loudly)
_STATE_FIELDS = len(CustomerState.__struct_fields__)
_LOAN_FIELDS = len(Loan.__struct_fields__)


@njit(nogil=True, cache=True)
def _rd_int(b: np.ndarray, pos: np.ndarray) -> int:
    """A msgpack int at ``b[pos[0]]``; sets ``pos[1]`` (error) on another type or a uint64
    beyond int64 (a hash is read with :func:`_rd_hash`)."""
    p = pos[0]
    if p >= len(b):
        pos[1] = 1
        return 0
    c = b[p]
    if c < 0x80:
        pos[0] = p + 1
        return c
    if c >= 0xE0:
        pos[0] = p + 1
        return c - 256
    n = 0
    signed = False
    if c == 0xCC or c == 0xD0:
        n = 1
    elif c == 0xCD or c == 0xD1:
        n = 2
    elif c == 0xCE or c == 0xD2:
        n = 4
    elif c == 0xCF or c == 0xD3:
        n = 8
    else:
        pos[1] = 1
        return 0
    signed = c >= 0xD0
    if p + 1 + n > len(b):
        pos[1] = 1
        return 0
    v = 0
    for j in range(n):
        v = (v << 8) | b[p + 1 + j]
    pos[0] = p + 1 + n
    if signed and n < 8 and v >= 1 << (8 * n - 1):
        v -= 1 << (8 * n)
    elif not signed and n == 8 and v < 0:
        pos[1] = 1  # beyond int64
    return v


@njit(nogil=True, cache=True)
def _rd_hash(b: np.ndarray, pos: np.ndarray) -> int:
    """A msgpack unsigned 64-bit hash, returned offset (minus 2**63) as the slot keeps it."""
    p = pos[0]
    if p >= len(b):
        pos[1] = 1
        return 0
    c = b[p]
    if c == 0xCF:
        if p + 9 > len(b):
            pos[1] = 1
            return 0
        v = 0
        for j in range(8):
            v = (v << 8) | b[p + 1 + j]
        pos[0] = p + 9
        return v ^ _SIGN
    v = _rd_int(b, pos)
    if v < 0:
        pos[1] = 1
    return v ^ _SIGN


@njit(nogil=True, cache=True)
def _rd_array(b: np.ndarray, pos: np.ndarray) -> int:
    p = pos[0]
    if p >= len(b):
        pos[1] = 1
        return 0
    c = b[p]
    if 0x90 <= c <= 0x9F:
        pos[0] = p + 1
        return c - 0x90
    if c == 0xDC and p + 3 <= len(b):
        pos[0] = p + 3
        return (b[p + 1] << 8) | b[p + 2]
    pos[1] = 1
    return 0


@njit(nogil=True, cache=True)
def _rd_float(b: np.ndarray, pos: np.ndarray, scratch: np.ndarray) -> float:
    p = pos[0]
    if p + 9 > len(b) or b[p] != 0xCB:
        pos[1] = 1
        return 0.0
    v = 0
    for j in range(8):
        v = (v << 8) | b[p + 1 + j]
    pos[0] = p + 9
    scratch[0] = v
    return scratch.view(np.float64)[0]


@njit(nogil=True, cache=True)
def _rd_ints(b: np.ndarray, pos: np.ndarray, s: np.ndarray, o: int, n: int, hashed: bool) -> None:
    for j in range(n):
        s[o + j] = _rd_hash(b, pos) if hashed else _rd_int(b, pos)


@njit(nogil=True, cache=True)
def _decode(b: np.ndarray, s: np.ndarray, f: np.ndarray, lay: np.ndarray) -> bool:
    """One state's bytes into slot ``s`` and cells ``f``; False if they are not a version-2
    state that fits a slot (the Python path then reads them, with its own clear errors)."""
    pos = np.zeros(2, np.int64)
    scratch = np.empty(1, np.int64)
    if len(b) < 4 or b[0] != 2:
        return False
    pos[0] = 1
    if _rd_array(b, pos) != _STATE_FIELDS:
        return False
    p = pos[0]  # customer_id: skipped (the caller knows it)
    if p + 3 > len(b):
        return False
    c = b[p]
    if 0xA0 <= c <= 0xBF:
        pos[0] = p + 1 + (c - 0xA0)
    elif c == 0xD9:
        pos[0] = p + 2 + b[p + 1]
    elif c == 0xDA:
        pos[0] = p + 3 + ((b[p + 1] << 8) | b[p + 2])
    else:
        return False
    f[F_LAST] = _rd_float(b, pos, scratch)
    f[F_FLOOR] = _rd_float(b, pos, scratch)
    s[H_FOLD_DAY] = _rd_int(b, pos)
    nid = _rd_array(b, pos)
    if nid >= lay[Y_ID_CAP]:
        return False
    s[H_NIDS] = nid
    _rd_ints(b, pos, s, lay[Y_IDS], nid, True)
    if _rd_array(b, pos) != nid:
        return False
    _rd_ints(b, pos, s, lay[Y_IDT], nid, False)
    nl = _rd_array(b, pos)
    if nl >= lay[Y_LOAN_CAP]:
        return False
    s[H_NL] = nl
    sched_cap = lay[Y_SCHED_CAP]
    base = lay[Y_LOANS]
    for _ in range(nl):
        if _rd_array(b, pos) != _LOAN_FIELDS:
            return False
        s[base + L_H] = _rd_hash(b, pos)
        for fld in (L_OPENED, L_CLOSED, L_PRINCIPAL, L_RATE0, L_RATE, L_RATE_T, L_REPAY):
            s[base + fld] = _rd_int(b, pos)
        for fld in (L_GUAR, L_METH_T, L_SCHED_T, L_BASE_SEQ):
            s[base + fld] = _rd_int(b, pos)
        nd = _rd_array(b, pos)
        if nd > sched_cap:
            return False
        s[base + L_ND] = nd
        d0 = base + _LHDR
        _rd_ints(b, pos, s, d0, nd, False)
        if _rd_array(b, pos) != nd:
            return False
        _rd_ints(b, pos, s, d0 + sched_cap, nd, False)
        for fld in (L_SHORT, L_F_DAY, L_PAID, L_U, L_S_U, L_N, L_S_N, L_CONSEC, L_LAST30):
            s[base + fld] = _rd_int(b, pos)
        npend = _rd_array(b, pos)
        if npend > lay[Y_PEND_CAP]:
            return False
        s[base + L_NPEND] = npend
        p0 = d0 + 2 * sched_cap
        for j in range(npend):
            if _rd_array(b, pos) != 4:
                return False
            q = p0 + 4 * j
            s[q] = _rd_int(b, pos)
            s[q + 1] = _rd_hash(b, pos)
            s[q + 2] = _rd_int(b, pos)
            s[q + 3] = _rd_hash(b, pos)
        base += lay[Y_LOAN_LEN]
    nv = _rd_array(b, pos)
    if nv % _R or nv // _R > lay[Y_MONTH_CAP]:
        return False
    s[H_NM] = nv // _R
    _rd_ints(b, pos, s, lay[Y_MONTHS], nv, False)
    for fld in (H_BAL, H_BAL_T, H_LAST_CREDIT, H_BOUNCED_DAY, H_BOUNCED_N):
        s[fld] = _rd_int(b, pos)
    npay = _rd_array(b, pos)
    if npay > _MAX_PAYERS:
        return False
    s[H_NPAY] = npay
    _rd_ints(b, pos, s, lay[Y_PAY], npay, False)
    f[F_YEARS] = _rd_float(b, pos, scratch)
    f[F_HOLDING] = _rd_float(b, pos, scratch)
    s[H_PROFILE_T] = _rd_int(b, pos)
    return pos[1] == 0 and pos[0] == len(b)


@njit(nogil=True, cache=True)
def decode_many(
    buf: np.ndarray, starts: np.ndarray, arena: np.ndarray, floats: np.ndarray, lay: np.ndarray
) -> np.ndarray:
    """Slot ``k`` from ``buf[starts[k]:starts[k + 1]]``; the slots declined (not taken)."""
    n = len(starts) - 1
    declined = np.zeros(n, np.bool_)
    for k in range(n):
        declined[k] = not _decode(buf[starts[k] : starts[k + 1]], arena[k], floats[k], lay)
    return declined


@njit(nogil=True, cache=True)
def _wr_int(out: np.ndarray, p: int, x: int) -> int:
    """msgspec's msgpack int: the shortest form, unsigned forms for x >= 0."""
    if x >= 0:
        if x < 0x80:
            out[p] = x
            return p + 1
        if x <= 0xFF:
            out[p] = 0xCC
            n = 1
        elif x <= 0xFFFF:
            out[p] = 0xCD
            n = 2
        elif x <= 0xFFFFFFFF:
            out[p] = 0xCE
            n = 4
        else:
            out[p] = 0xCF
            n = 8
    else:
        if x >= -32:
            out[p] = x + 256
            return p + 1
        if x >= -0x80:
            out[p] = 0xD0
            n = 1
        elif x >= -0x8000:
            out[p] = 0xD1
            n = 2
        elif x >= -0x80000000:
            out[p] = 0xD2
            n = 4
        else:
            out[p] = 0xD3
            n = 8
    for j in range(n):
        out[p + n - j] = (x >> (8 * j)) & 0xFF
    return p + 1 + n


@njit(nogil=True, cache=True)
def _wr_hash(out: np.ndarray, p: int, x: int) -> int:
    """An offset hash as msgspec writes the unsigned value."""
    if x <= _SIGN + 0xFFFFFFFF:  # the value fits 32 bits: the int forms are the same
        return _wr_int(out, p, x ^ _SIGN)
    v = x ^ _SIGN
    out[p] = 0xCF
    for j in range(8):
        out[p + 8 - j] = (v >> (8 * j)) & 0xFF
    return p + 9


@njit(nogil=True, cache=True)
def _wr_array(out: np.ndarray, p: int, n: int) -> int:
    if n < 16:
        out[p] = 0x90 + n
        return p + 1
    out[p] = 0xDC
    out[p + 1] = n >> 8
    out[p + 2] = n & 0xFF
    return p + 3


@njit(nogil=True, cache=True)
def _wr_float(out: np.ndarray, p: int, x: float, scratch: np.ndarray) -> int:
    scratch[0] = x
    v = scratch.view(np.int64)[0]
    out[p] = 0xCB
    for j in range(8):
        out[p + 8 - j] = (v >> (8 * j)) & 0xFF
    return p + 9


@njit(nogil=True, cache=True)
def _wr_ints(out: np.ndarray, p: int, s: np.ndarray, o: int, n: int, hashed: bool) -> int:
    p = _wr_array(out, p, n)
    for j in range(n):
        p = _wr_hash(out, p, s[o + j]) if hashed else _wr_int(out, p, s[o + j])
    return p


@njit(nogil=True, cache=True)
def encode_many(
    arena: np.ndarray,
    floats: np.ndarray,
    lay: np.ndarray,
    which: np.ndarray,
    cids: np.ndarray,
    cid_starts: np.ndarray,
    out: np.ndarray,
    starts: np.ndarray,
) -> None:
    """The state bytes of slots ``which`` (``CustomerState.to_bytes`` exactly) into ``out``:
    slot ``which[j]``'s at ``out[starts[j]:starts[j + 1]]``; its customer id, msgpack-encoded,
    is ``cids[cid_starts[j]:cid_starts[j + 1]]``."""
    scratch = np.empty(1, np.float64)
    sched_cap = lay[Y_SCHED_CAP]
    p = 0
    for j in range(len(which)):
        starts[j] = p
        s = arena[which[j]]
        f = floats[which[j]]
        out[p] = 2  # STATE_VERSION
        p = _wr_array(out, p + 1, _STATE_FIELDS)
        for q in range(cid_starts[j], cid_starts[j + 1]):
            out[p] = cids[q]
            p += 1
        p = _wr_float(out, p, f[F_LAST], scratch)
        p = _wr_float(out, p, f[F_FLOOR], scratch)
        p = _wr_int(out, p, s[H_FOLD_DAY])
        nid = s[H_NIDS]
        p = _wr_ints(out, p, s, lay[Y_IDS], nid, True)
        p = _wr_ints(out, p, s, lay[Y_IDT], nid, False)
        p = _wr_array(out, p, s[H_NL])
        base = lay[Y_LOANS]
        for _ in range(s[H_NL]):
            p = _wr_array(out, p, _LOAN_FIELDS)
            p = _wr_hash(out, p, s[base + L_H])
            for fld in (L_OPENED, L_CLOSED, L_PRINCIPAL, L_RATE0, L_RATE, L_RATE_T, L_REPAY):
                p = _wr_int(out, p, s[base + fld])
            for fld in (L_GUAR, L_METH_T, L_SCHED_T, L_BASE_SEQ):
                p = _wr_int(out, p, s[base + fld])
            nd = s[base + L_ND]
            d0 = base + _LHDR
            p = _wr_ints(out, p, s, d0, nd, False)
            p = _wr_ints(out, p, s, d0 + sched_cap, nd, False)
            for fld in (L_SHORT, L_F_DAY, L_PAID, L_U, L_S_U, L_N, L_S_N, L_CONSEC, L_LAST30):
                p = _wr_int(out, p, s[base + fld])
            npend = s[base + L_NPEND]
            p = _wr_array(out, p, npend)
            p0 = d0 + 2 * sched_cap
            for k in range(npend):
                q = p0 + 4 * k
                p = _wr_array(out, p, 4)
                p = _wr_int(out, p, s[q])
                p = _wr_hash(out, p, s[q + 1])
                p = _wr_int(out, p, s[q + 2])
                p = _wr_hash(out, p, s[q + 3])
            base += lay[Y_LOAN_LEN]
        p = _wr_ints(out, p, s, lay[Y_MONTHS], s[H_NM] * _R, False)
        for fld in (H_BAL, H_BAL_T, H_LAST_CREDIT, H_BOUNCED_DAY, H_BOUNCED_N):
            p = _wr_int(out, p, s[fld])
        p = _wr_ints(out, p, s, lay[Y_PAY], s[H_NPAY], False)
        p = _wr_float(out, p, f[F_YEARS], scratch)
        p = _wr_float(out, p, f[F_HOLDING], scratch)
        p = _wr_int(out, p, s[H_PROFILE_T])
    starts[len(which)] = p


def load(blobs: list[bytes], lay: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An arena holding the states whose bytes (``CustomerState.to_bytes``) are ``blobs``,
    slot ``k`` = ``blobs[k]``: (slots, float cells, declined). Bytes the decoder does not take
    (not version 2, beyond a slot's capacity or int64, not a state at all) are declined: that
    customer takes the Python path, which reads them with its own checks and errors."""
    n = len(blobs)
    starts = np.zeros(n + 1, np.int64)
    starts[1:] = np.cumsum([len(b) for b in blobs])
    buf = np.frombuffer(b"".join(blobs), np.uint8)
    arena = np.empty((n, lay[Y_SLOT]), np.int64)
    floats = np.empty((n, 4), np.float64)
    declined = decode_many(buf, starts, arena, floats, lay)
    return arena, floats, declined


def save(
    lay: np.ndarray, arena: np.ndarray, floats: np.ndarray, which: list[int], cids: list[str]
) -> list[bytes]:
    """The state bytes of the slots ``which`` (customer ids ``cids``), as
    ``CustomerState.to_bytes`` writes them."""
    if not which:
        return []
    enc = [_cid_encoder.encode(c) for c in cids]
    cid_starts = np.zeros(len(enc) + 1, np.int64)
    cid_starts[1:] = np.cumsum([len(c) for c in enc])
    # worst case: every int 9 bytes, headers 3
    out = np.empty(len(which) * (9 * int(lay[Y_SLOT]) + 64) + int(cid_starts[-1]), np.uint8)
    starts = np.empty(len(which) + 1, np.int64)
    encode_many(
        arena,
        floats,
        lay,
        np.array(which, dtype=np.int64),
        np.frombuffer(b"".join(enc), np.uint8),
        cid_starts,
        out,
        starts,
    )
    raw = out[: starts[-1]].tobytes()
    ends = starts.tolist()
    return [raw[ends[j] : ends[j + 1]] for j in range(len(which))]


_cid_encoder = msgspec.msgpack.Encoder()


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


@njit(nogil=True, cache=True)
def _pend_less(s: np.ndarray, p: int, d: int, h: int, c: int, r: int) -> bool:
    """Whether the new pending entry (d, h, c, r) sorts before the one at ``s[p:]``."""
    if d != s[p]:
        return d < s[p]
    if h != s[p + 1]:
        return h < s[p + 1]
    if c != s[p + 2]:
        return c < s[p + 2]
    return r < s[p + 3]


@njit(nogil=True, cache=True)
def _pend_insort(s: np.ndarray, lay: np.ndarray, base: int, d: int, h: int, c: int, r: int) -> bool:
    """``insort(pending, (d, h, c, r))``; False if the loan's pending list is full."""
    npend = s[base + L_NPEND]
    if npend >= lay[Y_PEND_CAP]:
        return False
    p0 = base + _LHDR + 2 * lay[Y_SCHED_CAP]
    lo = 0
    hi = npend
    while lo < hi:  # bisect_right
        mid = (lo + hi) // 2
        if _pend_less(s, p0 + 4 * mid, d, h, c, r):
            hi = mid
        else:
            lo = mid + 1
    for j in range(4 * npend - 1, 4 * lo - 1, -1):
        s[p0 + j + 4] = s[p0 + j]
    q = p0 + 4 * lo
    s[q] = d
    s[q + 1] = h
    s[q + 2] = c
    s[q + 3] = r
    s[base + L_NPEND] = npend + 1
    return True


@njit(nogil=True, cache=True)
def _pend_del(s: np.ndarray, lay: np.ndarray, base: int, k: int, count: int) -> None:
    """``del pending[k : k + count]``."""
    npend = s[base + L_NPEND]
    p0 = base + _LHDR + 2 * lay[Y_SCHED_CAP]
    for j in range(4 * k, 4 * (npend - count)):
        s[p0 + j] = s[p0 + j + 4 * count]
    s[base + L_NPEND] = npend - count


@njit(nogil=True, cache=True)
def _find_loan(s: np.ndarray, lay: np.ndarray, h: int) -> int:
    base = lay[Y_LOANS]
    for _ in range(s[H_NL]):
        if s[base + L_H] == h:
            return base
        base += lay[Y_LOAN_LEN]
    return -1


@njit(nogil=True, cache=True)
def _reset_cursor(s: np.ndarray, lay: np.ndarray, base: int) -> None:
    """``Loan.reset_cursor``."""
    nd = s[base + L_ND]
    d0 = base + _LHDR
    a0 = d0 + lay[Y_SCHED_CAP]
    paid = s[base + L_PAID]
    tot = 0
    u = nd
    for k in range(nd):
        tot += s[a0 + k]
        if tot > paid:
            u = k
            break
    s[base + L_U] = u
    s[base + L_S_U] = tot
    n = _bisect_left(s, d0, d0 + nd, s[base + L_F_DAY]) - d0
    s_n = 0
    for k in range(n):
        s_n += s[a0 + k]
    s[base + L_N] = n
    s[base + L_S_N] = s_n


# -- events ------------------------------------------------------------------------------------
@njit(nogil=True, cache=True)
def _payer(s: np.ndarray, lay: np.ndarray, month: int, h32: int) -> None:
    """``CustomerState._payer``: the sorted top-16 (month << 32 | crc32) list."""
    o = lay[Y_PAY]
    npay = s[H_NPAY]
    for k in range(npay):
        x = s[o + k]
        if x & 0xFFFFFFFF == h32:
            if x >> 32 < month:
                for j in range(k, npay - 1):  # del payers[k]
                    s[o + j] = s[o + j + 1]
                _payer_insort(s, o, npay - 1, (month << 32) | h32)
            return
    key = (month << 32) | h32
    if npay < _MAX_PAYERS:
        _payer_insort(s, o, npay, key)
        s[H_NPAY] = npay + 1
    elif key > s[o]:
        for j in range(npay - 1):
            s[o + j] = s[o + j + 1]
        _payer_insort(s, o, npay - 1, key)


@njit(nogil=True, cache=True)
def _payer_insort(s: np.ndarray, o: int, n: int, key: int) -> None:
    k = _bisect_right(s, o, o + n, key)
    for j in range(o + n - 1, k - 1, -1):
        s[j + 1] = s[j]
    s[k] = key


@njit(nogil=True, cache=True)
def _transaction(
    s: np.ndarray, lay: np.ndarray, ev: np.ndarray, t: float, pre_due_days: int
) -> int:
    day = _day_of(t)
    month = month_of_day(day)
    kind = ev[E_KIND]
    amount = ev[E_AMT]
    bal = ev[E_BAL]
    has_bal = bal != _NONE
    om = lay[Y_MONTHS]
    k = _find_row(s, om, month)
    if k >= 0:
        r = om + k * _R
        if (kind == K_CREDIT and s[r + INFLOW] >= _SUM_LIMIT) or (
            has_bal and abs(s[r + BAL_SUM]) >= _SUM_LIMIT
        ):
            return AGGREGATE_OVERFLOW
    else:
        k = _insert_row(s, om, lay[Y_MONTH_CAP], month)
        if k < 0:
            return DECLINED
    r = om + k * _R
    if kind == K_CREDIT:
        s[r + INFLOW] += amount
        s[H_LAST_CREDIT] = max(s[H_LAST_CREDIT], int(t))
        if ev[E_PAYER] != _NONE:
            _payer(s, lay, month, ev[E_PAYER])
    elif kind == K_BOUNCED:
        s[r + BOUNCED] += 1
        if day > s[H_BOUNCED_DAY]:
            s[H_BOUNCED_DAY] = day
            s[H_BOUNCED_N] = 1
        elif day == s[H_BOUNCED_DAY]:
            s[H_BOUNCED_N] += 1
    if has_bal:
        ti = int(t)
        if ti > s[H_BAL_T] or (ti == s[H_BAL_T] and bal < s[H_BAL]):
            s[H_BAL] = bal
            s[H_BAL_T] = ti
        if s[r + BAL_N] == 0 or bal < s[r + BAL_MIN]:
            s[r + BAL_MIN] = bal
        s[r + BAL_SUM] += bal
        s[r + BAL_N] += 1
        horizon = day + pre_due_days
        base = lay[Y_LOANS]
        sched_cap = lay[Y_SCHED_CAP]
        for _ in range(s[H_NL]):
            nd = s[base + L_ND]
            d0 = base + _LHDR
            j = _bisect_left(s, d0, d0 + nd, day + 1) - d0
            while j < nd and s[d0 + j] <= horizon:
                if bal < s[d0 + sched_cap + j] and j < _SHORT_BITS:
                    s[base + L_SHORT] |= 1 << j
                j += 1
            base += lay[Y_LOAN_LEN]
    return _OK


@njit(nogil=True, cache=True)
def _instalment(s: np.ndarray, lay: np.ndarray, base: int, seq: int, due: int, cents: int) -> int:
    k = seq - s[base + L_BASE_SEQ] - 1
    if k < 0:
        return _OK  # already settled and dropped
    nd = s[base + L_ND]
    d0 = base + _LHDR
    a0 = d0 + lay[Y_SCHED_CAP]
    if k < nd:
        if s[d0 + k] == due and s[a0 + k] == cents:
            return _OK
        s[d0 + k] = due
        s[a0 + k] = cents
    elif k == nd:
        if nd >= lay[Y_SCHED_CAP]:
            return DECLINED
        s[d0 + k] = due
        s[a0 + k] = cents
        s[base + L_ND] = nd + 1
    else:
        return _OK  # a gap in the schedule: wait for the contract's schedule
    _reset_cursor(s, lay, base)
    return _OK


@njit(nogil=True, cache=True)
def _repayment(
    s: np.ndarray, lay: np.ndarray, ev: np.ndarray, t: float, h: int, window: int
) -> int:
    base = _find_loan(s, lay, ev[E_LOAN])
    if base < 0:
        return DECLINED  # unknown loan: the pipeline parks the event (Python path)
    day = _day_of(t)
    kind = ev[E_KIND]
    if kind == K_DUE:
        return _instalment(s, lay, base, ev[E_SEQ], ev[E_DUE], ev[E_AMT])
    p0 = base + _LHDR + 2 * lay[Y_SCHED_CAP]
    npend = s[base + L_NPEND]
    none = -_H_OFFSET  # the reference's 0 ("no reversed id"), offset like every hash
    if kind == K_PAY:
        for k in range(npend):
            q = p0 + 4 * k
            if s[q + 3] == h and s[q + 2] != 0 and abs(s[q] - day) <= window:
                s[q + 2] = 0  # its reversal arrived first: both vanish
                return _OK
        return _OK if _pend_insort(s, lay, base, day, h, ev[E_AMT], none) else DECLINED
    ref = ev[E_REF]
    for k in range(npend):
        q = p0 + 4 * k
        d = s[q]
        if s[q + 3] == ref and abs(day - d) <= window:  # already reversed: the earliest counts
            if day > d or (day == d and h >= s[q + 1]):
                return _OK
            cents = s[q + 2]
            _pend_del(s, lay, base, k, 1)
            if cents == 0:
                return _OK if _pend_insort(s, lay, base, day, h, 0, ref) else DECLINED
            break
    npend = s[base + L_NPEND]
    for k in range(npend):
        q = p0 + 4 * k
        if s[q + 1] == ref and s[q + 2] > 0 and abs(day - s[q]) <= window:
            _pend_del(s, lay, base, k, 1)
            return _OK if _pend_insort(s, lay, base, day, h, 0, ref) else DECLINED
    return _OK if _pend_insort(s, lay, base, day, h, -ev[E_AMT], ref) else DECLINED


@njit(nogil=True, cache=True)
def _new_loan(s: np.ndarray, base: int, h: int) -> None:
    for j in range(_LHDR):
        s[base + j] = 0
    s[base + L_H] = h
    for j in (L_OPENED, L_CLOSED, L_RATE0, L_RATE, L_RATE_T, L_REPAY, L_GUAR, L_METH_T):
        s[base + j] = -1
    s[base + L_SCHED_T] = -1
    s[base + L_LAST30] = -1
    s[base + L_F_DAY] = s[H_FOLD_DAY]


@njit(nogil=True, cache=True)
def _evict(s: np.ndarray, lay: np.ndarray, new: int) -> int:
    """``CustomerState._evict_loan``; returns where the loan at ``new`` now is (it may itself
    be the victim: then it stays past the last loan, where writes to it change nothing)."""
    nl = s[H_NL]
    o = lay[Y_LOANS]
    stride = lay[Y_LOAN_LEN]
    any_closed = False
    for j in range(nl):
        if s[o + j * stride + L_CLOSED] >= 0:
            any_closed = True
    victim = -1
    for j in range(nl):
        b = o + j * stride
        if any_closed and s[b + L_CLOSED] < 0:
            continue
        key = s[b + L_CLOSED] if any_closed else s[b + L_OPENED]
        if victim < 0:
            victim = j
            continue
        v = o + victim * stride
        vkey = s[v + L_CLOSED] if any_closed else s[v + L_OPENED]
        if key < vkey or (key == vkey and s[b + L_H] < s[v + L_H]):
            victim = j
    vb = o + victim * stride
    if vb == new:
        s[H_NL] = nl - 1
        return new
    for j in range(vb, o + (nl - 1) * stride):  # shift the later loans down
        s[j] = s[j + stride]
    s[H_NL] = nl - 1
    return new - stride if new > vb else new


@njit(nogil=True, cache=True)
def _loan(
    s: np.ndarray,
    f: np.ndarray,
    lay: np.ndarray,
    ev: np.ndarray,
    evf: np.ndarray,
    sched: np.ndarray,
    t: float,
    max_loans: int,
) -> int:
    ti = int(t)
    base = _find_loan(s, lay, ev[E_LOAN])
    if base < 0:
        nl = s[H_NL]
        base = lay[Y_LOANS] + nl * lay[Y_LOAN_LEN]
        _new_loan(s, base, ev[E_LOAN])
        s[H_NL] = nl + 1
        if nl + 1 > max_loans:
            base = _evict(s, lay, base)
    kind = ev[E_KIND]
    rate = ev[E_RATE]
    if kind == K_OPENED:
        s[base + L_OPENED] = ti
        s[base + L_PRINCIPAL] = ev[E_PRINCIPAL]
        if rate != _NONE:
            s[base + L_RATE0] = rate
    elif kind == K_CLOSED:
        s[base + L_CLOSED] = max(s[base + L_CLOSED], ti)
    if rate != _NONE and (
        ti > s[base + L_RATE_T] or (ti == s[base + L_RATE_T] and rate > s[base + L_RATE])
    ):
        s[base + L_RATE] = rate
        s[base + L_RATE_T] = ti
    repay = ev[E_REPAY]
    guar = ev[E_GUAR]
    if (repay != _NONE or guar != _NONE) and ti >= s[base + L_METH_T]:
        if repay != _NONE:
            s[base + L_REPAY] = repay
        if guar != _NONE:
            s[base + L_GUAR] = guar
        s[base + L_METH_T] = ti
    if ev[E_SCHED0] >= 0 and ti >= s[base + L_SCHED_T]:
        base_seq = s[base + L_BASE_SEQ]
        d0 = base + _LHDR
        a0 = d0 + lay[Y_SCHED_CAP]
        nd = 0
        for j in range(ev[E_SCHED0], ev[E_SCHED0] + ev[E_SCHED_N]):  # sorted by seq
            if sched[j, 0] > base_seq:
                if nd >= lay[Y_SCHED_CAP]:
                    return DECLINED
                s[d0 + nd] = sched[j, 1]
                s[a0 + nd] = sched[j, 2]
                nd += 1
        s[base + L_ND] = nd
        s[base + L_SHORT] = 0
        _reset_cursor(s, lay, base)
        s[base + L_SCHED_T] = ti
    if ev[E_FIRM] and ti >= s[H_PROFILE_T]:
        f[F_YEARS] = evf[T_YEARS]
        f[F_HOLDING] = evf[T_HOLDING]
        s[H_PROFILE_T] = ti
    return _OK


@njit(nogil=True, cache=True)
def _sat_add(a: int, b: int) -> int:
    """``max(-I64_MAX, min(I64_MAX, a + b))`` without wrapping."""
    if b > 0 and a > _I64_MAX - b:
        return _I64_MAX
    if b < 0 and a < -_I64_MAX - b:
        return -_I64_MAX
    return a + b


@njit(nogil=True, cache=True)
def _fold(s: np.ndarray, lay: np.ndarray, fold_day: int) -> int:
    """``CustomerState._fold``: settle every loan's history up to ``fold_day``."""
    s[H_FOLD_DAY] = fold_day
    hi = month_of_day(fold_day)
    lo = hi - (_WINDOW_MONTHS - 1)
    ov = np.zeros((_WINDOW_MONTHS, _R), np.int64)
    used = np.zeros(_WINDOW_MONTHS, np.bool_)
    c = np.empty(8, np.int64)
    sched_cap = lay[Y_SCHED_CAP]
    base = lay[Y_LOANS]
    for _ in range(s[H_NL]):
        if s[base + L_F_DAY] < fold_day:
            d0 = base + _LHDR
            a0 = d0 + sched_cap
            p0 = a0 + sched_cap
            npend = s[base + L_NPEND]
            n = s[base + L_N]
            if (
                (npend == 0 or s[p0] >= fold_day)
                and (n >= s[base + L_ND] or s[d0 + n] >= fold_day)
                and s[base + L_U] >= n
            ):  # state._quiet_until: the walk would only move the cursor's day
                s[base + L_F_DAY] = fold_day
            else:
                lo_ = 0
                hi_ = npend
                while lo_ < hi_:  # bisect_left(pending, (fold_day,))
                    mid = (lo_ + hi_) // 2
                    if s[p0 + 4 * mid] < fold_day:
                        lo_ = mid + 1
                    else:
                        hi_ = mid
                # _advance walks the pending entries before fold_day: the first lo_ (sorted)
                _advance(s, base, d0, a0, p0, 4, 2, fold_day, ov, used, lo, hi, c)
                for j in range(8):
                    s[base + L_F_DAY + j] = c[j]
                if lo_:
                    _pend_del(s, lay, base, 0, lo_)
            u = s[base + L_U]
            n = s[base + L_N]
            drop = min(u, n)
            if drop:
                nd = s[base + L_ND]
                gone = 0
                for j in range(drop):
                    gone += s[a0 + j]
                for j in range(nd - drop):
                    s[d0 + j] = s[d0 + j + drop]
                    s[a0 + j] = s[a0 + j + drop]
                s[base + L_ND] = nd - drop
                s[base + L_SHORT] = s[base + L_SHORT] >> drop if drop < _SHORT_BITS else 0
                s[base + L_BASE_SEQ] += drop
                s[base + L_PAID] -= gone
                s[base + L_S_U] -= gone
                s[base + L_S_N] -= gone
                s[base + L_U] = u - drop
                s[base + L_N] = n - drop
            for j in (L_PAID, L_S_U, L_S_N):
                if abs(s[base + j]) >= _LOAN_LIMIT:
                    return DECLINED
        base += lay[Y_LOAN_LEN]
    # drop months older than the window first (the reference merges, then drops: same rows)
    om = lay[Y_MONTHS]
    nm = s[H_NM]
    k = 0
    while k < nm and s[om + k * _R] < lo:
        k += 1
    if k:
        for j in range((nm - k) * _R):
            s[om + j] = s[om + j + k * _R]
        s[H_NM] = nm - k
    for a in range(_WINDOW_MONTHS):
        if not used[a]:
            continue
        m = hi - a
        r = _find_row(s, om, m)
        if r < 0:
            r = _insert_row(s, om, lay[Y_MONTH_CAP], m)
            if r < 0:
                return DECLINED
        q = om + r * _R
        if ov[a, DPD_MAX] > s[q + DPD_MAX]:
            s[q + DPD_MAX] = ov[a, DPD_MAX]
        for fld in range(LATE, PREDUE_SHORT + 1):
            s[q + fld] = _sat_add(s[q + fld], ov[a, fld])
    return _OK


@njit(nogil=True, cache=True)
def _apply(
    s: np.ndarray,
    f: np.ndarray,
    lay: np.ndarray,
    ev: np.ndarray,
    evf: np.ndarray,
    sched: np.ndarray,
    lateness_days: float,
    pre_due_days: int,
    max_recent_ids: int,
    max_loans: int,
) -> int:
    """``CustomerState.apply`` on a slot: the outcome."""
    t = evf[T_TIME]
    lateness = lateness_days * _DAY
    if t < f[F_LAST] - lateness or t < f[F_FLOOR]:
        return TOO_LATE
    h = ev[E_H]
    oi = lay[Y_IDS]
    ot = lay[Y_IDT]
    nid = s[H_NIDS]
    for k in range(nid):
        if s[oi + k] == h:
            return DUPLICATE
    kind = ev[E_KIND]
    if kind <= K_BOUNCED:
        r = _transaction(s, lay, ev, t, pre_due_days)
    elif kind <= K_REVERSAL:
        r = _repayment(s, lay, ev, t, h, int(lateness_days))
    else:
        r = _loan(s, f, lay, ev, evf, sched, t, max_loans)
    if r != _OK:
        return r
    if nid >= lay[Y_ID_CAP]:
        return DECLINED
    ti = int(t)
    i = _bisect_right(s, ot, ot + nid, ti) - ot
    while i > 0 and s[ot + i - 1] == ti and s[oi + i - 1] > h:
        i -= 1
    for j in range(nid - 1, i - 1, -1):
        s[oi + j + 1] = s[oi + j]
        s[ot + j + 1] = s[ot + j]
    s[oi + i] = h
    s[ot + i] = ti
    nid += 1
    if t > f[F_LAST]:
        f[F_LAST] = t
        k = _bisect_right(s, ot, ot + nid, t - lateness - 1) - ot
        if k:
            for j in range(nid - k):
                s[oi + j] = s[oi + j + k]
                s[ot + j] = s[ot + j + k]
            nid -= k
        fold = (_day_of(t - 2 * lateness) - 2) // 7 * 7
        if fold > s[H_FOLD_DAY]:
            s[H_NIDS] = nid
            r = _fold(s, lay, fold)
            if r != _OK:
                return r
    if nid > max_recent_ids:
        f[F_FLOOR] = max(f[F_FLOOR], s[ot] + 1.0)
        for j in range(nid - 1):
            s[oi + j] = s[oi + j + 1]
            s[ot + j] = s[ot + j + 1]
        nid -= 1
    s[H_NIDS] = nid
    return APPLIED


@njit(nogil=True, cache=True)
def _pack(s: np.ndarray, lay: np.ndarray, out: np.ndarray) -> int:
    """The slot in ``features_kernel.pack``'s layout (into ``out``); its length."""
    nm = s[H_NM]
    nl = s[H_NL]
    npay = s[H_NPAY]
    out[0] = nm
    out[1] = nl
    out[2] = npay
    for j in range(6):  # bal, bal_t, last_credit_t, bounced_day, bounced_n, profile_t
        out[3 + j] = s[H_BAL + j]
    k = 9
    om = lay[Y_MONTHS]
    for j in range(nm * _R):
        out[k + j] = s[om + j]
    k += nm * _R
    op = lay[Y_PAY]
    for j in range(npay):
        out[k + j] = s[op + j] >> 32
    k += npay
    sched_cap = lay[Y_SCHED_CAP]
    base = lay[Y_LOANS]
    for _ in range(nl):
        for j in range(_PACKED_LHDR):
            out[k + j] = s[base + j]
        k += _PACKED_LHDR
        nd = s[base + L_ND]
        d0 = base + _LHDR
        for j in range(nd):
            out[k + j] = s[d0 + j]
            out[k + nd + j] = s[d0 + sched_cap + j]
        k += 2 * nd
        p0 = d0 + 2 * sched_cap
        for j in range(s[base + L_NPEND]):
            out[k] = s[p0 + 4 * j]
            out[k + 1] = s[p0 + 4 * j + 2]
            k += 2
        base += lay[Y_LOAN_LEN]
    return k


@njit(nogil=True, cache=True)
def apply_many(
    arena: np.ndarray,
    floats: np.ndarray,
    lay: np.ndarray,
    ev: np.ndarray,
    evf: np.ndarray,
    sched: np.ndarray,
    lateness_days: float,
    pre_due_days: int,
    max_recent_ids: int,
    max_loans: int,
    outcome: np.ndarray,
    rows: np.ndarray,
    active: np.ndarray,
    as_of: np.ndarray,
    bounced: np.ndarray,
    declined: np.ndarray,
) -> None:
    """Apply every event ``i`` (``ev[i]``, ``evf[i]``) to its slot, in order; ``outcome[i]``,
    and for an applied event the feature row at the new watermark (``rows[i]``, the feature
    kernel's active flag, the as-of time and that day's bounced debits). A customer declined
    at one event (``declined[slot]``) has its later events marked :data:`DECLINED` too."""
    packed = np.empty(lay[Y_SLOT] + 16, np.int64)
    for i in range(ev.shape[0]):
        slot = ev[i, E_SLOT]
        if declined[slot]:
            outcome[i] = DECLINED
            continue
        s = arena[slot]
        f = floats[slot]
        o = _apply(
            s, f, lay, ev[i], evf[i], sched, lateness_days, pre_due_days, max_recent_ids, max_loans
        )
        if o == APPLIED:
            t = f[F_LAST]
            day = _day_of(t)
            n = _pack(s, lay, packed)
            a = fill_packed(
                packed[:n],
                t,
                day,
                month_of_day(day),
                pre_due_days,
                f[F_YEARS],
                f[F_HOLDING],
                rows[i],
            )
            if a < 0:
                o = DECLINED
            else:
                active[i] = a
                as_of[i] = t
                bounced[i] = s[H_BOUNCED_N] if s[H_BOUNCED_DAY] == day else 0
        if o == DECLINED:
            declined[slot] = True
        outcome[i] = o


_TXN_KIND = {"credit": K_CREDIT, "debit": K_DEBIT, "bounced_debit": K_BOUNCED}
_REP_KIND = {"instalment_due": K_DUE, "payment_received": K_PAY, "reversal": K_REVERSAL}
_LOAN_KIND = {"opened": K_OPENED, "changed": K_CHANGED, "closed": K_CLOSED}
_REPAY_CODE = {m: k for k, m in enumerate(REPAYMENT_METHODS)}
_GUAR_CODE = {m: k for k, m in enumerate(GUARANTEE_METHODS)}


@lru_cache(maxsize=1 << 16)
def _id_hash(loan_id: str) -> int:
    """A loan or reversed event id's hash, offset (loan ids repeat: cached)."""
    return _hash(loan_id) - _H_OFFSET


class EventColumns:
    """A batch's events as the columns :func:`apply_many` reads (what ``CustomerState.apply``
    reads of each event, with the same conversions: cents, ppm, day numbers, hashes). Per
    event only a few appends; the conversions run over the whole batch in :meth:`arrays`."""

    def __init__(self, scan: Scanned | None = None) -> None:
        self._ints: list[int] = []  # R_INTS per event
        self._floats: list[float] = []  # R_FLOATS per event (NaN: absent)
        self._ids: list[bytes] = []  # event-id digests (state._hash before from_bytes)
        self._sched: list[int] = []
        self.n = 0
        # rows of ``scan`` (the intake kernel's, same columns) queued by :meth:`take_many`; the
        # pipeline sets it once the batch is scanned
        self.scan = scan
        self._taken: list[int] = []  # their scan rows
        self._taken_at: list[int] = []  # their places in the queue
        self._taken_slot: list[int] = []

    def take_many(self, slots: np.ndarray, rows: np.ndarray, at: np.ndarray) -> None:
        """Queue rows ``rows`` of the intake kernel's scan for the customers in arena rows
        ``slots``, at the queue places ``at`` (the places left are :meth:`add`'s, in the order
        it is called)."""
        self._taken += rows.tolist()
        self._taken_at += at.tolist()
        self._taken_slot += slots.tolist()
        self.n += len(rows)

    def add(self, slot: int, event: InputEvent, t: float) -> None:
        """Queue ``event`` (event time ``t``) for the customer in arena row ``slot``."""
        self._ids.append(_blake2b(event.event_id.encode(), digest_size=8).digest())
        if type(event) is TransactionEvent:
            kind = _TXN_KIND[event.kind]
            bal = event.balance_after
            cp = event.counterparty
            payer = zlib.crc32(cp.encode()) if cp and kind == K_CREDIT else _NONE
            self._ints += (slot, kind, 0, payer, 0, 0, 0, _NONE, _NONE, -1, 0, 0)
            self._floats += (t, event.amount, _NAN if bal is None else bal, 0.0, _NAN, 0.0, 0.0)
        elif type(event) is RepaymentEvent:
            kind = _REP_KIND[event.kind]
            seq = due = ref = 0
            if kind == K_DUE:
                assert event.instalment_seq is not None and event.due_date is not None
                seq, due = event.instalment_seq, day_of_date(event.due_date)
            elif kind == K_REVERSAL:
                assert event.reversed_event_id is not None
                ref = _id_hash(event.reversed_event_id)
            loan = _id_hash(event.loan_id)
            self._ints += (slot, kind, loan, _NONE, seq, due, ref, _NONE, _NONE, -1, 0, 0)
            self._floats += (t, event.amount, _NAN, 0.0, _NAN, 0.0, 0.0)
        else:
            assert isinstance(event, LoanEvent)
            sched0 = -1
            nsched = 0
            if event.schedule is not None:
                sched0 = len(self._sched) // 3
                items = sorted(
                    (i.seq, day_of_date(i.due_date), _cents(i.amount)) for i in event.schedule
                )
                nsched = len(items)
                for x in items:
                    self._sched += x
            rate, firm = event.annual_rate, event.firm
            repay, guar = event.repayment_method, event.guarantee_method
            self._ints += (
                slot,
                _LOAN_KIND[event.kind],
                _id_hash(event.loan_id),
                _NONE,
                0,
                0,
                0,
                _NONE if repay is None else _REPAY_CODE[repay],
                _NONE if guar is None else _GUAR_CODE[guar],
                sched0,
                nsched,
                firm is not None,
            )
            self._floats += (
                t,
                0.0,
                _NAN,
                event.principal or 0.0,
                _NAN if rate is None else rate,
                0.0 if firm is None else firm.years_in_business,
                0.0 if firm is None else firm.shareholder_holding_years,
            )
        self.n += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(int columns [n, EV_FIELDS], float columns [n, 3], schedules [m, 3])."""
        n = self.n
        raw = np.array(self._ints, dtype=np.int64).reshape(-1, R_INTS)
        fl = np.array(self._floats, dtype=np.float64).reshape(-1, R_FLOATS)
        ids = np.frombuffer(b"".join(self._ids), "<i8")
        if self._taken:  # merge the scanned rows in at their places
            assert self.scan is not None
            at = np.array(self._taken_at, np.int64)
            rows = np.array(self._taken, np.int64)
            mine = np.ones(n, np.bool_)
            mine[at] = False
            raw, py_raw = np.empty((n, R_INTS), np.int64), raw
            fl, py_fl = np.empty((n, R_FLOATS), np.float64), fl
            ids, py_ids = np.empty(n, np.int64), ids
            raw[mine], fl[mine], ids[mine] = py_raw, py_fl, py_ids
            raw[at] = self.scan.ints[rows]
            raw[at, 0] = self._taken_slot
            fl[at] = self.scan.floats[rows]
            ids[at] = self.scan.ids[rows]
        ev = np.empty((n, EV_FIELDS), np.int64)
        ev[:, _R_TO_E] = raw
        # state._hash: the digest as a little-endian unsigned int; kept offset (minus 2**63)
        ev[:, E_H] = ids ^ np.int64(-_H_OFFSET)
        # round(x * 100) and round(x * 1e6): numpy rounds half to even as Python does, and every
        # value here is below 2**53 (schemas bound money to 1e12, rates to 10)
        ev[:, E_AMT] = np.round(fl[:, 1] * 100)
        ev[:, E_PRINCIPAL] = np.round(fl[:, 3] * 100)
        for col, src, scale in ((E_BAL, 2, 100), (E_RATE, 4, 1_000_000)):
            x = fl[:, src]
            absent = np.isnan(x)
            ev[:, col] = np.where(absent, _NONE, np.round(np.where(absent, 0.0, x) * scale))
        evf = np.ascontiguousarray(fl[:, [0, 5, 6]])  # T_TIME, T_YEARS, T_HOLDING
        sched = np.array(self._sched, dtype=np.int64).reshape(-1, 3)
        return ev, evf, sched


class Scanned(Protocol):
    """Raw rows from elsewhere (``intake_kernel.Scan``) in :class:`EventColumns`' layout."""

    @property
    def ints(self) -> np.ndarray: ...  # [m, R_INTS]
    @property
    def floats(self) -> np.ndarray: ...  # [m, R_FLOATS]
    @property
    def ids(self) -> np.ndarray: ...  # int64 [m]: event-id digests, little-endian


R_INTS, R_FLOATS = 12, 7  # EventColumns' raw columns per event (intake_kernel fills them too)
# where the queued ints go: slot, kind, loan, payer, seq, due, ref, repay, guar, schedule, firm
_R_TO_E = [E_SLOT, E_KIND, E_LOAN, E_PAYER, E_SEQ, E_DUE, E_REF, E_REPAY, E_GUAR]
_R_TO_E += [E_SCHED0, E_SCHED_N, E_FIRM]
_NAN = float("nan")


@dataclass
class Applied:
    """One :func:`apply_many` call: the arena (slot ``k`` = the ``k``-th state loaded) and, per
    event, its slot, outcome and, if applied, its feature row, the feature kernel's active flag,
    the as-of time (the new watermark) and that day's bounced debits."""

    arena: np.ndarray
    floats: np.ndarray
    declined: np.ndarray  # per slot: not loaded, or declined at one of its events
    slot: np.ndarray
    outcome: np.ndarray
    rows: np.ndarray
    active: np.ndarray
    as_of: np.ndarray
    bounced: np.ndarray


def apply_batch(
    blobs: list[bytes], cols: EventColumns, cfg: StateConfig, lay: np.ndarray
) -> Applied:
    """Load the states ``blobs`` (slot ``k`` = ``blobs[k]``) and apply the queued events."""
    arena, floats, declined = load(blobs, lay)
    ev, evf, sched = cols.arrays()
    n = cols.n
    res = Applied(
        arena,
        floats,
        declined,
        ev[:, E_SLOT].copy(),
        np.empty(n, np.int64),
        np.empty((n, len(FEATURES)), np.float64),
        np.empty(n, np.int64),
        np.empty(n, np.float64),
        np.empty(n, np.int64),
    )
    apply_many(
        arena,
        floats,
        lay,
        ev,
        evf,
        sched,
        float(cfg.lateness_days),
        cfg.pre_due_days,
        cfg.max_recent_ids,
        cfg.max_loans,
        res.outcome,
        res.rows,
        res.active,
        res.as_of,
        res.bounced,
        declined,
    )
    return res


def warm_up(cfg: StateConfig) -> None:
    """Load the kernels (reader, apply_many, writer) from numba's cache now, with the types a
    batch uses, not in the first batch (a compile there would block the worker for seconds)."""
    lay = Layout(cfg).vector
    res = apply_batch([CustomerState.new("warm-up").to_bytes()], EventColumns(), cfg, lay)
    save(lay, res.arena, res.floats, [0], ["warm-up"])
