"""Evaluate a scorecard on labelled data: ``metrics.json`` plus PNG plots (ROC, KS curve, score
distribution of goods vs bads, bad rate by grade). Plots use matplotlib's Agg backend, so no
display is needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring import quality
from scoring.artifact import Scorecard
from scoring.compiled import CompiledScorecard
from scoring.data import to_matrix
from scoring.errors import InputError

__all__ = ["PLOTS", "evaluate", "summary"]

PLOTS = ("roc.png", "ks.png", "score_distribution.png", "bad_rate_by_grade.png")


def _shares(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Counts per bin; -1 (the row's segment does not use the column) is left out."""
    return np.bincount(values[values >= 0], minlength=n_bins).astype(np.float64)


def evaluate(
    card: Scorecard,
    df: pd.DataFrame,
    bad: np.ndarray,
    out_dir: str | Path,
    baseline: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Score ``df``, compare with the outcome ``bad`` (1 = bad), write metrics.json and plots.

    With ``baseline`` (e.g. the training sample), ``psi`` compares the score distribution over
    the card's baseline bands and ``csi`` each characteristic's bin distribution (expected =
    baseline, actual = ``df``). ``psi_vs_training`` always compares with the card's own baseline.
    """
    if int(bad.sum()) == 0 or int(bad.sum()) == len(bad):
        raise InputError("evaluation data needs both goods and bads")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory {out}: {exc.strerror}") from exc
    cs = CompiledScorecard(card)
    fm = to_matrix(df, card)
    batch = cs.score_many(fm.X)
    score = batch.score
    names = cs.grade_names
    table = quality.grade_table(bad, batch.grade, names)
    for row, g in zip(table, card.grades, strict=True):
        row["training_pd"] = g.pd
    edges = card.score_baseline.get("edges", [])
    metrics: dict[str, Any] = {
        "scorecard_version": card.version,
        "rows": len(bad),
        "bads": int(bad.sum()),
        "auc": quality.auc(bad, score),
        "gini": quality.gini(bad, score),
        "ks": quality.ks(bad, score),
        "grades": table,
        "unseen": fm.unseen,
    }
    if card.score_baseline.get("shares"):
        metrics["psi_vs_training"] = quality.psi(
            np.asarray(card.score_baseline["shares"]), quality.band_shares(score, edges)
        )
    if baseline is not None:
        bfm = to_matrix(baseline, card)
        base_score = cs.score_many(bfm.X).score
        metrics["psi"] = quality.psi(
            quality.band_shares(base_score, edges), quality.band_shares(score, edges)
        )
        bins_now = cs.bin_index_many(fm.X)
        bins_base = cs.bin_index_many(bfm.X)
        metrics["csi"] = {
            name: quality.csi(_shares(bins_base[:, j], nb), _shares(bins_now[:, j], nb))
            for j, name in enumerate(card.names)
            if (nb := len(card.column_bins(name)))
        }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=False))
    _plots(out, bad, score, table)
    return metrics


def _plots(out: Path, bad: np.ndarray, score: np.ndarray, table: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    b = bad.astype(bool)
    fpr, tpr, _ = roc_curve(b, -score)  # bad is the positive class; low score = risky
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"AUC {quality.auc(bad, score):.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey")
    ax.set(xlabel="false positive rate (goods flagged)", ylabel="true positive rate (bads caught)",
           title="ROC")  # fmt: skip
    ax.legend(loc="lower right")
    fig.savefig(out / "roc.png", dpi=80)
    plt.close(fig)

    thr, cum_bad, cum_good = quality.ks_curve(bad, score)
    k = int(np.argmax(np.abs(cum_bad - cum_good)))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(thr, cum_bad, where="post", label="bads")
    ax.step(thr, cum_good, where="post", label="goods")
    ax.vlines(thr[k], cum_good[k], cum_bad[k], colors="k",
              label=f"KS {abs(cum_bad[k] - cum_good[k]):.3f} at {thr[k]:g}")  # fmt: skip
    ax.set(xlabel="score", ylabel="cumulative share", title="KS curve")
    ax.legend(loc="lower right")
    fig.savefig(out / "ks.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [float(v) for v in np.histogram_bin_edges(score, bins=30)]
    ax.hist(score[~b], bins=bins, alpha=0.6, density=True, label="goods")
    ax.hist(score[b], bins=bins, alpha=0.6, density=True, label="bads")
    ax.set(xlabel="score", ylabel="density", title="Score distribution")
    ax.legend()
    fig.savefig(out / "score_distribution.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    rates = [r["bad_rate"] or 0.0 for r in table]
    ax.bar([r["grade"] for r in table], rates, label="observed")
    ax.plot([r["grade"] for r in table], [r["training_pd"] for r in table], "ko-",
            label="training PD")  # fmt: skip
    ax.set(xlabel="grade", ylabel="bad rate", title="Bad rate by grade")
    ax.legend()
    fig.savefig(out / "bad_rate_by_grade.png", dpi=80)
    plt.close(fig)


def summary(metrics: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [
        f"rows {metrics['rows']}, bads {metrics['bads']}: AUC {metrics['auc']:.3f}, "
        f"Gini {metrics['gini']:.3f}, KS {metrics['ks']:.3f}"
    ]
    rates = ["-" if r["bad_rate"] is None else f"{r['bad_rate']:.1%}" for r in metrics["grades"]]
    lines.append(
        "grades (count, bad rate): "
        + ", ".join(
            f"{r['grade']} {r['count']} {rate}"
            for r, rate in zip(metrics["grades"], rates, strict=True)
        )
    )
    if "psi" in metrics:
        worst = max(metrics["csi"].items(), key=lambda kv: kv[1])
        lines.append(f"PSI {metrics['psi']:.3f}; highest CSI {worst[0]} {worst[1]:.3f}")
    if "psi_vs_training" in metrics:
        lines.append(f"PSI vs training scores {metrics['psi_vs_training']:.3f}")
    unseen = {k: v for k, v in metrics["unseen"].items() if v}
    if unseen:
        lines.append("unseen categories: " + ", ".join(f"{k} {v}" for k, v in unseen.items()))
    return "\n".join(lines)
