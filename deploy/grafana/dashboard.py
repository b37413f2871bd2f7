"""Generate the riskmon Grafana dashboard (``deploy/grafana/riskmon.json``) from code.

grafana-foundation-sdk (pinned in pyproject) builds valid dashboard JSON by construction. Every
panel query reads the metrics of ``streams/kafka/metrics.py``; ``tests.promserver.evaluate_all``
runs them against a real Prometheus in the integration tests. Regenerate after a change:

    .venv/bin/python deploy/grafana/dashboard.py            # writes riskmon.json
    .venv/bin/python deploy/grafana/dashboard.py --check    # exit 1 if riskmon.json is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    prometheus,
    stat,
    text,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    GraphTresholdsStyleMode,  # sic: the SDK's spelling
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    StackingMode,
    TooltipDisplayMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
)
from grafana_foundation_sdk.models.text import TextMode

OUT = Path(__file__).with_name("riskmon.json")
UID = "riskmon-overview"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
J = 'job=~"$job"'  # every selector is scoped to the chosen scrape job
RATE = "$__rate_interval"
LATENCY_TARGET_S = 0.25  # p99 event-to-alert target (issue 4), also in rules.yml
# live quality (issue 24): defaults are rare, so shares and lead times are taken over 30 days;
# the report's goals (streams/evaluation/goals.py), and the rules' thresholds in rules.yml
QUALITY_WINDOW = "30d"
CAUGHT_SHARE_RULE = 0.8  # RiskmonDefaultsCaughtShareLow (the report's goal: 90 % alerted)
LEAD_GOAL_DAYS = 60  # RiskmonDefaultLeadTimeShort, the report's median lead-time goal

ONCALL = """\
**riskmon on call: read the rows top to bottom.**

* **Flow**: *Workers up* must equal the number of workers you run; *events/s* should follow the
  business day; *lag* growing means the workers fall behind (scale out, see deploy/README.md).
* **Input quality**: dead letters are events riskmon could not use (`not_json`, `schema`,
  `too_late`, ...). A rising ratio is a producer problem: read `riskmon.deadletter`.
* **Worker internals**: batch size grows under load (good); batch time by phase tells where a
  saturated worker's time goes (the per-event state update, *apply*, is usually the top).
* **Timeliness**: p99 from ingest to alert must stay under 250 ms (red line); alerts per minute
  by severity and signal show what collections receives.
* **Model health**: PSI of the live score vs the scorecard baseline: < 0.10 stable,
  0.10-0.25 watch, > 0.25 shifted (retrain/review). Top CSI names the characteristics that moved.
* **Live quality**: over the last 30 days, the share of 90+ DPD defaults that an actionable alert
  warned of beforehand (*caught*), how long before (median lead, goal 60 days), and how alerts
  ended: in a cure, expired, or in default (the share ending in default is the alerts' precision).
  Defaults are rare: with a handful a month these move in steps.
* **Model rollout**: which cards score (champion, challenger: live or shadow, its share), each
  arm's grade mix, alert rate per 1,000 rescorings and PSI against its own card, defaults caught
  per arm; refused model records mean a corrupt or unusable card was published (the workers
  keep theirs: read their log).

Alert runbook: `deploy/README.md`, section *Alerts*.
"""


def _steps(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


PSI_STEPS = ((None, "green"), (0.10, "yellow"), (0.25, "red"))


def _q(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    return q.instant() if instant else q.range()


def _quantiles(metric: str, by: str = "") -> list[prometheus.Dataquery]:
    """p50 and p99 of a histogram, optionally per label ``by``."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        _q(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{J}}}[{RATE}])))",
            f"p{round(q * 100)}{suffix}",
            ref,
        )
        for q, ref in ((0.5, "A"), (0.99, "B"))
    ]


def _timeseries(
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus.Dataquery],
    steps: tuple[tuple[float | None, str], ...] = ((None, "green"),),
    span: int = 8,
    stacked: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .min(0)
        .span(span)
        .height(8)
        .thresholds(_steps(*steps))
        .fill_opacity(10)
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
        )
    )
    for target in targets:
        panel = panel.with_target(target)
    if len(steps) > 1:
        panel = panel.thresholds_style(
            common.GraphThresholdsStyleConfig().mode(GraphTresholdsStyleMode.LINE)
        )
    if stacked:
        panel = panel.stacking(common.StackingConfig().mode(StackingMode.NORMAL))
    return panel


def _stat(
    title: str,
    description: str,
    unit: str,
    target: prometheus.Dataquery,
    steps: tuple[tuple[float | None, str], ...] = ((None, "green"),),
    span: int = 4,
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .span(span)
        .height(8)
        .unit(unit)
        .with_target(target)
        .thresholds(_steps(*steps))
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .color_mode(BigValueColorMode.VALUE)
        .graph_mode(BigValueGraphMode.AREA)
    )


def _bars(
    title: str,
    description: str,
    unit: str,
    target: prometheus.Dataquery,
    orientation: VizOrientation,
    steps: tuple[tuple[float | None, str], ...] = ((None, "green"),),
) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .span(8)
        .height(8)
        .unit(unit)
        .with_target(target)
        .thresholds(_steps(*steps))
        .orientation(orientation)
        .display_mode(BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def build() -> dict[str, Any]:
    """The dashboard as a JSON-ready dict."""
    workers_up = _stat(
        "Workers up",
        "Workers Prometheus scrapes successfully (up == 1). Should equal the number you run; "
        "fewer means their partitions moved to the others.",
        "none",
        _q(f"sum(up{{{J}}})", "workers", instant=True),
        steps=((None, "red"), (1, "green")),
    )
    events = _timeseries(
        "Events/s by topic and outcome",
        "Input events consumed per second, by topic and outcome (processed, duplicate, "
        "redelivered, dead_letter).",
        "ops",
        [
            _q(
                f"sum by (topic, outcome) (rate(riskmon_events_total{{{J}}}[{RATE}]))",
                "{{topic}} {{outcome}}",
            )
        ],
    )
    lag = _timeseries(
        "Consumer lag: committed and processed",
        "Records past the group's committed offsets (what a restart re-reads, what external lag "
        "monitors see) and past what the workers processed, per input topic, summed over "
        "partitions. A steady rise of both: the workers cannot keep up; committed far above "
        "processed: commits do not follow processing.",
        "short",
        [
            _q(f"sum by (topic) (riskmon_consumer_lag_messages{{{J}}})", "{{topic}} committed"),
            _q(
                f"sum by (topic) (riskmon_processing_lag_messages{{{J}}})",
                "{{topic}} processed",
                ref="B",
            ),
        ],
        steps=((None, "green"), (10_000, "yellow"), (100_000, "red")),
    )
    stalled = _stat(
        "Seconds since a batch (with records waiting)",
        "Longest time since a worker that has records to process finished a batch; 0 when "
        "every worker with waiting records is progressing. Over 120 s: a stalled worker.",
        "s",
        _q(
            f"max((time() - riskmon_last_batch_timestamp_seconds{{{J}}}) and on(instance) "
            f"(sum by (instance) (riskmon_processing_lag_messages{{{J}}}) > 0)) or vector(0)",
            "seconds",
            instant=True,
        ),
        steps=((None, "green"), (30, "yellow"), (120, "red")),
    )
    dead_letters = _timeseries(
        "Dead letters/s by reason",
        "Messages sent to the dead-letter topic, by reason (not_json, schema, too_late, ...).",
        "ops",
        [_q(f"sum by (reason) (rate(riskmon_dead_letters_total{{{J}}}[{RATE}]))", "{{reason}}")],
        span=16,
        stacked=True,
    )
    dl_ratio = _stat(
        "Dead-letter ratio (5m)",
        "Share of input events that went to dead letter. The rule alerts above 5%.",
        "percentunit",
        _q(
            f'(sum(rate(riskmon_events_total{{{J},outcome="dead_letter"}}[5m])) or on() '
            f"vector(0)) / sum(rate(riskmon_events_total{{{J}}}[5m]))",
            "ratio",
            instant=True,
        ),
        steps=((None, "green"), (0.01, "yellow"), (0.05, "red")),
        span=8,
    )
    batch_size = _timeseries(
        "Batch size",
        "Events per micro-batch (p50, p99 estimated from histogram buckets; exact mean). Batches "
        "grow under load, which keeps per-event cost low.",
        "short",
        [
            *_quantiles("riskmon_batch_size"),
            _q(
                f"sum(rate(riskmon_batch_size_sum{{{J}}}[{RATE}])) / "
                f"sum(rate(riskmon_batch_size_count{{{J}}}[{RATE}]))",
                "mean",
                "C",
            ),
        ],
        span=6,
    )
    batch_time = _timeseries(
        "Batch processing time",
        "Wall time to process one micro-batch (decode, state update, scoring, sends).",
        "s",
        _quantiles("riskmon_batch_seconds"),
        span=6,
    )
    kernel = _timeseries(
        "Scoring kernel time",
        "Wall time of one numba scoring-kernel call (all touched customers of a batch).",
        "s",
        _quantiles("riskmon_kernel_seconds"),
        span=6,
    )
    phases = _timeseries(
        "Batch time by phase",
        "Share of one core each phase of the batches takes (the top of the stack near 100 % = "
        "the worker is saturated): apply = decode, dedupe, state update (per event, Python); "
        "features, score = the numba kernels; policy = alert decisions and records; serialise, "
        "send = table entries, outputs, changelog.",
        "percentunit",
        [
            _q(
                f"sum by (phase) (rate(riskmon_batch_phase_seconds_total{{{J}}}[{RATE}]))",
                "{{phase}}",
            )
        ],
        span=6,
        stacked=True,
    )
    latency = _timeseries(
        "Event-to-alert latency p50/p99",
        "From the triggering event to the alert being sent. clock=ingest_time is what riskmon "
        "controls (target p99 < 250 ms, red line); clock=event_time adds upstream delay.",
        "s",
        _quantiles("riskmon_event_to_alert_seconds", by="clock"),
        steps=((None, "green"), (LATENCY_TARGET_S, "red")),
        span=12,
    )
    alerts = _timeseries(
        "Alerts/min by severity and signal",
        "Early-warning alerts opened or escalated per minute, as collections receives them.",
        "short",
        [
            _q(
                "sum by (severity, signal) (rate(riskmon_alerts_total"
                f'{{{J},status=~"opened|escalated"}}[{RATE}])) * 60',
                "{{severity}} {{signal}}",
            )
        ],
        span=8,
        stacked=True,
    )
    grade_changes = _stat(
        "Grade changes/min",
        "Grade changes written to the audit topic per minute.",
        "short",
        _q(f"sum(rate(riskmon_grade_changes_total{{{J}}}[5m])) * 60", "grade changes"),
    )
    by_grade = _bars(
        "Customers by grade",
        "Customers held by the workers, by their current grade.",
        "short",
        _q(f"sum by (grade) (riskmon_customers_by_grade{{{J}}})", "{{grade}}", instant=True),
        VizOrientation.VERTICAL,
    )
    psi = _timeseries(
        "Score PSI vs baseline",
        "Population stability of the live score distribution against the scorecard's baseline "
        "(worst worker). < 0.10 stable, 0.10-0.25 watch, > 0.25 shifted.",
        "none",
        [_q(f"max(riskmon_score_psi{{{J}}})", "PSI")],
        steps=PSI_STEPS,
    )
    csi = _bars(
        "Top 5 characteristics by CSI",
        "Characteristic stability index vs training: the inputs whose distribution moved most.",
        "none",
        _q(
            f"topk(5, max by (characteristic) (riskmon_characteristic_csi{{{J}}}))",
            "{{characteristic}}",
            instant=True,
        ),
        VizOrientation.HORIZONTAL,
        steps=PSI_STEPS,
    )
    quality = _quality_panels()
    oncall = (
        text.Panel()
        .title("How to read this dashboard")
        .span(24)
        .height(11)
        .mode(TextMode.MARKDOWN)
        .content(ONCALL)
    )

    board: Any = (
        dashboard.Dashboard("riskmon: SME loan early warning")
        .uid(UID)
        .description(
            "riskmon workers: event flow, input quality, timeliness, model health, live quality."
        )
        .tags(["riskmon", "kafka", "credit-risk"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .with_variable(
            dashboard.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .current(VariableOption(text="Prometheus", value="prometheus", selected=True))
        )
        .with_variable(
            dashboard.QueryVariable("job")
            .label("Scrape job")
            .datasource(DS)
            .query("label_values(riskmon_worker_info, job)")
            .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
            .current(VariableOption(text="riskmon", value="riskmon", selected=True))
        )
        .with_panel(oncall)
        .with_row(dashboard.Row("Flow: are events arriving and consumed?"))
        .with_panel(workers_up)
        .with_panel(events)
        .with_panel(lag)
        .with_panel(stalled)
        .with_row(dashboard.Row("Input quality: is bad data arriving?"))
        .with_panel(dead_letters)
        .with_panel(dl_ratio)
        .with_row(dashboard.Row("Worker internals: is the worker keeping up?"))
        .with_panel(batch_size)
        .with_panel(batch_time)
        .with_panel(kernel)
        .with_panel(phases)
        .with_row(dashboard.Row("Timeliness: do alerts go out fast?"))
        .with_panel(latency)
        .with_panel(alerts)
        .with_panel(grade_changes)
        .with_row(dashboard.Row("Model health: does the scorecard still fit?"))
        .with_panel(by_grade)
        .with_panel(psi)
        .with_panel(csi)
        .with_row(dashboard.Row("Live quality: do the alerts warn of the defaults in time?"))
    )
    for panel in quality:
        board = board.with_panel(panel)
    board = board.with_row(dashboard.Row("Model rollout: champion vs challenger"))
    for panel in _rollout_panels():
        board = board.with_panel(panel)
    board = board.build()
    out: dict[str, Any] = json.loads(json.dumps(board, cls=JSONEncoder))
    for number, panel in enumerate(out["panels"], start=1):
        panel["id"] = number  # stable ids: Grafana links and alerts refer to panels by id
    return out


def _quality_panels() -> list[Any]:
    """The live-quality row: defaults caught vs missed, lead time, how alerts ended."""
    w = QUALITY_WINDOW
    defaults = f"increase(riskmon_defaults_total{{{J}}}[{w}])"
    caught_share = _stat(
        f"Defaults caught ({w})",
        "Share of the customers reaching 90+ DPD whom an actionable (not watch) alert warned of "
        "before the default. The report's goal is 90 %; the rule warns below "
        f"{CAUGHT_SHARE_RULE:.0%} (with 20 defaults or more). Empty: no default in the window.",
        "percentunit",
        _q(
            f'sum(increase(riskmon_defaults_total{{{J},outcome="caught"}}[{w}])) / sum({defaults})',
            "caught",
            instant=True,
        ),
        steps=((None, "red"), (CAUGHT_SHARE_RULE, "yellow"), (0.9, "green")),
    )
    per_day = _timeseries(
        "Defaults per day: caught vs missed",
        "Customers reaching 90+ DPD in the last 24 h, by whether an actionable alert came "
        "before (caught) or not (missed). Each default counts once per spell.",
        "short",
        [_q(f"sum by (outcome) (increase(riskmon_defaults_total{{{J}}}[1d]))", "{{outcome}}")],
        stacked=True,
    )
    lead = _timeseries(
        f"Lead time before default ({w}): p25 / median",
        "Days from a caught default's first actionable alert to the default, from the "
        f"histogram's buckets. The red line is the report's {LEAD_GOAL_DAYS}-day goal for the "
        "median; the rule warns below it.",
        "d",
        [
            _q(
                f"histogram_quantile({q}, sum by (le) "
                f"(increase(riskmon_default_lead_time_days_bucket{{{J}}}[{w}])))",
                name,
                ref,
            )
            for q, name, ref in ((0.25, "p25", "A"), (0.5, "median", "B"))
        ],
        steps=((None, "red"), (LEAD_GOAL_DAYS, "green")),
    )
    ended = f"increase(riskmon_alerts_ended_total{{{J}}}[{w}])"
    precision = _stat(
        f"Alerts ending in default ({w})",
        "Of the actionable alerts that ended in the window, the share still open when the "
        "customer defaulted (the rest were cured or expired): the alerts' precision.",
        "percentunit",
        _q(
            f'sum(increase(riskmon_alerts_ended_total{{{J},ending="default"}}[{w}])) / '
            f"sum({ended})",
            "default",
            instant=True,
        ),
    )
    endings = _bars(
        f"Alerts ended ({w}): cure, expired, default",
        "Actionable alerts by how they ended: resolved by a cure, expired without one, or open "
        "when the customer reached 90+ DPD.",
        "short",
        _q(f"sum by (ending) ({ended})", "{{ending}}", instant=True),
        VizOrientation.HORIZONTAL,
    )
    return [caught_share, per_day, lead, precision, endings]


def _rollout_panels() -> list[Any]:
    """Champion/challenger: the cards, each arm's grades, alert rate, PSI and catches."""
    cards = _bars(
        "Cards and shares",
        "Percent of customers each arm takes (a shadow challenger: the share it scores while "
        "the champion decides); the versions are in riskmon_model_info.",
        "percent",
        _q(
            f"max by (arm) (riskmon_model_share_percent{{{J}}}) and on(arm) "
            f"(max by (arm) (riskmon_model_info{{{J}}}))",
            "{{arm}}",
            instant=True,
        ),
        VizOrientation.HORIZONTAL,
    )
    grades = _timeseries(
        "Grade mix by arm",
        "Share of each arm's rescorings per grade (a shadow challenger's included): two cards "
        "on the same customers should grade alike where they agree.",
        "percentunit",
        [
            _q(
                f"sum by (arm, grade) (rate(riskmon_arm_rescorings_total{{{J}}}[{RATE}])) / "
                f"on(arm) group_left sum by (arm) "
                f"(rate(riskmon_arm_rescorings_total{{{J}}}[{RATE}]))",
                "{{arm}} {{grade}}",
            )
        ],
    )
    alert_rate = _timeseries(
        "Alerts opened per 1,000 rescorings, by arm",
        "Alerts opened or escalated per 1,000 rescorings of each arm: a challenger alerting far "
        "more (or less) than the champion on comparable customers changes collections' load.",
        "short",
        [
            _q(
                "sum by (arm) (rate(riskmon_arm_alerts_total"
                f'{{{J},status=~"opened|escalated"}}[{RATE}])) / sum by (arm) '
                f"(rate(riskmon_arm_rescorings_total{{{J}}}[{RATE}])) * 1000",
                "{{arm}}",
            )
        ],
    )
    psi = _timeseries(
        "Score PSI by arm (each vs its own card)",
        "Population stability of each arm's live scores against its own card's baseline "
        "(worst worker); NaN until the arm's window holds enough rescorings.",
        "none",
        [_q(f"max by (arm) (riskmon_arm_score_psi{{{J}}})", "{{arm}}")],
        steps=PSI_STEPS,
    )
    caught = _timeseries(
        f"Defaults caught by arm ({QUALITY_WINDOW})",
        "Share of each arm's 90+ DPD defaults an actionable alert warned of beforehand.",
        "percentunit",
        [
            _q(
                f"sum by (arm) (increase(riskmon_arm_defaults_total"
                f'{{{J},outcome="caught"}}[{QUALITY_WINDOW}])) / sum by (arm) '
                f"(increase(riskmon_arm_defaults_total{{{J}}}[{QUALITY_WINDOW}]))",
                "{{arm}}",
            )
        ],
    )
    rejected = _stat(
        "Model records refused (1d)",
        "Model records the workers refused in the last day (corrupt or edited card, wrong key, "
        "a card the stream cannot score with). Above 0: the publication did not take; the "
        "workers kept their cards and logged why.",
        "none",
        _q(
            f"sum(increase(riskmon_model_records_rejected_total{{{J}}}[1d])) or vector(0)",
            "refused",
            instant=True,
        ),
        steps=((None, "green"), (1, "red")),
    )
    return [cards, grades, alert_rate, psi, caught, rejected]


def render() -> str:
    """The committed file's exact text."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if riskmon.json is stale")
    args = parser.parse_args(argv)
    new = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != new:
            print(f"{OUT} is stale: run {Path(__file__).name} to regenerate", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(new)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
