"""Fixtures the worker integration tests share: a two-partition deployment on the embedded
broker with the expert scorecard, one started worker on it, and a factory of workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


@pytest.fixture
def workers() -> Iterator[Callable[..., WorkerProcess]]:
    """Factory of started workers; each is stopped by PID (SIGTERM, then SIGKILL) at teardown."""
    started: list[WorkerProcess] = []

    def start(
        dep: Deployment,
        name: str | None = None,
        store: str = "memory://",
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        w = WorkerProcess(dep, name or f"w{len(started)}", store=store, extra_env=env or {})
        w.start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
    for w in started:
        assert not w.alive(), f"worker {w.name} pid {w.pid} still alive"
