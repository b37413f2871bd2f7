"""Delinquency conventions as small pure functions: calendar days, DPD, M-buckets, five categories.

Days are UTC calendar days counted from 1970-01-01 (``day_of``); months are ``year * 12 + month -
1`` (``month_of_day``). DPD is taken at **day end** from the **oldest unpaid instalment**
(docs/domain.md): an instalment due on day D and still unpaid at the end of day T is ``T - D`` days
past due, so a payment on the due date itself is on time.

>>> bucket_index(30), bucket_index(31), bucket_name(181)
(1, 2, 'M7')
>>> FIVE_CATEGORIES[five_category_index(91)]
'substandard'
"""

from __future__ import annotations

import datetime as dt
from array import array
from bisect import bisect_left

__all__ = [
    "DEFAULT_BUCKET_BOUNDS",
    "DEFAULT_BUCKET_NAMES",
    "DEFAULT_FIVE_FLOORS",
    "FIVE_CATEGORIES",
    "bucket_index",
    "bucket_name",
    "day_of",
    "day_of_date",
    "dpd_at",
    "five_category_index",
    "month_end_day",
    "month_of_day",
    "month_start_day",
]

# M0 current, M1 1-30, M2 31-60, ..., M6 151-180, M7 180+.
# Bucket i holds DPD in (bounds[i-1], bounds[i]].
DEFAULT_BUCKET_BOUNDS: tuple[int, ...] = (0, 30, 60, 90, 120, 150, 180)
DEFAULT_BUCKET_NAMES: tuple[str, ...] = ("M0", "M1", "M2", "M3", "M4", "M5", "M6", "M7")

FIVE_CATEGORIES: tuple[str, ...] = ("normal", "special_mention", "substandard", "doubtful", "loss")
# Floors by DPD (2023 Measures): overdue -> special mention, > 90 substandard, > 270 doubtful,
# > 360 loss. Category i is the floor once DPD exceeds floors[i-1].
DEFAULT_FIVE_FLOORS: tuple[int, ...] = (0, 90, 270, 360)

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_TABLE_DAYS = 366 * 200  # 1970 .. ~2170: table lookup, arithmetic fallback outside


def _month_arith(day: int) -> int:
    d = dt.date.fromordinal(day + _EPOCH_ORDINAL)
    return d.year * 12 + d.month - 1


def _build_month_table() -> array[int]:
    out = array("H")
    d = dt.date(1970, 1, 1)
    one = dt.timedelta(days=1)
    for _ in range(_TABLE_DAYS):
        out.append(d.year * 12 + d.month - 1 - 1970 * 12)
        d += one
    return out


_MONTH_OF = _build_month_table()
_MONTH0 = 1970 * 12


def day_of(ts: float) -> int:
    """UTC calendar day number of an epoch-seconds timestamp."""
    return int(ts // 86400)


def day_of_date(d: dt.date) -> int:
    """Day number of a calendar date (a due date)."""
    return d.toordinal() - _EPOCH_ORDINAL


def month_of_day(day: int) -> int:
    """Month number ``year * 12 + month - 1`` of a day number."""
    if 0 <= day < _TABLE_DAYS:
        return _MONTH_OF[day] + _MONTH0
    return _month_arith(day)


def month_start_day(month: int) -> int:
    """First day number of a month number."""
    return dt.date(month // 12, month % 12 + 1, 1).toordinal() - _EPOCH_ORDINAL


def month_end_day(month: int) -> int:
    """Last day number of a month number."""
    return month_start_day(month + 1) - 1


def dpd_at(due_day: int | None, day: int) -> int:
    """Days past due at the end of ``day`` for the oldest unpaid instalment due on ``due_day``.

    ``None`` (nothing unpaid) and instalments not yet past their due date give 0.

    >>> dpd_at(100, 100), dpd_at(100, 101), dpd_at(None, 500)
    (0, 1, 0)
    """
    if due_day is None or day <= due_day:
        return 0
    return day - due_day


def bucket_index(dpd: int, bounds: tuple[int, ...] = DEFAULT_BUCKET_BOUNDS) -> int:
    """Index of the M-bucket holding ``dpd``: bucket i covers ``(bounds[i-1], bounds[i]]``."""
    return bisect_left(bounds, dpd)


def bucket_name(
    dpd: int,
    bounds: tuple[int, ...] = DEFAULT_BUCKET_BOUNDS,
    names: tuple[str, ...] = DEFAULT_BUCKET_NAMES,
) -> str:
    """Name of the M-bucket holding ``dpd`` (M0 .. M7 by default)."""
    return names[bisect_left(bounds, dpd)]


def five_category_index(dpd: int, floors: tuple[int, ...] = DEFAULT_FIVE_FLOORS) -> int:
    """Index into :data:`FIVE_CATEGORIES` of the floor implied by ``dpd``."""
    return bisect_left(floors, dpd)
