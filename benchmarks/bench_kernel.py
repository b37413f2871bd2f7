"""Scoring speed: the riskmon numba kernel against baselines measured in the same run.

    python benchmarks/bench_kernel.py --rows 1000000 --json benchmarks/results/kernel.json

Every contender maps the same synthetic float64 matrix (about 12 characteristics, 5% NaN /
special / edge / unseen values) to score + grade + top-4 reasons, on one core:

* ``riskmon``        the numba kernel (``CompiledScorecard.score_many`` / ``score_one``)
* ``reference``      the plain-Python reference (``scoring.reference``), on a sample of rows
* ``numpy``          a numpy-vectorised version (searchsorted per column, take, argsort)
* ``optbinning``     ``optbinning.Scorecard.score`` fitted on the same data, when importable;
                     it computes the score only (no grade, no reasons) and bins categorical codes
                     as numbers, so it does less work than the others

Single-row latency is the p50 of timing one call per row (includes ~0.05 us of timer overhead).
The numpy result is checked equal to the kernel's before anything is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np

from scoring import reference
from scoring.compiled import CompiledScorecard, Tables
from scoring.synthetic import random_features, random_scorecard


def best_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` runs (the least disturbed by the shared machine)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def p50_us(fn: Callable[[int], object], n_calls: int) -> float:
    """Median latency in microseconds of ``fn(i)`` over ``n_calls`` calls."""
    lat = np.empty(n_calls)
    for i in range(n_calls):
        t = time.perf_counter_ns()
        fn(i)
        lat[i] = time.perf_counter_ns() - t
    return float(np.median(lat) / 1e3)


def numpy_score(t: Tables, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score, grade and top-4 reasons with whole-column numpy operations."""
    n, k = X.shape
    pts = np.empty((n, k), np.int64)
    for j in range(k):
        x = X[:, j]
        if t.kind[j] == 0:
            b = np.searchsorted(t.edges[t.edge_off[j] : t.edge_off[j + 1]], x, side="right")
            b[np.isnan(x)] = t.missing_bin[j]
            for s in range(t.spec_off[j + 1] - 1, t.spec_off[j] - 1, -1):
                b[x == t.spec_vals[s]] = t.spec_bins[s]
        else:
            n_cat = t.cat_off[j + 1] - t.cat_off[j]
            with np.errstate(invalid="ignore"):
                ok = (x >= 0) & (x < n_cat) & (np.floor(x) == x)
            b = np.full(n, t.unseen_bin[j], np.int64)
            b[ok] = t.cat_bins[t.cat_off[j] + x[ok].astype(np.int64)]
            b[np.isnan(x)] = t.missing_bin[j]
        pts[:, j] = t.points[t.bin_off[j] + b]
    score = pts.sum(axis=1).astype(np.float64)
    asc = t.grade_min[::-1]
    grade = np.minimum(len(asc) - np.searchsorted(asc, score, side="right"), len(asc) - 1)
    shortfall = t.max_points[None, :] - pts
    order = np.argsort(-shortfall, axis=1, kind="stable")[:, :4]
    top = np.take_along_axis(shortfall, order, axis=1)
    reasons = np.where(top > 0, order, -1)
    return score, grade, reasons


def bench_optbinning(
    cs: CompiledScorecard, X: np.ndarray, score: np.ndarray, n_rows: int, n_single: int, seed: int
) -> dict[str, Any] | None:
    """optbinning's Scorecard fitted on the synthetic data; None when not importable."""
    try:
        import pandas as pd
        from optbinning import BinningProcess, Scorecard
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    z = (score - score.mean()) / score.std()
    y = (rng.random(len(score)) < 1.0 / (1.0 + np.exp(1.5 * z + 2.0))).astype(int)  # ~15% bad
    fit_n = min(len(X), 50_000)
    df = pd.DataFrame(X, columns=cs.names)
    model = Scorecard(
        binning_process=BinningProcess(cs.names),
        estimator=LogisticRegression(),
        scaling_method="pdo_odds",
        scaling_method_params={"pdo": 20, "odds": 50, "scorecard_points": 600},
    )
    model.fit(df.iloc[:fit_n], y[:fit_n])
    part = df.iloc[:n_rows]
    model.score(part.iloc[:1000])
    secs = best_seconds(lambda: model.score(part), 2)
    rows = [part.iloc[[i]] for i in range(n_single)]
    return {
        "name": "optbinning",
        "rows_per_s": n_rows / secs,
        "p50_single_row_us": p50_us(lambda i: model.score(rows[i]), n_single),
        "rows_timed": n_rows,
        "note": "optbinning.Scorecard.score: score only, no grade/reasons",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chars", type=int, default=12)
    ap.add_argument("--json", type=Path, help="write results here")
    ap.add_argument("--sample", type=int, default=2000, help="rows for the Python reference")
    ap.add_argument("--single", type=int, default=20_000, help="single-row calls timed")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-optbinning", action="store_true")
    a = ap.parse_args(argv)

    numba.set_num_threads(1)  # one core; the kernel has no prange anyway
    card = random_scorecard(a.seed, a.chars)
    cs = CompiledScorecard(card)
    X = random_features(card, a.rows, a.seed + 1, tricky_share=0.05, allow_extreme=False)
    n_single = min(a.single, a.rows)
    rows = [np.ascontiguousarray(X[i]) for i in range(n_single)]

    batch = cs.score_many(X)  # compile (or load the cache) before timing
    cs.score_one(rows[0])
    results = [
        {
            "name": "riskmon",
            "rows_per_s": a.rows / best_seconds(lambda: cs.score_many(X), a.repeat),
            "p50_single_row_us": p50_us(lambda i: cs.score_one(rows[i]), n_single),
            "rows_timed": a.rows,
        }
    ]

    sample = [list(r) for r in X[: a.sample]]
    secs = best_seconds(lambda: [reference.score_row(card, r) for r in sample], 2)
    results.append(
        {
            "name": "reference",
            "rows_per_s": len(sample) / secs,
            "p50_single_row_us": p50_us(
                lambda i: reference.score_row(card, sample[i]), len(sample)
            ),
            "rows_timed": len(sample),
        }
    )

    score, grade, reasons = numpy_score(cs.tables, X)
    if not (
        np.array_equal(score, batch.score)
        and np.array_equal(grade, batch.grade)
        and np.array_equal(reasons, batch.reasons)
    ):
        sys.exit("numpy baseline disagrees with the kernel: not reporting numbers")
    matrices = [X[i : i + 1] for i in range(min(n_single, 5000))]
    results.append(
        {
            "name": "numpy",
            "rows_per_s": a.rows / best_seconds(lambda: numpy_score(cs.tables, X), 2),
            "p50_single_row_us": p50_us(
                lambda i: numpy_score(cs.tables, matrices[i]), len(matrices)
            ),
            "rows_timed": a.rows,
        }
    )

    if not a.no_optbinning:
        ob = bench_optbinning(cs, X, batch.score, min(a.rows, 200_000), 50, a.seed)
        if ob is not None:
            results.append(ob)

    by = {r["name"]: r for r in results}
    ratios = {
        f"riskmon_over_{name}": {
            "rows_per_s": by["riskmon"]["rows_per_s"] / by[name]["rows_per_s"],
            "single_row_speedup": by[name]["p50_single_row_us"]
            / by["riskmon"]["p50_single_row_us"],
        }
        for name in by
        if name != "riskmon"
    }
    out = {
        "results": results,
        "ratios": ratios,
        "setup": {
            "rows": a.rows,
            "chars": a.chars,
            "seed": a.seed,
            "threads": 1,
            "output": "score + grade + top-4 reasons (optbinning: score only)",
            "numba": numba.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    print(f"{'name':<12} {'rows/s':>14} {'p50 single row':>16} {'riskmon speed-up':>18}")
    for r in results:
        ratio = ratios.get(f"riskmon_over_{r['name']}", {}).get("rows_per_s")
        print(
            f"{r['name']:<12} {r['rows_per_s']:>14,.0f} {r['p50_single_row_us']:>13.2f} us"
            f" {'' if ratio is None else f'{ratio:>17,.1f}x'}"
        )
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
