"""The numba twin of ``features._cash_columns``: cash runway, inflow trend and inflow slope.

Called by ``_features_kernel.fill_packed`` with the merged month rows by age (0 = the as-of
month); kept apart from it as its own concept (complete months of cash flow). Sums run in age
order, as the reference's do, so the rows are bit-equal (``tests/unit/test_features_kernel.py``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from streams.core.state import INFLOW, OUTFLOW

__all__ = ["cash_fill"]

_NAN = np.nan


@njit(nogil=True, cache=True)
def cash_fill(
    rows: np.ndarray, has: np.ndarray, bal: int, bal_known: bool, limit: int, out: np.ndarray
) -> bool:
    """Write runway, trend and slope into ``out[0:3]``; False if the runway would divide a
    balance beyond ``limit`` (the caller then declines: only exact int -> float conversions)."""
    out3 = 0
    seen3 = 0
    for age in range(1, 4):
        if has[age]:
            out3 += rows[age, OUTFLOW]
            seen3 += 1
    runway = _NAN
    if out3 > 0 and bal_known:
        if bal >= limit or bal <= -limit:
            return False
        runway = bal * seen3 / out3
    base_log = 0.0
    base_in = 0
    seen = 0
    for age in range(2, 5):
        if has[age]:
            base_in += rows[age, INFLOW]
            base_log += np.log1p(rows[age, INFLOW] / 100)
            seen += 1
    in_last = rows[1, INFLOW] if has[1] else 0
    trend = np.log1p(in_last / 100) - base_log / seen if base_in > 0 else _NAN
    acc = 0.0
    total = 0
    whole = True
    for age in range(4, 0, -1):
        if not has[age]:
            whole = False
            break
        total += rows[age, INFLOW]
        acc += (2.5 - age) * np.log1p(rows[age, INFLOW] / 100)
    out[0] = runway
    out[1] = trend
    out[2] = acc / 5.0 if whole and total > 0 else _NAN
    return True
