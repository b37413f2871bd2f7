"""No message stops the pipeline or poisons a customer: each bad message is dead-lettered with a
reason, and everything else is processed exactly as without it."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas.codec import decode, encode
from schemas.events import Alert, DeadLetter, GradeChange, RepaymentEvent, TransactionEvent
from streams.core import arms as arms_module
from streams.core import pipeline as pipeline_module
from streams.core.intake import EventLimits
from streams.core.pipeline import Pipeline
from streams.core.records import BatchResult, InRecord
from streams.evaluation.backtest import backtest
from streams.sim.simulate import SimConfig, Simulation, write_jsonl
from tests.conftest import expert_scorecard, loan_book
from tests.unit.test_pipeline import records


def dead(res: BatchResult) -> list[DeadLetter]:
    return [decode(o.value, DeadLetter) for o in res.outputs if o.topic == "deadletter"]


def decisions(res: BatchResult) -> list[Any]:
    """Alerts and grade changes without their wall-clock stamp."""
    out = []
    for o in res.outputs:
        if o.topic == "alerts":
            out.append(msgspec.structs.replace(decode(o.value, Alert), emitted_at=None))
        elif o.topic == "grades":
            out.append(decode(o.value, GradeChange))
    return out


def settled(res: BatchResult) -> Counter[str]:
    """Outcomes by kind, whatever the topic."""
    c: Counter[str] = Counter()
    for (_topic, outcome), n in res.outcomes.items():
        c[outcome] += n
    return c


def with_extra(
    good: list[tuple[str, bytes, bytes]], at: int, extra: list[tuple[str, bytes | None, bytes]]
) -> list[InRecord]:
    """``good`` with ``extra`` inserted at position ``at``, as consumed records; the extra ones
    come from another partition, so the good records keep the offsets (and alert triggers) they
    have without them."""
    good_recs = records(good)
    return [*good_recs[:at], *records(extra, partition=9), *good_recs[at:]]  # type: ignore[arg-type]


BOOK = loan_book({"a": True, "b": False, "c": True})
HOSTILE: list[tuple[str, bytes | None, bytes]] = [
    ("transactions", b"a", b"[" * 1000 + b"]" * 1000),  # nested arrays: a schema error
    ("repayments", b"b", b'{"a":' * 2000 + b"1" + b"}" * 2000),  # nested objects: recursion
    ("transactions", b"c", b'{"x": "' + b"y" * 100_000 + b'"}'),  # oversized
    ("transactions", b"a", b"\xff\xfe not utf-8"),
    ("transactions", b"a", b""),
    ("loans", b"a", b"null"),
]


def test_hostile_messages_are_dead_lettered_and_the_rest_is_untouched() -> None:
    """Deep nesting (which makes msgspec raise RecursionError), oversized and undecodable
    messages each become one dead letter with its reason; the customers' decisions equal those
    of the same book without them."""
    clean = Pipeline(expert_scorecard()).process(records(BOOK))
    res = Pipeline(expert_scorecard()).process(with_extra(BOOK, 5, HOSTILE))
    reasons = Counter(d.reason for d in dead(res))
    assert reasons == {"schema": 2, "too_deep": 1, "oversized": 1, "not_json": 2}
    assert decisions(res) == decisions(clean)
    assert res.dirty == clean.dirty
    assert sum(settled(res).values()) == len(BOOK) + len(HOSTILE)


def test_keyless_records_are_dead_lettered_with_their_key_kept_null() -> None:
    """A keyless record could land on any partition and split a customer's state: it is
    dead-lettered (``missing_key``), on both intake paths, and its dead letter keeps the null
    key; its ``topic`` field is the topic's name."""
    tx = next(e for e in BOOK if e[0] == "transactions")
    rep = next(e for e in BOOK if e[0] == "repayments")
    recs = with_extra(BOOK, 3, [("transactions", None, tx[2]), ("repayments", None, rep[2])])
    for kernel in (True, False):
        res = Pipeline(expert_scorecard(), state_kernel=kernel).process(recs)
        letters = dead(res)
        assert [d.reason for d in letters] == ["missing_key", "missing_key"], kernel
        assert {d.topic for d in letters} == {"riskmon.transactions", "riskmon.repayments"}
        assert all(d.key is None for d in letters)
        keys = [o.key for o in res.outputs if o.topic == "deadletter"]
        assert keys == [None, None]


def _txn(cid: str, when: dt.datetime, eid: str) -> tuple[str, bytes, bytes]:
    ev = TransactionEvent(
        event_id=eid, customer_id=cid, event_time=when, kind="credit", account_id="acc", amount=10.0
    )
    return ("transactions", cid.encode(), encode(ev))


def test_a_future_dated_event_does_not_poison_its_customer() -> None:
    """An event dated in 2200 is dead-lettered (``future_event``) and changes nothing: the
    customer's later, valid events are applied, not refused as too late. An event from 1850
    is ``time_out_of_range``, not ``too_late``."""
    last = max(decode(v, RepaymentEvent).event_time for r, _k, v in BOOK if r == "repayments")
    poison = _txn("a", dt.datetime(2200, 1, 1, tzinfo=dt.UTC), "poison")
    ancient = _txn("new", dt.datetime(1850, 1, 1, tzinfo=dt.UTC), "ancient")
    after = [_txn("a", last + dt.timedelta(days=i), f"after-{i}") for i in range(1, 4)]
    for clock in (None, lambda: (last + dt.timedelta(days=10)).timestamp()):
        pipe = Pipeline(expert_scorecard(), clock=clock)
        res = pipe.process(records([*BOOK, poison, ancient, *after]))
        assert [(d.customer_id, d.reason) for d in dead(res)] == [
            ("a", "future_event"),
            ("new", "time_out_of_range"),
        ]
        assert "2200-01-01" in dead(res)[0].detail
        assert settled(res)["processed"] == len(BOOK) + len(after)
        assert pipe.entries["a"].state.last_event_time < dt.datetime(2100, 1, 1).timestamp()


def test_wall_clock_bound_uses_the_configured_skew() -> None:
    """Live, an event more than ``future_skew_days`` ahead of the wall clock is refused; one
    inside the skew is applied."""
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    ok = _txn("a", now + dt.timedelta(hours=20), "ok")
    ahead = _txn("a", now + dt.timedelta(days=3), "ahead")
    pipe = Pipeline(expert_scorecard(), clock=now.timestamp, limits=EventLimits(1.0))
    res = pipe.process(records([ok, ahead]))
    assert [d.reason for d in dead(res)] == ["future_event"]
    assert settled(res)["processed"] == 1


def test_a_message_that_breaks_processing_is_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unforeseen error while processing one message (here: the policy raising for one
    event) fails no batch: the batch is split until that message is found, which is
    dead-lettered (``processing_error``); every other message is processed as in a run without
    it, and what the observer sees is not counted twice."""
    target = next(v for r, _k, v in BOOK if r == "repayments" and b"-due3" in v)
    target_id = decode(target, RepaymentEvent).event_id
    decide = arms_module.decide

    def fragile(state: Any, obs: Any, ctx: Any, quality: Any = None) -> Any:
        if obs.trigger_event_id == target_id:
            raise ZeroDivisionError("boom")
        return decide(state, obs, ctx, quality)

    monkeypatch.setattr(arms_module, "decide", fragile)
    recs = records(BOOK)
    without = [r for r in recs if r.value != target]  # the same offsets as with it
    seen: list[Any] = []
    clean_seen: list[Any] = []
    clean = Pipeline(expert_scorecard(), observe=clean_seen.append).process(without)
    res = Pipeline(expert_scorecard(), observe=seen.append).process(recs)
    letters = dead(res)
    assert [(d.reason, d.original) for d in letters] == [("processing_error", target)]
    assert "ZeroDivisionError: boom" in letters[0].detail
    assert decisions(res) == decisions(clean)
    assert len(seen) == len(clean_seen)
    assert settled(res)["processed"] == settled(clean)["processed"]


def test_a_store_failure_fails_the_batch_instead_of_dead_lettering() -> None:
    """No message is at fault when the table cannot be read: the batch fails as a whole."""

    def load(cid: str) -> bytes | None:
        raise OSError("disk gone")

    pipe = Pipeline(expert_scorecard(), load=load)
    with pytest.raises(pipeline_module.LoadError, match="disk gone"):
        pipe.process(records(BOOK))


def test_backtest_accounts_for_every_message(tmp_path: Path) -> None:
    """messages in = processed + duplicates + dead letters: a noisy simulated book with hostile
    lines and a repayment whose loan never comes (dead-lettered at the end of the file) loses
    nothing, and the dead-letter records are kept."""
    events = tmp_path / "events.jsonl"
    with events.open("wb") as fh:
        write_jsonl(Simulation(SimConfig(customers=80, months=3, seed=4)).records(), fh)
    orphan = RepaymentEvent(
        event_id="orphan-1",
        customer_id="C9999999",
        event_time=dt.datetime(2025, 1, 15, tzinfo=dt.UTC),
        kind="payment_received",
        loan_id="never-seen",
        amount=5.0,
    )
    lines = events.read_bytes().splitlines()
    lines[40:40] = [value for _role, _key, value in HOSTILE]
    lines.append(encode(orphan))
    events.write_bytes(b"\n".join(lines) + b"\n")
    res = backtest(events, expert_scorecard(), partitions=3)
    counts = res.accounting()
    messages = sum(1 for line in lines if line.strip())  # a blank line is no message
    assert counts["messages"] == messages
    assert sum(v for k, v in counts.items() if k != "messages") == messages
    assert res.dead_letters["unknown_loan"] >= 1, res.dead_letters
    assert res.dead_letters["too_deep"] == 1 and res.dead_letters["oversized"] == 1
    assert len(res.dead_letter_records) == sum(res.dead_letters.values())
