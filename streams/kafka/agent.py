"""``batched_agent``: a Faust agent whose handler runs once per fetched partition batch."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from streams.kafka.aligner import RESYNC_S, _Aligner
from streams.kafka.consumer import BatchMessage, _current, _may_process, install
from streams.kafka.tables import Handler, RecordBatch


def batched_agent(
    app: faust.App,
    topic: Any,
    handler: Handler,
    *,
    name: str | None = None,
    align: bool = False,
    idle_s: float = 30.0,
    order_header: str | None = None,
) -> Any:
    """Register an agent that calls ``await handler(batch)`` once per fetched partition batch.

    ``topic`` is a Faust topic (it may name several topics) that only this agent consumes. The
    batch is acked after the handler returned and all its ``write``s were delivered, so offsets
    are committed only for processed and persisted input.

    ``align=True`` merges the co-partitioned topics of each partition number by record
    timestamp before the handler sees them (see :class:`_Aligner`), so a topic that is behind
    (a backlog, a slow producer) cannot be overtaken by its siblings. ``order_header`` names a
    record header carrying the producer's chain id and sequence number, which makes that merge
    exact.
    """
    transport = install(app)
    transport.batched_topics.update(topic.topics)
    if order_header:
        transport.order_header = order_header
    agent_name = name or f"{handler.__module__}.{getattr(handler, '__name__', 'batched')}"
    if align:
        aligner = _Aligner(app, tuple(topic.topics), handler, idle_s)
        transport.on_wait_empty.append(aligner.release)

        async def run_aligned(stream: Any) -> None:
            async for event in stream.noack().events():
                message = event.message
                if not isinstance(message, BatchMessage):
                    raise TypeError(f"batched agent got a per-record message: {message!r}")
                message.seen = True
                if _current(app, message):
                    await aligner.add(event)  # processed once the rebalance has ended
                else:  # not acked: fetched again by the partition's owner after its seek
                    aligner.dropped[message.tp] = (message.offset, message.generation_id)

        app.timer(interval=min(max(idle_s / 4, 0.05), RESYNC_S / 2))(aligner.unstall)
        return app.agent(topic, name=agent_name)(run_aligned)

    async def run(stream: Any) -> None:
        async for event in stream.noack().events():
            message = event.message
            if not isinstance(message, BatchMessage):
                raise TypeError(f"batched agent got a per-record message: {message!r}")
            message.seen = True
            if not await _wait_current(app, message):
                continue  # stale: not acked, fetched again by the partition's owner
            batch = RecordBatch(message.topic, message.partition, message.records, app=app)
            await handler(batch)
            await batch.persist()
            event.ack()

    return app.agent(topic, name=agent_name)(run)


async def _wait_current(app: faust.App, message: BatchMessage) -> bool:
    """Wait while a rebalance is under way or flow is suspended; then whether ``message`` is
    still current. Dropping a current message instead would lose it: the Fetcher resumes
    (after the seek to committed offsets) before the app leaves its rebalancing state, and
    nothing fetches those records again (seen after a restart: a 30 s stall, lost events)."""
    while _current(app, message) and not _may_process(app):
        await asyncio.sleep(0.05)
    return _current(app, message)
