"""The numba twin of ``CustomerState.snapshot`` + ``features._fill``.

:func:`fill_packed` reads a state packed by ``_features_pack.pack`` (header, months, payers,
loans with their schedule, pending payments and the lender's reports, then its credit lines),
replays the pending payments and reports (the lines' in ``_line_kernel``), merges them with the
settled months and writes the feature row, all in one jitted call; :func:`fill_many` does it for
a whole batch of packed states (``features.FeatureBatch``: one call per pipeline batch instead
of one per event).
The Python path (``state.snapshot`` + ``features._fill``) stays the reference:
``tests/unit/test_features_kernel.py`` holds the two to bit-equal rows on random histories, and
anything the kernel cannot reproduce exactly falls back to it (``_features_pack.unpack`` rebuilds
what the reference needs from a packed copy): ``pack`` returns None for an integer beyond int64,
:func:`fill_packed` returns ``-1`` for a money figure beyond ``2**49`` cents (sums of up to 13
such figures stay below ``2**53``, where int -> float is exact, so every ratio rounds exactly as
Python's ``int / int``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from streams.core._calendar import month_of_day, month_start_day
from streams.core._cashflow_kernel import cash_fill
from streams.core._features_pack import (
    _BAL,
    _BAL_T,
    _CLOSED,
    _CONSEC,
    _F_DAY,
    _GUAR,
    _H,
    _HDR,
    _LAST30,
    _LAST_CREDIT,
    _LOAN,
    _MONEY,
    _MONEY_LIMIT,
    _N,
    _ND,
    _NL,
    _NM,
    _NP,
    _NPEND,
    _NREP,
    _OPENED,
    _PAID,
    _PROFILE_T,
    _R_CAT,
    _R_DAY,
    _R_DUE,
    _R_OWED,
    _R_PAID,
    _RATE,
    _RATE0,
    _REPAY,
    _ROW,
    _S_N,
    _S_U,
    _SHORT,
    _U,
)
from streams.core._line_kernel import (
    F_CAT,
    F_DPD,
    F_FULL,
    F_LAST30,
    F_OPEN,
    F_OPENED,
    F_OVERDUE,
    LINE_FIGURES,
    line_fill,
)
from streams.core.state import (
    BAL_MIN,
    BAL_N,
    BAL_SUM,
    BOUNCED,
    DPD_MAX,
    DUE,
    EARLY_SUM,
    INFLOW,
    LATE,
    MONTH,
    PAID,
    PREDUE_SHORT,
    SETTLED,
)

__all__ = ["fill_many", "fill_packed", "month_of_day", "month_start_day"]

_NAN = np.nan
_YEAR = 365.25 * 86400.0
_MONTH_DAYS = 30.4375


@njit(nogil=True, cache=True)
def _touch(ov: np.ndarray, used: np.ndarray, m: int, lo: int, hi: int) -> int:
    """Overlay slot of month ``m`` (created on first touch), or -1 outside ``[lo, hi]``."""
    if m < lo or m > hi:
        return -1
    a = hi - m
    if not used[a]:
        used[a] = True
        ov[a, MONTH] = m
    return a


@njit(nogil=True, cache=True)
def _advance(
    buf: np.ndarray,
    base: int,
    d0: int,
    a0: int,
    p0: int,
    ps: int,
    pc: int,
    r0: int,
    rs: int,
    rd: int,
    end: int,
    ov: np.ndarray,
    used: np.ndarray,
    lo: int,
    hi: int,
    c: np.ndarray,
) -> None:
    """``state._advance`` for the loan whose header is at ``buf[base:]`` (due days at ``d0``,
    amounts at ``a0``, pending entries at ``p0`` every ``ps`` ints, day first, cents at ``+pc``;
    pending reports at ``r0`` every ``rs`` ints, day first, days past due, owed and class at
    ``+rd``) with its pending entries and reports before ``end``; the sink is the overlay
    indexed by age (months outside ``[lo, hi]`` are not read by the caller, so they are not
    written). Leaves the cursor in ``c`` (the report cursor in ``c[8:13]``). Shared by the
    feature replay (packed layout) and the state kernel's fold (``_state_kernel``'s slots)."""
    nd = buf[base + _ND]
    npend = buf[base + _NPEND]
    nrep = buf[base + _NREP]
    r_day = buf[base + _R_DAY]
    r_due = buf[base + _R_DUE]
    r_owed = buf[base + _R_OWED]
    r_paid = buf[base + _R_PAID]
    r_cat = buf[base + _R_CAT]
    short = buf[base + _SHORT]
    cur = buf[base + _F_DAY]
    paid = buf[base + _PAID]
    u = buf[base + _U]
    s_u = buf[base + _S_U]
    n = buf[base + _N]
    s_n = buf[base + _S_N]
    consec = buf[base + _CONSEC]
    last30 = buf[base + _LAST30]
    ne = 0
    while ne < npend and buf[p0 + ps * ne] < end:
        ne += 1
    nr = 0
    while nr < nrep and buf[r0 + rs * nr] < end:
        nr += 1
    i = 0
    j = 0
    while True:
        nxt = buf[p0 + ps * i] if i < ne else end
        if j < nr and buf[r0 + rs * j] < nxt:
            nxt = buf[r0 + rs * j]
        seg_end = nxt - 1
        if seg_end >= cur:
            while n < nd and buf[d0 + n] <= seg_end:
                a = _touch(ov, used, month_of_day(buf[d0 + n]), lo, hi)
                amt = buf[a0 + n]
                if a >= 0:
                    ov[a, DUE] += amt
                if n >= u:
                    if a >= 0:
                        ov[a, LATE] += 1
                    consec += 1
                else:
                    consec = 0
                if n < 63 and (short >> n) & 1 and a >= 0:
                    ov[a, PREDUE_SHORT] += 1
                s_n += amt
                n += 1
            # a report in force: its arrears if any (reported.arrears_day); else the oldest
            # unpaid instalment
            du = -1
            has_du = False
            if r_day >= 0:
                if r_owed != 0 and (r_owed < 0 or r_paid < r_owed):
                    du = r_due
                    has_du = True
            elif u < nd:
                du = buf[d0 + u]
                has_du = True
            if has_du and seg_end > du:
                m = month_of_day(max(cur, du + 1))
                me = month_of_day(seg_end)
                while m <= me:
                    d = min(month_start_day(m + 1) - 1, seg_end) - du
                    a = _touch(ov, used, m, lo, hi)
                    if a >= 0 and d > ov[a, DPD_MAX]:
                        ov[a, DPD_MAX] = d
                    m += 1
                if seg_end - du >= 30:
                    last30 = seg_end
            cur = seg_end + 1
        if nxt >= end:
            break
        d = nxt
        tot = 0
        while i < ne and buf[p0 + ps * i] == d:
            tot += buf[p0 + ps * i + pc]
            i += 1
        if tot != 0 and r_day >= 0:
            r_paid += tot  # paid since the report in force
        while j < nr and buf[r0 + rs * j] == d:
            q = r0 + rs * j + rd
            r_day = d
            r_due = d - buf[q]
            r_owed = buf[q + 1]
            r_paid = 0
            r_cat = buf[q + 2]
            j += 1
        if tot:
            paid += tot
            a = _touch(ov, used, month_of_day(d), lo, hi)
            if a >= 0:
                ov[a, PAID] += tot
            while u < nd and s_u <= paid:
                if a >= 0:
                    ov[a, EARLY_SUM] += buf[d0 + u] - d
                    ov[a, SETTLED] += 1
                u += 1
                if u < nd:
                    s_u += buf[a0 + u]
            while u > 0:
                prev = s_u - buf[a0 + u] if u < nd else s_u
                if prev <= paid:
                    break
                u -= 1
                s_u = prev
    c[0] = cur
    c[1] = paid
    c[2] = u
    c[3] = s_u
    c[4] = n
    c[5] = s_n
    c[6] = consec
    c[7] = last30
    c[8] = r_day
    c[9] = r_due
    c[10] = r_owed
    c[11] = r_paid
    c[12] = r_cat


@njit(nogil=True, cache=True)
def _newer(buf: np.ndarray, a: int, b: int) -> bool:
    """Whether the loan at ``buf[a:]`` sorts after the one at ``buf[b:]`` by (opened, hash)."""
    return (buf[a + _OPENED], buf[a + _H]) > (buf[b + _OPENED], buf[b + _H])


@njit(nogil=True, cache=True)
def _big(x: int) -> bool:
    return x >= _MONEY_LIMIT or x <= -_MONEY_LIMIT


@njit(nogil=True, cache=True)
def fill_packed(
    buf: np.ndarray,
    as_of: float,
    day: int,
    month: int,
    pre_due_days: int,
    years_in_business: float,
    holding_years: float,
    out: np.ndarray,
    cls: np.ndarray,
) -> int:
    """Write the feature row of the packed state at ``as_of`` into ``out`` and the worst
    five-category class the lender reports in force into ``cls[0]`` (-1: none); returns 1 if a
    loan is active, 0 if not, -1 if the kernel cannot reproduce the reference exactly (see
    module)."""
    nm = buf[_NM]
    nl = buf[_NL]
    npay = buf[_NP]
    lo = month - 12
    # settled months by age (0 = the as-of month), newest first as the reference walks them
    rows = np.zeros((13, _ROW), np.int64)
    has = np.zeros(13, np.bool_)
    for k in range(nm - 1, -1, -1):
        r = _HDR + k * _ROW
        m = buf[r]
        if m < lo:
            break
        if m <= month:
            a = month - m
            has[a] = True
            for f in range(_ROW):
                rows[a, f] = buf[r + f]
    # replay each loan's pending payments up to the end of the as-of day
    ov = np.zeros((13, _ROW), np.int64)
    used = np.zeros(13, np.bool_)
    c = np.empty(13, np.int64)
    dpd = 0
    cat = -1
    overdue = 0
    due_soon = 0
    consec = 0
    last30 = -1
    horizon = day + pre_due_days
    n_active = 0
    main = -1  # the newest active loan (by opening time, then hash), else the newest loan
    newest = -1
    opened_min = 0
    has_opened = False
    rate_up = False
    base = _HDR + nm * _ROW + npay
    for _j in range(nl):
        if newest < 0 or _newer(buf, base, newest):
            newest = base
        if buf[base + _CLOSED] < 0:
            n_active += 1
            if main < 0 or _newer(buf, base, main):
                main = base
            opened = buf[base + _OPENED]
            if opened >= 0 and (not has_opened or opened < opened_min):
                opened_min = opened
                has_opened = True
            if buf[base + _RATE0] >= 0 and buf[base + _RATE] > buf[base + _RATE0]:
                rate_up = True
        nd = buf[base + _ND]
        npend = buf[base + _NPEND]
        nrep = buf[base + _NREP]
        d0 = base + _LOAN
        a0 = d0 + nd
        r0 = a0 + nd + 2 * npend
        for f in (_PAID, _S_U, _S_N, _R_OWED, _R_PAID):
            if _big(buf[base + f]):
                return -1
        for k in range(nd):
            if _big(buf[a0 + k]):
                return -1
        for k in range(npend):
            if _big(buf[a0 + nd + 2 * k + 1]):
                return -1
        for k in range(nrep):
            if _big(buf[r0 + 4 * k + 2]):
                return -1
        if day >= buf[base + _F_DAY]:
            _advance(buf, base, d0, a0, a0 + nd, 2, 1, r0, 4, 1, day + 1, ov, used, lo, month, c)
        else:
            for f in range(8):
                c[f] = buf[base + _F_DAY + f]
            for f in range(5):
                c[8 + f] = buf[base + _R_DAY + f]
        paid = c[1]
        u = c[2]
        s_u = c[3]
        n = c[4]
        s_n = c[5]
        r_owed = c[10]
        r_paid = c[11]
        if c[8] >= 0:  # the lender's report in force: its DPD, class and overdue amount
            in_arrears = r_owed != 0 and (r_owed < 0 or r_paid < r_owed)
            if in_arrears and c[9] < day and day - c[9] > dpd:
                dpd = day - c[9]
            if c[12] > cat:
                cat = c[12]
        elif u < nd and buf[d0 + u] < day and day - buf[d0 + u] > dpd:
            dpd = day - buf[d0 + u]
        if c[8] >= 0 and r_owed >= 0:
            if r_paid < r_owed:
                overdue += r_owed - r_paid
        elif s_n > paid:
            overdue += s_n - paid
        k = max(u, n)
        if k < nd and buf[d0 + k] <= horizon:
            due_soon += (s_u - paid) if k == u else buf[a0 + k]
            k += 1
            while k < nd and buf[d0 + k] <= horizon:
                due_soon += buf[a0 + k]
                k += 1
        consec = max(consec, c[6])
        last30 = max(last30, c[7])
        base = r0 + 4 * nrep
    fig = np.full(LINE_FIGURES, _NAN)
    if base < len(buf):  # credit lines, packed after the loans
        if line_fill(buf, base, day, lo, month, ov, used, fig) < 0:
            return -1
        dpd = max(dpd, int(fig[F_DPD]))
        overdue += int(fig[F_OVERDUE])
        cat = max(cat, int(fig[F_CAT]))
        last30 = max(last30, int(fig[F_LAST30]))
        n_active += int(fig[F_OPEN])
        if fig[F_OPENED] >= 0 and (not has_opened or fig[F_OPENED] < opened_min):
            opened_min = int(fig[F_OPENED])
            has_opened = True
    if _big(overdue) or _big(due_soon):
        return -1
    for a in range(13):
        if not used[a]:
            continue
        if not has[a]:
            has[a] = True
            for f in range(_ROW):
                rows[a, f] = ov[a, f]
            continue
        if ov[a, DPD_MAX] > rows[a, DPD_MAX]:
            rows[a, DPD_MAX] = ov[a, DPD_MAX]
        for f in range(LATE, PREDUE_SHORT + 1):
            rows[a, f] += ov[a, f]
    for a in range(13):
        if has[a]:
            for f in _MONEY:
                if _big(rows[a, f]):
                    return -1

    # -- features._fill -----------------------------------------------------------------------
    dpd3 = dpd
    dpd6 = dpd
    dpd12 = dpd
    late3 = late6 = late12 = bounced1 = bounced3 = predue3 = 0
    paid3 = due3 = early3 = settled3 = bal_sum3 = bal_n3 = 0
    bal_min3 = 0
    has_min3 = False
    means6 = np.empty(6, np.float64)
    n6 = 0
    in_last = in6 = seen6 = in11 = seen11 = 0
    for age in range(13):
        if not has[age]:
            continue
        inflow = rows[age, INFLOW]
        if age >= 2:
            in11 += inflow
            seen11 += 1
            if age <= 7:
                in6 += inflow
                seen6 += 1
        elif age == 1:
            in_last = inflow
        if age > 11:
            continue
        d = rows[age, DPD_MAX]
        late = rows[age, LATE]
        bal_sum = rows[age, BAL_SUM]
        bal_n = rows[age, BAL_N]
        if d > dpd12:
            dpd12 = d
        late12 += late
        if age < 6:
            if d > dpd6:
                dpd6 = d
            late6 += late
            if bal_n:
                means6[n6] = bal_sum / bal_n
                n6 += 1
            if age < 3:
                if d > dpd3:
                    dpd3 = d
                late3 += late
                bounced3 += rows[age, BOUNCED]
                if age == 0:
                    bounced1 = rows[age, BOUNCED]
                predue3 += rows[age, PREDUE_SHORT]
                paid3 += rows[age, PAID]
                due3 += rows[age, DUE]
                early3 += rows[age, EARLY_SUM]
                settled3 += rows[age, SETTLED]
                if bal_n:
                    bal_sum3 += bal_sum
                    bal_n3 += bal_n
                    if not has_min3 or rows[age, BAL_MIN] < bal_min3:
                        bal_min3 = rows[age, BAL_MIN]
                        has_min3 = True
    bal = buf[_BAL]
    bal_short = buf[_BAL_T] >= 0 and due_soon > 0 and bal < due_soon

    if n6 >= 2:
        mu = 0.0
        for k in range(n6):
            mu += means6[k]
        mu = mu / n6
        var = 0.0
        for k in range(n6):
            dev = means6[k] - mu
            var += dev * dev
        var = var / (n6 - 1)
        vol = np.sqrt(var) / max(abs(mu), 100.0)
    else:
        vol = _NAN

    if main < 0:
        main = newest
    payers3 = 0
    p0 = _HDR + nm * _ROW
    for k in range(npay):
        if buf[p0 + k] >= month - 2:
            payers3 += 1
    profile_t = buf[_PROFILE_T]
    if profile_t >= 0:
        elapsed = max(0.0, (as_of - profile_t) / _YEAR)
        years = years_in_business + elapsed
        holding = holding_years + elapsed
    else:
        years = _NAN
        holding = _NAN
    last_credit = buf[_LAST_CREDIT]

    if not cash_fill(rows, has, bal, buf[_BAL_T] >= 0, _MONEY_LIMIT, out[33:36]):
        return -1  # (the cash-flow features, written first: the reference rewrites the row)

    out[0] = dpd
    out[1] = dpd3
    out[2] = dpd6
    out[3] = dpd12
    out[4] = (day - last30) // _MONTH_DAYS if last30 >= 0 else _NAN
    out[5] = late3
    out[6] = late6
    out[7] = late12
    out[8] = consec
    out[9] = paid3 / due3 if due3 > 0 else _NAN
    out[10] = overdue / 100
    out[11] = early3 / settled3 if settled3 else _NAN
    out[12] = bounced1
    out[13] = bounced3
    out[14] = predue3
    out[15] = 1.0 if bal_short else 0.0
    out[16] = in_last * seen6 / in6 if in6 > 0 else _NAN
    out[17] = in_last * seen11 / in11 if in11 > 0 else _NAN
    out[18] = (as_of - last_credit) / 86400.0 if last_credit >= 0 else _NAN
    out[19] = payers3
    out[20] = bal_sum3 / bal_n3 / 100 if bal_n3 else _NAN
    out[21] = vol
    out[22] = bal_min3 / 100 if has_min3 else _NAN
    out[23] = 1.0 if rate_up else 0.0
    out[24] = buf[main + _REPAY] if main >= 0 and buf[main + _REPAY] >= 0 else _NAN
    out[25] = buf[main + _GUAR] if main >= 0 and buf[main + _GUAR] >= 0 else _NAN
    out[26] = years
    out[27] = holding
    out[28] = max(0.0, (as_of - opened_min) / 86400.0 // _MONTH_DAYS) if has_opened else _NAN
    for f in range(4):  # the credit-line features (NaN without lines)
        out[29 + f] = fig[F_FULL - 3 + f]
    cls[0] = cat
    return 1 if n_active > 0 else 0


@njit(nogil=True, cache=True)
def fill_many(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    as_of: np.ndarray,
    day: np.ndarray,
    pre_due_days: int,
    years_in_business: np.ndarray,
    holding_years: np.ndarray,
    out: np.ndarray,
    active: np.ndarray,
    cls: np.ndarray,
) -> None:
    """:func:`fill_packed` for many packed states in one call: state ``i`` is
    ``buf[starts[i]:ends[i]]``, its row goes to ``out[i]``, the return value to ``active[i]``
    and the reported class to ``cls[i]``; ``starts[i] < 0``: not packed, the row is left alone
    and ``active[i] = -2``."""
    for i in range(len(starts)):
        if starts[i] < 0:
            active[i] = -2
            continue
        active[i] = fill_packed(
            buf[starts[i] : ends[i]],
            as_of[i],
            day[i],
            month_of_day(day[i]),
            pre_due_days,
            years_in_business[i],
            holding_years[i],
            out[i],
            cls[i : i + 1],
        )
