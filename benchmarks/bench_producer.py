"""Bulk producing to Tansu: kafka-python vs aiokafka, and what riskmon ships.

One embedded broker, one fresh topic (same partition count) per method, the same pre-encoded
keyed JSON events for each:

- ``kafka-python send``: ``KafkaProducer.send`` per message (crc32c C extension if installed),
  large ``batch_size`` and a small ``linger_ms``, then ``flush``;
- ``aiokafka send``: ``AIOKafkaProducer.send`` per message, futures gathered;
- ``aiokafka send_batch``: record batches built per partition and shipped with ``send_batch``;
- ``riskmon produce_records``: streams/kafka/produce.py (send_batch plus partitioning per key).

Usage: ``python benchmarks/bench_producer.py --events 200000 --json OUT``. Prints a table and
writes ``{"results": [{"name", "msgs_per_s", "seconds"}], ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.kafka.broker import EmbeddedBroker
from streams.kafka.connection import KafkaSettings
from streams.kafka.produce import MAX_BATCH_BYTES, produce_records
from streams.kafka.topics import create_topics


def make_events(n: int, customers: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs shaped like riskmon transaction events (about 200 bytes each)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cid = f"C{rng.randrange(customers):07d}"
        value = json.dumps(
            {
                "schema_version": 1,
                "event_id": f"e{i:09d}",
                "customer_id": cid,
                "event_time": f"2024-03-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
                "source": "bench",
                "kind": "credit" if i % 3 else "debit",
                "account_id": f"A{cid[1:]}",
                "amount": round(rng.uniform(10, 50000), 2),
                "balance_after": round(rng.uniform(-5000, 200000), 2),
            },
            separators=(",", ":"),
        ).encode()
        out.append((cid.encode(), value))
    return out


def bench_kafka_python(
    settings: KafkaSettings, topic: str, events: list[tuple[bytes, bytes]]
) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        batch_size=MAX_BATCH_BYTES,
        linger_ms=5,
        max_request_size=2 * MAX_BATCH_BYTES,
        acks=1,
        **settings.kafka_python_kwargs(),
    )
    try:
        for key, value in events:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


async def _aiokafka_send(
    settings: KafkaSettings, topic: str, events: list[tuple[bytes, bytes]]
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        max_batch_size=MAX_BATCH_BYTES, linger_ms=5, acks=1, **settings.aiokafka_kwargs()
    )
    await producer.start()
    try:
        futs = [await producer.send(topic, value=v, key=k) for k, v in events]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def _aiokafka_send_batch(
    settings: KafkaSettings, topic: str, events: list[tuple[bytes, bytes]], partitions: int
) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import murmur2

    producer = AIOKafkaProducer(
        max_batch_size=MAX_BATCH_BYTES, acks=1, **settings.aiokafka_kwargs()
    )
    await producer.start()
    try:
        cache: dict[bytes, int] = {}
        batches = [producer.create_batch() for _ in range(partitions)]
        futs = []
        for k, v in events:
            p = cache.get(k)
            if p is None:
                p = cache[k] = (murmur2(k) & 0x7FFFFFFF) % partitions
            if batches[p].append(key=k, value=v, timestamp=None) is None:
                batches[p].close()
                futs.append(await producer.send_batch(batches[p], topic, partition=p))
                batches[p] = producer.create_batch()
                batches[p].append(key=k, value=v, timestamp=None)
        for p, b in enumerate(batches):
            if b.record_count():
                b.close()
                futs.append(await producer.send_batch(b, topic, partition=p))
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def _riskmon(settings: KafkaSettings, topic: str, events: list[tuple[bytes, bytes]]) -> None:
    produce_records(settings, ((topic, k, v) for k, v in events))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from kafka.record.util import crc32c_c

    events = make_events(args.events, args.customers)
    mb = sum(len(k) + len(v) for k, v in events) / 1e6
    results: list[dict[str, Any]] = []
    with EmbeddedBroker() as broker:
        settings = KafkaSettings.from_env(broker.url, environ={})
        methods: list[tuple[str, Callable[[str], None]]] = [
            (
                "kafka-python send" + (" (crc32c)" if crc32c_c else " (no crc32c)"),
                lambda t: bench_kafka_python(settings, t, events),
            ),
            ("aiokafka send", lambda t: asyncio.run(_aiokafka_send(settings, t, events))),
            (
                "aiokafka send_batch",
                lambda t: asyncio.run(_aiokafka_send_batch(settings, t, events, args.partitions)),
            ),
            (
                "riskmon produce_records",
                lambda t: _riskmon(settings, t, events),
            ),
        ]
        for i, (name, run) in enumerate(methods):
            topic = f"bench.producer.{i}"
            create_topics(settings, [topic], args.partitions)
            t0 = time.perf_counter()
            run(topic)
            secs = time.perf_counter() - t0
            results.append(
                {"name": name, "msgs_per_s": round(args.events / secs), "seconds": round(secs, 3)}
            )

    print(
        f"{args.events} events ({mb:.1f} MB), {args.customers} keys, "
        f"{args.partitions} partitions, Tansu"
    )
    print(f"{'method':34s} {'msgs/s':>10s} {'seconds':>8s}")
    for r in results:
        print(f"{r['name']:34s} {r['msgs_per_s']:>10,d} {r['seconds']:>8.2f}")
    out = {
        "events": args.events,
        "customers": args.customers,
        "partitions": args.partitions,
        "results": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
