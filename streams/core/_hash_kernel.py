"""Numba hashes of a byte range ``buf[start:end]`` of a uint8 array, bit-identical to the stdlib.

The JSON intake kernel hashes ids straight from the record bytes, without making Python strings,
so its hashes must equal the Python path's: :func:`blake2b8` is ``streams.core.state._hash``
(BLAKE2b, unkeyed, ``digest_size=8``, digest read little-endian) and :func:`crc32` is the payer hash
``zlib.crc32``. There are no Python twins here: ``hashlib`` and ``zlib`` themselves are the
reference (``tests/unit/test_hash_kernel.py`` holds the two equal on random bytes).

The caller keeps ``0 <= start <= end <= len(buf)`` (numba does not check bounds).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["SCRATCH_WORDS", "blake2b8", "crc32", "scratch"]

# BLAKE2b (RFC 7693): initial vector, message schedule, and h[0] for digest_size=8, unkeyed
_IV = np.array(
    [
        0x6A09E667F3BCC908,
        0xBB67AE8584CAA73B,
        0x3C6EF372FE94F82B,
        0xA54FF53A5F1D36F1,
        0x510E527FADE682D1,
        0x9B05688C2B3E6C1F,
        0x1F83D9ABFB41BD6B,
        0x5BE0CD19137E2179,
    ],
    dtype=np.uint64,
)
_SIGMA = np.array(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
    ],
    dtype=np.int64,
)
_DIGEST_BYTES = 8
_H0 = np.uint64(int(_IV[0]) ^ 0x01010000 ^ (0 << 8) ^ _DIGEST_BYTES)  # fanout, depth, key, out
_BLOCK = 128
SCRATCH_WORDS = 24  # blake2b8's working memory: h (8 words) and the message block (16)
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)

# CRC-32 (zlib: reflected polynomial 0xEDB88320), one entry per byte value
_CRC_TABLE = np.zeros(256, dtype=np.int64)
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0xEDB88320 if _c & 1 else _c >> 1
    _CRC_TABLE[_n] = _c


@njit(nogil=True, cache=True)
def _rotr(x: np.uint64, n: int) -> np.uint64:
    return (x >> np.uint64(n)) | (x << np.uint64(64 - n))


@njit(nogil=True, cache=True)
def _g(
    a: np.uint64, b: np.uint64, c: np.uint64, d: np.uint64, x: np.uint64, y: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    a = a + b + x
    d = _rotr(d ^ a, 32)
    c = c + d
    b = _rotr(b ^ c, 24)
    a = a + b + y
    d = _rotr(d ^ a, 16)
    c = c + d
    b = _rotr(b ^ c, 63)
    return a, b, c, d


@njit(nogil=True, cache=True)
def _compress(
    h: np.ndarray, m: np.ndarray, buf: np.ndarray, p: int, n: int, t: int, last: bool
) -> None:
    """Fold the block ``buf[p:p + n]`` (zero-padded to 128 bytes), ``t`` bytes in so far. The
    working vector lives in locals (registers), not an array, which is faster."""
    for i in range(16):
        m[i] = np.uint64(0)
    for k in range(n):
        m[k >> 3] |= np.uint64(buf[p + k]) << np.uint64((k & 7) * 8)
    v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
    v8, v9, v10, v11 = _IV[0], _IV[1], _IV[2], _IV[3]
    v12, v13, v14, v15 = _IV[4], _IV[5], _IV[6], _IV[7]
    v12 ^= np.uint64(t)  # the counter's low word; its high word stays 0 (inputs < 2**64 bytes)
    if last:
        v14 ^= _MASK64
    for r in range(12):
        s = _SIGMA[r % 10]
        v0, v4, v8, v12 = _g(v0, v4, v8, v12, m[s[0]], m[s[1]])
        v1, v5, v9, v13 = _g(v1, v5, v9, v13, m[s[2]], m[s[3]])
        v2, v6, v10, v14 = _g(v2, v6, v10, v14, m[s[4]], m[s[5]])
        v3, v7, v11, v15 = _g(v3, v7, v11, v15, m[s[6]], m[s[7]])
        v0, v5, v10, v15 = _g(v0, v5, v10, v15, m[s[8]], m[s[9]])
        v1, v6, v11, v12 = _g(v1, v6, v11, v12, m[s[10]], m[s[11]])
        v2, v7, v8, v13 = _g(v2, v7, v8, v13, m[s[12]], m[s[13]])
        v3, v4, v9, v14 = _g(v3, v4, v9, v14, m[s[14]], m[s[15]])
    h[0] ^= v0 ^ v8
    h[1] ^= v1 ^ v9
    h[2] ^= v2 ^ v10
    h[3] ^= v3 ^ v11
    h[4] ^= v4 ^ v12
    h[5] ^= v5 ^ v13
    h[6] ^= v6 ^ v14
    h[7] ^= v7 ^ v15


@njit(nogil=True, cache=True)
def blake2b8(buf: np.ndarray, start: int, end: int, scratch: np.ndarray) -> np.int64:
    """``hashlib.blake2b(buf[start:end], digest_size=8)``'s digest as a little-endian uint64,
    returned with the same bits as an int64. ``scratch``: SCRATCH_WORDS uint64 of the caller's (no
    allocation per call)."""
    h = scratch[:8]
    m = scratch[8:24]
    h[:] = _IV
    h[0] = _H0
    p = start
    while end - p > _BLOCK:  # every block but the last, which may be short (or empty)
        _compress(h, m, buf, p, _BLOCK, p - start + _BLOCK, False)
        p += _BLOCK
    _compress(h, m, buf, p, end - p, end - start, True)
    return np.int64(h[0])


def scratch() -> np.ndarray:
    """Working memory for :func:`blake2b8` (one per thread)."""
    return np.empty(SCRATCH_WORDS, np.uint64)


@njit(nogil=True, cache=True)
def crc32(buf: np.ndarray, start: int, end: int) -> np.int64:
    """``zlib.crc32(buf[start:end])``: unsigned 32-bit, returned as a non-negative int64."""
    c = np.int64(0xFFFFFFFF)
    for i in range(start, end):
        c = _CRC_TABLE[(c ^ buf[i]) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
