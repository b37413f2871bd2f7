"""The batch consumer: one Faust message per fetched topic-partition batch.

Faust spends hundreds of microseconds per event between the consumer and the agent body. The
worker avoids it by turning every fetched batch of a *batched* topic into ONE
:class:`BatchMessage` whose offset is the batch's last offset and which carries all its records:
acking it acks the whole offset range it was fetched over. Faust's commit loop (timer, rebalance,
stop) stays in charge; which offset it commits for a batched topic-partition is computed here
(:meth:`BatchConsumer._new_offset`). Non-batched topics (table changelogs during recovery, other
agents) keep the per-record path.

Rebalances take the safe path: a batch fetched in an older consumer generation, for a partition no
longer assigned, or while a rebalance runs, is neither processed nor acked (it is fetched again
from the committed offset by whoever owns the partition).

:func:`install` gives an app this consumer and patches aiokafka's fetcher
(:mod:`streams.kafka.fetcher`): an explicit call when the worker app is built, nothing at import.
Faust-facing and version-bound: faust-streaming is pinned to :data:`FAUST_VERSION`, and
``tests/unit/test_batching_guard.py`` fails when an upgrade changes an internal used here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT
from faust.types.tuples import ConsumerMessage
from mode.utils.queues import FlowControlEvent

from streams.kafka import fetcher
from streams.kafka.fetcher import _Fetched, _PlainRecords
from streams.kafka.order import Seqs, read_seqs
from streams.kafka.records import Record

_log = logging.getLogger(__name__)

#: The faust-streaming release whose internals this package was written and tested against.
FAUST_VERSION = "0.15.3"

#: Settings a batched app should pass to ``faust.App`` (bigger fetches = bigger batches).
APP_SETTINGS: Mapping[str, Any] = {
    "broker_max_poll_records": 10_000,  # records per getmany across partitions (Faust: 500)
    "producer_max_batch_size": 1_048_576,  # bytes per changelog record batch (Faust: 16 KiB)
    "stream_buffer_maxsize": 64,  # batches queued per partition before the consumer pauses it
}

#: The worker consumer's fetch wait. Faust hard-codes 1500 ms, and Tansu does not answer a waiting
#: fetch early when data arrives, so an idle moment would add up to that much event-to-alert
#: latency; ``benchmarks/bench_latency.py`` measures the effect of this value.
FETCH_MAX_WAIT_MS = 10

#: Seconds Faust may wait for the messages taken so far to be acked when a rebalance begins or
#: the worker stops (``wait_empty``); after that it goes on without them: they are not committed
#: and are fetched again from the committed offset. Unbounded, one message that was never going
#: to be acked kept a stopping worker (SIGTERM) and a rebalance waiting forever.
WAIT_EMPTY_S = 10.0


class BatchMessage(ConsumerMessage):
    """A Faust message standing for all records of one fetched topic-partition batch.

    ``offset`` is the last record's offset; ``records`` holds every record, oldest first.
    """

    __slots__ = ("last_in_fetch", "records", "seen", "seqs", "span")

    records: list[Record]
    #: (first offset, end offset): the offsets acking it acks, its records' and those between
    #: them and around them that hold no record (the consumer's positions before and after it)
    span: tuple[int, int]
    #: whether no other batched topic-partition of the same partition number follows this one in
    #: the fetch it came with: the aligner merges a partition once per fetch, at this message
    last_in_fetch: bool
    #: per record, the order header's (chain id, sequence number), or None when the batch's
    #: records carry no order header (see ``batched_agent(order_header=...)``)
    seqs: Seqs | None
    #: whether the batched agent received it (Faust's stream may skip a message before that)
    seen: bool


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with a short fetch wait for the worker consumer."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by AIOKafkaConsumer.start()
        if consumer._key_deserializer is None and isinstance(transport, BatchTransport):
            # read by AIOKafkaConsumer.start(), handed to every PartitionRecords of its fetcher
            consumer._key_deserializer = _PlainRecords(transport.batched_topics, transport)
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """aiokafka consumer that delivers one ``BatchMessage`` per fetched batch of batched topics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: topic-partition -> (last offset, why) of the last fetched records not handed over
        self.skipped: dict[TP, tuple[int, str]] = {}
        #: topic-partition -> last offset of the last batch message handed to Faust's drain loop
        self.yielded: dict[TP, int] = {}
        #: topic-partition -> (offset, its generation, the app's, flow active) of the last batch
        #: message acked without the agent having received it (skipped by Faust's stream)
        self.unseen: dict[TP, tuple[int, int | None, int, bool]] = {}

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        """Like ``Consumer.getmany``, but one message per batched topic-partition batch."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:  # same as Faust: a rebalance began, go back to committed offsets
            try:
                await self.perform_seek()
            except Exception as exc:  # as Faust: the partitions moved away mid-seek
                # (IllegalStateError); the new assignment seeks again. Raising here crashed the
                # Fetcher and left the worker consuming nothing after a live rebalance.
                self.log.warning("seek to committed offsets during a rebalance failed: %r", exc)
            return
        batched = _batched_topics(self.app)
        to_message = self._to_message
        wanted = []
        for tp, recs in records.items():
            if not recs:
                continue
            if (
                active_partitions is None
                or tp in active_partitions
                or tp in self._buffered_partitions
            ):
                wanted.append((tp, recs))
            else:  # as Faust: paused since the fetch (for the aligner's wait report)
                self.skipped[tp] = (_last_offset(recs), "inactive")
        last = {tp.partition: tp for tp, _recs in wanted if tp.topic in batched}
        for i, (tp, recs) in enumerate(wanted):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                # rebalance: drop the rest, it is fetched again from committed offsets
                for tp_, recs_ in wanted[i:]:
                    self.skipped[tp_] = (_last_offset(recs_), "rebalance")
                break
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic in batched:
                message = self._to_batch_message(tp, recs, generation_id)
                message.last_in_fetch = last[tp.partition] == tp
                self.yielded[tp] = message.offset
                yield tp, message
            else:
                for record in recs:
                    yield tp, to_message(tp, record)

    def _to_batch_message(self, tp: TP, recs: list[Any], generation_id: int) -> BatchMessage:
        """``recs``: ``Record`` tuples from a ``_PlainRecords`` fetcher, else ConsumerRecords."""
        if type(recs[0]) is not tuple:
            recs = [(r.offset, r.key, r.value, r.timestamp, r.headers) for r in recs]
        last = recs[-1]
        message = BatchMessage(
            tp.topic,
            tp.partition,
            last[0],
            (last[3] or 0) / 1000.0,
            0,  # timestamp type: nothing on this path reads it
            None,
            None,  # key
            b"",  # value: the records travel in ``records``, not through Faust's codecs
            None,
            0,
            0,  # serialized sizes: not summed per record, nothing on this path reads them
            tp,
            generation_id=generation_id,
        )
        message.records = recs
        first, end = recs[0][0], last[0] + 1
        span = getattr(recs, "span", None) if type(recs) is _Fetched else None
        message.span = (first, end) if span is None else (min(span[0], first), max(span[1], end))
        message.last_in_fetch = True
        message.seen = False
        header = getattr(self.app.transport, "order_header", None)
        if not header:
            message.seqs = None
        elif type(recs) is _Fetched and recs.header == header:  # read in the consumer thread
            message.seqs = recs.seqs
        else:
            message.seqs = read_seqs(recs, header)
        return message

    def ack(self, message: Any) -> bool:
        """Ack a message; a ``BatchMessage`` acks its whole offset range, or nothing if stale."""
        if isinstance(message, BatchMessage):
            tp = message.tp
            app = self.app
            current = _current(app, message)
            if not message.seen:
                # Faust's stream skipped it (a generation or flow-control check as it dequeued)
                # and acks what it skips: committing would lose records never processed. Not
                # committed, the aligner's refetch brings them back.
                flow = app.flow_control.is_active()
                why = (message.offset, message.generation_id, app.consumer_generation_id, flow)
                self.unseen[tp] = why
                # a stale message (a rebalance began) is routine; a current one is not
                _log.log(
                    logging.WARNING if current else logging.DEBUG,
                    "%s: Faust skipped records up to %d before the agent got them"
                    " (generation %s, app generation %s, flow active %s)", tp, *why,
                )  # fmt: skip
            if not (current and message.seen):
                # Never commit for a batch of another generation (after an eager rebalance the
                # partition may be ours again and this ack would skip unprocessed records), nor
                # for one the agent never received.
                message.acked = True
                self._unacked_messages.discard(message)
                return False
            # its span joins the partition's processed offsets (``_new_offset``), kept in
            # Faust's gap tree of the partition (dropped with it when the partition is revoked)
            begin, end = message.span
            committed = self._committed_offset[tp]
            if committed is not None:
                begin = max(begin, committed)
            if begin < end:
                done = self._gap[tp]
                overlapping = done.overlaps(begin, end)  # a batch fetched again
                done.addi(begin, end)
                if overlapping:
                    done.merge_overlaps()  # costly (a rebuild): only when needed
        return bool(super().ack(message))

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for ``tp``: the end of the processed offsets that continue
        from the committed one without a hole; None if that is not past it.

        For a batched topic-partition the processed offsets are exactly the spans of its acked
        batch messages, so a commit never passes a record that was not processed and
        persisted, and one commit takes every batch acked since the last.

        Faust's own computation, kept for other topics, went wrong for batch messages (issue
        23): it counts the offsets between the read offset and each message as done when the
        message is *received* (gaps), lists acked offsets one by one and commits only the first
        run of consecutive numbers in the sorted list. A received message's own offset was in
        its gap as well as acked, a repeated number ends a run, so each commit (every 2.8 s)
        moved a partition on by one batch message. After a restart the stream partitions are
        fetched while Faust still seeks them to the committed offsets, the read offset goes
        back, and a message fetched before the seek then gave a gap over records not processed
        yet (committable ahead of them); the same records came again, every offset of a range
        twice, and commits crawled one offset at a time: committed offsets stuck for minutes
        behind a finished partition, and restarts re-read everything after them."""
        if tp.topic not in _batched_topics(self.app):
            return super()._new_offset(tp)
        # Faust's per-message list (its ack still keeps it): the spans below say it all
        self._acked[tp].clear()
        self._acked_index[tp].clear()
        done = self._gap[tp]
        if not done:
            return None
        committed = self._committed_offset[tp]
        spans = sorted(done)
        # None: nothing committed yet for the group (Faust also reads a committed 0 so): from
        # the first processed offset, the first fetch's position
        reach = spans[0].begin if committed is None else committed
        for iv in spans:
            if iv.begin > reach:
                break  # a hole: records not processed (yet)
            reach = max(reach, iv.end)
        done.chop(0, reach)
        if committed is not None and reach <= committed:
            return None
        return reach

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's drain loop counts the offsets between its read offset and each message as
        done when it receives the message. Not for batched topics: a batch message's span says
        exactly which offsets its ack makes done (``_new_offset``); the read offset goes back
        on every seek while messages fetched before it still arrive, and a gap then spanned
        records nobody had processed."""
        if tp.topic in _batched_topics(self.app):
            return
        await super()._add_gap(tp, offset_from, offset_to)

    async def wait_empty(self) -> None:
        """Faust's wait until every message taken is acked (when a rebalance begins and when
        the worker stops, flow suspended), with what the batched agents hold released first
        and a bound.

        The aligner holds queued batch messages it will not process while flow is suspended;
        the wait for their acks never ended (SIGTERM mid-stream or a second worker joining a
        busy one: "wait_empty: Waiting for tasks" forever). Released, they are not acked, so
        not committed: fetched again from the committed offset (records of a partly handed
        message that were processed come again as redeliveries). Batches being persisted are
        still waited for, at most ``WAIT_EMPTY_S``."""
        transport = self.transport
        released = sum(release() for release in getattr(transport, "on_wait_empty", ()))
        if released:
            self.log.info("released %d batch messages that will not be processed now", released)

        def give_up() -> None:
            # Faust's loop ends once the set is empty (cancelling it instead does not work: its
            # ``_wait_for_ack`` swallows CancelledError)
            left = [m for m in self._unacked_messages if not m.acked]
            self.log.warning(
                "gave up after %.0f s waiting for %d unacked messages (not committed: fetched"
                " again from the committed offset): %r", WAIT_EMPTY_S, len(left), left[:5],
            )  # fmt: skip
            for m in left:
                self._unacked_messages.discard(m)
            waiting = self._waiting_for_ack
            if waiting is not None and not waiting.done():
                waiting.set_result(None)

        timer = asyncio.get_running_loop().call_later(WAIT_EMPTY_S, give_up)
        try:
            await super().wait_empty()
        finally:
            timer.cancel()


class BatchTransport(faust_aiokafka.Transport):
    """The aiokafka transport with ``BatchConsumer``; remembers which topics are batched."""

    Consumer = BatchConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batched_topics: set[str] = set()
        self.order_header: str | None = None
        #: called when Faust waits for every taken message to be acked (``wait_empty``): each
        #: drops the messages it holds and will not process now, unacked; returns how many
        self.on_wait_empty: list[Callable[[], int]] = []


def _last_offset(recs: list[Any]) -> int:
    r = recs[-1]
    return int(r[0] if type(r) is tuple else r.offset)


def _batched_topics(app: Any) -> set[str]:
    transport = app.transport
    return transport.batched_topics if isinstance(transport, BatchTransport) else set()


def install(app: faust.App) -> BatchTransport:
    """Give ``app`` the batch-delivering consumer. Idempotent; call before the worker starts."""
    transport = app._transport
    if isinstance(transport, BatchTransport):
        return transport
    if app._consumer is not None:
        raise RuntimeError("batching must be installed before the app's consumer is created")
    url = app.conf.broker_consumer
    if not all(u.scheme == "kafka" for u in url):
        raise RuntimeError(f"batching needs the kafka:// (aiokafka) transport, got {url}")
    fetcher.patch()
    new = BatchTransport(url, app)
    app.transport = new
    _keep_queues_when_active(app.flow_control)
    return new


def _keep_queues_when_active(flow: FlowControlEvent) -> None:
    """Make ``flow.resume()`` a no-op while flow is already active.

    Mode's ``FlowControlEvent.resume`` clears every queue it manages (the agents' channel
    queues) even when flow was not suspended. Faust's recovery resumes twice: for the changelog
    reading, then again after seeking the stream partitions to their committed offsets, while
    the Fetcher already runs. Stream records fetched in between went into the agent's queue and
    were cleared by the second resume, after the consumer's position and Faust's read offset had
    moved past them: they were lost until the next restart (the restart test's stall; its wait
    report: "handed to Faust 9, Faust read offset 9, fetch position 10, received None"). Clearing
    is right after a suspension (what was queued before a rebalance is stale), so that stays."""
    resume = flow.resume

    def resume_unless_active() -> None:
        if not flow.is_active():
            resume()

    flow.resume = resume_unless_active  # type: ignore[method-assign]


def _may_process(app: faust.App) -> bool:
    """Whether fetched messages may be processed now (no rebalance, flow not suspended)."""
    return bool(not app.rebalancing and app.flow_control.is_active())


def _owned(message: ConsumerMessage, generation: int, assigned: set[TP]) -> bool:
    """Whether ``message`` was fetched in this consumer generation for a partition we own."""
    return message.generation_id == generation and message.tp in assigned


def _current(app: AppT, message: ConsumerMessage) -> bool:
    """Whether ``message`` belongs to this consumer generation and a partition we own."""
    return _owned(message, app.consumer_generation_id, app.consumer.assignment())
