"""A real Prometheus scraping a real ``riskmon worker`` fed through the real broker.

Every dashboard panel query and every alert rule expression is evaluated over Prometheus's HTTP
API against the series the worker actually exports (tests/integration/test_prometheus_rules.py
does the same against a fake endpoint with hand-fed values). The worker gets deteriorating
customers and bad messages, so alert and dead-letter series exist. Run with ``-s`` to see the
table of every panel/rule and its value.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Callable, Iterator

import pytest

from scoring.artifact import default_scorecard_path
from streams.kafka.broker import EmbeddedBroker
from tests.conftest import loan_book
from tests.integration.test_worker import customers_on, feed, steps
from tests.integration.workerproc import Deployment, WorkerProcess
from tests.promserver import RULES, Evaluation, PrometheusServer, evaluate_all, loaded_rules

pytestmark = pytest.mark.slow

CUSTOMERS = 6  # per feeding round, 3 per partition


def rule_names() -> set[str]:
    return set(re.findall(r"^\s*-\s*alert:\s*(\S+)", RULES.read_text(), re.MULTILINE))


@pytest.fixture(scope="module")
def fed(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Deployment, WorkerProcess, Callable[[], None]]]:
    root = tmp_path_factory.mktemp("promworker")
    # the bundled card: it carries the training baseline, so the PSI/CSI panels show numbers
    dep = Deployment(broker, default_scorecard_path(), root, partitions=2)
    # the book spans months of event time: a year-long drift window holds all its scores
    w = WorkerProcess(dep, "w", extra_env={"RISKMON_DRIFT_WINDOW_DAYS": "365"}).start()
    try:
        w.wait_ready()
        rounds = itertools.count()

        def more() -> None:
            """Feed a book of new customers, half deteriorating (to 90+ DPD: caught defaults),
            with two bad messages."""
            n = next(rounds)
            custs = [f"r{n}{c}" for c in customers_on(dep.partitions, CUSTOMERS // 2)]
            groups = steps(loan_book({c: i % 2 == 0 for i, c in enumerate(custs)}, months=5))
            bad = [
                ("transactions", custs[0].encode(), b"\x00 not json"),
                ("repayments", custs[1].encode(), b'{"event_id": 1}'),
            ]
            feed(dep, [w], [groups[0], bad, *groups[1:]])

        yield dep, w, more
    finally:
        w.stop()
        assert not w.alive(), f"worker pid {w.pid} still alive"


@pytest.fixture(scope="module")
def prom(
    fed: tuple[Deployment, WorkerProcess, Callable[[], None]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusServer]:
    _dep, worker, _more = fed
    root = tmp_path_factory.mktemp("prometheus")
    config = root / "prometheus.yml"
    config.write_text(  # JSON is YAML
        json.dumps(
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
        yield server
    finally:
        server.stop()
        assert server.proc is not None and server.proc.poll() is not None, (
            f"prometheus pid {server.pid} still alive"
        )


@pytest.fixture(scope="module")
def results(
    fed: tuple[Deployment, WorkerProcess, Callable[[], None]], prom: PrometheusServer
) -> dict[str, Evaluation]:
    _dep, _w, more = fed
    prom.wait_for('up{job="riskmon"} == 1', timeout=30)
    more()  # counters move while Prometheus scrapes every second
    prom.wait_for('riskmon_alerts_total{job="riskmon"} > 0', timeout=30)
    time.sleep(2.5)  # a couple more scrapes
    more()
    prom.wait_for('rate(riskmon_events_total{job="riskmon"}[30s]) > 0', timeout=30)
    time.sleep(5.5)  # the state gauges refresh every 5 s in the worker
    deadline = time.monotonic() + 30
    while any(r["health"] != "ok" for r in loaded_rules(prom.url)):
        assert time.monotonic() < deadline, loaded_rules(prom.url)
        time.sleep(0.5)
    out = evaluate_all(prom.url, variables={"__rate_interval": "30s"})
    print()
    for key, ev in sorted(out.items()):  # shown with -s: the values for the issue note
        print(f"{key:62s} {ev.error or ev.samples or 'NO DATA'}")
    return out


def test_up_and_every_rule_healthy(prom: PrometheusServer, results: dict[str, Evaluation]) -> None:
    assert prom.wait_for('up{job="riskmon"} == 1')
    rules = loaded_rules(prom.url)
    assert {r["name"] for r in rules} == rule_names()
    assert all(r["health"] == "ok" for r in rules), [r.get("lastError") for r in rules]


def test_no_expression_errors(results: dict[str, Evaluation]) -> None:
    errors = {k: ev.error for k, ev in results.items() if ev.error}
    assert not errors


def test_every_panel_query_returns_data(results: dict[str, Evaluation]) -> None:
    panels = {k: ev for k, ev in results.items() if k.startswith("panel: ")}
    assert len(panels) >= 16
    empty = {k: ev.expr for k, ev in panels.items() if not ev.has_data}
    assert not empty


def test_panels_reflect_the_fed_worker(
    fed: tuple[Deployment, WorkerProcess, Callable[[], None]], results: dict[str, Evaluation]
) -> None:
    """Values that follow from what was fed: dead-letter reasons, customers, alerts."""
    _dep, w, _more = fed
    dl = results["panel: Dead letters/s by reason [A]"].samples
    assert set(dl) == {"{reason=not_json}", "{reason=schema}"}
    grades = results["panel: Customers by grade [A]"].samples
    assert sum(grades.values()) == w.metric_sum("riskmon_state_customers") == 2 * CUSTOMERS
    psi = results["panel: Score PSI vs baseline [A]"].samples
    assert psi and all(math.isfinite(v) and v > 0 for v in psi.values())
    csi = results["panel: Top 5 characteristics by CSI [A]"].samples
    assert csi and all(math.isfinite(v) for v in csi.values())
    assert results["panel: Workers up [A]"].samples == {"{}": 1.0}
    alerts = results["panel: Alerts/min by severity and signal [A]"].samples
    assert {k for k, v in alerts.items() if v > 0} >= {
        "{severity=yellow,signal=bounced_debit}",
    }
    events = results["panel: Events/s by topic and outcome [A]"].samples
    assert not [k for k in events if "outcome=duplicate" in k]
    ratio = next(iter(results["panel: Dead-letter ratio (5m) [A]"].samples.values()))
    assert 0 < ratio < 0.05  # 2 bad messages per round of about 100


def test_live_quality_panels_reflect_the_fed_worker(results: dict[str, Evaluation]) -> None:
    """Every deteriorating customer reaches 90+ DPD about 91 days after its first alert: all
    defaults caught, the lead time in the (90, 120] bucket, their open alerts ended in default."""
    share = results["panel: Defaults caught (30d) [A]"].samples
    assert list(share.values()) == [1.0]
    lead = results["panel: Lead time before default (30d): p25 / median [B]"].samples
    assert len(lead) == 1 and 90 < next(iter(lead.values())) <= 120
    ended = results["panel: Alerts ended (30d): cure, expired, default [A]"].samples
    assert ended["{ending=default}"] > 0
