"""The early-warning report's numbers: how good are the warnings? Pure numpy computations.

The demo and the offline backtest fill the same inputs from the same pure pipeline the stream runs:
the alerts, one row per customer rescoring (:class:`Rescorings`), the ground truth
(:class:`Truth`) and the run's own figures (:class:`RunStats`). :func:`build_report` returns a
JSON-safe dict, which :mod:`streams.evaluation.report_render` writes as ``report.json``, a
self-contained ``report.html`` and a dozen lines for the terminal.

Definitions (all times are epoch seconds, UTC; a day is 86 400 s; ``H`` = ``horizon_days``):

* **Alerts by severity / signal**: counts of ``opened`` alerts (escalations, resolutions and
  expiries are counted separately under ``by_status``).
* **Grade migration**: per customer, its grade at the start of the evaluation window (its last
  rescoring at or before ``start + warm-up``, or its first rescoring if that came later) and the
  grade of its last rescoring (by event time, ties in input order); ``matrix[i][j]`` = customers
  starting in grade ``i`` and ending in grade ``j``. Customers never rescored are left out. The
  window start, not the first rescoring: a first rescoring happens at loan opening with no
  history yet, where most customers score alike.
* **Lead time** (alerts): a default is *caught* when the customer's first actionable alert
  record (opened, or escalated out of ``watch``; see ``budget.actionable_starts``) has an event
  time strictly before its default time; lead time = (default - that record) in days, over
  caught defaults. The DPD-only lead time uses the first rescoring at ``dpd >= 30`` instead.
* **Daily capacity**, the **evaluation window** and **AUC / KS**:
  :mod:`streams.evaluation.capacity`.
* **Alert budget** and **goals**: :mod:`streams.evaluation.budget` and
  :mod:`streams.evaluation.goals`. Lead times count actionable alerts (not ``watch``).
* **Outcome**: 90+ DPD by default; a lender's labels file names its own (``outcome``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from schemas.events import Alert
from streams.evaluation.budget import actionable_starts, alert_budget
from streams.evaluation.capacity import CAPACITIES, DAY, DPD_RULE, capacity, distribution
from streams.evaluation.goals import goals

__all__ = [
    "CAPACITIES",
    "Rescorings",
    "RunStats",
    "Truth",
    "build_report",
]


class _RescoringRow(Protocol):
    """What :meth:`Rescorings.from_rows` reads (``streams.core.policy.Observation`` fits)."""

    @property
    def customer_id(self) -> str: ...
    @property
    def event_time(self) -> float: ...
    @property
    def score(self) -> float: ...
    @property
    def grade(self) -> int: ...
    @property
    def dpd(self) -> int: ...


class _TruthRow(Protocol):
    """What :meth:`Truth.from_rows` reads (``streams.sim.simulate.TruthRow`` fits)."""

    @property
    def customer_id(self) -> str: ...
    @property
    def default_date(self) -> str: ...


@dataclass(frozen=True)
class Truth:
    """Ground truth: every customer of the book, each one's default time (None if none)."""

    customers: Sequence[str]
    default_time: Mapping[str, float | None]  # epoch s of reaching 90+ DPD
    start: float  # book start, epoch s
    end: float  # book end, epoch s

    @classmethod
    def from_rows(cls, rows: Iterable[_TruthRow], start: float, end: float) -> Truth:
        """From simulator truth rows: an ISO ``default_date`` is taken at that day's end (UTC)."""
        customers: list[str] = []
        dflt: dict[str, float | None] = {}
        for r in rows:
            customers.append(r.customer_id)
            if r.default_date:
                d = dt.datetime.fromisoformat(r.default_date).replace(tzinfo=dt.UTC)
                dflt[r.customer_id] = d.timestamp() + DAY
            else:
                dflt[r.customer_id] = None
        return cls(customers, dflt, start, end)

    def index(self) -> dict[str, int]:
        """Customer id -> position in :attr:`customers`."""
        return {c: i for i, c in enumerate(self.customers)}

    def default_array(self) -> np.ndarray:
        """Default time per customer position, ``inf`` for none."""
        out = np.full(len(self.customers), np.inf)
        for i, c in enumerate(self.customers):
            t = self.default_time.get(c)
            if t is not None:
                out[i] = t
        return out


@dataclass(frozen=True)
class Rescorings:
    """One row per customer rescoring, as parallel arrays; ``customer`` indexes Truth.customers."""

    customer: np.ndarray  # int64
    time: np.ndarray  # float64 epoch s
    score: np.ndarray  # float64, higher = safer
    grade: np.ndarray  # int64, 0 = best
    dpd: np.ndarray  # int64
    # the card's PD of the score and the exposure (outstanding principal), float64, for the
    # priority rule; None when not recorded (the rule is then left out)
    pd: np.ndarray | None = None
    exposure: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.customer)
        cols = (self.time, self.score, self.grade, self.dpd, self.pd, self.exposure)
        if any(a is not None and len(a) != n for a in cols):
            raise ValueError("rescoring arrays must have equal length")

    @classmethod
    def from_arrays(
        cls,
        customer_ids: Sequence[str],
        time: Sequence[float] | np.ndarray,
        score: Sequence[float] | np.ndarray,
        grade: Sequence[int] | np.ndarray,
        dpd: Sequence[int] | np.ndarray,
        truth: Truth,
        *,
        pd: Sequence[float] | np.ndarray | None = None,
        exposure: Sequence[float] | np.ndarray | None = None,
    ) -> Rescorings:
        """From customer id strings (all must be in ``truth.customers``) and value columns."""
        index = truth.index()
        try:
            cust = np.fromiter((index[c] for c in customer_ids), np.int64, len(customer_ids))
        except KeyError as exc:
            raise ValueError(f"rescored customer {exc.args[0]!r} is not in the truth") from None
        return cls(
            cust,
            np.asarray(time, dtype=np.float64),
            np.asarray(score, dtype=np.float64),
            np.asarray(grade, dtype=np.int64),
            np.asarray(dpd, dtype=np.int64),
            None if pd is None else np.asarray(pd, dtype=np.float64),
            None if exposure is None else np.asarray(exposure, dtype=np.float64),
        )

    @classmethod
    def from_rows(cls, rows: Iterable[_RescoringRow], truth: Truth) -> Rescorings:
        """From row objects with customer_id, event_time, score, grade, dpd."""
        rs = list(rows)
        return cls.from_arrays(
            [r.customer_id for r in rs],
            [r.event_time for r in rs],
            [r.score for r in rs],
            [r.grade for r in rs],
            [r.dpd for r in rs],
            truth,
        )


@dataclass(frozen=True)
class RunStats:
    """Figures of the run itself, passed through to the report."""

    events: int = 0
    events_per_s: float | None = None
    latency_p50_ms: float | None = None  # event-to-alert
    latency_p99_ms: float | None = None
    dead_letters: Mapping[str, int] = field(default_factory=dict)  # by reason
    duration_s: float | None = None
    workers: int | None = None


# ---- computations -------------------------------------------------------------------------


def _alert_counts(alerts: Sequence[Alert]) -> dict[str, Any]:
    opened = [a for a in alerts if a.status == "opened"]
    return {
        "opened": len(opened),
        "by_status": dict(sorted(Counter(a.status for a in alerts).items())),
        "by_severity": {
            s: n
            for s in ("watch", "blue", "yellow", "orange", "red")
            if (n := sum(a.severity == s for a in opened))
        },
        "by_signal": dict(Counter(a.signal for a in opened).most_common()),
        "customers_alerted": len({a.customer_id for a in opened}),
    }


def _migration(
    r: Rescorings, order: np.ndarray, n_customers: int, n_grades: int, since: float
) -> dict[str, Any]:
    """``order`` sorts the rescorings by time, stably (equal times keep input order); ``since``
    is the evaluation window's start."""
    if len(r.customer) == 0:
        return {"matrix": [[0] * n_grades for _ in range(n_grades)], "customers": 0}
    if r.grade.min() < 0 or r.grade.max() >= n_grades:
        raise ValueError(f"grade index outside 0..{n_grades - 1}")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    first = np.full(n_customers, len(order))
    last = np.full(n_customers, -1)
    at_start = np.full(n_customers, -1)
    np.minimum.at(first, r.customer, rank)
    np.maximum.at(last, r.customer, rank)
    before = r.time <= since
    np.maximum.at(at_start, r.customer[before], rank[before])
    seen = last >= 0
    from_rank = np.where(at_start >= 0, at_start, first)
    start, end = r.grade[order[from_rank[seen]]], r.grade[order[last[seen]]]
    m = np.zeros((n_grades, n_grades), dtype=np.int64)
    np.add.at(m, (start, end), 1)
    return {"matrix": m.tolist(), "customers": int(seen.sum())}


def alert_lead(starts: Sequence[Alert], truth: Truth, default: np.ndarray) -> dict[str, Any]:
    """Caught defaults and lead times from the alert records ``starts`` (each counted as it is:
    the caller picks them, e.g. :func:`~streams.evaluation.budget.actionable_starts`)."""
    index = truth.index()
    first = np.full(len(default), np.inf)
    for a in starts:
        i = index.get(a.customer_id)
        if i is None:
            raise ValueError(f"alerted customer {a.customer_id!r} is not in the truth")
        first[i] = min(first[i], a.event_time.timestamp())
    in_book = np.isfinite(default)
    caught = in_book & (first < default)
    out = distribution((default[caught] - first[caught]) / DAY)
    out["defaults"] = int(in_book.sum())
    out["caught"] = int(caught.sum())
    out["caught_share"] = float(caught.sum() / in_book.sum()) if in_book.any() else None
    return out


def _dpd_lead(r: Rescorings, default: np.ndarray) -> dict[str, Any]:
    first = np.full(len(default), np.inf)
    m = r.dpd >= DPD_RULE
    np.minimum.at(first, r.customer[m], r.time[m])
    caught = np.isfinite(default) & (first < default)
    out = distribution((default[caught] - first[caught]) / DAY)
    out["caught"] = int(caught.sum())
    return out


def build_report(
    alerts: Sequence[Alert],
    rescorings: Rescorings,
    truth: Truth,
    grade_names: Sequence[str],
    run: RunStats | None = None,
    *,
    horizon_days: float = 365.0,
    warmup_days: float = 60.0,
    snapshot_days: int = 30,
    outcome: str = "90+ DPD",
) -> dict[str, Any]:
    """Everything the report shows, as a JSON-safe dict (definitions: module docstring)."""
    if truth.end <= truth.start:
        raise ValueError("the book must end after it starts")
    if horizon_days <= 0 or warmup_days < 0 or snapshot_days < 1:
        raise ValueError("horizon_days > 0, warmup_days >= 0 and snapshot_days >= 1 required")
    if len(rescorings.customer) and (
        rescorings.customer.min() < 0 or rescorings.customer.max() >= len(truth.customers)
    ):
        raise ValueError("rescoring customer index outside the truth's customers")
    default = truth.default_array()
    order = np.argsort(rescorings.time, kind="stable")
    cap = capacity(rescorings, order, truth, default, horizon_days, warmup_days, snapshot_days)
    # watch-list alerts are not worked: lead times and goals are the actionable alerts'
    lead = alert_lead(actionable_starts(alerts), truth, default)
    budget = alert_budget(alerts, rescorings, truth, default, horizon_days)
    run = run or RunStats()
    report: dict[str, Any] = {
        "book": {
            "customers": len(truth.customers),
            "defaults": lead["defaults"],
            "start": truth.start,
            "end": truth.end,
            "days": (truth.end - truth.start) / DAY,
            "rescorings": len(rescorings.customer),
        },
        "horizon_days": horizon_days,
        "outcome": outcome,
        "grade_names": list(grade_names),
        "alerts": _alert_counts(alerts),
        "grade_migration": _migration(
            rescorings, order, len(truth.customers), len(grade_names), cap["window"]["start"]
        ),
        "lead_time_days": lead,
        "alert_budget": budget,
        "dpd_only_lead_time_days": _dpd_lead(rescorings, default),
        "evaluation_window": cap["window"],
        "capacity": cap["capacity"],
        "discrimination": cap["discrimination"],
        "run": {**asdict(run), "dead_letters": dict(run.dead_letters)},
    }
    report["goals"] = goals(lead, cap["capacity"], budget, cap["window"]["horizon_censored"])
    return report


# ---- writers --------------------------------------------------------------------------------
