"""Stream-time alignment of a partition's co-partitioned input topics (as Kafka Streams does).

A backlog on one input topic (catch-up after downtime, a file produced at once) must not fall
behind the others: the aligner queues each partition's fetched batches per topic and hands the
handler one merged batch per partition and fetch, in the order the records were sent (order
headers, :mod:`streams.kafka.order`) or, for foreign producers, by record timestamp.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import faust
import numpy as np
from faust.types import TP

from streams.kafka.consumer import BatchMessage, _may_process, _owned
from streams.kafka.records import Record
from streams.kafka.tables import Handler, RecordBatch

_log = logging.getLogger(__name__)

#: Seconds a chained record waits for a missing predecessor before the aligner checks whether it
#: can still come (see ``_Aligner``); far above a fetch round trip, far below ``idle_s``.
RESYNC_S = 1.0

#: Seconds a partition's merge waits before the worker logs what it waits for (once per wait).
STALL_WARN_S = 5.0

#: Batches whose outputs/changelog are still being delivered before the aligned agent waits.
MAX_PERSISTING = 64

#: Records per handler call of the aligned agent. A backlog would otherwise merge into one huge
#: batch whose processing holds the event loop for seconds (alert latency, /metrics timeouts).
MAX_DRAIN = 16_384


@dataclass(slots=True)
class _Queued:
    event: Any  # the Faust event, acked once every record was handed over and persisted
    message: BatchMessage
    pos: int = 0


def _fetch_state(consumer: Any, tp: TP) -> str:
    """What aiokafka's fetcher holds for ``tp`` in the consumer thread (for the wait report):
    its fetch position, a fetched result not handed over yet, whether it is paused there."""
    try:
        inner = consumer._thread._consumer
        state = inner._subscription.subscription.assignment.state_value(tp)
        buffered = inner._fetcher._records.get(tp)
        if buffered is not None:
            records = getattr(buffered, "_partition_records", None)
            nxt = getattr(records, "next_fetch_offset", None)
            buffered = f"{type(buffered).__name__} up to {nxt}"
        valid = state.has_valid_position
        position = state.position if valid else "none (awaiting reset)"
        return f"position {position}, buffered {buffered}, paused in aiokafka {state.paused}"
    except Exception:  # not assigned, no position yet, or another consumer
        return "?"


class _Aligner:
    """Stream-time alignment of co-partitioned topics (as Kafka Streams does).

    Per partition number, one queue per topic; each step hands over one queue head:

    * with an order header (riskmon's producer numbers the records it sends to each partition
      number of an input topic set: a chain id and a sequence number), the head that is its
      chain's next record goes; a head whose predecessor has not arrived waits. This is exact:
      the merge reproduces the send order whatever the fetch timing, so a stream equals the
      backtest of the same file.
    * otherwise (no header, or a chain not seen yet in this consumer generation: its
      predecessor may have been processed before a restart or rebalance) the oldest head by
      record timestamp goes (ties: topic order), unless a topic's queue is empty while the
      broker says that topic-partition has more records (its high-water mark is past what we
      received): then the merge waits for them instead of running ahead. Best effort:
      high-water marks of different partitions are not read atomically. A chain not seen yet
      competes with its lowest queued sequence number only (a topic holds a chain's records in
      sequence order, so nothing queued precedes that one) and is followed from there: after a
      restart a backlog that continues the chain is merged exactly, as on a first start.

    After a restart or rebalance the committed offsets of the three topics sit at different
    points of a chain, so some predecessors were processed before and never come again: a
    partition that waited ``RESYNC_S`` while no empty queue's topic has more records skips to its
    oldest waiting record. The high-water marks must come from fetch responses newer than the
    wait's start (a busy worker's marks can be seconds old: skipping on those sent predecessors
    that were merely late to ``too_late``). A partition that waited ``idle_s`` goes on anyway
    (a predecessor that never comes, stale high-water marks).

    A message is acked when all its records were processed and persisted; a partly processed
    one stays unacked (re-fetched after a crash, where event-id dedupe makes the replay
    harmless).
    """

    def __init__(
        self, app: faust.App, topics: tuple[str, ...], handler: Handler, idle_s: float
    ) -> None:
        self.app, self.topics, self.handler, self.idle_s = app, topics, handler, idle_s
        self.queues: dict[int, dict[str, deque[_Queued]]] = {}
        self.received: dict[TP, int] = {}  # last offset handed to us per topic-partition
        # partition -> (monotonic, wall clock) time it started waiting
        self.stalled: dict[int, tuple[float, float]] = {}
        self.persisting: dict[int, asyncio.Future[None]] = {}  # partition -> its last persist
        self.inflight: deque[asyncio.Future[None]] = deque()
        # partition -> (consumer generation, {chain id: next expected sequence number})
        self.expect: dict[int, tuple[int | None, dict[bytes, int]]] = {}
        self.lock = asyncio.Lock()
        self.pending: set[int] = set()  # partitions queued for their fetch's last message
        self.warned: dict[int, float] = {}  # partition -> start of the wait last logged
        # topic-partition -> (offset, generation) of the last message dropped as not current
        self.dropped: dict[TP, tuple[int, int | None]] = {}
        self.arrived: dict[TP, float] = {}  # topic-partition -> monotonic time of its last message
        self.refetched: dict[TP, float] = {}  # topic-partition -> start of the wait it refetched in

    async def add(self, event: Any) -> None:
        """Queue a message; merge its partition once the fetch it came with has been handed
        over (its last message for this partition number): one handler call per partition and
        fetch, not one per topic (each call has a fixed cost of a few ms in the worker)."""
        m: BatchMessage = event.message
        qs = self.queues.setdefault(m.partition, {t: deque() for t in self.topics})
        qs[m.tp.topic].append(_Queued(event, m))
        self.received[m.tp] = m.offset
        self.arrived[m.tp] = time.monotonic()
        if m.last_in_fetch:
            self.pending.discard(m.partition)
            await self.drain(m.partition)
        else:
            self.pending.add(m.partition)

    def release(self) -> int:
        """Drop every queued message, unacked; how many. Called when Faust waits for every
        taken message to be acked (a rebalance begins, the worker stops) with flow suspended:
        the merge would not hand them over before the wait ended, so it never ended. Not acked,
        they are fetched again from the committed offset (after a rebalance they would be
        stale anyway); records of a partly handed message come again as redeliveries.
        Messages already handed over are acked by their persist as usual."""
        unacked = getattr(self.app.consumer, "_unacked_messages", None)
        n = 0
        for qs in self.queues.values():
            for q in qs.values():
                while q:
                    m = q.popleft().message
                    if unacked is not None:
                        unacked.discard(m)
                    self.received.pop(m.tp, None)  # the next offset is the committed one now
                    n += 1
        self.pending.clear()
        self.stalled.clear()
        return n

    async def unstall(self) -> None:
        """Timer: merge partitions whose fetch's last message never came (dropped in a
        rebalance); resync chains of partitions waiting longer than ``RESYNC_S``; let
        partitions that waited longer than ``idle_s`` go on."""
        for p in list(self.pending):
            self.pending.discard(p)
            await self.drain(p)
        now = time.monotonic()
        for p, (since, since_wall) in list(self.stalled.items()):
            if now - since >= STALL_WARN_S:
                if self.warned.get(p) != since:
                    self.warned[p] = since
                    _log.warning("partition %d has waited %.0f s: %s", p, now - since, self._why(p))
                await self._refetch(p, since)
            if now - since >= self.idle_s:
                await self.drain(p, force=True)
            elif now - since >= RESYNC_S:
                await self.drain(p, resync_since=since_wall)

    def _why(self, p: int) -> str:
        """What partition ``p``'s merge waits for: each topic's head (offset, chain sequence
        number) or, for an empty queue, where its records are: high-water mark, what we
        received, committed, dropped, skipped, handed to Faust, Faust's read offset, aiokafka's
        fetch state, Faust's partition sets."""
        qs = self.queues.get(p) or {}
        expected = self._chains(p)
        parts = [f"expected {sorted(expected.values())}", f"may process {_may_process(self.app)}"]
        parts.append(f"generation {self.app.consumer_generation_id}")
        assigned: set[TP] = self.app.consumer.assignment()
        for t in self.topics:
            q = qs.get(t)
            if q:
                head = q[0]
                seq = head.message.seqs[head.pos][1] if head.message.seqs else None
                offset = head.message.records[head.pos][0]
                parts.append(f"{t}: head offset {offset} seq {seq}, {len(q)} messages")
            else:
                tp = TP(t, p)
                consumer: Any = self.app.consumer
                parts.append(
                    f"{t}: empty, high-water {consumer.highwater(tp) if tp in assigned else '-'}"
                    f", received {self.received.get(tp)}, committed "
                    f"{consumer._committed_offset.get(tp)}, lagging {self._lagging(tp, assigned)}"
                    f", dropped {self.dropped.get(tp)}, skipped "
                    f"{getattr(consumer, 'skipped', {}).get(tp)}, handed to Faust "
                    f"{getattr(consumer, 'yielded', {}).get(tp)}, skipped by Faust's stream "
                    f"{getattr(consumer, 'unseen', {}).get(tp)}, Faust read offset "
                    f"{getattr(consumer, '_read_offset', {}).get(tp)}, fetch "
                    f"{_fetch_state(consumer, tp)}, active "
                    f"{tp in (getattr(consumer, '_active_partitions', None) or ())}, paused "
                    f"{tp in getattr(consumer, '_paused_partitions', ())}"
                )
        return "; ".join(parts)

    async def _refetch(self, p: int, since: float) -> None:
        """Fetch again what waiting partition ``p``'s empty topics owe it: records the broker
        has (high-water mark past the next offset) of which nothing arrived since the wait
        began ``since`` (monotonic), the topic-partition active. Once per wait and
        topic-partition. Seen after a restart (rare): such records never reached the agent
        although the partition was active, and the merge waited ``idle_s`` then went on without
        them, leaving them unprocessed until the next restart. A spurious refetch costs a fetch;
        a record that comes twice is a redelivery the handler recognises by its offset."""
        if not _may_process(self.app):
            return
        consumer: Any = self.app.consumer
        assigned: set[TP] = consumer.assignment()
        active = getattr(consumer, "_active_partitions", None) or ()
        qs = self.queues.get(p) or {}
        for t in self.topics:
            tp = TP(t, p)
            if (
                qs.get(t)
                or tp not in active
                or self.arrived.get(tp, -math.inf) >= since
                or self.refetched.get(tp) == since
            ):
                continue
            hw = consumer.highwater(tp) if tp in assigned else None
            nxt = self._next_offset(tp)
            if hw is None or int(hw) <= nxt:
                continue
            self.refetched[tp] = since
            _log.warning(
                "partition %d: %s has records %d..%d on the broker and none arrived in %.0f s;"
                " fetching them again (fetch %s)",
                p, t, nxt, int(hw) - 1, time.monotonic() - since, _fetch_state(consumer, tp),
            )  # fmt: skip
            try:
                await consumer.seek_wait({tp: nxt})
            except Exception as exc:  # revoked meanwhile, broker timeout: the next wait retries
                _log.warning("refetching %s from %d failed: %r", tp, nxt, exc)

    def _next_offset(self, tp: TP) -> int:
        """The next offset ``tp`` should deliver: after what we received, or the committed
        position after a restart/rebalance."""
        committed = self.app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        return max(self.received.get(tp, -1) + 1, committed if committed is not None else 0)

    def _polled_since(self, tp: TP, since: float) -> bool:
        """Whether a fetch response for ``tp`` (its high-water mark) is newer than ``since``
        (``time.time()`` seconds)."""
        thread: Any = getattr(self.app.consumer, "_thread", None)
        consumer = getattr(thread, "_consumer", None)
        if consumer is None:
            return False
        try:
            ms = consumer.last_poll_timestamp(tp)
        except (AssertionError, KeyError):  # not assigned (any more)
            return False
        return ms is not None and ms / 1000.0 > since

    def _lagging(self, tp: TP, assigned: set[TP]) -> bool:
        if tp not in assigned:
            return False
        hw = self.app.consumer.highwater(tp)
        if hw is None:
            # no fetch response for it yet in this assignment (just after a restart or a
            # rebalance): records may be waiting there, so wait for the first response. Going on
            # (as until 2026-12) could merge another topic's later events first and turn the
            # earlier ones, when they came, into too_late: a rare restart-test timeout.
            return True
        return int(hw) > self._next_offset(tp)

    def _chains(self, p: int) -> dict[bytes, int]:
        """Partition ``p``'s next expected sequence number per chain, in this generation."""
        generation = self.app.consumer_generation_id
        got = self.expect.get(p)
        if got is None or got[0] != generation:
            got = self.expect[p] = (generation, {})
        return got[1]

    async def drain(self, p: int, force: bool = False, resync_since: float | None = None) -> None:
        while await self._drain_once(p, force, resync_since):
            pass  # MAX_DRAIN records went: more may be ready

    async def _drain_once(self, p: int, force: bool, resync_since: float | None) -> bool:
        """Hand over partition ``p``'s ready records (up to ``MAX_DRAIN``); True if capped."""
        capped = False
        async with self.lock:
            qs = self.queues.get(p)
            if not qs:
                return False
            out: list[Record] = []
            out_topics: list[str] = []
            done: list[Any] = []
            blocked = False
            if not _may_process(self.app):
                # a rebalance is under way or flow is suspended: keep the records (they were
                # fetched after the seek to committed offsets, nothing fetches them again) and
                # let the timer retry
                self.stalled.setdefault(p, (time.monotonic(), time.time()))
                return False
            chains = self._chains(p)
            # one assignment snapshot per drain: the consumer rebuilds the set on every call
            assigned: set[TP] = self.app.consumer.assignment()
            generation = self.app.consumer_generation_id
            # nothing below awaits: queues, high-water marks and poll times hold still, so each
            # empty topic's "more to come?" is asked once per drain, not once per record
            more: dict[str, bool] = {}
            for q in qs.values():
                _drop_stale(q, generation, assigned)
            self._take_runs(qs, chains, out, out_topics, done, generation, assigned)
            while True:
                if len(out) >= MAX_DRAIN:
                    capped = True
                    break
                nxt: tuple[int, int] | None = None  # (timestamp, topic index): chain successor
                oldest: tuple[int, int] | None = None  # the same among heads of no known chain
                waiting = lagging = False
                gaps: list[tuple[int, bytes]] = []  # (seq, chain) of heads that wait
                # chain not seen in this generation -> (seq, key) of its lowest queued head
                met: dict[bytes, tuple[int, tuple[int, int]]] = {}
                for i, t in enumerate(self.topics):
                    q = qs[t]
                    if not q:
                        if not force:
                            m = more.get(t)
                            if m is None:
                                tp = TP(t, p)
                                m = more[t] = self._lagging(tp, assigned) or (
                                    resync_since is not None
                                    and not self._polled_since(tp, resync_since)
                                )
                            if m:
                                lagging = True  # more to come, or no fresh mark to tell
                        continue
                    head = q[0]
                    key = (head.message.records[head.pos][3], i)
                    seqs = head.message.seqs
                    if seqs is not None:
                        chain, seq = seqs[head.pos]
                        expected = chains.get(chain)
                        if expected is None and seq == 0:
                            expected = 0  # a chain's first record: nothing precedes it
                        if expected is not None:
                            if seq <= expected:  # its chain's next (or a resent duplicate)
                                if nxt is None or key < nxt:
                                    nxt = key
                            else:
                                waiting = True  # its predecessor has not arrived yet
                                gaps.append((seq, chain))
                        elif chain not in met or seq < met[chain][0]:
                            met[chain] = (seq, key)
                        continue
                    if oldest is None or key < oldest:
                        oldest = key
                for _seq, key in met.values():
                    # a chain met in its middle starts at its lowest queued record. Its other
                    # heads must not compete: on a timestamp tie (one millisecond) the topic
                    # order picked a later record, and those before it went as resent
                    # duplicates, in topic order (too_late after a restart)
                    if oldest is None or key < oldest:
                        oldest = key
                if nxt is None and gaps and not lagging and (resync_since is not None or force):
                    # Waited RESYNC_S and every empty queue's topic has nothing more: the missing
                    # predecessors were processed before a restart/rebalance (the committed
                    # offsets of the three topics differ). Skip to the oldest waiting record.
                    seq, chain = min(gaps)
                    chains[chain] = seq
                    continue
                if nxt is not None:
                    pick = nxt
                elif oldest is not None and (force or not (lagging or waiting)):
                    pick = oldest
                else:
                    blocked = (waiting or lagging) and not force
                    break
                blocked = False
                t = self.topics[pick[1]]
                head = qs[t][0]
                if head.message.seqs is not None:
                    chain, seq = head.message.seqs[head.pos]
                    chains[chain] = max(chains.get(chain, 0), seq + 1)
                out.append(head.message.records[head.pos])
                out_topics.append(t)
                head.pos += 1
                if head.pos == len(head.message.records):
                    qs[t].popleft()
                    done.append(head.event)
                    _drop_stale(qs[t], generation, assigned)
            if blocked and any(qs.values()):
                # the clock runs from the last progress: a busy worker's partitions end most
                # drains waiting for the next fetch, which is not a stall
                if out or p not in self.stalled:
                    self.stalled[p] = (time.monotonic(), time.time())
            else:
                self.stalled.pop(p, None)
            if not out:
                return False
            batch = RecordBatch(out_topics[0], p, out, out_topics, app=self.app)
            await self.handler(batch)
            # persist and ack in the background, chained per partition (changelog order), so
            # the next batch does not wait for this one's broker round trips
            prev = self.persisting.get(p)
            task = asyncio.ensure_future(self._persist(prev, batch, done))
            self.persisting[p] = task
            self.inflight.append(task)
            if batch.inline:
                await task
        while self.inflight and (self.inflight[0].done() or len(self.inflight) > MAX_PERSISTING):
            await self.inflight.popleft()  # bounded: and a failed delivery raises here
        return capped

    def _take_runs(
        self,
        qs: dict[str, deque[_Queued]],
        chains: dict[bytes, int],
        out: list[Record],
        out_topics: list[str],
        done: list[Any],
        generation: int,
        assigned: set[TP],
    ) -> None:
        """The common case of the merge below, at once: the queued records of one known chain
        whose sequence numbers continue it without a gap go over in sequence order. Exactly the
        records, in the order, the per-record loop would pick (it picks the head whose sequence
        number is the expected one when no head is below it); it stops before anything that is
        not plain (a record without a sequence number or of another chain, a resent duplicate,
        a sequence number on two topics, a gap), and the loop goes on from there. Per drain a
        few array operations instead of Python per record (runs are short: three topics
        interleave, ~3.6 records per run in the benchmark's book)."""
        room = MAX_DRAIN - len(out)
        heads = [qs[t][0] for t in self.topics if qs[t]]
        if room <= 0 or not heads or any(h.message.seqs is None for h in heads):
            return
        first_seqs = heads[0].message.seqs
        assert first_seqs is not None
        chain, _seq = first_seqs[heads[0].pos]
        got = chains.get(chain)
        if got is None:
            return  # a chain not seen in this generation: the loop's resync rules
        expected = got
        chain_id = np.uint64(int.from_bytes(chain, "little"))
        # per topic, its plain prefix: queued records of this chain, sequence numbers rising
        # from ``expected`` on; ``cut``: whether the topic has more after it
        seq_parts: list[np.ndarray] = []
        topic_parts: list[np.ndarray] = []
        recs: list[Record] = []
        limits: list[int] = []  # per cut topic, its last plain record's index in ``recs``
        for i, t in enumerate(self.topics):
            q = qs[t]
            if not q:
                continue
            parts = []
            cut = False
            for k, item in enumerate(q):
                seqs = item.message.seqs
                if seqs is None:
                    cut = True
                    break
                start = item.pos if k == 0 else 0
                parts.append((item, start, seqs.chain[start:], seqs.seq[start:]))
            c = np.concatenate([p[2] for p in parts])
            sq = np.concatenate([p[3] for p in parts])
            ok = c == chain_id
            if len(sq):
                ok[0] &= bool(sq[0] >= expected)
                ok[1:] &= sq[1:] > sq[:-1]
            m = len(sq) if ok.all() else int(np.argmin(ok))
            cut = cut or m < len(sq)
            if cut:
                if m == 0:
                    return  # its head is not plain: the loop decides
                limits.append(len(recs) + m - 1)
            n0 = len(recs)
            for item, start, _c, _s in parts:
                recs += item.message.records[start:]
                if len(recs) - n0 >= m:
                    break
            del recs[n0 + m :]
            seq_parts.append(sq[:m])
            topic_parts.append(np.full(m, i, np.int64))
        seq_all = np.concatenate(seq_parts)
        order = np.argsort(seq_all, kind="stable")
        ranked = seq_all[order]
        want = np.arange(expected, expected + len(ranked), dtype=np.uint64)
        miss = np.flatnonzero(ranked != want)
        n = len(ranked) if not len(miss) else int(miss[0])
        if n and n < len(ranked) and ranked[n] == ranked[n - 1]:
            n -= 1  # a sequence number on two topics: the loop picks between them
        if limits:  # stop once a cut topic's plain prefix is taken (what follows is not plain)
            rank = np.empty(len(order), np.int64)
            rank[order] = np.arange(len(order))
            n = min(n, int(rank[limits].min()) + 1)
        n = min(n, room)
        if n <= 0:
            return
        take = order[:n].tolist()
        out += map(recs.__getitem__, take)
        topic_of = np.concatenate(topic_parts)
        out_topics += map(self.topics.__getitem__, topic_of[order[:n]].tolist())
        chains[chain] = expected + n
        per_topic = np.bincount(topic_of[order[:n]], minlength=len(self.topics)).tolist()
        for i, t in enumerate(self.topics):
            left = per_topic[i]
            q = qs[t]
            while left:
                head = q[0]
                avail = len(head.message.records) - head.pos
                if left < avail:
                    head.pos += left
                    break
                left -= avail
                q.popleft()
                done.append(head.event)
                _drop_stale(q, generation, assigned)

    async def _persist(
        self, prev: asyncio.Future[None] | None, batch: RecordBatch, done: list[Any]
    ) -> None:
        if prev is not None:
            await prev  # a failure there fails this one too: nothing after it is acked
        await batch.persist()
        for event in done:
            event.ack()


def _drop_stale(q: deque[_Queued], generation: int, assigned: set[TP]) -> None:
    """Pop queue heads fetched in an earlier generation or for a partition we lost: never
    acked, they are fetched again by whoever owns the partition now."""
    while q and not _owned(q[0].message, generation, assigned):
        q.popleft()
