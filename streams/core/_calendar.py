"""Calendar arithmetic for the kernels: the numba twins of ``delinquency.month_of_day`` and
``month_start_day`` (Howard Hinnant's civil-from-days; proleptic Gregorian like datetime)."""

from __future__ import annotations

from numba import njit

__all__ = ["month_of_day", "month_start_day"]


@njit(nogil=True, cache=True)
def month_of_day(day: int) -> int:
    """``streams.core.delinquency.month_of_day``: day number -> ``year * 12 + month - 1``."""
    z = day + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return y * 12 + m - 1


@njit(nogil=True, cache=True)
def month_start_day(month: int) -> int:
    """First day number of a month number (days from civil)."""
    y = month // 12
    m = month % 12 + 1
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
