"""Tabular input for train/score/evaluate: reading files, target and column checks, and the
DataFrame -> float64 matrix conversion the kernel scores (NaN = missing, categoricals as codes).

Every user mistake becomes an :class:`InputError` with a one-line message.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from scoring.artifact import Scorecard
from scoring.errors import InputError

__all__ = [
    "FeatureMatrix",
    "binary_target",
    "data_hash",
    "is_numeric",
    "level_strings",
    "read_table",
    "require_columns",
    "to_matrix",
]

_BAD_DEFAULTS = ("bad", "1", "yes", "true", "default", "defaulted")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file (by extension; anything else is read as CSV)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"data file not found: {p}")
    try:
        df = pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pd.read_csv(p)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {p}: {first}") from exc
    if df.empty:
        raise InputError(f"{p} has no rows")
    df.columns = [str(c) for c in df.columns]
    return df


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write CSV, or Parquet when the extension is .parquet/.pq."""
    p = Path(path)
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            df.to_parquet(p, index=False)
        else:
            df.to_csv(p, index=False)
    except OSError as exc:
        raise InputError(f"cannot write {p}: {exc.strerror}") from exc


def require_columns(df: pd.DataFrame, columns: list[str], what: str = "column") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns[:12])) + (", ..." if len(df.columns) > 12 else "")
        raise InputError(
            f"{what}{'s' if len(missing) > 1 else ''} not in the data: {', '.join(missing)} "
            f"(have: {have})"
        )


def binary_target(
    df: pd.DataFrame, column: str, bad_value: str | None = None
) -> tuple[np.ndarray, str]:
    """The target as int8 (1 = bad) and the label taken as bad. Accepts 0/1 or any two labels.

    Which label is "bad": ``bad_value`` if given, else the label among ``bad``/``1``/``yes``/
    ``true``/``default`` (case-insensitive). Missing target values are an error.
    """
    require_columns(df, [column], "target column")
    s = df[column]
    if s.isna().any():
        raise InputError(f"target {column!r} has {int(s.isna().sum())} missing values")
    labels = sorted({_label(v) for v in s.unique()})
    if len(labels) != 2:
        shown = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
        raise InputError(
            f"target {column!r} must be binary, found {len(labels)} distinct values: {shown}"
        )
    if bad_value is not None:
        if bad_value not in labels:
            raise InputError(
                f"--bad-value {bad_value!r} is not a value of target {column!r} "
                f"(values: {', '.join(labels)})"
            )
        bad = bad_value
    else:
        found = [lab for lab in labels if lab.lower() in _BAD_DEFAULTS]
        if len(found) != 1:
            raise InputError(
                f"cannot tell which value of target {column!r} is bad "
                f"({', '.join(labels)}): pass --bad-value"
            )
        bad = found[0]
    return np.asarray([_label(v) == bad for v in s], dtype=np.int8), bad


def _label(v: object) -> str:
    """Target value as text; 1 and 1.0 and "1" are the same label."""
    if isinstance(v, bool | np.bool_):
        return "1" if v else "0"
    if isinstance(v, int | float | np.integer | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def is_numeric(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s)) and not pd.api.types.is_bool_dtype(s)


def level_strings(s: pd.Series) -> np.ndarray:
    """Categorical levels as strings (object array, None = missing); 3 and 3.0 give "3"."""
    out = np.empty(len(s), dtype=object)
    for i, v in enumerate(s.to_numpy(dtype=object)):
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            out[i] = None
        else:
            text = _label(v)
            out[i] = text if text != "" else None
    return out


def numeric_values(s: pd.Series, name: str) -> np.ndarray:
    """A numeric column as float64 (NaN = missing); text that is not a number is an error."""
    if is_numeric(s):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    conv = pd.to_numeric(s, errors="coerce")
    bad = conv.isna() & s.notna() & (s.astype(str).str.strip() != "")
    if bad.any():
        example = s[bad].iloc[0]
        raise InputError(
            f"column {name!r} must be numeric, found {example!r} ({int(bad.sum())} such rows)"
        )
    return conv.to_numpy(dtype=np.float64, na_value=np.nan)


class FeatureMatrix(NamedTuple):
    """Kernel input built from a DataFrame, plus unseen-category counts per characteristic."""

    X: np.ndarray  # float64[n, k], columns in card order
    unseen: dict[str, int]


def to_matrix(df: pd.DataFrame, card: Scorecard) -> FeatureMatrix:
    """Map ``df``'s columns to the card's input columns (numeric as float, categoricals as codes
    by the card's ``categories``, unseen levels -> -1 and counted, missing -> NaN)."""
    require_columns(df, card.names, "scorecard characteristic")
    X = np.empty((len(df), len(card.names)), dtype=np.float64)
    unseen: dict[str, int] = {}
    for j, name in enumerate(card.names):
        c = card.column_template(name)
        if c is None or c.kind == "numeric":  # None: the segmentation column, numeric
            X[:, j] = numeric_values(df[name], name)
            continue
        codes = {level: float(i) for i, level in enumerate(c.categories)}
        levels = level_strings(df[c.name])
        col = np.array(
            [np.nan if v is None else codes.get(v, -1.0) for v in levels], dtype=np.float64
        )
        unseen[c.name] = int((col == -1.0).sum())
        X[:, j] = col
    return FeatureMatrix(X, unseen)


def data_hash(df: pd.DataFrame) -> str:
    """Content hash of a DataFrame (column names and values, not the file's bytes)."""
    h = hashlib.sha256()
    h.update("\x1f".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return "sha256:" + h.hexdigest()[:32]
