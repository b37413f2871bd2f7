"""The riskmon Faust app: thin glue between Kafka and :class:`streams.core.pipeline.Pipeline`.

One batched agent (:mod:`streams.kafka.agent`) consumes the three input topics, one message per
fetched partition batch, the topics of a partition merged in send order. Per batch:
pipeline.process -> send alerts / grade changes / dead letters -> write each touched customer's
entry once to the ``customers`` table (store + changelog) -> ack. Outputs are delivered *before*
the state that records them, so a crash between the two re-emits the same records
(deterministic ids) instead of losing an alert.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import faust
import msgspec
import numpy as np

from schemas.events import INPUT_TYPES
from scoring import artifact
from scoring.artifact import Scorecard
from streams.core import policy_file
from streams.core.drift import DriftMonitor
from streams.core.entry import EntryCache
from streams.core.gc_tuning import tune_gc
from streams.core.models import ModelRejected, ModelSet
from streams.core.pipeline import Pipeline
from streams.core.queue import MAX_LIMIT, OpenAlertIndex
from streams.core.records import InBatch
from streams.core.rescorings import RescoringLog
from streams.core.view import customer_view
from streams.kafka import agent, consumer, tables, web
from streams.kafka.connection import KafkaSettings
from streams.kafka.metrics import Metrics
from streams.kafka.models import ModelWatcher, read_models
from streams.kafka.settings import WorkerConfig
from streams.kafka.topics import ORDER_HEADER, TopicNames, create_models_topic

TABLE = "customers"
_log = logging.getLogger(__name__)
#: PSI/CSI are exported once the drift window holds at least this many rescorings per customer
#: the worker owns (and the drift monitor's own minimum)
DRIFT_MIN_SHARE = 0.5


@dataclass
class Runtime:
    """What the agent and the web views share inside one worker process."""

    cfg: WorkerConfig
    app: faust.App
    table: Any
    names: TopicNames
    pipeline: Pipeline
    metrics: Metrics
    entries: EntryCache
    open_alerts: OpenAlertIndex  # the customers with open alerts: GET /queue
    # partition -> customer id -> (grade index, entry bytes): feeds the by-grade and size gauges
    owned: dict[int, dict[bytes, tuple[int, int]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    next_offset: dict[tuple[str, int], int] = field(default_factory=dict)


def build_app(cfg: WorkerConfig, kafka: KafkaSettings) -> Runtime:
    """Declare the app, topics, table, agent and web views from one config object."""
    card = artifact.load(cfg.scorecard)
    tls = web.tls_context(cfg.web_tls_cert, cfg.web_tls_key)
    app = faust.App(
        cfg.app_id,
        **kafka.faust_app_kwargs(),
        store=cfg.store,
        datadir=str(cfg.data_dir),
        topic_partitions=cfg.partitions,
        table_standby_replicas=0,
        broker_session_timeout=cfg.session_timeout,
        web_bind=cfg.web_host,
        web_ssl_context=tls,
        web_host=cfg.web_host,
        web_port=cfg.web_port,
        canonical_url=f"{'https' if tls else 'http'}://{cfg.web_host}:{cfg.web_port}",
        **consumer.APP_SETTINGS,
    )
    names = TopicNames(cfg.topic_prefix)
    table = tables.batch_table(app, TABLE, cfg.partitions)
    metrics = Metrics()

    def load(cid: str) -> bytes | None:
        return tables.read_local(table, cid.encode())

    log: RescoringLog | None = None
    if cfg.rescorings_dir is not None:
        log = RescoringLog(cfg.rescorings_dir / f"rescorings-{os.getpid()}.bin")
    # decoded entries kept between batches of one consumer generation, up to cache_customers
    entries = EntryCache(limit=cfg.cache_customers)
    drift = DriftMonitor(card, window_s=cfg.drift_window_days * 86400.0)
    policy = policy_file.load(cfg.policy)
    state = policy.state
    if cfg.lateness_days is not None:
        state = dataclasses.replace(state, lateness_days=cfg.lateness_days)
    pipeline = Pipeline(
        card,
        state,
        policy.policy,
        load=load,
        entries=entries,
        drift=drift,
        record=None if log is None else log.add_batch,
        limits=policy.limits,
        clock=time.time if cfg.event_clock == "wall" else None,
        topic_names={role: names.by_role(role) for role in INPUT_TYPES},
    )
    index = OpenAlertIndex(pipeline)
    rt = Runtime(cfg, app, table, names, pipeline, metrics, entries, index)
    watcher = _models_watcher(kafka, names, card, pipeline, metrics)

    @app.task
    async def watch_models() -> None:
        # new cards from the models topic, swapped in by the pipeline between batches
        await watcher.run()

    @table.on_recover
    async def index_open_alerts() -> None:
        # after every rebalance's recovery (a start, a restart, partitions moving) the table
        # holds exactly this worker's customers: the queue starts again from it
        index.rebuild(tables.local_items(table))

    out_topics = {role: names.by_role(role) for role in ("alerts", "grades", "deadletter")}
    in_roles = {names.by_role(r): r for r in ("loans", "repayments", "transactions")}
    inputs = app.topic(*in_roles, key_type=bytes, value_type=bytes, value_serializer="raw")

    async def handle(batch: tables.RecordBatch) -> None:
        # the cached entries are what this worker last wrote: a rebalance (new generation) may
        # have handed a partition to another worker and back, a failed batch wrote nothing
        entries.start_batch(app.consumer_generation_id)
        try:
            await _handle(batch)
        except BaseException:
            entries.forget()
            raise

    async def _handle(batch: tables.RecordBatch) -> None:
        t0 = time.perf_counter()
        res = pipeline.process(_in_records(batch, in_roles, time.time()))
        t_send = time.perf_counter()
        if log is not None:
            log.flush()
        # outputs go to the input's partition number (keyed by customer: co-partitioned), in
        # bulk record batches; batch.persist delivers them before the state that records them
        by_topic: dict[str, list[tuple[bytes | None, bytes | None]]] = {}
        for o in res.outputs:
            by_topic.setdefault(o.topic, []).append((o.key, o.value))
        for role, pairs in by_topic.items():
            await batch.send(out_topics[role], pairs)
        sent_at = time.time()
        if res.dirty:
            await batch.write(table, {cid.encode(): v for cid, v in res.dirty.items()})
        res.phase_seconds["send"] = time.perf_counter() - t_send
        _observe(rt, batch, res, t0, sent_at)

    # align: the three input topics of a partition are merged in send order (ORDER_HEADER), or
    # by record timestamp for foreign producers, so one topic's backlog cannot fall behind
    agent.batched_agent(
        app, inputs, handle, name="riskmon.score", align=True, order_header=ORDER_HEADER
    )
    _web_views(rt)

    @app.timer(interval=5.0)
    async def refresh_gauges() -> None:
        _refresh_gauges(rt)

    return rt


def _models_watcher(
    kafka: KafkaSettings, names: TopicNames, card: Scorecard, pipeline: Pipeline, metrics: Metrics
) -> ModelWatcher:
    """The models topic read to its end now (before any batch: a restarted worker scores with
    the latest cards from its first batch), and the watcher for what comes later."""

    def rejected(exc: ModelRejected) -> None:
        metrics.model_records_rejected.labels(exc.reason).inc()
        _log.warning("model record refused, cards kept (%s): %s", exc.reason, exc.detail)

    def switched(models: ModelSet) -> None:
        metrics.model_switches.inc()
        _export_models(metrics, models)
        _log.warning("models from the next batch on: %s", models.describe())

    watcher = ModelWatcher(
        kafka, names.models, ModelSet(card), pipeline.set_models, rejected, switched
    )
    try:
        create_models_topic(kafka, names)
        records, end = read_models(kafka, names.models)
    except Exception as exc:  # the broker is not there yet: the watcher reads it all later
        _log.warning(
            "cannot read %s at start (%r): scoring with %s", names.models, exc, card.version
        )
        records, end = [], 0
    watcher.start_from(records, end)
    if watcher.models != ModelSet(card):  # no batch yet: the read API sees them at once too
        pipeline.set_models(watcher.models, now=True)
    _export_models(metrics, watcher.models)
    return watcher


def _export_models(metrics: Metrics, models: ModelSet) -> None:
    metrics.model_info.clear()
    metrics.worker_info.clear()
    metrics.worker_info.labels(_version(), models.champion.version).set(1)
    metrics.model_info.labels("champion", models.champion.version, "live").set(1)
    share = 0.0
    if models.challenger is not None:
        mode = "shadow" if models.shadow else "live"
        metrics.model_info.labels("challenger", models.challenger.version, mode).set(1)
        share = models.share
    metrics.model_share.labels("champion").set(100.0 if models.shadow else 100.0 - share)
    metrics.model_share.labels("challenger").set(share)


def _in_records(batch: tables.RecordBatch, roles: dict[str, str], now: float) -> InBatch:
    """The batch's records as the pipeline's columns, by C-level passes (no tuple per
    record)."""
    n = len(batch.records)
    if not n:
        return InBatch((), batch.partition, (), (), (), now)
    offsets, keys, values, _ts, _hs = zip(*batch.records, strict=True)
    if None in values:  # tombstones: an empty value (dead-lettered as not JSON)
        values = tuple(v or b"" for v in values)
    by_record = batch.topics
    topics = list(map(roles.__getitem__, by_record)) if by_record else [roles[batch.topic]] * n
    return InBatch(topics, batch.partition, offsets, keys, values, now)


def _observe(rt: Runtime, batch: tables.RecordBatch, res: Any, t0: float, sent_at: float) -> None:
    m = rt.metrics
    for (role, outcome), n in res.outcomes.items():
        m.events.labels(rt.names.by_role(role), outcome).inc(n)
    for reason, n in res.dead_letters.items():
        m.dead_letters.labels(reason).inc(n)
    m.batch_size.observe(len(batch.records))
    for phase, seconds in res.phase_seconds.items():
        m.batch_phase_seconds.labels(phase).inc(seconds)
    if res.scored:
        m.kernel_seconds.observe(res.kernel_seconds)
        m.customers_scored.inc(res.scored)
    if res.alerts:  # label children resolved once per batch, not per alert
        by_event, by_ingest = (m.event_to_alert.labels(k) for k in ("event_time", "ingest_time"))
        kinds: Counter[tuple[str, str, str]] = Counter()
        for alert, event_t, ingest_t in res.alerts:
            kinds[(alert.severity, alert.signal, alert.status)] += 1
            by_event.observe(max(0.0, sent_at - event_t))
            by_ingest.observe(max(0.0, sent_at - ingest_t))
        for labels, n in kinds.items():
            m.alerts.labels(*labels).inc(n)
        for (arm, status), n in Counter((a.arm, a.status) for a, _e, _i in res.alerts).items():
            m.arm_alerts.labels(arm, status).inc(n)
    for (arm, grade), n in res.by_arm.items():
        m.arm_rescorings.labels(arm, grade).inc(n)
    for arm, q in res.arm_quality.items():
        if q:
            m.export_arm_quality(arm, q)
    if res.parked:
        m.parked.inc(res.parked)
    if res.grade_changes:
        m.grade_changes.inc(res.grade_changes)
    if res.quality:
        m.export_quality(res.quality)
    owned = rt.owned[batch.partition]
    note = rt.open_alerts.note
    for cid, raw in res.dirty.items():
        entry = rt.entries[cid]
        owned[cid.encode()] = (entry.policy.last_grade, len(raw))
        note(cid, entry.policy)
    # each topic's last offset in the batch: its last record's, found from the end
    records = batch.records
    topics = batch.topics or [batch.topic] * len(records)
    backwards = topics[::-1]
    for t in set(topics):
        last = records[len(topics) - 1 - backwards.index(t)][0]
        rt.next_offset[(t, batch.partition)] = last + 1
    m.batch_seconds.observe(time.perf_counter() - t0)
    m.last_batch.set(time.time())


def _refresh_gauges(rt: Runtime) -> None:
    """Recompute the state gauges from what this worker owns now (drops revoked partitions)."""
    consumer = rt.app.consumer
    assigned = {tp.partition for tp in consumer.assignment() if tp.topic in rt.names.inputs}
    for p in list(rt.owned):
        if p not in assigned:
            del rt.owned[p]
    grades = np.zeros(len(rt.pipeline.cs.grade_names), dtype=np.int64)
    customers = size = 0
    for part in rt.owned.values():
        for grade, nbytes in part.values():
            if grade >= 0:
                grades[grade] += 1
            customers += 1
            size += nbytes
    for i, name in enumerate(rt.pipeline.cs.grade_names):
        rt.metrics.customers_by_grade.labels(name).set(int(grades[i]))
    rt.metrics.state_customers.set(customers)
    rt.metrics.state_bytes.set(size)
    # lag against the committed offsets (what a restart re-reads, what external lag monitors
    # see) and against what this worker has processed
    lag: dict[str, int] = defaultdict(int)
    behind: dict[str, int] = defaultdict(int)
    committed_at: dict[Any, int | None] = getattr(consumer, "_committed_offset", {})
    for tp in consumer.assignment():
        if tp.topic not in rt.names.inputs:
            continue
        end = consumer.highwater(tp)
        if end is None:
            continue
        done = rt.next_offset.get((tp.topic, tp.partition), 0)
        committed = committed_at.get(tp)
        behind[tp.topic] += max(0, int(end) - done)
        lag[tp.topic] += max(0, int(end) - (committed if committed is not None else 0))
    for topic in rt.names.inputs:
        rt.metrics.lag.labels(topic).set(lag.get(topic, 0))
        rt.metrics.processing_lag.labels(topic).set(behind.get(topic, 0))
    # a window holding rescorings of few of the customers this worker owns (the back-dated
    # history at a start, a quiet hour) says little about the book: PSI/CSI stay unknown (NaN)
    drift = rt.pipeline.drift  # the champion's (a new champion starts a new window)
    if drift is None:
        return
    scores = drift.count()
    rt.metrics.drift_window_scores.set(scores)
    if scores >= DRIFT_MIN_SHARE * customers:
        rt.metrics.export_drift(drift.psi(), drift.csi())
    else:
        rt.metrics.export_drift(math.nan, dict.fromkeys(drift.csi(), math.nan))
    _arm_drift(rt, customers)


def _arm_drift(rt: Runtime, customers: int) -> None:
    """Each arm's PSI against its own card, once its window holds enough of its customers."""
    arms = rt.pipeline.arms
    challenger = arms.challenger
    share = 0.0 if challenger is None else arms.models.share / 100.0
    for arm in (arms.champion, challenger):
        if arm is None or arm.drift is None:
            continue
        if arm is challenger:
            part = share
        else:
            part = 1.0 if challenger is None or not challenger.decides else 1.0 - share
        enough = arm.drift.count() >= DRIFT_MIN_SHARE * customers * part
        rt.metrics.arm_score_psi.labels(arm.name).set(arm.drift.psi() if enough else math.nan)
    if challenger is None:
        rt.metrics.arm_score_psi.labels("challenger").set(math.nan)


def _web_views(rt: Runtime) -> None:
    def lookup(customer_id: str) -> dict[str, Any] | None:
        raw = tables.read_local(rt.table, customer_id.encode())
        return None if raw is None else customer_view(rt.pipeline, customer_id, raw)

    def queue(limit: int, max_dpd: int | None) -> bytes:
        read = tables.local_reader(rt.table)
        answer = rt.open_alerts.answer(limit, lambda cid: read(cid.encode()), max_dpd)
        return msgspec.json.encode(answer)

    web.install_views(
        rt.app,
        rt.table,
        rt.metrics.registry,
        lookup,
        queue,
        MAX_LIMIT,
        web.Access(rt.cfg.api_token),
        rt.cfg.metrics_auth,
    )


def _version() -> str:
    from importlib.metadata import version

    try:
        return version("riskmon")
    except Exception:  # pragma: no cover - source checkout without metadata
        return "dev"


def run_worker(cfg: WorkerConfig, kafka: KafkaSettings, loglevel: str = "warning") -> None:
    """Start one worker and block until it is stopped (SIGINT/SIGTERM)."""
    rt = build_app(cfg, kafka)
    worker = faust.Worker(rt.app, loglevel=loglevel)  # web bind/port come from app.conf
    tune_gc()
    worker.execute_from_commandline()
