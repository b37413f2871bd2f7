"""Bulk producing to riskmon's topics: aiokafka record batches built per partition.

``benchmarks/bench_producer.py`` measured aiokafka ``send_batch`` well ahead of kafka-python's
per-message ``send`` (even with crc32c) on Tansu, so this module builds the record batches itself:
records are partitioned like Kafka's default partitioner (murmur2 of the key bytes, as Java,
kafka-python and aiokafka do), appended to one open batch per partition and shipped when full.

``produce_records`` is the in-process entry (simulator, replay, demo, benchmarks);
``produce_file`` routes a JSON-lines file by each line's ``kind``. The producer is not the
validator: a line it cannot route still goes, raw, to the unroutable topic, so the worker
dead-letters it with a reason.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec

from schemas.events import INPUT_TYPES, TOPIC_TYPES, kinds_of
from scoring.errors import InputError
from streams.kafka.connection import KafkaSettings
from streams.kafka.topics import ORDER_HEADER, TopicNames, check_topics

Record = tuple[str, bytes | None, bytes]
"""(topic, key, value): key is the raw customer id bytes (None only for unroutable lines)."""

Pacer = Callable[[Record], float]
"""Called before each record; returns seconds to wait before sending it (0: send now). Anything
already queued is flushed before the wait, so event-time replay never holds records back."""

MAX_BATCH_BYTES = 512 * 1024
MAX_INFLIGHT = 64
FLUSH_EVERY = 2048  # records between flushes of every open batch


KIND_ROLE: dict[str, str] = {
    kind: role for role, types in TOPIC_TYPES.items() for t in types for kind in kinds_of(t)
}
"""Event ``kind`` -> input role (loans / repayments / transactions), from schemas.events."""
assert len(KIND_ROLE) == sum(len(kinds_of(t)) for ts in TOPIC_TYPES.values() for t in ts), (
    "kinds overlap"
)


class _Head(msgspec.Struct):
    """The two fields routing needs; the rest of the line is not looked at."""

    kind: str | None = None
    customer_id: Any = None


_head_decoder = msgspec.json.Decoder(_Head)


def route_line(line: bytes) -> tuple[str | None, bytes | None]:
    """(input role or None if unroutable, key bytes or None) for one JSON line."""
    try:
        head = _head_decoder.decode(line)
    except Exception:  # not JSON, the wrong shape, nested too deep: sent raw, dead-lettered
        return None, None
    role = KIND_ROLE.get(head.kind) if head.kind is not None else None
    cid = head.customer_id
    key = cid.encode() if isinstance(cid, str) and cid else None
    return role, key


def murmur2_partition(key: bytes | None, n: int) -> int:
    """Kafka's default partition for ``key`` among ``n``; keyless messages (unroutable garbage)
    all go to partition 0, deterministically (the backtest relies on the same rule)."""
    if key is None:
        return 0
    from aiokafka.partitioner import murmur2

    return int((murmur2(key) & 0x7FFFFFFF) % n)


def routed(
    recs: Iterable[tuple[str, bytes | None, bytes]],
) -> Iterator[tuple[str, bytes | None, bytes]]:
    """Re-route (topic, key, value) records as ``riskmon produce`` routes file lines: by
    ``kind``, unroutable lines to the transactions role, keyed by customer id."""
    for _topic, _key, value in recs:
        role, key = route_line(value)
        yield role or "transactions", key, value


@dataclass
class ProduceSummary:
    """What a produce run sent: messages per topic, unroutable lines, elapsed seconds."""

    counts: dict[str, int] = field(default_factory=dict)
    unroutable: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "total": self.total,
            "unroutable": self.unroutable,
            "seconds": round(self.seconds, 3),
        }


_last_ts = [0]
#: The ``ORDER_HEADER`` chains of this process: its id, and per (topic prefix, partition) the
#: next sequence number; kept across ``produce_records`` calls (the demo produces in two).
_CHAIN_ID = os.urandom(8)
_chain: dict[tuple[str, int], int] = {}


def _timestamp() -> int:
    """Non-decreasing wall-clock record timestamps (ms) within this process (the worker's topic
    alignment falls back to timestamp order for records without the order header)."""
    ts = max(int(time.time() * 1000), _last_ts[0])
    _last_ts[0] = ts
    return ts


class _BatchSender:
    """Open batch per (topic, partition); ships full batches, keeps in-flight futures bounded."""

    def __init__(self, producer: Any, partitions: dict[str, int]) -> None:
        self.producer = producer
        self.partitions = partitions
        self.open: dict[tuple[str, int], Any] = {}
        self.inflight: list[asyncio.Future[Any]] = []
        self._cache: dict[tuple[bytes, int], int] = {}
        self._chain_key: dict[str, str | None] = {}

    def chain_key(self, topic: str) -> str | None:
        """The topic set an input topic belongs to (its prefix); None for other topics."""
        if topic not in self._chain_key:
            head, _, role = topic.rpartition(".")
            self._chain_key[topic] = head if role in INPUT_TYPES else None
        return self._chain_key[topic]

    def partition(self, topic: str, key: bytes | None) -> int:
        n = self.partitions.get(topic)
        if n is None:
            raise InputError(
                f"topic {topic!r} does not exist: create it first (`riskmon broker` or your "
                "cluster's tooling); riskmon never relies on auto-creation"
            )
        if key is None:
            return murmur2_partition(None, n)
        ck = (key, n)
        p = self._cache.get(ck)
        if p is None:
            p = self._cache[ck] = murmur2_partition(key, n)
        return p

    async def add(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue a record in its topic-partition's open batch (shipped when full or flushed).

        Until 2026-12 the newest record of each topic-partition was held back and shipped
        alone at flush, so Tansu (which answers the first offset of the last batch + 1 as the
        end offset) reported true ends. The worker does not need that: its merge follows the
        order headers, and its "more to come?" check compares the end with what it received,
        which fetches hand over in whole batches. The extra one-record batches were what made
        Tansu's fetches slow down as partitions filled (README, Status)."""
        tp = (topic, self.partition(topic, key))
        headers = None
        prefix = self.chain_key(topic)
        if prefix is not None:
            seq = _chain.get((prefix, tp[1]), 0)
            _chain[(prefix, tp[1])] = seq + 1
            headers = [(ORDER_HEADER, _CHAIN_ID + seq.to_bytes(8, "big"))]
        await self._append(tp, key, value, _timestamp(), headers)

    async def _append(
        self, tp: tuple[str, int], key: bytes | None, value: bytes, ts: int, headers: Any
    ) -> None:
        batch = self.open.get(tp)
        if batch is None:
            batch = self.open[tp] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=ts, headers=headers) is None:
            await self._ship(tp, batch)
            batch = self.open[tp] = self.producer.create_batch()
            if batch.append(key=key, value=value, timestamp=ts, headers=headers) is None:
                raise InputError(f"a message of {len(value)} bytes does not fit in one batch")

    async def _ship(self, tp: tuple[str, int], batch: Any) -> None:
        batch.close()
        fut = await self.producer.send_batch(batch, tp[0], partition=tp[1])
        self.inflight.append(fut)
        if len(self.inflight) >= MAX_INFLIGHT:
            done = self.inflight[: MAX_INFLIGHT // 2]
            del self.inflight[: MAX_INFLIGHT // 2]
            await asyncio.gather(*done)

    async def flush(self) -> None:
        for tp, batch in list(self.open.items()):
            if batch.record_count():
                await self._ship(tp, batch)
        self.open.clear()
        pending, self.inflight = self.inflight, []
        await asyncio.gather(*pending)


@asynccontextmanager
async def _producer(settings: KafkaSettings) -> AsyncIterator[Any]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(
        client_id="riskmon-producer",
        max_batch_size=MAX_BATCH_BYTES,
        max_request_size=2 * MAX_BATCH_BYTES,
        acks=1,
        enable_idempotence=False,  # Tansu has no InitProducerId (docs/architecture.md)
        **settings.aiokafka_kwargs(),
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise InputError(f"cannot reach Kafka at {settings.describe()}: {exc}") from None
    try:
        yield producer
    finally:
        await producer.stop()


async def _topic_partitions(producer: Any) -> dict[str, int]:
    # A metadata request for *all* topics never auto-creates one (a named request may).
    cluster = await producer.client.fetch_all_metadata()
    return {t: len(cluster.partitions_for_topic(t) or ()) for t in cluster.topics()}


async def aproduce_records(
    settings: KafkaSettings,
    records: Iterable[Record],
    *,
    pace: Pacer | None = None,
) -> dict[str, int]:
    """Send ``(topic, key, value)`` records in bulk; returns messages sent per topic.

    Every topic must already exist (checked against cluster metadata, so Tansu cannot create
    it silently with a default partition count). Delivery is at-least-once, acks=1.
    """
    counts: dict[str, int] = {}
    async with _producer(settings) as producer:
        sender = _BatchSender(producer, await _topic_partitions(producer))
        for n, rec in enumerate(records):
            if pace is not None:
                delay = pace(rec)
                if delay > 0:
                    await sender.flush()
                    await asyncio.sleep(delay)
            topic, key, value = rec
            await sender.add(topic, key, value)
            counts[topic] = counts.get(topic, 0) + 1
            if n % FLUSH_EVERY == FLUSH_EVERY - 1:
                # bounded linger: a quiet topic's partly filled batch must not sit here while
                # busier topics' later records reach the broker (the worker merges by timestamp)
                await sender.flush()
        await sender.flush()
    return counts


def produce_records(
    settings: KafkaSettings,
    records: Iterable[Record],
    *,
    pace: Pacer | None = None,
) -> dict[str, int]:
    """Synchronous :func:`aproduce_records` (runs its own event loop)."""
    return asyncio.run(aproduce_records(settings, records, pace=pace))


def resolve_unroutable(names: TopicNames, topic: str) -> str:
    """``--unroutable-topic``: an input role (``transactions``) or one of the input topic names."""
    if topic in names.inputs:
        return topic
    if f"{names.prefix}.{topic}" in names.inputs:
        return names.by_role(topic)
    raise InputError(
        f"unroutable topic must be one of loans, repayments, transactions "
        f"(or {', '.join(names.inputs)}), got {topic!r}"
    )


def file_records(
    path: Path, names: TopicNames, unroutable_topic: str, summary: ProduceSummary
) -> Iterator[Record]:
    """Route each non-blank line of a JSON-lines file (``-``: standard input); counts
    unroutable lines in ``summary``."""
    with _open_lines(path) as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            role, key = route_line(line)
            if role is None:
                summary.unroutable += 1
                yield unroutable_topic, key, line
            else:
                yield names.by_role(role), key, line


@contextmanager
def _open_lines(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, or standard input's for ``-``."""
    if str(path) == "-":
        yield sys.stdin.buffer
        return
    with path.open("rb") as fh:
        yield fh


def produce_file(
    settings: KafkaSettings,
    path: Path,
    names: TopicNames | None = None,
    unroutable_topic: str = "transactions",
) -> ProduceSummary:
    """Send a JSON-lines event file to the input topics, keyed by raw customer id bytes."""
    names = names or TopicNames()
    target = resolve_unroutable(names, unroutable_topic)
    if str(path) != "-" and not path.is_file():
        raise InputError(f"no such file: {path}")
    check_topics(settings, names.inputs)  # exist, one partition count: never auto-created
    summary = ProduceSummary()
    t0 = time.perf_counter()
    counts = produce_records(settings, file_records(path, names, target, summary))
    summary.seconds = time.perf_counter() - t0
    summary.counts = {t: counts.get(t, 0) for t in names.inputs}
    return summary
