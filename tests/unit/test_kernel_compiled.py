"""The kernel is really compiled (no silent fallback), and CompiledScorecard checks its input."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numba
import numpy as np
import pytest
from numba.core.registry import CPUDispatcher
from numba.core.runtime import _nrt_python, rtsys

from scoring import _kernel
from scoring.compiled import CompiledScorecard
from scoring.errors import InputError
from scoring.synthetic import random_features, random_scorecard

KERNELS = [_kernel.score_batch, _kernel.score_row, _kernel.bin_batch]


@pytest.fixture(scope="module")
def cs() -> CompiledScorecard:
    return CompiledScorecard(random_scorecard(11, 12, categorical_share=0.3))


def test_jit_is_not_disabled() -> None:
    """NUMBA_DISABLE_JIT would turn every kernel into slow Python without an error."""
    assert os.environ.get("NUMBA_DISABLE_JIT", "0") in ("", "0")
    assert not numba.config.DISABLE_JIT


def test_kernels_compile_in_nopython_mode_without_lifting(cs: CompiledScorecard) -> None:
    """After a call every kernel has a nopython, non-lifted, nogil, non-fastmath overload."""
    X = random_features(cs.card, 300, 1)
    cs.score_many(X, with_points=True)
    cs.score_one(X[0])
    cs.bin_index_many(X)
    for kernel in KERNELS:
        assert isinstance(kernel, CPUDispatcher), kernel
        assert kernel.signatures, f"{kernel.__name__} never compiled"
        assert kernel.nopython_signatures, f"{kernel.__name__} has no nopython signature"
        assert kernel.targetoptions.get("nogil") is True
        assert not kernel.targetoptions.get("fastmath", False)
        for cres in kernel.overloads.values():
            assert not cres.objectmode, f"{kernel.__name__} fell back to object mode"
            assert not cres.lifted, f"{kernel.__name__} lifted loops to object mode"


@numba.njit
def _unbox_only(*arrays: np.ndarray) -> int:
    return len(arrays)


def _nrt_allocs(fn: Callable[[], object], calls: int) -> int:
    _nrt_python.memsys_enable_stats()
    try:
        before = rtsys.get_allocation_stats().alloc
        for _ in range(calls):
            fn()
        return int(rtsys.get_allocation_stats().alloc - before)
    finally:
        _nrt_python.memsys_disable_stats()


def test_score_one_allocates_nothing(cs: CompiledScorecard) -> None:
    """The stream's path reuses its buffers: per call, numba allocates only what unboxing the
    arguments costs (one small header per array argument), never a result or scratch array."""
    x = random_features(cs.card, 1, 2)[0]
    args = (x, *cs.tables, cs.one_points, cs.one_lost, cs.one_reasons, cs.unseen_total)
    cs.score_one(x)
    _unbox_only(*args)  # compile both first
    reasons, points = cs.one_reasons, cs.one_points
    assert _nrt_allocs(lambda: cs.score_one(x), 100) == _nrt_allocs(lambda: _unbox_only(*args), 100)
    # the measure does see kernel allocations: the batch kernel's scratch blocks
    b = (
        np.empty(1),
        np.empty(1, np.int32),
        np.empty((1, 4), np.int32),
        np.empty(1, np.int32),
        np.empty((1, 12), np.int32),
        np.empty((1, 12), np.int32),
    )
    batch_args = (x[None, :], *cs.tables, *b, False, np.zeros(12, np.int64))
    _kernel.score_batch(*batch_args)
    arrays = tuple(a for a in batch_args if isinstance(a, np.ndarray))
    _unbox_only(*arrays)
    assert _nrt_allocs(lambda: _kernel.score_batch(*batch_args), 10) > _nrt_allocs(
        lambda: _unbox_only(*arrays), 10
    )
    assert cs.one_reasons is reasons and cs.one_points is points


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros((3, 12), np.int64), "float64"),
        (np.zeros((3, 12), np.float32), "float64"),
        (np.zeros((3, 11)), r"shape \(n, 12\)"),
        (np.zeros(12), r"shape \(n, 12\)"),
        (np.zeros((2, 3, 12)), r"shape \(n, 12\)"),
        ([[0.0] * 12], "numpy array"),
    ],
)
def test_bad_matrix_is_a_clear_input_error(cs: CompiledScorecard, X: object, message: str) -> None:
    """Wrong dtype/shape/type is refused with a one-line InputError naming what was expected."""
    with pytest.raises(InputError, match=message):
        cs.score_many(X)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=message):
        cs.bin_index_many(X)  # type: ignore[arg-type]


@pytest.mark.parametrize("x", [np.zeros(11), np.zeros(12, np.float32), np.zeros((1, 12))])
def test_bad_row_is_a_clear_input_error(cs: CompiledScorecard, x: np.ndarray) -> None:
    with pytest.raises(InputError, match="float64 of shape"):
        cs.score_one(x)


def test_any_memory_layout_scores_the_same(cs: CompiledScorecard) -> None:
    """Fortran-ordered and strided matrices give the C-contiguous result."""
    X = random_features(cs.card, 500, 3)
    expected = cs.score_many(X)
    for other in (np.asfortranarray(X), np.repeat(X, 2, axis=0)[::2]):
        got = cs.score_many(other)
        assert np.array_equal(got.score, expected.score)
        assert np.array_equal(got.reasons, expected.reasons)


def test_unseen_total_accumulates_over_calls(cs: CompiledScorecard) -> None:
    X = random_features(cs.card, 400, 4, tricky_share=0.5)
    start = cs.unseen_total.copy()
    batch = cs.score_many(X)
    for row in X:
        cs.score_one(row)
    assert batch.unseen.sum() > 0
    assert (cs.unseen_total - start).tolist() == (2 * batch.unseen).tolist()


def test_pd_follows_the_scaling(cs: CompiledScorecard) -> None:
    """Default scaling (docs/domain.md): 600 -> odds 50:1, 620 -> 100:1, 580 -> 25:1."""
    assert cs.pd(600.0) == pytest.approx(1 / 51)
    assert cs.pd(620.0) == pytest.approx(1 / 101)
    assert cs.pd(580.0) == pytest.approx(1 / 26)
    assert isinstance(cs.pd(600.0), float)
    arr = cs.pd(np.array([580.0, 600.0, 1e6, -1e6]))
    assert arr.tolist()[:2] == [pytest.approx(1 / 26), pytest.approx(1 / 51)]
    assert arr[2] == 0.0 and arr[3] == 1.0  # no overflow warning, no NaN
    assert cs.pd(700.0) == pytest.approx(cs.card.scaling.pd_of_score(700.0))


def test_category_code(cs: CompiledScorecard) -> None:
    cat = next(c for c in cs.card.characteristics if c.kind == "categorical")
    num = next(c for c in cs.card.characteristics if c.kind == "numeric")
    assert [cs.category_code(cat.name, level) for level in cat.categories] == list(
        range(len(cat.categories))
    )
    assert cs.category_code(cat.name, "never seen") == -1
    with pytest.raises(InputError, match="not a categorical"):
        cs.category_code(num.name, "x")


def test_names_and_max_points(cs: CompiledScorecard) -> None:
    assert cs.names == [c.name for c in cs.card.characteristics]
    assert cs.grade_names == [g.name for g in cs.card.grades]
    assert cs.tables.max_points.tolist() == [
        max(b.points for b in c.bins) for c in cs.card.characteristics
    ]
    assert not math.isnan(cs.score_one(np.full(12, np.nan))[0])


def test_segmented_names_are_columns() -> None:
    """A segmented card's input columns are its distinct characteristic names, then the
    segmentation column when no characteristic scores it; a row's segment follows that column."""
    card = random_scorecard(5, 6, segments=3)
    cols = list(dict.fromkeys(c.name for c in card.characteristics))
    assert card.segmentation is not None
    if card.segmentation.column not in cols:
        cols.append(card.segmentation.column)
    assert CompiledScorecard(card).names == cols == card.names
    j = cols.index(card.segmentation.column)
    X = random_features(card, 200, 1)
    got = CompiledScorecard(card).score_many(X).segment
    assert got.tolist() == [card.segmentation.segment_of(v) for v in X[:, j]]
    assert len(set(got.tolist())) > 1
