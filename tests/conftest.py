"""Shared fixtures. Every process a fixture starts, it stops by PID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A fresh Tansu broker for the test session (memory-only), killed by PID at the end."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = EmbeddedBroker(log_path=log).start()
    try:
        yield b
    finally:
        b.stop()
        assert b.proc is not None and b.proc.poll() is not None, f"broker pid {b.pid} still alive"
