"""A revolving credit line through the real broker and a real ``riskmon worker``: its draws and
statements on the loans topic and its payments on the repayments topic become the customer's
DPD in the read API and dpd_bucket alerts, as the pure pipeline decides them
(tests/unit/test_lines.py holds the semantics)."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from schemas.codec import encode
from schemas.events import InputEvent, LineEvent, LoanEvent, RepaymentEvent
from streams.core.view import customer_view
from tests.conftest import T0
from tests.integration.test_reported_worker import Event, _alerts, _feed, _reference
from tests.integration.workerproc import Deployment, WorkerProcess

pytestmark = pytest.mark.slow

CID = "liner"


def _line_events() -> list[Event]:
    def at(day: int, hour: int) -> dt.datetime:
        return T0 + dt.timedelta(days=day, hours=hour)

    head = {"customer_id": CID, "loan_id": "liner-K"}
    evs: list[InputEvent] = [
        LoanEvent(event_id="open", event_time=at(0, 9), kind="opened", credit_limit=5000.0,
                  annual_rate=0.12, guarantee_method="credit", **head),
        LineEvent(event_id="d1", event_time=at(1, 10), kind="draw", amount=3000.0, **head),
    ]  # fmt: skip
    for m in range(4):  # statements on days 30, 60, 90, 120; only the first minimum is paid
        s = 30 * (m + 1)
        evs.append(
            LineEvent(event_id=f"s{m}", event_time=at(s, 23), kind="statement", balance=3000.0,
                      minimum_due=120.0, due_date=at(s + 20, 0).date(), **head)
        )  # fmt: skip
        if m == 0:
            evs.append(
                RepaymentEvent(event_id="p0", event_time=at(s + 5, 12), kind="payment_received",
                               amount=2000.0, **head)  # above the minimum: not a prepayment
            )  # fmt: skip
    topic = {LoanEvent: "loans", LineEvent: "loans", RepaymentEvent: "repayments"}
    return [(topic[type(ev)], CID.encode(), encode(ev)) for ev in evs]


def test_a_line_in_arrears_reaches_the_read_api_and_the_alerts(
    dep: Deployment, worker: WorkerProcess
) -> None:
    """The first statement's minimum is paid (and more); the second's, due on day 80, is not:
    by the last statement (day 120) the line is 40 days past due, M2, in the worker's read API
    and its alerts, equal to the pure pipeline's."""
    events = _line_events()
    worker.wait_ready()
    _feed(dep, worker, events)

    pipe, table, want = _reference(events)
    code, view = worker.customer(CID)
    assert code == 200
    assert (view["dpd"], view["m_bucket"]) == (40, "M2")
    assert view == msgspec.json.decode(msgspec.json.encode(customer_view(pipe, CID, table[CID])))
    got = _alerts([r.value for r in dep.read("alerts")])
    assert got == _alerts(want)
    bucket = [a for a in got.values() if a["signal"] == "dpd_bucket"]
    assert [(a["status"], a["dpd"], a["m_bucket"]) for a in bucket] == [
        ("opened", 10, "M1"),  # the day-90 statement
        ("escalated", 40, "M2"),  # the day-120 one
    ]
    assert all(a["exposure"] > 0 for a in bucket)
