"""The scorecard's view of the streaming features: feature rows -> card columns, reason texts."""

from __future__ import annotations

import math

import numpy as np

from schemas.events import Reason
from scoring.artifact import Scorecard
from scoring.compiled import CompiledScorecard
from scoring.errors import InputError
from streams.core import features as F


class CardColumns:
    """Which feature column feeds each of a card's input columns, and how categorical levels
    map to the card's codes. A card whose characteristics are not streaming features is refused
    with a clear error."""

    def __init__(self, card: Scorecard, cs: CompiledScorecard) -> None:
        self.card, self.cs = card, cs
        self.cols, self._cat_maps = _feature_columns(cs)
        self.labels = [F.FEATURES[j].label for j in self.cols]

    def matrix(self, full: np.ndarray) -> np.ndarray:
        """Feature rows (all FEATURES) -> the card's columns, categoricals as card codes."""
        X = np.ascontiguousarray(full[:, self.cols])
        for c, cmap in self._cat_maps.items():
            col = X[:, c]
            ok = ~np.isnan(col)
            codes = col[ok].astype(np.int64)
            inside = (codes >= 0) & (codes < len(cmap))
            col[ok] = np.where(inside, cmap[codes.clip(0, len(cmap) - 1)], -1.0)
        return X

    def row(self, row: np.ndarray) -> np.ndarray:
        """One feature row -> the card's columns."""
        return self.matrix(row.reshape(1, -1))[0]

    def reason(self, c: int, value: float, lost: int) -> Reason:
        """Characteristic ``c``'s reason code: its value as the card shows it, points lost."""
        template = self.card.column_template(self.cs.names[c])
        if template is not None and template.kind == "categorical" and value >= 0:
            shown = template.categories[int(value)]
        elif math.isnan(value):
            shown = "missing"
        else:
            shown = f"{value:g}"
        return Reason(self.cs.names[c], f"{self.labels[c]} = {shown}: -{lost} points", lost)


def _feature_columns(cs: CompiledScorecard) -> tuple[list[int], dict[int, np.ndarray]]:
    """Map scorecard characteristics to feature columns; categorical level -> card code maps."""
    index = {name: j for j, name in enumerate(F.FEATURE_NAMES)}
    missing = [n for n in cs.names if n not in index]
    if missing:
        raise InputError(
            f"scorecard characteristics are not streaming features: {', '.join(missing)} "
            f"(known: {', '.join(F.FEATURE_NAMES)})"
        )
    cols = [index[n] for n in cs.names]
    cat_maps: dict[int, np.ndarray] = {}
    for c, j in enumerate(cols):
        feat = F.FEATURES[j]
        if feat.kind == "categorical":
            cat_maps[c] = np.array(
                [cs.category_code(feat.name, lvl) for lvl in feat.levels], dtype=np.float64
            )
    return cols, cat_maps
