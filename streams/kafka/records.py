"""The consumed-record tuple the batch seam hands around."""

from __future__ import annotations

from collections.abc import Sequence

#: One consumed record of a batch: (offset, key bytes, value bytes, timestamp ms, headers). A plain
#: tuple, not a NamedTuple: this path builds one per record. The worker's consumer thread builds
#: these directly from the fetched record batches (:mod:`streams.kafka.fetcher`).
Record = tuple[int, bytes | None, bytes | None, int, Sequence[tuple[str, bytes]]]
