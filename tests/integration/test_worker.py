"""The real ``riskmon worker`` on a real Tansu broker: alerts, dead letters, crash recovery,
two workers, HTTP. Expected outputs come from the pure :class:`streams.core.pipeline.Pipeline` run
over the same events (unit-tested on its own in tests/unit/test_pipeline.py).

Events are fed in event-time steps, each step handled before the next is produced, the way a
live stream arrives: Faust consumes the three input topics independently, so a backlog spanning
months would reach the worker out of event-time order across topics (see the report in
``feed``'s docstring).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from kafka import KafkaConsumer, TopicPartition

from schemas.codec import decode, encode
from schemas.events import (
    INPUT_TYPES,
    Alert,
    DeadLetter,
    GradeChange,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)
from scoring import artifact
from streams.core.pipeline import Pipeline
from streams.core.records import PHASES, InRecord, OutRecord
from streams.core.view import customer_view
from streams.evaluation.backtest import backtest
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.produce import murmur2_partition, route_line
from streams.sim.simulate import SimConfig, Simulation, write_jsonl
from tests.conftest import T0, expert_scorecard, loan_book
from tests.integration.workerproc import Deployment, WorkerProcess, http_get, wait_until

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
@dataclass
class Reference:
    """The pure pipeline after a run: its outputs and its table (customer id -> entry bytes)."""

    pipe: Pipeline
    outputs: list[OutRecord] = field(default_factory=list)
    table: dict[str, bytes] = field(default_factory=dict)

    def values(self, topic: str) -> list[bytes]:
        return [o.value for o in self.outputs if o.topic == topic]


def reference(events: Sequence[Event]) -> Reference:
    """The pure pipeline over ``events`` in event-time order, one event per batch."""
    ref = Reference(Pipeline(expert_scorecard()))
    ref.pipe.load = ref.table.get
    for i, ev in enumerate(sorted(events, key=event_time)):
        ref.pipe.entries.clear()
        res = ref.pipe.process([InRecord(ev[0], 0, i, ev[1], ev[2], 1.0e9 + i)])
        ref.table.update(res.dirty)
        ref.outputs.extend(res.outputs)
    return ref


def expected_view(ref: Reference, cid: str) -> dict[str, Any] | None:
    """What GET /customers/{cid} must answer for the reference state (same view function)."""
    raw = ref.table.get(cid)
    if raw is None:
        return None
    return msgspec.json.decode(msgspec.json.encode(customer_view(ref.pipe, cid, raw)))


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
    """Input messages the workers have dealt with: counted outcomes plus parked events, each
    message once. Redeliveries (a partition's uncommitted tail fetched again after a rebalance
    or restart) are not counted: they made a feed step look done before its own events were
    (a rare failure of the moving-partition test)."""
    return sum(
        w.metric_sum("riskmon_events_total")
        - w.metric_sum("riskmon_events_total", outcome="redelivered")
        + w.metric_sum("riskmon_parked_events")
        for w in ws
    )


def feed(dep: Deployment, ws: Sequence[WorkerProcess], groups: Sequence[Sequence[Event]]) -> None:
    """Produce each group and wait until the workers handled it before producing the next
    (a live feed; ``test_a_backlog_produced_at_once_is_processed_in_send_order`` covers the
    opposite, a whole book waiting in the topics)."""
    base = handled(ws)
    for group in groups:
        dep.produce(group)
        base += len(group)
        wait_until(f"{base} handled", _reached(ws, base), timeout=30)


def _reached(ws: Sequence[WorkerProcess], target: float) -> Callable[[], bool]:
    return lambda: handled(ws) >= target


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
    want = alert_dicts(ref.values("alerts"))
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
    want_grades = [decode(v, GradeChange) for v in ref.values("grades")]
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
    want_all = alert_dicts(ref_all.values("alerts"))
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
    for phase in (*PHASES, "send"):  # where the batches' time went, every phase counted
        assert w.metric_sum("riskmon_batch_phase_seconds_total", phase=phase) > 0, phase
    ref = reference(events)
    for cid in ("h1", "h2"):
        status, view = w.customer(cid)
        assert status == 200
        assert view == expected_view(ref, cid)
    assert w.customer("h1")[1]["dpd"] > 0 and w.customer("h2")[1]["dpd"] == 0
    status, view = w.customer("nobody-here")
    assert status == 404 and "nobody-here" in view["error"]


def test_read_api_asks_for_the_token_over_https(
    dep: Deployment, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """With an API token, TLS and metrics_auth: HTTPS only; /customers and /metrics answer 401
    without the bearer token or with a wrong one, and the data with it; a 404 does not echo
    a 5,000-character id back."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    env = {
        "RISKMON_API_TOKEN": "s3cret-token",
        "RISKMON_METRICS_AUTH": "true",
        "RISKMON_WEB_TLS_CERT": str(cert),
        "RISKMON_WEB_TLS_KEY": str(key),
    }
    events = loan_book({"t1": True}, months=2)
    w = workers(dep, env=env).wait_ready()
    feed(dep, [w], steps(events))
    assert w.customer("t1")[0] == 200
    for path in ("/customers/t1", "/metrics"):
        status, body = w._http(path, 10, auth=False)
        assert status == 401 and b"bearer token" in body, path
        wrong = {"Authorization": "Bearer s3cret-tokeN"}
        assert http_get(w.url + path, 10, wrong, str(cert))[0] == 401, path
    with pytest.raises(OSError):  # plain HTTP to the HTTPS port: no answer
        http_get(w.url.replace("https:", "http:") + "/customers/t1", 5)
    status, view = w.customer("x" * 5000)
    assert status == 404 and len(view["error"]) < 200 and "5000 characters" in view["error"]


def info_version(samples: dict[Any, float]) -> str:
    (labels,) = [lab for (n, lab) in samples if n == "riskmon_worker_info"]
    return dict(labels)["riskmon_version"]


def test_a_backlog_produced_at_once_is_processed_in_send_order(
    dep: Deployment, workers: Callable[..., WorkerProcess]
) -> None:
    """A whole book waiting in the three topics (catch-up after downtime): the worker merges the
    topics of each partition by record timestamp, so no topic runs ahead of the others, nothing
    valid is dead-lettered, and the alerts equal the pure pipeline's over the file order.
    (Before the alignment, a 2-customer book produced at once lost both loans as too_late.)"""
    custs = customers_on(dep.partitions, 3)
    events = loan_book({c: i % 2 == 0 for i, c in enumerate(custs)}, months=4)
    dep.produce(events)  # before any worker runs: a backlog on every topic
    w = workers(dep).wait_ready()
    wait_until("backlog handled", _reached([w], len(events)), timeout=60)
    assert w.metric_sum("riskmon_dead_letters_total") == 0
    assert w.metric_sum("riskmon_events_total", outcome="processed") == len(events)
    assert_as_reference(dep, w, events, custs)


def assert_as_reference(
    dep: Deployment, w: WorkerProcess, events: Sequence[Event], custs: Sequence[str]
) -> None:
    """The alerts on the topic and each customer's view equal the pure pipeline's over
    ``events`` in file order (and the deteriorating customers did alert)."""
    ref = reference(events)
    raw = [r.value for r in dep.read("alerts")]
    assert raw, "the deteriorating customers should alert"
    assert_same_records(alert_dicts(raw), alert_dicts(ref.values("alerts")))
    for c in custs:
        assert w.customer(c) == (200, expected_view(ref, c))


# -- 2. poison corpus ------------------------------------------------------------------------------
def txn(cust: str, eid: str, when: dt.datetime, amount: float = 100.0) -> bytes:
    return encode(
        TransactionEvent(
            event_id=eid,
            customer_id=cust,
            event_time=when,
            kind="credit",
            account_id=f"{cust}-A",
            amount=amount,
        )
    )


def customers_on(n_partitions: int, count: int) -> list[str]:
    """``count`` customer ids per partition (keys are partitioned by murmur2, as produced)."""
    per: dict[int, list[str]] = defaultdict(list)
    i = 0
    while min((len(per[p]) for p in range(n_partitions)), default=0) < count:
        cid = f"p{i}"
        per[murmur2_partition(cid.encode(), n_partitions)].append(cid)
        i += 1
    return [c for p in range(n_partitions) for c in per[p][:count]]


def test_poison_corpus_is_dead_lettered_and_valid_events_all_processed(
    dep: Deployment, workers: Callable[..., WorkerProcess]
) -> None:
    custs = customers_on(dep.partitions, 2)
    ghost = "ghost"  # a repayment, but never a loan
    ghost_part = murmur2_partition(ghost.encode(), dep.partitions)
    assert any(murmur2_partition(c.encode(), dep.partitions) == ghost_part for c in custs)
    book = loan_book({c: i % 2 == 0 for i, c in enumerate(custs)}, months=3)
    groups = steps(book)
    c0 = custs[0]
    valid_txn = txn(c0, "v-1", T0 + dt.timedelta(days=1))
    as_json = msgspec.json.decode(valid_txn)
    naive = {**as_json, "event_time": "2026-01-02T00:00:00"}
    ghost_pay = RepaymentEvent(
        event_id="ghost-pay",
        customer_id=ghost,
        event_time=T0 + dt.timedelta(days=29),  # inside the bound of the step-2 watermark
        kind="payment_received",
        loan_id="ghost-L",
        amount=500.0,
    )
    # (role, key, value, expected dead-letter reason)
    early: list[tuple[str, bytes, bytes, str]] = [
        ("transactions", c0.encode(), b"\x00\xff\xfe garbage \x89PNG", "not_json"),
        ("transactions", c0.encode(), valid_txn[: len(valid_txn) // 2], "not_json"),
        ("transactions", c0.encode(), msgspec.json.encode({**as_json, "amount": "lots"}), "schema"),
        ("loans", c0.encode(), msgspec.json.encode({"event_id": "x", "customer_id": c0}), "schema"),
        ("transactions", c0.encode(), msgspec.json.encode({**as_json, "amount": 1e300}), "schema"),
        ("transactions", c0.encode(), msgspec.json.encode({**as_json, "event_id": "e" * 10_000}),
         "schema"),
        ("transactions", c0.encode(), msgspec.json.encode({**as_json, "kind": "refund"}), "schema"),
        ("repayments", c0.encode(), msgspec.json.encode({**as_json, "kind": "refund"}), "schema"),
        ("transactions", c0.encode(), msgspec.json.encode(naive), "schema"),
        ("transactions", custs[1].encode(), valid_txn, "key_mismatch"),
        ("repayments", ghost.encode(), encode(ghost_pay), "unknown_loan"),
        ("transactions", None, txn(c0, "nokey-1", T0 + dt.timedelta(days=1)), "missing_key"),
        ("transactions", c0.encode(), b"[" * 1000 + b"]" * 1000, "schema"),
        ("repayments", c0.encode(), b'{"a":' * 3000 + b"1" + b"}" * 3000, "too_deep"),
        ("transactions", c0.encode(), msgspec.json.encode({**as_json, "x": "y" * 100_000}),
         "oversized"),
        ("transactions", c0.encode(), txn(c0, "ancient", dt.datetime(1850, 1, 2, tzinfo=dt.UTC)),
         "time_out_of_range"),
        ("transactions", c0.encode(), txn(c0, "future", dt.datetime(2200, 1, 2, tzinfo=dt.UTC)),
         "future_event"),
        ("transactions", c0.encode(), valid_txn.replace(b'"amount":100.0', b'"amount":NaN'),
         "not_json"),
        ("transactions", c0.encode(), msgspec.json.encode({**as_json, "amount": -5}), "schema"),
        ("transactions", c0.encode(), b"", "not_json"),
    ]  # fmt: skip
    # odd but valid: a customer id of unicode and an injection attempt, keyed by it
    odd = "Zoë'); DROP TABLE customers;-- <script>"
    odd_txn = ("transactions", odd.encode(), txn(odd, "odd-1", T0 + dt.timedelta(days=2)))
    too_late = (
        "transactions",
        c0.encode(),
        txn(c0, "old-1", T0 + dt.timedelta(days=5)),
        "too_late",
    )
    w = workers(dep).wait_ready()
    feed(dep, [w], groups[:2])
    feed(dep, [w], [[(r, k, v) for r, k, v, _ in early], [odd_txn]])
    assert w.metric_sum("riskmon_parked_events") == 1  # the ghost's repayment waits for a loan
    feed(dep, [w], groups[2:])
    assert w.metric_sum("riskmon_parked_events") == 1  # the loans topic has not moved on yet
    # a contract booked on the ghost's partition 60 days in: the loans topic is now past the
    # ghost's repayment by more than the lateness bound, so its loan is not coming
    mover = next(
        c for c in (f"m{i}" for i in range(1000))
        if murmur2_partition(c.encode(), dep.partitions) == ghost_part
    )  # fmt: skip
    role, key, value = loan_book({mover: False}, months=1)[0]
    opened = msgspec.structs.replace(
        decode(value, LoanEvent), event_time=T0 + dt.timedelta(days=60)
    )
    feed(dep, [w], [[(role, key, encode(opened))]])
    feed(dep, [w], [[too_late[:3]]])
    bad = [*early, too_late]
    book = [*book, (role, key, encode(opened))]

    dead = [decode(r.value, DeadLetter) for r in dep.read("deadletter")]
    assert len(dead) == len(bad)
    got = Counter((d.topic, d.key, d.original, d.reason) for d in dead)
    assert got == Counter((dep.names.by_role(r), k, v, reason) for r, k, v, reason in bad)
    assert all(d.detail for d in dead)
    assert w.metric_sum("riskmon_parked_events") == 0
    reasons = Counter(reason for *_, reason in bad)
    for reason, n in reasons.items():
        assert w.metric_sum("riskmon_dead_letters_total", reason=reason) == n, reason
    assert w.metric_sum("riskmon_events_total", outcome="dead_letter") == len(bad)
    assert w.metric_sum("riskmon_events_total", outcome="processed") == len(book) + 1
    status, view = w.customer(urllib.parse.quote(odd, safe=""))
    assert status == 200 and view["customer_id"] == odd
    for role in ("loans", "repayments", "transactions"):
        n = sum(1 for e in book if e[0] == role) + (role == "transactions")
        topic = dep.names.by_role(role)
        assert w.metric_sum("riskmon_events_total", topic=topic, outcome="processed") == n

    # duplicates: counted, and nothing else changes (no output, same state)
    ref = reference(book[:-1])
    views = {c: w.customer(c) for c in custs}
    assert all(v == (200, expected_view(ref, c)) for c, v in views.items())
    outputs_before = {role: len(dep.read(role)) for role in ("alerts", "grades", "deadletter")}
    assert outputs_before["alerts"] > 0
    recent = [e for g in groups[-2:] for e in g]
    feed(dep, [w], [recent])
    assert w.metric_sum("riskmon_events_total", outcome="duplicate") == len(recent)
    assert w.metric_sum("riskmon_events_total", outcome="processed") == len(book) + 1
    assert {role: len(dep.read(role)) for role in outputs_before} == outputs_before
    assert {c: w.customer(c) for c in custs} == views


# -- 3. SIGKILL and restart ------------------------------------------------------------------------
def committed(dep: Deployment) -> dict[tuple[str, int], int]:
    """The group's committed offset per input topic-partition (-1: none yet)."""
    consumer = KafkaConsumer(
        group_id=dep.app_id, enable_auto_commit=False, **dep.settings.kafka_python_kwargs()
    )
    try:
        return {
            (t, p): consumer.committed(TopicPartition(t, p)) or -1
            for t in dep.names.inputs
            for p in range(dep.partitions)
        }
    finally:
        consumer.close()


def restart_report(dep: Deployment, w: WorkerProcess, ref: Reference, custs: Sequence[str]) -> str:
    """What a restarted worker did, for a failure message: its event counters, the group's
    committed offsets, and the first customer whose view differs from the reference."""
    counts = {
        (dict(labels).get("topic", ""), dict(labels).get("outcome", "")): v
        for (name, labels), v in w.metrics().items()
        if name == "riskmon_events_total"
    }
    lines = [f"events: {counts}", f"committed: {committed(dep)}"]
    for c in custs:
        got, want = w.customer(c), (200, expected_view(ref, c))
        if got != want:
            lines.append(f"first differing view, {c}: got {got}, want {want}")
            break
    return "\n".join(lines)


def views_match(w: WorkerProcess, ref: Reference, custs: Sequence[str]) -> Callable[[], bool]:
    def check() -> bool:
        return all(w.customer(c) == (200, expected_view(ref, c)) for c in custs)

    return check


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_sigkill_restart_recovers_state_and_loses_no_alert(
    dep: Deployment, workers: Callable[..., WorkerProcess], store: str
) -> None:
    """Also with RocksDB tables, whose batches take the other changelog path (store updated
    once the changelog offsets are known)."""
    custs = customers_on(dep.partitions, 3)
    book = loan_book({c: i % 3 != 2 for i, c in enumerate(custs)}, months=4)
    groups = steps(book)
    half = len(groups) // 2
    w = workers(dep, "first", store).wait_ready()
    feed(dep, [w], groups[:half])
    wait_until(
        "a commit on both partitions of the transactions topic",
        lambda: all(committed(dep)[(dep.names.transactions, p)] > 0 for p in range(dep.partitions)),
        timeout=30,
    )
    before_kill = [r.value for r in dep.read("alerts")]
    assert before_kill, "the test needs alerts before the crash"
    dep.produce(groups[half])  # mid-stream: killed while (or before) handling this step
    w.kill()

    # state recovered from the changelog, key by key (plus the step the kill interrupted)
    w2 = workers(dep, "second", store).wait_ready()
    ref_mid = reference([e for g in groups[: half + 1] for e in g])
    try:
        wait_until("restored state equals the reference", views_match(w2, ref_mid, custs), 30)
    except AssertionError as exc:  # say what the restarted worker did (a rare timeout in CI)
        raise AssertionError(f"{exc}\n{restart_report(dep, w2, ref_mid, custs)}") from None

    feed(dep, [w2], groups[half + 1 :])
    ref = reference(book)
    assert views_match(w2, ref, custs)()

    raw = [r.value for r in dep.read("alerts")]
    alerts = [decode(v, Alert) for v in raw]
    want = alert_dicts(ref.values("alerts"))
    got = alert_dicts(raw)
    want_ids = {a["event_id"] for a in want}
    assert want_ids <= {a["event_id"] for a in got}, "an alert was lost"
    assert {a.alert_id for a in alerts} == {a["alert_id"] for a in want}
    first: dict[str, dict[str, Any]] = {}
    for a in got:  # a re-emitted record is the same record: same ids, same content
        first.setdefault(a["event_id"], a)
        assert a == first[a["event_id"]]
    assert_same_records(list(first.values()), want)
    check_triggers(dep, raw)
    # commits follow processing: every input partition committed to its end within seconds,
    # the killed worker's uncommitted tail included (a restart would re-read nothing)
    ends = true_ends(dep)
    try:
        wait_until("committed offsets at the ends", lambda: committed(dep) == ends, 20)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: committed {committed(dep)}, ends {ends}") from None


def true_ends(dep: Deployment) -> dict[tuple[str, int], int]:
    """Each input topic-partition's end (last offset + 1; -1 for an empty one, as ``committed``
    has nothing there), read from the records themselves: the broker's ListOffsets is wrong."""
    ends = {(t, p): -1 for t in dep.names.inputs for p in range(dep.partitions)}
    for role in ("loans", "repayments", "transactions"):
        for r in dep.read(role, idle_polls=2):
            key = (r.topic, r.partition)
            ends[key] = max(ends[key], r.offset + 1)
    return ends


# -- 4. two workers --------------------------------------------------------------------------------
def test_two_workers_split_partitions_and_route_customer_reads(
    broker: EmbeddedBroker,
    expert_card_path: Path,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    dep = Deployment(broker, expert_card_path, tmp_path, partitions=4)
    a = workers(dep, "a").wait_ready()
    b = workers(dep, "b")

    def split() -> bool:
        pa, pb = a.assigned(), b.assigned()
        return bool(pa and pb and not pa & pb and pa | pb == set(range(dep.partitions)))

    wait_until("both workers to own partitions", split, timeout=60)
    custs = customers_on(dep.partitions, 2)
    book = loan_book({c: i % 2 == 0 for i, c in enumerate(custs)}, months=3)
    feed(dep, [a, b], steps(book))
    pa, pb = a.assigned(), b.assigned()
    assert pa is not None and pb is not None
    assert not pa & pb and pa | pb == set(range(dep.partitions))

    ref = reference(book)
    alerts = [decode(r.value, Alert) for r in dep.read("alerts")]
    assert len(alerts) == len(ref.values("alerts"))
    owner = {c: (a if murmur2_partition(c.encode(), dep.partitions) in pa else b) for c in custs}
    for w in (a, b):  # each worker emitted exactly the alerts of the customers it owns
        mine = sum(1 for al in alerts if owner[al.customer_id] is w)
        assert w.metric_sum("riskmon_alerts_total") == mine, w.name
        processed = sum(1 for e in book if owner[e[1].decode()] is w)
        assert w.metric_sum("riskmon_events_total", outcome="processed") == processed
    assert {owner[al.customer_id].name for al in alerts} == {"a", "b"}
    for c in custs:  # either worker answers for any customer (routed to the owner)
        want = (200, expected_view(ref, c))
        assert a.customer(c) == want, c
        assert b.customer(c) == want, c
    assert a.customer("nobody")[0] == 404 and b.customer("nobody")[0] == 404


def test_a_partition_that_moves_away_and_back_is_not_served_from_a_stale_cache(
    dep: Deployment, workers: Callable[..., WorkerProcess]
) -> None:
    """A live rebalance of a busy worker, twice. Its partitions go to b for a while (b applies
    events to them), then come back: a keeps consuming (a seek racing the revocation used to
    crash its fetcher) and reads b's state from the table, not the decoded entries it cached
    between batches before."""
    custs = customers_on(dep.partitions, 2)
    book = loan_book({c: i % 2 == 0 for i, c in enumerate(custs)}, months=4)
    groups = steps(book)
    third = len(groups) // 3
    a = workers(dep, "a", env={"RISKMON_CACHE_CUSTOMERS": "50000"}).wait_ready()
    feed(dep, [a], groups[:third])
    b = workers(dep, "b")

    def owns(w: WorkerProcess, n: int) -> Callable[[], bool]:
        return lambda: len(w.assigned() or ()) == n

    wait_until("a and b to own one partition each", lambda: owns(a, 1)() and owns(b, 1)(), 60)
    feed(dep, [a, b], groups[third : 2 * third])
    assert b.metric_sum("riskmon_events_total", outcome="processed") > 0
    b.stop()
    wait_until("a to own both partitions again", owns(a, 2), 60)
    feed(dep, [a], groups[2 * third :])

    ref = reference(book)
    try:  # a stale cache never catches up; the last batch's table writes may still be landing
        wait_until("a's views to equal the reference", views_match(a, ref, custs), 30)
    except AssertionError as exc:
        report = restart_report(dep, a, ref, custs)
        raise AssertionError(f"a stale cache? {exc}\n{report}") from None
    got = {d["event_id"]: d for d in alert_dicts([r.value for r in dep.read("alerts")])}
    assert_same_records(list(got.values()), alert_dicts(ref.values("alerts")))


# -- the clients users bring --------------------------------------------------------------------
def _produce_foreign(client: str, dep: Deployment, path: Path) -> int:
    """Send the file's lines as a third-party producer would: keyed by customer id, routed by
    ``kind``, no riskmon order header; record timestamps rise with the line number (as produce
    times would). Returns the count."""
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    bootstrap = dep.broker.url
    t0 = 1_700_000_000_000
    if client == "kafka-python":
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
        for i, line in enumerate(lines):
            role, key = route_line(line)
            topic = dep.names.by_role(role or "transactions")
            producer.send(topic, key=key, value=line, timestamp_ms=t0 + i)
        producer.flush()
        producer.close()
    else:
        from confluent_kafka import Producer

        # murmur2, as Java and kafka-python: librdkafka's default partitioner hashes otherwise
        p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
        for i, line in enumerate(lines):
            role, key = route_line(line)
            topic = dep.names.by_role(role or "transactions")
            p.produce(topic, value=line, key=key, timestamp=t0 + i)
            p.poll(0)
        assert p.flush(30) == 0, "confluent-kafka could not deliver every record"
    return len(lines)


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_a_third_party_producer_gives_the_backtest_results(
    client: str, dep: Deployment, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """A book sent by another client (no order headers; the worker merges the topics by record
    timestamp) yields exactly the alerts and dead-letter reasons of the backtest of the same
    file."""
    path = tmp_path / "book.jsonl"
    with path.open("wb") as fh:
        write_jsonl(Simulation(SimConfig(customers=60, months=4, seed=21)).records(), fh)
    n = _produce_foreign(client, dep, path)
    w = workers(dep).wait_ready()
    wait_until("the book processed", _reached([w], n), 180)
    want = backtest(path, artifact.load(dep.scorecard), dep.partitions)
    got = [r.value for r in dep.read("alerts")]
    assert len(got) == len(want.alerts) > 0
    assert_same_records(alert_dicts(got), alert_dicts([encode(a) for a in want.alerts]))
    reasons = Counter(decode(r.value, DeadLetter).reason for r in dep.read("deadletter"))
    assert reasons == want.dead_letters
