"""A batch's rescorings in arrival order, built lazily from intake's columns."""

from __future__ import annotations

from operator import attrgetter

import numpy as np

from streams.core.entry import Entry
from streams.core.intake import Routed
from streams.core.records import InBatch, InRecord, InRecords

Applied = tuple[InRecord, Entry, float, str]  # record, entry, event time, event id


class AppliedRows:
    """A batch's rescorings in arrival order: the state kernel's (``fast_j``: their records),
    whose (record, entry, event time, event id) tuples are built only for the rows asked for,
    and the Python path's (``slow``: tuples, ``slow_j``: their records, ``slow_src``: their
    FeatureBatch rows as -1 - row)."""

    def __init__(
        self,
        records: InRecords,
        r: Routed,
        fast_j: np.ndarray,
        slow_j: list[int],
        slow: list[Applied],
        slow_src: list[int],
    ) -> None:
        self._records, self._r, self._slow = records, r, slow
        self.groups = r.groups
        js, ref, src, times = fast_j, fast_j, r.qi[fast_j], r.times[fast_j]
        if slow_j:
            js = np.concatenate([js, np.array(slow_j, np.int64)])
            ref = np.concatenate([ref, -1 - np.arange(len(slow_j))])
            src = np.concatenate([src, np.array(slow_src, np.int64)])
            times = np.concatenate([times, np.array([a[2] for a in slow], np.float64)])
            order = np.argsort(js, kind="stable")
            js, ref, src, times = js[order], ref[order], src[order], times[order]
        self._ref = ref.tolist()  # >= 0: a kernel row's record; < 0: -1 - its slow index
        self.src = src  # kernel queue index, or -1 - FeatureBatch row
        self.times = np.ascontiguousarray(times, np.float64)
        self.group = r.grp[js]  # per row: its customer in ``groups``
        self._times, self._group = self.times.tolist(), self.group.tolist()
        self._made: dict[int, Applied] = {}

    def __len__(self) -> int:
        return len(self._ref)

    def __getitem__(self, i: int) -> Applied:
        got = self._made.get(i)  # a loud row is asked for twice: decided, then emitted
        if got is None:
            x = self._ref[i]
            if x < 0:
                return self._slow[-1 - x]
            rec = self._records[x]
            got = (rec, self.groups[self._group[i]], self._times[i], self._r.event_id(x, rec.value))
            self._made[i] = got
        return got

    def who(self, i: int) -> tuple[str, float, str]:
        """Row ``i``'s (customer id, event time, event id), without building its tuple."""
        got = self._made.get(i)
        if got is None:
            x = self._ref[i]
            if x < 0:
                got = self._slow[-1 - x]
            else:
                records = self._records
                value = records.values[x] if isinstance(records, InBatch) else records[x].value
                e = self.groups[self._group[i]]
                return e.customer_id, self._times[i], self._r.event_id(x, value)
        return got[1].customer_id, got[2], got[3]

    def take(self, rows: np.ndarray) -> AppliedRows:
        """The rescorings ``rows`` (ascending indices), in order: one arm's share of a batch."""
        sub = object.__new__(AppliedRows)
        sub._records, sub._r, sub._slow = self._records, self._r, self._slow
        sub.groups = self.groups
        sub._ref = [self._ref[i] for i in rows.tolist()]
        sub.src, sub.times, sub.group = self.src[rows], self.times[rows], self.group[rows]
        sub._times, sub._group = sub.times.tolist(), sub.group.tolist()
        sub._made = {}
        return sub

    def customer_ids(self) -> list[str]:
        return list(map(_CUSTOMER_ID, map(self.groups.__getitem__, self._group)))


_CUSTOMER_ID = attrgetter("customer_id")
