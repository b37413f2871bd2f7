"""Batch delivery below the Faust agent, and bulk table writes: riskmon's throughput path.

Faust spends about 300 us per event between the consumer and the agent body (STACK.md). This
module is the ONE place that patches Faust internals to avoid it:

* ``BatchConsumer`` (an aiokafka ``Consumer`` subclass) turns every fetched topic-partition batch
  of a *batched* topic into ONE message whose offset is the batch's last offset and which carries
  all records. Acking it acks the whole offset range, so Faust's commit logic stays in charge.
  Non-batched topics (table changelogs during recovery/standby, other agents) keep the per-record
  path.
* ``batched_agent(app, topic, handler)`` runs ``await handler(batch)`` once per batch, and acks
  only after every changelog write the handler made was delivered (at-least-once: the commit can
  never overtake the state it depends on). Aligned agents deliver in the background, chained per
  partition (outputs, then changelog, then ack), so the next batch never waits for a round trip.
* ``RecordBatch.write(table, {key: value})`` writes each key ONCE to the local store and to the
  table's changelog partition == the batch's input partition (co-partitioning), as bulk record
  batches through aiokafka ``send_batch``, not through the per-key Table API.

Rebalances take the safe path: a batch fetched in an older consumer generation, for a partition
no longer assigned, or while a rebalance runs, is neither processed nor acked (it is fetched again
from the committed offset by whoever owns the partition); Faust's own recovery drops the state of
revoked partitions (the store's key->partition index is maintained here for that).

Tansu reports a wrong end offset (first offset of the last record batch + 1), which makes Faust's
changelog recovery stop early. Every bulk write therefore ends with a one-record batch (the
"terminator"), so the last batch of a changelog partition always has one record and the reported
end is the true one; ``changelog_tail`` lets a test read a changelog to its true end to check.

Faust-facing and version-bound: faust-streaming is pinned to ``FAUST_VERSION``;
``tests/unit/test_batching_guard.py`` fails when an upgrade changes an internal used here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import faust
import numpy as np
from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.errors import CorruptRecordException
from aiokafka.record.memory_records import MemoryRecords
from faust.stores.memory import Store as MemoryStore
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT
from faust.types.tuples import ConsumerMessage
from mode.utils.queues import FlowControlEvent

__all__ = [
    "APP_SETTINGS",
    "FAUST_VERSION",
    "Record",
    "RecordBatch",
    "batch_table",
    "batched_agent",
    "bulk_send",
    "bulk_write",
    "install",
    "local_reader",
    "read_local",
]

_log = logging.getLogger(__name__)

#: The faust-streaming release whose internals this module was written and tested against.
FAUST_VERSION = "0.15.3"

#: Settings a batched app should pass to ``faust.App`` (bigger fetches = bigger batches).
APP_SETTINGS: Mapping[str, Any] = {
    "broker_max_poll_records": 10_000,  # records per getmany across partitions (Faust: 500)
    "producer_max_batch_size": 1_048_576,  # bytes per changelog record batch (Faust: 16 KiB)
    "stream_buffer_maxsize": 64,  # batches queued per partition before the consumer pauses it
}


#: One consumed record of a batch: (offset, key bytes, value bytes, timestamp ms, headers). A plain
#: tuple: a NamedTuple costs ~0.5 us more per record on this path. The worker's consumer thread
#: builds these directly from the fetched record batches (``_PlainRecords``).
Record = tuple[int, bytes | None, bytes | None, int, Sequence[tuple[str, bytes]]]


class BatchMessage(ConsumerMessage):
    """A Faust message standing for all records of one fetched topic-partition batch.

    ``offset`` is the last record's offset; ``records`` holds every record, oldest first.
    """

    __slots__ = ("last_in_fetch", "records", "seen", "seqs")

    records: list[Record]
    #: whether no other batched topic-partition of the same partition number follows this one in
    #: the fetch it came with: the aligner merges a partition once per fetch, at this message
    last_in_fetch: bool
    #: per record, the order header's (chain id, sequence number), or None when the batch's
    #: records carry no order header (see ``batched_agent(order_header=...)``)
    seqs: Seqs | None
    #: whether the batched agent received it (Faust's stream may skip a message before that)
    seen: bool


#: Seconds a chained record waits for a missing predecessor before the aligner checks whether it
#: can still come (see ``_Aligner``); far above a fetch round trip, far below ``idle_s``.
RESYNC_S = 1.0

#: Seconds a partition's merge waits before the worker logs what it waits for (once per wait).
STALL_WARN_S = 5.0

#: Batches whose outputs/changelog are still being delivered before the aligned agent waits.
MAX_PERSISTING = 64

#: Records per handler call of the aligned agent. A backlog would otherwise merge into one huge
#: batch whose processing holds the event loop for seconds (alert latency, /metrics timeouts).
MAX_DRAIN = 16_384

#: Faust hard-codes ``fetch_max_wait_ms=1500``; Tansu does not answer a waiting fetch early when
#: data arrives, so an idle moment cost up to 1.5 s of event-to-alert latency (measured:
#: delivery delay 10-650 ms at 1500, 2-22 ms at 50; paced 5k ev/s event-to-alert p50/p99
#: 92-178/238-602 ms at 50, 70/216-226 ms at 10, ``benchmarks/bench_stream.py``).
FETCH_MAX_WAIT_MS = 10


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with a short fetch wait for the worker consumer."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by AIOKafkaConsumer.start()
        if consumer._key_deserializer is None and isinstance(transport, BatchTransport):
            # read by AIOKafkaConsumer.start(), handed to every PartitionRecords of its fetcher
            consumer._key_deserializer = _PlainRecords(transport.batched_topics, transport)
        return consumer


class _PlainRecords:
    """Marks the fetcher of a batch-delivering consumer (as its key deserializer, which aiokafka
    hands to every ``PartitionRecords``): records of ``topics`` are unpacked straight into
    ``Record`` tuples in the consumer thread, one comprehension per record batch, not into
    ``ConsumerRecord``s one generator step at a time that ``getmany`` would take apart again
    (~0.3 us per record, under the GIL the agent needs). Keys of other topics pass through
    unchanged, as without a deserializer."""

    def __init__(self, topics: set[str], transport: Any = None) -> None:
        self.topics = topics  # the transport's set: batched_agent adds to it before the start
        self.transport = transport  # its order header (set by batched_agent) is read per fetch

    def __call__(self, key: bytes | None) -> bytes | None:
        return key


class _Fetched(list[Any]):
    """The records ``getall`` hands over for a batched topic-partition, with their order
    headers read as they were unpacked (``seqs``; reading them later, in the agent's thread,
    touched every record's memory again: ~4 % of the worker)."""

    __slots__ = ("header", "seqs")

    header: str | None  # the order header they were read for
    seqs: Seqs | None


_unpack_records = PartitionRecords._unpack_records
_getall = FetchResult.getall


def _plain_or_unpack(self: Any) -> Any:
    """``PartitionRecords._unpack_records`` (aiokafka; called once, by its ``__init__``): for
    a marked fetcher's batched topic (read uncommitted), the record iterator of the batch
    path below; for anything else aiokafka's own."""
    mark = self._key_deserializer
    self._plain = (
        type(mark) is _PlainRecords
        and self._tp.topic in mark.topics
        and not self._value_deserializer
        and self._isolation_level != READ_COMMITTED
    )
    if not self._plain:
        return _unpack_records(self)
    self._plain_rest, self._plain_at, self._plain_next = [], 0, 0
    return _iter_plain(self)


def _iter_plain(pr: Any) -> Iterator[Record]:
    """One record at a time (``getone``), from the same state as ``_take_plain``."""
    while True:
        got, _end = _take_plain(pr, 1)
        if not got:
            return
        yield got[0]


def _take_plain(pr: Any, limit: int | None) -> tuple[list[Record], bool]:
    """Up to ``limit`` records of a plain ``PartitionRecords``, and whether it is exhausted.
    aiokafka's ``_unpack_records`` rules for read-uncommitted: CRCs checked, control batches
    skipped, records below the fetch offset skipped, the fetch offset after the last record
    handed over (after a whole batch: the batch's next offset)."""
    out: list[Record] = []
    while limit is None or len(out) < limit:
        rest, at = pr._plain_rest, pr._plain_at  # the current batch's records, the next one
        if at < len(rest):
            room = len(rest) - at if limit is None else limit - len(out)
            if len(rest) - at <= room:
                out += rest[at:] if at else rest
                pr._plain_rest, pr._plain_at = [], 0
                pr.next_fetch_offset = pr._plain_next
                continue
            out += rest[at : at + room]
            pr._plain_at = at + room
            pr.next_fetch_offset = out[-1][0] + 1
            break
        records = pr._records
        if not records.has_next():
            return out, True
        batch = records.next_batch()
        if pr._check_crcs and not batch.validate_crc():
            # as aiokafka's generator, closed by the exception: nothing more from this fetch
            pr._records, pr._plain_rest, pr._plain_at = MemoryRecords(b""), [], 0
            raise CorruptRecordException(f"Invalid CRC - {pr._tp}")
        if batch.is_control_batch:
            pr.next_fetch_offset = batch.next_offset
            continue
        got = [(r.offset, r.key, r.value, r.timestamp, r.headers) for r in batch]
        if got and got[0][0] < pr.next_fetch_offset:  # the start of a batch read before
            got = [r for r in got if r[0] >= pr.next_fetch_offset]
        pr._plain_rest, pr._plain_at, pr._plain_next = got, 0, batch.next_offset
        if not got:
            pr.next_fetch_offset = batch.next_offset
    return out, False


def _plain_getall(self: Any, max_records: int | None = None) -> list[Any]:
    """``FetchResult.getall`` (aiokafka), whole record batches at a time for a plain
    ``PartitionRecords`` (same position and exhaustion rules as aiokafka's)."""
    pr = self._partition_records
    if pr is None or not getattr(pr, "_plain", False):
        return _getall(self, max_records)
    if not self.check_assignment(self._topic_partition) or not self.has_more():
        return []
    got, exhausted = _take_plain(pr, max_records)
    self._update_position()
    if exhausted:
        self._partition_records = None
    out = _Fetched(got)
    header = getattr(pr._key_deserializer.transport, "order_header", None)
    out.header, out.seqs = header, (_seqs(got, header) if header else None)
    return out


PartitionRecords._unpack_records = _plain_or_unpack
FetchResult.getall = _plain_getall


class BatchConsumer(faust_aiokafka.Consumer):
    """aiokafka consumer that delivers one ``BatchMessage`` per fetched batch of batched topics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: topic-partition -> (last offset, why) of the last fetched records not handed over
        self.skipped: dict[TP, tuple[int, str]] = {}
        #: topic-partition -> last offset of the last batch message handed to Faust's drain loop
        self.yielded: dict[TP, int] = {}
        #: topic-partition -> (offset, its generation, the app's, flow active) of the last batch
        #: message acked without the agent having received it (skipped by Faust's stream)
        self.unseen: dict[TP, tuple[int, int | None, int, bool]] = {}

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        """Like ``Consumer.getmany``, but one message per batched topic-partition batch."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:  # same as Faust: a rebalance began, go back to committed offsets
            try:
                await self.perform_seek()
            except Exception as exc:  # as Faust: the partitions moved away mid-seek
                # (IllegalStateError); the new assignment seeks again. Raising here crashed the
                # Fetcher and left the worker consuming nothing after a live rebalance.
                self.log.warning("seek to committed offsets during a rebalance failed: %r", exc)
            return
        batched = _batched_topics(self.app)
        to_message = self._to_message
        wanted = []
        for tp, recs in records.items():
            if not recs:
                continue
            if (
                active_partitions is None
                or tp in active_partitions
                or tp in self._buffered_partitions
            ):
                wanted.append((tp, recs))
            else:  # as Faust: paused since the fetch (for the aligner's wait report)
                self.skipped[tp] = (_last_offset(recs), "inactive")
        last = {tp.partition: tp for tp, _recs in wanted if tp.topic in batched}
        for i, (tp, recs) in enumerate(wanted):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                # rebalance: drop the rest, it is fetched again from committed offsets
                for tp_, recs_ in wanted[i:]:
                    self.skipped[tp_] = (_last_offset(recs_), "rebalance")
                break
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic in batched:
                message = self._to_batch_message(tp, recs, generation_id)
                message.last_in_fetch = last[tp.partition] == tp
                self.yielded[tp] = message.offset
                yield tp, message
            else:
                for record in recs:
                    yield tp, to_message(tp, record)

    def _to_batch_message(self, tp: TP, recs: list[Any], generation_id: int) -> BatchMessage:
        """``recs``: ``Record`` tuples from a ``_PlainRecords`` fetcher, else ConsumerRecords."""
        if type(recs[0]) is not tuple:
            recs = [(r.offset, r.key, r.value, r.timestamp, r.headers) for r in recs]
        last = recs[-1]
        message = BatchMessage(
            tp.topic,
            tp.partition,
            last[0],
            (last[3] or 0) / 1000.0,
            0,  # timestamp type: nothing on this path reads it
            None,
            None,  # key
            b"",  # value: the records travel in ``records``, not through Faust's codecs
            None,
            0,
            0,  # serialized sizes: not summed per record, nothing on this path reads them
            tp,
            generation_id=generation_id,
        )
        message.records = recs
        message.last_in_fetch = True
        message.seen = False
        header = getattr(self.app.transport, "order_header", None)
        if not header:
            message.seqs = None
        elif type(recs) is _Fetched and recs.header == header:  # read in the consumer thread
            message.seqs = recs.seqs
        else:
            message.seqs = _seqs(recs, header)
        return message

    def ack(self, message: Any) -> bool:
        """Ack a message; a ``BatchMessage`` acks its whole offset range, or nothing if stale."""
        if isinstance(message, BatchMessage):
            tp = message.tp
            app = self.app
            current = _current(app, message)
            if not message.seen:
                # Faust's stream skipped it (a generation or flow-control check as it dequeued)
                # and acks what it skips: committing would lose records never processed. Not
                # committed, the aligner's refetch brings them back.
                flow = app.flow_control.is_active()
                why = (message.offset, message.generation_id, app.consumer_generation_id, flow)
                self.unseen[tp] = why
                # a stale message (a rebalance began) is routine; a current one is not
                _log.log(
                    logging.WARNING if current else logging.DEBUG,
                    "%s: Faust skipped records up to %d before the agent got them"
                    " (generation %s, app generation %s, flow active %s)", tp, *why,
                )  # fmt: skip
            if not (current and message.seen):
                # Never commit for a batch of another generation (after an eager rebalance the
                # partition may be ours again and this ack would skip unprocessed records), nor
                # for one the agent never received.
                message.acked = True
                self._unacked_messages.discard(message)
                return False
            first = message.records[0][0]
            committed = self._committed_offset[tp]
            start = first if committed is None else max(first, committed)
            if start < message.offset:  # the records before the last one, as an acked "gap"
                gaps = self._gap[tp]
                # usually covered already: Faust's drain loop adds every message's offset jump
                # as a gap when it receives it (``_add_gap``); then adding it again would only
                # make the tree rebuild itself (merge_overlaps: ~10 % of a busy worker's time)
                if not any(iv.end >= message.offset for iv in gaps.at(start)):
                    gaps.addi(start, message.offset)
                    gaps.merge_overlaps()
        return bool(super().ack(message))

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's ``_add_gap`` without the tree rebuild when the new interval overlaps none:
        batch messages' offset jumps abut (``[a, b]`` then ``[b + 1, c]``), they never overlap,
        and ``merge_overlaps`` (needed only so that no offset is counted twice at commit) cost
        a rebuild of the whole tree per message."""
        committed = self._committed_offset[tp]
        if committed is not None:
            offset_from = max(offset_from, committed + 1)
        if offset_from > offset_to:
            return
        gaps = self._gap[tp]
        overlapping = gaps.overlaps(offset_from, offset_to + 1)
        gaps.addi(offset_from, offset_to + 1)  # intervaltree intervals exclude the end
        if overlapping:
            gaps.merge_overlaps()


class BatchTransport(faust_aiokafka.Transport):
    """The aiokafka transport with ``BatchConsumer``; remembers which topics are batched."""

    Consumer = BatchConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batched_topics: set[str] = set()
        self.order_header: str | None = None


def _last_offset(recs: list[Any]) -> int:
    r = recs[-1]
    return int(r[0] if type(r) is tuple else r.offset)


_SEQ = struct.Struct(">8sQ")  # the order header's value: chain id, big-endian sequence number
# the same as an array: the chain id's 8 bytes read as a little-endian uint64 (Seqs.chain)
_SEQ_ARRAY = np.dtype([("chain", "<u8"), ("seq", ">u8")])
_HEADERS, _FIRST, _SECOND = itemgetter(4), itemgetter(0), itemgetter(1)


class Seqs:
    """A batch's order headers as arrays: per record, its chain id (the header's 8 bytes read
    as a little-endian uint64) and sequence number. ``seqs[i]`` is record i's (chain id bytes,
    sequence number), for the per-record merge; the run merge reads the arrays."""

    __slots__ = ("chain", "seq")

    def __init__(self, chain: np.ndarray, seq: np.ndarray) -> None:
        self.chain, self.seq = chain, seq

    @classmethod
    def of(cls, pairs: Sequence[tuple[bytes, int]]) -> Seqs:
        """From (chain id, sequence number) pairs."""
        a = np.array([(int.from_bytes(c, "little"), s) for c, s in pairs], _SEQ_ARRAY)
        return cls(a["chain"].astype(np.uint64), a["seq"].astype(np.uint64))

    def __len__(self) -> int:
        return len(self.seq)

    def __getitem__(self, i: int) -> tuple[bytes, int]:
        return int(self.chain[i]).to_bytes(8, "little"), int(self.seq[i])

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        return map(self.__getitem__, range(len(self)))

    def __repr__(self) -> str:
        return f"Seqs({list(self)!r})"


def _seqs(recs: list[Record], header: str) -> Seqs | None:
    """Each record's (chain id, sequence number) from ``header`` (8 + 8 bytes); None for the
    whole batch if a record lacks it (then timestamps and high-water marks guide the merge)."""
    hs = list(map(_HEADERS, recs))
    if hs and None not in hs and set(map(len, hs)) == {1}:
        # riskmon's producers send this header alone: checked and read for the whole batch
        # in C-level passes (a loop over the records cost ~4 % of the worker)
        first = list(map(_FIRST, hs))
        if set(map(_FIRST, first)) == {header}:
            values = list(map(_SECOND, first))
            if set(map(len, values)) == {16}:
                a = np.frombuffer(b"".join(values), _SEQ_ARRAY)
                return Seqs(a["chain"].astype(np.uint64), a["seq"].astype(np.uint64))
    out: list[tuple[bytes, int]] = []
    unpack = _SEQ.unpack
    for r in recs:
        own = r[4]
        if len(own) == 1 and own[0][0] == header and len(own[0][1]) == 16:
            out.append(unpack(own[0][1]))
            continue
        for k, v in own or ():
            if k == header and len(v) == 16:
                out.append(unpack(v))
                break
        else:
            return None
    return Seqs.of(out)


def _batched_topics(app: Any) -> set[str]:
    transport = app.transport
    return transport.batched_topics if isinstance(transport, BatchTransport) else set()


def install(app: faust.App) -> BatchTransport:
    """Give ``app`` the batch-delivering consumer. Idempotent; call before the worker starts."""
    transport = app._transport
    if isinstance(transport, BatchTransport):
        return transport
    if app._consumer is not None:
        raise RuntimeError("batching must be installed before the app's consumer is created")
    url = app.conf.broker_consumer
    if not all(u.scheme == "kafka" for u in url):
        raise RuntimeError(f"batching needs the kafka:// (aiokafka) transport, got {url}")
    new = BatchTransport(url, app)
    app.transport = new
    _keep_queues_when_active(app.flow_control)
    return new


def _keep_queues_when_active(flow: FlowControlEvent) -> None:
    """Make ``flow.resume()`` a no-op while flow is already active.

    Mode's ``FlowControlEvent.resume`` clears every queue it manages (the agents' channel
    queues) even when flow was not suspended. Faust's recovery resumes twice: for the changelog
    reading, then again after seeking the stream partitions to their committed offsets, while
    the Fetcher already runs. Stream records fetched in between went into the agent's queue and
    were cleared by the second resume, after the consumer's position and Faust's read offset had
    moved past them: they were lost until the next restart (the restart test's stall; its wait
    report: "handed to Faust 9, Faust read offset 9, fetch position 10, received None"). Clearing
    is right after a suspension (what was queued before a rebalance is stale), so that stays."""
    resume = flow.resume

    def resume_unless_active() -> None:
        if not flow.is_active():
            resume()

    flow.resume = resume_unless_active  # type: ignore[method-assign]


def batch_table(app: faust.App, name: str, partitions: int, **kwargs: Any) -> Any:
    """A Table of raw bytes keyed by raw bytes, co-partitioned with a ``partitions``-wide input."""
    return app.Table(
        name,
        key_type=bytes,
        value_type=bytes,
        partitions=partitions,
        **kwargs,
    )


def local_reader(table: Any) -> Callable[[bytes], bytes | None]:
    """A fast ``key -> value or None`` over this worker's copy of ``table`` (no routing).

    Get it once per batch: for the memory store it is the store dict's ``get``.
    """
    store = table.data
    if isinstance(store, MemoryStore):
        getter: Callable[[bytes], bytes | None] = store.data.get
        return getter

    def read(key: bytes) -> bytes | None:
        try:
            return bytes(store[key])
        except KeyError:
            return None

    return read


def read_local(table: Any, key: bytes) -> bytes | None:
    """This worker's current value of ``key`` (no routing to other workers)."""
    return local_reader(table)(key)


class _ChangelogEvent:
    """Just enough of a Faust Event/Message for ``Store.apply_changelog_batch``."""

    __slots__ = ("key", "message", "offset", "partition", "tp", "value")

    def __init__(self, tp: TP, offset: int, key: bytes, value: bytes | None) -> None:
        self.tp, self.partition, self.offset = tp, tp.partition, offset
        self.key, self.value = key, value
        self.message = self


def _store_update(table: Any, partition: int, items: Mapping[bytes, bytes | None]) -> bool:
    """Write ``items`` into a memory store now; False (nothing done) for other stores."""
    store = table.data
    if not isinstance(store, MemoryStore):
        return False
    data, key_partition = store.data, store._key_partition
    for key, value in items.items():
        if value is None:
            data.pop(key, None)
            key_partition.pop(key, None)
        else:
            data[key] = value
            key_partition[key] = partition
    return True


async def _changelog_send(
    table: Any, partition: int, items: Mapping[bytes, bytes | None], apply: bool
) -> list[asyncio.Future[Any]]:
    """Queue ``items`` to ``table``'s changelog ``partition`` as bulk record batches, the last
    item alone in a final one-record batch (see the module docstring). ``apply``: update a
    non-memory store (rocksdb) through ``apply_changelog_batch`` once the offsets are known."""
    producer = table.app.producer._ensure_producer()
    topic = table.changelog_topic_name
    pairs = list(items.items())
    last = pairs.pop()
    futures = await _send_batches(producer, topic, partition, pairs)
    terminator = producer.create_batch()
    terminator.append(key=last[0], value=last[1], timestamp=None)
    futures.append(await producer.send_batch(terminator, topic, partition=partition))
    if apply:
        futures[-1].add_done_callback(_apply_when_sent(table, TP(topic, partition), pairs, last))
    return futures


async def bulk_write(
    table: Any, partition: int, items: Mapping[bytes, bytes | None]
) -> list[asyncio.Future[Any]]:
    """Write ``items`` (None = delete) to ``table``'s store and changelog ``partition``.

    The memory store is updated now; the changelog records are queued as bulk record batches.
    Returns the delivery futures: await them before acking the input. Other stores (rocksdb)
    are updated through ``apply_changelog_batch`` once the changelog offsets are known.
    """
    if not items:
        return []
    memory = _store_update(table, partition, items)
    return await _changelog_send(table, partition, items, apply=not memory)


async def _send_batches(
    producer: Any, topic: str, partition: int, pairs: Sequence[tuple[bytes | None, bytes | None]]
) -> list[asyncio.Future[Any]]:
    """Queue ``pairs`` as full record batches to one partition; returns the delivery futures."""
    futures: list[asyncio.Future[Any]] = []
    batch = producer.create_batch()
    for key, value in pairs:
        if batch.append(key=key, value=value, timestamp=None) is None:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"record for key {key!r} exceeds producer_max_batch_size")
    if batch.record_count():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


async def bulk_send(
    app: faust.App, topic: str, partition: int, pairs: Sequence[tuple[bytes | None, bytes | None]]
) -> list[asyncio.Future[Any]]:
    """Send ``(key, value)`` records to ``topic``'s ``partition`` as bulk record batches (Faust's
    per-message ``send`` costs ~15 us a record); returns the delivery futures to await."""
    if not pairs:
        return []
    producer: Any = app.producer
    return await _send_batches(producer._ensure_producer(), topic, partition, pairs)


def _apply_when_sent(
    table: Any, tp: TP, pairs: list[tuple[bytes, bytes | None]], last: tuple[bytes, bytes | None]
) -> Callable[[asyncio.Future[Any]], None]:
    def apply(fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return  # the agent sees the failure when it awaits the futures
        end = fut.result().offset  # offset of the terminator = last changelog offset
        events = [_ChangelogEvent(tp, end, k, v) for k, v in (*pairs, last)]
        table.apply_changelog_batch(events)

    return apply


@dataclass(slots=True)
class RecordBatch:
    """The records of one fetched topic-partition batch, handed to a batched agent's handler.

    The handler reads and writes state through it and sends its outputs with :meth:`send`;
    :meth:`persist` then delivers everything in the order that keeps a crash harmless:
    outputs first, then the changelog that records them, then (the caller) the input ack.
    """

    topic: str
    partition: int
    records: list[Record]
    #: per-record topic when the batch merges several co-partitioned topics (``align=True``)
    topics: list[str] | None = None
    app: Any = None  # the Faust app whose producer :meth:`send` uses
    _outputs: list[asyncio.Future[Any]] = field(default_factory=list, repr=False)
    _writes: list[tuple[Any, Mapping[bytes, bytes | None]]] = field(
        default_factory=list, repr=False
    )
    _pending: list[asyncio.Future[Any]] = field(default_factory=list, repr=False)
    #: True when a write went to a non-memory store, which is updated only once its changelog
    #: offsets are known: the next batch must wait for :meth:`persist`
    inline: bool = False

    def topic_of(self, i: int) -> str:
        return self.topics[i] if self.topics is not None else self.topic

    async def send(self, topic: str, pairs: Sequence[tuple[bytes | None, bytes | None]]) -> None:
        """Queue output records to ``topic``'s partition == this partition, in bulk."""
        self._outputs.extend(await bulk_send(self.app, topic, self.partition, pairs))

    async def write(self, table: Any, items: Mapping[bytes, bytes | None]) -> None:
        """Write each key once to ``table`` (store + changelog partition == this partition).

        A memory store is updated now (the next batch reads it); the changelog goes out in
        :meth:`persist`, after this batch's outputs were delivered."""
        table._verify_source_topic_partitions(self.topic)  # Faust's co-partitioning check
        if not items:
            return
        if _store_update(table, self.partition, items):
            self._writes.append((table, items))
        else:
            self.inline = True
            self._pending.extend(await _changelog_send(table, self.partition, items, apply=True))

    def read(self, table: Any, key: bytes) -> bytes | None:
        """Current local value of ``key`` in ``table`` (includes this batch's writes)."""
        return read_local(table, key)

    def reader(self, table: Any) -> Callable[[bytes], bytes | None]:
        """``read`` for many keys: the store lookup resolved once (see ``local_reader``)."""
        return local_reader(table)

    async def persist(self) -> None:
        """Deliver the outputs, then the changelog writes; raise if a delivery failed."""
        if self._outputs:
            await asyncio.gather(*self._outputs)
            self._outputs.clear()
        for table, items in self._writes:
            self._pending.extend(await _changelog_send(table, self.partition, items, apply=False))
        self._writes.clear()
        if self._pending:
            await asyncio.gather(*self._pending)
            self._pending.clear()


Handler = Callable[[RecordBatch], Awaitable[None]]


def batched_agent(
    app: faust.App,
    topic: Any,
    handler: Handler,
    *,
    name: str | None = None,
    align: bool = False,
    idle_s: float = 30.0,
    order_header: str | None = None,
) -> Any:
    """Register an agent that calls ``await handler(batch)`` once per fetched partition batch.

    ``topic`` is a Faust topic (it may name several topics) that only this agent consumes. The
    batch is acked after the handler returned and all its ``write``s were delivered, so offsets
    are committed only for processed and persisted input.

    ``align=True`` merges the co-partitioned topics of each partition number by record
    timestamp before the handler sees them (see :class:`_Aligner`), so a topic that is behind
    (a backlog, a slow producer) cannot be overtaken by its siblings. ``order_header`` names a
    record header carrying the producer's chain id and sequence number, which makes that merge
    exact.
    """
    transport = install(app)
    transport.batched_topics.update(topic.topics)
    if order_header:
        transport.order_header = order_header
    agent_name = name or f"{handler.__module__}.{getattr(handler, '__name__', 'batched')}"
    if align:
        aligner = _Aligner(app, tuple(topic.topics), handler, idle_s)

        async def run_aligned(stream: Any) -> None:
            async for event in stream.noack().events():
                message = event.message
                if not isinstance(message, BatchMessage):
                    raise TypeError(f"batched agent got a per-record message: {message!r}")
                message.seen = True
                if _current(app, message):
                    await aligner.add(event)  # processed once the rebalance has ended
                else:  # not acked: fetched again by the partition's owner after its seek
                    aligner.dropped[message.tp] = (message.offset, message.generation_id)

        app.timer(interval=min(max(idle_s / 4, 0.05), RESYNC_S / 2))(aligner.unstall)
        return app.agent(topic, name=agent_name)(run_aligned)

    async def run(stream: Any) -> None:
        async for event in stream.noack().events():
            message = event.message
            if not isinstance(message, BatchMessage):
                raise TypeError(f"batched agent got a per-record message: {message!r}")
            message.seen = True
            if not await _wait_current(app, message):
                continue  # stale: not acked, fetched again by the partition's owner
            batch = RecordBatch(message.topic, message.partition, message.records, app=app)
            await handler(batch)
            await batch.persist()
            event.ack()

    return app.agent(topic, name=agent_name)(run)


@dataclass(slots=True)
class _Queued:
    event: Any  # the Faust event, acked once every record was handed over and persisted
    message: BatchMessage
    pos: int = 0


def _fetch_state(consumer: Any, tp: TP) -> str:
    """What aiokafka's fetcher holds for ``tp`` in the consumer thread (for the wait report):
    its fetch position, a fetched result not handed over yet, whether it is paused there."""
    try:
        inner = consumer._thread._consumer
        state = inner._subscription.subscription.assignment.state_value(tp)
        buffered = inner._fetcher._records.get(tp)
        if buffered is not None:
            records = getattr(buffered, "_partition_records", None)
            nxt = getattr(records, "next_fetch_offset", None)
            buffered = f"{type(buffered).__name__} up to {nxt}"
        valid = state.has_valid_position
        position = state.position if valid else "none (awaiting reset)"
        return f"position {position}, buffered {buffered}, paused in aiokafka {state.paused}"
    except Exception:  # not assigned, no position yet, or another consumer
        return "?"


class _Aligner:
    """Stream-time alignment of co-partitioned topics (as Kafka Streams does).

    Per partition number, one queue per topic; each step hands over one queue head:

    * with an order header (riskmon's producer numbers the records it sends to each partition
      number of an input topic set: a chain id and a sequence number), the head that is its
      chain's next record goes; a head whose predecessor has not arrived waits. This is exact:
      the merge reproduces the send order whatever the fetch timing, so a stream equals the
      backtest of the same file.
    * otherwise (no header, or a chain not seen yet in this consumer generation: its
      predecessor may have been processed before a restart or rebalance) the oldest head by
      record timestamp goes (ties: topic order), unless a topic's queue is empty while the
      broker says that topic-partition has more records (its high-water mark is past what we
      received): then the merge waits for them instead of running ahead. Best effort:
      high-water marks of different partitions are not read atomically.

    After a restart or rebalance the committed offsets of the three topics sit at different
    points of a chain, so some predecessors were processed before and never come again: a
    partition that waited ``RESYNC_S`` while no empty queue's topic has more records skips to its
    oldest waiting record. The high-water marks must come from fetch responses newer than the
    wait's start (a busy worker's marks can be seconds old: skipping on those sent predecessors
    that were merely late to ``too_late``). A partition that waited ``idle_s`` goes on anyway
    (a predecessor that never comes, stale high-water marks).

    A message is acked when all its records were processed and persisted; a partly processed
    one stays unacked (re-fetched after a crash, where event-id dedupe makes the replay
    harmless).
    """

    def __init__(
        self, app: faust.App, topics: tuple[str, ...], handler: Handler, idle_s: float
    ) -> None:
        self.app, self.topics, self.handler, self.idle_s = app, topics, handler, idle_s
        self.queues: dict[int, dict[str, deque[_Queued]]] = {}
        self.received: dict[TP, int] = {}  # last offset handed to us per topic-partition
        # partition -> (monotonic, wall clock) time it started waiting
        self.stalled: dict[int, tuple[float, float]] = {}
        self.persisting: dict[int, asyncio.Future[None]] = {}  # partition -> its last persist
        self.inflight: deque[asyncio.Future[None]] = deque()
        # partition -> (consumer generation, {chain id: next expected sequence number})
        self.expect: dict[int, tuple[int | None, dict[bytes, int]]] = {}
        self.lock = asyncio.Lock()
        self.pending: set[int] = set()  # partitions queued for their fetch's last message
        self.warned: dict[int, float] = {}  # partition -> start of the wait last logged
        # topic-partition -> (offset, generation) of the last message dropped as not current
        self.dropped: dict[TP, tuple[int, int | None]] = {}
        self.arrived: dict[TP, float] = {}  # topic-partition -> monotonic time of its last message
        self.refetched: dict[TP, float] = {}  # topic-partition -> start of the wait it refetched in

    async def add(self, event: Any) -> None:
        """Queue a message; merge its partition once the fetch it came with has been handed
        over (its last message for this partition number): one handler call per partition and
        fetch, not one per topic (each call has a fixed cost of a few ms in the worker)."""
        m: BatchMessage = event.message
        qs = self.queues.setdefault(m.partition, {t: deque() for t in self.topics})
        qs[m.tp.topic].append(_Queued(event, m))
        self.received[m.tp] = m.offset
        self.arrived[m.tp] = time.monotonic()
        if m.last_in_fetch:
            self.pending.discard(m.partition)
            await self.drain(m.partition)
        else:
            self.pending.add(m.partition)

    async def unstall(self) -> None:
        """Timer: merge partitions whose fetch's last message never came (dropped in a
        rebalance); resync chains of partitions waiting longer than ``RESYNC_S``; let
        partitions that waited longer than ``idle_s`` go on."""
        for p in list(self.pending):
            self.pending.discard(p)
            await self.drain(p)
        now = time.monotonic()
        for p, (since, since_wall) in list(self.stalled.items()):
            if now - since >= STALL_WARN_S:
                if self.warned.get(p) != since:
                    self.warned[p] = since
                    _log.warning("partition %d has waited %.0f s: %s", p, now - since, self._why(p))
                await self._refetch(p, since)
            if now - since >= self.idle_s:
                await self.drain(p, force=True)
            elif now - since >= RESYNC_S:
                await self.drain(p, resync_since=since_wall)

    def _why(self, p: int) -> str:
        """What partition ``p``'s merge waits for: each topic's head (offset, chain sequence
        number) or, for an empty queue, where its records are: high-water mark, what we
        received, committed, dropped, skipped, handed to Faust, Faust's read offset, aiokafka's
        fetch state, Faust's partition sets."""
        qs = self.queues.get(p) or {}
        expected = self._chains(p)
        parts = [f"expected {sorted(expected.values())}", f"may process {_may_process(self.app)}"]
        parts.append(f"generation {self.app.consumer_generation_id}")
        assigned: set[TP] = self.app.consumer.assignment()
        for t in self.topics:
            q = qs.get(t)
            if q:
                head = q[0]
                seq = head.message.seqs[head.pos][1] if head.message.seqs else None
                offset = head.message.records[head.pos][0]
                parts.append(f"{t}: head offset {offset} seq {seq}, {len(q)} messages")
            else:
                tp = TP(t, p)
                consumer: Any = self.app.consumer
                parts.append(
                    f"{t}: empty, high-water {consumer.highwater(tp) if tp in assigned else '-'}"
                    f", received {self.received.get(tp)}, committed "
                    f"{consumer._committed_offset.get(tp)}, lagging {self._lagging(tp, assigned)}"
                    f", dropped {self.dropped.get(tp)}, skipped "
                    f"{getattr(consumer, 'skipped', {}).get(tp)}, handed to Faust "
                    f"{getattr(consumer, 'yielded', {}).get(tp)}, skipped by Faust's stream "
                    f"{getattr(consumer, 'unseen', {}).get(tp)}, Faust read offset "
                    f"{getattr(consumer, '_read_offset', {}).get(tp)}, fetch "
                    f"{_fetch_state(consumer, tp)}, active "
                    f"{tp in (getattr(consumer, '_active_partitions', None) or ())}, paused "
                    f"{tp in getattr(consumer, '_paused_partitions', ())}"
                )
        return "; ".join(parts)

    async def _refetch(self, p: int, since: float) -> None:
        """Fetch again what waiting partition ``p``'s empty topics owe it: records the broker
        has (high-water mark past the next offset) of which nothing arrived since the wait
        began ``since`` (monotonic), the topic-partition active. Once per wait and
        topic-partition. Seen after a restart (rare): such records never reached the agent
        although the partition was active, and the merge waited ``idle_s`` then went on without
        them, leaving them unprocessed until the next restart. A spurious refetch costs a fetch;
        a record that comes twice is a redelivery the handler recognises by its offset."""
        if not _may_process(self.app):
            return
        consumer: Any = self.app.consumer
        assigned: set[TP] = consumer.assignment()
        active = getattr(consumer, "_active_partitions", None) or ()
        qs = self.queues.get(p) or {}
        for t in self.topics:
            tp = TP(t, p)
            if (
                qs.get(t)
                or tp not in active
                or self.arrived.get(tp, -math.inf) >= since
                or self.refetched.get(tp) == since
            ):
                continue
            hw = consumer.highwater(tp) if tp in assigned else None
            nxt = self._next_offset(tp)
            if hw is None or int(hw) <= nxt:
                continue
            self.refetched[tp] = since
            _log.warning(
                "partition %d: %s has records %d..%d on the broker and none arrived in %.0f s;"
                " fetching them again (fetch %s)",
                p, t, nxt, int(hw) - 1, time.monotonic() - since, _fetch_state(consumer, tp),
            )  # fmt: skip
            try:
                await consumer.seek_wait({tp: nxt})
            except Exception as exc:  # revoked meanwhile, broker timeout: the next wait retries
                _log.warning("refetching %s from %d failed: %r", tp, nxt, exc)

    def _next_offset(self, tp: TP) -> int:
        """The next offset ``tp`` should deliver: after what we received, or the committed
        position after a restart/rebalance."""
        committed = self.app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        return max(self.received.get(tp, -1) + 1, committed if committed is not None else 0)

    def _polled_since(self, tp: TP, since: float) -> bool:
        """Whether a fetch response for ``tp`` (its high-water mark) is newer than ``since``
        (``time.time()`` seconds)."""
        thread: Any = getattr(self.app.consumer, "_thread", None)
        consumer = getattr(thread, "_consumer", None)
        if consumer is None:
            return False
        try:
            ms = consumer.last_poll_timestamp(tp)
        except (AssertionError, KeyError):  # not assigned (any more)
            return False
        return ms is not None and ms / 1000.0 > since

    def _lagging(self, tp: TP, assigned: set[TP]) -> bool:
        if tp not in assigned:
            return False
        hw = self.app.consumer.highwater(tp)
        if hw is None:
            # no fetch response for it yet in this assignment (just after a restart or a
            # rebalance): records may be waiting there, so wait for the first response. Going on
            # (as until 2026-12) could merge another topic's later events first and turn the
            # earlier ones, when they came, into too_late: a rare restart-test timeout.
            return True
        return int(hw) > self._next_offset(tp)

    def _chains(self, p: int) -> dict[bytes, int]:
        """Partition ``p``'s next expected sequence number per chain, in this generation."""
        generation = self.app.consumer_generation_id
        got = self.expect.get(p)
        if got is None or got[0] != generation:
            got = self.expect[p] = (generation, {})
        return got[1]

    async def drain(self, p: int, force: bool = False, resync_since: float | None = None) -> None:
        while await self._drain_once(p, force, resync_since):
            pass  # MAX_DRAIN records went: more may be ready

    async def _drain_once(self, p: int, force: bool, resync_since: float | None) -> bool:
        """Hand over partition ``p``'s ready records (up to ``MAX_DRAIN``); True if capped."""
        capped = False
        async with self.lock:
            qs = self.queues.get(p)
            if not qs:
                return False
            out: list[Record] = []
            out_topics: list[str] = []
            done: list[Any] = []
            blocked = False
            if not _may_process(self.app):
                # a rebalance is under way or flow is suspended: keep the records (they were
                # fetched after the seek to committed offsets, nothing fetches them again) and
                # let the timer retry
                self.stalled.setdefault(p, (time.monotonic(), time.time()))
                return False
            chains = self._chains(p)
            # one assignment snapshot per drain: the consumer rebuilds the set on every call
            assigned: set[TP] = self.app.consumer.assignment()
            generation = self.app.consumer_generation_id
            # nothing below awaits: queues, high-water marks and poll times hold still, so each
            # empty topic's "more to come?" is asked once per drain, not once per record
            more: dict[str, bool] = {}
            for q in qs.values():
                _drop_stale(q, generation, assigned)
            self._take_runs(qs, chains, out, out_topics, done, generation, assigned)
            while True:
                if len(out) >= MAX_DRAIN:
                    capped = True
                    break
                nxt: tuple[int, int] | None = None  # (timestamp, topic index): chain successor
                oldest: tuple[int, int] | None = None  # the same among heads without a chain
                waiting = lagging = False
                gaps: list[tuple[int, bytes]] = []  # (seq, chain) of heads that wait
                for i, t in enumerate(self.topics):
                    q = qs[t]
                    if not q:
                        if not force:
                            m = more.get(t)
                            if m is None:
                                tp = TP(t, p)
                                m = more[t] = self._lagging(tp, assigned) or (
                                    resync_since is not None
                                    and not self._polled_since(tp, resync_since)
                                )
                            if m:
                                lagging = True  # more to come, or no fresh mark to tell
                        continue
                    head = q[0]
                    key = (head.message.records[head.pos][3], i)
                    seqs = head.message.seqs
                    if seqs is not None:
                        chain, seq = seqs[head.pos]
                        expected = chains.get(chain)
                        if expected is None and seq == 0:
                            expected = 0  # a chain's first record: nothing precedes it
                        if expected is not None:
                            if seq <= expected:  # its chain's next (or a resent duplicate)
                                if nxt is None or key < nxt:
                                    nxt = key
                            else:
                                waiting = True  # its predecessor has not arrived yet
                                gaps.append((seq, chain))
                            continue
                    if oldest is None or key < oldest:
                        oldest = key
                if nxt is None and gaps and not lagging and (resync_since is not None or force):
                    # Waited RESYNC_S and every empty queue's topic has nothing more: the missing
                    # predecessors were processed before a restart/rebalance (the committed
                    # offsets of the three topics differ). Skip to the oldest waiting record.
                    seq, chain = min(gaps)
                    chains[chain] = seq
                    continue
                if nxt is not None:
                    pick = nxt
                elif oldest is not None and (force or not (lagging or waiting)):
                    pick = oldest
                else:
                    blocked = (waiting or lagging) and not force
                    break
                blocked = False
                t = self.topics[pick[1]]
                head = qs[t][0]
                if head.message.seqs is not None:
                    chain, seq = head.message.seqs[head.pos]
                    chains[chain] = max(chains.get(chain, 0), seq + 1)
                out.append(head.message.records[head.pos])
                out_topics.append(t)
                head.pos += 1
                if head.pos == len(head.message.records):
                    qs[t].popleft()
                    done.append(head.event)
                    _drop_stale(qs[t], generation, assigned)
            if blocked and any(qs.values()):
                # the clock runs from the last progress: a busy worker's partitions end most
                # drains waiting for the next fetch, which is not a stall
                if out or p not in self.stalled:
                    self.stalled[p] = (time.monotonic(), time.time())
            else:
                self.stalled.pop(p, None)
            if not out:
                return False
            batch = RecordBatch(out_topics[0], p, out, out_topics, app=self.app)
            await self.handler(batch)
            # persist and ack in the background, chained per partition (changelog order), so
            # the next batch does not wait for this one's broker round trips
            prev = self.persisting.get(p)
            task = asyncio.ensure_future(self._persist(prev, batch, done))
            self.persisting[p] = task
            self.inflight.append(task)
            if batch.inline:
                await task
        while self.inflight and (self.inflight[0].done() or len(self.inflight) > MAX_PERSISTING):
            await self.inflight.popleft()  # bounded: and a failed delivery raises here
        return capped

    def _take_runs(
        self,
        qs: dict[str, deque[_Queued]],
        chains: dict[bytes, int],
        out: list[Record],
        out_topics: list[str],
        done: list[Any],
        generation: int,
        assigned: set[TP],
    ) -> None:
        """The common case of the merge below, at once: the queued records of one known chain
        whose sequence numbers continue it without a gap go over in sequence order. Exactly the
        records, in the order, the per-record loop would pick (it picks the head whose sequence
        number is the expected one when no head is below it); it stops before anything that is
        not plain (a record without a sequence number or of another chain, a resent duplicate,
        a sequence number on two topics, a gap), and the loop goes on from there. Per drain a
        few array operations instead of Python per record (runs are short: three topics
        interleave, ~3.6 records per run in the benchmark's book)."""
        room = MAX_DRAIN - len(out)
        heads = [qs[t][0] for t in self.topics if qs[t]]
        if room <= 0 or not heads or any(h.message.seqs is None for h in heads):
            return
        first_seqs = heads[0].message.seqs
        assert first_seqs is not None
        chain, _seq = first_seqs[heads[0].pos]
        got = chains.get(chain)
        if got is None:
            return  # a chain not seen in this generation: the loop's resync rules
        expected = got
        chain_id = np.uint64(int.from_bytes(chain, "little"))
        # per topic, its plain prefix: queued records of this chain, sequence numbers rising
        # from ``expected`` on; ``cut``: whether the topic has more after it
        seq_parts: list[np.ndarray] = []
        topic_parts: list[np.ndarray] = []
        recs: list[Record] = []
        limits: list[int] = []  # per cut topic, its last plain record's index in ``recs``
        for i, t in enumerate(self.topics):
            q = qs[t]
            if not q:
                continue
            parts = []
            cut = False
            for k, item in enumerate(q):
                seqs = item.message.seqs
                if seqs is None:
                    cut = True
                    break
                start = item.pos if k == 0 else 0
                parts.append((item, start, seqs.chain[start:], seqs.seq[start:]))
            c = np.concatenate([p[2] for p in parts])
            sq = np.concatenate([p[3] for p in parts])
            ok = c == chain_id
            if len(sq):
                ok[0] &= bool(sq[0] >= expected)
                ok[1:] &= sq[1:] > sq[:-1]
            m = len(sq) if ok.all() else int(np.argmin(ok))
            cut = cut or m < len(sq)
            if cut:
                if m == 0:
                    return  # its head is not plain: the loop decides
                limits.append(len(recs) + m - 1)
            n0 = len(recs)
            for item, start, _c, _s in parts:
                recs += item.message.records[start:]
                if len(recs) - n0 >= m:
                    break
            del recs[n0 + m :]
            seq_parts.append(sq[:m])
            topic_parts.append(np.full(m, i, np.int64))
        seq_all = np.concatenate(seq_parts)
        order = np.argsort(seq_all, kind="stable")
        ranked = seq_all[order]
        want = np.arange(expected, expected + len(ranked), dtype=np.uint64)
        miss = np.flatnonzero(ranked != want)
        n = len(ranked) if not len(miss) else int(miss[0])
        if n and n < len(ranked) and ranked[n] == ranked[n - 1]:
            n -= 1  # a sequence number on two topics: the loop picks between them
        if limits:  # stop once a cut topic's plain prefix is taken (what follows is not plain)
            rank = np.empty(len(order), np.int64)
            rank[order] = np.arange(len(order))
            n = min(n, int(rank[limits].min()) + 1)
        n = min(n, room)
        if n <= 0:
            return
        take = order[:n].tolist()
        out += map(recs.__getitem__, take)
        topic_of = np.concatenate(topic_parts)
        out_topics += map(self.topics.__getitem__, topic_of[order[:n]].tolist())
        chains[chain] = expected + n
        per_topic = np.bincount(topic_of[order[:n]], minlength=len(self.topics)).tolist()
        for i, t in enumerate(self.topics):
            left = per_topic[i]
            q = qs[t]
            while left:
                head = q[0]
                avail = len(head.message.records) - head.pos
                if left < avail:
                    head.pos += left
                    break
                left -= avail
                q.popleft()
                done.append(head.event)
                _drop_stale(q, generation, assigned)

    async def _persist(
        self, prev: asyncio.Future[None] | None, batch: RecordBatch, done: list[Any]
    ) -> None:
        if prev is not None:
            await prev  # a failure there fails this one too: nothing after it is acked
        await batch.persist()
        for event in done:
            event.ack()


def _may_process(app: faust.App) -> bool:
    """Whether fetched messages may be processed now (no rebalance, flow not suspended)."""
    return bool(not app.rebalancing and app.flow_control.is_active())


def _drop_stale(q: deque[_Queued], generation: int, assigned: set[TP]) -> None:
    """Pop queue heads fetched in an earlier generation or for a partition we lost: never
    acked, they are fetched again by whoever owns the partition now."""
    while q and not _owned(q[0].message, generation, assigned):
        q.popleft()


def _owned(message: ConsumerMessage, generation: int, assigned: set[TP]) -> bool:
    """Whether ``message`` was fetched in this consumer generation for a partition we own."""
    return message.generation_id == generation and message.tp in assigned


def _current(app: AppT, message: ConsumerMessage) -> bool:
    """Whether ``message`` belongs to this consumer generation and a partition we own."""
    return _owned(message, app.consumer_generation_id, app.consumer.assignment())


async def _wait_current(app: faust.App, message: BatchMessage) -> bool:
    """Wait while a rebalance is under way or flow is suspended; then whether ``message`` is
    still current. Dropping a current message instead would lose it: the Fetcher resumes
    (after the seek to committed offsets) before the app leaves its rebalancing state, and
    nothing fetches those records again (seen after a restart: a 30 s stall, lost events)."""
    while _current(app, message) and not _may_process(app):
        await asyncio.sleep(0.05)
    return _current(app, message)
