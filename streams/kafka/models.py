"""The models topic in the worker and for ``riskmon publish``: thin glue over
:mod:`streams.core.models`.

At start the worker reads ``<prefix>.models`` to its true end (Tansu's end offsets are not to be
trusted: until fetches come back empty) with a group-less kafka-python consumer and folds it
over its ``--scorecard``, before its agent takes a batch. Then a group-less aiokafka consumer
task (:class:`ModelWatcher`) reads what is published later and hands each new
:class:`~streams.core.models.ModelSet` to the pipeline, which swaps it in at the next batch
boundary. A record it refuses is counted and logged; the worker keeps the cards it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scoring.artifact import Scorecard
from streams.core.models import ModelRejected, ModelSet, encode_model, fold
from streams.kafka.connection import KafkaSettings
from streams.kafka.topics import TopicNames, create_models_topic

_log = logging.getLogger(__name__)

Record = tuple[bytes | None, bytes | None]


def read_models(
    settings: KafkaSettings, topic: str, idle_polls: int = 3
) -> tuple[list[Record], int]:
    """Every (key, value) of the one-partition models topic, oldest first, and the offset after
    the last: read until ``idle_polls`` fetches in a row come back empty."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
        **settings.kafka_python_kwargs(),
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        out: list[Record] = []
        end, empty = 0, 0
        while empty < idle_polls:
            got = consumer.poll(timeout_ms=300)
            empty = 0 if got else empty + 1
            for batch in got.values():
                for r in batch:
                    out.append((r.key, r.value))
                    end = r.offset + 1
        return out, end
    finally:
        consumer.close()


def publish(
    settings: KafkaSettings,
    names: TopicNames,
    role: str,
    card: Scorecard | None,
    share: float = 100.0,
    shadow: bool = False,
) -> int:
    """Send one model record (``card`` None: retire the challenger); returns its offset."""
    from kafka import KafkaProducer

    create_models_topic(settings, names)
    key, value = (role.encode(), None) if card is None else encode_model(role, card, share, shadow)
    producer = KafkaProducer(acks="all", **settings.kafka_python_kwargs())
    try:
        meta = producer.send(names.models, key=key, value=value, partition=0).get(timeout=30)
        producer.flush()
        return int(meta.offset)
    finally:
        producer.close()


@dataclass
class ModelWatcher:
    """Applies the models topic to a worker's pipeline: :meth:`start_from` the records read at
    start, then :meth:`run` (an app task) for the ones published later."""

    settings: KafkaSettings
    topic: str
    models: ModelSet
    install: Callable[[ModelSet], Any]  # Pipeline.set_models: raises ModelRejected
    rejected: Callable[[ModelRejected], None]  # count and log a refusal
    switched: Callable[[ModelSet], None]  # a new set accepted
    position: int = 0

    def _check(self, models: ModelSet) -> None:
        """Install ``models``; any failure is a refusal of the record, never the task's end."""
        try:
            self.install(models)
        except ModelRejected:
            raise
        except Exception as exc:
            raise ModelRejected(
                "unusable_card", f"cannot compile the cards: {exc!r}"[:300]
            ) from exc

    def apply(self, records: list[Record]) -> None:
        """Fold ``records`` into the current set; each accepted change is installed."""
        for rec in records:
            new = fold(self.models, [rec], check=self._check, on_reject=self.rejected)
            if new is not self.models:
                self.models = new
                self.switched(new)

    def start_from(self, records: list[Record], end: int) -> None:
        self.apply(records)
        self.position = end

    async def run(self, poll_s: float = 1.0) -> None:
        """Read the topic from :attr:`position` for as long as the worker runs."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, **self.settings.aiokafka_kwargs()
        )
        tp = TopicPartition(self.topic, 0)
        while True:
            try:
                await consumer.start()
                break
            except Exception as exc:  # broker not reachable yet: try again
                _log.warning("models watcher cannot start (%r); retrying", exc)
                await asyncio.sleep(poll_s)
        try:
            consumer.assign([tp])
            consumer.seek(tp, self.position)
            while True:
                try:
                    got = await consumer.getmany(tp, timeout_ms=int(poll_s * 1000))
                except Exception as exc:  # the broker went away: aiokafka reconnects
                    _log.warning("models watcher fetch failed (%r); retrying", exc)
                    await asyncio.sleep(poll_s)
                    consumer.seek(tp, self.position)
                    continue
                for batch in got.values():
                    if batch:
                        self.apply([(r.key, r.value) for r in batch])
                        self.position = batch[-1].offset + 1
        finally:
            await consumer.stop()
