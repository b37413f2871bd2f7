"""Batch delivery below the Faust agent, on a real Tansu broker with real ``faust worker``s.

The demonstrator app (``batch_app.py``) keeps per-customer (count, sum, last offset) in a Table
written through riskmon's batch seam (``streams.kafka``); these tests check it counts exactly,
restores its table from the changelog after SIGKILL (key by key), and splits partitions between
two workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streams.kafka.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "tests" / "integration" / "batch_app.py"
PARTITIONS = 4
STATE_FIELDS = 3  # count, sum, last offset (batch_app.STATE)


def partition_of(key: bytes) -> int:
    """The input partition of a customer (any fixed function of the key bytes works)."""
    return zlib.crc32(key) % PARTITIONS


def make_events(n: int, customers: int, seed: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    return [
        (f"c{rng.randrange(customers):05d}".encode(), str(rng.randrange(1, 1000)).encode())
        for _ in range(n)
    ]


def expected_totals(events: list[tuple[bytes, bytes]]) -> dict[str, tuple[int, int]]:
    totals: dict[str, tuple[int, int]] = {}
    for key, value in events:
        count, total = totals.get(key.decode(), (0, 0))
        totals[key.decode()] = (count + 1, total + int(value))
    return totals


def create_topics(url: str, names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=url)
    try:
        admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        admin.close()


def produce(url: str, topic: str, events: list[tuple[bytes, bytes]]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=url, linger_ms=5)
        await producer.start()
        try:
            futures = [
                await producer.send(topic, value, key=key, partition=partition_of(key))
                for key, value in events
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(run())


def read_to_true_end(url: str, topic: str) -> dict[str, bytes]:
    """Latest value per key of ``topic``, reading until the broker has nothing more.

    Tansu's end offsets are wrong (docs/architecture.md), so the end is where fetches come back
    empty.
    """

    async def run() -> dict[str, bytes]:
        consumer = AIOKafkaConsumer(bootstrap_servers=url, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            latest: dict[str, bytes] = {}
            empty = 0
            while empty < 3:
                batches = await consumer.getmany(timeout_ms=500)
                empty = 0 if batches else empty + 1
                for records in batches.values():
                    for r in records:
                        latest[r.key.decode()] = r.value
            return latest
        finally:
            await consumer.stop()

    return asyncio.run(run())


def committed_offsets(url: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (-1 or None: none yet)."""

    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=url, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            return {
                p: (await consumer.committed(TopicPartition(topic, p))) or -1
                for p in range(PARTITIONS)
            }
        finally:
            await consumer.stop()

    return asyncio.run(run())


def unpack_state(raw: bytes) -> list[int]:
    import struct

    return list(struct.unpack("<" + "q" * STATE_FIELDS, raw))


def wait_until(what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Worker:
    """One ``faust worker`` process of batch_app.py, stopped by PID."""

    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        self.port = free_port()
        cmd = [sys.executable, str(APP), "worker", "-l", "info"]
        cmd += ["--web-bind", "127.0.0.1", "--web-port", str(self.port)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def state(self) -> dict[str, Any] | None:
        """``GET /state/``, or None while the web server is not up."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker died (rc {self.proc.returncode}), see {self.log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/state/", timeout=5) as r:
                return dict(json.loads(r.read()))
        except OSError:
            return None

    def kill(self) -> None:
        """SIGKILL, no clean shutdown: nothing is flushed or committed."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture
def app_env(broker: EmbeddedBroker, tmp_path: Path) -> dict[str, str]:
    """A fresh app id + input topic, both topics created with PARTITIONS partitions."""
    app_id = f"batch{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}.events"
    create_topics(broker.url, [topic, f"{app_id}-totals-changelog"])
    return {
        **os.environ,
        "BATCH_BROKER": broker.url,
        "BATCH_APP_ID": app_id,
        "BATCH_TOPIC": topic,
        "BATCH_PARTITIONS": str(PARTITIONS),
        "BATCH_DATADIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
    }


@pytest.fixture
def workers(app_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], Worker]]:
    """Factory of started workers; every one is stopped by PID at teardown."""
    started: list[Worker] = []

    def start() -> Worker:
        w = Worker(app_env, tmp_path / f"worker{len(started)}.log").start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
    for w in started:
        assert w.proc is not None and w.proc.poll() is not None, f"worker {w.proc} alive"


def totals_of(states: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    merged: dict[str, tuple[int, int]] = {}
    for st in states:
        for key, (count, total, _offset) in st["keys"].items():
            assert key not in merged, f"{key} reported by two workers"
            merged[key] = (count, total)
    return merged


def wait_for_count(ws: list[Worker], n: int, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Wait until the workers' tables together hold ``n`` events; return their states."""
    states: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal states
        got = [w.state() for w in ws]
        if any(s is None or s["rebalancing"] for s in got):
            return False
        states = [s for s in got if s is not None]
        return sum(c for s in states for c, _, _ in s["keys"].values()) >= n

    wait_until(f"{n} events counted", done, timeout)
    return states


def test_counts_every_event_exactly(
    broker: EmbeddedBroker, app_env: dict[str, str], workers: Callable[[], Worker]
) -> None:
    """Per-customer counts and sums equal the input, and the changelog holds the same state."""
    events = make_events(30_000, 700, seed=1)
    produce(broker.url, app_env["BATCH_TOPIC"], events)
    worker = workers()
    states = wait_for_count([worker], len(events))
    expected = expected_totals(events)
    assert expected == totals_of(states)
    changelog = read_to_true_end(broker.url, f"{app_env['BATCH_APP_ID']}-totals-changelog")
    assert expected == {k: tuple(unpack_state(v)[:2]) for k, v in changelog.items()}


def test_sigkill_then_restart_restores_table_from_changelog(
    broker: EmbeddedBroker, app_env: dict[str, str], workers: Callable[[], Worker]
) -> None:
    """After SIGKILL the restarted worker's table equals the changelog key by key, and the
    final sums are exact (replayed records are recognised by their offset)."""
    url, topic, app_id = broker.url, app_env["BATCH_TOPIC"], app_env["BATCH_APP_ID"]
    first, second = make_events(60_000, 2_000, seed=2), make_events(20_000, 2_000, seed=3)
    produce(url, topic, first)
    worker = workers()
    wait_until(
        "a commit on every partition",
        lambda: (
            len([o for o in committed_offsets(url, app_id, topic).values() if o > 0]) == PARTITIONS
        ),
    )
    worker.kill()

    changelog = {
        k: unpack_state(v) for k, v in read_to_true_end(url, f"{app_id}-totals-changelog").items()
    }
    assert changelog, "nothing reached the changelog before the kill"
    restarted = workers()

    def restored() -> bool:
        st = restarted.state()
        return bool(
            st
            and not st["rebalancing"]
            and not st["recovering"]
            and len(st["partitions"]) == PARTITIONS
        )

    wait_until("recovery of all partitions", restored)
    st = restarted.state()
    assert st is not None
    restored_state = st["keys"]
    # The restarted worker may already have processed more input; keys it has not touched yet
    # must equal the changelog exactly, touched keys may only have moved forward.
    missing = [k for k in changelog if k not in restored_state]
    assert not missing, f"{len(missing)} keys not restored, e.g. {missing[:5]}"
    for key, (count, total, offset) in changelog.items():
        now = restored_state[key]
        assert now[2] >= offset, f"{key}: restored offset {now[2]} < changelog {offset}"
        if now[2] == offset:
            assert [count, total, offset] == now, key

    produce(url, topic, second)
    states = wait_for_count([restarted], len(first) + len(second))
    assert expected_totals(first + second) == totals_of(states)


def test_two_workers_split_partitions_and_own_each_key_once(
    broker: EmbeddedBroker, app_env: dict[str, str], workers: Callable[[], Worker]
) -> None:
    """Two workers in one group: disjoint partitions covering all, each key on its owner."""
    events = make_events(30_000, 800, seed=4)
    a = workers()
    b = workers()

    def split() -> bool:
        sa, sb = a.state(), b.state()
        return bool(
            sa and sb and sa["partitions"] and sb["partitions"] and not sa["rebalancing"]
        ) and not (sb is None or sb["rebalancing"])

    wait_until("both workers to own partitions", split)
    produce(broker.url, app_env["BATCH_TOPIC"], events)
    states = wait_for_count([a, b], len(events))
    pa, pb = set(states[0]["partitions"]), set(states[1]["partitions"])
    assert not pa & pb
    assert set(range(PARTITIONS)) == pa | pb
    for st in states:
        owned = set(st["partitions"])
        wrong = [k for k in st["keys"] if partition_of(k.encode()) not in owned]
        assert not wrong, f"keys outside the worker's partitions: {wrong[:5]}"
    assert expected_totals(events) == totals_of(states)
