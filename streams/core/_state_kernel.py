"""The numba twin of ``CustomerState.apply``: a whole batch of events in one call.

:func:`apply_batch` loads the batch's customers into an arena (:mod:`streams.core._state_slots`)
straight from their stored state bytes (:mod:`streams.core._state_codec`), then
:func:`apply_many` walks the batch's events (:mod:`streams.core._state_events`) in arrival order,
applies each to its customer's slot exactly as :meth:`~streams.core.state.CustomerState.apply`
would (dedupe, lateness, transactions; repayments, reversals, loan events and the lender's
delinquency statuses through :mod:`streams.core._loan_kernel`; weekly folds) and, after every
applied event, writes the
customer's feature row at the new watermark through
:func:`streams.core._features_kernel.fill_packed` (the slot is copied into the packed layout first)
and its exposure through :func:`streams.core._exposure_kernel.exposure_packed`.

The Python state stays the reference and the fallback: ``tests/unit/test_state_kernel.py`` holds
the two to equal state bytes, outcomes and feature rows on random histories. Whatever the kernel
cannot reproduce exactly it *declines*: a state that does not fit a slot (too many ids, months,
loans, instalments or pending payments; an int beyond int64) is not loaded, and an event that would
overflow a slot, a repayment for a loan the state does not know (the pipeline parks those), a loan
sum drifting near the int64 range or a feature row the feature kernel declines marks the customer
*declined* from that event on (``DECLINED``): the pipeline then runs that customer's whole batch
through the Python path, from its untouched stored state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from streams.core._exposure_kernel import exposure_packed
from streams.core._features_kernel import _advance, fill_packed, month_of_day
from streams.core._loan_kernel import (
    _loan,
    _pend_del,
    _repayment,
    _status,
)
from streams.core._state_codec import (
    load,
    save,
)
from streams.core._state_events import (
    EventColumns,
)
from streams.core._state_slots import *  # the arena's layout, read by name
from streams.core.features import FEATURES
from streams.core.state import (
    _I64_MAX,
    _MAX_PAYERS,
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
    OUTFLOW,
    PREDUE_SHORT,
    CustomerState,
    StateConfig,
)


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
        if (
            (kind == K_CREDIT and s[r + INFLOW] >= _SUM_LIMIT)
            or (kind == K_DEBIT and s[r + OUTFLOW] >= _SUM_LIMIT)
            or (has_bal and abs(s[r + BAL_SUM]) >= _SUM_LIMIT)
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
    elif kind == K_DEBIT:
        s[r + OUTFLOW] += amount
    elif kind == K_BOUNCED:  # no money moved: counted, not in OUTFLOW
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
    c = np.empty(13, np.int64)
    sched_cap = lay[Y_SCHED_CAP]
    base = lay[Y_LOANS]
    for _ in range(s[H_NL]):
        if s[base + L_F_DAY] < fold_day:
            d0 = base + _LHDR
            a0 = d0 + sched_cap
            p0 = a0 + sched_cap
            r0 = p0 + 4 * lay[Y_PEND_CAP]
            npend = s[base + L_NPEND]
            nrep = s[base + L_NREP]
            n = s[base + L_N]
            if s[base + L_R_DAY] >= 0:  # a report in force: current (reported.arrears_day)
                owed = s[base + L_R_OWED]
                settled = owed == 0 or (owed > 0 and s[base + L_R_PAID] >= owed)
            else:
                settled = s[base + L_U] >= n
            if (
                (npend == 0 or s[p0] >= fold_day)
                and (n >= s[base + L_ND] or s[d0 + n] >= fold_day)
                and (nrep == 0 or s[r0] >= fold_day)
                and settled
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
                # _advance walks the pending entries (and reports) before fold_day: the first
                # lo_ (sorted)
                _advance(s, base, d0, a0, p0, 4, 2, r0, _REP, 3, fold_day, ov, used, lo, hi, c)
                for j in range(8):
                    s[base + L_F_DAY + j] = c[j]
                for j in range(5):
                    s[base + L_R_DAY + j] = c[8 + j]
                if lo_:
                    _pend_del(s, lay, base, 0, lo_)
                kr = 0
                while kr < nrep and s[r0 + _REP * kr] < fold_day:
                    kr += 1
                if kr:  # del pending reports[:kr]
                    for j in range(_REP * (nrep - kr)):
                        s[r0 + j] = s[r0 + j + _REP * kr]
                    s[base + L_NREP] = nrep - kr
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
            for j in (L_PAID, L_S_U, L_S_N, L_R_PAID):
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
    elif kind == K_STATUS:
        r = _status(s, lay, ev, t, h)
    elif kind == K_LINE:
        r = DECLINED  # credit lines: the Python path (state.py, lines.py) takes the customer
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
        r0 = p0 + 4 * lay[Y_PEND_CAP]
        for j in range(s[base + L_NREP]):  # (day, dpd, owed, class)
            q = r0 + _REP * j
            out[k] = s[q]
            out[k + 1] = s[q + 3]
            out[k + 2] = s[q + 4]
            out[k + 3] = s[q + 5]
            k += 4
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
    exposure: np.ndarray,
    cls: np.ndarray,
    declined: np.ndarray,
) -> None:
    """Apply every event ``i`` (``ev[i]``, ``evf[i]``) to its slot, in order; ``outcome[i]``,
    and for an applied event the feature row at the new watermark (``rows[i]``, the feature
    kernel's active flag, the as-of time, that day's bounced debits, the exposure in cents and
    the lender's reported class in force). A customer declined at one event
    (``declined[slot]``) has its later events marked :data:`DECLINED` too."""
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
                cls[i : i + 1],
            )
            if a < 0:
                o = DECLINED
            else:
                active[i] = a
                as_of[i] = t
                bounced[i] = s[H_BOUNCED_N] if s[H_BOUNCED_DAY] == day else 0
                exposure[i] = exposure_packed(packed[:n], day)
        if o == DECLINED:
            declined[slot] = True
        outcome[i] = o


@dataclass
class Applied:
    """One :func:`apply_many` call: the arena (slot ``k`` = the ``k``-th state loaded) and, per
    event, its slot, outcome and, if applied, its feature row, the feature kernel's active flag,
    the as-of time (the new watermark), that day's bounced debits, the exposure (cents) and the
    five-category class the lender reports in force (-1: none)."""

    arena: np.ndarray
    floats: np.ndarray
    declined: np.ndarray  # per slot: not loaded, or declined at one of its events
    slot: np.ndarray
    outcome: np.ndarray
    rows: np.ndarray
    active: np.ndarray
    as_of: np.ndarray
    bounced: np.ndarray
    exposure: np.ndarray
    cls: np.ndarray


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
        np.empty(n, np.int64),
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
        res.exposure,
        res.cls,
        declined,
    )
    return res


def warm_up(cfg: StateConfig) -> None:
    """Load the kernels (reader, apply_many, writer) from numba's cache now, with the types a
    batch uses, not in the first batch (a compile there would block the worker for seconds)."""
    lay = Layout(cfg).vector
    res = apply_batch([CustomerState.new("warm-up").to_bytes()], EventColumns(), cfg, lay)
    save(lay, res.arena, res.floats, [0], ["warm-up"])
