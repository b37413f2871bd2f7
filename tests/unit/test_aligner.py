"""The aligner's merge of co-partitioned topics: its run-taking fast path hands over exactly the
records, in exactly the order, of the per-record loop it shortcuts (no broker: a stand-in app
with one partition assigned, nothing lagging)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.kafka.aligner import STALL_WARN_S, _Aligner, _Queued
from streams.kafka.order import Seqs
from streams.kafka.tables import RecordBatch

TOPICS = ("loans", "repayments", "transactions")
CHAIN, OTHER = b"chain-a!", b"chain-b!"


@dataclass(frozen=True)
class _TP:
    topic: str
    partition: int


@dataclass
class _Message:
    tp: _TP
    records: list[tuple[int, bytes, bytes, int]]
    seqs: Seqs | None
    generation_id: int = 1

    @property
    def partition(self) -> int:
        return self.tp.partition


@dataclass
class _Event:
    message: _Message
    acked: bool = False

    def ack(self) -> None:
        self.acked = True


@dataclass
class _Consumer:
    tps: set[_TP]
    _committed_offset: dict[_TP, int] = field(default_factory=dict)

    def assignment(self) -> set[_TP]:
        return self.tps

    highwaters: dict[_TP, int | None] = field(default_factory=dict)

    def highwater(self, tp: _TP) -> int | None:
        return self.highwaters.get(tp, 0)  # default: fetched, nothing more there


class _Flow:
    def is_active(self) -> bool:
        return True


@dataclass
class _App:
    consumer: _Consumer
    rebalancing: bool = False
    consumer_generation_id: int = 1
    flow_control: _Flow = field(default_factory=_Flow)


@st.composite
def _queues(draw: st.DrawFn) -> tuple[list[tuple[str, list[Any]]], int | None]:
    """One partition's fetched messages per topic: a chain's records spread over the three
    topics in send order, cut into messages; sometimes a resent duplicate, a record of another
    chain, a sequence number on two topics, a message without sequence numbers, a missing
    predecessor."""
    n = draw(st.integers(1, 40))
    topic_of = [draw(st.sampled_from(TOPICS)) for _ in range(n)]
    base = draw(st.integers(0, 5))
    per_topic: dict[str, list[tuple[bytes, int] | None]] = {t: [] for t in TOPICS}
    for i, t in enumerate(topic_of):
        per_topic[t].append((CHAIN, base + i))
    for t in TOPICS:
        seqs = per_topic[t]
        if seqs and draw(st.integers(0, 4)) == 0:  # a resent duplicate, later in the topic
            dup = draw(st.sampled_from(seqs))
            seqs.insert(draw(st.integers(seqs.index(dup) + 1, len(seqs))), dup)
        if draw(st.integers(0, 7)) == 0:  # a sequence number seen on another topic too
            others = [x for u in TOPICS if u != t for x in per_topic[u]]
            if others:
                x = draw(st.sampled_from(others))
                seqs.insert(draw(st.integers(0, len(seqs))), x)
        if seqs and draw(st.integers(0, 7)) == 0:  # another producer's record
            seqs.insert(draw(st.integers(0, len(seqs))), (OTHER, draw(st.integers(0, 3))))
        if seqs and draw(st.integers(0, 7)) == 0:  # a record lost before the fetch
            del seqs[draw(st.integers(0, len(seqs) - 1))]
    messages: list[tuple[str, list[Any]]] = []
    for t in TOPICS:
        seqs = per_topic[t]
        offset = 0
        while seqs:
            k = draw(st.integers(1, len(seqs)))
            chunk, seqs = seqs[:k], seqs[k:]
            no_header = draw(st.integers(0, 9)) == 0
            messages.append((t, [(offset + j, s, no_header) for j, s in enumerate(chunk)]))
            offset += k
    expected = draw(st.sampled_from([None, base, base, base, base + 1]))
    return messages, expected


def _drain(messages: list[tuple[str, list[Any]]], expected: int | None, fast: bool) -> Any:
    tps = {_TP(t, 0) for t in TOPICS}
    app = _App(_Consumer(tps))
    got: list[tuple[list[Any], list[str] | None]] = []

    async def handler(batch: RecordBatch) -> None:
        got.append((list(batch.records), batch.topics))

    aligner = _Aligner(app, TOPICS, handler, idle_s=30.0)  # type: ignore[arg-type]
    if not fast:
        aligner._take_runs = lambda *_a: None  # type: ignore[method-assign]
    qs: dict[str, deque[_Queued]] = {t: deque() for t in TOPICS}
    aligner.queues[0] = qs
    events = []
    for t, recs in messages:
        records = [(o, b"k", b"%d" % o, 1000 + o) for o, _s, _nh in recs]
        seqs = None if recs[0][2] else Seqs.of([s for _o, s, _nh in recs])
        event = _Event(_Message(_TP(t, 0), records, seqs))
        events.append(event)
        qs[t].append(_Queued(event, event.message))  # type: ignore[arg-type]
    if expected is not None:
        aligner._chains(0)[CHAIN] = expected
    asyncio.run(_run(aligner))
    left = {t: [(q.message.records[0][0], q.pos) for q in qs[t]] for t in TOPICS}
    return got, dict(aligner._chains(0)), left, [e.acked for e in events]


async def _run(aligner: _Aligner) -> None:
    await aligner.drain(0)
    while aligner.inflight:
        await aligner.inflight.popleft()


@settings(max_examples=400, deadline=None)
@given(_queues())
def test_runs_hand_over_what_the_per_record_merge_does(case: Any) -> None:
    """Same batches (records and their topics, in order), same chain positions, same records
    left waiting, same messages acked, with and without the fast path."""
    messages, expected = case
    assert _drain(messages, expected, fast=True) == _drain(messages, expected, fast=False)


def test_a_plain_chain_goes_over_in_runs() -> None:
    """The common case is taken whole by the fast path (the per-record loop gets nothing)."""
    tps = {_TP(t, 0) for t in TOPICS}
    aligner = _Aligner(_App(_Consumer(tps)), TOPICS, None, idle_s=30.0)  # type: ignore[arg-type]
    qs: dict[str, deque[_Queued]] = {t: deque() for t in TOPICS}
    for t, first, seqs in (
        ("transactions", 0, [0, 1]),
        ("repayments", 0, [2]),
        ("transactions", 2, [3, 4]),
    ):
        records = [(first + j, b"k", b"v", 0) for j in range(len(seqs))]
        message = _Message(_TP(t, 0), records, Seqs.of([(CHAIN, s) for s in seqs]))
        qs[t].append(_Queued(_Event(message), message))  # type: ignore[arg-type]
    chains = {CHAIN: 0}
    out: list[Any] = []
    topics: list[str] = []
    done: list[Any] = []
    aligner._take_runs(qs, chains, out, topics, done, 1, tps)  # type: ignore[arg-type]
    assert [r[0] for r in out] == [0, 1, 0, 2, 3]
    assert topics == ["transactions", "transactions", "repayments", "transactions", "transactions"]
    assert chains[CHAIN] == 5 and not any(qs.values()) and len(done) == 3


def test_after_a_restart_a_topic_not_fetched_yet_holds_the_merge() -> None:
    """New consumer generation, chains not seen yet: the repayments queue is empty and no fetch
    response has told whether records wait there (high-water mark unknown), so the
    transactions records wait too; once the mark shows nothing more (or the records come),
    they go. Merging them at once could apply an event weeks later than a repayment still
    on the broker and make that repayment too_late."""
    from faust.types import TP  # what the aligner asks the consumer about

    tps = {TP(t, 0) for t in TOPICS}
    repayments = TP("repayments", 0)
    consumer = _Consumer(tps, {tp: 10 for tp in tps}, {repayments: None})
    got: list[list[Any]] = []

    async def handler(batch: RecordBatch) -> None:
        got.append([r[0] for r in batch.records])

    aligner = _Aligner(_App(consumer), TOPICS, handler, idle_s=30.0)  # type: ignore[arg-type]
    records = [(10 + j, b"k", b"v", 1000 + j) for j in range(3)]
    message = _Message(TP("transactions", 0), records, Seqs.of([(CHAIN, 7 + j) for j in range(3)]))
    aligner.queues[0] = {t: deque() for t in TOPICS}
    aligner.queues[0]["transactions"].append(_Queued(_Event(message), message))  # type: ignore[arg-type]
    asyncio.run(_run(aligner))
    assert got == [] and 0 in aligner.stalled
    why = aligner._why(0)  # what the worker logs when a partition waits for long
    assert "transactions: head offset 10 seq 7, 1 messages" in why
    assert "repayments: empty, high-water None, received None, committed 10, lagging True" in why
    # the stand-in has none of Faust's partition sets, nor an aiokafka consumer
    assert "dropped None, skipped None, handed to Faust None, skipped by Faust's stream None" in why
    consumer.highwaters[repayments] = 10  # fetched: nothing past the committed offset
    asyncio.run(_run(aligner))
    assert got == [[10, 11, 12]]


def _owed_stall(
    seek_wait: Callable[[dict[Any, int]], Awaitable[None]],
) -> tuple[_Aligner, _Consumer, set[Any]]:
    """The restart test's stall: partition 0's repayments head (offset 6, seq 12) waits for
    transactions records 3..7, which the broker has (high-water mark 8, committed 3) but which
    never arrived; every topic-partition is active in Faust."""
    from faust.types import TP

    tps = {TP(t, 0) for t in TOPICS}
    consumer = _Consumer(tps, {tp: 3 for tp in tps}, {TP("transactions", 0): 8})
    consumer._active_partitions = set(tps)  # type: ignore[attr-defined]
    consumer.seek_wait = seek_wait  # type: ignore[attr-defined]

    async def handler(batch: RecordBatch) -> None:
        raise AssertionError("nothing may go before the transactions records")

    aligner = _Aligner(_App(consumer), TOPICS, handler, idle_s=30.0)  # type: ignore[arg-type]
    message = _Message(TP("repayments", 0), [(6, b"k", b"v", 1000)], Seqs.of([(CHAIN, 12)]))
    aligner.queues[0] = {t: deque() for t in TOPICS}
    aligner.queues[0]["repayments"].append(_Queued(_Event(message), message))  # type: ignore[arg-type]
    asyncio.run(_run(aligner))
    assert 0 in aligner.stalled
    return aligner, consumer, tps


def _waited(aligner: _Aligner, seconds: float) -> None:
    """Partition 0 has waited ``seconds``."""
    aligner.stalled[0] = (time.monotonic() - seconds, time.time() - seconds)


def test_a_waiting_partition_fetches_again_records_that_never_arrived() -> None:
    """After ``STALL_WARN_S`` the aligner seeks the topic-partition that owes the wait records
    to its next offset, once per wait; not a topic-partition that delivered something since
    the wait began, nor one Faust has paused."""
    from faust.types import TP

    seeks: list[dict[Any, int]] = []

    async def seek_wait(partitions: dict[Any, int]) -> None:
        seeks.append(dict(partitions))

    aligner, consumer, tps = _owed_stall(seek_wait)
    transactions = TP("transactions", 0)
    assert seeks == []
    _waited(aligner, STALL_WARN_S / 2)
    asyncio.run(aligner.unstall())
    assert seeks == []  # not yet
    _waited(aligner, STALL_WARN_S + 1)
    asyncio.run(aligner.unstall())
    asyncio.run(aligner.unstall())
    assert seeks == [{transactions: 3}]  # once per wait

    aligner.received[transactions] = 4  # records 3..4 came since; 5..7 did not
    _waited(aligner, STALL_WARN_S + 1)
    aligner.arrived[transactions] = time.monotonic()  # ... after the new wait began
    asyncio.run(aligner.unstall())
    assert seeks == [{transactions: 3}]
    aligner.arrived[transactions] = time.monotonic() - 2 * STALL_WARN_S  # before it
    asyncio.run(aligner.unstall())
    assert seeks == [{transactions: 3}, {transactions: 5}]

    _waited(aligner, STALL_WARN_S + 2)
    consumer._active_partitions = tps - {transactions}  # type: ignore[attr-defined]
    asyncio.run(aligner.unstall())  # paused by Faust (a full buffer): it is not owed yet
    assert len(seeks) == 2


def test_a_refetch_that_fails_is_logged_not_raised() -> None:
    """The refetch runs in a Faust timer, where an exception would crash the worker: a seek
    that fails (the partition revoked meanwhile, a broker timeout) is logged instead."""
    from faust.types import TP

    async def seek_wait(partitions: dict[Any, int]) -> None:
        raise RuntimeError("No current assignment for partition")

    aligner, _consumer, _tps = _owed_stall(seek_wait)
    _waited(aligner, STALL_WARN_S + 1)
    asyncio.run(aligner.unstall())  # no exception
    assert aligner.refetched == {TP("transactions", 0): aligner.stalled[0][0]}
