"""Does the scorecard suit this book? A check at the end of a backtest or a history run.

A card trained on another book can fit a lender's data badly without an error: characteristics
that are constant or missing on these customers contribute nothing, and the score distribution
sits far from the one the card was built on. Over the performing book at the end of the input
(every customer with a live loan, under 90 DPD; features as the stream computes them), this
reports the characteristics that are
constant or all missing, and the PSI of the score against the card's baseline; it warns when a
third or more of the characteristics say nothing or the PSI is above 0.25.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scoring import quality
from streams.core.drift import score_baseline
from streams.core.entry import Entry
from streams.core.features import FeatureBatch
from streams.core.pipeline import Pipeline

PSI_SHIFTED = 0.25
DEFAULT_DPD = 90  # customers at or past it are in default: not the book a card scores
SILENT_SHARE = 1 / 3


@dataclass(frozen=True)
class FitCheck:
    customers: int
    constant: list[str]  # characteristics with one value over every customer
    missing: list[str]  # characteristics missing for every customer
    characteristics: int
    psi: float  # score vs the card's baseline (NaN: no baseline or no customer)

    @property
    def warnings(self) -> list[str]:
        out = []
        silent = len(self.constant) + len(self.missing)
        if self.characteristics and silent / self.characteristics >= SILENT_SHARE:
            out.append(
                f"{silent} of the scorecard's {self.characteristics} characteristics say "
                f"nothing on this book (constant: {', '.join(self.constant) or '-'}; all "
                f"missing: {', '.join(self.missing) or '-'}): train a card on it "
                "(riskmon history, then riskmon train)"
            )
        if self.psi > PSI_SHIFTED:
            out.append(
                f"score PSI {self.psi:.2f} against the card's baseline (> {PSI_SHIFTED}): the "
                "book's scores sit far from the ones the card was built on"
            )
        return out

    def summary(self) -> str:
        psi = "n/a" if math.isnan(self.psi) else f"{self.psi:.3f}"
        return (
            f"scorecard fit over {self.customers:,} customers: {len(self.constant)} constant and "
            f"{len(self.missing)} all-missing of {self.characteristics} characteristics; score "
            f"PSI {psi} against the card's baseline"
        )


def fit_check(pipe: Pipeline) -> FitCheck:
    """The check over every customer ``pipe`` holds, as of each one's last event."""
    batch = FeatureBatch(pipe.state_cfg)
    n = 0
    for raw in pipe.stored().values():
        state = Entry.from_bytes(raw).state
        if state.last_event_time > 0:
            batch.add(state, state.last_event_time)
            n += 1
    names = list(pipe.cs.names)
    if not n:
        return FitCheck(0, [], [], len(names), math.nan)
    rows, facts = batch.compute()
    # the performing book, as a card is trained on: a live loan, not in default
    performing = facts.active_loan & (facts.dpd < DEFAULT_DPD)
    if not performing.any():
        return FitCheck(0, [], [], len(names), math.nan)
    n = int(performing.sum())
    X = pipe.columns.matrix(rows[performing])
    constant, missing = [], []
    for j, name in enumerate(names):
        col = X[:, j]
        present = col[~np.isnan(col)]
        if not len(present):
            missing.append(name)
        elif np.all(present == present[0]) and len(present) == len(col):
            constant.append(name)
    psi = math.nan
    base = score_baseline(pipe.card)
    if base is not None:
        scores = pipe.cs.score_many(X).score
        psi = quality.psi(base.expected, quality.band_shares(scores, base.edges))
    return FitCheck(n, constant, missing, len(names), psi)
