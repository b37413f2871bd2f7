"""Every numba kernel of ``streams.core`` really compiles in nopython mode (no silent fallback).

The kernels are found by walking the package (a new kernel is checked without being listed), a
small simulated book runs through the pipeline, the drift monitor and a save/load round trip, and
every dispatcher must then have a nopython, non-lifted, nogil, non-fastmath overload.
"""

from __future__ import annotations

import importlib
import pkgutil

import numba
import pytest
from numba.core.registry import CPUDispatcher

import streams.core
from scoring.artifact import default_scorecard_path, load
from streams.core.drift import DriftMonitor
from streams.core.pipeline import Pipeline
from streams.core.records import InRecord
from streams.evaluation.backtest import CHUNK
from streams.sim.simulate import SimConfig, Simulation


def _kernels() -> dict[str, CPUDispatcher]:
    found: dict[str, CPUDispatcher] = {}
    for info in pkgutil.iter_modules(streams.core.__path__):
        module = importlib.import_module(f"streams.core.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = obj
    return found


@pytest.fixture(scope="module")
def exercised() -> dict[str, CPUDispatcher]:
    """Run a noisy simulated book through the worker's path (state kernel, intake kernel,
    policy kernel, drift) and the Python path, so that every kernel is called."""
    card = load(default_scorecard_path())
    sim = Simulation(SimConfig(customers=60, months=4, seed=3, malformed_rate=0.01))
    records = [
        InRecord(r.topic, 0, i, r.key, r.value, 1.0e9 + i) for i, r in enumerate(sim.records())
    ]
    drift = DriftMonitor(card, window_s=7 * 86400.0)
    for kernel_path in (True, False):
        table: dict[str, bytes] = {}
        pipe = Pipeline(card, load=table.get, drift=drift, state_kernel=kernel_path)
        for i in range(0, len(records), CHUNK):
            pipe.entries.clear()
            table.update(pipe.process(records[i : i + CHUNK]).dirty)
    return _kernels()


def test_the_walk_finds_the_kernels() -> None:
    kernels = _kernels()
    assert len(kernels) >= 60  # five kernel modules, the codec and the slot helpers
    assert "streams.core._state_kernel.apply_many" in kernels


def _callees(kernel: CPUDispatcher) -> set[CPUDispatcher]:
    """The kernels ``kernel``'s code calls (names it reads that are dispatchers in its globals)."""
    g = kernel.py_func.__globals__
    return {g[n] for n in kernel.py_func.__code__.co_names if isinstance(g.get(n), CPUDispatcher)}


def test_every_kernel_compiles_in_nopython_mode(exercised: dict[str, CPUDispatcher]) -> None:
    """Every kernel is declared nopython (``njit``: no object-mode fallback), nogil and without
    fastmath; the ones Python calls compiled without object mode or lifted loops; and every
    other kernel is called from compiled ones (numba compiles a callee inside its caller, so it
    is nopython too; a kernel reached from nowhere would go unchecked)."""
    assert not numba.config.DISABLE_JIT
    for name, kernel in exercised.items():
        assert kernel.targetoptions.get("nopython") is True, f"{name} may fall back to objects"
        assert kernel.targetoptions.get("nogil") is True, f"{name} holds the GIL"
        assert not kernel.targetoptions.get("fastmath", False), f"{name} uses fastmath"
    entry = {name for name, k in exercised.items() if k.signatures}
    assert "streams.core._state_kernel.apply_many" in entry
    for name in entry:
        kernel = exercised[name]
        assert kernel.nopython_signatures, f"{name} has no nopython signature"
        for cres in kernel.overloads.values():
            assert not cres.objectmode, f"{name} fell back to object mode"
            assert not cres.lifted, f"{name} lifted loops to object mode"
    reached = {exercised[n] for n in entry}
    todo = list(reached)
    while todo:
        for callee in _callees(todo.pop()):
            if callee not in reached:
                reached.add(callee)
                todo.append(callee)
    unreached = sorted(n for n, k in exercised.items() if k not in reached)
    assert not unreached, f"kernels neither called from Python nor from a kernel: {unreached}"
