"""Records kept on disk while a run goes on: a whole book's alerts do not fit in memory.

A backtest over a lender's book emits an alert record or two per customer, about 2 KB of JSON
each: 1,000,000 customers would hold several GB of them. :class:`RecordSpool` appends each record
as one line of a temporary file (the records are JSON, which has no raw newline) and reads them
back in order as often as asked; it is deleted when closed or collected.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

__all__ = ["RecordSpool"]


class RecordSpool:
    """An append-only sequence of single-line byte records on a temporary file."""

    def __init__(self, records: Iterable[bytes] = ()) -> None:
        self._file: IO[bytes] = tempfile.NamedTemporaryFile(prefix="riskmon-spool-")  # noqa: SIM115 (lives as long as the spool)
        self._n = 0
        for r in records:
            self.append(r)

    def append(self, record: bytes) -> None:
        if b"\n" in record:
            raise ValueError("a spooled record must be one line")
        self._file.write(record)
        self._file.write(b"\n")
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[bytes]:
        """The records in append order (appending while iterating is not supported)."""
        self._file.flush()
        with open(self._file.name, "rb") as fh:  # its own offset: appends stay at the end
            for line in fh:
                yield line[:-1]

    def __bool__(self) -> bool:
        return self._n > 0

    def close(self) -> None:
        self._file.close()
