"""A real Prometheus on loopback for tests, and PromQL evaluation of the dashboard and the rules.

Debian's ``prometheus`` package gives the server and ``promtool`` (docs/architecture.md). The server
runs with its own config and data directory, ``--web.enable-lifecycle`` so ``POST /-/quit`` stops
it; if it does not exit in time it is killed by PID. ``evaluate_all`` runs every Grafana panel query
of ``deploy/grafana/riskmon.json`` and every rule expression Prometheus loaded through the HTTP API:
the integration tests use it to prove the expressions parse and return data on real series.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.errors import InputError
from streams.kafka.broker import free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "riskmon.json"
RULES = REPO / "deploy" / "prometheus" / "rules.yml"

# Values for the Grafana variables used in panel queries when they run outside Grafana.
DEFAULT_VARIABLES = {"job": "riskmon", "__rate_interval": "1m", "__interval": "15s"}


class PromQueryError(RuntimeError):
    """Prometheus answered a query with an error (bad PromQL, unknown function, ...)."""


def find_tool(name: str) -> str:
    """Path of ``prometheus`` or ``promtool`` on PATH, or an :class:`InputError` saying how."""
    path = shutil.which(name)
    if path is None:
        raise InputError(f"{name} not found on PATH: apt-get install prometheus")
    return path


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``promtool ARGS`` and return the finished process (the caller checks returncode)."""
    return subprocess.run(
        [find_tool("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def _get(url: str, timeout: float = 10.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error in their body
        body = json.loads(exc.read() or b"{}")
        raise PromQueryError(f"{body.get('errorType', exc.code)}: {body.get('error', '')}") from exc


def query(prom_url: str, expr: str) -> list[dict[str, Any]]:
    """Instant query; returns the result vector (a scalar becomes one sample without labels)."""
    url = f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = _get(url)
    if body.get("status") != "success":
        raise PromQueryError(f"{body.get('errorType')}: {body.get('error')}")
    data = body["data"]
    if data["resultType"] == "vector":
        return list(data["result"])
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    raise PromQueryError(f"unexpected result type {data['resultType']} for {expr!r}")


def loaded_rules(prom_url: str) -> list[dict[str, Any]]:
    """The rules Prometheus loaded (``/api/v1/rules``), with their health and last error."""
    body = _get(f"{prom_url}/api/v1/rules")
    return [rule for group in body["data"]["groups"] for rule in group["rules"]]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana ``$name`` / ``${name}`` variables; an unknown variable is an error."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise InputError(f"no value for dashboard variable ${name} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def panel_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """``"panel: <title> [<refId>]" -> expr`` for every Prometheus target of every panel."""
    out: dict[str, str] = {}
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))  # panels of collapsed rows
        for target in panel.get("targets", []):
            if "expr" in target:
                out[f"panel: {panel['title']} [{target.get('refId', '?')}]"] = target["expr"]
    return out


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One expression evaluated: its PromQL, the samples (label set -> value) or the error."""

    expr: str
    samples: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def has_data(self) -> bool:
        return self.error is None and bool(self.samples)


def _label_key(metric: dict[str, str]) -> str:
    return "{" + ",".join(f"{k}={v}" for k, v in sorted(metric.items())) + "}"


def evaluate(prom_url: str, expr: str) -> Evaluation:
    """Run one expression; a PromQL error is captured in the result, not raised."""
    try:
        result = query(prom_url, expr)
    except PromQueryError as exc:
        return Evaluation(expr, error=str(exc))
    return Evaluation(expr, {_label_key(s["metric"]): float(s["value"][1]) for s in result})


def evaluate_all(
    prom_url: str,
    *,
    dashboard_path: Path = DASHBOARD,
    variables: dict[str, str] | None = None,
) -> dict[str, Evaluation]:
    """Evaluate every dashboard panel query and every loaded rule expression, now.

    Keys are ``"panel: <title> [<refId>]"`` and ``"rule: <name>"``. Rules come from the running
    Prometheus (so they are the ones it actually loaded); a rule Prometheus reports unhealthy
    carries its ``lastError`` as the error. Panel variables get ``DEFAULT_VARIABLES`` unless given.
    """
    values = {**DEFAULT_VARIABLES, **(variables or {})}
    dashboard = json.loads(dashboard_path.read_text())
    results = {
        key: evaluate(prom_url, substitute(expr, values))
        for key, expr in panel_queries(dashboard).items()
    }
    for rule in loaded_rules(prom_url):
        ev = evaluate(prom_url, rule["query"])
        if ev.error is None and rule.get("health") == "err":
            ev = Evaluation(ev.expr, ev.samples, f"rule health: {rule.get('lastError')}")
        results[f"rule: {rule['name']}"] = ev
    return results


@dataclass
class PrometheusServer:
    """A Prometheus process on loopback with its own config and data dir; stop() by PID."""

    config: Path
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "prometheus not started"
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        """Start and wait until ``/-/ready`` answers."""
        if self.port == 0:
            self.port = free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        check = promtool("check", "config", self.config)
        if check.returncode != 0:
            raise InputError(f"bad Prometheus config {self.config}: {check.stdout}{check.stderr}")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                find_tool("prometheus"),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address={self.host}:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            raise RuntimeError(f"Prometheus did not listen on {self.url} within {timeout}s")
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Prometheus at {self.url} not ready within {timeout}s")

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns a non-empty result (e.g. ``up{job="riskmon"} == 1``)."""
        deadline = time.monotonic() + timeout
        while True:
            result = query(self.url, expr)
            if result or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if not result:
            raise TimeoutError(f"{expr!r} returned nothing within {timeout}s")
        return result

    def stop(self, timeout: float = 10.0) -> None:
        """``POST /-/quit``; if the process is still alive after ``timeout``, SIGKILL its PID."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            req = urllib.request.Request(f"{self.url}/-/quit", method="POST")
            urllib.request.urlopen(req, timeout=2).close()
            self.proc.wait(timeout=timeout)
        except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=timeout)

    def __enter__(self) -> PrometheusServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
