"""A :class:`Scorecard` compiled once into contiguous arrays, scored by the numba kernel.

``CompiledScorecard.score_many`` scores a float64 matrix (NaN = missing, categoricals as integer
codes, columns in card order: ``card.names``); ``score_one`` is the stream's single-customer path
and allocates nothing per call: it writes into the preallocated ``one_points`` / ``one_lost`` /
``one_reasons`` buffers. Points, shortfalls and reasons are per input column (artifact docstring).
"""

from __future__ import annotations

from typing import NamedTuple, overload

import numpy as np

from scoring import _kernel
from scoring.artifact import Scorecard
from scoring.errors import InputError

N_REASONS = _kernel.N_REASONS


class ScoreBatch(NamedTuple):
    """Result of :meth:`CompiledScorecard.score_many` for ``n`` rows and ``k`` input columns."""

    score: np.ndarray  # float64[n]
    grade: np.ndarray  # int32[n], index into card.grades (0 = best)
    reasons: np.ndarray  # int32[n, 4], column indices, -1 = none
    points: np.ndarray | None  # int32[n, k] per-column points when with_points=True
    unseen: np.ndarray  # int64[k]: unseen-category count per column in this call
    segment: np.ndarray  # int32[n], index into card.segment_labels
    lost: np.ndarray | None  # int32[n, k] per-column shortfall from the best bin (with_points)


class Tables(NamedTuple):
    """The compiled arrays, in the order every kernel takes them (see :mod:`scoring._kernel`)."""

    kind: np.ndarray
    edge_off: np.ndarray
    edges: np.ndarray
    spec_off: np.ndarray
    spec_vals: np.ndarray
    spec_bins: np.ndarray
    cat_off: np.ndarray
    cat_bins: np.ndarray
    missing_bin: np.ndarray
    unseen_bin: np.ndarray
    bin_off: np.ndarray
    points: np.ndarray
    max_points: np.ndarray
    char_col: np.ndarray
    char_seg: np.ndarray
    union_off: np.ndarray
    seg_spec: np.ndarray
    seg_edges: np.ndarray
    grade_min: np.ndarray


def _offsets(lengths: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


def compile_tables(card: Scorecard) -> Tables:
    """Flatten ``card`` into contiguous per-characteristic arrays (validates the card first)."""
    card.validate()
    chars = card.characteristics
    i32, i64 = np.int32, np.int64
    column = {name: c for c, name in enumerate(card.names)}
    union_off, seen = [], {name: 0 for name in column}
    for c in chars:
        union_off.append(seen[c.name])
        seen[c.name] += len(c.bins)
    seg = card.segmentation
    return Tables(
        kind=np.array(
            [_kernel.NUMERIC if c.kind == "numeric" else _kernel.CATEGORICAL for c in chars], i32
        ),
        edge_off=_offsets([len(c.edges) for c in chars]),
        edges=np.array([e for c in chars for e in c.edges], np.float64),
        spec_off=_offsets([len(c.special_values) for c in chars]),
        spec_vals=np.array([v for c in chars for v in c.special_values], np.float64),
        spec_bins=np.array([b for c in chars for b in c.special_bins], i32),
        cat_off=_offsets([len(c.category_bins) for c in chars]),
        cat_bins=np.array([b for c in chars for b in c.category_bins], i32),
        missing_bin=np.array([c.missing_bin for c in chars], i32),
        unseen_bin=np.array([c.unseen_bin for c in chars], i32),
        bin_off=_offsets([len(c.bins) for c in chars]),
        points=np.array([b.points for c in chars for b in c.bins], i32),
        max_points=np.array([c.max_points for c in chars], i32),
        char_col=np.array([column[c.name] for c in chars], i64),
        char_seg=np.array([c.segment for c in chars], i64),
        union_off=np.array(union_off, i64),
        seg_spec=np.array(
            [-1, 0] if seg is None else [column[seg.column], seg.missing_segment], i64
        ),
        seg_edges=np.array([] if seg is None else seg.edges, np.float64),
        grade_min=np.array([g.min_score for g in card.grades], np.float64),
    )


class CompiledScorecard:
    """Score, grade and top-4 reasons of a scorecard, via the numba kernel.

    ``unseen_total`` (int64[k]) accumulates unseen-category counts over every call of this
    instance, so the stream can export them without summing batches itself.
    """

    def __init__(self, card: Scorecard) -> None:
        self.card = card
        self.tables = compile_tables(card)
        self.names: list[str] = card.names
        self.grade_names: list[str] = [g.name for g in card.grades]
        k = len(self.names)
        self.one_points = np.zeros(k, np.int32)
        self.one_lost = np.zeros(k, np.int32)
        self.one_reasons = np.full(N_REASONS, -1, np.int32)
        self.unseen_total = np.zeros(k, np.int64)
        self._codes = {  # the same categories in every segment (validated)
            c.name: {level: i for i, level in enumerate(c.categories)}
            for c in card.characteristics
            if c.kind == "categorical"
        }
        self._factor = card.scaling.factor
        self._offset = card.scaling.offset

    def _matrix(self, X: np.ndarray) -> np.ndarray:
        k = len(self.names)
        if not isinstance(X, np.ndarray):
            raise InputError(f"features must be a numpy array, got {type(X).__name__}")
        if X.dtype != np.float64:
            raise InputError(
                f"features must be float64 (NaN = missing, categoricals as codes), got {X.dtype}"
            )
        if X.ndim != 2 or X.shape[1] != k:
            raise InputError(
                f"features must have shape (n, {k}) for columns {self.names}, got {X.shape}"
            )
        return np.ascontiguousarray(X)

    def score_many(self, X: np.ndarray, with_points: bool = False) -> ScoreBatch:
        """Score every row of ``X`` (float64, shape (n, k), columns in card order)."""
        X = self._matrix(X)
        n, k = X.shape
        score = np.empty(n, np.float64)
        grade = np.empty(n, np.int32)
        reasons = np.empty((n, N_REASONS), np.int32)
        pts = np.empty((n if with_points else 1, k), np.int32)
        lost = np.empty((n if with_points else 1, k), np.int32)
        segment = np.empty(n, np.int32)
        unseen = np.zeros(k, np.int64)
        _kernel.score_batch(
            X, *self.tables, score, grade, reasons, segment, pts, lost, with_points, unseen
        )
        self.unseen_total += unseen
        if with_points:
            return ScoreBatch(score, grade, reasons, pts, unseen, segment, lost)
        return ScoreBatch(score, grade, reasons, None, unseen, segment, None)

    def score_one(self, x: np.ndarray) -> tuple[float, int]:
        """Score one customer's row ``x`` (float64[k]); returns ``(score, grade)``.

        Reasons, points and shortfalls are written to ``self.one_reasons`` / ``self.one_points`` /
        ``self.one_lost`` (overwritten by the next call: copy them if you keep them). No
        allocation per call.
        """
        if x.dtype != np.float64 or x.shape != self.one_points.shape:
            raise InputError(f"row must be float64 of shape ({len(self.names)},), got {x.shape}")
        return _kernel.score_row(
            x, *self.tables, self.one_points, self.one_lost, self.one_reasons, self.unseen_total
        )

    @overload
    def pd(self, score: float) -> float: ...
    @overload
    def pd(self, score: np.ndarray) -> np.ndarray: ...
    def pd(self, score: np.ndarray | float) -> np.ndarray | float:
        """Probability of default implied by the card's scaling: 1 / (1 + odds(score))."""
        z = (np.asarray(score, np.float64) - self._offset) / self._factor
        pd = np.exp(-np.logaddexp(0.0, z))  # = 1 / (1 + e^z) without overflow
        return pd if isinstance(score, np.ndarray) else float(pd)

    def category_code(self, name: str, level: str) -> int:
        """Kernel code of ``level`` in categorical characteristic ``name``; -1 if unseen."""
        try:
            codes = self._codes[name]
        except KeyError:
            raise InputError(f"{name!r} is not a categorical characteristic of this card") from None
        return codes.get(level, -1)

    def bin_index_many(self, X: np.ndarray) -> np.ndarray:
        """Bin of every value among its column's bins (``card.column_bins``): int32[n, k];
        -1 where the row's segment does not use the column."""
        X = self._matrix(X)
        out = np.empty(X.shape, np.int32)
        _kernel.bin_batch(X, *self.tables, out)
        return out
