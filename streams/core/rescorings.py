"""Every rescoring, columnar: what the early-warning report evaluates, kept offline or streamed.

The report needs each customer's score over time, not only the alerts. The backtest collects the
rescorings in memory (:class:`Observations`); a worker started with ``--rescorings-dir`` appends
each batch's rescorings to a local file (:class:`RescoringLog`), so ``riskmon demo`` builds its
report from the stream itself instead of recomputing the book.

File format: frames of a 4-byte little-endian length + one msgpack array
``[customers, times, scores, grades, dpds, exposures]``. A batch replayed after a rebalance or
crash is appended again; the report keeps each customer's last score per day, so repeats change
nothing but the rescoring count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import msgspec

from streams.core.policy import Observation

__all__ = ["Observations", "RescoringLog", "read_logs"]

_Frame = tuple[list[str], list[float], list[float], list[int], list[int], list[float]]
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Frame)


@dataclass
class Observations:
    """Rescorings as parallel lists: customer id, event time, score, grade index, DPD,
    exposure (the report's priority rule ranks by PD x exposure)."""

    customer: list[str] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    grade: list[int] = field(default_factory=list)
    dpd: list[int] = field(default_factory=list)
    exposure: list[float] = field(default_factory=list)

    def add(self, obs: Observation) -> None:
        self.customer.append(obs.customer_id)
        self.time.append(obs.event_time)
        self.score.append(obs.score)
        self.grade.append(obs.grade)
        self.dpd.append(obs.dpd)
        self.exposure.append(obs.exposure)

    def extend(self, other: Observations) -> None:
        self.customer += other.customer
        self.time += other.time
        self.score += other.score
        self.grade += other.grade
        self.dpd += other.dpd
        self.exposure += other.exposure

    def __len__(self) -> int:
        return len(self.customer)


class RescoringLog:
    """Buffers rescorings (:meth:`add_batch`, the pipeline's ``record`` hook, or :meth:`add` one
    by one) and appends them to ``path`` as one frame per :meth:`flush` (once per batch)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh: BinaryIO = path.open("ab")
        self._buf = Observations()

    def add(self, obs: Observation) -> None:
        self._buf.add(obs)

    def add_batch(self, obs: Observations) -> None:
        self._buf.extend(obs)

    def flush(self) -> None:
        b = self._buf
        if not b.customer:
            return
        frame = _encoder.encode((b.customer, b.time, b.score, b.grade, b.dpd, b.exposure))
        self._fh.write(len(frame).to_bytes(4, "little") + frame)
        self._fh.flush()
        self._buf = Observations()

    def close(self) -> None:
        self.flush()
        self._fh.close()


def read_logs(paths: Iterable[Path]) -> Observations:
    """All rescorings in the given log files; a truncated last frame (a killed worker) is
    ignored, any other damage raises ``ValueError`` naming the file."""
    out = Observations()
    for path in paths:
        data = path.read_bytes()
        pos = 0
        while pos + 4 <= len(data):
            n = int.from_bytes(data[pos : pos + 4], "little")
            if pos + 4 + n > len(data):
                break  # the last frame was cut short
            try:
                c, t, s, g, d, x = _decoder.decode(data[pos + 4 : pos + 4 + n])
            except msgspec.DecodeError as exc:
                raise ValueError(f"{path}: corrupt rescoring frame at byte {pos}: {exc}") from None
            out.extend(Observations(c, t, s, g, d, x))
            pos += 4 + n
    return out
