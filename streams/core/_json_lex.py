"""The JSON lexing primitives of the intake kernel (:mod:`streams.core._intake_kernel`): each
reads one token of a message's bytes at a position and returns where it ends, or ``_FAIL`` for
anything it cannot read exactly as msgspec would (the kernel then declines the message to
msgspec). Numbers, ISO dates and RFC 3339 times are parsed here too; the kernel's parity tests
(``tests/unit/test_intake_kernel.py``) cover them through the scan."""

from __future__ import annotations

import numpy as np
from numba import njit

_POW10 = np.array([10.0**k for k in range(16)])  # exact doubles
_FAIL = -1
_NO_DAY = -1_000_000_000  # not a valid date
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


@njit(nogil=True, cache=True)
def _ws(buf: np.ndarray, p: int, end: int) -> int:
    while p < end and (buf[p] == 32 or buf[p] == 9 or buf[p] == 10 or buf[p] == 13):
        p += 1
    return p


@njit(nogil=True, cache=True)
def _string(buf: np.ndarray, p: int, end: int) -> int:
    """End of the string opening at ``p`` (its closing quote), or _FAIL: not a plain one."""
    if p >= end or buf[p] != 34:
        return _FAIL
    p += 1
    while p < end:
        c = buf[p]
        if c == 34:
            return p
        if c < 32 or c > 126 or c == 92:  # control, non-ASCII, escape: msgspec's
            return _FAIL
        p += 1
    return _FAIL


@njit(nogil=True, cache=True)
def _word(buf: np.ndarray, a: int, b: int, words: np.ndarray, lens: np.ndarray, lo: int) -> int:
    """Index of the word ``buf[a:b]`` among ``words[lo:lo + 3]`` (kinds) or all (lo < 0)."""
    first, last = (0, len(lens)) if lo < 0 else (lo, lo + 3)
    n = b - a
    for w in range(first, last):
        if lens[w] != n:
            continue
        same = True
        for j in range(n):
            if buf[a + j] != words[w, j]:
                same = False
                break
        if same:
            return w
    return _FAIL


@njit(nogil=True, cache=True)
def _digits(buf: np.ndarray, p: int, end: int) -> int:
    while p < end and 48 <= buf[p] <= 57:
        p += 1
    return p


@njit(nogil=True, cache=True)
def _number(buf: np.ndarray, p: int, end: int) -> tuple[int, float, bool]:
    """A JSON number at ``p``: (its end, value, whether it was an integer literal); end is
    _FAIL for what is declined (not a number, an exponent, more than 15 digits)."""
    neg = p < end and buf[p] == 45
    if neg:
        p += 1
    q = _digits(buf, p, end)
    if q == p or (buf[p] == 48 and q > p + 1):  # no digits, or a leading zero
        return _FAIL, 0.0, False
    m = 0
    nd = q - p
    for j in range(p, q):
        m = m * 10 + (buf[j] - 48)
    frac = 0
    is_int = True
    if q < end and buf[q] == 46:
        r = _digits(buf, q + 1, end)
        frac = r - q - 1
        if frac == 0:
            return _FAIL, 0.0, False
        for j in range(q + 1, r):
            m = m * 10 + (buf[j] - 48)
        nd += frac
        q = r
        is_int = False
    if nd > 15 or (q < end and (buf[q] == 101 or buf[q] == 69)):
        return _FAIL, 0.0, False
    x = m / _POW10[frac]
    return q, -x if neg else x, is_int


@njit(nogil=True, cache=True)
def _null(buf: np.ndarray, p: int, end: int) -> int:
    """End of a ``null`` at ``p``, or _FAIL."""
    if p + 4 <= end and buf[p] == 110 and buf[p + 1] == 117:
        return p + 4 if buf[p + 2] == 108 and buf[p + 3] == 108 else _FAIL
    return _FAIL


@njit(nogil=True, cache=True)
def _num(buf: np.ndarray, a: int, n: int) -> int:
    """The ``n`` ASCII digits at ``a`` as an int, or -1."""
    v = 0
    for j in range(a, a + n):
        c = buf[j]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@njit(nogil=True, cache=True)
def _days(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 to a valid date (Howard Hinnant's days_from_civil), or _NO_DAY."""
    if y < 1 or m < 1 or m > 12 or d < 1:
        return _NO_DAY
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if d > (29 if m == 2 and leap else _MONTH_DAYS[m]):
        return _NO_DAY
    yy = y - 1 if m <= 2 else y
    era = yy // 400  # yy >= 0
    yoe = yy - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


@njit(nogil=True, cache=True)
def _date(buf: np.ndarray, a: int, b: int) -> int:
    """Day number of a ``YYYY-MM-DD`` string's content ``buf[a:b]``, or _NO_DAY."""
    if b - a != 10 or buf[a + 4] != 45 or buf[a + 7] != 45:
        return _NO_DAY
    y, m, d = _num(buf, a, 4), _num(buf, a + 5, 2), _num(buf, a + 8, 2)
    if y < 0 or m < 0 or d < 0:
        return _NO_DAY
    return _days(y, m, d)


@njit(nogil=True, cache=True)
def _time(buf: np.ndarray, a: int, b: int) -> tuple[bool, float]:
    """An RFC 3339 time ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM|-HH:MM)`` as epoch seconds,
    computed as ``datetime.timestamp`` does (whole microseconds / 1e6)."""
    if b - a < 20 or buf[a + 10] != 84 or buf[a + 13] != 58 or buf[a + 16] != 58:
        return False, 0.0
    y = _num(buf, a, 4)
    if y < 1900 or y > 2199:  # microseconds since 1970 stay exact in a double
        return False, 0.0
    day = _date(buf, a, a + 10)
    hh, mi, ss = _num(buf, a + 11, 2), _num(buf, a + 14, 2), _num(buf, a + 17, 2)
    if day == _NO_DAY or hh < 0 or hh > 23 or mi < 0 or mi > 59 or ss < 0 or ss > 59:
        return False, 0.0
    p = a + 19
    us = 0
    if buf[p] == 46:
        q = _digits(buf, p + 1, b)
        nf = q - p - 1
        if nf < 1 or nf > 6:
            return False, 0.0
        us = _num(buf, p + 1, nf)
        for _ in range(6 - nf):
            us *= 10
        p = q
    off = 0
    if p + 1 == b and buf[p] == 90:  # Z
        off = 0
    elif p + 6 == b and (buf[p] == 43 or buf[p] == 45) and buf[p + 3] == 58:
        oh, om = _num(buf, p + 1, 2), _num(buf, p + 4, 2)
        if oh < 0 or oh > 23 or om < 0 or om > 59:
            return False, 0.0
        off = oh * 3600 + om * 60
        if buf[p] == 45:
            if off == 0:  # "-00:00" (RFC 3339's unknown offset): left to msgspec
                return False, 0.0
            off = -off
    else:
        return False, 0.0
    secs = day * 86400 + hh * 3600 + mi * 60 + ss - off
    return True, (secs * 1_000_000 + us) / 1e6
