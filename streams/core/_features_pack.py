"""The feature kernel's packed layout and its Python side: :func:`pack` copies what the feature
row reads from a :class:`~streams.core.state.CustomerState` into one flat int64 buffer (header,
months, payers, loans with their schedule, pending payments and the lender's reports, then the
credit lines, ``_line_kernel``), which ``_features_kernel.fill_packed`` reads; :func:`unpack`
rebuilds what the Python reference needs from a packed copy when the kernel declines it.

The monthly aggregates, most of the buffer, are an int64 array in the state already and are
copied in one piece; the rest (loans, payers: Python lists, which keep ``apply`` simple) is
converted int by int. Packing costs a couple of microseconds, the replay + window arithmetic it
replaces about twenty.
"""

from __future__ import annotations

import struct
from array import array

import numpy as np

from streams.core._line_kernel import pack_lines, unpack_lines
from streams.core.reported import Report
from streams.core.state import (
    _ROW_LEN,
    BAL_MIN,
    BAL_SUM,
    DUE,
    EARLY_SUM,
    INFLOW,
    OUTFLOW,
    PAID,
    CustomerState,
    Loan,
)

__all__ = ["pack", "pack_into", "unpack"]

# header slots
_NM, _NL, _NP, _BAL, _BAL_T, _LAST_CREDIT, _BOUNCED_DAY, _BOUNCED_N, _PROFILE_T = range(9)
_HDR = 9
_ROW = _ROW_LEN  # a month row as the state keeps it (MONTH .. OUTFLOW, streams.core.state)
_MONEY = (DUE, PAID, EARLY_SUM, INFLOW, BAL_SUM, BAL_MIN, OUTFLOW)  # row fields held below 2**49
# loan header slots (then days[nd], amts[nd], (day, cents)[np], (day, dpd, owed, class)[nr])
_OPENED, _CLOSED, _RATE0, _RATE, _REPAY, _GUAR, _H, _SHORT = range(8)
_F_DAY, _PAID, _U, _S_U, _N, _S_N, _CONSEC, _LAST30, _ND, _NPEND = range(8, 18)
_R_DAY, _R_DUE, _R_OWED, _R_PAID, _R_CAT, _NREP = range(18, 24)  # state.Report's cursor, count
_LOAN = 24
_NO_REPORT = (-1, 0, 0, 0, -1)  # a loan the lender does not report on: no report in force
_H_OFFSET = 1 << 63  # loan hash (unsigned 64-bit) -> signed, order kept
_MONEY_LIMIT = 1 << 49
_STRUCTS: dict[int, struct.Struct] = {}  # packed length -> its format
_CUT = _HDR * 8  # bytes of the header, after which the months go


def pack(state: CustomerState) -> np.ndarray | None:
    """The state's feature inputs as one int64 array, or None if an integer does not fit: the
    caller then uses the Python reference."""
    out = bytearray()
    return np.frombuffer(out, np.int64) if pack_into(state, out) else None


def pack_into(state: CustomerState, out: bytearray) -> bool:
    """Append :func:`pack`'s buffer to ``out`` (a batch of packed states); False, and nothing
    appended, if an integer does not fit. Credit lines go last (``_line_kernel``)."""
    months = state.months
    reports = {r.h: r for r in state.reports} if state.reports else None
    flat = [
        len(months) // _ROW,
        len(state.loans),
        len(state.payers),
        state.bal,
        state.bal_t,
        state.last_credit_t,
        state.bounced_day,
        state.bounced_n,
        state.profile_t,
    ]
    for x in state.payers:
        flat.append(x >> 32)
    for loan in state.loans:
        pend = loan.pending
        rep = reports.get(loan.h) if reports else None
        flat += (
            loan.opened_t,
            loan.closed_t,
            loan.rate0,
            loan.rate,
            loan.repay,
            loan.guar,
            loan.h - _H_OFFSET,
            loan.short,
            loan.f_day,
            loan.paid,
            loan.u,
            loan.s_u,
            loan.n,
            loan.s_n,
            loan.consec,
            loan.last30,
            len(loan.days),
            len(pend),
        )
        flat += _NO_REPORT if rep is None else rep.cursor()
        flat.append(0 if rep is None else len(rep.pending))
        flat += loan.days
        flat += loan.amts
        for p in pend:
            flat.append(p[0])
            flat.append(p[2])
        if rep is not None:
            for r in rep.pending:
                flat += (r[0], r[3], r[4], r[5])
    if state.lines:
        pack_lines(state.lines, flat)
    n = len(flat)
    fmt = _STRUCTS.get(n)
    if fmt is None:
        fmt = _STRUCTS[n] = struct.Struct(f"={n}q")
    try:  # struct converts Python ints about 3x faster than np.array
        packed = memoryview(fmt.pack(*flat))
    except struct.error:  # an int beyond int64
        return False
    # the months are int64 already: one copy, spliced in after the header
    out += packed[:_CUT]
    out += months
    out += packed[_CUT:]
    return True


def unpack(buf: np.ndarray, years_in_business: float, holding_years: float) -> CustomerState:
    """A state holding what :func:`pack` took from one (only what the feature row reads): the
    Python reference computes a row from it when the kernel declines a packed state."""
    b = buf.tolist()
    nm, nl, npay = b[_NM], b[_NL], b[_NP]
    st = CustomerState("packed")
    st.bal, st.bal_t, st.last_credit_t, st.bounced_day, st.bounced_n, st.profile_t = b[_BAL:_HDR]
    st.years_in_business, st.holding_years = years_in_business, holding_years
    k = _HDR + nm * _ROW
    st.months = array("q", b[_HDR:k])
    st.payers = [m << 32 for m in b[k : k + npay]]
    k += npay
    for _ in range(nl):
        nd, npend, nrep = b[k + _ND], b[k + _NPEND], b[k + _NREP]
        d0 = k + _LOAN
        p0 = d0 + 2 * nd
        r0 = p0 + 2 * npend
        loan = Loan(
            b[k + _H] + _H_OFFSET,
            opened_t=b[k + _OPENED],
            closed_t=b[k + _CLOSED],
            rate0=b[k + _RATE0],
            rate=b[k + _RATE],
            repay=b[k + _REPAY],
            guar=b[k + _GUAR],
            days=b[d0 : d0 + nd],
            amts=b[d0 + nd : p0],
            short=b[k + _SHORT],
            pending=[(b[p0 + 2 * j], 0, b[p0 + 2 * j + 1], 0) for j in range(npend)],
        )
        loan.set_cursor(b[k + _F_DAY : k + _ND])
        st.loans.append(loan)
        if b[k + _R_DAY] >= 0 or nrep:
            rep = Report(loan.h)
            rep.set_cursor(b[k + _R_DAY : k + _NREP])
            rep.pending = [  # (time and id hash only order a day's reports: one is packed)
                (b[q], 0, 0, b[q + 1], b[q + 2], b[q + 3]) for q in range(r0, r0 + 4 * nrep, 4)
            ]
            st.reports.append(rep)
        k = r0 + 4 * nrep
    st.lines = unpack_lines(b, k)
    return st
