"""The early-warning report's daily-capacity section: which customers each rule flags on each
evaluation day, and what the flags catch; the AUC / KS snapshots are taken in the same pass.
Pure numpy; :func:`streams.evaluation.report.build_report` puts it in the report.

Definitions (times are epoch seconds, UTC; ``H`` = ``horizon_days``; the other report
definitions are in :mod:`streams.evaluation.report`):

* **Daily capacity**: evaluation day ``k`` is the instant ``t_k = start + (warm-up + k) days``.
  Each customer's latest score / DPD is that of its last rescoring at or before ``t_k``;
  customers not yet rescored or already defaulted (default <= ``t_k``) are not eligible. The
  daily volume is ``ceil(share x customers in the book)``.
  - *score rule*: flag the volume's lowest-score eligible customers (ties at the cut broken
    arbitrarily but deterministically);
  - *DPD-only rule*: flag eligible customers at ``dpd >= 30``, highest DPD first, at most the
    same volume (it may flag fewer);
  - *score rule at the DPD rule's volume*: the score rule at a fixed daily volume equal to the
    DPD rule's mean flags per day (rounded, at least 1 when the DPD rule flagged anyone, at most
    the capacity): the comparison at equal alert volume;
  - *priority rule* (when the rescorings carry PD and exposure): flag the volume's eligible
    customers with the highest expected loss = PD of the latest score x exposure of the latest
    rescoring (what ``riskmon queue`` orders by; ties at the cut broken arbitrarily but
    deterministically), and *priority rule at the DPD rule's volume* as for the score rule.
  A flag is a true positive when the customer defaults in ``(t_k, t_k + H]``.
  **Precision** = true-positive flags / flags over all days. **Recall** = defaulters with at least
  one true-positive flag / defaulters that could be caught, i.e. with a default in
  ``(t_first, t_last + H]``. **Lead time** of a rule = default - first true-positive flag, in days.
  **Expected loss caught** of a rule = the sum, over the defaulters it caught, of each one's
  exposure at the rule's first true-positive flag: once the default happened its expected loss
  is its exposure (loss given default is not modelled), and that is what the flag put in front
  of collections in time. None when the rescorings carry no exposure.
* **Evaluation window**: days from ``start + warm-up`` to ``end - H``. When the book is shorter
  than warm-up + horizon, the days run to ``end`` instead and outcomes are censored at ``end``
  (a flag counts as true only if the default is seen before the book ends): precision is then a
  lower bound, and ``horizon_censored`` is true. When the book is shorter than the warm-up, the
  warm-up is dropped.
* **AUC / KS**: every ``snapshot_days`` evaluation days, each eligible customer's latest score
  against "defaults in ``(t_k, t_k + H]``" (censored as above), pooled over snapshots; computed
  with :mod:`scoring.quality` (higher score = lower risk).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from scoring import quality

if TYPE_CHECKING:
    from streams.evaluation.report import Rescorings, Truth

__all__ = ["CAPACITIES", "DAY", "DPD_RULE", "capacity", "distribution"]

DAY = 86_400.0
CAPACITIES = (0.01, 0.05)  # daily alert capacity as a share of the book's customers
DPD_RULE = 30  # the DPD-only rule flags customers at this many days past due or more


def distribution(days: np.ndarray, bin_days: float = 30.0) -> dict[str, Any]:
    """Median, quartiles and a histogram of lead times in days."""
    if len(days) == 0:
        return {
            "count": 0,
            "median": None,
            "p25": None,
            "p75": None,
            "mean": None,
            "min": None,
            "max": None,
            "histogram": {"edges": [], "counts": []},
        }
    top = max(bin_days, math.ceil(float(days.max()) / bin_days) * bin_days)
    edges = np.arange(0.0, top + bin_days, bin_days)
    counts, _ = np.histogram(days, bins=edges)
    p25, med, p75 = np.percentile(days, [25, 50, 75])
    return {
        "count": len(days),
        "median": float(med),
        "p25": float(p25),
        "p75": float(p75),
        "mean": float(days.mean()),
        "min": float(days.min()),
        "max": float(days.max()),
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def _lowest(key: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest values of ``key`` (all when fewer)."""
    if k >= len(key):
        return np.arange(len(key))
    if k <= 0:
        return np.arange(0)
    return np.argpartition(key, k - 1)[:k]


@dataclass
class _Rule:
    """Running tallies of one flagging rule over the evaluation days."""

    n: int
    volume: int | None = None  # fixed daily volume, when it differs from the capacity's
    flags: int = 0
    tp: int = 0
    first_tp: np.ndarray = field(default_factory=lambda: np.empty(0))
    priced: bool = False  # the flags come with their exposure
    first_exposure: np.ndarray = field(default_factory=lambda: np.empty(0))  # at first_tp

    def __post_init__(self) -> None:
        self.first_tp = np.full(self.n, np.inf)
        self.first_exposure = np.zeros(self.n)

    def add(
        self,
        who: np.ndarray,
        t: float,
        default: np.ndarray,
        until: float,
        exposure: np.ndarray | None = None,
    ) -> None:
        """Day ``t``'s flags ``who`` (``exposure``: theirs that day, when priced)."""
        d = default[who]
        right = (d > t) & (d <= until)
        hit = who[right]
        self.flags += len(who)
        self.tp += len(hit)
        if self.priced:
            assert exposure is not None
            fresh = np.isinf(self.first_tp[hit])  # days come in order: first right flags
            self.first_exposure[hit[fresh]] = exposure[right][fresh]
        self.first_tp[hit] = np.minimum(self.first_tp[hit], t)

    def result(self, catchable: np.ndarray, default: np.ndarray, days: int) -> dict[str, Any]:
        caught = catchable & np.isfinite(self.first_tp)
        lead = distribution((default[caught] - self.first_tp[caught]) / DAY)
        lost = float(self.first_exposure[caught].sum()) if self.priced else None
        return {
            **({} if self.volume is None else {"daily_volume": self.volume}),
            "flags": self.flags,
            "flags_per_day": self.flags / days if days else 0.0,
            "true_positive_flags": self.tp,
            "precision": self.tp / self.flags if self.flags else None,
            "defaulters_caught": int(caught.sum()),
            "recall": float(caught.sum() / catchable.sum()) if catchable.any() else None,
            "lead_time_days": {k: lead[k] for k in ("count", "median", "p25", "p75")},
            "expected_loss_caught": lost,
        }


def capacity(
    r: Rescorings,
    order: np.ndarray,
    truth: Truth,
    default: np.ndarray,
    horizon_days: float,
    warmup_days: float,
    snapshot_days: int,
) -> dict[str, Any]:
    n = len(truth.customers)
    horizon = horizon_days * DAY
    span = truth.end - truth.start
    warmup = warmup_days * DAY if span > warmup_days * DAY else 0.0
    first_t = truth.start + warmup
    censored = truth.end - horizon < first_t
    last_t = truth.end if censored else truth.end - horizon
    n_days = math.floor((last_t - first_t) / DAY) + 1 if last_t >= first_t else 0
    cutoffs = first_t + DAY * np.arange(n_days)

    # rescorings sorted by time, cut into the batches seen by each evaluation day
    t_sorted = r.time[order]
    bounds = np.searchsorted(t_sorted, cutoffs, side="right")
    score_now = np.full(n, np.nan)
    dpd_now = np.zeros(n, dtype=np.int64)
    priced = r.pd is not None and r.exposure is not None
    exposure_now = np.zeros(n)
    loss_now = np.zeros(n)  # expected loss = PD x exposure of the latest rescoring
    volumes = {c: max(1, math.ceil(round(c * n, 9))) for c in CAPACITIES}
    max_volume = max(volumes.values())
    names: tuple[str, ...] = ("score", "dpd_only", "score_at_dpd_volume")
    if priced:
        names += ("priority", "priority_at_dpd_volume")
    rules = {c: {k: _Rule(n, priced=priced) for k in names} for c in CAPACITIES}
    # per day: its time, horizon end, the score rule's and the priority rule's flags at the
    # largest volume, with their exposure that day (to replay the rules at the DPD volume)
    days: list[tuple[float, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    snap_bad: list[np.ndarray] = []
    snap_score: list[np.ndarray] = []
    lo = 0
    for k, t in enumerate(cutoffs):
        hi = int(bounds[k])
        if hi > lo:
            rows = order[lo:hi][::-1]  # latest first, so np.unique keeps each customer's last
            cust, pos = np.unique(r.customer[rows], return_index=True)
            score_now[cust] = r.score[rows[pos]]
            dpd_now[cust] = r.dpd[rows[pos]]
            if priced:
                assert r.pd is not None and r.exposure is not None
                exposure_now[cust] = r.exposure[rows[pos]]
                loss_now[cust] = r.pd[rows[pos]] * exposure_now[cust]
            lo = hi
        until = min(t + horizon, truth.end) if censored else t + horizon
        elig = np.flatnonzero(~np.isnan(score_now) & (default > t))
        s = score_now[elig]
        late = elig[dpd_now[elig] >= DPD_RULE]
        by_dpd = late[np.argsort(-dpd_now[late], kind="stable")]
        # the lowest scores within the largest volume hold the lowest for any smaller volume;
        # kept per day, sorted, to replay the score rule at the DPD rule's volume afterwards
        top = elig[_lowest(s, max_volume)]
        top = top[np.argsort(score_now[top], kind="stable")]
        costly = elig[_lowest(-loss_now[elig], max_volume)] if priced else elig[:0]
        costly = costly[np.argsort(-loss_now[costly], kind="stable")]
        top_x, costly_x = exposure_now[top], exposure_now[costly]
        days.append((float(t), until, top, top_x, costly, costly_x))
        for c, vol in volumes.items():
            rules[c]["score"].add(top[:vol], t, default, until, top_x[:vol])
            rules[c]["dpd_only"].add(by_dpd[:vol], t, default, until, exposure_now[by_dpd[:vol]])
            if priced:
                rules[c]["priority"].add(costly[:vol], t, default, until, costly_x[:vol])
        if k % snapshot_days == 0 and len(elig):
            d = default[elig]
            snap_bad.append((d > t) & (d <= until))
            snap_score.append(s)

    for c in CAPACITIES:
        dpd_flags = rules[c]["dpd_only"].flags
        equal = max(1, round(dpd_flags / n_days)) if dpd_flags else 0
        rules[c]["score_at_dpd_volume"].volume = equal
        for t, until, top, top_x, costly, costly_x in days:
            rules[c]["score_at_dpd_volume"].add(top[:equal], t, default, until, top_x[:equal])
            if priced:
                rules[c]["priority_at_dpd_volume"].volume = equal
                rules[c]["priority_at_dpd_volume"].add(
                    costly[:equal], t, default, until, costly_x[:equal]
                )

    if n_days:
        reach = (cutoffs[-1] + horizon) if not censored else truth.end
        catchable = (default > cutoffs[0]) & (default <= reach)
    else:
        catchable = np.zeros(n, dtype=bool)
    capacity = {
        f"{c:.0%}": {
            "share": c,
            "daily_volume": volumes[c],
            **{name: rule.result(catchable, default, n_days) for name, rule in rules[c].items()},
        }
        for c in CAPACITIES
    }
    bad = np.concatenate(snap_bad) if snap_bad else np.zeros(0, dtype=bool)
    score = np.concatenate(snap_score) if snap_score else np.zeros(0)
    both = bool(bad.any() and not bad.all())
    discrimination = {
        "horizon_days": horizon_days,
        "snapshot_days": snapshot_days,
        "snapshots": len(snap_bad),
        "rows": len(bad),
        "bads": int(bad.sum()),
        "auc": quality.auc(bad, score) if both else None,
        "gini": quality.gini(bad, score) if both else None,
        "ks": quality.ks(bad, score) if both else None,
    }
    window = {
        "start": first_t,  # start + warm-up (the grade migration's starting point)
        "first_day": float(cutoffs[0]) if n_days else None,
        "last_day": float(cutoffs[-1]) if n_days else None,
        "days": n_days,
        "warmup_days": warmup / DAY,
        "horizon_censored": bool(censored),
        "catchable_defaulters": int(catchable.sum()),
    }
    return {"window": window, "capacity": capacity, "discrimination": discrimination}
