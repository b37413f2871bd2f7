"""Seeded random scorecards and matching feature matrices, for parity tests and benchmarks.

Cards are valid (they pass ``Scorecard.validate``) and exercise every bin rule: merged and
separate missing bins, special values (also ones pointing at interval bins, and duplicates),
categoricals with shared bins, grades whose ``min_score`` is a reachable integer score, and with
``segments > 1`` a segmentation (over a characteristic's column or a column of its own) whose
segments each score a random subset of the columns with their own bins. Feature
matrices mix ordinary values with the tricky ones: values exactly on and next to edges, NaN,
specials, +-inf and +-1e300 (``allow_extreme``), and categorical codes that are negative, too
large or not integers.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from scoring.artifact import Bin, Characteristic, Grade, Scorecard, Segmentation

SPECIAL_CANDIDATES = (-1.0, 9999.0, 0.0, -999.0)


def _bins(rng: np.random.Generator, n: int, prefix: str) -> tuple[Bin, ...]:
    pts = rng.integers(-20, 80, size=n)
    return tuple(Bin(f"{prefix}{b}", int(p), float(rng.normal())) for b, p in enumerate(pts))


def random_numeric(rng: np.random.Generator, name: str, max_edges: int = 8) -> Characteristic:
    """A numeric characteristic with 0..max_edges edges, maybe its own missing and special bins."""
    n_edges = int(rng.integers(0, max_edges + 1))
    raw = rng.integers(-50, 500, size=n_edges).astype(np.float64)
    if rng.random() < 0.5:  # some non-integer edges
        raw = raw + rng.random(n_edges).round(3)
    edges = tuple(float(e) for e in np.unique(raw))
    n_bins = len(edges) + 1
    missing_bin = n_bins if rng.random() < 0.5 else int(rng.integers(0, n_bins))
    n_bins = max(n_bins, missing_bin + 1)
    n_spec = int(rng.integers(0, 3))
    specials = [float(v) for v in rng.choice(SPECIAL_CANDIDATES, size=n_spec)]  # dupes allowed
    special_bins = []
    for _ in specials:
        if rng.random() < 0.5:
            special_bins.append(n_bins)
            n_bins += 1
        else:
            special_bins.append(int(rng.integers(0, n_bins)))
    return Characteristic(
        name=name,
        label=name.replace("_", " "),
        kind="numeric",
        coefficient=float(rng.uniform(0.3, 1.5)),
        iv=float(rng.uniform(0.02, 0.5)),
        bins=_bins(rng, n_bins, name),
        missing_bin=missing_bin,
        edges=edges,
        special_values=tuple(specials),
        special_bins=tuple(special_bins),
    )


def random_categorical(
    rng: np.random.Generator, name: str, max_levels: int = 10, n_levels: int | None = None
) -> Characteristic:
    """A categorical characteristic: levels grouped into a few bins, plus missing/unseen bins."""
    n_levels = int(rng.integers(1, max_levels + 1)) if n_levels is None else n_levels
    n_bins = int(rng.integers(1, min(n_levels, 5) + 1))
    category_bins = tuple(int(b) for b in rng.integers(0, n_bins, size=n_levels))
    extra = int(rng.integers(0, 3))  # 0: missing/unseen share level bins; 1-2: own bins
    missing_bin = n_bins if extra >= 1 else int(rng.integers(0, n_bins))
    unseen_bin = n_bins + 1 if extra == 2 else int(rng.integers(0, n_bins + extra))
    return Characteristic(
        name=name,
        label=name.replace("_", " "),
        kind="categorical",
        coefficient=float(rng.uniform(0.3, 1.5)),
        iv=float(rng.uniform(0.02, 0.5)),
        bins=_bins(rng, n_bins + extra, name),
        missing_bin=missing_bin,
        categories=tuple(f"level{i}" for i in range(n_levels)),
        category_bins=category_bins,
        unseen_bin=unseen_bin,
    )


def random_grades(
    rng: np.random.Generator, low: int, high: int, n_grades: int
) -> tuple[Grade, ...]:
    """Grades with strictly decreasing integer ``min_score`` inside the reachable [low, high]."""
    span = np.arange(low, high + 1)
    n = max(1, min(n_grades, len(span)))
    mins = np.sort(rng.choice(span, size=n, replace=False))[::-1]
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return tuple(
        Grade(letters[g % 26] + ("" if g < 26 else str(g)), float(m), pd=(g + 1) / (n + 1))
        for g, m in enumerate(mins)
    )


def random_scorecard(
    seed: int | np.random.Generator,
    n_chars: int = 12,
    *,
    categorical_share: float = 0.25,
    max_edges: int = 8,
    n_grades: int = 7,
    segments: int = 1,
) -> Scorecard:
    """A valid random scorecard with ``n_chars`` columns (about a quarter categorical) and
    ``segments`` segments."""
    rng = np.random.default_rng(seed)
    base = tuple(
        random_categorical(rng, f"cat_{j}")
        if rng.random() < categorical_share
        else random_numeric(rng, f"num_{j}", max_edges)
        for j in range(n_chars)
    )
    if segments <= 1:
        chars = base
        low = sum(min(b.points for b in c.bins) for c in chars)
        high = sum(c.max_points for c in chars)
        seg = None
    else:
        chars, lows, highs = (), [], []
        for g in range(segments):
            use = [c for c in base if rng.random() < 0.7] or [base[int(rng.integers(len(base)))]]
            part = tuple(
                dataclasses.replace(
                    random_categorical(rng, c.name, n_levels=len(c.categories))
                    if c.kind == "categorical"
                    else random_numeric(rng, c.name, max_edges),
                    segment=g,
                )
                for c in use
            )
            chars += part
            lows.append(sum(min(b.points for b in c.bins) for c in part))
            highs.append(sum(c.max_points for c in part))
        low, high = min(lows), max(highs)
        numeric = [c.name for c in base if c.kind == "numeric"]
        column = (
            numeric[int(rng.integers(len(numeric)))] if numeric and rng.random() < 0.7 else "seg"
        )
        cuts = np.unique(rng.integers(-50, 500, size=segments - 1).astype(np.float64))
        while len(cuts) < segments - 1:  # (duplicates drawn)
            cuts = np.unique(np.append(cuts, rng.integers(-50, 500)))
        seg = Segmentation(
            column=column,
            edges=tuple(float(e) for e in cuts),
            labels=tuple(f"s{g}" for g in range(segments)),
            missing_segment=int(rng.integers(segments)),
        )
    card = Scorecard(
        characteristics=chars, grades=random_grades(rng, low, high, n_grades), segmentation=seg
    )
    card.validate()
    return card


def random_column(
    rng: np.random.Generator,
    c: Characteristic,
    n: int,
    tricky_share: float,
    allow_extreme: bool,
    more_edges: tuple[float, ...] = (),
) -> np.ndarray:
    """``n`` raw values for characteristic ``c``; about ``tricky_share`` of them edge cases
    (also on and next to ``more_edges``: other segments' edges over the same column)."""
    if c.kind == "numeric":
        every = sorted({*c.edges, *more_edges})
        lo = (every[0] if every else 0.0) - 50.0
        hi = (every[-1] if every else 100.0) + 50.0
        col = rng.uniform(lo, hi, size=n)
        tricky = [np.nan, *c.special_values]
        for e in every:
            tricky += [e, np.nextafter(e, -np.inf), np.nextafter(e, np.inf)]
    else:
        n_levels = len(c.categories)
        col = rng.integers(0, n_levels, size=n).astype(np.float64)
        tricky = [np.nan, -1.0, float(n_levels), 0.5, n_levels - 0.5, -0.0]
    if allow_extreme:
        tricky += [np.inf, -np.inf, 1e300, -1e300]
    pick = rng.random(n) < tricky_share
    col[pick] = rng.choice(np.asarray(tricky, np.float64), size=int(pick.sum()))
    return col


def random_features(
    card: Scorecard,
    n_rows: int,
    seed: int | np.random.Generator = 0,
    *,
    tricky_share: float = 0.2,
    allow_extreme: bool = True,
) -> np.ndarray:
    """A C-contiguous float64 ``(n_rows, k)`` matrix of raw values for ``card``'s columns."""
    rng = np.random.default_rng(seed)
    seg = card.segmentation
    cols = []
    for name in card.names:
        more = tuple(e for c in card.characteristics if c.name == name for e in c.edges)
        if seg is not None and seg.column == name:
            more += seg.edges
        template = card.column_template(name)
        if template is None:  # the segmentation's own column
            template = Characteristic(name, name, "numeric", 1.0, 0.0, (Bin("all", 0, 0.0),), 0)
        cols.append(random_column(rng, template, n_rows, tricky_share, allow_extreme, more))
    return np.ascontiguousarray(np.column_stack(cols)) if cols else np.empty((n_rows, 0))
