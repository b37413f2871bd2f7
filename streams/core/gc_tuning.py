"""Garbage-collector settings for processes that run the pipeline (worker, backtest, benchmarks)."""

from __future__ import annotations

import gc

#: Cyclic-GC thresholds (CPython's default: 700, 10, 10). The hot path allocates many container
#: objects per event and forms no cycles, so the default threshold runs the collector every few
#: dozen events, in the middle of a batch whose records and rows are all alive; a large first
#: threshold collects the same garbage cycles in fewer, larger passes.
GC_THRESHOLDS = (200_000, 10, 10)


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLDS` and move everything allocated so far (modules, compiled
    kernels, the app) out of the collector's sight: call once, after start-up."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.collect()
    gc.freeze()
