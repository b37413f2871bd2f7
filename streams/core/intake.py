"""Intake: decode and route a batch's messages to their customers, once each.

Repayments and transactions are read by the intake kernel (one call for the batch, which also
groups them by customer, :mod:`streams.core._intake_kernel`); msgspec decodes the rest (loans, what
the kernel declines, every invalid message, so dead letters keep msgspec's reasons). Each
customer's entry is looked up once; redeliveries are recognised per entry and record (one kernel
call); the state kernel queues the events of customers with nothing parked, the Python path takes
the rest. Python runs per customer and per msgspec-decoded record, not per message.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple

import msgspec
import numpy as np

from schemas.codec import input_decoder, record_error
from schemas.events import (
    INPUT_TYPES,
    InputEvent,
)
from streams.core import _intake_kernel as IK
from streams.core import _state_events as SE
from streams.core.entry import Entry
from streams.core.records import InBatch, InRecord, InRecords

ROLE_SLOT = {"loans": 1, "repayments": 2, "transactions": 3}  # index into Entry.offsets
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class EventLimits:
    """What intake refuses before an event reaches a customer's state.

    ``max_message_bytes``: a larger message is dead-lettered (``oversized``) before decoding.
    An event dated too far ahead is dead-lettered (``future_event``) and changes nothing: one bad
    timestamp would otherwise move its customer's event clock ahead and turn every later event
    of that customer into ``too_late``. Live, "too far" is ``future_skew_days`` ahead of the
    wall clock. Replaying history (backtest, ``--event-clock stream``) there is no wall clock to
    trust, and the reference is each partition's stream time (the newest event time accepted on
    it), which history legitimately jumps ahead of by days or weeks where events are sparse:
    there "too far" is ``stream_skew_days`` ahead (a typo'd year is caught, a date a few months
    ahead is not). An event dated before 1970 is dead-lettered as ``time_out_of_range``.
    """

    future_skew_days: float = 2.0
    stream_skew_days: float = 366.0
    max_message_bytes: int = 65_536

    def __post_init__(self) -> None:
        if not (self.future_skew_days >= 0 and self.stream_skew_days >= 0):
            raise ValueError("future_skew_days and stream_skew_days must be >= 0")
        if self.max_message_bytes < 256:
            raise ValueError("max_message_bytes must be at least 256")


REDELIVERED = "redelivered"  # Plan.bad: a record this entry has handled already


# per input topic, its decoder (the codec's): decoded in the intake loop without a call
_DECODERS = {topic: input_decoder(topic) for topic in INPUT_TYPES}
# per ROLE_SLOT code, what the intake kernel reads it as (0: decline; loans: msgspec)
_SCAN_TYPE = np.array([0, 0, IK.REPAYMENT, IK.TRANSACTION], np.int64)
ROLES = ("", *ROLE_SLOT)  # by ROLE_SLOT code (0: not an input topic)


class Plan(NamedTuple):
    """What intake made of one message: the event (kept for the Python path only: holding a
    batch of decoded events costs cache misses), its customer, id and time,
    the customer's entry, its index in the state kernel's columns (-1: the Python path) and what
    was wrong with it, if anything (a detail text, a decode error's (reason, detail), or
    REDELIVERED)."""

    event: InputEvent | None
    customer_id: str
    event_id: str
    t: float
    entry: Entry | None
    kernel_index: int
    bad: tuple[str, str] | str | None  # (reason, detail), or REDELIVERED


# a Plan from a tuple without NamedTuple's Python-level __new__ (on the per-message path)
_plan: Callable[[tuple[object, ...]], Plan] = functools.partial(tuple.__new__, Plan)


@dataclass
class Routed:
    """What intake made of a batch, per record ``j``: its customer (``grp[j]`` into ``groups``,
    -1: none), its place in the state kernel's queue (``qi[j]``, -1: not queued), whether it
    is a redelivery, its topic's ``ROLE_SLOT`` code and event time; the msgspec-decoded
    records' (event, customer id, event id, time) and the bad records' plans, by ``j``."""

    scan: IK.Scan | None
    groups: list[Entry]
    grp: np.ndarray
    qi: np.ndarray
    redelivered: np.ndarray
    role: np.ndarray
    times: np.ndarray
    info: dict[int, tuple[InputEvent, str, str, float]]
    bad: dict[int, Plan]
    _ids: tuple[list[int], list[int]] | None = None  # event id spans: starts, ends

    def event_id(self, j: int, value: bytes) -> str:
        got = self.info.get(j)
        if got is not None:
            return got[2]
        if self._ids is None:  # as flat lists once: numpy scalar indexing is slow
            assert self.scan is not None
            spans = self.scan.spans
            self._ids = spans[:, 2].tolist(), spans[:, 3].tolist()
        starts, ends = self._ids
        return value[starts[j] : ends[j]].decode()

    def plan_of(self, j: int, rec: InRecord) -> Plan:
        """What intake made of record ``j`` (asked only for the records the batch's arrays do not
        settle)."""
        bad = self.bad.get(j)
        if bad is not None:
            return bad
        e = self.groups[int(self.grp[j])]
        got = self.info.get(j)
        if got is None:  # read by the intake kernel
            event, cid, eid, t = (
                None,
                e.customer_id,
                self.event_id(j, rec.value),
                float(self.times[j]),
            )
        else:
            event, cid, eid, t = got
        if self.redelivered[j]:
            return _plan((None, cid, eid, t, e, -1, REDELIVERED))
        return _plan((event, cid, eid, t, e, int(self.qi[j]), None))


def route(
    records: InRecords,
    entries: dict[str, Entry],
    entry: Callable[[str], Entry],
    queue: SE.EventColumns,
    touched: dict[str, Entry],
    limits: EventLimits,
    clock: Callable[[], float] | None,
    stream_time: dict[int, float],
    kernel_path: bool = True,
) -> tuple[Routed, list[Entry]]:
    """Decode and route a batch (see the module docstring): what intake made of each record,
    and the customers queued for the state kernel, by slot. ``entries``: the cached entries,
    read first; ``entry``: the lookup on a miss (the table); ``queue``: the state kernel's
    columns, filled here; ``touched``: customers whose entry a record reached, in order of first
    touch, filled here; ``limits``: the size and time bounds; ``clock``: the wall clock, or None
    for each partition's ``stream_time`` (updated here); ``kernel_path=False``: every customer
    takes the Python path."""
    n = len(records)
    if isinstance(records, InBatch):
        topics, keys, values = records.topics, records.keys, records.values
        part = np.full(n, records.partition, np.int64)
        off = np.fromiter(records.offsets, np.int64, n)
    else:  # the records' fields as columns, in one C-level pass (InRecord is a tuple)
        cols = zip(*records, strict=True) if n else ((),) * 6
        topics, partitions, offsets_in, keys, values, _ = cols
        part = np.fromiter(partitions, np.int64, n)
        off = np.fromiter(offsets_in, np.int64, n)
    role = np.fromiter(map(ROLE_SLOT.get, topics, repeat(0)), np.int64, n)
    big = np.fromiter(map(len, values), np.int64, n) > limits.max_message_bytes
    if kernel_path and n:
        types = _SCAN_TYPE[role]
        if big.any():
            types[big] = 0
        scan = IK.scan(values, types, keys)
        queue.scan = scan
        ok, first, times = scan.ok, scan.first, scan.time.copy()
    else:
        scan = None
        ok, first, times = np.zeros(n, np.bool_), np.full(n, -1), np.full(n, math.nan)
    lead = first == np.arange(n)  # the first accepted message of each customer
    todo = np.flatnonzero(lead | ~ok)
    lead_j = np.flatnonzero(lead)
    if scan is not None and len(lead_j):
        c = scan.spans[lead_j]
        lead_values = map(values.__getitem__, lead_j.tolist())
        cids: Iterator[str] = map(_text, lead_values, map(slice, c[:, 0], c[:, 1]))
    else:
        cids = iter(())
    gid: dict[str, int] = {}
    groups: list[Entry] = []
    group_of: list[int] = []  # per todo
    info: dict[int, tuple[InputEvent, str, str, float]] = {}
    bad: dict[int, Plan] = {}
    okl = ok.tolist()
    for j in todo.tolist():
        if okl[j]:
            cid = next(cids)
        else:
            rec = records[j]
            got = _oversized(rec, limits) or _decoded(rec)
            if not isinstance(got, msgspec.Struct):
                bad[j] = _plan((None, "", "", 0.0, None, -1, got))
                group_of.append(-1)
                continue
            cid, eid, t = got.customer_id, got.event_id, got.event_time.timestamp()
            key = rec.key
            why = None
            if key is None:
                why = ("missing_key", "no Kafka key: input records are keyed by customer id")
            elif key != cid.encode():
                why = ("key_mismatch", f"key {key_cid(rec)!r} != customer_id {cid!r}")
            if why is not None:
                bad[j] = _plan((None, cid, eid, t, None, -1, why))
                group_of.append(-1)
                continue
            info[j] = (got, cid, eid, t)
            times[j] = t
        g = gid.get(cid)
        if g is None:
            g = gid[cid] = len(groups)
            groups.append(entries.get(cid) or entry(cid))
        group_of.append(g)
    grp = np.full(n, -1, np.int64)
    grp[todo] = group_of
    rest = ok & ~lead
    grp[rest] = grp[first[rest]]
    # redeliveries: per customer, a record at or below the offset it handled last
    offsets = np.array([e.offsets for e in groups], np.int64).reshape(-1, 4)
    redelivered = np.zeros(n, np.bool_)
    touched_at = np.full(len(groups), -1, np.int64)
    IK.redeliveries(grp, role, part, off, offsets, redelivered, touched_at)
    for e, o in zip(groups, offsets.tolist(), strict=True):
        e.offsets = o
    timebad = _bad_times(times, part, redelivered, grp >= 0, limits, clock, stream_time)
    for j, why in timebad.items():
        e = groups[int(grp[j])]
        bad[j] = _plan((None, e.customer_id, "", float(times[j]), e, -1, why))
    hit = np.flatnonzero(touched_at >= 0)
    hit = hit[np.argsort(touched_at[hit], kind="stable")]  # in order of first touch
    for g in hit.tolist():
        e = groups[g]
        touched[e.customer_id] = e
    # the state kernel's customers: those with nothing parked; slots by first touch
    python = np.array([bool(e.parked) or not kernel_path for e in groups], np.bool_)
    mine = hit[~python[hit]]
    slot_of = np.full(len(groups) + 1, -1, np.int64)  # [-1]: no customer
    slot_of[mine] = np.arange(len(mine))
    loading = [groups[g] for g in mine.tolist()]
    queued = (slot_of[grp] >= 0) & ~redelivered
    if timebad:
        queued[list(timebad)] = False
    qi = np.where(queued, np.cumsum(queued) - 1, -1)
    taken = np.flatnonzero(queued & ok)
    queue.take_many(slot_of[grp[taken]], taken, qi[taken])
    for j in np.flatnonzero(queued & ~ok).tolist():
        queue.add(int(slot_of[grp[j]]), info[j][0], info[j][3])
    return Routed(scan, groups, grp, qi, redelivered, role, times, info, bad), loading


def _oversized(rec: InRecord, limits: EventLimits) -> tuple[str, str] | None:
    if len(rec.value) <= limits.max_message_bytes:
        return None
    return ("oversized", f"{len(rec.value)} bytes > the {limits.max_message_bytes}-byte limit")


def _decoded(rec: InRecord) -> InputEvent | tuple[str, str]:
    """The message's event, or why it is not one: (reason, detail)."""
    dec = _DECODERS.get(rec.topic)
    if dec is None:
        return ("unknown_topic", f"no input type for topic {rec.topic!r}")
    try:
        return dec(rec.value)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        # its reason and detail, not the exception: the traceback's frames would hold this
        # batch's plans and records in a cycle, for the collector to find much later
        err = record_error(exc)
        return (err.reason, err.detail)
    except RecursionError:
        return ("too_deep", "JSON nested deeper than the decoder allows")
    except Exception as exc:  # anything else the decoder raises: this message, not the batch
        return ("undecodable", f"{type(exc).__name__}: {exc}"[:500])


def _bad_times(
    times: np.ndarray,
    part: np.ndarray,
    redelivered: np.ndarray,
    routed: np.ndarray,
    limits: EventLimits,
    clock: Callable[[], float] | None,
    stream_time: dict[int, float],
) -> dict[int, tuple[str, str]]:
    """Records (routed to a customer, not redelivered) whose event time is impossible: before
    1970 or too far ahead of the reference clock (see :class:`EventLimits`)."""
    check = routed & ~redelivered & np.isfinite(times)
    out: dict[int, tuple[str, str]] = {}
    for j in np.flatnonzero(check & (times < 0)).tolist():
        out[j] = ("time_out_of_range", f"event time {_iso(times[j])} is before 1970")
    if clock is not None:
        now = clock()
        skew = limits.future_skew_days * DAY
        for j in np.flatnonzero(check & (times > now + skew)).tolist():
            out[j] = ("future_event", _ahead(times[j], now, "the wall clock"))
        return out
    # stream time: the newest event time accepted so far on the partition, in arrival order
    skew = limits.stream_skew_days * DAY
    for j, t, p in zip(
        np.flatnonzero(check).tolist(), times[check].tolist(), part[check].tolist(), strict=True
    ):
        if j in out:
            continue
        ref = stream_time.get(p)
        if ref is not None and t > ref + skew:
            out[j] = ("future_event", _ahead(t, ref, f"partition {p}'s stream time"))
        elif ref is None or t > ref:
            stream_time[p] = t
    return out


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ahead(t: float, ref: float, what: str) -> str:
    return f"event time {_iso(t)} is {(t - ref) / DAY:.1f} days ahead of {what} ({_iso(ref)})"


def _text(value: bytes, span: slice) -> str:
    return value[span].decode()


def key_cid(rec: InRecord) -> str:
    """The record's key as text, for dead letters (the customer id it claims)."""
    return rec.key.decode("utf-8", "replace") if rec.key else ""
