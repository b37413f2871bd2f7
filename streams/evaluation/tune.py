"""Fit the alert policy's numbers on evidence: search candidates, replay each, keep the best
that fits an alert budget.

The budget ``N`` is **actionable** (not ``watch``) alerts **opened** per 1,000 customers per
month: opened alerts with an event time inside the book's monitoring window (``Truth.start`` to
``Truth.end``; back-dated history before it is a one-off backlog, not a monthly volume) per
1,000 of the book's customers, per month (365.25 / 12 days) of that window.

Objective: among the candidates whose volume is at most ``N``, the highest **recall** (the share
of defaults whose first actionable alert came before their default: the report's caught
defaults), then the longest **median lead time** (days from that alert to the default), then
the smallest volume. Customer lift and the pre-delinquency share (the report's alert budget,
:mod:`streams.evaluation.budget`) are reported beside them, not optimised.

Candidates: the base policy first; then the **evidence ladder** (:func:`ladder`): the signals put
on the watch list one more at a time, lowest customer lift on the base policy's alerts first (the
report's rule: a signal that fires mostly on customers who never default belongs on the watch
list), each step also with M1 alone on the watch list, "only M2 and worse worked", and that rule
with ``high_risk`` at each PD threshold of :data:`SPACE` (M2 or a PD that high: the two triggers a
collections desk works); then a seeded random sample of the grid :data:`SPACE` (the grade
hysteresis, persistence, cool-down, expiry, inflow and PD thresholds) crossed with, per signal of
:data:`WATCH_KNOBS`, its base severity or ``watch`` for the whole signal (every level: an alert
opened on the watch list and escalated would be actionable work that no ``opened`` actionable alert
counts), and for the two signals with levels (``dpd_bucket``, ``grade_worsening``) also ``watch``
for the first level only: M1 or a one-notch worsening on the watch list, work from the next level
on (an escalation out of watch counts as actionable from then). The same seed gives the same
candidates. Each candidate is scored by replaying the recorded rescorings
(:mod:`streams.evaluation.replay`), not by a backtest.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas.events import Alert, Severity
from streams.core.policy import PolicyConfig
from streams.evaluation.budget import WATCH, actionable_starts, alert_budget
from streams.evaluation.capacity import DAY
from streams.evaluation.replay import Recording, replay
from streams.evaluation.report import Rescorings, Truth, alert_lead

__all__ = [
    "SPACE",
    "WATCH_KNOBS",
    "Candidate",
    "Outcomes",
    "TuneResult",
    "candidates",
    "ladder",
    "tune",
]

MONTH_DAYS = 365.25 / 12

#: the searched values of each number of :class:`PolicyConfig` (the base's value is added)
SPACE: dict[str, tuple[Any, ...]] = {
    "notches": (1, 2, 3, 4),
    "persist_rescorings": (2, 3, 5, 10),
    "persist_days": (7.0, 14.0, 30.0, 60.0),
    "cooldown_days": (7.0, 14.0, 30.0, 60.0, 90.0),
    "expiry_days": (30.0, 60.0, 90.0),
    "inflow_collapse_ratio": (0.1, 0.2, 0.3, 0.4),
    "high_risk_pd": (0.3, 0.4, 0.5, 0.6, 0.8),
}
#: signals a candidate may put on the watch list, whole
WATCH_KNOBS = ("grade_worsening", "dpd_bucket", "bounced_debit", "pre_due_shortfall",
               "inflow_collapse", "rate_increase")  # fmt: skip
_TABLES = {"grade_worsening": "grade_severity", "dpd_bucket": "bucket_severity"}


@dataclass(frozen=True)
class Outcomes:
    """What candidates are judged against: the book's truth and its rescorings."""

    truth: Truth
    rescorings: Rescorings  # customer, time, dpd: when each customer first missed
    horizon_days: float = 365.0
    default: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default", self.truth.default_array())

    @property
    def months(self) -> float:
        return (self.truth.end - self.truth.start) / DAY / MONTH_DAYS

    @classmethod
    def of(cls, rec: Recording, truth: Truth, horizon_days: float = 365.0) -> Outcomes:
        """For the recorded book (its customers must all be in ``truth``)."""
        c = rec.columns
        time = np.frombuffer(c.floats["event_time"], np.float64)
        dpd = np.frombuffer(c.ints["dpd"], np.int64)
        grade = np.frombuffer(c.ints["grade"], np.int64)
        score = np.frombuffer(c.floats["score"], np.float64)
        r = Rescorings.from_arrays(c.customer, time, score, grade, dpd, truth)
        return cls(truth, r, horizon_days)


@dataclass(frozen=True)
class Candidate:
    """One policy tried, and how it did."""

    index: int  # 0: the base policy
    config: PolicyConfig
    changes: str  # what differs from the base, short
    volume: float  # actionable alerts opened per 1,000 customers per month
    opened: int  # actionable alerts opened in the window
    watch: int  # watch-list alerts opened in the window
    recall: float | None  # share of defaults caught by an actionable alert before default
    caught: int
    defaults: int
    median_lead_days: float | None
    lift: float | None  # actionable customer precision over the base rate
    pre_delinquency_share: float | None
    replay_seconds: float
    signal_lift: dict[str, float | None] = field(default_factory=dict)  # by signal, all alerts

    def key(self) -> tuple[float, float, float, int]:
        """Sort key, best first: recall, median lead, then the smaller volume."""
        lead = -1.0 if self.median_lead_days is None else self.median_lead_days
        return (-(self.recall or 0.0), -lead, self.volume, self.index)


@dataclass
class TuneResult:
    """Every candidate tried, and those within the budget ranked."""

    budget: float
    candidates: list[Candidate]  # in the order tried; [0] is the base
    fitting: list[Candidate]  # within the budget (and at min_lift or more), best first
    seconds: float  # replays and scoring, all candidates

    @property
    def base(self) -> Candidate:
        return self.candidates[0]

    @property
    def chosen(self) -> Candidate | None:
        return self.fitting[0] if self.fitting else None

    @property
    def smallest(self) -> Candidate:
        return min(self.candidates, key=lambda c: (c.volume, c.index))


def _watch(cfg: PolicyConfig, signal: str) -> PolicyConfig:
    """``cfg`` with ``signal`` on the watch list (grade, dpd_bucket: every row of their table,
    so no alert of theirs can escalate from watch into an actionable severity)."""
    if signal in _TABLES:
        name = _TABLES[signal]
        table: dict[str, Any] = {name: tuple((lvl, WATCH) for lvl, _ in getattr(cfg, name))}
        return dataclasses.replace(cfg, **table)
    watch: Severity = "watch"
    sev = tuple((s, watch if s == signal else v) for s, v in cfg.signal_severity)
    return dataclasses.replace(cfg, signal_severity=sev)


def _watch_first(cfg: PolicyConfig, signal: str) -> PolicyConfig:
    """``cfg`` with the first level of a levelled signal (``dpd_bucket``: M1,
    ``grade_worsening``: the first notch row) on the watch list, the higher levels as they were."""
    name = _TABLES[signal]
    table = getattr(cfg, name)
    watch: Severity = "watch"
    rows: dict[str, Any] = {
        name: tuple((lvl, watch if i == 0 else sev) for i, (lvl, sev) in enumerate(table))
    }
    return dataclasses.replace(cfg, **rows)


def _first_watched(cfg: PolicyConfig) -> list[str]:
    """The levelled signals whose first level only is on the watch list."""
    out = []
    for s, name in _TABLES.items():
        sev = [v for _, v in getattr(cfg, name)]
        if sev[0] == WATCH and any(v != WATCH for v in sev[1:]):
            out.append(s)
    return out


def _watched(cfg: PolicyConfig) -> list[str]:
    sev: dict[str, Severity] = dict(cfg.signal_severity)
    tables = {s: {v for _, v in getattr(cfg, name)} for s, name in _TABLES.items()}
    return [s for s in WATCH_KNOBS if (tables[s] if s in tables else {sev[s]}) == {WATCH}]


def describe(cfg: PolicyConfig, base: PolicyConfig) -> str:
    """What ``cfg`` changes from ``base``, e.g. ``notches 3, cooldown_days 30, watch:
    bounced_debit``; ``base`` if nothing."""
    parts = [f"{k} {getattr(cfg, k):g}" for k in SPACE if getattr(cfg, k) != getattr(base, k)]
    watch = [s for s in _watched(cfg) if s not in _watched(base)]
    if watch:
        parts.append("watch: " + ",".join(watch))
    first = [s for s in _first_watched(cfg) if s not in _first_watched(base)]
    if first:
        parts.append("first level watch: " + ",".join(first))
    return ", ".join(parts) or "base"


def candidates(base: PolicyConfig, k: int, seed: int) -> list[PolicyConfig]:
    """``base`` and up to ``k - 1`` distinct others, drawn from the grid with ``seed``."""
    rng = random.Random(seed)
    grid = {name: sorted({*values, getattr(base, name)}) for name, values in SPACE.items()}
    out, seen = [base], {repr(base)}
    for _ in range(50 * k):  # the grid has ~10^5 points: duplicates are rare
        if len(out) >= k:
            break
        picked: dict[str, Any] = {n: rng.choice(v) for n, v in grid.items()}
        cfg = dataclasses.replace(base, **picked)
        for signal in WATCH_KNOBS:
            draw = rng.random()  # one draw per signal whatever it decides
            if draw < 0.5:
                cfg = _watch(cfg, signal)
            elif draw < 0.75 and signal in _TABLES:
                cfg = _watch_first(cfg, signal)
        if repr(cfg) not in seen:
            seen.add(repr(cfg))
            out.append(cfg)
    return out


def ladder(base: PolicyConfig, lift: dict[str, float | None]) -> list[PolicyConfig]:
    """The evidence candidates: the ``k`` lowest-lift signals of ``lift`` (the base policy's
    customer lift per signal; one that never fired counts lowest) whole on the watch list, for
    ``k`` = 1 .. all but one, each also with ``dpd_bucket``'s M1 alone on the watch list while
    the bucket signal is still worked; last, the collections desk's classic: only M2 and worse
    worked (every other signal and M1 on the watch list), alone and with ``high_risk`` at each
    searched PD threshold (``high_risk`` is no watch knob: off, at ``inf``, is its watch)."""
    order = sorted(WATCH_KNOBS, key=lambda s: (-1.0 if lift.get(s) is None else lift[s], s))
    out: list[PolicyConfig] = []
    for k in range(1, len(order)):
        cfg = base
        for signal in order[:k]:
            cfg = _watch(cfg, signal)
        out.append(cfg)
        if "dpd_bucket" not in order[:k]:
            out.append(_watch_first(cfg, "dpd_bucket"))
    m2 = base
    for signal in WATCH_KNOBS:
        m2 = _watch(m2, signal) if signal != "dpd_bucket" else _watch_first(m2, signal)
    out.append(m2)
    out += [dataclasses.replace(m2, high_risk_pd=p) for p in SPACE["high_risk_pd"]]
    return out


def judge(
    alerts: Sequence[Alert], out: Outcomes, index: int, cfg: PolicyConfig, changes: str,
    seconds: float,
) -> Candidate:  # fmt: skip
    """A candidate's numbers from its alerts (definitions: module docstring)."""
    truth = out.truth
    acted = actionable_starts(alerts)
    start, end = truth.start, truth.end
    in_window = sum(start <= a.event_time.timestamp() <= end for a in acted)
    watch = sum(
        a.status == "opened" and a.severity == WATCH and start <= a.event_time.timestamp() <= end
        for a in alerts
    )
    lead = alert_lead(acted, truth, out.default)
    budget = alert_budget(alerts, out.rescorings, truth, out.default, out.horizon_days)
    act = budget["actionable"]
    per = len(truth.customers) / 1000 * out.months
    return Candidate(
        index=index,
        config=cfg,
        changes=changes,
        volume=in_window / per if per > 0 else float("inf"),
        opened=in_window,
        watch=watch,
        recall=lead["caught_share"],
        caught=lead["caught"],
        defaults=lead["defaults"],
        median_lead_days=lead["median"],
        lift=act["lift"],
        pre_delinquency_share=act["pre_delinquency_share"],
        replay_seconds=seconds,
        signal_lift={s: m["lift"] for s, m in budget["by_signal"].items()},
    )


def tune(
    rec: Recording,
    out: Outcomes,
    base: PolicyConfig,
    budget: float,
    k: int = 50,
    seed: int = 1,
    progress: Callable[[Candidate], None] | None = None,
    min_lift: float | None = None,
) -> TuneResult:
    """Replay ``k`` candidates (the base, the evidence ladder, then random ones) and rank those
    within ``budget`` (and, with ``min_lift``, whose actionable customer lift reaches it: the
    objective does not weigh precision, so a collection team that wants its alerted customers
    to be worth the call says how much)."""
    t0 = time.monotonic()
    tried: list[Candidate] = []

    def run(cfg: PolicyConfig) -> Candidate:
        t = time.monotonic()
        alerts = replay(rec, cfg, delta_reasons=False)
        c = judge(alerts, out, len(tried), cfg, describe(cfg, base), time.monotonic() - t)
        tried.append(c)
        if progress is not None:
            progress(c)
        return c

    lift = run(base).signal_lift
    seen = {repr(base)}
    for cfg in ladder(base, lift) + candidates(base, k, seed)[1:]:
        if len(tried) >= k:
            break
        if repr(cfg) not in seen:
            seen.add(repr(cfg))
            run(cfg)
    fitting = sorted(
        (
            c
            for c in tried
            if c.volume <= budget and (min_lift is None or (c.lift or 0.0) >= min_lift)
        ),
        key=Candidate.key,
    )
    return TuneResult(budget, tried, fitting, time.monotonic() - t0)
