"""Faust's consumer thread unpacks the batched topics' records a record batch at a time.

aiokafka unpacks a fetch into ``ConsumerRecord`` objects one generator step at a time, which the
batch consumer would only take apart again. For the worker's batched input topics (read
uncommitted), :func:`patch` makes ``PartitionRecords`` / ``FetchResult.getall`` hand over plain
:data:`~streams.kafka.records.Record` tuples, one comprehension per record batch, with the order
headers read while the records' memory is fresh. Every other topic (changelogs, other consumers in
the process) keeps aiokafka's own path. ``tests/unit/test_batching_guard.py`` holds the result to
aiokafka's records, positions, exhaustion and CRC errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult, PartitionRecords
from aiokafka.errors import CorruptRecordException
from aiokafka.record.memory_records import MemoryRecords

from streams.kafka.order import Seqs, read_seqs
from streams.kafka.records import Record


class _PlainRecords:
    """Marks the fetcher of a batch-delivering consumer (as its key deserializer, which aiokafka
    hands to every ``PartitionRecords``): records of ``topics`` are unpacked straight into
    ``Record`` tuples in the consumer thread, one comprehension per record batch, not into
    ``ConsumerRecord``s one generator step at a time that ``getmany`` would take apart again
    (a cost per record, under the GIL the agent needs). Keys of other topics pass through
    unchanged, as without a deserializer."""

    def __init__(self, topics: set[str], transport: Any = None) -> None:
        self.topics = topics  # the transport's set: batched_agent adds to it before the start
        self.transport = transport  # its order header (set by batched_agent) is read per fetch
        #: topic-partition -> the position span of fetches that held no record (control batches
        #: only; aiokafka hands nothing over for them), given to the next records' span
        self.empty: dict[Any, tuple[int, int]] = {}

    def __call__(self, key: bytes | None) -> bytes | None:
        return key


class _Fetched(list[Any]):
    """The records ``getall`` hands over for a batched topic-partition, with their order
    headers read as they were unpacked (``seqs``; reading them later, in the agent's thread,
    touched every record's memory again) and the consumer positions before and after them
    (``span``)."""

    __slots__ = ("header", "seqs", "span")

    header: str | None  # the order header they were read for
    seqs: Seqs | None
    #: (position before, position after): every offset the consumer's position moved over to
    #: hand these records over, the records' own and offsets that hold none (control batches,
    #: a compacted or transaction-marker gap), also of record-less fetches just before
    span: tuple[int, int]


#: aiokafka's own methods, as they were before :func:`patch`
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
    start = pr.next_fetch_offset  # the consumer's position (check_assignment)
    got, exhausted = _take_plain(pr, max_records)
    self._update_position()
    end = pr.next_fetch_offset
    if exhausted:
        self._partition_records = None
    empty = pr._key_deserializer.empty
    tp = self._topic_partition
    bridge = empty.pop(tp, None)
    if bridge is not None and bridge[1] == start:  # no seek since: its offsets hold no record
        start = bridge[0]
    if not got:
        if end > start:
            empty[tp] = (start, end)
        return []
    out = _Fetched(got)
    out.span = (start, end)
    header = getattr(pr._key_deserializer.transport, "order_header", None)
    out.header, out.seqs = header, (read_seqs(got, header) if header else None)
    return out


def patch() -> None:
    """Install the batch-wise unpacking into aiokafka's fetcher classes (idempotent). Only
    consumers marked by :class:`_PlainRecords` take it; others see aiokafka's own behaviour."""
    PartitionRecords._unpack_records = _plain_or_unpack
    FetchResult.getall = _plain_getall


def unpatch() -> None:
    """Give aiokafka its own methods back (for tests of the unpatched path)."""
    PartitionRecords._unpack_records = _unpack_records
    FetchResult.getall = _getall
