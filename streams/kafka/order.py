"""The order header riskmon's producers put on every input record, read as arrays.

Each record sent to a partition of the input topics carries ``riskmon-seq``: the producer's chain
id (8 bytes) and a big-endian sequence number. The aligner merges a partition's three topics by
it, so the worker processes exactly the send order (:mod:`streams.kafka.aligner`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from operator import itemgetter

import numpy as np

from streams.kafka.records import Record

_SEQ = struct.Struct(">8sQ")  # the order header's value: chain id, big-endian sequence number
# the same as an array: the chain id's 8 bytes read as a little-endian uint64 (Seqs.chain)
_SEQ_ARRAY = np.dtype([("chain", "<u8"), ("seq", ">u8")])
_HEADERS, _FIRST, _SECOND = itemgetter(4), itemgetter(0), itemgetter(1)


class Seqs:
    """A batch's order headers as arrays: per record, its chain id (the header's 8 bytes read
    as a little-endian uint64) and sequence number. ``seqs[i]`` is record i's (chain id bytes,
    sequence number), for the per-record merge; the run merge reads the arrays."""

    __slots__ = ("chain", "seq")

    def __init__(self, chain: np.ndarray, seq: np.ndarray) -> None:
        self.chain, self.seq = chain, seq

    @classmethod
    def of(cls, pairs: Sequence[tuple[bytes, int]]) -> Seqs:
        """From (chain id, sequence number) pairs."""
        a = np.array([(int.from_bytes(c, "little"), s) for c, s in pairs], _SEQ_ARRAY)
        return cls(a["chain"].astype(np.uint64), a["seq"].astype(np.uint64))

    def __len__(self) -> int:
        return len(self.seq)

    def __getitem__(self, i: int) -> tuple[bytes, int]:
        return int(self.chain[i]).to_bytes(8, "little"), int(self.seq[i])

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        return map(self.__getitem__, range(len(self)))

    def __repr__(self) -> str:
        return f"Seqs({list(self)!r})"


def read_seqs(recs: list[Record], header: str) -> Seqs | None:
    """Each record's (chain id, sequence number) from ``header`` (8 + 8 bytes); None for the
    whole batch if a record lacks it (then timestamps and high-water marks guide the merge)."""
    hs = list(map(_HEADERS, recs))
    if hs and None not in hs and set(map(len, hs)) == {1}:
        # riskmon's producers send this header alone: checked and read for the whole batch
        # in C-level passes (a Python loop over the records showed in the worker's profile)
        first = list(map(_FIRST, hs))
        if set(map(_FIRST, first)) == {header}:
            values = list(map(_SECOND, first))
            if set(map(len, values)) == {16}:
                a = np.frombuffer(b"".join(values), _SEQ_ARRAY)
                return Seqs(a["chain"].astype(np.uint64), a["seq"].astype(np.uint64))
    out: list[tuple[bytes, int]] = []
    unpack = _SEQ.unpack
    for r in recs:
        own = r[4]
        if len(own) == 1 and own[0][0] == header and len(own[0][1]) == 16:
            out.append(unpack(own[0][1]))
            continue
        for k, v in own or ():
            if k == header and len(v) == 16:
                out.append(unpack(v))
                break
        else:
            return None
    return Seqs.of(out)
