"""Topic alignment on a real Tansu broker with a real ``faust worker``: the three input topics of
a partition are handed over in exactly the order riskmon's producer sent them, whatever the
fetch timing. This is what makes a streamed run equal to the backtest of the same file."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.connection import KafkaSettings
from streams.kafka.produce import Record, murmur2_partition, produce_records
from streams.kafka.topics import create_topics

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "tests" / "integration" / "order_app.py"
PARTITIONS = 2
ROLES = ("loans", "repayments", "transactions")


@pytest.fixture
def order_worker(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(topic prefix, web port) of a started order_app worker, stopped by PID at teardown."""
    prefix = f"order{uuid.uuid4().hex[:8]}"
    topics = [f"{prefix}.{r}" for r in ROLES]
    create_topics(KafkaSettings(bootstrap=(broker.url,)), topics, PARTITIONS)
    port = free_port()
    env = {
        **os.environ,
        "ORDER_BROKER": broker.url,
        "ORDER_PREFIX": prefix,
        "ORDER_PARTITIONS": str(PARTITIONS),
        "ORDER_DATADIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
    }
    cmd = [sys.executable, str(APP), "worker", "-l", "info", "--web-bind", "127.0.0.1"]
    with open(tmp_path / "worker.log", "ab") as log:
        proc = subprocess.Popen(
            [*cmd, "--web-port", str(port)], cwd=REPO, env=env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        yield prefix, port
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        assert proc.poll() is not None


def _order(port: int) -> dict[str, list[str]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/order/", timeout=5) as r:
            return dict(json.loads(r.read()))
    except OSError:
        return None


def test_three_topics_are_merged_in_send_order(
    broker: EmbeddedBroker, order_worker: tuple[str, int]
) -> None:
    """Thousands of records spread at random over the three topics, shipped in hundreds of small
    flushes (each flush sends one record batch per topic-partition, so fetches often see one
    topic's batch before its sibling's): every partition's records arrive in send order."""
    prefix, port = order_worker
    rng = random.Random(11)
    n = 4000
    records: list[Record] = [
        (f"{prefix}.{rng.choice(ROLES)}", f"c{rng.randrange(40)}".encode(), str(i).encode())
        for i in range(n)
    ]
    expected: dict[str, list[str]] = {}
    for _topic, key, value in records:
        expected.setdefault(str(murmur2_partition(key, PARTITIONS)), []).append(value.decode())
    deadline = time.monotonic() + 60
    while _order(port) is None:  # web server up (the agent may still be joining the group)
        assert time.monotonic() < deadline, "order_app did not start"
        time.sleep(0.3)
    time.sleep(3)  # let the worker join the group before the first records arrive

    sent = [0]

    def pace(_rec: Record) -> float:
        sent[0] += 1
        return 0.003 if sent[0] % 7 == 0 else 0.0  # a flush every 7 records

    produce_records(KafkaSettings(bootstrap=(broker.url,)), records, pace=pace)
    got: dict[str, list[str]] = {}
    deadline = time.monotonic() + 90
    while sum(map(len, got.values())) < n:
        assert time.monotonic() < deadline, f"only {sum(map(len, got.values()))} of {n} arrived"
        time.sleep(0.5)
        got = _order(port) or {}
    for p, values in expected.items():
        firsts = [i for i, (a, b) in enumerate(zip(got[p], values, strict=True)) if a != b]
        assert not firsts, f"partition {p}: first out-of-order record at position {firsts[0]}"
