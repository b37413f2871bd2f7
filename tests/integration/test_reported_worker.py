"""The lender's reported delinquency through the real broker and a real ``riskmon worker``: a
``delinquency_status`` on the loans topic becomes the customer's DPD in the read API and in the
alerts, as the pure pipeline decides it (tests/unit/test_reported.py holds the semantics)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from schemas.codec import decode, decode_input, encode
from schemas.events import Alert, DelinquencyStatus
from streams.core.pipeline import Pipeline
from streams.core.records import InRecord
from streams.core.view import customer_view
from tests.conftest import T0, expert_scorecard, loan_book
from tests.integration.workerproc import Deployment, WorkerProcess, wait_until

pytestmark = pytest.mark.slow

Event = tuple[str, bytes, bytes]  # (role, key, value)


def _time(ev: Event) -> dt.datetime:
    return decode_input(ev[2], ev[0]).event_time


def _handled(w: WorkerProcess) -> float:
    return w.metric_sum("riskmon_events_total") + w.metric_sum("riskmon_parked_events")


def _feed(dep: Deployment, w: WorkerProcess, events: Sequence[Event]) -> None:
    """Produce the events a moment of event time at a time, each handled before the next."""
    groups: dict[dt.datetime, list[Event]] = defaultdict(list)
    for ev in events:
        groups[_time(ev)].append(ev)
    done = _handled(w)
    for t in sorted(groups):
        dep.produce(groups[t])
        done += len(groups[t])
        wait_until(f"{done} handled", lambda d=done: _handled(w) >= d, timeout=30)  # type: ignore[misc]


def _reference(events: Sequence[Event]) -> tuple[Pipeline, dict[str, bytes], list[bytes]]:
    """The pure pipeline over the events in event-time order: (pipeline, table, alerts)."""
    pipe = Pipeline(expert_scorecard())
    table: dict[str, bytes] = {}
    pipe.load = table.get
    alerts: list[bytes] = []
    for i, ev in enumerate(sorted(events, key=_time)):
        pipe.entries.clear()
        res = pipe.process([InRecord(ev[0], 0, i, ev[1], ev[2], 1.0e9 + i)])
        table.update(res.dirty)
        alerts += [o.value for o in res.outputs if o.topic == "alerts"]
    return pipe, table, alerts


def _alerts(values: Sequence[bytes]) -> dict[str, dict[str, Any]]:
    """Alert records by event id, without where and when they were emitted."""
    out = {}
    for v in values:
        d = msgspec.to_builtins(decode(v, Alert))
        for f in ("emitted_at", "trigger_partition", "trigger_offset"):
            d.pop(f)
        out[d["event_id"]] = d
    return out


def test_a_reported_dpd_reaches_the_read_api_and_the_alerts(
    dep: Deployment, worker: WorkerProcess
) -> None:
    """A customer who pays every instalment, whom the lender reports 40 days past due (and
    substandard) on day 45: the worker's read API shows the lender's DPD aged to the last event,
    bucket and class, and a dpd_bucket alert carries them, as the pure pipeline decides."""
    status = DelinquencyStatus(
        event_id="lender-45",
        customer_id="paying",
        event_time=T0 + dt.timedelta(days=45, hours=23),
        kind="delinquency_status",
        loan_id="paying-L",
        days_past_due=40,
        five_category="substandard",
    )
    events = [*loan_book({"paying": False}, months=3), ("loans", b"paying", encode(status))]
    worker.wait_ready()
    _feed(dep, worker, events)

    pipe, table, want = _reference(events)
    last = max(_time(ev) for ev in events)
    code, view = worker.customer("paying")
    assert code == 200
    aged = 40 + (last.date() - status.event_time.date()).days  # M3: 61-90 DPD
    assert (view["dpd"], view["m_bucket"], view["five_category"]) == (aged, "M3", "substandard")
    assert view == msgspec.json.decode(
        msgspec.json.encode(customer_view(pipe, "paying", table["paying"]))
    )
    got = _alerts([r.value for r in dep.read("alerts")])
    assert got == _alerts(want)
    opened = [a for a in got.values() if a["signal"] == "dpd_bucket"]
    assert [(a["status"], a["dpd"], a["m_bucket"], a["five_category"]) for a in opened] == [
        ("opened", 40, "M2", "substandard"),
        ("escalated", 85, "M3", "substandard"),  # the reported DPD ages into M3 with later events
    ]
    assert (opened[0]["trigger_event_id"], opened[0]["trigger_topic"]) == ("lender-45", "loans")
