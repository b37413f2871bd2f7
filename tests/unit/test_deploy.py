"""Offline validation of deploy/: dashboard, alert rules, compose, Dockerfile, Kubernetes base.

No Docker engine, Grafana or cluster here: the files are checked with the real tools that can run
offline (promtool, check-jsonschema, kubectl kustomize, kubernetes-validate) and against the code
they must agree with (metric names, topic names, worker settings).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.kafka.metrics import Metrics
from streams.kafka.topics import TopicNames
from tests.promserver import DEFAULT_VARIABLES, panel_queries, promtool, substitute

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
METRIC = re.compile(r"\b(riskmon_[a-z_]+)\b")
REQUIRED_ALERTS = {
    "RiskmonWorkerDown",
    "RiskmonNoEventsConsumed",
    "RiskmonDeadLetterRatioHigh",
    "RiskmonAlertLatencyHigh",
    "RiskmonScoreDriftCritical",
    "RiskmonScoreDriftWarning",
    "RiskmonAlertVolumeSpike",
    "RiskmonWorkerStalled",
    "RiskmonCommitsBehind",
    "RiskmonDefaultsCaughtShareLow",
    "RiskmonDefaultLeadTimeShort",
    "RiskmonModelRecordRefused",
}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "riskmon_dashboard", DEPLOY / "grafana" / "dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "riskmon.json").read_text())


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def k8s_docs() -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def exported_series() -> set[str]:
    """Every series name a worker's /metrics can expose, from streams.kafka.metrics itself."""
    names = {"up"}
    for family in Metrics(CollectorRegistry()).registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def worker_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] not in ("row", "text")]


# --- Grafana dashboard -------------------------------------------------------------------------


def test_committed_dashboard_is_what_the_generator_produces_now() -> None:
    """riskmon.json is regenerated from dashboard.py, never edited by hand."""
    assert load_generator().render() == (DEPLOY / "grafana" / "riskmon.json").read_text()


def test_every_panel_queries_prometheus_through_the_datasource_variable(
    dashboard: dict[str, Any],
) -> None:
    """Each data panel has targets with a PromQL expr and uses the $datasource variable."""
    panels = worker_panels(dashboard)
    assert len(panels) >= 12
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}"


def test_datasource_variable_is_present(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["current"]["value"] == DEFAULT_VARIABLES["job"]


def test_panels_have_units_thresholds_and_descriptions(dashboard: dict[str, Any]) -> None:
    for panel in worker_panels(dashboard):
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), panel["title"]
        assert defaults["thresholds"]["steps"], panel["title"]
        assert len(panel.get("description", "")) > 20, panel["title"]


def test_panels_do_not_overlap_on_the_grid(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_text_panel_explains_every_row(dashboard: dict[str, Any]) -> None:
    text = next(p for p in dashboard["panels"] if p["type"] == "text")["options"]["content"]
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert len(rows) == 7
    for row in rows:
        assert f"**{row.split(':')[0]}**" in text, row


def test_dashboard_shows_every_required_signal(dashboard: dict[str, Any]) -> None:
    """The issue's panel list: each metric is queried by some panel."""
    exprs = " ".join(panel_queries(dashboard).values())
    for needed in (
        "riskmon_events_total",
        "riskmon_dead_letters_total",
        "riskmon_batch_size_bucket",
        "riskmon_kernel_seconds_bucket",
        "riskmon_batch_phase_seconds_total",
        "riskmon_event_to_alert_seconds_bucket",
        "riskmon_alerts_total",
        "riskmon_customers_by_grade",
        "riskmon_score_psi",
        "riskmon_characteristic_csi",
        "riskmon_consumer_lag_messages",
        "riskmon_processing_lag_messages",
        "riskmon_last_batch_timestamp_seconds",
        "riskmon_defaults_total",
        "riskmon_default_lead_time_days_bucket",
        "riskmon_alerts_ended_total",
        "up{",
    ):
        assert needed in exprs, needed
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs


def test_dashboard_compares_the_rollout_arms(dashboard: dict[str, Any]) -> None:
    """Model rollout: every per-arm series is on a panel, split by arm."""
    queries = panel_queries(dashboard).values()
    for needed in (
        "riskmon_model_share_percent",
        "riskmon_model_info",
        "riskmon_arm_rescorings_total",
        "riskmon_arm_alerts_total",
        "riskmon_arm_score_psi",
        "riskmon_arm_defaults_total",
        "riskmon_model_records_rejected_total",
    ):
        using = [q for q in queries if needed in q]
        assert using, needed
        if needed.startswith("riskmon_arm_"):
            assert all("by (arm" in q for q in using), needed


def test_dashboard_and_rules_only_use_series_the_worker_exports(
    dashboard: dict[str, Any], rules: list[dict[str, Any]]
) -> None:
    """A typo in a metric name would give an empty panel or a rule that never fires."""
    exported = exported_series()
    used = set(METRIC.findall(" ".join(panel_queries(dashboard).values())))
    used |= set(METRIC.findall(" ".join(r["expr"] for r in rules)))
    assert used, "no riskmon metric found in the expressions"
    assert used <= exported, used - exported


def test_dashboard_variables_all_have_values_outside_grafana(dashboard: dict[str, Any]) -> None:
    for key, expr in panel_queries(dashboard).items():
        assert "$" not in substitute(expr, DEFAULT_VARIABLES), key


# --- Prometheus rules and config ---------------------------------------------------------------


def test_promtool_check_rules() -> None:
    out = promtool("check", "rules", DEPLOY / "prometheus" / "rules.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(REQUIRED_ALERTS)} rules found" in out.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    out = promtool("test", "rules", "rules_test.yml", cwd=DEPLOY / "prometheus")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_rule_has_a_firing_and_a_silent_unit_test(rules: list[dict[str, Any]]) -> None:
    tests = yaml.safe_load((DEPLOY / "prometheus" / "rules_test.yml").read_text())["tests"]
    cases = [case for t in tests for case in t.get("alert_rule_test", [])]
    names = {r["alert"] for r in rules}
    assert names == REQUIRED_ALERTS
    for name in names:
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no firing case"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no silent case"


def test_rules_have_severity_and_a_runbook_section_in_the_readme(
    rules: list[dict[str, Any]],
) -> None:
    readme = (DEPLOY / "README.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", readme, re.M)
    }
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: no README heading for #{anchor}"


def test_prometheus_config_is_valid_and_scrapes_the_compose_workers(
    compose: dict[str, Any],
) -> None:
    path = DEPLOY / "prometheus" / "prometheus.yml"
    out = promtool("check", "config", "--syntax-only", path)
    assert out.returncode == 0, out.stdout + out.stderr
    config = yaml.safe_load(path.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == DEFAULT_VARIABLES["job"])
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    workers = {n for n, s in compose["services"].items() if s.get("command") == ["worker"]}
    assert len(workers) == 2
    port = compose["services"]["worker-1"]["environment"]["RISKMON_WEB_PORT"]
    assert sorted(targets) == sorted(f"{w}:{port}" for w in workers)
    mounts = compose["services"]["prometheus"]["volumes"]
    for rule_file in config["rule_files"]:
        assert any(m.endswith(f":{rule_file}:ro") for m in mounts), rule_file


# --- compose and Dockerfile --------------------------------------------------------------------


def test_compose_validates_against_the_compose_spec() -> None:
    out = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(DEPLOY / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_has_every_service_the_stack_needs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "topics", "worker-1", "worker-2", "prometheus", "grafana", "producer"} <= set(
        services
    )
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert services["producer"]["profiles"] == ["producer"]
    script = services["producer"]["command"][0]
    # every riskmon subcommand the producer runs exists, with the flags it passes
    assert "riskmon simulate" in script and "riskmon replay" in script
    from click.testing import CliRunner

    from streams.cli import _register, cli

    _register()
    for sub in ("simulate", "replay"):
        flags = re.findall(r"--[a-z-]+", script.split(f"riskmon {sub}")[1].split("&&")[0])
        help_text = CliRunner().invoke(cli, [sub, "--help"]).output
        assert all(f in help_text for f in flags), (sub, flags)
    for name in ("worker-1", "worker-2"):
        env = services[name]["environment"]
        assert env["RISKMON_BROKER"] == "kafka:9092"
        assert services[name]["depends_on"]["topics"]["condition"] == (
            "service_completed_successfully"
        )


def test_compose_topics_service_creates_every_topic_with_the_workers_partition_count(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    script = services["topics"]["command"][0]
    roles = re.search(r"for t in ([a-z ]+); do", script)
    assert roles is not None
    env = services["worker-1"]["environment"]
    created = {f"{env['RISKMON_TOPIC_PREFIX']}.{r}" for r in roles.group(1).split()}
    assert created == set(TopicNames(env["RISKMON_TOPIC_PREFIX"]).all)
    assert services["topics"]["environment"]["PARTITIONS"] == env["RISKMON_PARTITIONS"]
    assert '--partitions "$$PARTITIONS"' in script


def test_compose_grafana_provisions_the_datasource_and_the_dashboard(
    compose: dict[str, Any], dashboard: dict[str, Any]
) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    prov = DEPLOY / "grafana" / "provisioning"
    provider = yaml.safe_load((prov / "dashboards" / "riskmon.yml").read_text())["providers"][0]
    dash_dir = provider["options"]["path"]
    assert mounts[f"{dash_dir}/riskmon.json"] == "./grafana/riskmon.json"
    source = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert source["type"] == "prometheus"
    assert source["uid"] == variable["current"]["value"]
    assert source["url"] == "http://prometheus:9090"


def test_dockerfile_is_slim_non_root_and_pinned() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", b) for b in bases)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and not users[-1].startswith(("root", "0"))
    assert "-r /tmp/requirements.txt" in text and "--no-deps ." in text


def test_requirements_pin_every_runtime_dependency() -> None:
    """deploy/requirements.txt pins (==) each of pyproject's runtime deps and the rocksdb extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["rocksdb"]
    pins = {}
    for line in (DEPLOY / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, ver = line.partition("==")
            assert ver, f"unpinned: {line}"
            pins[name.lower().replace("_", "-")] = ver
    for req in wanted:
        name = re.match(r"[A-Za-z0-9_.-]+", req)
        assert name is not None
        assert name.group(0).lower().replace("_", "-") in pins, req


# --- Kubernetes --------------------------------------------------------------------------------


def test_kustomize_renders_documents_that_validate(k8s_docs: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in k8s_docs)
    assert kinds == sorted(
        ["ConfigMap", "PodDisruptionBudget", "Service", "Service", "ServiceAccount", "StatefulSet"]
    )
    version = kubernetes_validate.latest_version()
    for doc in k8s_docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_validate_rejects_a_broken_document(k8s_docs: list[dict[str, Any]]) -> None:
    """The validation above can fail: an unknown field in the StatefulSet is rejected."""
    sts = json.loads(json.dumps(next(d for d in k8s_docs if d["kind"] == "StatefulSet")))
    sts["spec"]["replica"] = sts["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, kubernetes_validate.latest_version(), strict=True)


def test_statefulset_wiring(k8s_docs: list[dict[str, Any]]) -> None:
    """State volume, probes on the web port, scrape annotations, secret ref, resources, PDB."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in k8s_docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    (sts,) = by_kind["StatefulSet"]
    (config,) = by_kind["ConfigMap"]
    (pdb,) = by_kind["PodDisruptionBudget"]
    env = config["data"]
    pod = sts["spec"]["template"]
    (container,) = pod["spec"]["containers"]

    assert env["RISKMON_STORE"] == "rocksdb://"
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["RISKMON_DATA_DIR"].startswith(mounts[claim["metadata"]["name"]])

    port = int(env["RISKMON_WEB_PORT"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == port, probe
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port

    secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
    }
    assert {n: (s["name"], s["key"]) for n, s in secrets.items()} == {
        "RISKMON_SASL_USERNAME": ("riskmon-kafka-credentials", "username"),
        "RISKMON_SASL_PASSWORD": ("riskmon-kafka-credentials", "password"),
        "RISKMON_API_TOKEN": ("riskmon-api-token", "token"),  # the read API's bearer token
    }
    assert all(s["optional"] for s in secrets.values())
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True

    labels = pod["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    headless = next(s for s in by_kind["Service"] if s["spec"].get("clusterIP") == "None")
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["selector"].items() <= labels.items()
