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
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from schemas.codec import decode_input, encode
from schemas.events import (
    INPUT_TYPES,
    DeadLetter,
    InputEvent,
    LoanEvent,
)
from scoring.artifact import Scorecard
from scoring.compiled import CompiledScorecard
from streams.core import _intake_kernel as IK
from streams.core import _state_codec as SC
from streams.core import _state_events as SE
from streams.core import _state_kernel as SK
from streams.core import _state_slots as SL
from streams.core import features as F
from streams.core.applied import Applied, AppliedRows
from streams.core.arms import Arm, Arms, Hooks, take_facts
from streams.core.card_columns import CardColumns
from streams.core.drift import DriftMonitor
from streams.core.entry import Entry, EntryCache, Parked
from streams.core.intake import REDELIVERED, ROLE_SLOT, ROLES, EventLimits, Plan, key_cid, route
from streams.core.models import ModelSet
from streams.core.policy import Observation, PolicyConfig, PolicyContext
from streams.core.policy_state import PolicyState
from streams.core.records import BatchResult, InRecord, InRecords, OutRecord
from streams.core.rescorings import Observations
from streams.core.state import CustomerState, Outcome, StateConfig

# Python 3.11 looks ``Outcome.X`` up through EnumType.__getattr__ (~80 ns, several per event)
APPLIED, DUPLICATE, UNKNOWN_LOAN = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.UNKNOWN_LOAN

MAX_PARKED = 32  # parked events per customer; beyond that the oldest is dead-lettered


_log = logging.getLogger(__name__)


class LoadError(RuntimeError):
    """The table could not be read: the batch fails as a whole (it is fetched and processed
    again later), since no message is at fault."""


#: errors that are no message's fault: they fail the batch instead of dead-lettering messages
_NOT_A_MESSAGE = (LoadError, MemoryError)
_BAD_TIME = ("future_event", "time_out_of_range")
_KERNEL_DEAD = {SL.TOO_LATE: "too_late", SL.AGGREGATE_OVERFLOW: "aggregate_overflow"}


@dataclass
class _KernelRun:
    """One state-kernel call over the queued customers (``entries``, by slot)."""

    entries: list[Entry]
    res: SK.Applied


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


class Pipeline:
    """Processes micro-batches for the customers one worker owns.

    Collaborators, all optional: ``load(customer_id) -> bytes | None`` reads a customer's entry
    from the table; ``entries`` caches the decoded entries (it must equal what the last batch
    wrote: its owner clears it on a rebalance or a failed batch); ``drift`` counts every
    rescoring for the live PSI/CSI; ``record`` takes each batch's rescorings as columns (the
    worker's rescoring log); ``observe`` takes every rescoring as an :class:`Observation` before
    the policy decides on it (the backtest's recorder: it sends every rescoring through
    ``decide`` instead of leaving the quiet ones to the policy kernel). ``offline``: alerts are
    stamped with their event time instead of the wall clock. ``state_kernel=False`` sends every
    event through the Python path (the state kernel's reference, in tests).
    """

    def __init__(
        self,
        card: Scorecard,
        state_cfg: StateConfig | None = None,
        policy_cfg: PolicyConfig | None = None,
        *,
        load: Callable[[str], bytes | None] | None = None,
        entries: EntryCache | None = None,
        drift: DriftMonitor | None = None,
        record: Callable[[Observations], None] | None = None,
        observe: Callable[[Observation], None] | None = None,
        limits: EventLimits | None = None,
        clock: Callable[[], float] | None = None,
        topic_names: Mapping[str, str] | None = None,
        offline: bool = False,
        state_kernel: bool = True,
    ) -> None:
        self.offline = offline
        self.state_cfg = state_cfg or StateConfig()
        # without a table (backtest, tests) the pipeline keeps what it wrote itself, so that a
        # failed batch can be taken back and processed again
        self._store: dict[str, bytes] | None = None if load is not None else {}
        self.load = load if load is not None else self._store.get  # type: ignore[union-attr]
        self.entries = EntryCache() if entries is None else entries
        self.observe, self.record = observe, record
        self.state_kernel = state_kernel
        self.limits = limits or EventLimits()
        self.clock = clock
        # input role -> topic name, for dead letters (the pipeline itself works with roles)
        self.topic_names = dict(topic_names or {r: f"riskmon.{r}" for r in INPUT_TYPES})
        # partition -> newest accepted event time (the reference for the future bound when
        # there is no wall clock: backtest, replays)
        self.stream_time: dict[int, float] = {}
        self.parked_index: dict[str, int] = {}  # customers with parked events -> partition
        # partition -> newest event time seen on the loans topic (parked events expire on it)
        self.loans_watermark: dict[int, float] = {}
        self.policy_cfg = policy_cfg or PolicyConfig()
        # the cards: the champion (``drift``: its monitor), and later arms (streams.core.arms),
        # swapped in only between batches (set_models)
        self._drift_window = None if drift is None else drift.window_s
        champion = Arm.build("champion", card, self.policy_cfg, None)
        champion.drift = drift
        self.arms = Arms(ModelSet(card), champion)
        self._pending: Arms | None = None
        self._layout = SL.Layout(self.state_cfg).vector
        self._overlay: dict[str, bytes] | None = None  # while a failed batch is isolated
        self._done: list[Callable[[], object]] = []  # what to tell others once a batch is through
        self._new_batch()
        # load the jitted kernels from numba's cache now, not in the first batch
        warm = F.FeatureBatch(self.state_cfg)
        warm.add(CustomerState.new("warm-up"), 0.0)
        warm.compute()
        SK.warm_up(self.state_cfg)
        IK.warm_up()

    # the champion's card, as the read API, the queue and the gauges see customers
    @property
    def card(self) -> Scorecard:
        return self.arms.champion.card

    @property
    def cs(self) -> CompiledScorecard:
        return self.arms.champion.cs

    @property
    def columns(self) -> CardColumns:
        return self.arms.champion.columns

    @property
    def ctx(self) -> PolicyContext:
        return self.arms.champion.ctx

    @property
    def drift(self) -> DriftMonitor | None:
        return self.arms.champion.drift

    def set_models(self, models: ModelSet, now: bool = False) -> Arms:
        """Score with ``models`` from the next batch on: built now (a card this stream cannot
        use raises :class:`~streams.core.models.ModelRejected` and changes nothing), swapped in
        when :meth:`process` starts a batch, never within one (``now``: at once, for a caller
        with no batch in flight, e.g. a worker starting)."""
        base = self._pending or self.arms
        arms = Arms.build(models, self.policy_cfg, self._drift_window, base)
        if now:
            self.arms, self._pending = arms, None
        else:
            self._pending = arms
        return arms

    def entry(self, customer_id: str) -> Entry:
        """A customer's entry: cached, else read with ``load``, else a new customer's."""
        e = self.entries.get(customer_id)
        if e is None:
            raw = None if self._overlay is None else self._overlay.get(customer_id)
            if raw is None:
                try:
                    raw = self.load(customer_id)
                except Exception as exc:
                    raise LoadError(f"reading customer {customer_id!r}: {exc!r}") from exc
            e = (
                Entry.from_bytes(raw, customer_id)
                if raw
                else Entry(CustomerState.new(customer_id), PolicyState.new())
            )
            self.entries[customer_id] = e
        return e

    # -- the batch -----------------------------------------------------------------------------
    def process(self, records: InRecords) -> BatchResult:
        """One batch: the records to send and the table entries to write.

        No message can fail the batch: if processing raises (a bug a message exposes, an
        unforeseen input), the batch is split in halves and each processed again, down to the
        one message that fails, which is dead-lettered (``processing_error``) with the error;
        everything else is processed as usual. Decisions are per event, so where the batch was
        cut does not change them. An error that is no message's fault (the table cannot be
        read: :class:`LoadError`; memory) fails the batch, with nothing of it kept."""
        if self._pending is not None:  # the batch boundary: new cards take over here
            self.arms, self._pending = self._pending, None
        try:
            res = self._once(records)
        except _NOT_A_MESSAGE:
            raise
        except Exception as exc:
            res = self._isolate(records, exc)
        if self._store is not None:
            self._store.update(res.dirty)
        return res

    def _once(self, records: InRecords) -> BatchResult:
        """One attempt at a batch; on an error, nothing of it is kept."""
        saved = (dict(self.stream_time), dict(self.loans_watermark), dict(self.parked_index))
        self._done = []
        try:
            res = self._process(records)
        except BaseException:
            self.entries.forget()  # half-applied entries: read them again
            self.stream_time, self.loans_watermark, self.parked_index = saved
            raise
        finally:
            self._new_batch()  # the batch's working lists are not kept until the next one
        for effect in self._done:
            effect()
        return res

    def _isolate(self, records: InRecords, error: Exception) -> BatchResult:
        """Process ``records`` in ever smaller parts until the failing messages are found.
        Parts that went through are written to an overlay the entry lookup reads first, so a
        later part sees their state as if the table had it."""
        _log.warning("batch of %d records failed (%r): isolating the message", len(records), error)
        recs = [records[j] for j in range(len(records))]
        total = BatchResult()
        overlay: dict[str, bytes] = {}
        self._overlay = overlay
        try:
            self._split(recs, total, overlay)
        finally:
            self._overlay = None
        return total

    def _split(self, recs: list[InRecord], total: BatchResult, overlay: dict[str, bytes]) -> None:
        try:
            part = self._once(recs)
        except _NOT_A_MESSAGE:
            raise
        except Exception as exc:
            if len(recs) > 1:
                mid = len(recs) // 2
                self._split(recs[:mid], total, overlay)
                self._split(recs[mid:], total, overlay)
                return
            rec = recs[0]
            part = BatchResult()
            detail = f"{type(exc).__name__}: {exc}"
            _log.error("message %s/%d/%d failed: %s", rec.topic, rec.partition, rec.offset, detail)
            self._dead(part, rec, "processing_error", detail, key_cid(rec))
        overlay.update(part.dirty)
        total.merge(part)

    def _new_batch(self) -> None:
        """Fresh per-batch working state (the Python path's rescorings, the touched entries,
        the state kernel's queue); also after a failed batch, so nothing of it reaches the
        next."""
        self._queue = SE.EventColumns()
        self._loading: list[Entry] = []  # customers queued for the state kernel, by slot
        self._batch = F.FeatureBatch(self.state_cfg)
        self._applied: list[Applied] = []  # the Python path's rescorings, as applied
        self._rows: list[int] = []  # ... their FeatureBatch rows (as -1 - row)
        self._touched: dict[str, Entry] = {}

    def _process(self, records: InRecords) -> BatchResult:
        res = BatchResult()
        phase = res.phase_seconds
        t0 = time.perf_counter()
        r, self._loading = route(
            records,
            self.entries,
            self.entry,
            self._queue,
            self._touched,
            self.limits,
            self.clock,
            self.stream_time,
            self.state_kernel,
        )
        kernel = self._run_kernel()
        n = len(records)
        # the kernel's applied events, the common case, are settled as arrays; every other
        # record (and every loan: the watermark) by the loop, in arrival order
        fast = np.zeros(n, np.bool_)
        if kernel is not None:
            k = kernel.res
            fast[r.qi >= 0] = (k.outcome == SL.APPLIED) & ~k.declined[k.slot]
        counts = np.bincount(r.role[fast], minlength=len(ROLES)).tolist()
        mark = self.loans_watermark
        applied = self._applied
        slow_j: list[int] = []  # the record of each Python-path rescoring
        fast_l = fast.tolist()
        t: float | None
        for j in np.flatnonzero(~fast | (r.role == ROLE_SLOT["loans"])).tolist():
            rec = records[j]
            if fast_l[j]:  # an applied loan: only its time (the watermark) is left to do
                t = r.info[j][3]
            else:
                before = len(applied)
                t = self._settle(rec, r.plan_of(j, rec), kernel, res)
                slow_j += [j] * (len(applied) - before)
            if rec.topic == "loans" and t is not None and t > mark.get(rec.partition, -math.inf):
                mark[rec.partition] = t
                if self.parked_index:  # per record: batch-independent
                    self._expire_parked(rec.partition, res)
        for role, c in zip(ROLES, counts, strict=True):
            if c:
                res.outcomes[(role, "processed")] += c
        self._save(kernel)
        t1 = time.perf_counter()
        phase["apply"] = t1 - t0
        rows = AppliedRows(records, r, np.flatnonzero(fast), slow_j, applied, self._rows)
        if len(rows):
            feats, facts = self._features(kernel, rows.src)
            t2 = time.perf_counter()
            phase["features"] = t2 - t1
            self._score(feats, facts, rows, res)  # and its phases
            t1 = time.perf_counter()
        res.dirty = {cid: e.to_bytes() for cid, e in self._touched.items()}
        phase["serialise"] = time.perf_counter() - t1
        return res

    def _score(
        self, feats: np.ndarray, facts: F.FactColumns, rows: AppliedRows, res: BatchResult
    ) -> None:
        """Each arm scores its rescorings in one kernel call (a shadow: its share's, besides
        the champion's all) and decides for them."""
        arms = self.arms
        hooks = Hooks(self._done, self.record, self.observe, self.offline)
        mine = arms.split(rows)
        if mine is None or arms.challenger is None:
            arms.champion.score(feats, facts, rows, res, hooks)
        else:
            parts = [(arms.challenger, np.flatnonzero(mine))]
            if arms.challenger.decides:
                parts.insert(0, (arms.champion, np.flatnonzero(~mine)))
            else:
                arms.champion.score(feats, facts, rows, res, hooks)
            for arm, at in parts:
                if len(at):
                    arm.score(feats[at], take_facts(facts, at), rows.take(at), res, hooks)
        for q in res.arm_quality.values():
            res.quality.merge(q)

    def _run_kernel(self) -> _KernelRun | None:
        """Load the queued customers into an arena and apply their events in one call."""
        cols, loading = self._queue, self._loading
        if not cols.n:
            return None
        # a state that does not fit a slot is declined: the Python path takes that customer
        res = SK.apply_batch([e.state_bytes for e in loading], cols, self.state_cfg, self._layout)
        return _KernelRun(loading, res)

    def _settle(
        self, rec: InRecord, plan: Plan, kernel: _KernelRun | None, res: BatchResult
    ) -> float | None:
        """Count one message's outcome, in arrival order: dead letters, the Python path's
        events (applied now, parking included) and the kernel's results other than applied
        (``_process`` settles those inline). Its event time."""
        event, cid, event_id, t, e, i, bad = plan
        if bad is not None:
            if bad is REDELIVERED:
                res.outcomes[(rec.topic, "redelivered")] += 1
                return t
            assert isinstance(bad, tuple)
            reason, detail = bad
            self._dead(res, rec, reason, detail, cid or key_cid(rec))
            # an impossible time must not move the loans watermark either
            return t if cid and reason not in _BAD_TIME else None
        assert e is not None
        # (per record read here: only the records the batch's arrays did not settle)
        if i < 0 or kernel is None or kernel.res.declined[kernel.res.slot[i]]:
            if event is None:  # a customer the kernel declined: decode again (rare)
                event = decode_input(rec.value, rec.topic)
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
        exposure = np.empty(len(src), np.int64)
        floor = np.empty(len(src), np.int64)  # the lender's reported class (-1: none)
        k = src[mine]
        rows[mine] = kernel.res.rows[k]
        active[mine] = kernel.res.active[k]
        bounced[mine] = kernel.res.bounced[k]
        exposure[mine] = kernel.res.exposure[k]
        floor[mine] = kernel.res.cls[k]
        if not mine.all():
            py_rows, py_facts = self._batch.compute()
            j = -1 - src[~mine]
            rows[~mine] = py_rows[j]
            active[~mine] = py_facts.active_loan[j]
            bounced[~mine] = py_facts.new_bounced_debits[j]
            exposure[~mine] = py_facts.exposure_cents[j]
            floor[~mine] = py_facts.floor[j]
        return rows, F.FactColumns(rows, active, bounced.tolist(), exposure, self.state_cfg, floor)

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
            topic=self.topic_names.get(rec.topic, rec.topic),
            partition=rec.partition,
            offset=rec.offset,
            key=rec.key,
            original=rec.value,
        )
        res.outputs.append(OutRecord("deadletter", rec.key, encode(dl)))

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
            event = decode_input(p.value, p.topic)
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

    def stored(self) -> Mapping[str, bytes]:
        """Every customer's entry as written, by customer id: a pipeline without ``load`` keeps
        them itself (the backtest, ``riskmon history``)."""
        if self._store is None:
            raise ValueError("this pipeline's entries live in its caller's table")
        return self._store

    def end_of_input(self) -> BatchResult:
        """The input is over (the end of a backtest file): every event still parked waits for a
        loan that will not come, and is dead-lettered, so that no event is silently lost."""
        res = BatchResult()
        for cid in sorted(self.parked_index):
            e = self.entry(cid)
            for x in e.parked:
                res.parked -= 1
                detail = f"no loan for this {x.topic} event by the end of the input"
                self._dead(res, _record(x), "unknown_loan", detail, cid)
            e.parked = []
            res.dirty[cid] = e.to_bytes()
        self.parked_index.clear()
        if self._store is not None:
            self._store.update(res.dirty)
        return res


def _record(p: Parked) -> InRecord:
    return InRecord(p.topic, p.partition, p.offset, p.key, p.value, p.ingest_time)
