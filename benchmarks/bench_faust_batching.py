"""Per-customer count+sum over one pre-produced topic: raw aiokafka vs naive Faust vs batched Faust.

One Tansu broker, one topic set, one run:
  1. raw aiokafka ``getmany`` + decode + dict update (the ceiling),
  2. a naive per-event Faust agent updating a Table (``table[key] = ...`` per event),
  3. riskmon's batch seam (``streams.kafka``): one message per fetched partition batch, each
     touched key written once per batch to the store and, in bulk record batches, to its
     changelog partition.
The Faust variants run as real ``faust worker`` processes (this file, with ``BENCH_MODE`` set);
their rate is measured from the first processed event to the target count, so worker start-up
and group join are excluded. The naive agent is timed on its first ``--naive-events`` events only
(it runs at a few thousand events/s). The batched run's changelog is read back to its true end
and checked against the expected sums.

    python benchmarks/bench_faust_batching.py --events 300000 \\
        --json benchmarks/results/faust_batching.json
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

STATE = struct.Struct("<qq")  # count, sum
PARTITIONS = 4
CUSTOMERS = 20_000
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- worker side
class Progress:
    """Counts processed events; writes {events, seconds} to ``path`` once ``target`` is reached."""

    def __init__(self, target: int, path: Path, profile: str | None = None) -> None:
        self.target, self.path = target, path
        self.count, self.t0, self.done = 0, 0.0, False
        self.profiler = cProfile.Profile() if profile else None
        self.profile_path = profile

    def start(self) -> None:
        if not self.t0:
            self.t0 = time.perf_counter()
            if self.profiler:
                self.profiler.enable()

    def add(self, n: int) -> None:
        self.count += n
        if not self.done and self.count >= self.target:
            self.done = True
            seconds = time.perf_counter() - self.t0
            if self.profiler:
                self.profiler.disable()
                self.profiler.dump_stats(str(self.profile_path))
            self.path.write_text(json.dumps({"events": self.count, "seconds": seconds}))


def worker_main() -> None:
    """Run one Faust worker in mode ``$BENCH_MODE`` (naive | batched)."""
    import faust

    from streams.kafka.agent import batched_agent
    from streams.kafka.consumer import APP_SETTINGS
    from streams.kafka.tables import RecordBatch, batch_table

    mode = os.environ["BENCH_MODE"]
    progress = Progress(
        int(os.environ["BENCH_TARGET"]),
        Path(os.environ["BENCH_RESULT"]),
        os.environ.get("BENCH_PROFILE"),  # cProfile stats of the timed span (where time goes)
    )
    app = faust.App(
        f"bench-{mode}",
        broker=f"kafka://{os.environ['BENCH_BROKER']}",
        datadir=os.environ["BENCH_DATADIR"],
        store="memory://",
        broker_session_timeout=6.0,
        topic_partitions=PARTITIONS,
        table_standby_replicas=0,
        **(APP_SETTINGS if mode == "batched" else {}),
    )
    topic = app.topic(
        os.environ["BENCH_TOPIC"], key_type=bytes, value_type=bytes, value_serializer="raw"
    )
    table = batch_table(app, "totals", PARTITIONS)

    if mode == "naive":

        @app.agent(topic)
        async def naive(stream: Any) -> None:
            async for key, value in stream.items():
                progress.start()
                raw = table.get(key)
                count, total = STATE.unpack(raw) if raw else (0, 0)
                table[key] = STATE.pack(count + 1, total + int(value))
                progress.add(1)

    else:

        async def count_and_sum(batch: RecordBatch) -> None:
            progress.start()
            touched: dict[bytes, list[int]] = {}
            read = batch.reader(table)
            for _offset, key, value, _ts, _hs in batch.records:
                state = touched.get(key)  # type: ignore[arg-type]
                if state is None:
                    raw = read(key)  # type: ignore[arg-type]
                    state = touched[key] = list(STATE.unpack(raw)) if raw else [0, 0]  # type: ignore[index]
                state[0] += 1
                state[1] += int(value)  # type: ignore[arg-type]
            await batch.write(table, {k: STATE.pack(*s) for k, s in touched.items()})
            progress.add(len(batch.records))

        batched_agent(app, topic, count_and_sum, name="bench_batched")

    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    sys.argv += ["--web-bind", "127.0.0.1", "--web-port", os.environ["BENCH_WEB_PORT"]]
    app.main()


# ----------------------------------------------------------------------------- driver side
def make_events(n: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    return [
        (f"c{rng.randrange(CUSTOMERS):06d}".encode(), str(rng.randrange(1, 1000)).encode())
        for _ in range(n)
    ]


async def produce(url: str, topic: str, events: list[tuple[bytes, bytes]]) -> float:
    """Send ``events`` with aiokafka ``send_batch``; return events/s."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=url, max_batch_size=1_048_576)
    await producer.start()
    t0 = time.perf_counter()
    try:
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in events:
            by_partition.setdefault(zlib.crc32(key) % PARTITIONS, []).append((key, value))
        futures = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(events) / (time.perf_counter() - t0)


async def raw_consume(url: str, topic: str, n: int) -> float:
    """aiokafka getmany + int decode + per-key dict update over all ``n`` events; events/s."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=url, enable_auto_commit=False, max_partition_fetch_bytes=4_194_304
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        totals: dict[bytes, list[int]] = {}
        seen, t0 = 0, 0.0
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not t0:
                t0 = time.perf_counter()
            for records in batches.values():
                for r in records:
                    state = totals.get(r.key)
                    if state is None:
                        state = totals[r.key] = [0, 0]
                    state[0] += 1
                    state[1] += int(r.value)
                seen += len(records)
        return seen / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


async def read_changelog(url: str, topic: str) -> dict[bytes, tuple[int, int]]:
    """Latest value per key, read until fetches come back empty (Tansu end offsets are wrong)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=url, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        latest: dict[bytes, tuple[int, int]] = {}
        empty = 0
        while empty < 3:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            empty = 0 if batches else empty + 1
            for records in batches.values():
                for r in records:
                    latest[r.key] = STATE.unpack(r.value)
        return latest
    finally:
        await consumer.stop()


def create_topics(url: str, names: list[str]) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=url)
    try:
        admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        admin.close()


def run_worker(mode: str, url: str, topic: str, target: int, tmp: Path, timeout: float) -> float:
    """Start a worker, wait for its result file, stop it by PID; return events/s."""
    from streams.kafka.broker import free_port

    result = tmp / f"{mode}.json"
    env = {
        **os.environ,
        "BENCH_MODE": mode,
        "BENCH_BROKER": url,
        "BENCH_TOPIC": topic,
        "BENCH_TARGET": str(target),
        "BENCH_RESULT": str(result),
        "BENCH_DATADIR": str(tmp / f"{mode}-data"),
        "BENCH_WEB_PORT": str(free_port()),
        "PYTHONPATH": str(REPO),
    }
    with open(tmp / f"{mode}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not result.exists():
            if proc.poll() is not None:
                tail = (tmp / f"{mode}.log").read_text()[-3000:]
                raise RuntimeError(f"{mode} worker exited {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode} worker did not reach {target} events in {timeout}s")
            time.sleep(0.2)
        time.sleep(0.3)  # let the result file be complete
        data = json.loads(result.read_text())
        return float(data["events"]) / float(data["seconds"])
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--naive-events", type=int, default=20_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from streams.kafka.broker import EmbeddedBroker

    events = make_events(args.events)
    expected: dict[bytes, tuple[int, int]] = {}
    for key, value in events:
        c, s = expected.get(key, (0, 0))
        expected[key] = (c + 1, s + int(value))
    topic = "bench.events"
    with tempfile.TemporaryDirectory() as tmpdir, EmbeddedBroker() as broker:
        tmp = Path(tmpdir)
        create_topics(
            broker.url, [topic, "bench-naive-totals-changelog", "bench-batched-totals-changelog"]
        )
        produce_rate = asyncio.run(produce(broker.url, topic, events))
        raw = asyncio.run(raw_consume(broker.url, topic, args.events))
        naive_n = min(args.naive_events, args.events)
        naive = run_worker("naive", broker.url, topic, naive_n, tmp, timeout=600)
        batched = run_worker("batched", broker.url, topic, args.events, tmp, timeout=600)
        changelog = asyncio.run(read_changelog(broker.url, "bench-batched-totals-changelog"))
    correct = changelog == expected
    rows = [
        ("raw aiokafka getmany+decode+dict", raw, args.events),
        ("faust per-event agent + table", naive, naive_n),
        ("faust batched agent + bulk changelog", batched, args.events),
    ]
    print(f"pre-produced {args.events} events ({produce_rate:,.0f} ev/s with send_batch)")
    print(f"{'variant':40} {'events':>8} {'events/s':>10} {'vs naive':>9}")
    for name, rate, n in rows:
        print(f"{name:40} {n:>8} {rate:>10,.0f} {rate / naive:>8.1f}x")
    print(f"batched / raw = {batched / raw:.2f}; batched changelog == expected sums: {correct}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {
            "events": args.events,
            "partitions": PARTITIONS,
            "customers": CUSTOMERS,
            "results": [{"name": n, "events_per_s": round(r), "events": k} for n, r, k in rows],
            "ratio_batched_vs_naive": round(batched / naive, 1),
            "ratio_batched_vs_raw": round(batched / raw, 2),
            "batched_changelog_correct": correct,
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if not correct:
        sys.exit("batched changelog does not match the expected sums")


if __name__ == "__main__":
    if "BENCH_MODE" in os.environ:
        worker_main()
    else:
        main()
