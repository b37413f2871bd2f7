"""Delinquency conventions: DPD at day end, M-buckets, five-category floors, calendar helpers."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.delinquency import (
    DEFAULT_BUCKET_NAMES,
    FIVE_CATEGORIES,
    bucket_index,
    bucket_name,
    day_of,
    day_of_date,
    dpd_at,
    five_category_index,
    month_end_day,
    month_of_day,
    month_start_day,
)


def test_dpd_is_zero_on_the_due_date_and_counts_days_after() -> None:
    """An instalment unpaid at the end of its due date is not yet past due; the next day it is 1."""
    assert dpd_at(100, 99) == 0
    assert dpd_at(100, 100) == 0
    assert dpd_at(100, 101) == 1
    assert dpd_at(100, 145) == 45
    assert dpd_at(None, 145) == 0


@pytest.mark.parametrize(
    ("dpd", "name"),
    [
        (0, "M0"),
        (1, "M1"),
        (30, "M1"),
        (31, "M2"),
        (60, "M2"),
        (61, "M3"),
        (90, "M3"),
        (91, "M4"),
        (120, "M4"),
        (121, "M5"),
        (150, "M5"),
        (151, "M6"),
        (180, "M6"),
        (181, "M7"),
        (5000, "M7"),
    ],
)
def test_default_m_buckets_follow_domain_md(dpd: int, name: str) -> None:
    """M0 current, M1 1-30, ..., M6 151-180, M7 180+."""
    assert name == bucket_name(dpd)
    assert name == DEFAULT_BUCKET_NAMES[bucket_index(dpd)]


def test_buckets_are_configuration() -> None:
    """A 30/60/90/120+ scheme with its own names."""
    bounds, names = (0, 30, 60, 90, 120), ("current", "30", "60", "90", "120", "120+")
    assert [bucket_name(d, bounds, names) for d in (0, 1, 30, 31, 120, 121)] == [
        "current",
        "30",
        "30",
        "60",
        "120",
        "120+",
    ]


@pytest.mark.parametrize(
    ("dpd", "category"),
    [
        (0, "normal"),
        (1, "special_mention"),
        (90, "special_mention"),
        (91, "substandard"),
        (270, "substandard"),
        (271, "doubtful"),
        (360, "doubtful"),
        (361, "loss"),
    ],
)
def test_five_category_floor_by_dpd(dpd: int, category: str) -> None:
    """Overdue -> special mention, > 90 substandard, > 270 doubtful, > 360 loss."""
    assert category == FIVE_CATEGORIES[five_category_index(dpd)]


def test_day_numbers_are_utc_calendar_days() -> None:
    """A timestamp just before UTC midnight and one just after fall on consecutive days."""
    before = dt.datetime(2024, 3, 9, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    after = dt.datetime(2024, 3, 10, 0, 0, 0, tzinfo=dt.UTC).timestamp()
    assert day_of(before) + 1 == day_of(after)
    assert day_of(after) == day_of_date(dt.date(2024, 3, 10))
    assert day_of_date(dt.date(1970, 1, 1)) == 0


@settings(max_examples=200)
@given(st.dates(min_value=dt.date(1950, 1, 1), max_value=dt.date(2300, 12, 31)))
def test_month_helpers_agree_with_the_calendar(d: dt.date) -> None:
    """month_of_day, month_start_day and month_end_day match datetime for any date."""
    day = day_of_date(d)
    m = month_of_day(day)
    assert d.year * 12 + d.month - 1 == m
    assert day_of_date(d.replace(day=1)) == month_start_day(m)
    nxt = dt.date(d.year + d.month // 12, d.month % 12 + 1, 1)
    assert day_of_date(nxt) - 1 == month_end_day(m)
