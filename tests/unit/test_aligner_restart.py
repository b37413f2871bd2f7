"""The aligner after a restart or rebalance: the producer's order-header chain goes on, so the
worker meets it in its middle (no broker: the stand-ins of ``test_aligner``)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from streams.kafka.aligner import _Aligner, _Queued
from streams.kafka.order import Seqs
from streams.kafka.tables import RecordBatch
from tests.unit.test_aligner import _TP, CHAIN, TOPICS, _App, _Consumer, _Event, _Message, _run


def _merged(per_topic: dict[str, list[tuple[int, int, int]]]) -> tuple[list[Any], dict[str, int]]:
    """Queue ``topic -> [(offset, seq, timestamp)]`` (one message per topic) of ``CHAIN`` on a
    partition whose chains are not known in this generation; drain it: the handed-over
    (topic, offset) in order, and each topic's messages acked (0 or 1)."""
    tps = {_TP(t, 0) for t in TOPICS}
    got: list[Any] = []

    async def handler(batch: RecordBatch) -> None:
        assert batch.topics is not None
        got.extend((t, r[0]) for t, r in zip(batch.topics, batch.records, strict=True))

    aligner = _Aligner(_App(_Consumer(tps)), TOPICS, handler, idle_s=30.0)  # type: ignore[arg-type]
    qs: dict[str, deque[_Queued]] = {t: deque() for t in TOPICS}
    aligner.queues[0] = qs
    events: dict[str, _Event] = {}
    for t, recs in per_topic.items():
        records = [(o, b"k", b"v", ts) for o, _s, ts in recs]
        message = _Message(_TP(t, 0), records, Seqs.of([(CHAIN, s) for _o, s, _ts in recs]))
        events[t] = _Event(message)
        qs[t].append(_Queued(events[t], message))  # type: ignore[arg-type]
    asyncio.run(_run(aligner))
    return got, {t: int(e.acked) for t, e in events.items()}


def test_a_chain_met_in_its_middle_starts_at_its_lowest_queued_sequence_number() -> None:
    """A backlog produced while the worker was down continues the chain it saw before: the
    heads are repayments seq 28 and transactions seq 24, sent in the same millisecond. The
    merge starts at 24 and follows the sequence numbers. (Until 2026-12 the timestamp tie went
    to the earlier topic: repayments 28 first, then transactions 24..27 as resent duplicates,
    which the state dead-lettered as too_late.)"""
    transactions = [(7 + j, seq, 1000) for j, seq in enumerate((24, 25, 26, 27, 29))]
    got, acked = _merged(
        {"repayments": [(13, 28, 1000), (14, 30, 1000)], "transactions": transactions}
    )
    assert got == [
        ("transactions", 7),
        ("transactions", 8),
        ("transactions", 9),
        ("transactions", 10),
        ("repayments", 13),
        ("transactions", 11),
        ("repayments", 14),
    ]
    assert acked == {"repayments": 1, "transactions": 1}


def test_a_chain_met_in_its_middle_does_not_start_at_a_later_head_with_an_older_timestamp() -> None:
    """Sequence numbers, not timestamps, order a chain: a head whose timestamp is older but
    whose sequence number is not the lowest queued (a clock step between two sends) waits."""
    got, _acked = _merged({"loans": [(3, 41, 900)], "repayments": [(5, 40, 1000)]})
    assert got == [("repayments", 5), ("loans", 3)]
