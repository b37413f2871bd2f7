"""Revolving credit lines: statements, minimum due, draws and the DPD of minimum-due arrears.

The readable reference of a line's delinquency and features (``_line_kernel`` is its numba
twin, inside the feature kernel; ``tests/unit/test_line_kernel.py`` holds the two equal).
:class:`~streams.core.state.CustomerState` keeps its lines beside its instalment loans and calls
this module from ``apply``, ``_fold`` and ``snapshot``; the convention is the producer
contract's (docs/events.md, "Credit lines"):

* A **statement** (day ``S``, balance ``B``, minimum ``M``, due day ``D >= S``) describes the
  line at the end of day ``S``. Of two statements of one line on one day, the later
  ``event_time`` stands.
* A **payment** on day ``p`` counts towards the minimums of the statements issued before it
  (``S < p``: a payment on the statement day is already in that statement's balance), oldest
  first. What exceeds those minimums reduces the balance only: it never pays a later
  statement's minimum, which the lender computes from the balance it leaves.
* The line is **past due** from the due day of the oldest statement whose minimum is not
  covered: at the end of day ``T``, ``T - D`` days when ``D < T`` (paying on the due day is on
  time), as for instalments. A reversal takes back what it reverses from the minimums covered,
  the newest covered first.
* A line the lender reports a delinquency status for takes the reported DPD from the report's
  day on, exactly as a loan does (:mod:`streams.core.reported`: aged a day per day, cured by a
  newer report or by payments after it adding up to its overdue amount).

In cumulative terms (what the walk keeps): ``credit`` = cents counted towards the kept
statements' minimums; a day's payments raise it to at most the sum of the minimums issued before
that day, a negative payment (a reversal older than the lateness bound) lowers it to at least 0.
Statement ``k`` is covered while ``credit >= M_0 + .. + M_k``.

Memory is bounded like the loans': payments and draws are folded once final (the state's fold
day), writing the days' DPD into the monthly rows; covered statements older than the feature
window are dropped; beyond ``MAX_STATEMENTS`` unpaid ones, the second oldest is merged into the
oldest (the oldest due day, and so the DPD, stays; only a customer four years behind has that).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import NamedTuple

import msgspec

from schemas.events import LineEvent, LoanEvent
from streams.core.delinquency import day_of, day_of_date, month_end_day, month_of_day
from streams.core.reported import PendingReport, Report, arrears_day, reported_overdue

__all__ = [
    "MAX_STATEMENTS",
    "STATEMENT_WINDOW_DAYS",
    "Line",
    "LineFigures",
    "add_draw",
    "add_statement",
    "apply_contract",
    "apply_line_event",
    "balance_now",
    "fold_line",
    "line_figures",
]

STATEMENT_WINDOW_DAYS = 183  # statements within this many days feed the 6-month features
MAX_STATEMENTS = 48
# statement row: day, event time, event-id hash, balance, minimum, due day (cents, days), and
# the cents paid in (day, due day] already folded
S_DAY, S_T, S_H, S_BAL, S_MIN, S_DUE, S_PAID = range(7)


class Line(msgspec.Struct, array_like=True):
    """One revolving credit line: limit, kept statements, pending payments and draws.

    ``pays`` are ``(day, id_hash, cents, reversed_id_hash)`` exactly as a loan's ``pending``
    (the state's reversal matching works on either); ``draws`` are ``(day, id_hash, cents)``.
    Cursor (days before ``f_day`` are final): ``credit`` (module docstring), ``moved`` the net
    cents drawn less paid after the newest statement folded already, ``last30`` the last day at
    30+ DPD (-1 never)."""

    h: int
    opened_t: int = -1
    closed_t: int = -1
    limit: int = 0  # cents
    limit_t: int = -1
    stmts: list[list[int]] = msgspec.field(default_factory=list)
    pays: list[tuple[int, int, int, int]] = msgspec.field(default_factory=list)
    draws: list[tuple[int, int, int]] = msgspec.field(default_factory=list)
    f_day: int = 0
    credit: int = 0
    moved: int = 0
    last30: int = -1
    report: Report | None = None  # the lender's delinquency statuses of the line, if any


def _cents(x: float) -> int:
    return round(x * 100)  # as ``state._cents``


def apply_contract(
    lines: list[Line], h: int, ev: LoanEvent, t: int, fold_day: int, max_lines: int
) -> None:
    """A line (id hash ``h``) opened, its limit changed, or closed, at whole second ``t``. A new
    line beyond ``max_lines`` evicts the one closed longest ago, else the oldest opened (as
    loans are evicted)."""
    line = next((x for x in lines if x.h == h), None)
    if line is None:
        line = Line(h, f_day=fold_day)
        lines.append(line)
        if len(lines) > max_lines:
            closed = [x for x in lines if x.closed_t >= 0]
            pool = closed or lines
            lines.remove(min(pool, key=lambda x: (x.closed_t if closed else x.opened_t, x.h)))
    if ev.kind == "opened":
        line.opened_t = t
    elif ev.kind == "closed":
        line.closed_t = max(line.closed_t, t)
    if ev.credit_limit is not None and t >= line.limit_t:
        line.limit, line.limit_t = _cents(ev.credit_limit), t


def apply_line_event(line: Line, ev: LineEvent, t: float, h: int) -> bool:
    """A draw or a statement (event time ``t``, id hash ``h``); False, and nothing changed,
    for a single draw above the line's limit."""
    day = day_of(t)
    if ev.kind == "draw":
        assert ev.amount is not None
        cents = _cents(ev.amount)
        if line.limit_t >= 0 and cents > line.limit:
            return False
        add_draw(line, day, h, cents)
        return True
    assert ev.balance is not None and ev.minimum_due is not None and ev.due_date is not None
    due = day_of_date(ev.due_date)
    add_statement(line, day, int(t), h, _cents(ev.balance), _cents(ev.minimum_due), due)
    return True


def add_statement(
    line: Line, day: int, t: int, h: int, balance: int, minimum: int, due: int
) -> None:
    """Keep a statement; of two on one day, the later event time (then id hash) stands."""
    stmts = line.stmts
    k = bisect_left(stmts, [day])
    if k < len(stmts) and stmts[k][S_DAY] == day:
        if (t, h) > (stmts[k][S_T], stmts[k][S_H]):
            stmts[k] = [day, t, h, balance, minimum, due, stmts[k][S_PAID]]
        return
    stmts.insert(k, [day, t, h, balance, minimum, due, 0])
    if k == len(stmts) - 1:  # the newest: what folded before it is in its balance
        line.moved = 0
    if len(stmts) > MAX_STATEMENTS:  # merge the second oldest into the oldest
        a, b = stmts[0], stmts.pop(1)
        a[S_MIN] += b[S_MIN]


def add_draw(line: Line, day: int, h: int, cents: int) -> None:
    insort(line.draws, (day, h, cents))


class _Walk(NamedTuple):
    credit: int
    last30: int


def _walk(
    stmts: list[list[int]],
    credit: int,
    last30: int,
    pays: list[tuple[int, int, int, int]],
    cur: int,
    end: int,
    dpd_max: dict[int, int],
    rc: list[int],
    reports: list[PendingReport],
) -> _Walk:
    """Days ``cur .. end - 1``: payments and reports (sorted, days in ``[cur, end)``) applied,
    the DPD of each month's days maxed into ``dpd_max`` (month -> days). ``rc``: the line's
    report cursor (``Report.cursor``), moved to ``end`` too; a day's payments count before its
    report, as ``state._advance`` does for a loan."""
    ns = len(stmts)
    prefix = [0] * (ns + 1)
    for k in range(ns):
        prefix[k + 1] = prefix[k] + stmts[k][S_MIN]
    i, npay = 0, len(pays)
    j, nrep = 0, len(reports)
    while True:
        nxt = pays[i][0] if i < npay else end
        if j < nrep and reports[j][0] < nxt:
            nxt = reports[j][0]
        seg_end = nxt - 1
        if seg_end >= cur:
            du: int | None = None
            if rc[0] >= 0:  # a report in force: its arrears, if any
                du = arrears_day(rc)
            else:
                u = 0  # the oldest statement not covered
                while u < ns and prefix[u + 1] <= credit:
                    u += 1
                if u < ns:
                    du = stmts[u][S_DUE]
            if du is not None and seg_end > du:
                m = month_of_day(max(cur, du + 1))
                me = month_of_day(seg_end)
                while m <= me:
                    d = min(month_end_day(m), seg_end) - du
                    if d > dpd_max.get(m, 0):
                        dpd_max[m] = d
                    m += 1
                if seg_end - du >= 30:
                    last30 = seg_end
            cur = seg_end + 1
        if nxt >= end:
            break
        tot = 0
        while i < npay and pays[i][0] == nxt:
            tot += pays[i][2]
            i += 1
        if tot and rc[0] >= 0:
            rc[3] += tot  # paid since the report in force
        while j < nrep and reports[j][0] == nxt:
            _d, _t, _h, rdpd, owed, cat = reports[j]
            rc[:] = [nxt, nxt - rdpd, owed, 0, cat]
            j += 1
        if tot > 0:
            issued = bisect_left(stmts, [nxt])  # statements of days before nxt
            credit = max(credit, min(credit + tot, prefix[issued]))
        elif tot < 0:
            credit = max(credit + tot, 0)
    return _Walk(credit, last30)


def _paid_in_window(stmt: list[int], pays: list[tuple[int, int, int, int]], upto: int) -> int:
    """Cents paid in ``(day, min(due, upto)]`` of a statement: folded part + pending part."""
    lo, hi = stmt[S_DAY], min(stmt[S_DUE], upto)
    paid = stmt[S_PAID]
    for d, _h, cents, _r in pays:
        if lo < d <= hi:
            paid += cents
    return paid


def fold_line(line: Line, fold_day: int, dpd_max: dict[int, int]) -> None:
    """Settle the line's days before ``fold_day`` (no earlier event can arrive now): the days'
    DPD into ``dpd_max``, payments and draws into the cursor, old covered statements dropped."""
    if line.f_day >= fold_day:
        return
    stmts = line.stmts
    k = bisect_left(line.pays, (fold_day,))
    done = line.pays[:k]
    rep = line.report
    rc = rep.cursor() if rep is not None else [-1, 0, 0, 0, -1]
    kr = bisect_left(rep.pending, (fold_day,)) if rep is not None else 0
    reports = rep.pending[:kr] if rep is not None else []
    w = _walk(stmts, line.credit, line.last30, done, line.f_day, fold_day, dpd_max, rc, reports)
    line.credit, line.last30 = w.credit, w.last30
    if rep is not None:
        rep.set_cursor(rc)
        del rep.pending[:kr]
    for s in stmts:  # the folded payments' part of each statement's window
        for d, _h, cents, _r in done:
            if s[S_DAY] < d <= s[S_DUE]:
                s[S_PAID] += cents
    newest = stmts[-1][S_DAY] if stmts else -1  # every statement folded is before fold_day
    kd = bisect_left(line.draws, (fold_day,))
    line.moved += sum(c for d, _h, c in line.draws[:kd] if d > newest)
    line.moved -= sum(c for d, _h, c, _r in done if d > newest)
    del line.draws[:kd]
    del line.pays[:k]
    line.f_day = fold_day
    keep_from = fold_day - STATEMENT_WINDOW_DAYS - 31
    while (
        len(stmts) > 1
        and stmts[0][S_DUE] < keep_from
        and stmts[0][S_MIN] <= line.credit
        and stmts[1][S_DAY] < fold_day
    ):
        line.credit -= stmts[0][S_MIN]
        del stmts[0]


def balance_now(line: Line, day: int) -> int:
    """Cents owed at the end of ``day``: the newest statement's balance, then the draws less
    the payments after it (never below 0)."""
    stmts = line.stmts
    k = bisect_left(stmts, [day + 1]) - 1
    s_day = stmts[k][S_DAY] if k >= 0 else -1
    bal = stmts[k][S_BAL] if k >= 0 else 0
    if k == len(stmts) - 1 and s_day < line.f_day:  # what folded after the newest statement
        bal += line.moved
    for d, _h, c in line.draws:
        if s_day < d <= day:
            bal += c
    for d, _h, c, _r in line.pays:
        if s_day < d <= day:
            bal -= c
    return max(bal, 0)


class LineFigures(NamedTuple):
    """A customer's lines at an as-of day (the reference of ``_line_kernel.line_figures``)."""

    dpd: int
    overdue: int  # cents of minimums due by the as-of day and not covered (or reported)
    cat: int  # the worst five-category class the lender reports in force on a line, -1 none
    last30: int
    balance: int  # cents owed on the open lines (their exposure)
    limit: int  # cents: the open lines' limits
    util_max6: float  # max statement balance / limit over the last 6 months (NaN none)
    pay_min_ratio: float  # paid / minimum of the newest statement due by now (worst line)
    full_n: int  # statements due in the last 6 months with a balance, paid in full
    stmt_n: int  # statements due in the last 6 months with a balance


_NAN = float("nan")


def line_figures(lines: list[Line], day: int, dpd_max: dict[int, int]) -> LineFigures:
    """Replay the pending payments of every line up to the end of ``day`` (DPD per month into
    ``dpd_max``) and read the figures the features and facts take."""
    dpd = overdue = balance = limit = full_n = stmt_n = 0
    last30 = cat = -1
    util_max6 = ratio = _NAN
    lo = day - STATEMENT_WINDOW_DAYS
    for line in lines:
        stmts = line.stmts
        credit, l30 = line.credit, line.last30
        rep = line.report
        rc = rep.cursor() if rep is not None else [-1, 0, 0, 0, -1]
        if day >= line.f_day:
            k = bisect_left(line.pays, (day + 1,))
            kr = bisect_left(rep.pending, (day + 1,)) if rep is not None else 0
            reports = rep.pending[:kr] if rep is not None else []
            w = _walk(stmts, credit, l30, line.pays[:k], line.f_day, day + 1, dpd_max, rc, reports)
            credit, l30 = w
        last30 = max(last30, l30)
        due_sum = 0
        cum = 0
        oldest_due = -1
        for s in stmts:
            cum += s[S_MIN]
            if oldest_due < 0 and cum > credit:
                oldest_due = s[S_DUE]
            if s[S_DUE] <= day:
                due_sum = cum
        owes = None
        if rc[0] >= 0:  # the lender's report in force
            du = arrears_day(rc)
            oldest_due = -1 if du is None else du
            owes = reported_overdue(rc)
            cat = max(cat, rc[4])
        if 0 <= oldest_due < day and day - oldest_due > dpd:
            dpd = day - oldest_due
        overdue += max(due_sum - credit, 0) if owes is None else owes
        if line.closed_t >= 0:
            continue
        balance += balance_now(line, day)
        limit += line.limit
        last = None
        for s in stmts:
            if s[S_DAY] > day:
                break
            if s[S_DAY] >= lo and line.limit > 0:
                u = s[S_BAL] / line.limit
                if not u <= util_max6:  # NaN-aware max
                    util_max6 = u
            if s[S_DUE] <= day:
                last = s
                if s[S_DUE] >= lo and s[S_BAL] > 0:
                    stmt_n += 1
                    if _paid_in_window(s, line.pays, day) >= s[S_BAL]:
                        full_n += 1
        if last is not None and last[S_MIN] > 0:
            r = _paid_in_window(last, line.pays, day) / last[S_MIN]
            if not r >= ratio:  # NaN-aware min
                ratio = r
    return LineFigures(dpd, overdue, cat, last30, balance, limit, util_max6, ratio, full_n, stmt_n)
