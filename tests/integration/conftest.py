"""Fixtures the worker integration tests share: a two-partition deployment on the embedded
broker with the expert scorecard, and one started worker on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.kafka.broker import EmbeddedBroker
from tests.integration.workerproc import Deployment, WorkerProcess


@pytest.fixture
def dep(broker: EmbeddedBroker, expert_card_path: Path, tmp_path: Path) -> Deployment:
    return Deployment(broker, expert_card_path, tmp_path, partitions=2)


@pytest.fixture
def worker(dep: Deployment) -> Iterator[WorkerProcess]:
    """One started worker, stopped by PID (SIGTERM, then SIGKILL) at teardown."""
    w = WorkerProcess(dep, "w0")
    w.start()
    try:
        yield w
    finally:
        w.stop()
        assert not w.alive(), f"worker pid {w.pid} still alive"
