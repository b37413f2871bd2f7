"""The state kernel's loan part: instalments, payments, reversals, loan events and the lender's
delinquency statuses on a slot.

Each function is the numba twin of a :class:`~streams.core.state.CustomerState` /
:class:`~streams.core.loan.Loan` method named in its docstring, on the slot layout of
:mod:`streams.core._state_slots`; ``tests/unit/test_state_kernel.py`` holds them to the reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from streams.core._state_slots import *  # the arena's layout, read by name


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
        return DECLINED  # a gap in the schedule: the reference refuses it (instalment_gap)
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
    s[base + L_R_DAY] = -1  # no report (reported.Report's cursor)
    s[base + L_R_CAT] = -1


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
def _status(s: np.ndarray, lay: np.ndarray, ev: np.ndarray, t: float, h: int) -> int:
    """``CustomerState._status`` + ``Report.add``: queue the report, one per as-of day (of a
    day's reports the later (time, id hash) stands)."""
    base = _find_loan(s, lay, ev[E_LOAN])
    if base < 0:
        return DECLINED  # unknown loan: the pipeline parks the event (Python path)
    day = _day_of(t)
    ti = int(t)
    nrep = s[base + L_NREP]
    r0 = base + _LHDR + 2 * lay[Y_SCHED_CAP] + 4 * lay[Y_PEND_CAP]
    k = 0
    while k < nrep and s[r0 + _REP * k] < day:
        k += 1
    q = r0 + _REP * k
    if k < nrep and s[q] == day:
        if ti < s[q + 1] or (ti == s[q + 1] and h <= s[q + 2]):
            return _OK  # a later report of that day stands
    else:
        if nrep >= lay[Y_REP_CAP]:
            return DECLINED
        for j in range(_REP * nrep - 1, _REP * k - 1, -1):
            s[r0 + j + _REP] = s[r0 + j]
        s[base + L_NREP] = nrep + 1
    s[q] = day
    s[q + 1] = ti
    s[q + 2] = h
    s[q + 3] = ev[E_RDPD]
    s[q + 4] = ev[E_ROWED]
    s[q + 5] = ev[E_RCAT]
    return _OK
