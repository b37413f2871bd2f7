"""The alert policy's quiet path for a whole batch, in one numba call.

Most rescorings raise no alert: no signal fires, or what fires is absorbed (an open alert of
that signal at the same or a higher level, a cool-down no worse than it), and no open alert
resolves or expires. For those, :func:`streams.core.policy.decide` only updates a few numbers of the
policy state (clock, last grade and score, reference, persistence count, last bucket, edge flags,
the cool-downs still running) and, if the grade moved, emits a grade change; building an
``Observation`` and running ``decide`` for each would dominate the worker's policy time.
:func:`quiet_pass` walks a batch's rescorings in order and applies exactly ``decide``'s state
update to every one that is quiet, marking those whose grade moved (the caller builds their
record with :func:`streams.core.policy.grade_change`, as ``decide`` does); a rescoring that is not
quiet (it would open, escalate, resolve or expire an alert) goes to ``decide`` through the
caller's callback, and the kernel goes on with that customer's later rescorings from
``decide``'s state (rounds: one kernel call, then each customer's first loud rescoring, until
none is left; a handful of rounds per batch). The live-quality moments are loud too (reaching
:data:`~streams.core.quality.DEFAULT_DPD`, and the first 0 DPD after it: once per spell), so
``decide`` alone counts defaults and alert endings, and the kernel never changes the state's
``first_alert`` and ``settled``. ``decide`` stays the reference: the kernel
emits nothing itself, and ``tests/unit/test_policy_kernel.py`` holds the two to the same
states and records on random observation sequences, from states with open alerts and
cool-downs too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

import numpy as np
from numba import njit

from streams.core.policy import (
    _BOUNCED,
    _DAY,
    _DPD,
    _GRADE,
    _HIGH,
    _INFLOW,
    _PRE_DUE,
    _RATE,
    SIGNALS,
    PolicyContext,
)
from streams.core.policy_state import (
    _ARREARS_SEEN,
    _HIGH_ON,
    _IN_DEFAULT,
    _INFLOW_ON,
    _KEPT,
    _PRE_DUE_ON,
    _RATE_ON,
    Cooldown,
    OpenAlert,
    PolicyState,
)
from streams.core.quality import DEFAULT_DPD

_N_SIGNALS = len(SIGNALS)

__all__ = ["DecideRow", "Quiet", "QuietInputs", "quiet_pass", "warm_up"]


@dataclass(frozen=True, slots=True)
class QuietInputs:
    """One batch of rescorings as columns (row i = the i-th rescoring, in arrival order)."""

    customer: np.ndarray  # int64: index into the batch's customers
    event_time: np.ndarray  # float64 epoch s
    score: np.ndarray  # float64
    grade: np.ndarray  # int64
    points: np.ndarray  # int64 (n, characteristics)
    bucket: np.ndarray  # int64
    new_bounced_debits: np.ndarray  # int64
    pre_due_shortfall: np.ndarray  # bool
    inflow_ratio: np.ndarray  # float64, NaN = unknown
    rate_increased: np.ndarray  # bool
    has_arrears: np.ndarray  # bool
    active_loan: np.ndarray  # bool
    dpd: np.ndarray  # int64: days past due (the live-quality default moments)
    pd: np.ndarray  # float64: the card's PD (high_risk)


@njit(nogil=True, cache=True)
def _quiet(
    cust: np.ndarray,
    t: np.ndarray,
    score: np.ndarray,
    grade: np.ndarray,
    points: np.ndarray,
    bucket: np.ndarray,
    bounced: np.ndarray,
    pre_due: np.ndarray,
    inflow: np.ndarray,
    rate: np.ndarray,
    arrears: np.ndarray,
    active: np.ndarray,
    dpd: np.ndarray,
    pd: np.ndarray,
    busy: np.ndarray,
    stop: np.ndarray,
    force: np.ndarray,
    any_open: np.ndarray,
    open_level: np.ndarray,
    open_changed: np.ndarray,
    cool_until: np.ndarray,
    cool_level: np.ndarray,
    card_ok: np.ndarray,
    ref_grade: np.ndarray,
    ref_score: np.ndarray,
    ref_points: np.ndarray,
    last_grade: np.ndarray,
    last_score: np.ndarray,
    worse_count: np.ndarray,
    worse_since: np.ndarray,
    last_bucket: np.ndarray,
    flags: np.ndarray,
    clock: np.ndarray,
    changed: np.ndarray,
    replaced_ref: np.ndarray,
    notches_cfg: int,
    persist_rescorings: int,
    persist_s: float,
    collapse_ratio: float,
    high_pd: float,
    expiry_s: float,
    default_dpd: int,
    handled: np.ndarray,
    regraded: np.ndarray,
    old_grade: np.ndarray,
    old_score: np.ndarray,
) -> None:
    """``decide`` for the quiet rescorings; see the module docstring. Per-customer arrays are
    updated in place. Rows already ``handled`` (by an earlier call, or decided) are skipped; a
    customer's first loud row (every row if ``force[c]``) goes to ``stop[c]`` and makes it
    ``busy``: the rest of its rows wait for the next call. ``regraded[i]`` tells which handled
    rows moved the grade (from ``old_grade[i]``, ``old_score[i]``)."""
    for i in range(len(cust)):
        c = cust[i]
        if busy[c] or handled[i]:
            continue
        # a default, or the end of one: decide counts it (live quality)
        in_default = (flags[c] & _IN_DEFAULT) != 0
        if force[c] or (dpd[i] == 0 if in_default else dpd[i] >= default_dpd):
            busy[c] = True
            stop[c] = i
            continue
        g = grade[i]
        now_clock = max(clock[c], t[i])
        has_ref = ref_grade[c] >= 0
        # reference: cleared without an active loan, taken at the first rescoring of one or
        # when the scorecard changed, else kept
        if not active[i]:
            new_has, replaced = False, False
        elif not has_ref or not card_ok[c]:
            new_has, replaced = True, True
        else:
            new_has, replaced = True, False
        new_ref_grade = g if replaced else (ref_grade[c] if new_has else -1)
        f = flags[c] | (_ARREARS_SEEN if arrears[i] else 0)
        if not arrears[i]:
            in_band = not new_has or g - new_ref_grade < notches_cfg
            if ((f & _ARREARS_SEEN) != 0 and in_band) or not active[i]:
                if any_open[c]:  # decide resolves the open alerts: records
                    busy[c] = True
                    stop[c] = i
                    continue
                f &= ~_ARREARS_SEEN
        wc, ws = 0, 0.0
        if new_has and not replaced and has_ref and g > new_ref_grade:
            wc = worse_count[c] + 1
            ws = worse_since[c] if worse_count[c] > 0 else now_clock
        collapsed = not math.isnan(inflow[i]) and inflow[i] < collapse_ratio
        risky = pd[i] >= high_pd
        # the signals that fire, by level (-1: not fired), as decide computes them
        fired = np.full(_N_SIGNALS, -1, np.int64)
        if active[i] and new_has:
            notches = g - new_ref_grade
            if notches >= notches_cfg or (
                notches > 0 and wc >= persist_rescorings and now_clock - ws >= persist_s
            ):
                fired[_GRADE] = g
            if bucket[i] >= 1 and bucket[i] > last_bucket[c]:
                fired[_DPD] = bucket[i]
            if bounced[i] > 0:
                fired[_BOUNCED] = 0
            if pre_due[i] and (f & _PRE_DUE_ON) == 0:
                fired[_PRE_DUE] = 0
            if collapsed and (f & _INFLOW_ON) == 0:
                fired[_INFLOW] = 0
            if rate[i] and (f & _RATE_ON) == 0:
                fired[_RATE] = 0
            if risky and (f & _HIGH_ON) == 0:
                fired[_HIGH] = 0
        loud = False
        for sig in range(_N_SIGNALS):
            level = fired[sig]
            if open_level[c, sig] >= 0:
                # escalates (level above the open one's), or expires: records either way
                if level > open_level[c, sig] or now_clock - open_changed[c, sig] >= expiry_s:
                    loud = True
            elif level >= 0 and not (
                cool_until[c, sig] > now_clock and level <= cool_level[c, sig]
            ):
                loud = True  # opens: no cool-down holds it back
        if loud:
            busy[c] = True
            stop[c] = i
            continue
        f &= _KEPT
        if pre_due[i]:
            f |= _PRE_DUE_ON
        if collapsed:
            f |= _INFLOW_ON
        if rate[i]:
            f |= _RATE_ON
        if risky:
            f |= _HIGH_ON
        if replaced:
            ref_grade[c] = g
            ref_score[c] = score[i]
            ref_points[c, :] = points[i, :]
            card_ok[c] = True
            replaced_ref[c] = True
        elif not new_has:
            ref_grade[c] = -1  # its score and points are not read again (quiet_pass: 0.0, ())
        if g != last_grade[c]:  # a grade change record, which the caller builds
            regraded[i] = True
            old_grade[i] = last_grade[c]
            old_score[i] = last_score[c]
            last_grade[c] = g
        last_score[c] = score[i]
        worse_count[c] = wc
        worse_since[c] = ws
        last_bucket[c] = bucket[i]
        flags[c] = f
        clock[c] = now_clock
        changed[c] = True
        handled[i] = True


class Quiet(NamedTuple):
    """What :func:`quiet_pass` did with a batch."""

    decided: np.ndarray  # bool per rescoring: handed to ``decide_row`` (the loud ones)
    states: list[PolicyState | None]  # per customer: after its last rescoring, None: unchanged
    regraded: np.ndarray  # bool per rescoring: done here, and its grade moved: a grade change
    old_grade: np.ndarray  # int64 per rescoring: the grade before (where regraded)
    old_score: np.ndarray  # float64 per rescoring: the score before (where regraded)


DecideRow = Callable[[int, PolicyState], PolicyState]


class _Columns:
    """The batch's customers' policy states as the kernel's arrays (row ``c`` = customer
    ``c``), and back. Open alerts and cool-downs stay tuples beside their arrays."""

    def __init__(self, policies: list[PolicyState], k: int, tag: int) -> None:
        m = len(policies)
        self.k, self.tag = k, tag
        # one C-level pass per field (numpy item assignment per customer is much slower)
        cols = list(zip(*map(_FIELDS, policies), strict=True)) if m else [()] * len(_NAMES)
        rg, rs, rp, ct, lg, ls, wc, ws, lb, fl, ck, op, cd, fa, st = cols
        self.points: list[tuple[int, ...]] = list(rp)  # each reference's points, as a tuple
        self.open: list[tuple[OpenAlert, ...]] = list(op)
        self.cool: list[tuple[Cooldown, ...]] = list(cd)
        # live quality: only decide changes them (the kernel leaves those moments to it)
        self.first_alert: list[float] = list(fa)
        self.settled: list[float] = list(st)
        # a reference of another card's length: decide's, every rescoring
        self.force = np.array(
            [g >= 0 and len(p) != k for g, p in zip(rg, rp, strict=True)], np.bool_
        )
        self.any_open = np.array([bool(o) for o in op], np.bool_)
        self.open_level = np.full((m, _N_SIGNALS), -1, np.int64)
        self.open_changed = np.zeros((m, _N_SIGNALS), np.float64)
        self.cool_until = np.full((m, _N_SIGNALS), -math.inf)
        self.cool_level = np.zeros((m, _N_SIGNALS), np.int64)
        for c, (o, cds) in enumerate(zip(op, cd, strict=True)):
            if o or cds:
                self._alerts(c, o, cds)
        flat: list[int] = []
        zeros = (0,) * k
        for g, p in zip(rg, rp, strict=True):
            flat += p if g >= 0 and len(p) == k else zeros
        self.ref_points = np.array(flat, dtype=np.int64).reshape(m, k)
        self.card_ok = np.array([t == tag for t in ct], dtype=np.bool_)
        self.ref_grade = np.array(rg, dtype=np.int64)
        self.ref_score = np.array(rs, dtype=np.float64)
        self.last_grade = np.array(lg, dtype=np.int64)
        self.last_score = np.array(ls, dtype=np.float64)
        self.worse_count = np.array(wc, dtype=np.int64)
        self.worse_since = np.array(ws, dtype=np.float64)
        self.last_bucket = np.array(lb, dtype=np.int64)
        self.flags = np.array(fl, dtype=np.int64)
        self.clock = np.array(ck, dtype=np.float64)
        self.changed = np.zeros(m, np.bool_)
        self.replaced = np.zeros(m, np.bool_)

    def _alerts(self, c: int, op: tuple[OpenAlert, ...], cd: tuple[Cooldown, ...]) -> None:
        self.open_level[c] = -1
        self.cool_until[c] = -math.inf
        for a in op:
            self.open_level[c, a.signal] = a.level
            self.open_changed[c, a.signal] = a.changed_at
        for x in cd:
            self.cool_until[c, x.signal] = x.until
            self.cool_level[c, x.signal] = x.level

    def load(self, c: int, p: PolicyState) -> None:
        """Row ``c`` := ``p`` (a state ``decide`` returned)."""
        k = self.k
        fits = len(p.ref_points) == k
        self.force[c] = p.ref_grade >= 0 and not fits
        self.points[c], self.open[c], self.cool[c] = p.ref_points, p.open, p.cooldowns
        self.first_alert[c], self.settled[c] = p.first_alert, p.settled
        self.any_open[c] = bool(p.open)
        self._alerts(c, p.open, p.cooldowns)
        self.ref_points[c] = p.ref_points if p.ref_grade >= 0 and fits else (0,) * k
        self.card_ok[c] = p.card_tag == self.tag
        self.ref_grade[c], self.ref_score[c] = p.ref_grade, p.ref_score
        self.last_grade[c], self.last_score[c] = p.last_grade, p.last_score
        self.worse_count[c], self.worse_since[c] = p.worse_count, p.worse_since
        self.last_bucket[c], self.flags[c], self.clock[c] = p.last_bucket, p.flags, p.clock
        self.replaced[c] = False
        self.changed[c] = True

    def state(self, c: int) -> PolicyState:
        """Row ``c`` as a state (what ``decide`` gives after the same rescorings)."""
        return self._state(c, *[x.item(c) for x in self._scalars()])

    def states(self) -> list[PolicyState | None]:
        """Every changed row as a state (None: unchanged), with one conversion per column."""
        cols = [x.tolist() for x in self._scalars()]
        return [
            self._state(c, *row) if changed else None
            for c, (changed, *row) in enumerate(zip(self.changed.tolist(), *cols, strict=True))
        ]

    def _scalars(self) -> tuple[np.ndarray, ...]:
        """The per-customer columns ``_state`` takes, in its order."""
        return (
            self.ref_grade,
            self.ref_score,
            self.last_grade,
            self.last_score,
            self.worse_count,
            self.worse_since,
            self.last_bucket,
            self.flags,
            self.clock,
        )

    def _state(
        self,
        c: int,
        g: int,
        ref_score: float,
        last_grade: int,
        last_score: float,
        worse_count: int,
        worse_since: float,
        last_bucket: int,
        flags: int,
        clock: float,
    ) -> PolicyState:
        if g < 0:
            points: tuple[int, ...] = ()
        elif self.replaced[c]:
            points = tuple(self.ref_points[c].tolist())
        else:
            points = self.points[c]  # the reference it had (same values as the row)
        cool = self.cool[c]
        return PolicyState(
            g,
            ref_score if g >= 0 else 0.0,
            points,
            self.tag if g >= 0 else 0,
            last_grade,
            last_score,
            worse_count,
            worse_since,
            last_bucket,
            flags,
            clock,
            self.open[c],  # open alerts: unchanged by a quiet rescoring
            # decide keeps the cool-downs still running at its clock (monotone: the last one's)
            tuple([x for x in cool if x.until > clock]) if cool else (),
            self.first_alert[c],
            self.settled[c],
        )


def quiet_pass(
    policies: list[PolicyState],
    inputs: QuietInputs,
    ctx: PolicyContext,
    decide_row: DecideRow,
) -> Quiet:
    """Apply ``decide`` to a batch's rescorings: the kernel does the quiet ones, and hands each
    loud one (row ``i``) to ``decide_row(i, state before it)``, which runs ``decide`` (and keeps
    its records) and returns the new state; the kernel goes on from there. Rounds: one kernel
    call, then every customer's first loud row, until none is left.

    ``policies[c]`` is customer ``c``'s state before the batch. A regraded row emits
    ``policy.grade_change`` of its old and new grade, in its place among the customer's records.
    """
    m = len(policies)
    k = inputs.points.shape[1]
    cols = _Columns(policies, k, ctx.card_tag)
    n = len(inputs.customer)
    decided = np.zeros(n, np.bool_)
    handled = np.zeros(n, np.bool_)
    regraded = np.zeros(n, np.bool_)
    old_grade = np.empty(n, np.int64)
    old_score = np.empty(n, np.float64)
    busy = np.zeros(m, np.bool_)
    stop = np.full(m, -1, np.int64)
    cfg = ctx.config
    i64, f64, b = np.int64, np.float64, np.bool_  # one compiled signature, whatever came in
    rows = (
        inputs.customer.astype(i64, copy=False),
        inputs.event_time.astype(f64, copy=False),
        inputs.score.astype(f64, copy=False),
        inputs.grade.astype(i64, copy=False),
        np.ascontiguousarray(inputs.points, dtype=i64),
        inputs.bucket.astype(i64, copy=False),
        inputs.new_bounced_debits.astype(i64, copy=False),
        inputs.pre_due_shortfall.astype(b, copy=False),
        np.ascontiguousarray(inputs.inflow_ratio, dtype=f64),
        inputs.rate_increased.astype(b, copy=False),
        inputs.has_arrears.astype(b, copy=False),
        inputs.active_loan.astype(b, copy=False),
        inputs.dpd.astype(i64, copy=False),
        inputs.pd.astype(f64, copy=False),
    )
    while True:
        _quiet(
            *rows,
            busy,
            stop,
            cols.force,
            cols.any_open,
            cols.open_level,
            cols.open_changed,
            cols.cool_until,
            cols.cool_level,
            cols.card_ok,
            cols.ref_grade,
            cols.ref_score,
            cols.ref_points,
            cols.last_grade,
            cols.last_score,
            cols.worse_count,
            cols.worse_since,
            cols.last_bucket,
            cols.flags,
            cols.clock,
            cols.changed,
            cols.replaced,
            cfg.notches,
            cfg.persist_rescorings,
            cfg.persist_days * _DAY,
            cfg.inflow_collapse_ratio,
            cfg.high_risk_pd,
            cfg.expiry_days * _DAY,
            DEFAULT_DPD,
            handled,
            regraded,
            old_grade,
            old_score,
        )
        loud = np.flatnonzero(stop >= 0).tolist()
        if not loud:
            break
        at = stop[loud].tolist()
        for c, i in zip(loud, at, strict=True):
            before = cols.state(c) if cols.changed[c] else policies[c]
            cols.load(c, decide_row(i, before))
            decided[i] = handled[i] = True
        stop[loud] = -1
        busy[loud] = False
    return Quiet(decided, cols.states(), regraded, old_grade, old_score)


# every field in declaration order: quiet_pass unpacks them positionally (rg, rs, rp, ...)
_NAMES = PolicyState.__struct_fields__
_FIELDS = attrgetter(*_NAMES)


def warm_up(ctx: PolicyContext, characteristics: int) -> None:
    """Load (or compile) the kernel now rather than in the first batch."""
    e = np.empty(0)
    points = np.empty((0, characteristics))
    quiet_pass([], QuietInputs(e, e, e, e, points, e, e, e, e, e, e, e, e, e), ctx, _no_decide)


def _no_decide(i: int, state: PolicyState) -> PolicyState:  # pragma: no cover - never loud
    raise AssertionError("an empty batch has no loud rescoring")
