"""The numba hashes equal the stdlib's: ``blake2b8`` is ``hashlib.blake2b(digest_size=8)`` read
little-endian (as ``streams.core.state._hash``), ``crc32`` is ``zlib.crc32``, on any byte range."""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from streams.core._hash_kernel import blake2b8, crc32, scratch
from streams.core.state import _hash

PARITY = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
EDGES = [0, 1, 63, 64, 127, 128, 129, 255, 256, 257, 384, 1000]


def ref_blake(b: bytes) -> int:
    """The digest as the kernel returns it: unsigned little-endian, bits as an int64."""
    u = int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "little")
    return int(np.uint64(u).view(np.int64))


def arr(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.uint8)


def check(b: bytes) -> None:
    assert blake2b8(arr(b), 0, len(b), scratch()) == ref_blake(b)
    assert crc32(arr(b), 0, len(b)) == zlib.crc32(b)


@PARITY
@given(st.binary(max_size=400))
def test_equal_stdlib(b: bytes) -> None:
    check(b)


@pytest.mark.parametrize("n", EDGES)
def test_equal_stdlib_block_edges(n: int) -> None:
    check(bytes(range(256)) * (n // 256) + bytes(range(n % 256)))
    check(b"\xff" * n)


@PARITY
@given(st.binary(max_size=400), st.binary(max_size=300), st.binary(max_size=300))
def test_sub_range(before: bytes, b: bytes, after: bytes) -> None:
    """Only ``buf[start:end]`` counts: the bytes around it do not leak in."""
    buf = arr(before + b + after)
    start, end = len(before), len(before) + len(b)
    assert blake2b8(buf, start, end, scratch()) == ref_blake(b)
    assert crc32(buf, start, end) == zlib.crc32(b)


def test_matches_state_hash() -> None:
    for s in ["", "evt-1", "loan-00042", "ü" * 70]:
        b = s.encode()
        assert np.uint64(np.int64(blake2b8(arr(b), 0, len(b), scratch()))) == _hash(s)


@njit
def _hash_all(buf: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(offsets) - 1
    blake = np.empty(n, dtype=np.int64)
    crc = np.empty(n, dtype=np.int64)
    work = np.empty(24, np.uint64)
    for i in range(n):
        blake[i] = blake2b8(buf, offsets[i], offsets[i + 1], work)
        crc[i] = crc32(buf, offsets[i], offsets[i + 1])
    return blake, crc


@PARITY
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_inside_njit(ids: list[bytes]) -> None:
    """The real use: called from another kernel over ids packed in one buffer."""
    offsets = np.cumsum([0, *map(len, ids)], dtype=np.int64)
    blake, crc = _hash_all(arr(b"".join(ids)), offsets)
    assert blake.tolist() == [ref_blake(b) for b in ids]
    assert crc.tolist() == [zlib.crc32(b) for b in ids]
