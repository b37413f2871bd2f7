"""Run the stream's own pipeline over an event file, without a broker.

Each line is routed exactly as ``riskmon produce`` routes it (by ``kind``; unroutable lines go to
the transactions role so they are dead-lettered), assigned the partition Kafka's default
partitioner would give its key and the offset it would get on a fresh topic. The records then go
through :class:`streams.core.pipeline.Pipeline` in file order, so the alerts carry the same ids,
trigger partitions and offsets as a streamed run of the same file.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.codec import decode
from schemas.events import Alert
from scoring.artifact import Scorecard
from scoring.errors import InputError
from streams.core.entry import EntryCache
from streams.core.models import ModelSet
from streams.core.pipeline import Pipeline
from streams.core.policy import Observation
from streams.core.policy_file import Policy
from streams.core.quality import Quality
from streams.core.records import BatchResult, InRecord
from streams.core.view import customer_view
from streams.evaluation.spool import RecordSpool
from streams.kafka.produce import murmur2_partition, route_line

CHUNK = 20_000


@dataclass
class BacktestResult:
    alert_records: RecordSpool  # JSON, as sent to Kafka, on disk (a book's do not fit in memory)
    observations: Any  # rescorings as columns: customer, time, score, grade, dpd, exposure
    outcomes: Counter[tuple[str, str]]
    dead_letters: Counter[str]
    events: int
    #: event time of the first rescoring an account transaction triggered (inf: none): where
    #: monitoring starts (contracts and payment history may be back-dated before the stream)
    first_activity: float = math.inf
    dead_letter_records: RecordSpool = field(default_factory=RecordSpool)  # the same
    pipeline: Pipeline | None = None  # the pipeline that ran, holding every customer's entry
    # per rollout arm: rescorings, alerts opened, live quality (one arm without --challenger)
    arm_rescorings: Counter[str] = field(default_factory=Counter)
    arm_opened: Counter[str] = field(default_factory=Counter)
    arm_quality: dict[str, Quality] = field(default_factory=dict)

    def arm_summary(self) -> dict[str, dict[str, Any]]:
        """Per arm: its card, customers, rescorings, alerts opened (and per 1,000 rescorings),
        defaults caught and missed before them (the live-quality counts) and the median lead."""
        if self.pipeline is None:
            return {}
        arms = self.pipeline.arms
        customers: Counter[str] = Counter(arms.deciding(c).name for c in self.pipeline.stored())
        out: dict[str, dict[str, Any]] = {}
        for name, arm in arms.by_name.items():
            q = self.arm_quality.get(name, Quality())
            n, opened = self.arm_rescorings[name], self.arm_opened[name]
            caught, missed = q.defaults["caught"], q.defaults["missed"]
            out[name] = {
                "card": arm.card.version,
                "customers": customers[name],
                "rescorings": n,
                "alerts_opened": opened,
                "alerts_per_1000_rescorings": round(1000 * opened / n, 2) if n else None,
                "defaults_caught": caught,
                "defaults_missed": missed,
                "caught_share": round(caught / (caught + missed), 3) if caught + missed else None,
                "median_lead_days": round(statistics.median(q.lead_days), 1)
                if q.lead_days
                else None,
            }
        return out

    @property
    def alerts(self) -> list[Alert]:
        """The alert records decoded."""
        return [decode(v, Alert) for v in self.alert_records]

    def final_views(self) -> Iterator[dict[str, Any]]:
        """Every customer's picture at the end, as the read API answers it, by customer id."""
        if self.pipeline is None:
            return
        stored = self.pipeline.stored()
        for cid in sorted(stored):
            yield customer_view(self.pipeline, cid, stored[cid])

    def accounting(self) -> dict[str, int]:
        """Messages in and where each ended: every message is counted exactly once."""
        ended: Counter[str] = Counter()
        for (_topic, outcome), count in self.outcomes.items():
            ended[outcome] += count
        return {"messages": self.events, **dict(sorted(ended.items()))}


def file_records(path: Path, partitions: int) -> Iterator[InRecord]:
    """The file's lines as the worker would consume them (role, partition, offset)."""
    if not path.is_file():
        raise InputError(f"no such event file: {path}")
    offsets: Counter[tuple[str, int]] = Counter()
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            role, key = route_line(line)
            role = role or "transactions"
            p = murmur2_partition(key, partitions)
            off = offsets[(role, p)]
            offsets[(role, p)] = off + 1
            yield InRecord(role, p, off, key, line, time.time())


def offline_pipeline(
    card: Scorecard, policy: Policy | None, observe: Callable[[Observation], None] | None
) -> tuple[Pipeline, EntryCache]:
    """The pipeline of a run over a file: its own store of entries (no table), event-time
    stamps, the policy's settings; and the entry cache to clear between chunks. Entries are read
    back from the store (bytes, under 1 KB a customer) for each chunk instead of staying
    decoded (several KB): a whole book fits in memory."""
    p = policy or Policy()
    entries = EntryCache(limit=0)
    pipe = Pipeline(
        card,
        p.state,
        p.policy,
        limits=p.limits,
        entries=entries,
        observe=observe,
        offline=True,
    )
    return pipe, entries


class _Rescorings:
    """Every rescoring in compact columns (a book's tens of millions fit): customer ids
    interned, numbers in typed arrays."""

    def __init__(self) -> None:
        self.customer: list[str] = []
        self.time = array("d")
        self.score = array("d")
        self.grade = array("q")
        self.dpd = array("q")
        self.exposure = array("d")
        self.first_activity = math.inf

    def __len__(self) -> int:
        return len(self.customer)

    def add(self, o: Observation) -> None:
        self.customer.append(sys.intern(o.customer_id))
        self.time.append(o.event_time)
        self.score.append(o.score)
        self.grade.append(o.grade)
        self.dpd.append(o.dpd)
        self.exposure.append(o.exposure)
        if o.trigger_topic == "transactions" and o.event_time < self.first_activity:
            self.first_activity = o.event_time


def _both(
    first: Callable[[Observation], None], second: Callable[[Observation], None]
) -> Callable[[Observation], None]:
    def call(o: Observation) -> None:
        first(o)
        second(o)

    return call


def backtest(
    path: Path,
    card: Scorecard,
    partitions: int = 4,
    policy: Policy | None = None,
    rescorings: bool = True,
    observe: Callable[[Observation], None] | None = None,
    models: ModelSet | None = None,
) -> BacktestResult:
    """Process ``path`` through the pure pipeline; collect alerts and, with ``rescorings``
    (the report needs them), every rescoring; ``observe`` is also called with each (the policy
    tuner's recorder). Decisions are the same either way. ``models``: a champion/challenger
    split as the stream would run it (``card`` is then ignored)."""
    obs = _Rescorings()
    hook: Callable[[Observation], None] | None = obs.add if rescorings else None
    if observe is not None:
        hook = observe if hook is None else _both(hook, observe)
    pipe, entries = offline_pipeline(card, policy, hook)
    if models is not None:
        pipe.set_models(models, now=True)
    arm_rescorings: Counter[str] = Counter()
    arm_opened: Counter[str] = Counter()
    arm_quality: dict[str, Quality] = {}
    alerts = RecordSpool()
    outcomes: Counter[tuple[str, str]] = Counter()
    dead: Counter[str] = Counter()
    n = 0
    chunk: list[InRecord] = []

    letters = RecordSpool()

    def take(res: BatchResult) -> None:
        outcomes.update(res.outcomes)
        dead.update(res.dead_letters)
        for (arm, _grade), count in res.by_arm.items():
            arm_rescorings[arm] += count
        arm_opened.update(a.arm for a, _e, _i in res.alerts if a.status == "opened")
        for arm, q in res.arm_quality.items():
            arm_quality.setdefault(arm, Quality()).merge(q)
        for o in res.outputs:
            if o.topic == "alerts":
                alerts.append(o.value)
            elif o.topic == "deadletter":
                letters.append(o.value)

    def flush() -> None:
        entries.start_batch(0)
        take(pipe.process(chunk))
        chunk.clear()

    for rec in file_records(path, partitions):
        chunk.append(rec)
        n += 1
        if len(chunk) >= CHUNK:
            flush()
    if chunk:
        flush()
    take(pipe.end_of_input())  # events still waiting for their loan: dead letters
    return BacktestResult(
        alerts,
        obs,
        outcomes,
        dead,
        n,
        obs.first_activity,
        letters,
        pipe,
        arm_rescorings,
        arm_opened,
        arm_quality,
    )
