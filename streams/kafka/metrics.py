"""riskmon's Prometheus metrics, in one object around an injectable registry.

Names follow Prometheus conventions: ``riskmon_`` prefix, ``_seconds`` for durations, ``_total``
for counters; labels are bounded sets (topic, outcome, reason, severity, signal, grade,
characteristic, ending): never a customer id. Lead times before a default are in days, the
domain's unit (docs/domain.md, live quality).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.events import ARMS
from streams.core.models import REJECT_REASONS
from streams.core.policy import SIGNALS
from streams.core.quality import ENDINGS, OUTCOMES, Quality

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: event-to-alert: milliseconds from ingestion (clock=ingest_time), up to weeks from the event's
#: own time (clock=event_time: a replay of history, a source that sends late)
EVENT_TO_ALERT_BUCKETS = (
    *LATENCY_BUCKETS,
    300.0,
    900.0,
    3600.0,
    6 * 3600.0,
    86400.0,
    3 * 86400.0,
    7 * 86400.0,
    30 * 86400.0,
)
KERNEL_BUCKETS = (1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2)
BATCH_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000)
#: days from the first actionable alert to the default (the report's goal: a median >= 60)
LEAD_DAYS_BUCKETS = (1.0, 7.0, 14.0, 30.0, 60.0, 90.0, 120.0, 180.0, 365.0, 730.0)


class Metrics:
    """All metrics of one worker process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "riskmon_events",
            "Input events by topic and outcome (processed, duplicate, dead_letter).",
            ["topic", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "riskmon_dead_letters",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "riskmon_batch_size", "Events per micro-batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "riskmon_batch_seconds",
            "Wall time to process one micro-batch.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.kernel_seconds = Histogram(
            "riskmon_kernel_seconds",
            "Wall time of one scoring-kernel call.",
            buckets=KERNEL_BUCKETS,
            registry=r,
        )
        self.batch_phase_seconds = Counter(
            "riskmon_batch_phase_seconds",
            "Micro-batch wall time by phase: apply (decode, dedupe, state update), features, "
            "score, policy, serialise (table entries), send (queueing outputs and the changelog, "
            "flushing the rescoring log). "
            "rate() = the share of one core each phase takes.",
            ["phase"],
            registry=r,
        )
        self.customers_scored = Counter(
            "riskmon_customers_scored",
            "Customer rescorings (one per applied event: decisions follow each event).",
            registry=r,
        )
        self.event_to_alert = Histogram(
            "riskmon_event_to_alert_seconds",
            "From the triggering event to the alert being sent; clock=event_time or ingest_time.",
            ["clock"],
            buckets=EVENT_TO_ALERT_BUCKETS,
            registry=r,
        )
        self.alerts = Counter(
            "riskmon_alerts",
            "Alert records sent, by severity, signal and status.",
            ["severity", "signal", "status"],
            registry=r,
        )
        self.grade_changes = Counter(
            "riskmon_grade_changes", "Grade changes sent to the audit topic.", registry=r
        )
        self.customers_by_grade = Gauge(
            "riskmon_customers_by_grade",
            "Customers owned by this worker, by current grade.",
            ["grade"],
            registry=r,
        )
        self.parked = Gauge(
            "riskmon_parked_events",
            "Events held for a loan not seen yet (the loans topic may lag); dead-lettered once "
            "the partition's event time passes the lateness bound.",
            registry=r,
        )
        self.state_customers = Gauge(
            "riskmon_state_customers", "Customers held in this worker's state.", registry=r
        )
        self.state_bytes = Gauge(
            "riskmon_state_bytes", "Serialised size of this worker's customer state.", registry=r
        )
        self.lag = Gauge(
            "riskmon_consumer_lag_messages",
            "Records past the consumer group's committed offsets, over this worker's partitions "
            "(high-water mark minus committed offset): what a restart would read again.",
            ["topic"],
            registry=r,
        )
        self.processing_lag = Gauge(
            "riskmon_processing_lag_messages",
            "Records this worker has fetched or can fetch but not processed yet (high-water mark "
            "minus the processed position).",
            ["topic"],
            registry=r,
        )
        self.last_batch = Gauge(
            "riskmon_last_batch_timestamp_seconds",
            "Wall-clock time the last batch was processed (liveness: with processing lag above 0, "
            "time() minus this should stay small).",
            registry=r,
        )
        self.score_psi = Gauge(
            "riskmon_score_psi",
            "PSI of the live score distribution vs the scorecard baseline.",
            registry=r,
        )
        self.drift_window_scores = Gauge(
            "riskmon_drift_window_scores",
            "Rescorings in the live drift window; PSI/CSI read NaN while it holds fewer than half "
            "as many as the worker owns customers (too few to describe the book).",
            registry=r,
        )
        self.characteristic_csi = Gauge(
            "riskmon_characteristic_csi",
            "CSI of each characteristic vs its training baseline.",
            ["characteristic"],
            registry=r,
        )
        self.defaults = Counter(
            "riskmon_defaults",
            "Customers reaching 90+ DPD, once per spell: caught (an actionable alert opened "
            "before) or missed.",
            ["outcome"],
            registry=r,
        )
        self.default_lead_time = Histogram(
            "riskmon_default_lead_time_days",
            "Days from a caught default's first actionable alert to the default.",
            buckets=LEAD_DAYS_BUCKETS,
            registry=r,
        )
        self.alerts_ended = Counter(
            "riskmon_alerts_ended",
            "Actionable alerts by how they ended: cure (resolved), expired, or default (still "
            "open when the customer reached 90+ DPD).",
            ["signal", "ending"],
            registry=r,
        )
        # every series from the start at 0: increase() then sees a counter's first event
        for outcome in OUTCOMES:
            self.defaults.labels(outcome)
        for signal in SIGNALS:
            for ending in ENDINGS:
                self.alerts_ended.labels(signal, ending)
        # model rollout (docs/architecture.md): per arm, the champion's and challenger's view
        self.model_records_rejected = Counter(
            "riskmon_model_records_rejected",
            "Model records refused (the worker keeps its cards), by reason.",
            ["reason"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.model_records_rejected.labels(reason)
        self.model_switches = Counter(
            "riskmon_model_switches",
            "Model sets accepted from the models topic (applied at the next batch).",
            registry=r,
        )
        self.model_info = Gauge(
            "riskmon_model_info",
            "Constant 1 per active arm, with its card version and mode (live or shadow).",
            ["arm", "scorecard_version", "mode"],
            registry=r,
        )
        self.model_share = Gauge(
            "riskmon_model_share_percent",
            "Percent of customers routed to each arm (a shadow challenger: the share it scores).",
            ["arm"],
            registry=r,
        )
        self.arm_rescorings = Counter(
            "riskmon_arm_rescorings",
            "Rescorings by arm and grade (a shadow challenger's included): the grade "
            "distribution of each card.",
            ["arm", "grade"],
            registry=r,
        )
        self.arm_alerts = Counter(
            "riskmon_arm_alerts",
            "Alert records sent, by arm and status.",
            ["arm", "status"],
            registry=r,
        )
        self.arm_score_psi = Gauge(
            "riskmon_arm_score_psi",
            "PSI of each arm's live scores vs its own card's baseline (NaN: too few yet).",
            ["arm"],
            registry=r,
        )
        self.arm_defaults = Counter(
            "riskmon_arm_defaults",
            "Defaults (90+ DPD) by arm and outcome (caught / missed).",
            ["arm", "outcome"],
            registry=r,
        )
        self.arm_lead_time = Histogram(
            "riskmon_arm_default_lead_time_days",
            "Days from a caught default's first actionable alert to the default, by arm.",
            ["arm"],
            buckets=LEAD_DAYS_BUCKETS,
            registry=r,
        )
        for arm in ARMS:
            for outcome in OUTCOMES:
                self.arm_defaults.labels(arm, outcome)
        self.worker_info = Gauge(
            "riskmon_worker_info",
            "Constant 1, labelled with the worker's versions.",
            ["riskmon_version", "scorecard_version"],
            registry=r,
        )

    def export_quality(self, q: Quality) -> None:
        """Add one batch's live quality: defaults, their lead times and alert endings."""
        for outcome, n in q.defaults.items():
            self.defaults.labels(outcome).inc(n)
        for days in q.lead_days:
            self.default_lead_time.observe(days)
        for (signal, ending), n in q.ended.items():
            self.alerts_ended.labels(signal, ending).inc(n)

    def export_arm_quality(self, arm: str, q: Quality) -> None:
        """One arm's share of a batch's live quality."""
        for outcome, n in q.defaults.items():
            self.arm_defaults.labels(arm, outcome).inc(n)
        for days in q.lead_days:
            self.arm_lead_time.labels(arm).observe(days)

    def export_drift(self, psi: float, csi: Mapping[str, float]) -> None:
        """Set ``riskmon_score_psi`` and ``riskmon_characteristic_csi{characteristic}`` (NaN:
        unknown, exported as NaN)."""
        self.score_psi.set(psi)
        for name, value in csi.items():
            self.characteristic_csi.labels(characteristic=name).set(value)
