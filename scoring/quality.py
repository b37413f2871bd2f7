"""Pure scorecard quality metrics: discrimination (AUC, Gini, KS), stability (PSI, CSI) and the
grade table. Reused by ``riskmon evaluate``, the stream's drift monitor and the demo report.

Convention: ``bad`` is 1 for a bad outcome, 0 for good; a higher ``score`` means lower risk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PSI_EPS", "auc", "band_shares", "csi", "gini", "grade_table", "ks", "ks_curve", "psi"]

PSI_EPS = 1e-4  # shares below this are raised to it, so an empty band gives a finite PSI


def _check(bad: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(bad).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    if b.shape != s.shape or b.ndim != 1:
        raise ValueError(f"bad and score must be 1-d of equal length, got {b.shape}, {s.shape}")
    if b.all() or not b.any():
        raise ValueError("need both goods and bads")
    return b, s


def auc(bad: np.ndarray, score: np.ndarray) -> float:
    """P(a random good scores above a random bad), ties counting half (Mann-Whitney U).

    >>> auc(np.array([1, 1, 0, 0]), np.array([1.0, 2.0, 3.0, 4.0]))
    1.0
    >>> auc(np.array([1, 0]), np.array([5.0, 5.0]))
    0.5
    """
    b, s = _check(bad, score)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    n_good = int((~b).sum())
    n_bad = int(b.sum())
    u = ranks[~b].sum() - n_good * (n_good + 1) / 2.0
    return float(u / (n_good * n_bad))


def gini(bad: np.ndarray, score: np.ndarray) -> float:
    """Gini = 2 AUC - 1."""
    return 2.0 * auc(bad, score) - 1.0


def ks_curve(bad: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative shares of bads and goods at or below each distinct score (ascending)."""
    b, s = _check(bad, score)
    thresholds = np.unique(s)
    pos = np.searchsorted(thresholds, s)
    cum_bad = np.cumsum(np.bincount(pos[b], minlength=len(thresholds))) / b.sum()
    cum_good = np.cumsum(np.bincount(pos[~b], minlength=len(thresholds))) / (~b).sum()
    return thresholds, cum_bad, cum_good


def ks(bad: np.ndarray, score: np.ndarray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the bads' and goods' score CDFs.

    >>> ks(np.array([1, 1, 0, 0]), np.array([1.0, 2.0, 3.0, 4.0]))
    1.0
    """
    _, cb, cg = ks_curve(bad, score)
    return float(np.max(np.abs(cb - cg)))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index ``sum((a - e) ln(a / e))`` over bands.

    Inputs are shares or counts per band (each normalised to sum 1); shares below ``PSI_EPS``
    are raised to it so an empty band does not give infinity.

    >>> psi(np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    0.0
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1 or len(e) == 0:
        raise ValueError(
            f"expected and actual must be 1-d of equal length, got {e.shape}, {a.shape}"
        )
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("shares must not all be zero")
    e = np.maximum(e / e.sum(), PSI_EPS)
    a = np.maximum(a / a.sum(), PSI_EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def csi(expected_counts: np.ndarray, actual_counts: np.ndarray) -> float:
    """Characteristic stability index: PSI over one characteristic's bins."""
    return psi(expected_counts, actual_counts)


def band_shares(score: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """Share of scores per band; band ``i`` is ``[edges[i-1], edges[i])`` (searchsorted right)."""
    s = np.asarray(score, dtype=np.float64)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), s, side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    return counts / max(len(s), 1)


def grade_table(bad: np.ndarray, grade: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """Per grade (best first): count, share, bads and bad rate (None for an empty grade)."""
    b = np.asarray(bad).astype(np.int64)
    g = np.asarray(grade).astype(np.int64)
    n = len(b)
    counts = np.bincount(g, minlength=len(names))
    bads = np.bincount(g, weights=b, minlength=len(names)).round().astype(np.int64)
    return [
        {
            "grade": name,
            "count": int(counts[i]),
            "share": float(counts[i] / n) if n else 0.0,
            "bads": int(bads[i]),
            "bad_rate": float(bads[i] / counts[i]) if counts[i] else None,
        }
        for i, name in enumerate(names)
    ]
