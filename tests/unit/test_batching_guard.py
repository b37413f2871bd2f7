"""Guard for the batch seam (``streams.kafka``: consumer, fetcher, agent, tables): fail loudly
when faust-streaming changes what it relies on.

Checks the pinned version, the presence and signature of every Faust/aiokafka internal the seam
overrides or calls, and (without a broker) the commit arithmetic of a batch message.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
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
    # commits: acked offsets plus gap intervals below the highest ack form the committed range
    assert "gap_for_tp.overlap(0, max_offset)" in source(BaseConsumer._new_offset)
    assert "return batch[-1] + 1" in source(BaseConsumer._new_offset)
    # BatchConsumer._add_gap re-implements this one (committed clamp, end-exclusive interval)
    add_gap = source(BaseConsumer._add_gap)
    assert params(BaseConsumer._add_gap) == ["self", "tp", "offset_from", "offset_to"]
    assert "max(offset_from, committed + 1)" in add_gap
    assert "gap_for_tp.addi(offset_from, offset_to + 1)" in add_gap
    assert "await self._add_gap(tp, r_offset + 1, offset)" in source(BaseConsumer._drain_messages)
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
    assert BatchMessage.__slots__ == ("last_in_fetch", "records", "seen", "seqs")


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
    install(app)
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


def test_gaps_stay_disjoint_as_the_drain_loop_and_acks_add_them(
    consumer: BatchConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a worker runs: the drain loop adds each batch's offset jump as a gap (not for the
    first batch), then the batch is acked; commits follow the acks, never run ahead of them,
    and no offset sits in two intervals (it would be counted twice at commit)."""
    tp = TP("in", 0)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    gen = consumer.app.consumer_generation_id
    consumer._committed_offset[tp] = 100  # assigned at committed offset 100
    ranges = [(100, 104), (105, 105), (106, 130), (131, 132), (133, 190)]
    read: int | None = None
    messages = []
    for first, last in ranges:
        m = batch_message(consumer, tp, first, last, gen)
        if read and last - read > 1:  # Faust's condition in _drain_messages
            asyncio.run(consumer._add_gap(tp, read + 1, last))
        read = last
        messages.append(m)
    for m, (_first, last) in zip(messages, ranges, strict=True):
        assert consumer.ack(m)
        intervals = sorted(consumer._gap[tp])
        assert all(a.end <= b.begin for a, b in itertools.pairwise(intervals))
        assert consumer._new_offset(tp) == last + 1
        consumer._committed_offset[tp] = last + 1
    assert not consumer._gap[tp]  # every gap was used by a commit
    # a range fetched again (a seek back) overlaps its first gap: merged, not counted twice
    asyncio.run(consumer._add_gap(tp, 191, 210))
    asyncio.run(consumer._add_gap(tp, 205, 220))
    assert [(iv.begin, iv.end) for iv in consumer._gap[tp]] == [(192, 221)]  # (Faust: > committed)


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


def _memory_records(sizes: tuple[int, ...], corrupt: int | None = None, seq: bool = False) -> Any:
    """Real record batches of ``sizes`` records each, offsets from 0 (batch ``corrupt``: its
    CRC broken; ``seq``: each record's header "h" an order header, chain b"chain-id")."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder
    from aiokafka.record.memory_records import MemoryRecords

    buf = b""
    base = 0
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
