"""Live quality through the real broker and a real ``riskmon worker``: a customer who defaults
after alerts (caught, with its lead time), one the lender reports 120 days past due out of the
blue (missed), one cured by a payment (alerts ended in cure) and a healthy one; the worker's
``/metrics`` over HTTP show what the pure pipeline counts over the same events, and a restarted
worker, its state recovered from the changelog, does not count the defaults again."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

import pytest

from schemas.codec import decode_input, encode
from schemas.events import DelinquencyStatus, TransactionEvent
from streams.core.pipeline import Pipeline
from streams.core.policy import SIGNALS
from streams.core.quality import ENDINGS, Quality
from streams.core.records import InRecord
from streams.kafka.metrics import LEAD_DAYS_BUCKETS
from tests.conftest import T0, expert_scorecard, loan_book
from tests.integration.test_worker import Event, cure_book, event_id, feed
from tests.integration.workerproc import Deployment, WorkerProcess

pytestmark = pytest.mark.slow


def event_time(ev: Event) -> dt.datetime:
    return decode_input(ev[2], ev[0]).event_time  # (a delinquency status too)


def steps(events: Sequence[Event]) -> list[list[Event]]:
    """Events grouped by event time, oldest first."""
    groups: dict[dt.datetime, list[Event]] = defaultdict(list)
    for ev in events:
        groups[event_time(ev)].append(ev)
    return [groups[t] for t in sorted(groups)]


def status(cust: str, day: int, dpd: int) -> Event:
    """The lender reports ``cust``'s loan ``dpd`` days past due as of ``day``."""
    ev = DelinquencyStatus(
        event_id=f"{cust}-status{day}",
        customer_id=cust,
        event_time=T0 + dt.timedelta(days=day, hours=12),
        kind="delinquency_status",
        loan_id=f"{cust}-L",
        days_past_due=dpd,
        overdue_amount=4000.0,
    )
    return ("loans", cust.encode(), encode(ev))


def credit(cust: str, day: int) -> Event:
    """A small inflow: one more rescoring of ``cust`` on ``day``."""
    ev = TransactionEvent(
        event_id=f"{cust}-late-credit{day}",
        customer_id=cust,
        event_time=T0 + dt.timedelta(days=day),
        kind="credit",
        account_id=f"{cust}-A",
        amount=20.0,
        balance_after=20.0,
    )
    return ("transactions", cust.encode(), encode(ev))


def book() -> list[Event]:
    """``caught`` stops paying after the first instalment (alerts from day 60, 90 DPD on day
    150); ``quiet`` opens a loan, sends nothing, and is reported 120 DPD on day 130; ``late``
    misses two instalments and pays them back on day 100; ``good`` pays."""
    events = loan_book({"caught": True, "good": False}, months=5)
    quiet = [e for e in loan_book({"quiet": True}, months=5) if event_id(e) == "quiet-open"]
    late, cure = cure_book("late")
    return [*events, *quiet, status("quiet", 130, 120), *late, cure]


def reference(events: Sequence[Event]) -> Quality:
    """What the pure pipeline counts over ``events`` in event-time order."""
    pipe = Pipeline(expert_scorecard())
    table: dict[str, bytes] = {}
    pipe.load = table.get
    q = Quality()
    for i, ev in enumerate(sorted(events, key=event_time)):
        pipe.entries.clear()
        res = pipe.process([InRecord(ev[0], 0, i, ev[1], ev[2], 1.0e9 + i)])
        table.update(res.dirty)
        q.merge(res.quality)
    return q


def exported(w: WorkerProcess) -> Quality:
    """The worker's live-quality metrics, read over HTTP, as a Quality (lead times: their sum,
    as one value, and their count checked against the caught defaults)."""
    m = w.metrics()
    q = Quality()
    for outcome in ("caught", "missed"):
        n = m[("riskmon_defaults_total", (("outcome", outcome),))]
        if n:
            q.defaults[outcome] = int(n)
    count = m[("riskmon_default_lead_time_days_count", ())]
    assert count == q.defaults["caught"]
    if count:
        q.lead_days.append(m[("riskmon_default_lead_time_days_sum", ())])
    for signal in SIGNALS:
        for ending in ENDINGS:
            n = m[("riskmon_alerts_ended_total", (("ending", ending), ("signal", signal)))]
            if n:
                q.ended[(signal, ending)] = int(n)
    return q


def test_defaults_lead_time_and_alert_endings_over_http(
    dep: Deployment, worker: WorkerProcess
) -> None:
    events = book()
    worker.wait_ready()
    before = exported(worker)
    assert not before  # every series exported from the start, at 0
    feed(dep, [worker], steps(events))

    want = reference(events)
    got = exported(worker)
    assert got.defaults == want.defaults == {"caught": 1, "missed": 1}
    (lead,) = want.lead_days
    assert got.lead_days == [pytest.approx(lead)]
    # alerted at the missed second instalment (day 60, 1 h after the due time), in default at
    # the end of day 150
    assert lead == pytest.approx(91 - 1 / 24)
    assert got.ended == want.ended
    endings = {e for _, e in got.ended}
    assert endings >= {"cure", "default"}  # late's alerts were cured, caught's defaulted
    # the lead time's bucket: between 90 and 120 days
    m = worker.metrics()
    buckets = {le: m[("riskmon_default_lead_time_days_bucket", (("le", str(le)),))]
               for le in LEAD_DAYS_BUCKETS}  # fmt: skip
    assert (buckets[90.0], buckets[120.0]) == (0.0, 1.0)

    # a restart recovers the customers' states from the changelog: more rescorings in default
    # (and a newer report of the quiet one) count no default and no alert ending again
    worker.stop()
    worker.start().wait_ready()
    more = [credit("caught", 170), status("quiet", 160, 150)]
    feed(dep, [worker], steps(more))
    assert worker.metric_sum("riskmon_events_total", outcome="processed") >= len(more)
    assert not exported(worker)
    total = reference([*events, *more])
    assert (total.defaults, total.ended) == (want.defaults, want.ended)
