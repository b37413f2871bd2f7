"""The real ``riskmon worker`` on a real Tansu broker: alerts, dead letters, crash recovery,
two workers, HTTP. Expected outputs come from the pure :class:`streams.pipeline.Pipeline` run
over the same events (unit-tested on its own in tests/unit/test_pipeline.py).

Events are fed in event-time steps, each step handled before the next is produced, the way a
live stream arrives: Faust consumes the three input topics independently, so a backlog spanning
months would reach the worker out of event-time order across topics (see the report in
``feed``'s docstring).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from schemas.codec import decode, encode
from schemas.events import INPUT_TYPES, Alert, GradeChange, RepaymentEvent
from streams.broker import EmbeddedBroker
from streams.pipeline import InRecord, Pipeline
from streams.worker import customer_view
from tests.conftest import T0, expert_scorecard, loan_book
from tests.integration.workerproc import Deployment, WorkerProcess, wait_until

pytestmark = pytest.mark.slow

Event = tuple[str, bytes, bytes]  # (role, key, value)


# -- event books ---------------------------------------------------------------------------------
def event_time(ev: Event) -> dt.datetime:
    return decode(ev[2], INPUT_TYPES[ev[0]]).event_time


def event_id(ev: Event) -> str:
    return decode(ev[2], INPUT_TYPES[ev[0]]).event_id


def steps(events: Sequence[Event]) -> list[list[Event]]:
    """Events grouped by event time, oldest first (one event per customer per step here)."""
    groups: dict[dt.datetime, list[Event]] = defaultdict(list)
    for ev in events:
        groups[event_time(ev)].append(ev)
    return [groups[t] for t in sorted(groups)]


def cure_book(cust: str) -> tuple[list[Event], Event]:
    """A customer who misses instalments 2 and 3 (arrears, alerts), then pays 2000 at day 100.

    Returns (events up to the arrears, the curing payment).
    """
    drop = {f"{cust}-pay2", f"{cust}-pay3", f"{cust}-pay4", f"{cust}-due4", f"{cust}-in4"}
    events = [e for e in loan_book({cust: False}) if event_id(e) not in drop]
    cure = RepaymentEvent(
        event_id=f"{cust}-cure",
        customer_id=cust,
        event_time=T0 + dt.timedelta(days=100),
        kind="payment_received",
        loan_id=f"{cust}-L",
        amount=2000.0,
    )
    return events, ("repayments", cust.encode(), encode(cure))


# -- the reference ---------------------------------------------------------------------------------
def reference(events: Sequence[Event]) -> Pipeline:
    """The pure pipeline over ``events`` in event-time order, one event per batch."""
    pipe = Pipeline(expert_scorecard())
    table: dict[str, bytes] = {}
    pipe.load = table.get
    pipe.outputs = []  # type: ignore[attr-defined]
    for i, ev in enumerate(sorted(events, key=event_time)):
        pipe.entries.clear()
        res = pipe.process([InRecord(ev[0], 0, i, ev[1], ev[2], 1.0e9 + i)])
        table.update(res.dirty)
        pipe.outputs.extend(res.outputs)  # type: ignore[attr-defined]
    pipe.table = table  # type: ignore[attr-defined]
    return pipe


def expected_view(pipe: Pipeline, cid: str) -> dict[str, Any] | None:
    """What GET /customers/{cid} must answer for the reference state (same view function)."""
    table = SimpleNamespace(data={k.encode(): v for k, v in pipe.table.items()})  # type: ignore[attr-defined]
    rt = SimpleNamespace(table=table, pipeline=pipe)
    view = customer_view(rt, cid)  # type: ignore[arg-type]
    return None if view is None else msgspec.json.decode(msgspec.json.encode(view))


def assert_same_records(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Same records by event_id, with a readable difference."""
    g = {a["event_id"]: a for a in got}
    w = {a["event_id"]: a for a in want}
    assert len(g) == len(got), "a record was emitted twice"
    assert sorted(g) == sorted(w), (sorted(set(g) - set(w)), sorted(set(w) - set(g)))
    for k in w:
        diff = {f: (g[k][f], w[k][f]) for f in w[k] if g[k][f] != w[k][f]}
        assert not diff, (k, diff)


WHERE = ("emitted_at", "trigger_partition", "trigger_offset")


def alert_dicts(values: Sequence[bytes]) -> list[dict[str, Any]]:
    """Alert records as dicts without ``emitted_at`` (the one field allowed to differ between
    runs) and the trigger's partition/offset (Kafka's layout; checked by ``check_triggers``)."""
    out = []
    for v in values:
        d = msgspec.to_builtins(decode(v, Alert))
        for f in WHERE:
            d.pop(f)
        out.append(d)
    return out


def check_triggers(dep: Deployment, values: Sequence[bytes]) -> None:
    """Each alert's trigger topic/partition/offset holds the event its trigger_event_id names."""
    at: dict[tuple[str, int, int], str] = {}
    for role in ("loans", "repayments", "transactions"):
        for r in dep.read(role, idle_polls=2):
            at[(role, r.partition, r.offset)] = event_id((role, r.key, r.value))
    for v in values:
        a = decode(v, Alert)
        where = (a.trigger_topic, a.trigger_partition, a.trigger_offset)
        assert at.get(where) == a.trigger_event_id, (a.alert_id, where)


# -- feeding a live worker -------------------------------------------------------------------------
def handled(ws: Sequence[WorkerProcess]) -> float:
    """Input messages the workers have dealt with: counted outcomes plus parked events."""
    return sum(
        w.metric_sum("riskmon_events_total") + w.metric_sum("riskmon_parked_events") for w in ws
    )


def feed(dep: Deployment, ws: Sequence[WorkerProcess], groups: Sequence[Sequence[Event]]) -> None:
    """Produce each group and wait until the workers handled it before producing the next.

    Why steps: Faust fetches each input topic on its own, so a months-long backlog produced at
    once is applied e.g. all transactions first; the customer's event clock then runs ahead and
    the loan/repayments behind it are dead-lettered as too_late (seen with this worker: a
    2-customer, 4-month book produced at once lost both loans and 10 repayments).
    """
    base = handled(ws)
    for group in groups:
        dep.produce(group)
        base += len(group)
        target = base
        wait_until(f"{target} handled", lambda t=target: handled(ws) >= t, timeout=30)


@pytest.fixture
def dep(broker: EmbeddedBroker, expert_card_path: Path, tmp_path: Path) -> Deployment:
    return Deployment(broker, expert_card_path, tmp_path, partitions=2)


@pytest.fixture
def workers() -> Iterator[Callable[..., WorkerProcess]]:
    """Factory of started workers; each is stopped by PID (SIGTERM, then SIGKILL) at teardown."""
    started: list[WorkerProcess] = []

    def start(dep: Deployment, name: str | None = None) -> WorkerProcess:
        w = WorkerProcess(dep, name or f"w{len(started)}").start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
    for w in started:
        assert not w.alive(), f"worker {w.name} pid {w.pid} still alive"


def by_customer(records: Sequence[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for r in records:
        out[r.key.decode()].append(r)
    return out


# -- 1. alerts and auto-resolve --------------------------------------------------------------------
def test_deteriorating_customer_alerts_and_a_curing_payment_resolves(
    dep: Deployment, workers: Callable[..., WorkerProcess]
) -> None:
    book = loan_book({"bad": True, "good": False})
    late, cure = cure_book("late")
    events = book + late
    w = workers(dep).wait_ready()
    feed(dep, [w], steps(events))

    ref = reference(events)
    want = alert_dicts([o.value for o in ref.outputs if o.topic == "alerts"])  # type: ignore[attr-defined]
    raw = [r.value for r in dep.read("alerts")]
    got = alert_dicts(raw)
    check_triggers(dep, raw)
    assert_same_records(got, want)
    assert {a["customer_id"] for a in got} == {"bad", "late"}
    ids = {event_id(e): e for e in events}
    card = expert_scorecard()
    for a in got:
        trigger = ids[a["trigger_event_id"]]  # a real event of that customer
        assert trigger[1].decode() == a["customer_id"]
        assert a["scorecard_version"] == card.version
        assert a["reasons"] and all(r["points_lost"] > 0 for r in a["reasons"])
    bad = [a for a in got if a["customer_id"] == "bad"]
    assert {"bounced_debit", "dpd_bucket", "grade_worsening"} <= {a["signal"] for a in bad}
    worst = max(bad, key=lambda a: a["dpd"])
    assert worst["dpd"] >= 60 and worst["severity"] == "red"
    assert not [a for a in got if a["status"] == "resolved"]

    grades = [decode(r.value, GradeChange) for r in dep.read("grades")]
    want_grades = [decode(o.value, GradeChange) for o in ref.outputs if o.topic == "grades"]  # type: ignore[attr-defined]
    assert sorted(grades, key=lambda g: g.event_id) == sorted(want_grades, key=lambda g: g.event_id)
    assert {g.customer_id for g in grades} == {"bad", "good", "late"}  # every first grade too

    open_ids = {a["alert_id"] for a in got if a["customer_id"] == "late"}
    assert open_ids
    sent = time.monotonic()
    dep.produce([cure])

    def resolved() -> set[str]:
        return {
            a["alert_id"]
            for a in alert_dicts([r.value for r in dep.read("alerts", idle_polls=1)])
            if a["status"] == "resolved"
        }

    wait_until("resolve records", lambda: resolved() == open_ids, timeout=20)
    took = time.monotonic() - sent
    assert took < 10, f"resolve took {took:.1f}s"  # 'within seconds'; includes our polling
    final = alert_dicts([r.value for r in dep.read("alerts")])
    ref_all = reference([*events, cure])
    want_all = alert_dicts([o.value for o in ref_all.outputs if o.topic == "alerts"])  # type: ignore[attr-defined]
    assert_same_records(final, want_all)
    for a in final:
        if a["status"] == "resolved":
            assert a["trigger_event_id"] == "late-cure" and a["dpd"] == 0
    status, view = w.customer("late")
    assert status == 200 and view["dpd"] == 0 and view == expected_view(ref_all, "late")


# -- 5. HTTP ---------------------------------------------------------------------------------------
def test_metrics_and_customer_endpoints_over_http(
    dep: Deployment, workers: Callable[..., WorkerProcess]
) -> None:
    events = loan_book({"h1": True, "h2": False}, months=2)
    w = workers(dep).wait_ready()
    feed(dep, [w], steps(events))
    status, body = w.get("/metrics")
    assert status == 200
    text = body.decode()
    assert "# TYPE riskmon_events_total counter" in text
    card = expert_scorecard()
    info = w.metrics()
    assert (
        info[
            (
                "riskmon_worker_info",
                (("riskmon_version", info_version(info)), ("scorecard_version", card.version)),
            )
        ]
        == 1.0
    )
    assert w.metric_sum("riskmon_events_total", outcome="processed") == len(events)
    ref = reference(events)
    for cid in ("h1", "h2"):
        status, view = w.customer(cid)
        assert status == 200
        assert view == expected_view(ref, cid)
    assert w.customer("h1")[1]["dpd"] > 0 and w.customer("h2")[1]["dpd"] == 0
    status, view = w.customer("nobody-here")
    assert status == 404 and "nobody-here" in view["error"]


def info_version(samples: dict[Any, float]) -> str:
    (labels,) = [lab for (n, lab) in samples if n == "riskmon_worker_info"]
    return dict(labels)["riskmon_version"]
