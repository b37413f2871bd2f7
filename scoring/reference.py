"""Readable pure-Python scoring of one row, straight from the :class:`Scorecard` dataclasses.

This is the specification the numba kernel (:mod:`scoring._kernel`) is tested against, so it
trades speed for obviousness: no arrays, no tricks. Conventions: :mod:`scoring.artifact`.

>>> from scoring.artifact import Bin, Characteristic, Grade, Scorecard
>>> age = Characteristic(
...     name="age", label="age", kind="numeric", coefficient=1.0, iv=0.1,
...     bins=(Bin("<30", 10, -0.5), Bin(">=30", 40, 0.4), Bin("missing", 0, -1.0)),
...     missing_bin=2, edges=(30.0,),
... )
>>> card = Scorecard((age,), (Grade("A", 30.0, 0.01), Grade("B", 0.0, 0.1)))
>>> score_row(card, [30.0])
RowScore(score=40.0, grade=0, reasons=[], points=[40], unseen=[False], lost=[0], segment=0)
>>> score_row(card, [float("nan")]).reasons
[0]
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import NamedTuple

from scoring.artifact import Characteristic, Scorecard

N_REASONS = 4


class RowScore(NamedTuple):
    """One row's result: total points, grade index (0 = best), reason column indices; points,
    unseen flags and shortfalls per input column; the row's segment."""

    score: float
    grade: int
    reasons: list[int]
    points: list[int]
    unseen: list[bool]
    lost: list[int]
    segment: int


def bin_index(c: Characteristic, value: float) -> tuple[int, bool]:
    """Bin of ``value`` in characteristic ``c``, and whether it was an unseen category."""
    if c.kind == "numeric":
        for special, b in zip(c.special_values, c.special_bins, strict=True):
            if value == special:
                return b, False
        if math.isnan(value):
            return c.missing_bin, False
        return bisect.bisect_right(c.edges, value), False
    if math.isnan(value):
        return c.missing_bin, False
    if value.is_integer() and 0 <= value < len(c.categories):
        return c.category_bins[int(value)], False
    return c.unseen_bin, True


def grade_index(card: Scorecard, score: float) -> int:
    """First grade (best first) whose ``min_score`` the score reaches, else the last grade."""
    for g, grade in enumerate(card.grades):
        if score >= grade.min_score:
            return g
    return len(card.grades) - 1


def score_row(card: Scorecard, row: Sequence[float]) -> RowScore:
    """Score one row of raw values (columns ``card.names``, categoricals as float codes)."""
    columns = card.names
    values = dict(zip(columns, map(float, row), strict=True))
    seg = card.segmentation
    segment = 0 if seg is None else seg.segment_of(values[seg.column])
    points: list[int] = []
    unseen: list[bool] = []
    lost: list[int] = []
    for name in columns:
        c = card.characteristic_at(segment, name)
        if c is None:  # this segment does not score the column
            points.append(0)
            unseen.append(False)
            lost.append(0)
            continue
        b, is_unseen = bin_index(c, values[name])
        points.append(c.bins[b].points)
        unseen.append(is_unseen)
        lost.append(c.max_points - c.bins[b].points)
    score = float(sum(points))
    ranked = sorted(range(len(points)), key=lambda j: (-lost[j], j))
    reasons = [j for j in ranked if lost[j] > 0][:N_REASONS]
    return RowScore(score, grade_index(card, score), reasons, points, unseen, lost, segment)
