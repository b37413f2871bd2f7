"""The collection queue: customers with open alerts, highest expected loss first.

A worker answers ``GET /queue`` from :class:`OpenAlertIndex`; ``riskmon queue`` merges the
workers' answers (:func:`merge`) into one day's work list. The unit of work is the customer: one
item per customer with open alerts, its priority (expected loss = PD x exposure, as on its alerts),
its current picture and every open alert, the most severe first (that one is the item's headline
alert). An alert is open from ``opened`` (or ``escalated``) until ``resolved`` or ``expired``:
exactly the alerts the customer's policy state holds (``PolicyState.open``).

Everything an item says is read from the customer's table entry (:func:`queue_item`): its policy
state's open alerts and its behavioural state scored as the read API scores it (the state at its
newest event, the latest rescoring's). The index only remembers *which* customers have open alerts
(updated from each batch's written entries, rebuilt from the table after a rebalance's
recovery), so an answer is what the table says, before and after a restart alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import msgspec
import numpy as np

from streams.core import features as F
from streams.core.entry import Entry
from streams.core.exposure import expected_loss, exposure_cents
from streams.core.pipeline import Pipeline
from streams.core.policy import SEVERITIES, SIGNALS
from streams.core.policy_state import OpenAlert, PolicyState
from streams.core.treatment import recommend

__all__ = [
    "MAX_LIMIT",
    "OpenAlertIndex",
    "QueueAlert",
    "QueueAnswer",
    "QueueItem",
    "merge",
    "order_key",
    "queue_item",
]

MAX_LIMIT = 10_000  # items one answer may hold


class QueueAlert(msgspec.Struct, frozen=True, kw_only=True):
    """One open alert of a queued customer."""

    alert_id: str
    signal: str
    severity: str
    opened_at: str  # event time of the opening rescoring, RFC 3339 UTC


class QueueItem(msgspec.Struct, frozen=True, kw_only=True):
    """A customer with open alerts: its priority, its picture now and its open alerts (the
    headline alert's fields repeated at the top for a flat work list)."""

    customer_id: str
    priority: float  # expected loss = pd x exposure, loan currency
    pd: float
    exposure: float  # outstanding principal, loan currency
    grade: str
    score: float
    dpd: int
    treatment: str
    alert_id: str
    signal: str
    severity: str
    opened_at: str
    alerts: list[QueueAlert]
    as_of: str  # the customer's newest event time, RFC 3339 UTC


class QueueAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /queue``: the worker's customers with open alerts (count) and the top ``limit``."""

    customers: int
    open_alerts: int
    items: list[QueueItem]


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _most_urgent(a: OpenAlert) -> tuple[int, float, int]:
    return (-a.severity, a.opened_at, a.signal)


def queue_item(pipeline: Pipeline, customer_id: str, entry: Entry) -> QueueItem | None:
    """The queue item of a customer's table entry; None if it has no open alert."""
    if not entry.policy.open:
        return None
    st = entry.state
    as_of = st.last_event_time
    arm = pipeline.arms.deciding(customer_id)  # the card its alerts come from
    cfg, cs = pipeline.state_cfg, arm.cs
    row = np.empty(len(F.FEATURES), dtype=np.float64)
    F.features_into(st, as_of, row, cfg)
    score, grade = cs.score_one(arm.columns.row(row))
    dpd = int(st.facts(as_of, cfg).dpd)
    pd = float(cs.pd(score))
    exposure = exposure_cents(st, as_of) / 100
    alerts = [
        QueueAlert(
            alert_id=a.alert_id,
            signal=SIGNALS[a.signal],
            severity=SEVERITIES[a.severity],
            opened_at=_utc(a.opened_at),
        )
        for a in sorted(entry.policy.open, key=_most_urgent)
    ]
    top = alerts[0]
    n_grades = len(cs.grade_names)
    return QueueItem(
        customer_id=customer_id,
        priority=expected_loss(pd, exposure),
        pd=pd,
        exposure=exposure,
        grade=cs.grade_names[grade],
        score=score,
        dpd=dpd,
        treatment=recommend(grade, n_grades, dpd, arm.ctx.config.treatment),
        alert_id=top.alert_id,
        signal=top.signal,
        severity=top.severity,
        opened_at=top.opened_at,
        alerts=alerts,
        as_of=_utc(as_of),
    )


def order_key(item: QueueItem) -> tuple[float, str]:
    """Queue order: highest priority first, then by customer id (a total, stable order)."""
    return (-item.priority, item.customer_id)


def merge(answers: Iterable[Sequence[QueueItem]], capacity: int) -> list[QueueItem]:
    """The top ``capacity`` items of several workers' answers, in queue order. A customer is
    listed once (during a rebalance two workers may both answer for it: the first in queue
    order is kept)."""
    seen: set[str] = set()
    out: list[QueueItem] = []
    for item in sorted((i for a in answers for i in a), key=order_key):
        if item.customer_id in seen:
            continue
        seen.add(item.customer_id)
        out.append(item)
        if len(out) == capacity:
            break
    return out


class OpenAlertIndex:
    """Which of a worker's customers have open alerts, and their queue items.

    :meth:`note` after each batch (its written entries), :meth:`rebuild` from the whole local
    table after a rebalance's recovery; :meth:`answer` reads each listed customer's entry from
    the table and computes its item again only when the entry changed since the last answer.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._open: set[str] = set()
        self._items: dict[str, tuple[bytes, QueueItem | None]] = {}  # entry bytes -> item

    def __len__(self) -> int:
        return len(self._open)

    def note(self, customer_id: str, policy: PolicyState) -> None:
        """The customer's entry was written with this policy state."""
        if policy.open:
            self._open.add(customer_id)
        elif customer_id in self._open:
            self._open.discard(customer_id)
            self._items.pop(customer_id, None)

    def rebuild(self, table: Iterable[tuple[bytes, bytes]]) -> None:
        """Start again from every ``(customer id bytes, entry bytes)`` this worker holds."""
        self._open.clear()
        self._items.clear()
        for key, raw in table:
            cid = key.decode()
            self.note(cid, Entry.from_bytes(raw, cid).policy)

    def answer(
        self, limit: int, read: Callable[[str], bytes | None], max_dpd: int | None = None
    ) -> QueueAnswer:
        """The top ``limit`` items; ``read(customer_id)``: its entry bytes in the table now.
        ``max_dpd``: only customers at most this many days past due (a customer already in
        default belongs to recovery, not to the early-warning list); ``customers`` and
        ``open_alerts`` count the customers that qualify."""
        items: list[QueueItem] = []
        for cid in list(self._open):
            raw = read(cid)
            if raw is None:  # its partition went to another worker
                self._open.discard(cid)
                self._items.pop(cid, None)
                continue
            known = self._items.get(cid)
            if known is not None and known[0] == raw:
                item = known[1]
            else:
                item = queue_item(self.pipeline, cid, Entry.from_bytes(raw, cid))
                self._items[cid] = (raw, item)
            if item is not None and (max_dpd is None or item.dpd <= max_dpd):
                items.append(item)
        items.sort(key=order_key)
        return QueueAnswer(
            customers=len(items),
            open_alerts=sum(len(i.alerts) for i in items),
            items=items[:limit],
        )
