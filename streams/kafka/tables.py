"""Table writes in bulk: each touched key written once per batch, to the store and its changelog.

:meth:`RecordBatch.write` updates the local store now (the next batch reads it) and sends the
changelog records to the changelog partition == the batch's input partition (co-partitioning) as
bulk record batches through aiokafka ``send_batch``, not through Faust's per-key Table API.
:meth:`RecordBatch.persist` delivers a batch's outputs first, then the changelog that records
them, so a crash between the two re-emits the same outputs rather than losing one.

Tansu reports a wrong end offset (the first offset of the last record batch + 1), which would make
Faust's changelog recovery stop early. Every bulk write therefore ends with a one-record batch,
so the last batch of a changelog partition has one record and the reported end is the true one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.stores.memory import Store as MemoryStore
from faust.types import TP

from streams.kafka.records import Record


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


def local_items(table: Any) -> Iterator[tuple[bytes, bytes]]:
    """Every ``(key, value)`` of this worker's copy of ``table`` (its active partitions once a
    recovery completed: the memory store drops the others then, rocksdb reads only those)."""
    store = table.data
    if isinstance(store, MemoryStore):
        yield from list(store.data.items())
        return
    for key, value in store.items():
        yield bytes(key), bytes(value)


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
    per-message ``send`` is far slower per record); returns the delivery futures to await."""
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
