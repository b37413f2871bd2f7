"""One micro-batch, start to finish, with no Kafka in sight.

decode each message once -> apply it to its customer's state (dedupe, lateness, dead letters) ->
pack the customer's state right after each applied event (features.FeatureBatch) -> ONE feature
kernel call and ONE scoring kernel call over all of them -> alert policy per event, in arrival
order (ONE policy-kernel call takes the quiet rescorings, streams/policy_kernel.py; ``decide``
the rest) -> output records + one serialised state entry per touched customer.

Observations are per event, not per batch, so decisions (and deterministic alert ids) depend only
on each customer's event order, never on where Kafka happened to cut a batch: a replay after a
crash, or the offline backtest, makes the same decisions.

The Faust worker (streams/worker.py) and the offline backtest both drive this class, so the
backtest's alerts equal the stream's by construction.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec
import numpy as np

from schemas.codec import RecordError, decode, encode
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
from streams import features as F
from streams.drift import DriftMonitor
from streams.policy import (
    Observation,
    PolicyConfig,
    PolicyContext,
    PolicyState,
    decide,
    grade_change,
)
from streams.policy_kernel import Quiet, QuietInputs, quiet_pass, warm_up
from streams.rescorings import Observations
from streams.state import CustomerState, Outcome, StateConfig

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


_Applied = tuple["InRecord", "Entry", float, str]  # record, entry, event time, event id


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


@dataclass
class Entry:
    """A customer's table value: behavioural state, alert-policy state, parked events, and
    ``offsets`` = [partition, last loans / repayments / transactions offset this entry has
    handled]: a record at or below them is a redelivery (replay after a rebalance or crash)
    and changes nothing, however old its event time."""

    state: CustomerState
    policy: PolicyState
    parked: list[Parked] = field(default_factory=list)
    offsets: list[int] = field(default_factory=_no_offsets)

    def to_bytes(self) -> bytes:
        return _entry_encoder.encode(
            _EntryRecord(
                _ENTRY_VERSION,
                self.state.to_bytes(),
                self.policy.to_bytes(),
                self.parked,
                self.offsets,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        r = _entry_decoder.decode(data)
        if r.version not in (1, _ENTRY_VERSION):
            raise ValueError(f"unknown customer entry version {r.version}")
        return cls(
            CustomerState.from_bytes(r.state),
            PolicyState.from_bytes(r.policy),
            r.parked,
            r.offsets if len(r.offsets) == 4 else _no_offsets(),
        )


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
        # load the jitted feature kernel now (~0.4 s from numba's cache), not in the first batch
        warm = F.FeatureBatch(self.state_cfg)
        warm.add(CustomerState.new("warm-up"), 0.0)
        warm.compute()
        warm_up(self.ctx, len(self.cs.names))

    # -- state ---------------------------------------------------------------------------------
    def entry(self, customer_id: str) -> Entry:
        e = self.entries.get(customer_id)
        if e is None:
            raw = self.load(customer_id)
            e = (
                Entry.from_bytes(raw)
                if raw
                else Entry(CustomerState.new(customer_id), PolicyState.new())
            )
            self.entries[customer_id] = e
        return e

    # -- the batch -----------------------------------------------------------------------------
    def process(self, records: Sequence[InRecord]) -> BatchResult:
        res = BatchResult()
        phase = res.phase_seconds
        t0 = time.perf_counter()
        self._batch = F.FeatureBatch(self.state_cfg)
        self._applied: list[_Applied] = []
        self._touched: dict[str, Entry] = {}
        mark = self.loans_watermark
        for rec in records:
            t = self._apply_one(rec, res)
            if rec.topic == "loans" and t is not None and t > mark.get(rec.partition, -math.inf):
                mark[rec.partition] = t
                if self.parked_index:  # per record: batch-independent
                    self._expire_parked(rec.partition, res)
        t1 = time.perf_counter()
        phase["apply"] = t1 - t0
        if self._applied:
            rows, facts = self._batch.compute()
            t2 = time.perf_counter()
            phase["features"] = t2 - t1
            self._score(rows, facts, self._applied, res)  # and its phases
            t1 = time.perf_counter()
        res.dirty = {cid: e.to_bytes() for cid, e in self._touched.items()}
        phase["serialise"] = time.perf_counter() - t1
        return res

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

    def _apply_one(self, rec: InRecord, res: BatchResult) -> float | None:
        """Decode and apply one message; returns its event time (None if undecodable)."""
        type_ = INPUT_TYPES.get(rec.topic)
        if type_ is None:
            detail = f"no input type for topic {rec.topic!r}"
            self._dead(res, rec, "unknown_topic", detail, _key_cid(rec))
            return None
        try:
            event = decode(rec.value, type_)
        except RecordError as exc:
            self._dead(res, rec, exc.reason, exc.detail, _key_cid(rec))
            return None
        cid = event.customer_id
        t = event.event_time.timestamp()
        if rec.key is not None and rec.key != cid.encode():
            detail = f"key {_key_cid(rec)!r} != customer_id {cid!r}"
            self._dead(res, rec, "key_mismatch", detail, cid)
            return t
        e = self.entries.get(cid) or self.entry(cid)
        # a record this entry has handled already is a redelivery; else remember its offset
        offsets = e.offsets
        if offsets[0] != rec.partition:  # first record, or the topics were repartitioned
            offsets[:] = [rec.partition, -1, -1, -1]
        slot = _ROLE_SLOT[rec.topic]
        if rec.offset <= offsets[slot]:
            res.outcomes[(rec.topic, "redelivered")] += 1
            return t
        offsets[slot] = rec.offset
        self._touched[cid] = e
        outcome = self._apply_event(e, event, t, rec, res)
        if outcome is UNKNOWN_LOAN:
            self._park(e, rec, t, res)
        elif outcome is APPLIED and e.parked and isinstance(event, LoanEvent):
            self._unpark(e, res)
        return t

    def _apply_event(
        self, e: Entry, event: InputEvent, t: float, rec: InRecord, res: BatchResult
    ) -> Outcome:
        outcome = e.state.apply(event, self.state_cfg, t)
        if outcome is APPLIED:  # (the record's offset has marked the entry touched)
            res.outcomes[(rec.topic, "processed")] += 1
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
        cid = e.state.customer_id
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
            self.parked_index.pop(e.state.customer_id, None)

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
        applied: list[_Applied],
        res: BatchResult,
    ) -> None:
        t_score = time.perf_counter()
        X = self.to_card_matrix(rows)
        t0 = time.perf_counter()
        batch = self.cs.score_many(X, with_points=True)
        res.kernel_seconds = time.perf_counter() - t0
        res.scored = len(applied)
        times = np.array([a[2] for a in applied], dtype=np.float64)
        if self.drift is not None:
            self.drift.observe(batch.score, self.cs.bin_index_many(X), times)
        assert batch.points is not None
        offline, observe, ctx = self.offline, self.observe, self.ctx
        if self.record is not None:
            self.record(
                Observations(
                    [a[1].state.customer_id for a in applied],
                    times.tolist(),
                    batch.score.tolist(),
                    batch.grade.tolist(),
                    facts.dpd.tolist(),
                )
            )
        t_policy = time.perf_counter()
        res.phase_seconds["score"] = t_policy - t_score
        # quiet rescorings (no alert) in one kernel call; the recorder needs every one
        if observe is None:
            quiet = self._quiet(applied, times, batch, facts)
            # the kernel's regraded rescorings only need their grade change record
            todo = np.flatnonzero(~quiet.handled | quiet.regraded)
            regraded = quiet.regraded[todo].tolist()
            old_grade = quiet.old_grade[todo].tolist()
            old_score = quiet.old_score[todo].tolist()
        else:
            todo = np.arange(len(applied))
            regraded, old_grade, old_score = [False] * len(todo), [], []
        scores = batch.score[todo].tolist()
        grades = batch.grade[todo].tolist()
        points = batch.points[todo].tolist()
        for j, i in enumerate(todo.tolist()):
            rec, e, ev_time, ev_id = applied[i]
            cid = e.state.customer_id
            if regraded[j]:
                gc = grade_change(
                    cid, ev_id, ev_time, old_grade[j], old_score[j], grades[j], scores[j], ctx
                )
                res.outputs.append(OutRecord("grades", cid.encode(), encode(gc)))
                res.grade_changes += 1
                continue
            # positional: a 21-keyword NamedTuple call costs ~1 us more, per event. Facts'
            # first ten fields are Observation's dpd .. active_loan, in order.
            obs = Observation(
                cid,
                ev_time,
                ev_id,
                rec.topic,
                rec.partition,
                rec.offset,
                scores[j],
                grades[j],
                (),  # reasons: filled below only when the policy emits an alert (text is costly)
                tuple(points[j]),
                *facts[i][:10],
                ev_time if offline else rec.ingest_time,
            )
            if observe is not None:
                observe(obs)
            e.policy, out = decide(e.policy, obs, ctx)
            if not out:
                continue
            if any(isinstance(r, Alert) for r in out):
                # decide only copies obs.reasons into its alerts, so adding them afterwards is
                # the same as deciding with them (and their texts are built for alerts only)
                reasons = [
                    self.reason(c, X[i, c], int(self.cs.max_points[c]) - points[j][c])
                    for c in batch.reasons[i].tolist()
                    if c >= 0
                ]
                out = [
                    msgspec.structs.replace(r, reasons=list(reasons)) if isinstance(r, Alert) else r
                    for r in out
                ]
            key = cid.encode()
            for r in out:
                if isinstance(r, Alert):
                    res.outputs.append(OutRecord("alerts", key, encode(r)))
                    res.alerts.append((r, ev_time, rec.ingest_time))
                elif isinstance(r, GradeChange):
                    res.outputs.append(OutRecord("grades", key, encode(r)))
                    res.grade_changes += 1
        res.phase_seconds["policy"] = time.perf_counter() - t_policy

    def _quiet(
        self, applied: list[_Applied], times: np.ndarray, batch: ScoreBatch, facts: F.FactColumns
    ) -> Quiet:
        """Run the policy kernel over the batch (the customers' policy states are updated to
        after their last handled rescoring: the rest go through ``decide`` from there)."""
        slot: dict[int, int] = {}
        entries: list[Entry] = []
        cust = []
        for a in applied:
            e = a[1]
            c = slot.get(id(e))
            if c is None:
                c = slot[id(e)] = len(entries)
                entries.append(e)
            cust.append(c)
        assert batch.points is not None
        inputs = QuietInputs(
            np.array(cust, dtype=np.int64),
            times,
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
        quiet = quiet_pass([e.policy for e in entries], inputs, self.ctx)
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
