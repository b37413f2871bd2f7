"""Guard for the batch seam (``streams.kafka``: consumer, fetcher, agent, tables): fail loudly
when faust-streaming changes what it relies on.

Checks the pinned version, the presence and signature of every Faust/aiokafka internal the seam
overrides or calls, and (without a broker) the commit arithmetic of a batch message.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any, cast

import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from faust.app.base import App
from faust.stores.memory import Store as MemoryStore
from faust.streams import Stream
from faust.tables.base import Collection
from faust.transport.consumer import Consumer as BaseConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage, Message

from streams.kafka import agent, fetcher, order, records
from streams.kafka import consumer as batch_consumer
from streams.kafka.consumer import BatchConsumer, BatchMessage, install


def params(fn: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(fn).parameters)


def source(obj: Any) -> str:
    return inspect.getsource(obj)


def test_faust_streaming_is_the_pinned_version() -> None:
    """An upgrade must re-run this guard and re-measure before bumping FAUST_VERSION."""
    assert version("faust-streaming") == batch_consumer.FAUST_VERSION


def test_consumer_internals_used_by_batch_consumer() -> None:
    """getmany/ack overrides rely on these members and on how Faust builds commit offsets."""
    assert batch_consumer.BatchTransport.Consumer is BatchConsumer
    assert issubclass(BatchConsumer, faust_aiokafka.Consumer)
    assert params(BaseConsumer.getmany) == ["self", "timeout"]
    assert inspect.isasyncgenfunction(BaseConsumer.getmany)
    assert params(BaseConsumer.ack) == ["self", "message"]
    assert params(BaseConsumer._wait_next_records) == ["self", "timeout"]
    assert inspect.iscoroutinefunction(BaseConsumer._wait_next_records)
    assert inspect.iscoroutinefunction(BaseConsumer.perform_seek)
    assert params(faust_aiokafka.Consumer._to_message) == ["self", "tp", "record"]
    init = source(BaseConsumer.__init__) + source(BaseConsumer._reset_state)
    for attr in ("_gap", "_committed_offset", "_unacked_messages", "_buffered_partitions"):
        assert f"self.{attr} = " in init, attr
    # commits: BatchConsumer._new_offset replaces Faust's for batched topic-partitions; Faust
    # asks it for every partition with acks, commits what it returns, records it as committed
    # and drops a revoked partition's gap tree (where the acked spans are kept)
    assert params(BaseConsumer._new_offset) == ["self", "tp"]
    assert "for tp in self._acked" in source(BaseConsumer._filter_tps_with_pending_acks)
    assert "self._new_offset(tp)" in source(BaseConsumer._filter_committable_offsets)
    assert "self._committed_offset.update(committable_offsets)" in source(
        BaseConsumer._commit_offsets
    )
    assert "self._gap.pop(tp, None)" in source(BaseConsumer.on_partitions_revoked)
    assert "acked_for_tp.append(offset)" in source(BaseConsumer.ack)
    # the drain loop's receipt gaps, which BatchConsumer._add_gap declines for batched topics
    assert params(BaseConsumer._add_gap) == ["self", "tp", "offset_from", "offset_to"]
    assert "await self._add_gap(tp, r_offset + 1, offset)" in source(BaseConsumer._drain_messages)
    # wait_empty: BatchConsumer releases what the aligner holds, then bounds Faust's loop by
    # emptying the set it waits on and waking its wait for an ack
    wait_empty = source(BaseConsumer.wait_empty)
    assert "while not self.should_stop and self._unacked_messages:" in wait_empty
    assert "self._wait_for_ack" in wait_empty
    assert "self._waiting_for_ack = asyncio.Future" in source(BaseConsumer._wait_for_ack)
    # the drain loop hands each yielded message to the conductor callback once
    drain = source(BaseConsumer._drain_messages)
    assert "callback(message)" in drain and "getmany(timeout=1.0)" in drain
    # aiokafka's own getmany is what _wait_next_records reaches
    assert "self._getmany(" in source(BaseConsumer._wait_next_records)


def test_message_layout_used_by_batch_message() -> None:
    """BatchMessage passes ConsumerMessage's positional arguments and adds two slots."""
    assert params(Message.__init__)[:13] == [
        "self", "topic", "partition", "offset", "timestamp", "timestamp_type", "headers",
        "key", "value", "checksum", "serialized_key_size", "serialized_value_size", "tp",
    ]  # fmt: skip
    assert "generation_id" in params(Message.__init__)
    assert {"generation_id", "acked", "__weakref__"} <= set(Message.__slots__)
    assert "consumer.ack(self)" in source(ConsumerMessage.on_final_ack)
    assert BatchMessage.__slots__ == ("last_in_fetch", "records", "seen", "seqs", "span")


def test_app_stream_table_and_store_internals() -> None:
    """install(), the agent loop and bulk_write use these App/Stream/Table/Store members."""
    app_src = source(App)
    assert "_transport: Optional[TransportT] = None" in app_src
    consumer_prop: Any = App.consumer
    transport_prop: Any = App.transport
    assert "self._consumer is None" in source(consumer_prop.fget)
    assert transport_prop.fset is not None
    assert {"consumer_generation_id", "rebalancing", "in_recovery"} <= set(dir(App))
    assert inspect.isasyncgenfunction(Stream.events)
    assert "enable_acks=False" in source(Stream.noack)
    assert params(Collection._verify_source_topic_partitions) == ["self", "source_topic"]
    assert params(Collection.apply_changelog_batch) == ["self", "batch"]
    assert isinstance(Collection.changelog_topic_name, property)
    post_init = source(MemoryStore.__post_init__)
    assert "self.data" in post_init and "self._key_partition" in post_init
    # revoked partitions are dropped through the key -> partition index bulk_write maintains
    assert "self._key_partition.items()" in source(MemoryStore.on_recovery_completed)
    assert "_ensure_producer" in dir(faust_aiokafka.Producer)
    assert params(AIOKafkaProducer.send_batch) == ["self", "batch", "topic", "partition"]
    assert "create_batch" in dir(AIOKafkaProducer)


@pytest.fixture
def consumer() -> Iterator[BatchConsumer]:
    """A BatchConsumer of an unstarted app (no broker): its commit bookkeeping is pure."""
    app = faust.App("guard", broker="kafka://127.0.0.1:1")
    install(app).batched_topics.add("in")
    c = app.consumer
    assert isinstance(c, BatchConsumer)
    app.topics.acking_topics.add("in")  # what the conductor does when an agent subscribes
    yield c


def batch_message(c: BatchConsumer, tp: TP, first: int, last: int, gen: int) -> BatchMessage:
    recs = [
        ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"k", b"1", None, 1, 1, [])
        for o in range(first, last + 1)
    ]
    message = c._to_batch_message(tp, recs, gen)
    message.seen = True  # the agent received it: what every ack but a stream skip's sees
    return message


def test_a_message_the_agent_never_received_commits_nothing(
    consumer: BatchConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust's stream skips a message on a generation or flow-control check as it dequeues it,
    and acks what it skips: that ack must not commit records nobody processed (seen after a
    restart: the commit would have skipped them for good)."""
    tp = TP("in", 0)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    gen = consumer.app.consumer_generation_id
    assert consumer.ack(batch_message(consumer, tp, 10, 14, gen))
    skipped = batch_message(consumer, tp, 15, 40, gen)
    skipped.seen = False
    assert not consumer.ack(skipped)
    assert consumer._new_offset(tp) == 15
    assert consumer.unseen[tp][0] == 40


def test_acking_a_batch_message_commits_past_its_whole_range(
    consumer: BatchConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two consecutive batches acked in order give a commit offset one past the last record."""
    tp = TP("in", 0)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    gen = consumer.app.consumer_generation_id
    assert consumer.ack(batch_message(consumer, tp, 10, 14, gen))
    assert consumer._new_offset(tp) == 15
    consumer._committed_offset[tp] = 15
    assert consumer.ack(batch_message(consumer, tp, 15, 40, gen))
    assert consumer._new_offset(tp) == 41


def _receive(c: BatchConsumer, message: BatchMessage, read: int | None) -> int:
    """What Faust's drain loop does with a message it receives: a "gap" from its read offset
    (``_drain_messages``); returns the new read offset."""
    if read and message.offset - read > 1:
        asyncio.run(c._add_gap(message.tp, read + 1, message.offset))
    return message.offset


def test_one_commit_reaches_the_last_of_many_batches_acked_since_the_last_commit(
    consumer: BatchConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23: batches are acked far more often than Faust commits (every 2.8 s). Faust's
    computation (a gap per received message that held its own offset too, acked offsets one
    by one, only the first run of consecutive numbers committed) moved a partition on by ONE
    batch per commit: committed offsets trailed processing by minutes. A new group, a
    partition assigned at a committed offset, one-record batches; never past a batch not
    acked yet; the spans are gone once committed."""
    tp = TP("in", 0)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    gen = consumer.app.consumer_generation_id
    for committed, ranges in (
        (None, [(0, 9), (10, 10), (11, 40), (41, 99)]),  # a new group
        (100, [(100, 104), (105, 105), (106, 130), (131, 132), (133, 190)]),  # assigned at 100
    ):
        consumer._committed_offset[tp] = committed
        read = committed  # Faust's read offset after the seek to the committed offset
        messages = [batch_message(consumer, tp, first, last, gen) for first, last in ranges]
        for m in messages:
            read = _receive(consumer, m, read)
        for m in messages:
            assert consumer.ack(m)
        end = ranges[-1][1] + 1
        assert consumer._new_offset(tp) == end
        consumer._committed_offset[tp] = end  # what Faust does after committing
        assert consumer._new_offset(tp) is None  # nothing left over
        assert not consumer._gap[tp] and not consumer._acked[tp]
    read = 190
    messages = [batch_message(consumer, tp, a, b, gen) for a, b in [(191, 200), (201, 300)]]
    for m in messages:
        read = _receive(consumer, m, read)
    assert consumer.ack(messages[0])  # the second is received, still being processed
    assert consumer._new_offset(tp) == 201


def test_commits_follow_acked_spans_through_seeks_refetches_and_holes(
    consumer: BatchConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart Faust fetches the stream partitions while it seeks them to the
    committed offsets: the read offset goes back, a message fetched before the seek arrives
    after it, the same records come again cut differently. Faust's receipt gap then spanned
    records not processed yet and the doubled offsets made commits crawl one offset per
    commit (a partition stuck for minutes). A commit reaches exactly the end of the acked
    spans that continue from the committed offset, whatever came twice; a hole (a batch not
    acked yet) stops it until that batch is acked; offsets that hold no record (a control
    batch, in a message's span) do not."""
    tp = TP("in", 0)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    gen = consumer.app.consumer_generation_id
    consumer._committed_offset[tp] = 100
    before = [batch_message(consumer, tp, a, b, gen) for a, b in [(100, 199), (200, 299)]]
    read = _receive(consumer, before[0], 100)
    read = 100  # the seek to the committed offset, while the second was in flight
    read = _receive(consumer, before[1], read)  # Faust: a gap over 101..298
    again = [batch_message(consumer, tp, a, b, gen) for a, b in [(100, 150), (151, 260)]]
    assert consumer.ack(before[0])
    assert consumer._new_offset(tp) == 200  # not past 200..299, still being processed
    consumer._committed_offset[tp] = 200
    assert consumer.ack(before[1])
    for m in again:  # the same records again, processed as redeliveries, acked
        consumer.ack(m)
    assert consumer._new_offset(tp) == 300
    consumer._committed_offset[tp] = 300
    # a hole: 300..349 not acked; acked beyond it waits, whatever the drain loop saw
    later = [batch_message(consumer, tp, a, b, gen) for a, b in [(300, 349), (350, 399)]]
    for m in later:
        read = _receive(consumer, m, read)
    assert consumer.ack(later[1])
    for _ in range(3):
        assert consumer._new_offset(tp) is None
    assert consumer.ack(later[0])
    assert consumer._new_offset(tp) == 400
    consumer._committed_offset[tp] = 400
    # a span over offsets that hold no record: 400 and 401 (control records), 410 after
    gapped = batch_message(consumer, tp, 402, 409, gen)
    gapped.span = (400, 411)
    assert consumer.ack(gapped)
    assert consumer._new_offset(tp) == 411


def test_wait_empty_releases_held_messages_and_is_bounded(
    consumer: BatchConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a rebalance begins or the worker stops, Faust waits until every message taken is
    acked, flow suspended. The aligner's queued messages would never be: released (unacked,
    not committed), and whatever else never gets acked stops the wait after WAIT_EMPTY_S
    (SIGTERM of a busy worker used to hang in "wait_empty: Waiting for tasks")."""
    tp = TP("in", 0)
    gen = consumer.app.consumer_generation_id
    held = batch_message(consumer, tp, 0, 9, gen)
    consumer._unacked_messages.add(held)
    transport = cast(batch_consumer.BatchTransport, consumer.transport)
    transport.on_wait_empty.append(lambda: consumer._unacked_messages.discard(held) or 1)

    async def timed() -> float:
        loop = asyncio.get_running_loop()
        t = loop.time()
        await consumer.wait_empty()
        return loop.time() - t

    run = consumer.loop.run_until_complete  # Faust's futures belong to the consumer's loop
    assert run(timed()) < 1.0
    assert not consumer.unacked and not held.acked
    transport.on_wait_empty.clear()
    stuck = batch_message(consumer, tp, 10, 19, gen)
    consumer._unacked_messages.add(stuck)
    monkeypatch.setattr(batch_consumer, "WAIT_EMPTY_S", 0.3)
    assert run(timed()) < 2.0
    assert not consumer.unacked and not stuck.acked
    assert consumer._new_offset(tp) is None  # neither was committed


def test_stale_batch_message_is_never_committed(
    consumer: BatchConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch from an older generation or a revoked partition acks nothing."""
    tp, other = TP("in", 0), TP("in", 1)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    gen = consumer.app.consumer_generation_id
    stale = batch_message(consumer, tp, 0, 9, gen - 1)
    revoked = batch_message(consumer, other, 0, 9, gen)
    assert not consumer.ack(stale)
    assert not consumer.ack(revoked)
    assert consumer._new_offset(tp) is None
    assert consumer._new_offset(other) is None
    assert stale not in consumer.unacked and revoked not in consumer.unacked


def test_getmany_yields_one_message_per_batched_partition(
    consumer: BatchConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batched topics give one BatchMessage per fetched partition; others stay per record. The
    last batched message of each partition number in the fetch is marked (the aligner merges
    that partition then)."""
    batched, plain = TP("in", 2), TP("changelog", 2)
    sibling, other, inactive = TP("in2", 2), TP("in2", 3), TP("in2", 1)
    recs = {
        batched: [
            ConsumerRecord("in", 2, o, 1000 + o, 0, b"k%d" % o, b"%d" % o, None, 2, 1, [])
            for o in range(5, 9)
        ],
        plain: [
            ConsumerRecord("changelog", 2, o, 0, 0, b"k", b"v", None, 1, 1, []) for o in (0, 1)
        ],
        **{
            tp: [ConsumerRecord(tp.topic, tp.partition, 0, 0, 0, b"k", b"v", None, 1, 1, [])]
            for tp in (sibling, other, inactive)
        },
    }

    async def fetched(timeout: float) -> tuple[dict[TP, list[Any]], set[TP]]:
        return recs, {batched, plain, sibling, other}

    monkeypatch.setattr(consumer, "_wait_next_records", fetched)
    monkeypatch.setattr(consumer, "highwater", lambda tp: 0)
    install(cast(faust.App, consumer.app)).batched_topics.update(("in", "in2"))

    async def collect() -> list[tuple[TP, Any]]:
        return [item async for item in consumer.getmany(timeout=0.1)]

    got = asyncio.run(collect())
    marks = {tp: m.last_in_fetch for tp, m in got if isinstance(m, BatchMessage)}
    assert marks == {batched: False, sibling: True, other: True}  # inactive: not yielded
    assert consumer.skipped == {inactive: (0, "inactive")}  # and said so for the wait report
    batches = [m for tp, m in got if tp == batched]
    singles = [m for tp, m in got if tp == plain]
    assert len(batches) == 1 and isinstance(batches[0], BatchMessage)
    assert batches[0].offset == 8
    assert batches[0].records == [(o, b"k%d" % o, b"%d" % o, 1000 + o, []) for o in range(5, 9)]
    assert [m.offset for m in singles] == [0, 1]
    assert not any(isinstance(m, BatchMessage) for m in singles)


def test_fetch_wait_override_reaches_the_worker_consumer() -> None:
    """Faust still builds the worker consumer with its own fetch wait, and aiokafka still reads
    ``_fetch_max_wait_ms`` when it starts: the short-wait override depends on both."""
    import aiokafka
    from faust.transport.drivers import aiokafka as faust_aiokafka

    from streams.kafka.consumer import FETCH_MAX_WAIT_MS, BatchConsumer, BatchConsumerThread

    src = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_max_wait_ms=1500" in src
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(
        aiokafka.AIOKafkaConsumer.start
    )
    assert params(faust_aiokafka.Consumer._new_consumer_thread) == ["self"]
    assert BatchConsumer._new_consumer_thread is not faust_aiokafka.Consumer._new_consumer_thread
    assert issubclass(BatchConsumerThread, faust_aiokafka.AIOKafkaConsumerThread)
    assert 0 < FETCH_MAX_WAIT_MS < 1500


def test_aligner_reads_the_fetch_time_of_high_water_marks() -> None:
    """The aligner's resync asks the thread's aiokafka consumer when a partition's high-water mark
    was last fetched (``_thread._consumer.last_poll_timestamp``); without it, it never resyncs."""
    import aiokafka

    from streams.kafka.consumer import BatchConsumer

    assert params(aiokafka.AIOKafkaConsumer.last_poll_timestamp) == ["self", "partition"]
    assert "self._consumer" in inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread)
    from faust.transport.consumer import ThreadDelegateConsumer

    assert "self._thread = " in inspect.getsource(ThreadDelegateConsumer)
    assert issubclass(BatchConsumer, ThreadDelegateConsumer)


def test_recovery_resumes_the_flow_before_the_rebalance_ends() -> None:
    """Faust seeks to the committed offsets, resumes the flow (the Fetcher delivers) and only
    then leaves its rebalancing state. Messages delivered in between are current: batching
    must keep them (``_wait_current``, the aligner's drain), not drop them as stale, or they
    are never fetched again."""
    from faust.tables.recovery import Recovery

    for fn in (Recovery._resume_streams, Recovery.on_recovery_completed):
        src = source(fn)
        seek, flow, end = (
            src.index(s) for s in ("perform_seek", "resume_flow", "on_rebalance_end")
        )
        assert seek < flow < end, fn.__name__
    assert "await asyncio.sleep" in source(agent._wait_current)


def test_order_headers_parse_wherever_they_sit_and_a_missing_one_voids_the_batch() -> None:
    """(chain id, sequence) from the 16-byte order header, first in the list or not; one record
    without it (a foreign producer) turns the whole batch to timestamp merging (None)."""
    chain = b"\x01\x02\x03\x04\x05\x06\x07\x08"

    def rec(headers: list[tuple[str, bytes]]) -> records.Record:
        return (0, b"k", b"v", 0, headers)

    first = rec([("riskmon-seq", chain + (2**64 - 1).to_bytes(8, "big"))])
    later = rec([("trace", b"x"), ("riskmon-seq", chain + (300).to_bytes(8, "big"))])
    short = rec([("riskmon-seq", chain)])  # not 16 bytes: not ours

    def pairs(got: order.Seqs | None) -> list[tuple[bytes, int]] | None:
        return None if got is None else list(got)

    assert pairs(order.read_seqs([first, later], "riskmon-seq")) == [
        (chain, 2**64 - 1),
        (chain, 300),
    ]
    assert order.read_seqs([first, short], "riskmon-seq") is None
    assert order.read_seqs([first, rec([])], "riskmon-seq") is None
    # every record with the header alone (riskmon's producers): read for the batch at once,
    # chain ids kept whole (trailing zero bytes too), the same as record by record
    zeros = b"\x09" + bytes(7)
    alone = [
        rec([("riskmon-seq", c + s.to_bytes(8, "big"))])
        for c, s in ((zeros, 0), (chain, 2**64 - 1), (zeros, 7))
    ]
    fast = order.read_seqs(alone, "riskmon-seq")
    assert pairs(fast) == [(zeros, 0), (chain, 2**64 - 1), (zeros, 7)]
    built = order.Seqs.of([(zeros, 0), (chain, 2**64 - 1), (zeros, 7)])
    assert fast is not None and pairs(built) == pairs(fast)
    assert (built.chain.tolist(), built.seq.tolist()) == (fast.chain.tolist(), fast.seq.tolist())
    assert pairs(order.read_seqs([*alone, later], "riskmon-seq")) == [*pairs(fast), (chain, 300)]
    assert order.read_seqs(alone, "other") is None  # a header alone, but not the order header
    assert order.read_seqs([*alone, short], "riskmon-seq") is None
    assert pairs(order.read_seqs([], "riskmon-seq")) == []


def _memory_records(
    sizes: tuple[int, ...],
    corrupt: int | None = None,
    seq: bool = False,
    control: tuple[int, ...] = (),
    base: int = 0,
) -> Any:
    """Real record batches of ``sizes`` records each, offsets from ``base`` (batch
    ``corrupt``: its CRC broken; ``seq``: each record's header "h" an order header, chain
    b"chain-id"; the batches in ``control``: control batches, as a transaction marker)."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder
    from aiokafka.record.memory_records import MemoryRecords
    from aiokafka.record.util import calc_crc32c

    buf = b""
    for b, size in enumerate(sizes):
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 20,
        )
        for o in range(size):
            builder.append(
                o, timestamp=1000 + base + o, key=b"c%d" % (base + o), value=b"v%d" % (base + o),
                headers=[("h", b"chain-id" + (base + o).to_bytes(8, "big") if seq else b"x")],
            )  # fmt: skip
        raw = bytearray(builder.build())
        raw[0:8] = base.to_bytes(8, "big")  # the batch's base offset
        if b in control:  # attributes (bytes 21-22, under the CRC): the control flag
            raw[22] |= 0x20
            raw[17:21] = calc_crc32c(bytes(raw[21:])).to_bytes(4, "big")
        if b == corrupt:
            raw[-1] ^= 0xFF
        buf += bytes(raw)
        base += size
    return MemoryRecords(buf)


def _fetched(topic: str, mark: Any, sizes: tuple[int, ...] = (4,)) -> list[Any]:
    """What aiokafka's fetcher hands over for real record batches (offsets 0.., read from 1)."""
    from aiokafka.consumer.fetcher import PartitionRecords
    from aiokafka.structs import TopicPartition

    tp = TopicPartition(topic, 3)
    return list(PartitionRecords(tp, _memory_records(sizes), [], 1, mark, None, True, 0))


def _as_tuple(r: Any) -> tuple[Any, ...]:
    return (r.offset, r.key, r.value, r.timestamp, list(r.headers))


def _getalls(
    mark: Any, sizes: tuple[int, ...], limit: int | None, corrupt: int | None, seq: bool = False
) -> Any:
    """``FetchResult.getall(limit)`` until exhausted, over a real subscription state: per call
    the records (as tuples), the consumer's position after it, and whether more is left; a
    CRC error as the string "corrupt"."""
    from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
    from aiokafka.consumer.subscription_state import SubscriptionState
    from aiokafka.errors import CorruptRecordException
    from aiokafka.structs import TopicPartition

    async def run() -> Any:  # aiokafka's subscription state needs a running loop
        tp = TopicPartition("in", 3)
        subscription = SubscriptionState()
        subscription.assign_from_user({tp})
        assignment = subscription.subscription.assignment
        assignment.state_value(tp).reset_to(1)
        pr = PartitionRecords(tp, _memory_records(sizes, corrupt, seq), [], 1, mark, None, True, 0)
        result = FetchResult(tp, assignment=assignment, partition_records=pr, backoff=0)
        calls: list[Any] = []
        for _ in range(50):
            try:
                got = result.getall(limit)
            except CorruptRecordException:
                calls.append("corrupt")
                continue
            recs = [r if type(r) is tuple else _as_tuple(r) for r in got]
            if seq:  # the order headers as read with the records (plain), or after
                seqs = got.seqs if type(got) is fetcher._Fetched else order.read_seqs(recs, "h")
                recs.append(None if seqs is None else list(seqs))
            calls.append((recs, assignment.state_value(tp).position, result.has_more()))
            if not result.has_more():
                break
        return calls

    return asyncio.run(run())


def test_the_worker_fetcher_unpacks_batched_topics_into_record_tuples() -> None:
    """A fetcher marked by ``_PlainRecords`` yields batched topics' records as ``Record`` tuples
    (the same fields a ConsumerRecord carries), whole record batches at a time, and every other
    topic's as ConsumerRecords; an unmarked fetcher (any other aiokafka consumer in the
    process) is untouched. ``getall`` with or without a limit, over several batches, one of
    them corrupt: the same records, positions and exhaustion as aiokafka's own path. The
    worker consumer gets the mark where aiokafka reads its key deserializer when it starts."""
    import aiokafka
    from aiokafka.consumer.fetcher import FetchResult, PartitionRecords

    fetcher.patch()  # what install() does when the worker app is built
    mark = fetcher._PlainRecords({"in"})
    plain = _fetched("in", mark)
    assert plain == [(o, b"c%d" % o, b"v%d" % o, 1000 + o, [("h", b"x")]) for o in (1, 2, 3)]
    for other in (_fetched("changelog", mark), _fetched("in", None)):
        assert all(isinstance(r, ConsumerRecord) for r in other)
        assert [(r.offset, r.key, r.value, r.timestamp, list(r.headers)) for r in other] == plain
    many = _fetched("in", mark, (4, 3, 1, 5))
    assert [r[0] for r in many] == list(range(1, 13))
    for limit in (None, 1, 2, 3, 5, 100):
        for corrupt in (None, 0, 2):
            fast = _getalls(mark, (4, 3, 1, 5), limit, corrupt)
            assert fast == _getalls(None, (4, 3, 1, 5), limit, corrupt), (limit, corrupt)
            assert ("corrupt" in fast) == (corrupt is not None)
    # with an order header: read in the consumer thread, the same as read later
    transport = type("Transport", (), {"order_header": "h"})()
    marked = fetcher._PlainRecords({"in"}, transport)
    for limit in (None, 2, 5):
        fast = _getalls(marked, (4, 3, 1, 5), limit, None, seq=True)
        assert fast == _getalls(None, (4, 3, 1, 5), limit, None, seq=True)
        assert fast[0][0][-1] == [(b"chain-id", o) for o in range(1, 1 + len(fast[0][0]) - 1)]
    # and the batch message is the same either way (headers: a list or a tuple)
    consumer = cast(Any, BatchConsumer.__new__(BatchConsumer))
    consumer.app = type("App", (), {"transport": None})()
    tp = TP("in", 3)
    a = BatchConsumer._to_batch_message(consumer, tp, plain, 1)
    b = BatchConsumer._to_batch_message(consumer, tp, _fetched("in", None), 1)
    for m in (a, b):
        assert [(*r[:4], list(r[4])) for r in m.records] == plain
        assert (m.offset, m.timestamp) == (3, 1.003)
    # order headers: taken as the consumer thread read them, else read here
    consumer.app.transport = transport
    fetched = fetcher._Fetched(plain)
    fetched.header, fetched.seqs = "h", order.Seqs.of([(b"chain-id", 9)] * 3)
    assert BatchConsumer._to_batch_message(consumer, tp, fetched, 1).seqs is fetched.seqs
    assert BatchConsumer._to_batch_message(consumer, tp, plain, 1).seqs is None  # b"x": not one
    # the internals the shortcut relies on (and restates: aiokafka's unpacking rules)
    assert PartitionRecords._unpack_records is fetcher._plain_or_unpack
    assert FetchResult.getall is fetcher._plain_getall
    unpack = source(fetcher._unpack_records)
    for rule in (
        "self._check_crcs and not next_batch.validate_crc()",
        "self._isolation_level == READ_COMMITTED",
        "if next_batch.is_control_batch:",
        "if record.offset < self.next_fetch_offset:",
        "self.next_fetch_offset = record.offset + 1",
        "self.next_fetch_offset = next_batch.next_offset",
    ):
        assert rule in unpack, rule
    getall = source(fetcher._getall)
    assert "self._update_position()" in getall and "self._partition_records = None" in getall
    init = source(PartitionRecords.__init__)
    assert init.index("self._isolation_level") < init.index("self._unpack_records()")
    assert "key_deserializer=self._key_deserializer" in source(aiokafka.AIOKafkaConsumer.start)
    assert "_key_deserializer" in source(batch_consumer.BatchConsumerThread._create_worker_consumer)


def test_fetched_records_carry_the_positions_they_moved_the_consumer_over() -> None:
    """The span of a batch message is what its ack makes committable: from the consumer's
    position before its records to the position after them, control batches (transaction
    markers) included, also a fetch that held nothing but one (aiokafka hands nothing over
    for it: its span goes to the next records fetched from where it ended). Split by a record
    limit, the spans abut; a seek in between (another position) drops a pending one."""
    from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
    from aiokafka.consumer.subscription_state import SubscriptionState
    from aiokafka.structs import TopicPartition

    fetcher.patch()
    mark = fetcher._PlainRecords({"in"})
    tp = TopicPartition("in", 3)

    async def spans(records: Any, position: int, limit: int | None) -> list[Any]:
        subscription = SubscriptionState()
        subscription.assign_from_user({tp})
        assignment = subscription.subscription.assignment
        assignment.state_value(tp).reset_to(position)
        pr = PartitionRecords(tp, records, [], position, mark, None, True, 0)
        result = FetchResult(tp, assignment=assignment, partition_records=pr, backoff=0)
        out = []
        while result.has_more():
            got = result.getall(limit)
            out.append((got.span, [r[0] for r in got]) if got else None)
        return out

    # offsets 0-3, control 4, 5-7, control 8; read from 1
    log = _memory_records((4, 1, 3, 1), control=(1, 3))
    assert asyncio.run(spans(log, 1, None)) == [((1, 9), [1, 2, 3, 5, 6, 7])]
    log = _memory_records((4, 1, 3, 1), control=(1, 3))
    assert asyncio.run(spans(log, 1, 2)) == [
        ((1, 3), [1, 2]), ((3, 6), [3, 5]), ((6, 8), [6, 7]), None,
    ]  # fmt: skip
    assert mark.empty[tp] == (8, 9)  # the last getall held the marker only
    # a fetch of a marker only, then the records after it
    assert asyncio.run(spans(_memory_records((1,), control=(0,), base=9), 9, None)) == [None]
    assert mark.empty[tp] == (8, 10)
    got = asyncio.run(spans(_memory_records((2,), base=10), 10, None))
    assert got == [((8, 12), [10, 11])] and tp not in mark.empty
    asyncio.run(spans(_memory_records((1,), control=(0,), base=12), 12, None))
    got = asyncio.run(spans(_memory_records((2,), base=20), 20, None))  # after a seek to 20
    assert got == [((20, 22), [20, 21])]
    # the batch message takes the span (a list of records without one: their own offsets)
    consumer = cast(Any, BatchConsumer.__new__(BatchConsumer))
    consumer.app = type("App", (), {"transport": None})()
    fetched = fetcher._Fetched([(o, b"k", b"v", 0, []) for o in (10, 11)])
    fetched.span = (9, 12)
    assert BatchConsumer._to_batch_message(consumer, TP("in", 3), fetched, 1).span == (9, 12)
    plain = [(o, b"k", b"v", 0, []) for o in (10, 11)]
    assert BatchConsumer._to_batch_message(consumer, TP("in", 3), plain, 1).span == (10, 12)


def test_recovery_resumes_flow_twice_and_resume_clears_the_queues() -> None:
    """What ``_keep_queues_when_active`` is for: Faust's recovery resumes flow control again
    after seeking the stream partitions (while the Fetcher runs), and mode's ``resume`` clears
    every managed queue, suspended before or not."""
    from faust.tables.recovery import Recovery
    from mode.utils.queues import FlowControlEvent

    done = source(Recovery.on_recovery_completed)
    assert done.index("perform_seek") < done.index("flow_control.resume()")
    assert "self.clear()" in source(FlowControlEvent.resume)


def test_resuming_active_flow_keeps_the_agents_queued_messages() -> None:
    """A batching app's flow control clears its queues when it resumes after a suspension (what
    was queued before a rebalance is stale), not when it was active already (the records queued
    while Faust's recovery seeks are current: clearing them lost them)."""
    app = faust.App("guard-flow", broker="kafka://127.0.0.1:1")
    install(app)
    flow = app.flow_control
    queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)
    assert not flow.is_active()  # Faust starts suspended
    queue.put_nowait("stale")
    flow.resume()
    assert flow.is_active() and queue.empty()
    queue.put_nowait("current")
    flow.resume()  # recovery's second resume
    assert queue.qsize() == 1
    flow.suspend()
    flow.resume()
    assert queue.empty()


def test_importing_the_kafka_package_patches_nothing_install_does() -> None:
    """aiokafka's fetcher is patched by ``install`` (when the worker app is built), never by an
    import: a process that only imports riskmon (a producer, a test, a notebook) keeps
    aiokafka's own classes."""
    code = """
import importlib, pkgutil
import streams.kafka
for m in pkgutil.iter_modules(streams.kafka.__path__):
    importlib.import_module("streams.kafka." + m.name)
from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
from streams.kafka import fetcher
assert PartitionRecords._unpack_records is fetcher._unpack_records, "patched at import"
assert FetchResult.getall is fetcher._getall, "patched at import"
import faust
from streams.kafka.consumer import install
install(faust.App("guard-import", broker="kafka://127.0.0.1:1"))
assert PartitionRecords._unpack_records is fetcher._plain_or_unpack
assert FetchResult.getall is fetcher._plain_getall
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
