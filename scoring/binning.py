"""Supervised binning of one characteristic, WOE and IV.

Split points come from optbinning's ``OptimalBinning`` (constrained optimal binning: monotonic
bad-rate trend, minimum bin share, maximum bin count, rare categorical levels grouped by
``cat_cutoff``), or from manual edges / category groups in a JSON spec, because modellers always
adjust bins by hand. Missing values and each special value get their own bins; optbinning only
sees the regular values. Bin layout and edge convention are those of :mod:`scoring.artifact`.

WOE sign (the artifact's): ``woe = ln(share_of_goods / share_of_bads)``, positive = safer. Every
non-empty bin's counts get ``+0.5`` (``SMOOTHING``) so a bin with no goods or no bads has a
finite WOE; a bin with no training rows (e.g. "missing" when nothing was missing) has WOE 0.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scoring.artifact import Bin, Characteristic, Kind
from scoring.errors import InputError

__all__ = [
    "SMOOTHING",
    "BinOptions",
    "BinnedColumn",
    "BinningSpec",
    "bin_categorical",
    "bin_numeric",
    "load_spec",
    "woe_iv",
]

SMOOTHING = 0.5

Trend = Literal["ascending", "descending", "auto", "none"]
_OPTB_TREND: dict[str, str | None] = {
    "ascending": "ascending",
    "descending": "descending",
    "auto": "auto_asc_desc",
    "none": None,
}


@dataclass(frozen=True, slots=True)
class BinOptions:
    """How to bin one characteristic. ``monotonic_trend`` is the bad rate's trend as the value
    grows (categoricals: levels are ordered by bad rate, so any trend but "none" is monotonic)."""

    monotonic_trend: Trend = "auto"
    min_bin_size: float = 0.05  # minimum share of the regular (non-missing, non-special) rows
    max_n_bins: int = 5
    cat_cutoff: float = 0.02  # categorical levels rarer than this share are grouped together
    special_values: tuple[float, ...] = ()
    edges: tuple[float, ...] | None = None  # manual numeric split points (no optimisation)
    groups: tuple[tuple[str, ...], ...] | None = None  # manual categorical groups
    label: str | None = None  # reason text stem; defaults to the column name

    def check(self, where: str) -> None:
        if self.monotonic_trend not in _OPTB_TREND:
            raise InputError(
                f"{where}: monotonic_trend must be one of {', '.join(_OPTB_TREND)}, "
                f"got {self.monotonic_trend!r}"
            )
        if not 0.0 < self.min_bin_size < 0.5:
            raise InputError(f"{where}: min_bin_size must be in (0, 0.5), got {self.min_bin_size}")
        if self.max_n_bins < 2:
            raise InputError(f"{where}: max_n_bins must be >= 2, got {self.max_n_bins}")
        if not 0.0 <= self.cat_cutoff < 0.5:
            raise InputError(f"{where}: cat_cutoff must be in [0, 0.5), got {self.cat_cutoff}")
        if any(not math.isfinite(v) for v in self.special_values):
            raise InputError(f"{where}: special_values must be finite numbers")
        if self.edges is not None and any(not math.isfinite(e) for e in self.edges):
            raise InputError(f"{where}: edges must be finite numbers")


@dataclass(frozen=True, slots=True)
class BinningSpec:
    """Binning options: ``defaults`` for every column, overridden per column."""

    defaults: BinOptions = BinOptions()
    columns: dict[str, BinOptions] = field(default_factory=dict)

    def for_column(self, name: str) -> BinOptions:
        return self.columns.get(name, self.defaults)


def _options(raw: Any, base: BinOptions, where: str) -> BinOptions:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected an object of binning options")
    known = {f.name for f in fields(BinOptions)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"{where}: unknown option(s) {', '.join(unknown)}")
    kw: dict[str, Any] = {}
    try:
        for k, v in raw.items():
            if k in ("special_values", "edges"):
                kw[k] = tuple(sorted({float(e) for e in v}))
            elif k == "groups":
                kw[k] = tuple(tuple(str(level) for level in g) for g in v)
            elif k in ("min_bin_size", "cat_cutoff"):
                kw[k] = float(v)
            elif k == "max_n_bins":
                kw[k] = int(v)
            else:
                kw[k] = None if v is None else str(v)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: bad value ({exc})") from exc
    opts = replace(base, **kw)
    opts.check(where)
    return opts


def load_spec(path: str | Path | None) -> BinningSpec:
    """Read a binning spec: ``{"defaults": {...}, "columns": {"col": {...}}}``.

    Options: monotonic_trend, min_bin_size, max_n_bins, cat_cutoff, special_values, edges,
    groups, label. Column options start from the defaults.
    """
    if path is None:
        return BinningSpec()
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except OSError as exc:
        raise InputError(f"cannot read binning spec {p}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"binning spec {p}: invalid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(raw, dict) or set(raw) - {"defaults", "columns"}:
        raise InputError(f"binning spec {p}: expected an object with 'defaults' and/or 'columns'")
    defaults = _options(raw.get("defaults", {}), BinOptions(), f"{p}: defaults")
    cols_raw = raw.get("columns", {})
    if not isinstance(cols_raw, dict):
        raise InputError(f"binning spec {p}: 'columns' must be an object")
    columns = {
        str(name): _options(o, defaults, f"{p}: column {name!r}") for name, o in cols_raw.items()
    }
    return BinningSpec(defaults, columns)


def woe_iv(goods: np.ndarray, bads: np.ndarray) -> tuple[np.ndarray, float]:
    """WOE per bin (``ln(%good/%bad)``, smoothed) and the characteristic's information value.

    >>> w, iv = woe_iv(np.array([90, 10]), np.array([10, 90]))
    >>> bool(w[0] > 0 > w[1]), round(iv, 3)
    (True, 3.412)
    """
    g = np.asarray(goods, dtype=np.float64)
    b = np.asarray(bads, dtype=np.float64)
    used = (g + b) > 0
    m = int(used.sum())
    pg = np.where(used, (g + SMOOTHING) / (g.sum() + SMOOTHING * m), 0.0)
    pb = np.where(used, (b + SMOOTHING) / (b.sum() + SMOOTHING * m), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        woe = np.where(used, np.log(pg / pb), 0.0)
    iv = float(np.sum((pg - pb) * woe))
    return woe, iv


@dataclass(frozen=True, slots=True)
class BinnedColumn:
    """A binned characteristic with its training counts, WOE and IV (before the regression)."""

    name: str
    kind: Kind
    label: str
    bin_labels: tuple[str, ...]
    goods: np.ndarray
    bads: np.ndarray
    woe: np.ndarray
    iv: float
    missing_bin: int
    edges: tuple[float, ...] = ()
    special_values: tuple[float, ...] = ()
    special_bins: tuple[int, ...] = ()
    categories: tuple[str, ...] = ()
    category_bins: tuple[int, ...] = ()
    unseen_bin: int = -1

    def assign(self, values: np.ndarray) -> np.ndarray:
        """Bin index of each value (numeric: float64 with NaN; categorical: str/None objects)."""
        return (
            _assign_numeric(values, self.edges, self.special_values, self.special_bins,
                            self.missing_bin)
            if self.kind == "numeric"
            else _assign_categorical(values, self.categories, self.category_bins,
                                     self.missing_bin, self.unseen_bin)
        )  # fmt: skip

    def characteristic(self, coefficient: float, points: list[int]) -> Characteristic:
        """The artifact's characteristic, once the regression has given points per bin."""
        n = self.goods + self.bads
        bins = tuple(
            Bin(
                label=lab,
                points=int(p),
                woe=round(float(w), 6),
                count=int(c),
                bad_rate=round(float(b / c), 6) if c else 0.0,
            )
            for lab, p, w, c, b in zip(self.bin_labels, points, self.woe, n, self.bads, strict=True)
        )
        return Characteristic(
            name=self.name,
            label=self.label,
            kind=self.kind,
            coefficient=round(float(coefficient), 6),
            iv=round(self.iv, 6),
            bins=bins,
            missing_bin=self.missing_bin,
            edges=self.edges,
            special_values=self.special_values,
            special_bins=self.special_bins,
            categories=self.categories,
            category_bins=self.category_bins,
            unseen_bin=self.unseen_bin,
        )


def _assign_numeric(
    x: np.ndarray,
    edges: tuple[float, ...],
    special_values: tuple[float, ...],
    special_bins: tuple[int, ...],
    missing_bin: int,
) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), x, side="right").astype(np.int64)
    idx[np.isnan(x)] = missing_bin
    for v, b in zip(special_values, special_bins, strict=True):
        idx[x == v] = b
    return idx


def _assign_categorical(
    levels: np.ndarray,
    categories: tuple[str, ...],
    category_bins: tuple[int, ...],
    missing_bin: int,
    unseen_bin: int,
) -> np.ndarray:
    lookup = dict(zip(categories, category_bins, strict=True))
    return np.array(
        [missing_bin if v is None else lookup.get(v, unseen_bin) for v in levels], dtype=np.int64
    )


def _fmt(v: float) -> str:
    return f"{v:g}"


def _interval_labels(edges: tuple[float, ...]) -> list[str]:
    if not edges:
        return ["all values"]
    labels = [f"< {_fmt(edges[0])}"]
    labels += [f"[{_fmt(a)}, {_fmt(b)})" for a, b in itertools.pairwise(edges)]
    labels.append(f">= {_fmt(edges[-1])}")
    return labels


def _counts(idx: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    bads = np.bincount(idx, weights=y, minlength=n_bins).round().astype(np.int64)
    total = np.bincount(idx, minlength=n_bins).astype(np.int64)
    return total - bads, bads


def _optimal_binning(name: str, dtype: str, x: np.ndarray, y: np.ndarray, opts: BinOptions) -> Any:
    """Fit optbinning on the regular values; ``None`` when there is nothing to split."""
    if len(x) < 2 or y.min() == y.max():
        return None
    from optbinning import OptimalBinning

    kw: dict[str, Any] = {
        "name": name,
        "dtype": dtype,
        "monotonic_trend": _OPTB_TREND[opts.monotonic_trend],
        "min_bin_size": opts.min_bin_size,
        "max_n_bins": opts.max_n_bins,
    }
    if dtype == "categorical" and opts.cat_cutoff > 0:
        kw["cat_cutoff"] = opts.cat_cutoff
    ob = OptimalBinning(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ob.fit(x, y)
        except ValueError:  # e.g. every level rarer than cat_cutoff (an id column): no split
            return None
    return ob


def bin_numeric(name: str, x: np.ndarray, y: np.ndarray, opts: BinOptions) -> BinnedColumn:
    """Bin a numeric column. Layout: interval bins, then "missing", then one bin per special."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    specials = tuple(sorted(set(opts.special_values)))
    regular = ~np.isnan(x) & ~np.isin(x, specials)
    if opts.edges is not None:
        edges = tuple(sorted(set(opts.edges)))
    else:
        ob = _optimal_binning(name, "numerical", x[regular], y[regular], opts)
        edges = () if ob is None else tuple(float(e) for e in ob.splits)
    n_int = len(edges) + 1
    missing_bin = n_int
    special_bins = tuple(range(n_int + 1, n_int + 1 + len(specials)))
    labels = (*_interval_labels(edges), "missing", *(f"special {_fmt(v)}" for v in specials))
    idx = _assign_numeric(x, edges, specials, special_bins, missing_bin)
    goods, bads = _counts(idx, y, len(labels))
    woe, iv = woe_iv(goods, bads)
    return BinnedColumn(
        name=name,
        kind="numeric",
        label=opts.label or name,
        bin_labels=labels,
        goods=goods,
        bads=bads,
        woe=woe,
        iv=iv,
        missing_bin=missing_bin,
        edges=edges,
        special_values=specials,
        special_bins=special_bins,
    )


def _group_label(levels: list[str]) -> str:
    text = "|".join(levels)
    return text if len(text) <= 60 else text[:57] + "..."


def bin_categorical(name: str, levels: np.ndarray, y: np.ndarray, opts: BinOptions) -> BinnedColumn:
    """Bin a categorical column (levels as str, None = missing). Layout: one bin per group of
    levels, then "missing or unseen" (levels never seen in training are scored there)."""
    y = np.asarray(y, dtype=np.int64)
    present = np.array([v is not None for v in levels], dtype=bool)
    seen = sorted({v for v in levels if v is not None})
    groups: list[list[str]]
    if opts.groups is not None:
        groups = [list(g) for g in opts.groups]
        listed = {level for g in groups for level in g}
        dupes = sorted({lv for lv in listed if sum(lv in g for g in groups) > 1})
        if dupes:
            raise InputError(f"column {name!r}: level(s) in more than one group: {dupes}")
        rest = [v for v in seen if v not in listed]
        if rest:
            groups.append(rest)
    else:
        x = np.asarray(levels[present], dtype=object)
        ob = _optimal_binning(name, "categorical", x, y[present], opts)
        if ob is None:
            groups = [seen] if seen else []
        else:
            idx = ob.transform(np.asarray(seen, dtype=object), metric="indices")
            n_groups = int(max(idx)) + 1 if len(idx) else 0
            groups = [
                [v for v, i in zip(seen, idx, strict=True) if i == g] for g in range(n_groups)
            ]
            groups = [g for g in groups if g]
    categories = tuple(sorted({level for g in groups for level in g}))
    where = {level: gi for gi, g in enumerate(groups) for level in g}
    category_bins = tuple(where[c] for c in categories)
    missing_bin = len(groups)
    labels = (*(_group_label(g) for g in groups), "missing or unseen")
    idx = _assign_categorical(levels, categories, category_bins, missing_bin, missing_bin)
    goods, bads = _counts(idx, y, len(labels))
    woe, iv = woe_iv(goods, bads)
    return BinnedColumn(
        name=name,
        kind="categorical",
        label=opts.label or name,
        bin_labels=labels,
        goods=goods,
        bads=bads,
        woe=woe,
        iv=iv,
        missing_bin=missing_bin,
        categories=categories,
        category_bins=category_bins,
        unseen_bin=missing_bin,
    )
