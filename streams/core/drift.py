"""Live score drift: PSI of the recent score distribution and CSI of each characteristic, against
the baseline stored in the scorecard artifact, over a rolling event-time window.

Why event time: windows follow the events' own timestamps (docs/architecture.md), so a replay
or a backtest gives the same PSI as the live stream, and a burst of late-arriving history is
counted in the days it belongs to. The window ends at the watermark = the largest event time
observed; it does not move while no events arrive (the "no events consumed" alert covers that).

Memory is bounded whatever the volume: the window is a ring of ``intervals`` slots, each holding
the counts per score band and per characteristic bin of one interval of ``window_s / intervals``
seconds; individual scores are never kept. The window holds the ``intervals`` most recent
intervals up to the watermark's, so it spans between ``window_s - interval`` and ``window_s``.
Observations older than that are dropped and counted in ``dropped_late``.

What is counted is each observation passed in: in the worker, one score per rescored customer per
batch, so a customer with many events weighs more than in the one-row-per-customer training data.

Expected distributions:

* Score PSI uses ``card.score_baseline`` (band ``edges`` and training ``shares``, written by
  ``scoring.train``). Fallback for a card without it (hand-made): the grades as bands with their
  training ``count``s. Without either (all counts 0), PSI is NaN.
* CSI of a characteristic uses its bins' training ``count``s; NaN when they are all 0.
* PSI and CSI are NaN while the window holds fewer than ``min_count`` observations, so a handful
  of early scores cannot fire a drift alert. NaN is exported as NaN ("unknown"), never as 0.

The PSI/CSI formula is :mod:`scoring.quality`'s (same epsilon), so the numbers equal
``riskmon evaluate``'s on the same scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from scoring import quality
from scoring.artifact import Scorecard

__all__ = [
    "DEFAULT_INTERVALS",
    "DEFAULT_WINDOW_S",
    "Baseline",
    "DriftMonitor",
    "count_reference",
    "score_baseline",
]

DEFAULT_WINDOW_S = 7 * 86400.0
DEFAULT_INTERVALS = 168  # one-hour slots for the default week


@dataclass(frozen=True, slots=True)
class Baseline:
    """Expected score distribution: band ``i`` is ``[edges[i-1], edges[i])`` (searchsorted right,
    as :func:`scoring.quality.band_shares`); ``expected`` holds shares or counts per band."""

    edges: np.ndarray
    expected: np.ndarray
    source: str  # "score_baseline" or "grades"


def score_baseline(card: Scorecard) -> Baseline | None:
    """The card's score baseline; from its grades' training counts if it has none; else None."""
    sb = card.score_baseline
    if sb.get("shares") and sum(sb["shares"]) > 0:
        return Baseline(
            np.asarray(sb.get("edges", []), np.float64),
            np.asarray(sb["shares"], np.float64),
            "score_baseline",
        )
    counts = [g.count for g in card.grades]
    if sum(counts) <= 0:
        return None
    # grades run best (highest min_score) to worst; the worst also takes every lower score, so
    # its min_score is not an edge. Ascending bands are the grades reversed.
    edges = np.array([g.min_score for g in reversed(card.grades[:-1])], np.float64)
    return Baseline(edges, np.array(counts[::-1], np.float64), "grades")


class DriftMonitor:
    """Rolling-window score and bin counts of one worker, with PSI/CSI against the card.

    ``observe`` is called with each scored batch; ``psi`` / ``csi`` / ``export`` whenever the
    metrics are refreshed. Not thread-safe (one per worker, used from its event loop).
    """

    def __init__(
        self,
        card: Scorecard,
        window_s: float = DEFAULT_WINDOW_S,
        intervals: int = DEFAULT_INTERVALS,
        min_count: int = 100,
    ) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a positive number of seconds, got {window_s}")
        if intervals < 1:
            raise ValueError(f"intervals must be >= 1, got {intervals}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        self.card = card
        self.window_s = float(window_s)
        self.intervals = int(intervals)
        self.interval_s = self.window_s / self.intervals
        self.min_count = int(min_count)
        self.names: list[str] = card.names
        self.baseline = score_baseline(card)
        self._edges = self.baseline.edges if self.baseline else np.empty(0, np.float64)
        self._n_bands = len(self._edges) + 1
        # per input column, every segment's bins over it (``card.column_bins``)
        self._n_bins = np.array([len(card.column_bins(n)) for n in self.names], np.int64)
        self._bin_off = np.concatenate([[0], np.cumsum(self._n_bins)]).astype(np.int64)
        self._expected_bins = [
            np.array([b.count for b in card.column_bins(n)], np.float64) for n in self.names
        ]
        width = self._n_bands + int(self._bin_off[-1])
        # slot s holds interval number _slot_interval[s] (-1: never used); columns are the score
        # bands, then every characteristic's bins (characteristic j at _n_bands + _bin_off[j])
        self._counts = np.zeros((self.intervals, width), np.int64)
        self._slot_interval = np.full(self.intervals, -1, np.int64)
        self._head = -1  # interval number of the watermark; -1 before the first observation
        self.dropped_late = 0
        # load the jitted counter now (from numba's cache), not inside the worker's first batch
        self.observe(np.empty(0), np.empty((0, len(self._n_bins)), np.int64), 0.0)

    @property
    def nbytes(self) -> int:
        """Bytes held by the window (fixed at construction)."""
        return int(self._counts.nbytes + self._slot_interval.nbytes)

    def observe(self, scores: np.ndarray, bins: np.ndarray | None, t: float | np.ndarray) -> None:
        """Count ``scores`` (float[n]) and, if given, their ``bins`` (int[n, k], each value's bin
        in its characteristic, as ``CompiledScorecard.bin_index_many``) at event time ``t``
        (epoch seconds: one for the whole batch, or float[n] per row). One kernel call: the
        worker calls this once per batch, also for batches of a few events."""
        s = np.ascontiguousarray(scores, np.float64)
        if s.ndim != 1:
            raise ValueError(f"scores must be 1-d, got shape {s.shape}")
        n = len(s)
        ts = np.ascontiguousarray(np.broadcast_to(np.asarray(t, np.float64), (n,)))
        k = len(self._n_bins)
        if bins is None:
            b = np.zeros((n, 0), np.int64)
        else:
            b = np.asarray(bins)
            if b.shape != (n, k) or not np.issubdtype(b.dtype, np.integer):
                raise ValueError(
                    f"bins must be integer of shape ({n}, {k}), got {b.dtype} {b.shape}"
                )
            b = np.ascontiguousarray(b, np.int64)
        status, head, dropped = _count(
            self._counts,
            self._slot_interval,
            self._head,
            self.interval_s,
            self._edges,
            self._bin_off,
            self._n_bins,
            s,
            b,
            ts,
        )
        if status == _BAD_TIME:
            raise ValueError("event times must be finite epoch seconds (>= 0)")
        if status == _BAD_BIN:
            raise ValueError("bin index out of range for its characteristic")
        if status == _BAD_SCORE:
            raise ValueError("scores must be finite")
        self._head = int(head)
        self.dropped_late += int(dropped)

    def _window(self) -> np.ndarray:
        live = self._slot_interval > self._head - self.intervals
        return self._counts[live & (self._slot_interval >= 0)].sum(axis=0)

    def band_counts(self) -> np.ndarray:
        """Scores per baseline band in the window (int64[bands], ascending score)."""
        return self._window()[: self._n_bands]

    def count(self) -> int:
        """Scores in the window."""
        return int(self.band_counts().sum())

    def psi(self) -> float:
        """PSI of the window's scores vs the baseline; NaN without baseline or below min_count."""
        actual = self.band_counts()
        if self.baseline is None or actual.sum() < self.min_count:
            return math.nan
        return quality.psi(self.baseline.expected, actual)

    def csi(self) -> dict[str, float]:
        """CSI per characteristic (card order) vs its bins' training counts; NaN where the
        training counts are all 0 or fewer than ``min_count`` values were observed."""
        w = self._window()[self._n_bands :]
        out: dict[str, float] = {}
        for j, name in enumerate(self.names):
            actual = w[self._bin_off[j] : self._bin_off[j + 1]]
            expected = self._expected_bins[j]
            ok = expected.sum() > 0 and actual.sum() >= self.min_count
            out[name] = quality.csi(expected, actual) if ok else math.nan
        return out


_OK, _BAD_TIME, _BAD_BIN, _BAD_SCORE = 0, 1, 2, 3
_MAX_TIME = 1e13  # epoch seconds (year ~318,000): interval numbers stay far inside int64


def count_reference(
    counts: np.ndarray,
    slot_interval: np.ndarray,
    head: int,
    interval_s: float,
    edges: np.ndarray,
    bin_off: np.ndarray,
    n_bins: np.ndarray,
    scores: np.ndarray,
    bins: np.ndarray,
    ts: np.ndarray,
) -> tuple[int, int, int]:
    """Plain-Python reference of :func:`_count`: add one batch to the window's ring, in place.

    ``counts[slot]`` holds interval ``slot_interval[slot]``'s counts: score bands (``edges``,
    searchsorted right), then every column's bins (column j at ``len(edges) + 1 + bin_off[j]``;
    ``bins`` may have 0 columns: scores only; a bin of -1 is not counted). The watermark
    ``head`` (an interval number) moves to the batch's newest interval first; rows of intervals
    that left the window are dropped. Validates everything (times in [0, 1e13], finite scores,
    bins in range) before changing anything.
    Returns (status, new head, rows dropped as too late)."""
    n, k = bins.shape
    intervals = counts.shape[0]
    n_bands = len(edges) + 1
    for r in range(n):
        t = float(ts[r])
        if not (0.0 <= t <= _MAX_TIME):  # (NaN fails too)
            return _BAD_TIME, head, 0
        if not math.isfinite(float(scores[r])):
            return _BAD_SCORE, head, 0
        for j in range(k):
            if bins[r, j] < -1 or bins[r, j] >= n_bins[j]:
                return _BAD_BIN, head, 0
    iv = [math.floor(float(ts[r]) / interval_s) for r in range(n)]
    head = max([head, *iv])
    dropped = 0
    for r in range(n):
        i = iv[r]
        if i <= head - intervals:
            dropped += 1
            continue
        slot = i % intervals
        if slot_interval[slot] != i:  # an older interval left the window: reuse its slot
            counts[slot, :] = 0
            slot_interval[slot] = i
        band = 0
        while band < len(edges) and edges[band] <= scores[r]:
            band += 1
        counts[slot, band] += 1
        for j in range(k):
            if bins[r, j] >= 0:  # -1: the row's segment does not use column j
                counts[slot, n_bands + bin_off[j] + bins[r, j]] += 1
    return _OK, head, dropped


@njit(nogil=True, cache=True)
def _count(
    counts: np.ndarray,
    slot_interval: np.ndarray,
    head: int,
    interval_s: float,
    edges: np.ndarray,
    bin_off: np.ndarray,
    n_bins: np.ndarray,
    scores: np.ndarray,
    bins: np.ndarray,
    ts: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover - numba; parity with count_reference is tested
    """:func:`count_reference`, jitted (bands by binary search: the same index)."""
    n, k = bins.shape
    intervals = counts.shape[0]
    n_edges = len(edges)
    n_bands = n_edges + 1
    for r in range(n):
        t = ts[r]
        if not (0.0 <= t <= _MAX_TIME):
            return _BAD_TIME, head, 0
        if not np.isfinite(scores[r]):
            return _BAD_SCORE, head, 0
        for j in range(k):
            if bins[r, j] < -1 or bins[r, j] >= n_bins[j]:
                return _BAD_BIN, head, 0
    iv = np.empty(n, np.int64)
    for r in range(n):
        iv[r] = np.int64(np.floor(ts[r] / interval_s))
        if iv[r] > head:
            head = iv[r]
    dropped = 0
    for r in range(n):
        i = iv[r]
        if i <= head - intervals:
            dropped += 1
            continue
        slot = i % intervals
        if slot_interval[slot] != i:
            counts[slot, :] = 0
            slot_interval[slot] = i
        lo, hi = 0, n_edges  # the number of edges <= score (searchsorted right)
        while lo < hi:
            mid = (lo + hi) // 2
            if edges[mid] <= scores[r]:
                lo = mid + 1
            else:
                hi = mid
        counts[slot, lo] += 1
        for j in range(k):
            if bins[r, j] >= 0:  # -1: the row's segment does not use column j
                counts[slot, n_bands + bin_off[j] + bins[r, j]] += 1
    return _OK, head, dropped
