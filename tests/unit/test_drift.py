"""Live drift monitor: PSI/CSI equal the offline ``riskmon evaluate`` numbers on the same data,
the event-time window evicts old intervals, memory stays fixed, and the gauges are exported."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from scoring import quality
from scoring.artifact import Scorecard
from scoring.compiled import CompiledScorecard
from scoring.data import to_matrix
from scoring.evaluate import evaluate
from scoring.synthetic import random_features, random_scorecard
from scoring.train import TrainConfig, train
from streams.core.drift import DriftMonitor, _count, count_reference, score_baseline
from streams.kafka.metrics import Metrics

DAY = 86400.0
T0 = 1_700_000_000.0


def book(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """dpd drives risk and sector a little; ``shift`` pushes dpd up and the mix to transport."""
    rng = np.random.default_rng(seed)
    dpd = np.minimum(rng.integers(0, 90, n) + rng.integers(0, int(shift) + 1, n), 120).astype(float)
    sector = rng.choice(
        ["retail", "food", "transport"], n, p=[0.4 - shift / 400, 0.3, 0.3 + shift / 400]
    )
    p = 0.05 + 0.005 * dpd + np.where(sector == "transport", 0.1, 0.0)
    bad = (rng.random(n) < p).astype(int)
    return pd.DataFrame({"dpd": dpd, "noise": rng.normal(size=n), "sector": sector, "bad": bad})


@pytest.fixture(scope="module")
def train_df() -> pd.DataFrame:
    return book(3000, seed=0)


@pytest.fixture(scope="module")
def card(train_df: pd.DataFrame) -> Scorecard:
    return train(train_df, TrainConfig(target="bad", categorical=("sector",)))


@pytest.fixture(scope="module")
def shifted() -> pd.DataFrame:
    return book(2000, seed=1, shift=40.0)


@pytest.fixture(scope="module")
def offline(
    card: Scorecard,
    shifted: pd.DataFrame,
    train_df: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """``riskmon evaluate``'s metrics for the shifted sample, with the training data as baseline."""
    out: Path = tmp_path_factory.mktemp("evaluate")
    return evaluate(card, shifted, shifted["bad"].to_numpy(), out, baseline=train_df)


def scored(card: Scorecard, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    cs = CompiledScorecard(card)
    X = to_matrix(df, card).X
    return cs.score_many(X).score, cs.bin_index_many(X)


def test_psi_equals_offline_evaluate(
    card: Scorecard, shifted: pd.DataFrame, offline: dict[str, Any]
) -> None:
    """PSI of the shifted scores equals evaluate's psi_vs_training and a direct quality.psi."""
    score, bins = scored(card, shifted)
    m = DriftMonitor(card)
    m.observe(score, bins, T0)
    edges = card.score_baseline["edges"]
    direct = quality.psi(
        np.asarray(card.score_baseline["shares"]), quality.band_shares(score, edges)
    )
    assert abs(m.psi() - offline["psi_vs_training"]) < 1e-9
    assert abs(m.psi() - direct) < 1e-9
    assert m.psi() > 0.10  # the shift is visible


def test_psi_of_training_scores_is_small(card: Scorecard, train_df: pd.DataFrame) -> None:
    """The training sample itself is stable (PSI only from the rounded stored shares)."""
    score, bins = scored(card, train_df)
    m = DriftMonitor(card)
    m.observe(score, bins, T0)
    assert m.psi() < 1e-6
    assert all(v < 1e-9 for v in m.csi().values())


def test_csi_equals_offline_evaluate(
    card: Scorecard, shifted: pd.DataFrame, offline: dict[str, Any]
) -> None:
    """CSI per characteristic equals evaluate's csi with the training data as baseline."""
    score, bins = scored(card, shifted)
    m = DriftMonitor(card)
    m.observe(score, bins, T0)
    csi = m.csi()
    assert list(csi) == card.names
    for name in card.names:
        assert abs(csi[name] - offline["csi"][name]) < 1e-9, name
    assert csi["dpd"] > 0.10


def test_batches_and_per_row_times_add_up(card: Scorecard, shifted: pd.DataFrame) -> None:
    """Many small batches with per-row times inside the window give the one-batch numbers."""
    score, bins = scored(card, shifted)
    whole = DriftMonitor(card)
    whole.observe(score, bins, T0)
    parts = DriftMonitor(card)
    times = T0 - np.random.default_rng(3).uniform(0, 5 * DAY, len(score))
    for lo in range(0, len(score), 97):
        parts.observe(score[lo : lo + 97], bins[lo : lo + 97], times[lo : lo + 97])
    parts.observe(score[:0], bins[:0], T0)  # an empty batch changes nothing
    assert parts.count() == whole.count() == len(score)
    assert parts.psi() == pytest.approx(whole.psi(), abs=1e-12)
    assert parts.csi() == pytest.approx(whole.csi(), abs=1e-12)


def test_window_evicts_old_intervals(
    card: Scorecard, train_df: pd.DataFrame, shifted: pd.DataFrame
) -> None:
    """Scores older than the window stop counting once event time moves past it."""
    s_old, b_old = scored(card, train_df)
    s_new, b_new = scored(card, shifted)
    only_new = DriftMonitor(card, window_s=7 * DAY)
    only_new.observe(s_new, b_new, T0 + 30 * DAY)
    m = DriftMonitor(card, window_s=7 * DAY)
    m.observe(s_old, b_old, T0)
    m.observe(s_new, b_new, T0 + 3 * DAY)  # both inside the window
    both = np.concatenate([s_old, s_new])
    edges = card.score_baseline["edges"]
    expected = quality.psi(
        np.asarray(card.score_baseline["shares"]), quality.band_shares(both, edges)
    )
    assert m.count() == len(both)
    assert abs(m.psi() - expected) < 1e-9
    m.observe(s_new, b_new, T0 + 30 * DAY)  # the first two batches leave the window
    assert m.count() == len(s_new)
    assert m.psi() == pytest.approx(only_new.psi(), abs=1e-12)
    assert m.csi() == pytest.approx(only_new.csi(), abs=1e-12)


def test_window_edge_is_one_interval(card: Scorecard, shifted: pd.DataFrame) -> None:
    """With 1-day intervals over 7 days, day 0 counts until the watermark reaches day 7."""
    score, bins = scored(card, shifted)
    m = DriftMonitor(card, window_s=7 * DAY, intervals=7)
    day0 = 100 * DAY  # an interval boundary
    m.observe(score[:10], bins[:10], day0 + 0.5)
    m.observe(score[10:20], bins[10:20], day0 + 7 * DAY - 1.0)
    assert m.count() == 20
    m.observe(score[20:25], bins[20:25], day0 + 7 * DAY)
    assert m.count() == 15


def test_late_observations_are_dropped_and_counted(card: Scorecard, shifted: pd.DataFrame) -> None:
    """A row older than the window (behind the watermark) is not counted; dropped_late says so."""
    score, bins = scored(card, shifted)
    m = DriftMonitor(card, window_s=7 * DAY, min_count=1)
    m.observe(score[:50], bins[:50], T0)
    times = np.full(30, T0 - 2 * DAY)
    times[:12] = T0 - 8 * DAY
    m.observe(score[50:80], bins[50:80], times)
    assert m.dropped_late == 12
    assert m.count() == 50 + 18


def test_memory_is_bounded(card: Scorecard, shifted: pd.DataFrame) -> None:
    """Months of hourly batches leave the window's size unchanged and hold only the last week."""
    score, bins = scored(card, shifted)
    m = DriftMonitor(card, window_s=7 * DAY, intervals=168)
    size = m.nbytes
    assert size < 1_000_000
    rng = np.random.default_rng(5)
    hours = 24 * 90
    for h in range(hours):
        pick = rng.integers(0, len(score), 20)
        m.observe(score[pick], bins[pick], T0 + h * 3600.0)
    assert m.nbytes == size
    assert m.count() == 168 * 20


def test_fallback_to_grade_counts(card: Scorecard, shifted: pd.DataFrame) -> None:
    """Without score_baseline the grades' training counts are the bands: PSI equals quality.psi
    of the grade counts vs the kernel's grades for the same scores."""
    bare = replace(card, score_baseline={})
    base = score_baseline(bare)
    assert base is not None and base.source == "grades"
    cs = CompiledScorecard(bare)
    batch = cs.score_many(to_matrix(shifted, bare).X)
    m = DriftMonitor(bare)
    m.observe(batch.score, None, T0)
    n_grades = len(bare.grades)
    expected = np.array([g.count for g in bare.grades], np.float64)
    actual = np.bincount(batch.grade, minlength=n_grades).astype(np.float64)
    assert abs(m.psi() - quality.psi(expected, actual)) < 1e-9
    assert all(math.isnan(v) for v in m.csi().values())  # no bins were observed


def test_hand_made_card_exports_nan(card: Scorecard) -> None:
    """A card with no training counts has no baseline: PSI and CSI are NaN, and exported as NaN."""
    rc = random_scorecard(11, n_chars=4)
    assert score_baseline(rc) is None
    cs = CompiledScorecard(rc)
    X = random_features(rc, 500, seed=2)
    m = DriftMonitor(rc, min_count=1)
    m.observe(cs.score_many(X).score, cs.bin_index_many(X), T0)
    assert m.count() == 500
    assert math.isnan(m.psi())
    assert all(math.isnan(v) for v in m.csi().values())
    reg = CollectorRegistry()
    Metrics(reg).export_drift(m.psi(), m.csi())
    psi = reg.get_sample_value("riskmon_score_psi")
    assert psi is not None and math.isnan(psi)


def test_below_min_count_is_nan(card: Scorecard, shifted: pd.DataFrame) -> None:
    score, bins = scored(card, shifted)
    m = DriftMonitor(card, min_count=100)
    assert math.isnan(m.psi())  # empty window
    m.observe(score[:99], bins[:99], T0)
    assert math.isnan(m.psi())
    assert math.isnan(m.csi()["dpd"])
    m.observe(score[99:100], bins[99:100], T0)
    assert math.isfinite(m.psi())
    assert math.isfinite(m.csi()["dpd"])


def test_export_to_registry(card: Scorecard, shifted: pd.DataFrame) -> None:
    """The gauges read back from a real registry equal psi() and csi()."""
    score, bins = scored(card, shifted)
    m = DriftMonitor(card)
    m.observe(score, bins, T0)
    reg = CollectorRegistry()
    Metrics(reg).export_drift(m.psi(), m.csi())
    assert reg.get_sample_value("riskmon_score_psi") == m.psi()
    for name, value in m.csi().items():
        got = reg.get_sample_value("riskmon_characteristic_csi", {"characteristic": name})
        assert got == value
    labels = {
        s.labels["characteristic"]
        for fam in reg.collect()
        if fam.name == "riskmon_characteristic_csi"
        for s in fam.samples
    }
    assert labels == set(card.names)  # the bounded set: the card's characteristics only


def test_inputs_are_checked(card: Scorecard, shifted: pd.DataFrame) -> None:
    score, bins = scored(card, shifted)
    m = DriftMonitor(card)
    with pytest.raises(ValueError, match="shape"):
        m.observe(score, bins[:, :1], T0)
    bad = bins.copy()
    bad[0, 0] = len(card.characteristics[0].bins)
    with pytest.raises(ValueError, match="out of range"):
        m.observe(score, bad, T0)
    with pytest.raises(ValueError, match="finite"):
        m.observe(score, bins, math.nan)
    with pytest.raises(ValueError, match="epoch"):
        m.observe(score, bins, -1.0)
    nan_score = score.copy()
    nan_score[-1] = math.nan
    with pytest.raises(ValueError, match="scores must be finite"):
        m.observe(nan_score, bins, T0)
    with pytest.raises(ValueError, match="window_s"):
        DriftMonitor(card, window_s=0)
    assert m.count() == 0  # rejected batches leave nothing behind


@st.composite
def _window_batches(draw: st.DrawFn) -> tuple[Any, ...]:
    """A ring, its state after earlier batches, and a new batch: times around the watermark
    (late rows included), scores on and between the band edges, bins in and out of range."""
    intervals = draw(st.integers(1, 6))
    interval_s = draw(st.sampled_from([1.0, 0.5, 3600.0]))
    edges = np.array(sorted(draw(st.lists(st.integers(-5, 5), max_size=4))), np.float64)
    n_bins = np.array(draw(st.lists(st.integers(1, 3), max_size=3)), np.int64)
    bin_off = np.concatenate([[0], np.cumsum(n_bins)]).astype(np.int64)
    width = len(edges) + 1 + int(bin_off[-1])
    counts = np.array(
        draw(st.lists(st.integers(0, 9), min_size=intervals * width, max_size=intervals * width)),
        np.int64,
    ).reshape(intervals, width)
    head = draw(st.integers(-1, 12))
    slot_interval = np.array(
        [
            draw(st.sampled_from([-1, *range(max(0, head - 2 * intervals), head + 1)]))
            for _ in range(intervals)
        ],
        np.int64,
    )
    n = draw(st.integers(0, 12))
    ts = np.array(
        [
            draw(st.floats(0.0, (head + 4) * interval_s + 1.0) | st.sampled_from([-1.0, math.nan]))
            if draw(st.integers(0, 19)) == 0
            else draw(st.floats(0.0, (head + 4) * interval_s + 1.0))
            for _ in range(n)
        ],
        np.float64,
    )
    scores = np.array(
        [draw(st.sampled_from([-6.0, -0.5, 0.0, 2.0, 5.0, 7.5])) for _ in range(n)], np.float64
    )
    bins = np.array(
        [
            [
                draw(st.integers(0, int(nb) - 1) | st.just(int(nb)))
                if draw(st.integers(0, 29)) == 0
                else draw(st.integers(0, int(nb) - 1))
                for nb in n_bins
            ]
            for _ in range(n)
        ],
        np.int64,
    ).reshape(n, len(n_bins))
    return counts, slot_interval, head, interval_s, edges, bin_off, n_bins, scores, bins, ts


@settings(max_examples=300, deadline=None)
@given(_window_batches())
def test_count_kernel_matches_reference(case: tuple[Any, ...]) -> None:
    """The jitted window update equals the plain-Python reference: status, watermark, late
    rows and every count, from any ring state (invalid batches change nothing)."""
    counts, slot_interval, head, *rest = case
    before = counts.copy()
    ref_counts, ref_slots = counts.copy(), slot_interval.copy()
    want = count_reference(ref_counts, ref_slots, head, *rest)
    got = _count(counts, slot_interval, head, *rest)
    assert tuple(int(x) for x in got) == want
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_array_equal(slot_interval, ref_slots)
    if want[0] != 0:  # rejected: the ring is untouched
        np.testing.assert_array_equal(counts, before)
