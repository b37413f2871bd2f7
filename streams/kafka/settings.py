"""The worker's settings: one frozen object, resolved once from flags and environment."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from scoring.errors import InputError

STORES = ("memory://", "rocksdb://")


def default_scorecard_path() -> Path:
    """The behaviour scorecard shipped inside the package (trained on simulator history)."""
    return Path(str(resources.files("scoring") / "data" / "default_scorecard.json"))


#: Cyclic-GC thresholds for processes that run the pipeline (CPython's default: 700, 10, 10).
#: The hot path allocates dozens of container objects per event and forms no cycles, so at 700
#: the collector ran every ~20 events and took 12 % of the pipeline; at 50,000 it is as fast as
#: with the collector off in the pure pipeline (``scripts/pipeline_fingerprint.py``-style run:
#: 25.8 k -> 31.0 k events/s). In the worker, 50,000 was still reached mid-batch, while a batch's
#: records, plans and rows were alive: 10 collections of ~39 ms in a 200k-event run (~4 % of it,
#: timed with ``gc.callbacks``); at 200,000 one collection of 70 ms. Garbage cycles are still
#: collected, just in larger batches.
GC_THRESHOLDS = (200_000, 10, 10)


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLDS` and move everything allocated so far (modules, compiled
    kernels, the app) out of the collector's sight: call once, after start-up."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.collect()
    gc.freeze()


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a riskmon worker needs; see ``riskmon worker --help`` for the env names."""

    broker: str = "127.0.0.1:9092"
    topic_prefix: str = "riskmon"
    partitions: int = 4
    scorecard: Path = field(default_factory=default_scorecard_path)
    store: str = "memory://"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: Path = Path("./riskmon-data")
    app_id: str = "riskmon"
    lateness_days: float = 7.0
    session_timeout_s: float = 6.0
    # decoded entries kept between batches (~5 KB each). Off by default: the table store holds
    # ~0.9 KB per customer, and the cache measured no faster in the worker (bench_stream)
    cache_customers: int = 0
    drift_window_days: float = 7.0  # rolling event-time window of the live PSI/CSI
    rescorings_dir: Path | None = None  # append every rescoring here (streams/core/rescorings.py)

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise InputError(f"partitions must be >= 1, got {self.partitions}")
        if not self.store.startswith(STORES):
            raise InputError(f"store must start with one of {', '.join(STORES)}: {self.store!r}")
        if not 0 < self.web_port < 65536:
            raise InputError(f"web port out of range: {self.web_port}")
        if self.lateness_days < 0:
            raise InputError("lateness must be >= 0 days")
        if self.cache_customers < 0:
            raise InputError(f"cache_customers must be >= 0, got {self.cache_customers}")
        if not self.drift_window_days > 0:
            raise InputError("the drift window must be > 0 days")


def env(name: str, default: str | None = None) -> str | None:
    """``RISKMON_<NAME>`` from the environment."""
    return os.environ.get(f"RISKMON_{name}", default)
