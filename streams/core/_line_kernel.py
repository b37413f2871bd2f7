"""The numba twin of ``lines.line_figures`` and the line part of ``features._fill``.

A state's credit lines are packed after its loans in the feature kernel's buffer
(``_features_pack.pack_into`` calls :func:`pack_lines`); :func:`line_fill`, called by
``_features_kernel.fill_packed``, replays each line's pending payments and reports up to the end
of the as-of day, maxes the days' DPD into the month overlay and returns the figures the facts
and the four line features take. The reference stays ``streams/core/lines.py``:
``tests/unit/test_line_kernel.py`` holds the two to bit-equal rows on random line histories.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from streams.core._calendar import month_of_day, month_start_day
from streams.core.lines import S_DAY, S_DUE, S_MIN, Line
from streams.core.reported import Report
from streams.core.state import DPD_MAX, MONTH

__all__ = ["LINE_FIGURES", "line_fill", "pack_lines", "unpack_lines"]

# line header slots, then statements (7 each, as lines.Line keeps them), payments (day, cents),
# draws (day, cents), reports (day, dpd, owed, class)
_H, _OPENED, _CLOSED, _LIMIT, _F_DAY, _CREDIT, _MOVED, _LAST30 = range(8)
_R0 = 8  # the report cursor (day, due, owed, paid, class): -1, 0, 0, 0, -1 without reports
_NS, _NPAY, _NDRAW, _NREP = range(13, 17)
_LINE = 17
_ST = 7
_NO_REPORT = (-1, 0, 0, 0, -1)
_H_OFFSET = 1 << 63
_MONEY_LIMIT = 1 << 49
_NAN = np.nan
# line_fill's figures: dpd, overdue cents, class, last 30+ day, open lines, earliest opening of
# an open line (-1 none), and the four feature values
(F_DPD, F_OVERDUE, F_CAT, F_LAST30, F_OPEN, F_OPENED) = range(6)
F_UTIL, F_UTIL_MAX, F_RATIO, F_FULL = range(6, 10)
LINE_FIGURES = 10


def pack_lines(lines: list[Line], flat: list[int]) -> None:
    """Append the lines' feature inputs to ``flat`` (the packed state's ints)."""
    for line in lines:
        rep = line.report
        flat += (
            line.h - _H_OFFSET,
            line.opened_t,
            line.closed_t,
            line.limit,
            line.f_day,
            line.credit,
            line.moved,
            line.last30,
        )
        flat += _NO_REPORT if rep is None else rep.cursor()
        flat += (len(line.stmts), len(line.pays), len(line.draws))
        flat.append(0 if rep is None else len(rep.pending))
        for s in line.stmts:  # (time and id hash only order a day's statements: one is kept)
            flat += (s[0], 0, 0, s[3], s[4], s[5], s[6])
        for p in line.pays:
            flat += (p[0], p[2])
        for d in line.draws:
            flat += (d[0], d[2])
        if rep is not None:
            for r in rep.pending:
                flat += (r[0], r[3], r[4], r[5])


def unpack_lines(b: list[int], k: int) -> list[Line]:
    """The lines packed from ``b[k]`` on (what the figures read), for the reference."""
    out = []
    while k < len(b):
        ns, npay, ndraw, nrep = b[k + _NS], b[k + _NPAY], b[k + _NDRAW], b[k + _NREP]
        s0 = k + _LINE
        p0 = s0 + _ST * ns
        d0 = p0 + 2 * npay
        r0 = d0 + 2 * ndraw
        line = Line(
            b[k + _H] + _H_OFFSET,
            opened_t=b[k + _OPENED],
            closed_t=b[k + _CLOSED],
            limit=b[k + _LIMIT],
            stmts=[b[q : q + _ST] for q in range(s0, p0, _ST)],
            pays=[(b[q], 0, b[q + 1], 0) for q in range(p0, d0, 2)],
            draws=[(b[q], 0, b[q + 1]) for q in range(d0, r0, 2)],
            f_day=b[k + _F_DAY],
            credit=b[k + _CREDIT],
            moved=b[k + _MOVED],
            last30=b[k + _LAST30],
        )
        if b[k + _R0] >= 0 or nrep:
            rep = Report(line.h)
            rep.set_cursor(b[k + _R0 : k + _R0 + 5])
            rep.pending = [
                (b[q], 0, 0, b[q + 1], b[q + 2], b[q + 3]) for q in range(r0, r0 + 4 * nrep, 4)
            ]
            line.report = rep
        out.append(line)
        k = r0 + 4 * nrep
    return out


@njit(nogil=True, cache=True)
def _mark(ov: np.ndarray, used: np.ndarray, m: int, lo: int, hi: int, d: int) -> None:
    """Max ``d`` into the overlay row of month ``m`` (as ``_features_kernel._touch``)."""
    if m < lo or m > hi:
        return
    a = hi - m
    if not used[a]:
        used[a] = True
        ov[a, MONTH] = m
    if d > ov[a, DPD_MAX]:
        ov[a, DPD_MAX] = d


@njit(nogil=True, cache=True)
def _arrears(rc: np.ndarray) -> int:
    """``reported.arrears_day`` (-1: current)."""
    owed = rc[2]
    if owed == 0 or (owed > 0 and rc[3] >= owed):
        return -1
    return rc[1]


@njit(nogil=True, cache=True)
def _paid_in_window(buf: np.ndarray, s: int, p0: int, npay: int, upto: int) -> int:
    lo = buf[s + S_DAY]
    hi = min(buf[s + S_DUE], upto)
    paid = buf[s + 6]
    for q in range(npay):
        d = buf[p0 + 2 * q]
        if lo < d <= hi:
            paid += buf[p0 + 2 * q + 1]
    return paid


@njit(nogil=True, cache=True)
def line_fill(
    buf: np.ndarray,
    base: int,
    day: int,
    lo: int,
    hi: int,
    ov: np.ndarray,
    used: np.ndarray,
    fig: np.ndarray,
) -> int:
    """The lines packed from ``buf[base]`` to the end at the end of ``day``: DPD per month into
    the overlay (months ``lo .. hi``), the figures into ``fig`` (``LINE_FIGURES`` floats);
    -1 if a money figure is beyond what floats hold exactly (the reference then)."""
    n = len(buf)
    dpd = overdue = balance = limit = full_n = stmt_n = n_open = 0
    last30 = cat = opened_min = -1
    util_max6 = ratio = _NAN
    rc = np.empty(5, np.int64)
    win = day - 183  # lines.STATEMENT_WINDOW_DAYS
    k = base
    while k < n:
        line = k
        ns, npay, ndraw, nrep = buf[k + _NS], buf[k + _NPAY], buf[k + _NDRAW], buf[k + _NREP]
        s0 = k + _LINE
        p0 = s0 + _ST * ns
        d0 = p0 + 2 * npay
        r0 = d0 + 2 * ndraw
        if buf[k + _LIMIT] >= _MONEY_LIMIT or abs(buf[k + _MOVED]) >= _MONEY_LIMIT:
            return -1
        for q in range(ns):
            s = s0 + _ST * q
            if buf[s + 3] >= _MONEY_LIMIT or abs(buf[s + 6]) >= _MONEY_LIMIT:
                return -1
        for q in range(npay + ndraw):
            if abs(buf[p0 + 2 * q + 1]) >= _MONEY_LIMIT:
                return -1
        for f in range(5):
            rc[f] = buf[k + _R0 + f]
        credit = buf[k + _CREDIT]
        l30 = buf[k + _LAST30]
        # lines._walk from the line's cursor to the end of the day
        if day >= buf[k + _F_DAY]:
            cur = buf[k + _F_DAY]
            end = day + 1
            i = 0
            j = 0
            while True:
                nxt = end
                if i < npay and buf[p0 + 2 * i] < end:
                    nxt = buf[p0 + 2 * i]
                if j < nrep and buf[r0 + 4 * j] < nxt:
                    nxt = buf[r0 + 4 * j]
                seg_end = nxt - 1
                if seg_end >= cur:
                    du = -1
                    if rc[0] >= 0:
                        du = _arrears(rc)
                    else:
                        cum = 0
                        for q in range(ns):
                            cum += buf[s0 + _ST * q + S_MIN]
                            if cum > credit:
                                du = buf[s0 + _ST * q + S_DUE]
                                break
                    if du >= 0 and seg_end > du:
                        m = month_of_day(max(cur, du + 1))
                        me = month_of_day(seg_end)
                        while m <= me:
                            _mark(
                                ov, used, m, lo, hi, min(month_start_day(m + 1) - 1, seg_end) - du
                            )
                            m += 1
                        if seg_end - du >= 30:
                            l30 = seg_end
                    cur = seg_end + 1
                if nxt >= end:
                    break
                tot = 0
                while i < npay and buf[p0 + 2 * i] == nxt:
                    tot += buf[p0 + 2 * i + 1]
                    i += 1
                if tot != 0 and rc[0] >= 0:
                    rc[3] += tot
                while j < nrep and buf[r0 + 4 * j] == nxt:
                    q = r0 + 4 * j
                    rc[0] = nxt
                    rc[1] = nxt - buf[q + 1]
                    rc[2] = buf[q + 2]
                    rc[3] = 0
                    rc[4] = buf[q + 3]
                    j += 1
                if tot > 0:
                    issued = 0
                    for q in range(ns):
                        if buf[s0 + _ST * q + S_DAY] >= nxt:
                            break
                        issued += buf[s0 + _ST * q + S_MIN]
                    credit = max(credit, min(credit + tot, issued))
                elif tot < 0:
                    credit = max(credit + tot, 0)
        last30 = max(last30, l30)
        # lines.line_figures
        due_sum = 0
        cum = 0
        oldest = -1
        for q in range(ns):
            s = s0 + _ST * q
            cum += buf[s + S_MIN]
            if oldest < 0 and cum > credit:
                oldest = buf[s + S_DUE]
            if buf[s + S_DUE] <= day:
                due_sum = cum
        owes = -1
        if rc[0] >= 0:
            oldest = _arrears(rc)
            if rc[2] >= 0:
                owes = rc[2] - rc[3] if rc[3] < rc[2] else 0
            cat = max(cat, rc[4])
        if 0 <= oldest < day and day - oldest > dpd:
            dpd = day - oldest
        overdue += max(due_sum - credit, 0) if owes < 0 else owes
        k = r0 + 4 * nrep
        if buf[line + _CLOSED] >= 0:
            continue
        n_open += 1
        opened = buf[line + _OPENED]
        if opened >= 0 and (opened_min < 0 or opened < opened_min):
            opened_min = opened
        lim = buf[line + _LIMIT]
        # lines.balance_now
        last_s = -1
        for q in range(ns):
            if buf[s0 + _ST * q + S_DAY] > day:
                break
            last_s = q
        s_day = buf[s0 + _ST * last_s + S_DAY] if last_s >= 0 else -1
        bal = buf[s0 + _ST * last_s + 3] if last_s >= 0 else 0
        if last_s == ns - 1 and s_day < buf[line + _F_DAY]:
            bal += buf[line + _MOVED]
        for q in range(ndraw):
            d = buf[d0 + 2 * q]
            if s_day < d <= day:
                bal += buf[d0 + 2 * q + 1]
        for q in range(npay):
            d = buf[p0 + 2 * q]
            if s_day < d <= day:
                bal -= buf[p0 + 2 * q + 1]
        balance += max(bal, 0)
        limit += lim
        last = -1
        for q in range(ns):
            s = s0 + _ST * q
            if buf[s + S_DAY] > day:
                break
            if buf[s + S_DAY] >= win and lim > 0:
                u = buf[s + 3] / lim
                if not u <= util_max6:
                    util_max6 = u
            if buf[s + S_DUE] <= day:
                last = s
                if buf[s + S_DUE] >= win and buf[s + 3] > 0:
                    stmt_n += 1
                    if _paid_in_window(buf, s, p0, npay, day) >= buf[s + 3]:
                        full_n += 1
        if last >= 0 and buf[last + S_MIN] > 0:
            paid = _paid_in_window(buf, last, p0, npay, day)
            if abs(paid) >= _MONEY_LIMIT:
                return -1
            r = paid / buf[last + S_MIN]
            if not r >= ratio:
                ratio = r
    if abs(overdue) >= _MONEY_LIMIT or balance >= _MONEY_LIMIT or limit >= _MONEY_LIMIT:
        return -1
    fig[F_DPD] = dpd
    fig[F_OVERDUE] = overdue
    fig[F_CAT] = cat
    fig[F_LAST30] = last30
    fig[F_OPEN] = n_open
    fig[F_OPENED] = opened_min
    # features._line_columns
    if limit <= 0:
        fig[F_UTIL] = fig[F_UTIL_MAX] = fig[F_RATIO] = fig[F_FULL] = _NAN
        return 0
    now = balance / limit
    fig[F_UTIL] = now
    fig[F_UTIL_MAX] = util_max6 if util_max6 >= now else now
    fig[F_RATIO] = ratio
    fig[F_FULL] = full_n / stmt_n if stmt_n else _NAN
    return 0
