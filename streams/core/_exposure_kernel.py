"""The numba twin of :func:`streams.core.exposure.exposure_cents`, on the feature kernel's packed
state (:func:`streams.core._features_pack.pack`): the state kernel calls it after each applied
event, beside the feature row. Same operations in the same order as the reference, so the
cents are equal (``tests/unit/test_exposure.py``)."""

from __future__ import annotations

import numpy as np
from numba import njit

from streams.core._features_pack import (
    _CLOSED,
    _HDR,
    _LOAN,
    _ND,
    _NL,
    _NM,
    _NP,
    _NPEND,
    _NREP,
    _PAID,
    _RATE,
    _ROW,
)

__all__ = ["exposure_packed"]


@njit(nogil=True, cache=True)
def _unpaid_value(buf: np.ndarray, a0: int, nd: int, paid: int, rate_ppm: int) -> float:
    """``exposure.unpaid_value`` of the amounts ``buf[a0:a0 + nd]``."""
    r = rate_ppm / 12_000_000.0 if rate_ppm > 0 else 0.0
    v = 1.0 / (1.0 + r)
    f = v
    before = 0
    value = 0.0
    started = False
    for k in range(nd):
        a = buf[a0 + k]
        covered = min(max(paid - before, 0), a)
        before += a
        left = a - covered
        if not started:
            if left <= 0:
                continue
            started = True
        value += left * f
        f *= v
    return value


@njit(nogil=True, cache=True)
def exposure_packed(buf: np.ndarray, day: int) -> int:
    """Outstanding principal in cents of the packed state ``buf`` at the end of ``day``."""
    base = _HDR + buf[_NM] * _ROW + buf[_NP]
    total = 0.0
    for _j in range(buf[_NL]):
        nd = buf[base + _ND]
        npend = buf[base + _NPEND]
        a0 = base + _LOAN + nd
        p0 = a0 + nd
        if buf[base + _CLOSED] < 0:
            paid = buf[base + _PAID]
            for k in range(npend):
                if buf[p0 + 2 * k] <= day:
                    paid += buf[p0 + 2 * k + 1]
            total += _unpaid_value(buf, a0, nd, paid, buf[base + _RATE])
        base = p0 + 2 * npend + 4 * buf[base + _NREP]  # then the lender's reports, 4 ints each
    return int(total + 0.5)
