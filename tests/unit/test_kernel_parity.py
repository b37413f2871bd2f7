"""The numba kernel agrees with the readable reference on random cards and tricky values."""

from __future__ import annotations

import dataclasses
import doctest
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring import reference
from scoring.artifact import Bin, Characteristic, Grade, Scorecard
from scoring.compiled import CompiledScorecard
from scoring.synthetic import random_features, random_scorecard

PARITY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_matches_reference(card: Scorecard, X: np.ndarray) -> None:
    """Batch, per-row and reference results agree row by row; the input is left untouched."""
    cs = CompiledScorecard(card)
    before = X.copy()
    batch = cs.score_many(X, with_points=True)
    assert batch.points is not None and batch.lost is not None
    plain = cs.score_many(X)  # without points: the same scores, grades, reasons, segments
    for got, want in zip(plain[:2], batch[:2], strict=True):
        assert got.tolist() == want.tolist()
    assert plain.reasons.tolist() == batch.reasons.tolist()
    assert plain.segment.tolist() == batch.segment.tolist()
    expected_unseen = np.zeros(len(card.names), np.int64)
    for i, row in enumerate(X):
        ref = reference.score_row(card, list(row))
        expected_unseen += np.array(ref.unseen, np.int64)
        padded = ref.reasons + [-1] * (4 - len(ref.reasons))
        assert (batch.score[i], batch.grade[i]) == (ref.score, ref.grade), f"row {i}: {row}"
        assert batch.reasons[i].tolist() == padded, f"row {i}: {row}"
        assert batch.points[i].tolist() == ref.points, f"row {i}: {row}"
        assert batch.lost[i].tolist() == ref.lost, f"row {i}: {row}"
        assert batch.segment[i] == ref.segment, f"row {i}: {row}"
        assert cs.score_one(row) == (ref.score, ref.grade), f"row {i}: {row}"
        assert cs.one_reasons.tolist() == padded
        assert cs.one_points.tolist() == ref.points
        assert cs.one_lost.tolist() == ref.lost
    assert batch.unseen.tolist() == expected_unseen.tolist()
    assert np.array_equal(X, before, equal_nan=True)
    bins = cs.bin_index_many(X)
    for j, name in enumerate(card.names):
        want = []
        for i, v in enumerate(X[:, j]):
            c = card.characteristic_at(int(batch.segment[i]), name)
            if c is None:
                want.append(-1)
                continue
            b = reference.bin_index(c, v)[0]
            want.append(card.column_bins(name).index(c.bins[b], _start(card, c)))
        assert bins[:, j].tolist() == want


def _start(card: Scorecard, c: Characteristic) -> int:
    """Where ``c``'s bins start among its column's bins."""
    before = card.characteristics[: card.characteristics.index(c)]
    return sum(len(o.bins) for o in before if o.name == c.name)


@PARITY
@given(
    seed=st.integers(0, 2**32 - 1),
    n_chars=st.integers(1, 14),
    categorical_share=st.sampled_from([0.0, 0.3, 1.0]),
    tricky_share=st.sampled_from([0.0, 0.3, 0.9]),
    n_rows=st.integers(0, 600),  # > one 256-row block, and partial blocks
)
def test_random_cards_match_reference(
    seed: int, n_chars: int, categorical_share: float, tricky_share: float, n_rows: int
) -> None:
    """Random cards and matrices full of edges, NaN, specials, +-inf and bad codes agree."""
    card = random_scorecard(seed, n_chars, categorical_share=categorical_share)
    X = random_features(card, n_rows, seed + 1, tricky_share=tricky_share)
    assert_matches_reference(card, X)


@PARITY
@given(
    seed=st.integers(0, 2**32 - 1),
    n_chars=st.integers(1, 10),
    segments=st.integers(2, 4),
    tricky_share=st.sampled_from([0.0, 0.3, 0.9]),
    n_rows=st.integers(0, 600),
)
def test_random_segmented_cards_match_reference(
    seed: int, n_chars: int, segments: int, tricky_share: float, n_rows: int
) -> None:
    """Segmented cards (segment picked per row in the kernel, columns some segments leave
    unused, a segmentation column of its own or a characteristic's) agree with the reference."""
    card = random_scorecard(seed, n_chars, categorical_share=0.3, segments=segments)
    X = random_features(card, n_rows, seed + 1, tricky_share=tricky_share)
    assert_matches_reference(card, X)


def interesting_values(c: Characteristic) -> list[float]:
    """Values on and next to every edge, specials, and the categorical codes that must fail."""
    vals = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e300, -1e300, 5e-324]
    vals += list(c.special_values)
    for e in c.edges:
        vals += [e, math.nextafter(e, -math.inf), math.nextafter(e, math.inf)]
    n = len(c.categories)
    vals += [-1.0, float(n), n - 1.0, 0.5, n - 0.5, 2.0**63, -(2.0**63)]
    return vals


@PARITY
@given(data=st.data(), seed=st.integers(0, 2**32 - 1), n_chars=st.integers(1, 8))
def test_drawn_values_match_reference(data: st.DataObject, seed: int, n_chars: int) -> None:
    """Rows drawn value by value (shrinkable) from edges, specials and arbitrary floats agree."""
    card = random_scorecard(seed, n_chars, categorical_share=0.4)
    columns = [
        st.one_of(st.sampled_from(interesting_values(c)), st.floats(width=64))
        for c in card.characteristics
    ]
    rows = data.draw(st.lists(st.tuples(*columns), min_size=1, max_size=40))
    assert_matches_reference(card, np.array(rows, np.float64).reshape(len(rows), n_chars))


@PARITY
@given(seed=st.integers(0, 2**32 - 1), n_grades=st.integers(1, 9))
def test_scores_exactly_on_grade_boundaries(seed: int, n_grades: int) -> None:
    """A score equal to a grade's min_score gets that grade; below the last, the last grade."""
    card = random_scorecard(seed, 6)
    X = random_features(card, 300, seed, tricky_share=0.2)
    scores = sorted({reference.score_row(card, list(r)).score for r in X}, reverse=True)
    cuts = scores[: max(1, min(n_grades, len(scores) - 1))]  # leave the lowest score below all
    grades = tuple(Grade(f"G{g}", s, pd=0.0) for g, s in enumerate(cuts))
    card = dataclasses.replace(card, grades=grades)
    batch = CompiledScorecard(card).score_many(X)
    for s, g in zip(batch.score, batch.grade, strict=True):
        on_cut = [i for i, cut in enumerate(cuts) if cut == s]
        if on_cut:
            assert g == on_cut[0]
        if s < cuts[-1]:
            assert g == len(cuts) - 1
    assert_matches_reference(card, X)


def numeric(name: str, edges: tuple[float, ...], points: list[int], **kw: object) -> Characteristic:
    bins = tuple(Bin(f"b{i}", p, 0.0) for i, p in enumerate(points))
    fields: dict[str, Any] = {"missing_bin": len(points) - 1, "edges": edges, **kw}
    return Characteristic(name, name, "numeric", 1.0, 0.1, bins, **fields)


def test_documented_conventions_on_a_hand_built_card() -> None:
    """Edges go right, specials beat intervals, NaN -> missing, bad codes -> unseen (counted)."""
    dpd = numeric(
        "dpd",
        (1.0, 30.0),
        [50, 20, 0, 10, 35],  # [<1, [1,30), >=30, missing, special -1]
        missing_bin=3,
        special_values=(-1.0, 30.0),
        special_bins=(4, 0),
    )
    sector = Characteristic(
        "sector",
        "sector",
        "categorical",
        1.0,
        0.1,
        (Bin("retail", 40, 0.0), Bin("food", 25, 0.0), Bin("missing", 5, 0.0), Bin("?", 15, 0.0)),
        missing_bin=2,
        categories=("retail", "food", "farm"),
        category_bins=(0, 1, 1),
        unseen_bin=3,
    )
    card = Scorecard((dpd, sector), (Grade("A", 80.0, 0.01), Grade("B", 50.0, 0.05)))
    cs = CompiledScorecard(card)
    X = np.array(
        [
            [1.0, 0.0],  # on edge 1 -> bin 1 (20); retail 40 -> 60, B
            [30.0, 2.0],  # 30 is also a special -> bin 0 (50); farm -> food 25 -> 75, B
            [-1.0, np.nan],  # special -> 35; missing -> 5 -> 40, below B -> last grade
            [np.nan, 1.5],  # missing -> 10; 1.5 unseen -> 15
            [0.999, 3.0],  # bin 0 (50); code 3 unseen -> 15 -> 65
            [29.0, -1.0],  # bin 1 (20); -1 unseen
            [0.0, 0.0],  # 50 + 40 = 90, A, no reasons
        ]
    )
    b = cs.score_many(X, with_points=True)
    assert b.points is not None
    assert b.points.tolist() == [
        [20, 40],
        [50, 25],
        [35, 5],
        [10, 15],
        [50, 15],
        [20, 15],
        [50, 40],
    ]
    assert b.score.tolist() == [60.0, 75.0, 40.0, 25.0, 65.0, 35.0, 90.0]
    assert b.grade.tolist() == [1, 1, 1, 1, 1, 1, 0]
    assert b.unseen.tolist() == [0, 3]
    # shortfalls from max (50, 40): row 3 -> (40, 25); row 1 -> (0, 15); row 6 none
    assert b.reasons[3].tolist() == [0, 1, -1, -1]
    assert b.reasons[1].tolist() == [1, -1, -1, -1]
    assert b.reasons[6].tolist() == [-1, -1, -1, -1]


def test_reason_ties_keep_characteristic_order_and_stop_at_four() -> None:
    """Equal shortfalls rank by characteristic index; only four reasons are kept."""
    chars = tuple(numeric(f"c{j}", (0.0,), [10, 0, 0]) for j in range(6))  # x < 0 -> 10, else 0
    card = Scorecard(chars, (Grade("A", 0.0, 0.1),))
    row = np.array([[1.0, 1.0, -1.0, 1.0, 1.0, 1.0]])  # shortfall 10 everywhere but c2
    assert CompiledScorecard(card).score_many(row).reasons[0].tolist() == [0, 1, 3, 4]


def test_empty_batch() -> None:
    """Zero rows give empty results of the right shapes."""
    card = random_scorecard(7, 5)
    b = CompiledScorecard(card).score_many(np.empty((0, 5)), with_points=True)
    assert b.score.shape == (0,) and b.reasons.shape == (0, 4)
    assert b.points is not None and b.points.shape == (0, 5)


@pytest.mark.parametrize("seed", range(3))
def test_synthetic_cards_are_valid_and_reach_every_rule(seed: int) -> None:
    """The generator's cards validate and its rows hit NaN, specials and unseen codes."""
    card = random_scorecard(seed, 20, categorical_share=0.3)
    card.validate()
    X = random_features(card, 5000, seed, tricky_share=0.3)
    assert np.isnan(X).any() and np.isinf(X).any()
    assert CompiledScorecard(card).score_many(X).unseen.sum() > 0


def test_reference_doctest() -> None:
    """The reference module's worked example still holds."""
    assert doctest.testmod(reference).failed == 0
