"""One micro-batch, start to finish, with no Kafka in sight.

decode each message once, look each customer up once, and queue the events (intake: the
intake kernel reads repayments and transactions and groups them by customer, msgspec the rest;
one kernel pass finds redeliveries) -> ONE state-kernel call applies the queued events to
their customers' states, loaded from their stored bytes, and writes each applied event's
feature row (streams/core/_state_kernel.py) -> its applied events are settled as arrays; one pass in
arrival order over the other records counts outcomes, dead-letters, and applies the events of
the customers the kernel declined or that have parked events through the Python path
(CustomerState.apply, features.FeatureBatch) -> ONE scoring
kernel call over every rescoring -> alert policy per event, in arrival order (ONE policy-kernel
call takes the quiet rescorings, streams/core/_policy_kernel.py; ``decide`` the rest) -> output
records + one serialised state entry per touched customer.

Observations are per event, not per batch, so decisions (and deterministic alert ids) depend only
on each customer's event order, never on where Kafka happened to cut a batch: a replay after a
crash, or the offline backtest, makes the same decisions.

The Faust worker (streams/kafka/app.py) and the offline backtest both drive this class, so the
backtest's alerts equal the stream's by construction.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter
from typing import NamedTuple

import msgspec
import numpy as np

from schemas.codec import decode, decoder_for, encode, encode_many, record_error
from schemas.events import (
    INPUT_TYPES,
    Alert,
    DeadLetter,
    GradeChange,
    InputEvent,
    LoanEvent,
    Reason,
)
from scoring.artifact import Scorecard
from scoring.compiled import CompiledScorecard, ScoreBatch
from scoring.errors import InputError
from streams.core import _intake_kernel as IK
from streams.core import _state_codec as SC
from streams.core import _state_events as SE
from streams.core import _state_kernel as SK
from streams.core import _state_slots as SL
from streams.core import features as F
from streams.core._policy_kernel import DecideRow, Quiet, QuietInputs, quiet_pass, warm_up
from streams.core.drift import DriftMonitor
from streams.core.policy import (
    Observation,
    PolicyConfig,
    PolicyContext,
    PolicyState,
    decide,
    grade_change,
)
from streams.core.rescorings import Observations
from streams.core.state import CustomerState, Outcome, StateConfig

# Python 3.11 looks ``Outcome.X`` up through EnumType.__getattr__ (~80 ns, several per event)
APPLIED, DUPLICATE, UNKNOWN_LOAN = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.UNKNOWN_LOAN

# where a batch's time goes (BatchResult.phase_seconds; the worker adds "send"): apply = decode,
# dedupe, state update and packing, per record; features = the feature kernel; score = card
# matrix, scoring kernel, drift, rescoring log; policy = policy kernel, decide, alert and grade
# records; serialise = the touched customers' table entries
PHASES = ("apply", "features", "score", "policy", "serialise")
_ENTRY_VERSION = 2  # 2: + input offsets (version 1 entries read with offsets unknown)
MAX_PARKED = 32  # parked events per customer; beyond that the oldest is dead-lettered
_ROLE_SLOT = {"loans": 1, "repayments": 2, "transactions": 3}  # index into Entry.offsets


class InRecord(NamedTuple):
    """One consumed message. ``topic`` is the logical input name (loans/repayments/transactions)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    ingest_time: float  # epoch seconds when riskmon received it


class InBatch:
    """Consumed messages of one partition as columns (the worker's form): the pipeline reads
    the columns, and builds an ``InRecord`` only for a record it is asked for (one tuple per
    message cost ~3 % of the worker). ``topics``: per message, the logical input name."""

    __slots__ = ("ingest_time", "keys", "offsets", "partition", "topics", "values")

    def __init__(
        self,
        topics: Sequence[str],
        partition: int,
        offsets: Sequence[int],
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        ingest_time: float,
    ) -> None:
        if not len(topics) == len(offsets) == len(keys) == len(values):
            raise ValueError("InBatch columns differ in length")
        self.topics, self.partition, self.offsets = topics, partition, offsets
        self.keys, self.values, self.ingest_time = keys, values, ingest_time

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, j: int) -> InRecord:
        return InRecord(
            self.topics[j], self.partition, self.offsets[j], self.keys[j], self.values[j],
            self.ingest_time,
        )  # fmt: skip


#: what ``Pipeline.process`` takes: records, or the same as columns
InRecords = Sequence[InRecord] | InBatch

_Applied = tuple["InRecord", "Entry", float, str]  # record, entry, event time, event id


REDELIVERED = "redelivered"  # _Plan.bad: a record this entry has handled already
_KERNEL_DEAD = {SL.TOO_LATE: "too_late", SL.AGGREGATE_OVERFLOW: "aggregate_overflow"}


# per input topic, its type's decoder (the codec's): decoded in the intake loop without a call
_DECODERS = {topic: decoder_for(t).decode for topic, t in INPUT_TYPES.items()}
# per _ROLE_SLOT code, what the intake kernel reads it as (0: decline; loans: msgspec)
_SCAN_TYPE = np.array([0, 0, IK.REPAYMENT, IK.TRANSACTION], np.int64)
_ROLES = ("", *_ROLE_SLOT)  # by _ROLE_SLOT code (0: not an input topic)


class _Plan(NamedTuple):
    """What intake made of one message: the event (kept for the Python path only: holding a
    batch of decoded events costs ~3 us per event in cache misses), its customer, id and time,
    the customer's entry, its index in the state kernel's columns (-1: the Python path) and what
    was wrong with it, if anything (a detail text, a decode error's (reason, detail), or
    REDELIVERED)."""

    event: InputEvent | None
    customer_id: str
    event_id: str
    t: float
    entry: Entry | None
    kernel_index: int
    bad: str | tuple[str, str] | None


# a _Plan from a tuple without NamedTuple's Python-level __new__ (~0.3 us per message)
_plan: Callable[[tuple[object, ...]], _Plan] = functools.partial(tuple.__new__, _Plan)


@dataclass
class _KernelRun:
    """One state-kernel call over the queued customers (``entries``, by slot)."""

    entries: list[Entry]
    res: SK.Applied


@dataclass
class _Routed:
    """What intake made of a batch, per record ``j``: its customer (``grp[j]`` into ``groups``,
    -1: none), its place in the state kernel's queue (``qi[j]``, -1: not queued), whether it
    is a redelivery, its topic's ``_ROLE_SLOT`` code and event time; the msgspec-decoded
    records' (event, customer id, event id, time) and the bad records' plans, by ``j``."""

    scan: IK.Scan | None
    groups: list[Entry]
    grp: np.ndarray
    qi: np.ndarray
    redelivered: np.ndarray
    role: np.ndarray
    times: np.ndarray
    info: dict[int, tuple[InputEvent, str, str, float]]
    bad: dict[int, _Plan]
    _ids: tuple[list[int], list[int]] | None = None  # event id spans: starts, ends

    def event_id(self, j: int, value: bytes) -> str:
        got = self.info.get(j)
        if got is not None:
            return got[2]
        if self._ids is None:  # as flat lists once: numpy indexing costs ~1 us per call
            assert self.scan is not None
            spans = self.scan.spans
            self._ids = spans[:, 2].tolist(), spans[:, 3].tolist()
        starts, ends = self._ids
        return value[starts[j] : ends[j]].decode()


class _AppliedRows:
    """A batch's rescorings in arrival order: the state kernel's (``fast_j``: their records),
    whose (record, entry, event time, event id) tuples are built only for the rows asked for,
    and the Python path's (``slow``: tuples, ``slow_j``: their records, ``slow_src``: their
    FeatureBatch rows as -1 - row)."""

    def __init__(
        self,
        records: InRecords,
        r: _Routed,
        fast_j: np.ndarray,
        slow_j: list[int],
        slow: list[_Applied],
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
        self._made: dict[int, _Applied] = {}

    def __len__(self) -> int:
        return len(self._ref)

    def __getitem__(self, i: int) -> _Applied:
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

    def customer_ids(self) -> list[str]:
        return list(map(_CUSTOMER_ID, map(self.groups.__getitem__, self._group)))


_CUSTOMER_ID = attrgetter("customer_id")


class OutRecord(NamedTuple):
    """One record to send. ``topic`` is the logical output name (alerts/grades/deadletter)."""

    topic: str
    key: bytes
    value: bytes


class Parked(msgspec.Struct, array_like=True, frozen=True):
    """An event for a loan this customer's state has not seen yet (its topic may lag)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event_time: float
    ingest_time: float


def _no_offsets() -> list[int]:
    return [-1, -1, -1, -1]


class Entry:
    """A customer's table value: behavioural state, alert-policy state, parked events, and
    ``offsets`` = [partition, last loans / repayments / transactions offset this entry has
    handled]: a record at or below them is a redelivery (replay after a rebalance or crash)
    and changes nothing, however old its event time.

    The behavioural state is kept as its bytes until Python asks for :attr:`state`: the state
    kernel reads and writes the bytes directly (:func:`streams.core._state_kernel.load` / ``save``),
    so a customer on the kernel path is never decoded into objects."""

    __slots__ = ("_blob", "_state", "customer_id", "offsets", "parked", "policy")

    def __init__(
        self,
        state: CustomerState,
        policy: PolicyState,
        parked: list[Parked] | None = None,
        offsets: list[int] | None = None,
    ) -> None:
        self.customer_id = state.customer_id
        self._state: CustomerState | None = state
        self._blob: bytes | None = None
        self.policy = policy
        self.parked = [] if parked is None else parked
        self.offsets = _no_offsets() if offsets is None else offsets

    @property
    def state(self) -> CustomerState:
        """The state as objects (decoded on first use; the caller may change it in place)."""
        if self._state is None:
            assert self._blob is not None
            self._state = CustomerState.from_bytes(self._blob)
            self._blob = None
        return self._state

    @state.setter
    def state(self, state: CustomerState) -> None:
        self._state, self._blob = state, None

    @property
    def state_bytes(self) -> bytes:
        """``state.to_bytes()``, without decoding a state held as bytes."""
        if self._state is None:
            assert self._blob is not None
            return self._blob
        return self._state.to_bytes()

    @state_bytes.setter
    def state_bytes(self, blob: bytes) -> None:
        self._state, self._blob = None, blob

    def to_bytes(self) -> bytes:
        return _entry_encoder.encode(
            _EntryRecord(
                _ENTRY_VERSION,
                self.state_bytes,
                self.policy.to_bytes(),
                self.parked,
                self.offsets,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes, customer_id: str | None = None) -> Entry:
        """An entry from the table; given its ``customer_id`` (the key), the state stays bytes
        until it is needed."""
        r = _entry_decoder.decode(data)
        if r.version not in (1, _ENTRY_VERSION):
            raise ValueError(f"unknown customer entry version {r.version}")
        policy = PolicyState.from_bytes(r.policy)
        offsets = r.offsets if len(r.offsets) == 4 else _no_offsets()
        if customer_id is None:
            return cls(CustomerState.from_bytes(r.state), policy, r.parked, offsets)
        e = cls.__new__(cls)
        e.customer_id, e._state, e._blob = customer_id, None, r.state
        e.policy, e.parked, e.offsets = policy, r.parked, offsets
        return e


class _EntryRecord(msgspec.Struct, array_like=True):
    """An entry's bytes: a msgpack array (version 1 had no trailing offsets)."""

    version: int
    state: bytes
    policy: bytes
    parked: list[Parked]
    offsets: list[int] = msgspec.field(default_factory=list)


_entry_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(_EntryRecord)


@dataclass
class BatchResult:
    """What one batch produced; the caller sends ``outputs`` and writes ``dirty`` once."""

    outputs: list[OutRecord] = field(default_factory=list)
    dirty: dict[str, bytes] = field(default_factory=dict)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    alerts: list[tuple[Alert, float, float]] = field(
        default_factory=list
    )  # (alert, event t, ingest t)
    grade_changes: int = 0
    parked: int = 0  # change in the number of parked events (not yet counted in ``outcomes``)
    scored: int = 0
    kernel_seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


class Pipeline:
    """Processes micro-batches for the customers one worker owns.

    ``load(customer_id) -> bytes | None`` reads a customer's entry from the table; loaded entries
    are cached in ``self.entries``, which must then equal what the last batch wrote (the worker
    clears it on a rebalance or a failed batch; the backtest keeps it).
    """

    def __init__(
        self,
        card: Scorecard,
        state_cfg: StateConfig | None = None,
        policy_cfg: PolicyConfig | None = None,
        load: Callable[[str], bytes | None] | None = None,
        offline: bool = False,
    ) -> None:
        self.card = card
        self.offline = offline  # backtest: alerts' emitted_at = event time (no wall clock)
        self.cs = CompiledScorecard(card)
        self.state_cfg = state_cfg or StateConfig()
        self.load = load or (lambda _cid: None)
        self.entries: dict[str, Entry] = {}
        self.observe: Callable[[Observation], None] | None = None  # e.g. the backtest's recorder
        # each batch's rescorings as columns (the worker's rescoring log); unlike ``observe``,
        # it leaves the quiet rescorings to the policy kernel
        self.record: Callable[[Observations], None] | None = None
        self.drift: DriftMonitor | None = None  # live PSI/CSI (the worker sets one)
        self.parked_index: dict[str, int] = {}  # customers with parked events -> partition
        # partition -> newest event time seen on the loans topic (parked events expire on it)
        self.loans_watermark: dict[int, float] = {}
        self._cols, self._cat_maps = _feature_columns(self.cs)
        self._labels = [F.FEATURES[j].label for j in self._cols]
        self._kinds = [F.FEATURES[j].kind for j in self._cols]
        self._levels = [F.FEATURES[j].levels for j in self._cols]
        self.ctx = PolicyContext(
            grade_names=tuple(self.cs.grade_names),
            names=tuple(self.cs.names),
            labels=tuple(self._labels),
            scorecard_version=card.version,
            config=policy_cfg or PolicyConfig(),
        )
        # False: every event takes the Python path (the state kernel's reference, in tests)
        self.state_kernel = True
        self._layout = SL.Layout(self.state_cfg).vector
        self._new_batch()
        # load the jitted feature kernel now (~0.4 s from numba's cache), not in the first batch
        warm = F.FeatureBatch(self.state_cfg)
        warm.add(CustomerState.new("warm-up"), 0.0)
        warm.compute()
        SK.warm_up(self.state_cfg)
        IK.warm_up()
        warm_card = CompiledScorecard(card)  # (its unseen counts are not the pipeline's)
        x = np.zeros((1, len(self.cs.names)))
        warm_card.score_many(x, with_points=True)
        warm_card.bin_index_many(x)
        warm_up(self.ctx, len(self.cs.names))

    # -- state ---------------------------------------------------------------------------------
    def entry(self, customer_id: str) -> Entry:
        e = self.entries.get(customer_id)
        if e is None:
            raw = self.load(customer_id)
            e = (
                Entry.from_bytes(raw, customer_id)
                if raw
                else Entry(CustomerState.new(customer_id), PolicyState.new())
            )
            self.entries[customer_id] = e
        return e

    # -- the batch -----------------------------------------------------------------------------
    def process(self, records: InRecords) -> BatchResult:
        """One batch: the records to send and the table entries to write."""
        try:
            return self._process(records)
        finally:
            self._new_batch()  # the batch's working lists are not kept until the next one

    def _new_batch(self) -> None:
        """Fresh per-batch working state (the Python path's rescorings, the touched entries,
        the state kernel's queue); also after a failed batch, so nothing of it reaches the
        next."""
        self._queue = SE.EventColumns()
        self._loading: list[Entry] = []  # customers queued for the state kernel, by slot
        self._batch = F.FeatureBatch(self.state_cfg)
        self._applied: list[_Applied] = []  # the Python path's rescorings, as applied
        self._rows: list[int] = []  # ... their FeatureBatch rows (as -1 - row)
        self._touched: dict[str, Entry] = {}

    def _process(self, records: InRecords) -> BatchResult:
        res = BatchResult()
        phase = res.phase_seconds
        t0 = time.perf_counter()
        r = self._intake(records)
        kernel = self._run_kernel()
        n = len(records)
        # the kernel's applied events, the common case, are settled as arrays; every other
        # record (and every loan: the watermark) by the loop, in arrival order
        fast = np.zeros(n, np.bool_)
        if kernel is not None:
            k = kernel.res
            fast[r.qi >= 0] = (k.outcome == SL.APPLIED) & ~k.declined[k.slot]
        counts = np.bincount(r.role[fast], minlength=len(_ROLES)).tolist()
        mark = self.loans_watermark
        applied = self._applied
        slow_j: list[int] = []  # the record of each Python-path rescoring
        fast_l = fast.tolist()
        t: float | None
        for j in np.flatnonzero(~fast | (r.role == _ROLE_SLOT["loans"])).tolist():
            rec = records[j]
            if fast_l[j]:  # an applied loan: only its time (the watermark) is left to do
                t = r.info[j][3]
            else:
                before = len(applied)
                t = self._settle(rec, self._plan_of(j, rec, r), kernel, res)
                slow_j += [j] * (len(applied) - before)
            if rec.topic == "loans" and t is not None and t > mark.get(rec.partition, -math.inf):
                mark[rec.partition] = t
                if self.parked_index:  # per record: batch-independent
                    self._expire_parked(rec.partition, res)
        for role, c in zip(_ROLES, counts, strict=True):
            if c:
                res.outcomes[(role, "processed")] += c
        self._save(kernel)
        t1 = time.perf_counter()
        phase["apply"] = t1 - t0
        rows = _AppliedRows(records, r, np.flatnonzero(fast), slow_j, applied, self._rows)
        if len(rows):
            feats, facts = self._features(kernel, rows.src)
            t2 = time.perf_counter()
            phase["features"] = t2 - t1
            self._score(feats, facts, rows, res)  # and its phases
            t1 = time.perf_counter()
        res.dirty = {cid: e.to_bytes() for cid, e in self._touched.items()}
        phase["serialise"] = time.perf_counter() - t1
        return res

    def _intake(self, records: InRecords) -> _Routed:
        """Decode and route a batch. Repayments and transactions are read by the intake
        kernel (one call for the batch, which also groups them by customer); msgspec decodes
        the rest (loans, what the kernel declines). Each customer's entry is looked up once;
        redeliveries are recognised per entry and record (one kernel call); the state kernel
        queues the events of customers with nothing parked, the Python path takes the rest.
        Python runs per customer and per msgspec-decoded record, not per message."""
        n = len(records)
        kernel_path = self.state_kernel
        if isinstance(records, InBatch):
            topics, keys, values = records.topics, records.keys, records.values
            part = np.full(n, records.partition, np.int64)
            off = np.fromiter(records.offsets, np.int64, n)
        else:  # the records' fields as columns, in one C-level pass (InRecord is a tuple)
            cols = zip(*records, strict=True) if n else ((),) * 6
            topics, partitions, offsets_in, keys, values, _ = cols
            part = np.fromiter(partitions, np.int64, n)
            off = np.fromiter(offsets_in, np.int64, n)
        role = np.fromiter(map(_ROLE_SLOT.get, topics, repeat(0)), np.int64, n)
        if kernel_path and n:
            types = _SCAN_TYPE[role]
            scan = IK.scan(values, types, keys)
            self._queue.scan = scan
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
        entries = self.entries
        gid: dict[str, int] = {}
        groups: list[Entry] = []
        group_of: list[int] = []  # per todo
        info: dict[int, tuple[InputEvent, str, str, float]] = {}
        bad: dict[int, _Plan] = {}
        okl = ok.tolist()
        for j in todo.tolist():
            if okl[j]:
                cid = next(cids)
            else:
                rec = records[j]
                got = _decoded(rec)
                if not isinstance(got, msgspec.Struct):
                    bad[j] = _plan((None, "", "", 0.0, None, -1, got))
                    group_of.append(-1)
                    continue
                cid, eid, t = got.customer_id, got.event_id, got.event_time.timestamp()
                key = rec.key
                if key is not None and key != cid.encode():
                    detail = f"key {_key_cid(rec)!r} != customer_id {cid!r}"
                    bad[j] = _plan((None, cid, eid, t, None, -1, detail))
                    group_of.append(-1)
                    continue
                info[j] = (got, cid, eid, t)
                times[j] = t
            g = gid.get(cid)
            if g is None:
                g = gid[cid] = len(groups)
                groups.append(entries.get(cid) or self.entry(cid))
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
        hit = np.flatnonzero(touched_at >= 0)
        hit = hit[np.argsort(touched_at[hit], kind="stable")]  # in order of first touch
        touched = self._touched
        for g in hit.tolist():
            e = groups[g]
            touched[e.customer_id] = e
        # the state kernel's customers: those with nothing parked; slots by first touch
        python = np.array([bool(e.parked) or not kernel_path for e in groups], np.bool_)
        mine = hit[~python[hit]]
        slot_of = np.full(len(groups) + 1, -1, np.int64)  # [-1]: no customer
        slot_of[mine] = np.arange(len(mine))
        self._loading = [groups[g] for g in mine.tolist()]
        queued = (slot_of[grp] >= 0) & ~redelivered
        qi = np.where(queued, np.cumsum(queued) - 1, -1)
        taken = np.flatnonzero(queued & ok)
        queue = self._queue
        queue.take_many(slot_of[grp[taken]], taken, qi[taken])
        for j in np.flatnonzero(queued & ~ok).tolist():
            queue.add(int(slot_of[grp[j]]), info[j][0], info[j][3])
        return _Routed(scan, groups, grp, qi, redelivered, role, times, info, bad)

    def _plan_of(self, j: int, rec: InRecord, r: _Routed) -> _Plan:
        """What intake made of record ``j``, for ``_settle`` (the records it settles only)."""
        plan = r.bad.get(j)
        if plan is not None:
            return plan
        e = r.groups[int(r.grp[j])]
        got = r.info.get(j)
        if got is None:  # read by the intake kernel
            event, cid, eid, t = None, e.customer_id, r.event_id(j, rec.value), float(r.times[j])
        else:
            event, cid, eid, t = got
        if r.redelivered[j]:
            return _plan((None, cid, eid, t, e, -1, REDELIVERED))
        return _plan((event, cid, eid, t, e, int(r.qi[j]), None))

    def _run_kernel(self) -> _KernelRun | None:
        """Load the queued customers into an arena and apply their events in one call."""
        cols, loading = self._queue, self._loading
        if not cols.n:
            return None
        # a state that does not fit a slot is declined: the Python path takes that customer
        res = SK.apply_batch([e.state_bytes for e in loading], cols, self.state_cfg, self._layout)
        return _KernelRun(loading, res)

    def _settle(
        self, rec: InRecord, plan: _Plan, kernel: _KernelRun | None, res: BatchResult
    ) -> float | None:
        """Count one message's outcome, in arrival order: dead letters, the Python path's
        events (applied now, parking included) and the kernel's results other than applied
        (``_process`` settles those inline). Its event time."""
        event, cid, event_id, t, e, i, bad = plan
        if bad is not None:
            if bad is REDELIVERED:
                res.outcomes[(rec.topic, "redelivered")] += 1
            elif isinstance(bad, tuple):  # not a valid record: (reason, detail)
                self._dead(res, rec, bad[0], bad[1], _key_cid(rec))
            elif not cid:
                self._dead(res, rec, "unknown_topic", bad, _key_cid(rec))
            else:
                self._dead(res, rec, "key_mismatch", bad, cid)
            return t if cid else None
        assert e is not None
        # (per record read here: only the records the batch's arrays did not settle)
        if i < 0 or kernel is None or kernel.res.declined[kernel.res.slot[i]]:
            if event is None:  # a customer the kernel declined: decode again (rare)
                event = decode(rec.value, INPUT_TYPES[rec.topic])
            outcome = self._apply_event(e, event, t, rec, res)
            if outcome is UNKNOWN_LOAN:
                self._park(e, rec, t, res)
            elif outcome is APPLIED and e.parked and isinstance(event, LoanEvent):
                self._unpark(e, res)
            return t
        o = int(kernel.res.outcome[i])
        if o == SL.DUPLICATE:
            res.outcomes[(rec.topic, "duplicate")] += 1
        else:
            reason = _KERNEL_DEAD[o]
            self._dead(res, rec, reason, f"{reason}: event {event_id}", cid)
        return t

    def _save(self, kernel: _KernelRun | None) -> None:
        """The kernel customers' new states, for the ones an event was applied to."""
        if kernel is None:
            return
        res = kernel.res
        changed = np.zeros(len(kernel.entries), np.bool_)
        changed[res.slot[res.outcome == SL.APPLIED]] = True
        which = np.flatnonzero(changed & ~res.declined).tolist()
        entries = [kernel.entries[k] for k in which]
        blobs = SC.save(
            self._layout, res.arena, res.floats, which, [e.customer_id for e in entries]
        )
        for e, blob in zip(entries, blobs, strict=True):
            e.state_bytes = blob

    def _features(
        self, kernel: _KernelRun | None, src: np.ndarray
    ) -> tuple[np.ndarray, F.FactColumns]:
        """Every applied event's feature row and facts, in applied order (``src``: kernel
        rows, and the Python path's FeatureBatch rows as -1 - row)."""
        mine = src >= 0
        if kernel is None or not mine.any():
            return self._batch.compute()
        rows = np.empty((len(src), len(F.FEATURES)), np.float64)
        active = np.empty(len(src), np.int64)
        bounced = np.empty(len(src), np.int64)
        k = src[mine]
        rows[mine] = kernel.res.rows[k]
        active[mine] = kernel.res.active[k]
        bounced[mine] = kernel.res.bounced[k]
        if not mine.all():
            py_rows, py_facts = self._batch.compute()
            j = -1 - src[~mine]
            rows[~mine] = py_rows[j]
            active[~mine] = py_facts.active_loan[j]
            bounced[~mine] = py_facts.new_bounced_debits[j]
        return rows, F.FactColumns(rows, active, bounced.tolist(), self.state_cfg)

    def _dead(self, res: BatchResult, rec: InRecord, reason: str, detail: str, cid: str) -> None:
        res.outcomes[(rec.topic, "dead_letter")] += 1
        res.dead_letters[reason] += 1
        dl = DeadLetter(
            event_id=f"dl-{rec.topic}-{rec.partition}-{rec.offset}",
            customer_id=cid or "unknown",
            event_time=_utc(rec.ingest_time),
            source="riskmon",
            reason=reason,
            detail=detail[:500],
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            key=rec.key,
            original=rec.value,
        )
        res.outputs.append(OutRecord("deadletter", rec.key or b"", encode(dl)))

    def _apply_event(
        self, e: Entry, event: InputEvent, t: float, rec: InRecord, res: BatchResult
    ) -> Outcome:
        outcome = e.state.apply(event, self.state_cfg, t)
        if outcome is APPLIED:  # (the record's offset has marked the entry touched)
            res.outcomes[(rec.topic, "processed")] += 1
            self._rows.append(-1 - self._batch.n)
            self._batch.add(e.state, e.state.last_event_time)
            self._applied.append((rec, e, t, event.event_id))
        elif outcome is DUPLICATE:
            res.outcomes[(rec.topic, "duplicate")] += 1
        elif outcome is not UNKNOWN_LOAN:
            reason = outcome.value
            self._dead(res, rec, reason, f"{reason}: event {event.event_id}", event.customer_id)
        return outcome

    def _park(self, e: Entry, rec: InRecord, t: float, res: BatchResult) -> None:
        """Hold an event for a loan not seen yet: the loans topic may simply be behind."""
        cid = e.customer_id
        if len(e.parked) >= MAX_PARKED:
            old = e.parked.pop(0)
            res.parked -= 1
            self._dead(res, _record(old), "unknown_loan", "parked event overflow", cid)
        e.parked.append(
            Parked(rec.topic, rec.partition, rec.offset, rec.key, rec.value, t, rec.ingest_time)
        )
        res.parked += 1  # its outcome is counted once it is applied or dead-lettered
        self.parked_index[cid] = rec.partition
        self._touched[cid] = e

    def _unpark(self, e: Entry, res: BatchResult) -> None:
        """A loan arrived: apply the customer's parked events, oldest first."""
        waiting = sorted(e.parked, key=lambda p: p.event_time)
        e.parked = []
        for p in waiting:
            rec = _record(p)
            event = decode(p.value, INPUT_TYPES[p.topic])
            if self._apply_event(e, event, p.event_time, rec, res) is UNKNOWN_LOAN:
                e.parked.append(p)
            else:
                res.parked -= 1
        if not e.parked:
            self.parked_index.pop(e.customer_id, None)

    def _expire_parked(self, partition: int, res: BatchResult) -> None:
        """Dead-letter parked events the loans topic has left behind: its partition is past their
        event time + the lateness bound, so their loan is not coming (it would precede them)."""
        limit = self.loans_watermark[partition] - self.state_cfg.lateness_days * 86400.0
        for cid, p in list(self.parked_index.items()):
            if p != partition:
                continue
            e = self.entry(cid)
            keep = [x for x in e.parked if x.event_time >= limit]
            for x in e.parked:
                if x.event_time < limit:
                    res.parked -= 1
                    detail = f"no loan for this {x.topic} event within the lateness bound"
                    self._dead(res, _record(x), "unknown_loan", detail, cid)
            if len(keep) != len(e.parked):
                e.parked = keep
                self._touched[cid] = e
            if not keep:
                del self.parked_index[cid]

    def _score(
        self,
        rows: np.ndarray,
        facts: F.FactColumns,
        applied: _AppliedRows,
        res: BatchResult,
    ) -> None:
        t_score = time.perf_counter()
        X = self.to_card_matrix(rows)
        t0 = time.perf_counter()
        batch = self.cs.score_many(X, with_points=True)
        res.kernel_seconds = time.perf_counter() - t0
        res.scored = len(applied)
        times = applied.times
        if self.drift is not None:
            self.drift.observe(batch.score, self.cs.bin_index_many(X), times)
        assert batch.points is not None
        offline, observe, ctx = self.offline, self.observe, self.ctx
        if self.record is not None:
            self.record(
                Observations(
                    applied.customer_ids(),
                    times.tolist(),
                    batch.score.tolist(),
                    batch.grade.tolist(),
                    facts.dpd.tolist(),
                )
            )
        t_policy = time.perf_counter()
        res.phase_seconds["score"] = t_policy - t_score
        assert batch.points is not None
        points = batch.points

        def observation(i: int) -> Observation:
            rec, e, ev_time, ev_id = applied[i]
            # positional: a 21-keyword NamedTuple call costs ~1 us more, per event. Facts'
            # first ten fields are Observation's dpd .. active_loan, in order.
            return Observation(
                e.customer_id,
                ev_time,
                ev_id,
                rec.topic,
                rec.partition,
                rec.offset,
                float(batch.score[i]),
                int(batch.grade[i]),
                (),  # reasons: filled below only when the policy emits an alert (text is costly)
                tuple(points[i].tolist()),
                *facts.head(i),
                ev_time if offline else rec.ingest_time,
            )

        if observe is None:
            # the policy kernel takes the quiet rescorings and hands each loud one to decide
            outs: dict[int, list[Alert | GradeChange]] = {}

            def decide_row(i: int, state: PolicyState) -> PolicyState:
                new, out = decide(state, observation(i), ctx)
                if out:
                    outs[i] = out
                return new

            quiet = self._quiet(applied, batch, facts, decide_row)
            # the kernel's regraded rescorings only need their grade change record: built
            # without the row's tuple and encoded in one call (~17 % of rescorings)
            moved = np.flatnonzero(quiet.regraded).tolist()
            changes = [
                grade_change(cid, ev_id, ev_time, old_g, old_s, g, score, ctx)
                for (cid, ev_time, ev_id), old_g, old_s, g, score in zip(
                    map(applied.who, moved),
                    quiet.old_grade[moved].tolist(),
                    quiet.old_score[moved].tolist(),
                    batch.grade[moved].tolist(),
                    batch.score[moved].tolist(),
                    strict=True,
                )
            ]
            graded = {
                i: OutRecord("grades", c.customer_id.encode(), raw)
                for i, c, raw in zip(moved, changes, encode_many(changes), strict=True)
            }
            outputs = res.outputs
            for i in sorted(outs.keys() | graded.keys()):  # in arrival order
                got = graded.get(i)
                if got is None:
                    self._emit(i, outs[i], applied[i], X, batch, res)
                else:
                    outputs.append(got)
            res.grade_changes += len(graded)
        else:
            for i in range(len(applied)):
                obs = observation(i)
                observe(obs)
                e = applied[i][1]
                e.policy, out = decide(e.policy, obs, ctx)
                if out:
                    self._emit(i, out, applied[i], X, batch, res)
        res.phase_seconds["policy"] = time.perf_counter() - t_policy

    def _emit(
        self,
        i: int,
        out: list[Alert | GradeChange],
        applied: _Applied,
        X: np.ndarray,
        batch: ScoreBatch,
        res: BatchResult,
    ) -> None:
        """The records ``decide`` returned for rescoring ``i``; alerts get their reasons."""
        rec, e, ev_time, _ev_id = applied
        key = e.customer_id.encode()
        reasons: list[Reason] | None = None
        outputs = res.outputs
        for r in out:
            if type(r) is GradeChange:
                outputs.append(OutRecord("grades", key, encode(r)))
                res.grade_changes += 1
                continue
            assert isinstance(r, Alert)
            if reasons is None:
                # decide only copies obs.reasons into its alerts, so adding them afterwards
                # is the same as deciding with them (and their texts are built for alerts
                # only). Python numbers, not numpy scalars: cheaper to index and format.
                assert batch.points is not None
                x, lost = X[i].tolist(), (self.cs.max_points - batch.points[i]).tolist()
                top = batch.reasons[i].tolist()
                reasons = [self.reason(c, x[c], lost[c]) for c in top if c >= 0]
            r = msgspec.structs.replace(r, reasons=list(reasons))
            outputs.append(OutRecord("alerts", key, encode(r)))
            res.alerts.append((r, ev_time, rec.ingest_time))

    def _quiet(
        self,
        applied: _AppliedRows,
        batch: ScoreBatch,
        facts: F.FactColumns,
        decide_row: DecideRow,
    ) -> Quiet:
        """Run the policy over the batch: the kernel, with ``decide_row`` for the loud
        rescorings; the customers' policy states are updated to after their last one."""
        # customers numbered in order of their first rescoring
        groups, at, inv = np.unique(applied.group, return_index=True, return_inverse=True)
        order = np.argsort(at)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        cust = rank[inv.reshape(-1)]
        entries = [applied.groups[g] for g in groups[order].tolist()]
        assert batch.points is not None
        inputs = QuietInputs(
            cust,
            applied.times,
            batch.score,
            batch.grade,
            batch.points,
            facts.bucket,
            facts.new_bounced_debits,
            facts.pre_due_shortfall,
            facts.inflow_ratio,
            facts.rate_increased,
            facts.has_arrears,
            facts.active_loan,
        )
        quiet = quiet_pass([e.policy for e in entries], inputs, self.ctx, decide_row)
        for e, p in zip(entries, quiet.states, strict=True):
            if p is not None:
                e.policy = p
        return quiet

    def to_card_matrix(self, full: np.ndarray) -> np.ndarray:
        """Feature rows (all FEATURES) -> the card's columns, categoricals as card codes."""
        X = np.ascontiguousarray(full[:, self._cols])
        for c, cmap in self._cat_maps.items():
            col = X[:, c]
            ok = ~np.isnan(col)
            codes = col[ok].astype(np.int64)
            inside = (codes >= 0) & (codes < len(cmap))
            col[ok] = np.where(inside, cmap[codes.clip(0, len(cmap) - 1)], -1.0)
        return X

    def to_card_row(self, row: np.ndarray) -> np.ndarray:
        return self.to_card_matrix(row.reshape(1, -1))[0]

    def reason(self, c: int, value: float, lost: int) -> Reason:
        if self._kinds[c] == "categorical" and not math.isnan(value) and value >= 0:
            shown = self.card.characteristics[c].categories[int(value)]
        elif math.isnan(value):
            shown = "missing"
        else:
            shown = f"{value:g}"
        return Reason(self.cs.names[c], f"{self._labels[c]} = {shown}: -{lost} points", lost)


def _decoded(rec: InRecord) -> InputEvent | str | tuple[str, str]:
    """The message's event, or why it is not one: a detail text (an unknown topic) or a
    decode error's (reason, detail)."""
    dec = _DECODERS.get(rec.topic)
    if dec is None:
        return f"no input type for topic {rec.topic!r}"
    try:
        return dec(rec.value)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        # its reason and detail, not the exception: the traceback's frames would hold this
        # batch's plans and records in a cycle, for the collector to find much later
        err = record_error(exc)
        return (err.reason, err.detail)


def _text(value: bytes, span: slice) -> str:
    return value[span].decode()


def _key_cid(rec: InRecord) -> str:
    """The record's key as text, for dead letters (the customer id it claims)."""
    return rec.key.decode("utf-8", "replace") if rec.key else ""


def _record(p: Parked) -> InRecord:
    return InRecord(p.topic, p.partition, p.offset, p.key, p.value, p.ingest_time)


def _feature_columns(cs: CompiledScorecard) -> tuple[list[int], dict[int, np.ndarray]]:
    """Map scorecard characteristics to feature columns; categorical level -> card code maps."""
    index = {name: j for j, name in enumerate(F.FEATURE_NAMES)}
    missing = [n for n in cs.names if n not in index]
    if missing:
        raise InputError(
            f"scorecard characteristics are not streaming features: {', '.join(missing)} "
            f"(known: {', '.join(F.FEATURE_NAMES)})"
        )
    cols = [index[n] for n in cs.names]
    cat_maps: dict[int, np.ndarray] = {}
    for c, j in enumerate(cols):
        feat = F.FEATURES[j]
        if feat.kind == "categorical":
            cat_maps[c] = np.array(
                [cs.category_code(feat.name, lvl) for lvl in feat.levels], dtype=np.float64
            )
    return cols, cat_maps
