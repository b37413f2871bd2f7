"""Committed offsets follow processing (issue 23), on a real Tansu broker with real workers.

A simulated book waits in the input topics (a backlog: many batch messages per partition and
commit). A worker is SIGKILLed mid-stream, its successor gets SIGTERM mid-stream, a third one
finishes: every worker ends within a bounded time, and soon after the last record is processed
the group's committed offset of every input partition is that partition's end offset. Before the
fix a partition moved on by one batch message per commit (2.8 s), after a restart sometimes by
one offset per commit, and a worker stopped mid-stream waited forever for the batch messages the
aligner held ("wait_empty: Waiting for tasks").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.kafka.broker import EmbeddedBroker
from streams.kafka.produce import produce_file
from streams.sim.simulate import SimConfig, simulate_to_files
from tests.integration.workerproc import Deployment, WorkerProcess, read_topic, wait_until

pytestmark = pytest.mark.slow

#: seconds from the last record processed to every committed offset at the end: Faust commits
#: every 2.8 s (broker_commit_interval); the rest is polling
COMMIT_WITHIN_S = 8.0
#: seconds a worker may take to exit after SIGTERM
STOP_WITHIN_S = 20.0

Offsets = dict[tuple[str, int], int]


@pytest.fixture
def dep(broker: EmbeddedBroker, tmp_path: Path) -> Deployment:
    from scoring.artifact import default_scorecard_path

    return Deployment(broker, default_scorecard_path(), tmp_path, partitions=2)


def end_offsets(dep: Deployment) -> Offsets:
    """Last offset + 1 of every input partition, read to the end (Tansu's ListOffsets is not)."""
    ends = {(t, p): 0 for t in dep.names.inputs for p in range(dep.partitions)}
    for t in dep.names.inputs:
        for r in read_topic(dep.settings, t):
            ends[(t, r.partition)] = max(ends[(t, r.partition)], r.offset + 1)
    return ends


def committed(dep: Deployment) -> Offsets:
    consumer = KafkaConsumer(
        group_id=dep.app_id, enable_auto_commit=False, **dep.settings.kafka_python_kwargs()
    )
    try:
        return {
            (t, p): consumer.committed(TopicPartition(t, p)) or 0
            for t in dep.names.inputs
            for p in range(dep.partitions)
        }
    finally:
        consumer.close()


def events_seen(w: WorkerProcess) -> float:
    """Input records the worker has dealt with, redeliveries included (every outcome)."""
    return w.metric_sum("riskmon_events_total") + w.metric_sum("riskmon_parked_events")


def wait_processed(w: WorkerProcess, quiet_s: float = 3.0, timeout: float = 180.0) -> float:
    """Until the worker's counters stop moving for ``quiet_s``; the monotonic time of their
    last move (the last record processed)."""
    last, moved = -1.0, time.monotonic()
    deadline = moved + timeout
    while time.monotonic() < deadline:
        seen = events_seen(w)
        if seen != last:
            last, moved = seen, time.monotonic()
        elif time.monotonic() - moved >= quiet_s:
            return moved
        time.sleep(0.2)
    raise AssertionError(f"worker {w.name} still processing after {timeout}s")


def stop_within(w: WorkerProcess, limit: float = STOP_WITHIN_S) -> float:
    """SIGTERM; seconds until the worker exited (fails after ``limit``, then SIGKILLs it)."""
    t = time.monotonic()
    w.stop(timeout=limit)
    took = time.monotonic() - t
    assert took < limit, f"worker {w.name} did not end within {limit}s of SIGTERM:\n{w.log_tail()}"
    return took


def test_committed_offsets_reach_the_end_soon_after_a_kill_a_stop_and_a_restart(
    dep: Deployment, workers: Callable[[Deployment, str], WorkerProcess], tmp_path: Path
) -> None:
    book = tmp_path / "book.jsonl"
    simulate_to_files(SimConfig(customers=1500, months=12, seed=3), book, tmp_path / "t.csv")
    produce_file(dep.settings, book, dep.names)
    ends = end_offsets(dep)
    total = sum(ends.values())

    first = workers(dep, "first").wait_ready()
    wait_until("a third handled", lambda: events_seen(first) >= total / 3, timeout=120)
    first.kill()  # mid-stream: nothing flushed, nothing committed on the way out

    second = workers(dep, "second").wait_ready()
    wait_until("the second worker processing", lambda: events_seen(second) > 0, timeout=60)
    stop_within(second)  # mid-stream (or just after): the aligner may hold batch messages

    third = workers(dep, "third").wait_ready()
    last = wait_processed(third)
    try:
        wait_until(
            "committed offsets at the end offsets",
            lambda: committed(dep) == ends,
            timeout=COMMIT_WITHIN_S + 30,
        )
    except AssertionError:
        behind = {k: ends[k] - v for k, v in committed(dep).items() if v != ends[k]}
        raise AssertionError(f"committed offsets behind the end: {behind}") from None
    took = time.monotonic() - last
    assert took < COMMIT_WITHIN_S + 3.0, f"committed {took:.1f}s after the last record"  # quiet_s
    stop_within(third)
    assert committed(dep) == ends  # and nothing moved back on the way out
