"""Readable reason texts: why a customer lost points on a characteristic.

A reason is a characteristic whose points fall short of its best bin (artifact docstring); its
text names the characteristic, the customer's value and the shortfall, e.g.
``"days past due (max 6 m) = 45: -23 points"``.
"""

from __future__ import annotations

import math

import numpy as np

from scoring.artifact import Characteristic, Scorecard

__all__ = ["reason_text", "reason_texts", "value_text"]


def value_text(char: Characteristic, x: float) -> str:
    """The kernel input ``x`` as a person reads it (categorical codes back to their level).

    >>> from scoring.artifact import Bin
    >>> c = Characteristic("k", "kind", "categorical", -1.0, 0.1, (Bin("a", 1, 0.0),),
    ...                    missing_bin=0, categories=("retail",), category_bins=(0,), unseen_bin=0)
    >>> value_text(c, 0.0), value_text(c, -1.0), value_text(c, float("nan"))
    ('retail', 'unseen level', 'missing')
    """
    if math.isnan(x):
        return "missing"
    if char.kind == "categorical":
        if 0 <= x < len(char.categories) and float(x).is_integer():
            return char.categories[int(x)]
        return "unseen level"
    return f"{x:g}"


def reason_text(char: Characteristic, x: float, points: int) -> str:
    """``"<label> = <value>: -<shortfall> points"`` for one characteristic of one customer."""
    return f"{char.label} = {value_text(char, x)}: {points - char.max_points:+d} points"


def reason_texts(
    card: Scorecard, X: np.ndarray, reasons: np.ndarray, points: np.ndarray, segment: np.ndarray
) -> list[list[str]]:
    """Texts of each row's reason codes (``reasons[i, r]`` = column index or -1 -> ""), told by
    the characteristic of the row's segment (``segment[i]``) over that column."""
    names = card.names
    out: list[list[str]] = []
    for i in range(reasons.shape[0]):
        row = []
        for j in reasons[i]:
            char = None if j < 0 else card.characteristic_at(int(segment[i]), names[j])
            row.append("" if char is None else reason_text(char, float(X[i, j]), int(points[i, j])))
        out.append(row)
    return out
