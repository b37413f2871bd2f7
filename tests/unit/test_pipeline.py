"""The per-batch pipeline without Kafka: alerts, batching invariance, parking, dead letters."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from typing import Any

import msgspec
import pytest

from schemas.codec import RecordError, decode, encode
from schemas.events import (
    INPUT_TYPES,
    Alert,
    DeadLetter,
    GradeChange,
    LoanEvent,
    RepaymentEvent,
)
from streams.core.entry import Entry
from streams.core.pipeline import Pipeline
from streams.core.records import InRecord
from tests.conftest import expert_scorecard, loan_book


def records(
    events: list[tuple[str, bytes, bytes]], partition: int = 0, offsets: Counter[str] | None = None
) -> list[InRecord]:
    """Consumed records with Kafka's offsets: per topic, continuing ``offsets`` if given."""
    offsets = Counter() if offsets is None else offsets
    out = []
    for i, (r, k, v) in enumerate(events):
        out.append(InRecord(r, partition, offsets[r], k, v, 1.0e9 + i))
        offsets[r] += 1
    return out


def run(
    pipe: Pipeline,
    recs: list[InRecord],
    batch: int,
    table: dict[str, bytes] | None = None,
    outcomes: Counter[tuple[str, str]] | None = None,
) -> list[Any]:
    """Process in batches of ``batch``, persisting entries between batches (into ``table``)
    like the worker; the outcomes are counted into ``outcomes``."""
    table = {} if table is None else table
    pipe.load = table.get
    out = []
    for i in range(0, len(recs), batch):
        pipe.entries.clear()
        res = pipe.process(recs[i : i + batch])
        table.update(res.dirty)
        out.extend(res.outputs)
        if outcomes is not None:
            outcomes.update(res.outcomes)
    return out


Run = tuple[list[Any], dict[str, bytes], Counter[tuple[str, str]]]


def kernel_and_python(recs: list[InRecord], batch: int) -> tuple[Run, Run]:
    """``recs`` through the expert card's pipeline twice, in batches of ``batch``: with the
    state kernel, then on the all-Python path; each run's outputs, table and outcomes."""
    results = []
    for use_kernel in (True, False):
        pipe = Pipeline(expert_scorecard(), offline=True, state_kernel=use_kernel)
        table: dict[str, bytes] = {}
        outcomes: Counter[tuple[str, str]] = Counter()
        out = run(pipe, recs, batch, table, outcomes)
        results.append((out, table, outcomes))
    return results[0], results[1]


def alerts_of(outputs: list[Any]) -> list[dict[str, Any]]:
    """Alert records without the one field allowed to differ between runs (emitted_at)."""
    found = []
    for o in outputs:
        if o.topic == "alerts":
            d = msgspec.to_builtins(decode(o.value, Alert))
            d.pop("emitted_at")
            found.append(d)
    return found


def test_deteriorating_customer_alerts_and_healthy_one_does_not() -> None:
    """The customer who stops paying gets alerts with reasons; the one who pays gets none."""
    pipe = Pipeline(expert_scorecard())
    out = run(pipe, records(loan_book({"bad": True, "good": False})), batch=1000)
    alerts = alerts_of(out)
    assert alerts, "no alert for a customer who stopped paying"
    assert {a["customer_id"] for a in alerts} == {"bad"}
    signals = {a["signal"] for a in alerts}
    assert {"bounced_debit", "dpd_bucket", "grade_worsening"} <= signals
    worst = max(alerts, key=lambda a: a["dpd"])
    assert worst["dpd"] >= 60 and worst["m_bucket"] in ("M3", "M4")
    assert worst["reasons"] and worst["reasons"][0]["points_lost"] > 0
    assert worst["scorecard_version"] == pipe.card.version


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_decisions_do_not_depend_on_batch_boundaries(batch: int) -> None:
    """Same events cut into different batches -> identical alerts (ids and content)."""
    recs = records(loan_book({"a": True, "b": False, "c": True}))
    whole = alerts_of(run(Pipeline(expert_scorecard()), recs, batch=len(recs)))
    cut = alerts_of(run(Pipeline(expert_scorecard()), recs, batch=batch))
    assert whole and whole == cut


def test_repayments_before_their_loan_are_parked_then_applied() -> None:
    """The loans topic lagging behind repayments must not lose repayments."""
    events = loan_book({"a": True})
    # the contract event is booked the day before the first due date (a realistic lag)
    opened = decode(events[0][2], LoanEvent)
    late_open = msgspec.structs.replace(
        opened, event_time=opened.event_time + dt.timedelta(days=29)
    )
    events[0] = ("loans", events[0][1], encode(late_open))
    loans = [e for e in events if e[0] == "loans"]
    others = [e for e in events if e[0] != "loans"]
    pipe = Pipeline(expert_scorecard())
    offsets: Counter[str] = Counter()
    res_early = pipe.process(records(others[:3], offsets=offsets))
    assert not [o for o in res_early.outputs if o.topic == "deadletter"]
    assert res_early.parked >= 2 and not res_early.outcomes.get(("repayments", "processed"))
    res = pipe.process(records(loans + others[3:], offsets=offsets))
    assert not [o for o in res.outputs if o.topic == "deadletter"]
    assert res.parked == -res_early.parked
    assert all(n >= 0 for n in res.outcomes.values())
    state = pipe.entries["a"]
    assert not state.parked
    in_order = Pipeline(expert_scorecard())
    in_order.process(records(sorted(events, key=lambda e: e[0] != "loans")))
    assert state.state.to_bytes() == in_order.entries["a"].state.to_bytes()


def test_parked_events_expire_to_dead_letter_after_the_lateness_bound() -> None:
    """A repayment for a customer that never gets a loan is dead-lettered once the loans topic
    of its partition has moved past it by more than the lateness bound."""
    orphan = [e for e in loan_book({"ghost": True}) if e[0] == "repayments"][:1]
    still = Pipeline(expert_scorecard())
    still.process(records(orphan))
    res0 = still.process(records(loan_book({"other": False})[1:]))  # loans topic did not move
    assert (
        not [o for o in res0.outputs if o.topic == "deadletter"] and still.entries["ghost"].parked
    )
    # the loans topic moves on: a contract booked 100 days after the orphan's time
    opened = decode(loan_book({"new": False})[0][2], LoanEvent)
    moved = msgspec.structs.replace(opened, event_time=opened.event_time + dt.timedelta(days=100))
    pipe = Pipeline(expert_scorecard())
    pipe.process(records(orphan))
    res = pipe.process(records([("loans", b"new", encode(moved))]))
    dead = [decode(o.value, DeadLetter) for o in res.outputs if o.topic == "deadletter"]
    assert [(d.customer_id, d.reason) for d in dead] == [("ghost", "unknown_loan")]
    assert dead[0].original == orphan[0][2]
    assert not pipe.entries["ghost"].parked


def test_bad_messages_are_dead_lettered_and_duplicates_counted() -> None:
    """Garbage, schema errors and key mismatches get reasons; a duplicate changes nothing."""
    events = loan_book({"a": False}, months=2)
    dup = events[-2]
    bad = [
        ("transactions", b"a", b"\x00\xff garbage"),
        ("transactions", b"a", b'{"event_id": "x", "customer_id": "a"'),
        ("repayments", b"a", b'{"event_id": 5}'),
        ("transactions", b"zzz", events[-1][2]),
    ]
    pipe = Pipeline(expert_scorecard())
    res = pipe.process(records([*events, dup, *bad]))
    reasons = [decode(o.value, DeadLetter).reason for o in res.outputs if o.topic == "deadletter"]
    assert reasons == ["not_json", "not_json", "schema", "key_mismatch"]
    assert res.outcomes[(dup[0], "duplicate")] == 1
    assert res.outcomes[("loans", "processed")] == 1


def test_entry_round_trips_through_bytes() -> None:
    """The table value restores state, policy state and parked events exactly."""
    pipe = Pipeline(expert_scorecard())
    events = loan_book({"a": True})
    offsets: Counter[str] = Counter()
    pipe.process(records([e for e in events if e[0] != "loans"][:2], offsets=offsets))
    pipe.process(records(events[:5], offsets=offsets))
    for e in itertools.islice(pipe.entries.values(), 3):
        again = Entry.from_bytes(e.to_bytes())
        assert again.to_bytes() == e.to_bytes()
        assert again.policy == e.policy and again.parked == e.parked


def test_a_replay_after_a_restart_changes_nothing_however_old_its_events() -> None:
    """A worker restored from the table re-consumes records it already handled (its committed
    offsets lag the changelog): they are counted as redelivered, never dead-lettered as too late
    or applied twice, and produce no output; records past the stored offsets still apply."""
    events = loan_book({"a": True, "b": False}, months=4)
    recs = records(events)
    cut = len(recs) * 3 // 4
    first = Pipeline(expert_scorecard())
    table: dict[str, bytes] = {}
    first.load = table.get
    before = first.process(recs[:cut])
    table.update(before.dirty)

    restored = Pipeline(expert_scorecard())
    restored.load = table.get
    replay = restored.process(recs[: cut // 2])  # months older than the lateness bound
    assert replay.outputs == []
    assert set(o for _t, o in replay.outcomes) == {"redelivered"}
    assert sum(replay.outcomes.values()) == cut // 2
    assert all(Entry.from_bytes(v).to_bytes() == v for v in replay.dirty.values())
    assert {c: table[c] for c in replay.dirty} == replay.dirty  # nothing changed

    rest = restored.process(recs[cut // 2 :])  # the tail: replayed half, then new records
    redelivered = sum(n for (_t, o), n in rest.outcomes.items() if o == "redelivered")
    assert redelivered == cut - cut // 2
    straight = Pipeline(expert_scorecard()).process(recs)
    assert alerts_of(before.outputs + rest.outputs) == alerts_of(straight.outputs)
    assert alerts_of(straight.outputs), "the book must alert for the test to mean anything"


def test_version_1_entries_are_read_with_offsets_unknown() -> None:
    """Entries written before input offsets were stored still load (upgrade without replay)."""
    pipe = Pipeline(expert_scorecard())
    pipe.process(records(loan_book({"a": False}, months=1)))
    e = pipe.entries["a"]
    v1 = msgspec.msgpack.encode((1, e.state.to_bytes(), e.policy.to_bytes(), e.parked))
    old = Entry.from_bytes(v1)
    assert old.offsets == [-1, -1, -1, -1] and old.state == e.state and old.policy == e.policy


def test_facts_fields_line_up_with_the_observation() -> None:
    """The pipeline copies Facts[:10] positionally into Observation[10:20]."""
    from streams.core.policy import Observation
    from streams.core.state import Facts

    assert Observation._fields[10:20] == Facts._fields[:10]


@pytest.mark.parametrize("batch", [5, 1000])
def test_batch_recorder_and_policy_kernel_match_the_per_event_path(
    batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the batch recorder (the worker's rescoring log) the quiet rescorings go through the
    policy kernel; with a per-event recorder all go through decide. Same rescorings recorded,
    same records, same table entries."""
    from streams.core import arms
    from streams.core.rescorings import Observations
    from streams.sim.simulate import SimConfig, Simulation

    offsets: Counter[str] = Counter()
    recs = []
    for r in Simulation(SimConfig(customers=40, months=6, seed=3)).records():
        recs.append(InRecord(r.topic, 0, offsets[r.topic], r.key, r.value, 1.0e9))
        offsets[r.topic] += 1
    handled = []
    kernel = arms.quiet_pass

    def spy(*args: Any) -> Any:
        quiet = kernel(*args)
        handled.append(int((~quiet.decided).sum()))
        return quiet

    monkeypatch.setattr(arms, "quiet_pass", spy)
    per_event, per_batch = Observations(), Observations()
    slow = Pipeline(expert_scorecard(), observe=per_event.add)
    fast = Pipeline(expert_scorecard(), record=per_batch.extend)
    results = []
    for pipe in (slow, fast):
        table: dict[str, bytes] = {}
        out = run(pipe, recs, batch, table)
        results.append((alerts_of(out), [o for o in out if o.topic != "alerts"], table))
    assert sum(handled) > len(per_event) // 2  # the kernel took most
    assert per_batch == per_event
    assert results[0][0] and results[0] == results[1]


def test_every_alert_and_grade_change_carries_its_rescorings_priority() -> None:
    """pd = the card's PD of the new score, exposure = the outstanding principal the state
    holds at that rescoring (the Python reference, replayed event by event), priority = their
    product to the cent; on the worker's path (policy kernel) as on decide's."""
    from streams.core.exposure import expected_loss, exposure_cents
    from streams.core.state import CustomerState, Outcome
    from streams.sim.simulate import SimConfig, Simulation

    sim = list(Simulation(SimConfig(customers=30, months=6, seed=5)).records())
    recs = records([(r.topic, r.key or b"", r.value) for r in sim])
    # the reference: each customer's exposure after each of its applied events
    want: dict[str, float] = {}
    states: dict[str, CustomerState] = {}
    pipe = Pipeline(expert_scorecard())
    for rec in recs:
        try:
            ev = decode(rec.value, INPUT_TYPES[rec.topic])
        except RecordError:
            continue
        st = states.setdefault(ev.customer_id, CustomerState.new(ev.customer_id))
        if st.apply(ev, pipe.state_cfg) is Outcome.APPLIED:
            want[ev.event_id] = exposure_cents(st, st.last_event_time) / 100
    for observe in (None, lambda o: None):
        out = run(Pipeline(expert_scorecard(), observe=observe), recs, batch=500)
        alerts = [decode(o.value, Alert) for o in out if o.topic == "alerts"]
        changes = [decode(o.value, GradeChange) for o in out if o.topic == "grades"]
        assert alerts and changes
        for r in [*alerts, *changes]:
            assert r.pd == pipe.cs.pd(r.new_score)
            assert r.exposure == want[r.trigger_event_id], r
            assert r.priority == expected_loss(r.pd, r.exposure)
        assert sum(a.exposure > 0 for a in alerts) > len(alerts) // 2
        assert {a.priority for a in alerts} != {0.0}


def test_batch_time_is_split_into_its_phases() -> None:
    """Every batch reports each phase's wall time (the worker's riskmon_batch_phase_seconds);
    they do not overlap: together at most the batch's own wall time. A batch with nothing to
    score has only apply (and serialise) time."""
    import time

    from streams.core.records import PHASES

    recs = [
        InRecord(topic, 0, i, key, value, 1.0e9)
        for i, (topic, key, value) in enumerate(loan_book({"p1": True, "p2": False}, months=3))
    ]
    pipe = Pipeline(expert_scorecard())
    t0 = time.perf_counter()
    res = pipe.process(recs)
    wall = time.perf_counter() - t0
    phases = res.phase_seconds
    assert list(phases) == list(PHASES)
    assert all(v > 0 for v in phases.values()), phases
    assert sum(phases.values()) <= wall
    garbage = pipe.process([InRecord("transactions", 0, len(recs), b"p1", b"{not json", 1.0e9)])
    assert garbage.phase_seconds["apply"] > 0
    assert garbage.phase_seconds["features"] == garbage.phase_seconds["policy"] == 0.0


@pytest.mark.parametrize("batch", [7, 700])
def test_state_kernel_and_python_path_give_the_same_records_and_table(batch: int) -> None:
    """The state kernel (with its declines and the parked customers on the Python path) and
    the all-Python path: same records in the same order, same table bytes, on a simulated book
    with delivery noise (duplicates, late and early events, repayments ahead of their loan)."""
    from schemas.events import Instalment
    from streams.sim.simulate import SimConfig, Simulation

    events = [
        (r.topic, r.key or b"", r.value)
        for r in Simulation(SimConfig(customers=60, months=8, seed=11)).records()
    ]
    # a loan booked a month late (its first repayments are parked, then applied), a schedule
    # longer than a kernel slot holds (declined: the Python path), orphans that expire
    lag = loan_book({"lag": True})
    opened = decode(lag[0][2], LoanEvent)
    lag[0] = (
        "loans",
        b"lag",
        encode(
            msgspec.structs.replace(opened, event_time=opened.event_time + dt.timedelta(days=29))
        ),
    )
    lag = lag[1:4] + lag[:1] + lag[4:]
    long = loan_book({"long": False})
    opened = decode(long[0][2], LoanEvent)
    sched = [
        Instalment(seq=k, due_date=opened.event_time.date() + dt.timedelta(days=7 * k), amount=50)
        for k in range(1, 91)
    ]
    long[0] = ("loans", b"long", encode(msgspec.structs.replace(opened, schedule=sched)))
    ghost = [
        ("repayments", k, encode(msgspec.structs.replace(ev, event_time=ev.event_time - back)))
        for _r, k, v in [e for e in loan_book({"ghost": True}) if e[0] == "repayments"][:2]
        for ev in [decode(v, RepaymentEvent)]
        for back in [dt.timedelta(days=200)]
    ]
    mixed = ghost + events[:1500] + lag + events[1500:3000] + long + events[3000:]
    recs = records(mixed)
    # a key that is not the record's customer id; a replayed span (the same offsets: counted
    # as redeliveries); the first events again from another partition (offsets restart there:
    # duplicates or too late)
    wrong = recs[2000]._replace(key=b"someone-else")
    recs = [*recs[:2500], wrong, *recs[2500:], *recs[1000:1600], *records(mixed[:300], 1)]
    (out_k, table_k, outcomes_k), (out_p, table_p, outcomes_p) = kernel_and_python(recs, batch)
    assert outcomes_k == outcomes_p
    # the replayed span's records are redeliveries, the other partition's are not (any more
    # would be the 300 read against the first partition's offsets)
    redelivered = sum(n for (_t, o), n in outcomes_k.items() if o == "redelivered")
    assert 500 < redelivered <= 600
    topics = Counter(o.topic for o in out_k)
    assert topics["alerts"] > 0 and topics["deadletter"] > 0
    dead = [decode(o.value, DeadLetter) for o in out_k if o.topic == "deadletter"]
    assert {(d.customer_id, d.reason) for d in dead} >= {("ghost", "unknown_loan")}
    assert [d.reason for d in dead if d.key == b"someone-else"] == ["key_mismatch"]
    assert {"lag", "long"} <= {a["customer_id"] for a in alerts_of(out_k)} | {
        decode(o.value, GradeChange).customer_id for o in out_k if o.topic == "grades"
    }
    assert out_k == out_p
    assert table_k == table_p


@pytest.mark.parametrize("batch", [9, 900])
def test_columns_and_records_give_the_same_results(batch: int) -> None:
    """The worker hands a batch over as columns (``InBatch``); the pipeline reads them as it
    reads a list of ``InRecord``s: same records, table and outcomes, on a noisy simulated book
    with a key mismatch, a tombstone-like empty value and a message of no input topic."""
    from streams.core.records import InBatch
    from streams.sim.simulate import SimConfig, Simulation

    events = [
        (r.topic, r.key, r.value)
        for r in Simulation(SimConfig(customers=50, months=6, seed=5)).records()
    ]
    events[700:700] = [
        ("repayments", b"p1", b""),
        ("elsewhere", b"p1", events[10][2]),
        (events[20][0], b"someone-else", events[20][2]),
    ]
    recs = [r._replace(ingest_time=1.0e9) for r in records(events)]
    results = []
    for as_columns in (False, True):
        pipe = Pipeline(expert_scorecard())
        table: dict[str, bytes] = {}
        outcomes: Counter[tuple[str, str]] = Counter()
        pipe.load = table.get
        out = []
        for i in range(0, len(recs), batch):
            part = recs[i : i + batch]
            if as_columns:
                t, _p, o, k, v, _i = zip(*part, strict=True)
                res = pipe.process(InBatch(t, 0, o, k, v, 1.0e9))
            else:
                res = pipe.process(part)
            table.update(res.dirty)
            out.extend(res.outputs)
            outcomes.update(res.outcomes)
        results.append((alerts_of(out), [o for o in out if o.topic != "alerts"], table, outcomes))
    assert results[0][0] and results[0][3][("repayments", "dead_letter")] > 0
    assert results[0] == results[1]
    with pytest.raises(ValueError, match="differ in length"):
        InBatch(("loans",), 0, (), (), (), 0.0)


def test_a_failed_batch_leaves_nothing_queued_for_the_next() -> None:
    """A batch that fails half-way (the store fails for one customer after another customer's
    events were queued for the state kernel) leaves no trace: the retried batch gives what a
    fresh pipeline gives."""
    recs = records(loan_book({"a": True, "b": False}))
    assert recs[0].key == b"a"
    down = {"b"}

    def load(cid: str) -> bytes | None:
        if cid in down:
            raise RuntimeError("store down")
        return None

    pipe = Pipeline(expert_scorecard())
    pipe.load = load
    with pytest.raises(RuntimeError):
        pipe.process(recs)
    down.clear()
    pipe.entries.clear()  # as the worker does after a failed batch
    res = pipe.process(recs)
    fresh = Pipeline(expert_scorecard()).process(recs)
    assert res.outcomes == fresh.outcomes and res.outputs == fresh.outputs
    assert res.dirty == fresh.dirty


def test_drift_counts_the_performing_book_only() -> None:
    """The live PSI compares the score distribution with the card's training baseline, drawn
    from performing customers: rescorings of a customer in default (90+ DPD) are not counted."""
    from streams.core.drift import DriftMonitor

    card = expert_scorecard()
    seen: list[Any] = []
    drift = DriftMonitor(card, window_s=10 * 365 * 86400.0, intervals=10)
    pipe = Pipeline(card, drift=drift, observe=seen.append)
    pipe.process(records(loan_book({"a": True, "b": False, "c": True}, months=6)))
    in_default = sum(1 for o in seen if o.dpd >= 90)
    assert in_default > 0, "the book must take a customer to 90+ DPD"
    assert drift.count() == len(seen) - in_default
