"""The alert budget: what the alerts cost a collection team and what they buy, per signal.

Alerts of severity ``watch`` (a watch-list signal, set in the policy file) are on a list a
collection system can filter out: the budget counts them under their signal, and counts the
``actionable`` alerts (every other severity) apart; the goals judge the actionable ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas.events import Alert
from streams.core.intake import DAY

if TYPE_CHECKING:  # report imports this module
    from streams.evaluation.report import Rescorings, Truth

WATCH = "watch"


def actionable_starts(alerts: Sequence[Alert]) -> list[Alert]:
    """Per alert, the record at which it became work for collections: its first ``opened`` or
    ``escalated`` record of a severity other than ``watch`` (an alert opened on the watch list
    and escalated later becomes actionable at the escalation). Alerts in emission order."""
    seen: set[str] = set()
    out: list[Alert] = []
    for a in alerts:
        if a.status in ("opened", "escalated") and a.severity != WATCH and a.alert_id not in seen:
            seen.add(a.alert_id)
            out.append(a)
    return out


def first_missed(r: Rescorings, n: int) -> np.ndarray:
    """Per customer, when its first instalment went unpaid: the first rescoring at DPD >= 1,
    less its DPD in days (the instalment's due date); ``inf`` for never."""
    first = np.full(n, np.inf)
    m = r.dpd >= 1
    np.minimum.at(first, r.customer[m], r.time[m] - r.dpd[m] * DAY)
    return first


def first_alert_measures(
    first: np.ndarray, default: np.ndarray, missed: np.ndarray, horizon: float, alerts: int
) -> dict[str, Any]:
    """The budget's customer-level figures from each customer's first alert time ``first``
    (``inf``: never alerted), default time (``inf``: none in the book) and first missed
    instalment (``inf``: never), all epoch seconds; ``horizon`` in seconds, ``alerts`` the
    alerts opened (for alerts per caught default)."""
    n = len(first)
    in_book = np.isfinite(default)
    base = float(in_book.mean()) if n else 0.0
    alerted = np.isfinite(first)
    right = alerted & (default > first) & (default <= first + horizon)
    caught = in_book & (first < default)
    precision = float(right.sum() / alerted.sum()) if alerted.any() else None
    early = caught & (first <= missed - 30 * DAY)
    n_bad = int(in_book.sum())
    return {
        "alerts_opened": alerts,
        "customers_alerted": int(alerted.sum()),
        "customers_alerted_share": float(alerted.sum() / n) if n else None,
        "customer_precision": precision,
        "lift": None if precision is None or not base else precision / base,
        "alerts_per_caught_default": alerts / caught.sum() if caught.any() else None,
        "never_defaulting_alerted_share": float(
            (alerted & ~in_book).sum() / max(int((~in_book).sum()), 1)
        ),
        "defaults_caught": int(caught.sum()),
        "defaults_alerted_share": float(caught.sum() / n_bad) if n_bad else None,
        "pre_delinquency_share": float(early.sum() / n_bad) if n_bad else None,
    }


def alert_budget(
    alerts: Sequence[Alert],
    r: Rescorings,
    truth: Truth,
    default: np.ndarray,
    horizon_days: float,
) -> dict[str, Any]:
    """Per signal, overall and for the actionable (not ``watch``) alerts: alerts opened,
    customers alerted, customer-level precision (the share of alerted customers who default
    within the horizon after their first alert of that kind), lift over the base rate, alerts
    per caught default, the share of never-defaulting customers alerted, the share of defaults
    alerted before their default (``defaults_alerted_share``) and the share first alerted 30
    days or more before their first missed instalment (``pre_delinquency_share``)."""
    index = truth.index()
    n = len(truth.customers)
    horizon = horizon_days * DAY
    missed = first_missed(r, n)

    def event(a: Alert) -> tuple[int, float]:
        i = index.get(a.customer_id)
        if i is None:
            raise ValueError(f"alerted customer {a.customer_id!r} is not in the truth")
        return i, a.event_time.timestamp()

    opened: dict[str, list[tuple[int, float]]] = {}
    for a in alerts:
        if a.status == "opened":
            opened.setdefault(a.signal, []).append(event(a))
    acted = [event(a) for a in actionable_starts(alerts)]

    def measure(events: list[tuple[int, float]]) -> dict[str, Any]:
        first = np.full(n, np.inf)
        for i, at in events:
            first[i] = min(first[i], at)
        return first_alert_measures(first, default, missed, horizon, len(events))

    every = [e for events in opened.values() for e in events]
    return {
        "base_rate": float(np.isfinite(default).mean()) if n else 0.0,
        "horizon_days": horizon_days,
        "overall": measure(every),
        "actionable": measure(acted),
        "by_signal": {signal: measure(opened[signal]) for signal in sorted(opened)},
    }
