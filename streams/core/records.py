"""What the pipeline takes and gives: consumed records in, output records and table writes out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from schemas.events import (
    Alert,
)
from streams.core.quality import Quality

# where a batch's time goes (BatchResult.phase_seconds; the worker adds "send"): apply = decode,
# dedupe, state update and packing, per record; features = the feature kernel; score = card
# matrix, scoring kernel, drift, rescoring log; policy = policy kernel, decide, alert and grade
# records; serialise = the touched customers' table entries
PHASES = ("apply", "features", "score", "policy", "serialise")


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
    message is a cost the worker does not need). ``topics``: per message, the logical input name."""

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


class OutRecord(NamedTuple):
    """One record to send. ``topic`` is the logical output name (alerts/grades/deadletter)."""

    topic: str
    key: bytes | None  # None: the input had no key (a dead letter of a keyless message)
    value: bytes


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
    quality: Quality = field(default_factory=Quality)  # defaults and alert endings (live quality)
    # rollout arms: rescorings by (arm, grade), shadow included; live quality by arm
    by_arm: Counter[tuple[str, str]] = field(default_factory=Counter)
    arm_quality: dict[str, Quality] = field(default_factory=dict)

    def merge(self, other: BatchResult) -> None:
        """Add ``other`` (a later part of the same batch) to this result."""
        self.outputs += other.outputs
        self.dirty.update(other.dirty)
        self.outcomes.update(other.outcomes)
        self.dead_letters.update(other.dead_letters)
        self.alerts += other.alerts
        self.grade_changes += other.grade_changes
        self.parked += other.parked
        self.scored += other.scored
        self.kernel_seconds += other.kernel_seconds
        self.quality.merge(other.quality)
        self.by_arm.update(other.by_arm)
        for arm, q in other.arm_quality.items():
            self.arm_quality.setdefault(arm, Quality()).merge(q)
        for phase, seconds in other.phase_seconds.items():
            self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + seconds
