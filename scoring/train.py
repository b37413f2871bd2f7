"""Train a scorecard: bin -> select (IV, correlation) -> logistic regression on WOE with an
expected-sign check -> integer points (PDO scaling) -> monotonic grades -> :class:`Scorecard`.

With a segmentation (``TrainConfig.segment_by``) each segment's rows go through the same steps
on their own (own bins, selection, regression and intercept) and the points of every segment
are on the card's one scale, so the grades are cut once, over every row's score.

Sign convention: WOE = ln(%good/%bad) and the regression's target is *bad*, so every coefficient
must be negative (more WOE = safer = lower log-odds of bad). A characteristic that comes out with
a coefficient >= 0 is dropped, reported, and the model refitted.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from scoring import quality
from scoring.artifact import Characteristic, Grade, Scaling, Scorecard, Segmentation
from scoring.binning import BinnedColumn, BinningSpec, bin_categorical, bin_numeric
from scoring.data import binary_target, data_hash, is_numeric, level_strings, numeric_values
from scoring.data import require_columns as _require
from scoring.errors import InputError

__all__ = ["GradeMethod", "TrainConfig", "bin_points", "make_grades", "train"]

GradeMethod = Literal["quantile", "equal-width"]
GRADE_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Everything ``riskmon train`` can set; defaults follow docs/domain.md."""

    target: str
    bad_value: str | None = None
    categorical: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    spec: BinningSpec = field(default_factory=BinningSpec)
    scaling: Scaling = field(default_factory=Scaling)
    # below: too weak. 0.01, not the textbook 0.02: the logistic regression and the sign check
    # weigh a weak characteristic better than a hard cut does (benchmarks/bench_train.py)
    min_iv: float = 0.01
    max_corr: float = 0.7  # |Pearson| between WOE columns above which the weaker one goes
    n_grades: int = 7
    grade_method: GradeMethod = "quantile"
    min_bads: int = 20  # fewer bads (or goods) than this cannot support a scorecard
    C: float = 1.0  # inverse L2 strength of the logistic regression
    baseline_bands: int = 10  # score bands of the PSI baseline
    segment_by: str = ""  # a numeric column that splits the rows into segments ("": none)
    segment_edges: tuple[float, ...] = ()  # its cut points: e.g. (1, 30) for 0 / 1-29 / 30+
    segment_labels: tuple[str, ...] = ()  # one per segment (default: from the edges)

    def segmentation(self) -> Segmentation | None:
        """The segmentation these settings ask for (None: one segment)."""
        if not self.segment_by:
            return None
        edges = tuple(float(e) for e in self.segment_edges)
        if not edges:
            raise InputError("segments need at least one edge (--segment-edges)")
        labels = self.segment_labels or _segment_labels(self.segment_by, edges)
        seg = Segmentation(self.segment_by, edges, labels)
        try:
            seg.validate()
        except InputError as exc:
            raise InputError(str(exc).replace("segmentation", "segments")) from None
        return seg


def _segment_labels(column: str, edges: tuple[float, ...]) -> tuple[str, ...]:
    """``("dpd < 1", "dpd [1, 30)", "dpd >= 30")`` for column dpd, edges (1, 30)."""
    e = [f"{v:g}" for v in edges]
    middle = [f"{column} [{a}, {b})" for a, b in itertools.pairwise(e)]
    return (f"{column} < {e[0]}", *middle, f"{column} >= {e[-1]}")


def bin_points(
    coefficient: float, woe: np.ndarray, intercept: float, n_chars: int, scaling: Scaling
) -> list[int]:
    """Integer points per bin: ``-(beta * woe + alpha / n) * factor + offset / n`` (docs/domain.md),
    so a card's points sum to ``offset + factor * ln(odds good:bad)``."""
    raw = -(coefficient * np.asarray(woe) + intercept / n_chars) * scaling.factor
    raw = raw + scaling.offset / n_chars
    return [round(float(p)) for p in raw]


def make_grades(
    score: np.ndarray, bad: np.ndarray, n_grades: int, method: GradeMethod, floor: float
) -> tuple[tuple[Grade, ...], list[str]]:
    """Cut scores into ``n_grades`` bands (best first), then merge neighbours until the training
    bad rate rises strictly from the best grade to the worst. ``floor`` (the lowest score the
    card can give) is the last grade's ``min_score``. Returns the grades and a note per merge."""
    if not 2 <= n_grades <= len(GRADE_LETTERS):
        raise InputError(f"number of grades must be in 2..{len(GRADE_LETTERS)}, got {n_grades}")
    s = np.asarray(score, dtype=np.float64)
    b = np.asarray(bad, dtype=np.int64)
    if method == "quantile":
        cuts = [
            float(np.quantile(s, 1.0 - g / n_grades, method="higher")) for g in range(1, n_grades)
        ]
    elif method == "equal-width":
        lo, hi = float(s.min()), float(s.max())
        cuts = [hi - g * (hi - lo) / n_grades for g in range(1, n_grades)]
    else:
        raise InputError(f"grade method must be quantile or equal-width, got {method!r}")
    mins = [*sorted({c for c in cuts if c > floor}, reverse=True), float(floor)]
    notes: list[str] = []
    while True:
        band = _band_of(s, mins)
        counts = np.bincount(band, minlength=len(mins))
        bads = np.bincount(band, weights=b, minlength=len(mins))
        empty = [i for i in range(len(mins)) if counts[i] == 0]
        if empty and len(mins) > 1:
            i = empty[0]
            # drop the empty band's lower bound (merging it into the band below), or for the
            # last band the bound above it
            del mins[i if i < len(mins) - 1 else i - 1]
            notes.append(f"merged an empty score band (min {i})")
            continue
        rate = bads / np.maximum(counts, 1)
        bad_pairs = [g for g in range(1, len(mins)) if rate[g] <= rate[g - 1]]
        if not bad_pairs:
            break
        g = bad_pairs[0]
        notes.append(
            f"merged bands at scores >= {mins[g]:g} and >= {mins[g - 1]:g}: bad rate "
            f"{rate[g]:.4f} does not exceed the better band's {rate[g - 1]:.4f}"
        )
        del mins[g - 1]
    grades = tuple(
        Grade(
            name=GRADE_LETTERS[i],
            min_score=float(m),
            pd=round(float(bads[i] / counts[i]), 6),
            count=int(counts[i]),
        )
        for i, m in enumerate(mins)
    )
    return grades, notes


def _band_of(score: np.ndarray, mins: list[float]) -> np.ndarray:
    """Index of the first band whose min the score reaches (last band otherwise)."""
    asc = -np.asarray(mins, dtype=np.float64)  # increasing
    idx = np.searchsorted(asc, -score, side="left")
    return np.minimum(idx, len(mins) - 1)


#: a characteristic whose most frequent value (missing included) covers at least this share of
#: the rows is dropped as near-constant: too few rows differ to estimate a bin's risk
NEAR_CONSTANT_SHARE = 0.999


def _unusable(s: pd.Series) -> str | None:
    """Why column ``s`` cannot be a characteristic (all missing, constant, near-constant)."""
    if s.isna().all():
        return "all values missing"
    counts = s.value_counts(dropna=False)
    top = counts.index[0]
    shown = "missing" if pd.isna(top) else str(top.item() if hasattr(top, "item") else top)
    if len(counts) <= 1:
        return f"constant ({shown})"
    share = float(counts.iloc[0]) / len(s)
    if share >= NEAR_CONSTANT_SHARE:
        return f"near-constant: {share:.2%} of rows are {shown}"
    return None


def _bin_all(
    df: pd.DataFrame, y: np.ndarray, cfg: TrainConfig
) -> tuple[list[BinnedColumn], dict[str, np.ndarray], dict[str, str]]:
    """Bin every candidate column; the ones that cannot be characteristics, with the reason."""
    candidates = [c for c in df.columns if c != cfg.target and c not in cfg.exclude]
    if not candidates:
        raise InputError("no characteristics left to train on (all columns excluded)")
    binned: list[BinnedColumn] = []
    idx: dict[str, np.ndarray] = {}
    unusable: dict[str, str] = {}
    for name in candidates:
        s = df[name]
        why = _unusable(s)
        if why is not None:
            unusable[name] = why
            continue
        opts = cfg.spec.for_column(name)
        if name in cfg.categorical or opts.groups is not None or not is_numeric(s):
            bc = bin_categorical(name, level_strings(s), y, opts)
            idx[name] = bc.assign(level_strings(s))
        else:
            x = numeric_values(s, name)
            bc = bin_numeric(name, x, y, opts)
            idx[name] = bc.assign(x)
        binned.append(bc)
    if not binned:
        raise InputError(
            "no usable characteristic: " + "; ".join(f"{n}: {w}" for n, w in unusable.items())
        )
    return binned, idx, unusable


def _select(
    binned: list[BinnedColumn], woe: dict[str, np.ndarray], cfg: TrainConfig
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """IV threshold, then greedy correlation filter in IV order. Report entry per column."""
    report: dict[str, dict[str, Any]] = {}
    kept: list[str] = []
    by_iv = {b.name: b.iv for b in binned}
    for b in sorted(binned, key=lambda b: (-b.iv, b.name)):
        entry: dict[str, Any] = {"iv": round(b.iv, 6), "bins": len(b.bin_labels), "status": "kept"}
        report[b.name] = entry
        if b.iv < cfg.min_iv:
            entry |= {"status": "dropped", "reason": f"IV {b.iv:.4f} < {cfg.min_iv} (too weak)"}
            continue
        worst, worst_r = "", 0.0
        for k in kept:
            r = float(np.corrcoef(woe[b.name], woe[k])[0, 1])
            if math.isfinite(r) and abs(r) > abs(worst_r):
                worst, worst_r = k, r
        if abs(worst_r) > cfg.max_corr:
            entry |= {
                "status": "dropped",
                "reason": f"|corr| {abs(worst_r):.2f} > {cfg.max_corr} with {worst!r} "
                f"(IV {by_iv[worst]:.4f})",
            }
            continue
        if b.iv > 0.5:
            entry["note"] = f"IV {b.iv:.2f} > 0.5: suspiciously strong, check for leakage"
        kept.append(b.name)
    return kept, report


def _fit(
    names: list[str], woe: dict[str, np.ndarray], y: np.ndarray, cfg: TrainConfig,
    report: dict[str, dict[str, Any]],
) -> tuple[list[str], np.ndarray, float]:  # fmt: skip
    """Logistic regression on WOE; drop the most wrong-signed characteristic and refit."""
    from sklearn.linear_model import LogisticRegression

    names = list(names)
    while names:
        X = np.column_stack([woe[n] for n in names])
        lr = LogisticRegression(C=cfg.C, max_iter=2000)
        lr.fit(X, y)
        coef = lr.coef_[0]
        j = int(np.argmax(coef))
        if coef[j] < 0:
            return names, coef, float(lr.intercept_[0])
        report[names[j]] |= {
            "status": "dropped",
            "reason": f"wrong sign: coefficient {coef[j]:+.4f} (must be < 0 with "
            "WOE = ln(good/bad) and target = bad)",
        }
        del names[j]
    raise InputError("no characteristic left after selection and the sign check")


@dataclass
class _Part:
    """One segment's (or the whole card's) fitted characteristics and its rows' points."""

    chars: list[Characteristic]
    intercept: float
    report: dict[str, dict[str, Any]]
    points: np.ndarray  # int64[rows]: each row's score from these characteristics


def _fit_part(df: pd.DataFrame, y: np.ndarray, cfg: TrainConfig, where: str = "") -> _Part:
    """Bin, select, regress and scale one set of rows (a segment, or the whole data)."""
    n_bad = int(y.sum())
    n_good = len(y) - n_bad
    if min(n_bad, n_good) < cfg.min_bads:
        raise InputError(
            f"too few {'bads' if n_bad < n_good else 'goods'} to train{where}: {n_bad} bads and "
            f"{n_good} goods, need at least {cfg.min_bads} of each"
            + (" (fewer segment edges merge small segments)" if where else "")
        )
    binned, idx, unusable = _bin_all(df, y, cfg)
    woe = {b.name: b.woe[idx[b.name]] for b in binned}
    kept, report = _select(binned, woe, cfg)
    for name, why in unusable.items():
        report[name] = {"iv": 0.0, "bins": 0, "status": "dropped", "reason": why}
    names, coef, intercept = _fit(kept, woe, y, cfg, report)
    by_name = {b.name: b for b in binned}
    chars = []
    total = np.zeros(len(y), dtype=np.int64)
    for name, beta in zip(names, coef, strict=True):
        bc = by_name[name]
        pts = bin_points(float(beta), bc.woe, intercept, len(names), cfg.scaling)
        chars.append(bc.characteristic(float(beta), pts))
        total += np.asarray(pts, dtype=np.int64)[idx[name]]
        report[name]["coefficient"] = round(float(beta), 6)
    return _Part(chars, intercept, report, total)


def _same_categories(chars: list[Characteristic]) -> list[Characteristic]:
    """Give every segment's characteristic over a categorical column the union of the levels
    (the kernel's codes are per column); a level a segment never saw goes to its unseen bin."""
    levels: dict[str, list[str]] = {}
    for c in chars:
        if c.kind == "categorical":
            levels[c.name] = sorted({*levels.get(c.name, []), *c.categories})
    out = []
    for c in chars:
        if c.kind == "categorical" and list(c.categories) != levels[c.name]:
            own = dict(zip(c.categories, c.category_bins, strict=True))
            every = levels[c.name]
            bins = tuple(own.get(level, c.unseen_bin) for level in every)
            c = dataclasses.replace(c, categories=tuple(every), category_bins=bins)
        out.append(c)
    return out


def train(df: pd.DataFrame, cfg: TrainConfig) -> Scorecard:
    """Fit a scorecard on ``df``; selection and grade notes land in ``card.training``."""
    seg = cfg.segmentation()
    _require(df, [*cfg.exclude, *cfg.categorical], "column")
    _require(df, [cfg.target], "target column")
    if seg is not None:
        _require(df, [seg.column], "segment column")
        if not is_numeric(df[seg.column]):
            raise InputError(f"segment column {seg.column!r} must be numeric")
    unlabelled = int(df[cfg.target].isna().sum())
    if unlabelled:  # censored outcomes (e.g. ``riskmon history`` rows whose horizon ran past
        # the data): not a good, not a bad
        df = df[df[cfg.target].notna()].reset_index(drop=True)
    y, bad_label = binary_target(df, cfg.target, cfg.bad_value)
    n_bad = int(y.sum())
    if seg is None:
        part = _fit_part(df, y, cfg)
        chars, score, parts = part.chars, part.points.astype(np.float64), [part]
        selection = [{"name": n, **e} for n, e in part.report.items()]
        segments: list[dict[str, Any]] = []
    else:
        column = numeric_values(df[seg.column], seg.column)
        of_row = np.array([seg.segment_of(v) for v in column], dtype=np.int64)
        parts, chars, selection, segments = [], [], [], []
        score = np.zeros(len(y), dtype=np.float64)
        for g, label in enumerate(seg.labels):
            rows = of_row == g
            part = _fit_part(df[rows].reset_index(drop=True), y[rows], cfg, f" segment {label!r}")
            parts.append(part)
            chars += [dataclasses.replace(c, segment=g) for c in part.chars]
            score[rows] = part.points
            selection += [{"segment": label, "name": n, **e} for n, e in part.report.items()]
            segments.append(_segment_summary(label, y[rows], part))
        chars = _same_categories(chars)
    floor = float(min(sum(min(b.points for b in c.bins) for c in p.chars) for p in parts))
    grades, grade_notes = make_grades(score, y, cfg.n_grades, cfg.grade_method, floor)
    qs = np.linspace(0, 1, cfg.baseline_bands + 1)[1:-1]
    edges = sorted({float(np.quantile(score, q)) for q in qs})
    shares = quality.band_shares(score, edges)
    training = {
        "data_hash": data_hash(df),
        "rows": len(y),
        "rows_without_target": unlabelled,
        "bads": n_bad,
        "goods": len(y) - n_bad,
        "bad_value": bad_label,
        "auc": round(quality.auc(y, score), 6),
        "gini": round(quality.gini(y, score), 6),
        "ks": round(quality.ks(y, score), 6),
        "selection": selection,
        **({"segments": segments} if segments else {}),
        "grade_notes": grade_notes,
        "config": {
            "min_iv": cfg.min_iv,
            "max_corr": cfg.max_corr,
            "n_grades": cfg.n_grades,
            "grade_method": cfg.grade_method,
            "C": cfg.C,
            "excluded": list(cfg.exclude),
            **(
                {"segment_by": seg.column, "segment_edges": list(seg.edges)}
                if seg is not None
                else {}
            ),
        },
    }
    return Scorecard(
        characteristics=tuple(chars),
        grades=grades,
        scaling=cfg.scaling,
        intercept=round(parts[0].intercept, 6),
        target=cfg.target,
        training=training,
        score_baseline={"edges": edges, "shares": [round(float(x), 6) for x in shares]},
        segmentation=seg,
    )


def _segment_summary(label: str, y: np.ndarray, part: _Part) -> dict[str, Any]:
    """A segment's rows, bads, own-rows discrimination and regression intercept."""
    both = 0 < int(y.sum()) < len(y)
    s = part.points.astype(np.float64)
    return {
        "label": label,
        "rows": len(y),
        "bads": int(y.sum()),
        "bad_rate": round(float(y.mean()), 6) if len(y) else 0.0,
        "auc": round(quality.auc(y, s), 6) if both else None,
        "ks": round(quality.ks(y, s), 6) if both else None,
        "intercept": round(part.intercept, 6),
        "characteristics": [c.name for c in part.chars],
    }
