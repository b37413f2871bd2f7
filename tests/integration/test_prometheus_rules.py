"""Every dashboard panel query and every alert rule, evaluated by a real Prometheus.

Prometheus (Debian's package, on loopback, own config and data dir) scrapes a real HTTP endpoint
served from this test by prometheus_client with a ``streams.kafka.metrics.Metrics`` instance that a
background thread keeps updating. So the expressions run against the exact series names and label
sets the worker exports: a query that errors, or a panel that returns nothing, fails the test.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client import start_http_server

from streams.kafka.broker import free_port
from streams.kafka.metrics import Metrics
from tests.promserver import RULES, Evaluation, PrometheusServer, evaluate_all, loaded_rules

pytestmark = pytest.mark.slow

GRADES = {"A": 120.0, "B": 300.0, "C": 210.0, "D": 45.0, "E": 9.0}
CSI = {"dpd_max_6m": 0.31, "inflow_trend": 0.12, "min_balance": 0.07, "bounced_90d": 0.04,
       "years_in_business": 0.02, "rate_increased": 0.01}  # fmt: skip
# a saturated worker's batch time by phase (bench_stream's split)
PHASE_SHARES = {"apply": 0.68, "features": 0.04, "score": 0.03, "policy": 0.19, "send": 0.03}
PSI = 0.27  # above the critical threshold: the critical rule's expression must return it
# live quality, per tick: 9 of 10 defaults caught (the rule's 80% is met), leads of 75 days
# (over the 60-day goal), alert endings
DEFAULTS = {"caught": 9, "missed": 1}
LEAD_DAYS = 75.0
ENDED = {
    ("dpd_bucket", "default"): 3,
    ("grade_worsening", "cure"): 5,
    ("bounced_debit", "expired"): 2,
}
# a live 30 % challenger trial, per tick: rescorings by arm and grade, alerts opened by arm
ARM_SHARE = {"champion": 70.0, "challenger": 30.0}
ARM_GRADES = {"champion": {"A": 40, "B": 30}, "challenger": {"A": 10, "B": 20}}
ARM_OPENED = {"champion": 7, "challenger": 6}
ARM_PSI = {"champion": 0.05, "challenger": 0.12}


@dataclass
class FakeWorker:
    """A /metrics endpoint with riskmon's real metric objects, updated like a busy worker."""

    metrics: Metrics
    port: int
    stop: threading.Event

    def set_gauges(self) -> None:
        m = self.metrics
        m.worker_info.labels("0.1.0", "sme-behaviour-1").set(1)
        for grade, n in GRADES.items():
            m.customers_by_grade.labels(grade).set(n)
        for name, value in CSI.items():
            m.characteristic_csi.labels(name).set(value)
        m.score_psi.set(PSI)
        m.state_customers.set(sum(GRADES.values()))
        m.state_bytes.set(512 * sum(GRADES.values()))
        for topic in ("riskmon.loans", "riskmon.repayments", "riskmon.transactions"):
            m.lag.labels(topic).set(40)
            m.processing_lag.labels(topic).set(25)
        m.model_info.labels("champion", "sc-champion", "live").set(1)
        m.model_info.labels("challenger", "sc-challenger", "live").set(1)
        for arm, share in ARM_SHARE.items():
            m.model_share.labels(arm).set(share)
            m.arm_score_psi.labels(arm).set(ARM_PSI[arm])

    def tick(self, rng: random.Random) -> None:
        """One micro-batch worth of counter and histogram updates."""
        m = self.metrics
        m.events.labels("riskmon.transactions", "processed").inc(90)
        m.events.labels("riskmon.repayments", "processed").inc(30)
        m.events.labels("riskmon.repayments", "duplicate").inc(1)
        m.events.labels("riskmon.transactions", "dead_letter").inc(9)  # 9/130 = 6.9% > 5%
        m.dead_letters.labels("schema").inc(6)
        m.dead_letters.labels("not_json").inc(3)
        m.batch_size.observe(130)
        m.batch_seconds.observe(0.004 + rng.random() * 0.01)
        m.kernel_seconds.observe(2e-5 + rng.random() * 5e-5)
        for phase, share in PHASE_SHARES.items():
            m.batch_phase_seconds.labels(phase).inc(0.01 * share)
        m.customers_scored.inc(100)
        for _ in range(5):
            m.event_to_alert.labels("ingest_time").observe(0.02 + rng.random() * 0.05)
            m.event_to_alert.labels("event_time").observe(1.0 + rng.random() * 4)
        m.alerts.labels("orange", "grade_drop", "opened").inc(2)
        m.alerts.labels("red", "bounced_debit", "opened").inc(1)
        m.alerts.labels("orange", "grade_drop", "resolved").inc(1)
        m.grade_changes.inc(7)
        for outcome, n in DEFAULTS.items():
            m.defaults.labels(outcome).inc(n)
        for _ in range(DEFAULTS["caught"]):
            m.default_lead_time.observe(LEAD_DAYS)
        for (signal, ending), n in ENDED.items():
            m.alerts_ended.labels(signal, ending).inc(n)
        for arm, grades in ARM_GRADES.items():
            for grade, n in grades.items():
                m.arm_rescorings.labels(arm, grade).inc(n)
            m.arm_alerts.labels(arm, "opened").inc(ARM_OPENED[arm])
            m.arm_defaults.labels(arm, "caught").inc(3)
            m.arm_defaults.labels(arm, "missed").inc(1)
        m.last_batch.set(time.time())  # a live worker: never stalled

    def run(self) -> None:
        rng = random.Random(7)
        while not self.stop.is_set():
            self.tick(rng)
            self.stop.wait(0.2)


@pytest.fixture(scope="module")
def worker() -> Iterator[FakeWorker]:
    fake = FakeWorker(Metrics(), free_port(), threading.Event())
    fake.set_gauges()
    server, thread = start_http_server(fake.port, addr="127.0.0.1", registry=fake.metrics.registry)
    updater = threading.Thread(target=fake.run, daemon=True)
    updater.start()
    try:
        yield fake
    finally:
        fake.stop.set()
        updater.join(timeout=5)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not updater.is_alive() and not thread.is_alive()


@pytest.fixture(scope="module")
def prom(
    worker: FakeWorker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    root = tmp_path_factory.mktemp("prometheus")
    config = root / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "riskmon",
                        "static_configs": [{"targets": [f"127.0.0.1:{worker.port}"]}],
                    }
                ],
            }
        )
    )
    server = PrometheusServer(config, root / "data", log_path=root / "prometheus.log")
    server.start()
    try:
        server.wait_for('up{job="riskmon"} == 1', timeout=30)
        # rate() needs two scrapes that saw the counters move; rules need one evaluation
        server.wait_for('rate(riskmon_events_total{job="riskmon"}[30s]) > 0', timeout=30)
        deadline = time.monotonic() + 30
        while any(r["health"] != "ok" for r in loaded_rules(server.url)):
            assert time.monotonic() < deadline, loaded_rules(server.url)
            time.sleep(0.5)
        yield server
    finally:
        server.stop()
        assert server.proc is not None and server.proc.poll() is not None, (
            f"prometheus pid {server.pid} still alive"
        )


@pytest.fixture(scope="module")
def results(prom: PrometheusServer) -> dict[str, Evaluation]:
    out = evaluate_all(prom.url, variables={"__rate_interval": "30s"})
    for key, ev in sorted(out.items()):  # shown with -s: the values for the report
        print(f"{key:70s} {ev.error or ev.samples}")
    return out


def test_prometheus_loaded_every_rule_healthy(prom: PrometheusServer) -> None:
    rules = loaded_rules(prom.url)
    names = {r["name"] for r in rules}
    expected = {
        r["alert"] for g in yaml.safe_load(Path(RULES).read_text())["groups"] for r in g["rules"]
    }
    assert names == expected
    assert all(r["health"] == "ok" for r in rules), [r.get("lastError") for r in rules]


def test_no_expression_errors(results: dict[str, Evaluation]) -> None:
    errors = {k: ev.error for k, ev in results.items() if ev.error}
    assert not errors


def test_every_panel_query_returns_data(results: dict[str, Evaluation]) -> None:
    panels = {k: ev for k, ev in results.items() if k.startswith("panel: ")}
    assert len(panels) >= 16
    empty = [k for k, ev in panels.items() if not ev.has_data]
    assert not empty


def only(ev: Evaluation) -> float:
    assert len(ev.samples) == 1, ev
    return next(iter(ev.samples.values()))


def test_panels_show_what_the_worker_exported(results: dict[str, Evaluation]) -> None:
    """Gauge panels return the fed values; rate panels have the fed label sets."""
    assert only(results["panel: Workers up [A]"]) == 1
    assert only(results["panel: Score PSI vs baseline [A]"]) == pytest.approx(PSI)
    grades = results["panel: Customers by grade [A]"].samples
    assert {k: v for k, v in grades.items()} == {f"{{grade={g}}}": n for g, n in GRADES.items()}
    top = results["panel: Top 5 characteristics by CSI [A]"].samples
    assert sorted(top.values(), reverse=True) == sorted(CSI.values(), reverse=True)[:5]
    ratio = only(results["panel: Dead-letter ratio (5m) [A]"])
    assert ratio == pytest.approx(9 / 130, rel=0.05)
    lag = results["panel: Consumer lag: committed and processed [A]"].samples
    assert set(lag.values()) == {40.0} and len(lag) == 3
    processed = results["panel: Consumer lag: committed and processed [B]"].samples
    assert set(processed.values()) == {25.0} and len(processed) == 3
    stalled = only(results["panel: Seconds since a batch (with records waiting) [A]"])
    assert 0 <= stalled < 30  # records wait, and batches keep coming
    events = results["panel: Events/s by topic and outcome [A]"].samples
    assert len(events) == 4  # topic x outcome combinations fed
    assert set(results["panel: Dead letters/s by reason [A]"].samples) == {
        "{reason=not_json}",
        "{reason=schema}",
    }
    alerts = results["panel: Alerts/min by severity and signal [A]"].samples
    assert set(alerts) == {
        "{severity=orange,signal=grade_drop}",
        "{severity=red,signal=bounced_debit}",
    }
    p99 = results["panel: Event-to-alert latency p50/p99 [B]"].samples
    assert p99["{clock=ingest_time}"] <= 0.1 < p99["{clock=event_time}"]
    assert 100 < only(results["panel: Batch size [A]"]) <= 500  # p50 within 130's bucket
    assert only(results["panel: Batch size [C]"]) == pytest.approx(130)  # the exact mean
    phases = results["panel: Batch time by phase [A]"].samples
    assert set(phases) == {f"{{phase={p}}}" for p in PHASE_SHARES}
    ratio = phases["{phase=apply}"] / phases["{phase=policy}"]
    assert ratio == pytest.approx(PHASE_SHARES["apply"] / PHASE_SHARES["policy"], rel=0.01)


def test_live_quality_panels_show_what_the_worker_exported(
    results: dict[str, Evaluation],
) -> None:
    """Caught share, lead quantiles within the fed leads' bucket, endings and their share."""
    share = only(results["panel: Defaults caught (30d) [A]"])
    assert share == pytest.approx(DEFAULTS["caught"] / sum(DEFAULTS.values()), rel=0.02)
    per_day = results["panel: Defaults per day: caught vs missed [A]"].samples
    assert set(per_day) == {"{outcome=caught}", "{outcome=missed}"}
    assert per_day["{outcome=caught}"] > per_day["{outcome=missed}"] > 0
    lead = results["panel: Lead time before default (30d): p25 / median [B]"]
    p25 = results["panel: Lead time before default (30d): p25 / median [A]"]
    assert 60 < only(p25) < only(lead) <= 90  # the 75-day leads' bucket: (60, 90]
    ended = results["panel: Alerts ended (30d): cure, expired, default [A]"].samples
    assert set(ended) == {"{ending=cure}", "{ending=default}", "{ending=expired}"}
    fed = sum(ENDED.values())
    assert only(results["panel: Alerts ending in default (30d) [A]"]) == pytest.approx(3 / fed)


def test_rollout_panels_compare_the_arms(results: dict[str, Evaluation]) -> None:
    """Shares, each arm's grade mix, alerts per 1,000 rescorings and PSI, as fed."""
    shares = results["panel: Cards and shares [A]"].samples
    assert shares == {f"{{arm={a}}}": v for a, v in ARM_SHARE.items()}
    mix = results["panel: Grade mix by arm [A]"].samples
    for arm, grades in ARM_GRADES.items():
        for grade, n in grades.items():
            want = n / sum(grades.values())
            assert mix[f"{{arm={arm},grade={grade}}}"] == pytest.approx(want, rel=0.02)
    rate = results["panel: Alerts opened per 1,000 rescorings, by arm [A]"].samples
    for arm, opened in ARM_OPENED.items():
        want = 1000 * opened / sum(ARM_GRADES[arm].values())
        assert rate[f"{{arm={arm}}}"] == pytest.approx(want, rel=0.05)
    psi = results["panel: Score PSI by arm (each vs its own card) [A]"].samples
    assert psi == {f"{{arm={a}}}": pytest.approx(v) for a, v in ARM_PSI.items()}
    caught = results["panel: Defaults caught by arm (30d) [A]"].samples
    assert caught == {f"{{arm={a}}}": pytest.approx(0.75, rel=0.02) for a in ARM_SHARE}
    assert only(results["panel: Model records refused (1d) [A]"]) == 0


def test_rule_expressions_match_the_fed_situation(results: dict[str, Evaluation]) -> None:
    """PSI 0.27 and a 6.9% dead-letter ratio breach their rules; the rest stays quiet."""
    breached = {k for k, ev in results.items() if k.startswith("rule: ") and ev.samples}
    assert breached == {"rule: RiskmonScoreDriftCritical", "rule: RiskmonDeadLetterRatioHigh"}
    assert only(results["rule: RiskmonScoreDriftCritical"]) == pytest.approx(PSI)
