"""Quality metrics against independent implementations and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from scoring import quality


def _sample(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bad = (rng.random(n) < 0.3).astype(np.int8)
    score = np.round(rng.normal(600, 30, n) - 25 * bad)  # integer scores: many ties
    return bad, score


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn(seed: int) -> None:
    """AUC equals sklearn's with bad as the positive class and risk = -score, ties included."""
    bad, score = _sample(seed)
    assert quality.auc(bad, score) == pytest.approx(roc_auc_score(bad, -score), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_matches_scipy(seed: int) -> None:
    """KS equals scipy's two-sample statistic between goods' and bads' scores."""
    bad, score = _sample(seed)
    expected = ks_2samp(score[bad == 1], score[bad == 0]).statistic
    assert quality.ks(bad, score) == pytest.approx(expected, abs=1e-12)


def test_gini_is_two_auc_minus_one() -> None:
    bad, score = _sample(7)
    assert quality.gini(bad, score) == pytest.approx(2 * quality.auc(bad, score) - 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(300, 700)), min_size=2, max_size=60))
def test_auc_flips_with_the_score(rows: list[tuple[bool, int]]) -> None:
    """Reversing the score order gives 1 - AUC; AUC stays within [0, 1]."""
    bad = np.array([b for b, _ in rows], dtype=np.int8)
    score = np.array([s for _, s in rows], dtype=np.float64)
    if bad.all() or not bad.any():
        with pytest.raises(ValueError):
            quality.auc(bad, score)
        return
    a = quality.auc(bad, score)
    assert 0.0 <= a <= 1.0
    assert quality.auc(bad, -score) == pytest.approx(1.0 - a)


def test_psi_hand_computed() -> None:
    """PSI of 50/50 -> 25/75 is 0.25 ln 2 + 0.25 ln 1.5."""
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert quality.psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(expected)


def test_psi_accepts_counts_and_is_symmetric() -> None:
    e = np.array([10, 30, 60])
    a = np.array([20, 30, 50])
    assert quality.psi(e, a) == pytest.approx(quality.psi(e / 100, a / 100))
    assert quality.psi(e, a) == pytest.approx(quality.psi(a, e))
    assert quality.psi(e, e) == 0.0


def test_psi_of_an_empty_band_is_finite_and_large() -> None:
    """A band empty on one side is smoothed to PSI_EPS instead of giving infinity."""
    value = quality.psi(np.array([0.5, 0.5, 0.0]), np.array([0.4, 0.4, 0.2]))
    assert math.isfinite(value)
    assert value > 0.25


def test_csi_is_psi_over_bins() -> None:
    assert quality.csi(np.array([5, 5]), np.array([2, 8])) == quality.psi(
        np.array([0.5, 0.5]), np.array([0.2, 0.8])
    )


def test_band_shares_use_the_right_closed_edge_convention() -> None:
    """A score exactly on an edge falls in the band to its right."""
    shares = quality.band_shares(np.array([1.0, 2.0, 2.0, 3.0]), [2.0, 3.0])
    assert shares.tolist() == [0.25, 0.5, 0.25]


def test_grade_table_counts_and_rates() -> None:
    bad = np.array([0, 1, 0, 0, 1, 1])
    grade = np.array([0, 0, 1, 1, 1, 2])
    table = quality.grade_table(bad, grade, ["A", "B", "C", "D"])
    assert [r["count"] for r in table] == [2, 3, 1, 0]
    assert [r["bads"] for r in table] == [1, 1, 1, 0]
    assert [r["bad_rate"] for r in table] == [0.5, pytest.approx(1 / 3), 1.0, None]
    assert sum(r["share"] for r in table) == pytest.approx(1.0)
