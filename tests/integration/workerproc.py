"""Run real ``riskmon worker`` processes in integration tests, and talk to them over HTTP/Kafka.

``WorkerProcess`` starts ``riskmon worker`` as a subprocess (own session, free web port, log file)
and stops it by PID: SIGTERM, then SIGKILL. ``Deployment`` is one isolated riskmon installation on
the shared test broker: a unique topic prefix and app id (so the consumer group and changelog are
fresh), all six topics plus the table changelog created with the same partition count.
``read_topic`` reads an output topic to its true end (Tansu's end offsets are wrong,
docs/architecture.md: the end is where fetches come back empty).
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams.kafka.app import TABLE
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.connection import KafkaSettings
from streams.kafka.produce import produce_records
from streams.kafka.topics import TopicNames, create_topics

REPO = Path(__file__).resolve().parents[2]
RISKMON = str(Path(sys.executable).with_name("riskmon"))


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``check`` every 0.25 s; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_get(
    url: str,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
    cafile: str | None = None,
) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors are returned, connection errors raised. ``cafile``:
    the CA (or self-signed certificate) an https URL is verified against."""
    request = urllib.request.Request(url, headers=headers or {})
    context = ssl.create_default_context(cafile=cafile) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> ``{(sample name, sorted labels): value}``."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


@dataclass
class Deployment:
    """One isolated riskmon install on the shared broker: fresh prefix, app id, topics."""

    broker: EmbeddedBroker
    scorecard: Path
    root: Path
    partitions: int = 2
    prefix: str = field(default_factory=lambda: f"it{uuid.uuid4().hex[:10]}")

    def __post_init__(self) -> None:
        self.app_id = f"{self.prefix}-app"
        self.names = TopicNames(self.prefix)
        self.settings = KafkaSettings.from_env(self.broker.url, environ={})
        changelog = f"{self.app_id}-{TABLE}-changelog"
        create_topics(self.settings, [*self.names.all, changelog], self.partitions)

    def produce(self, events: Iterable[tuple[str, bytes | None, bytes]]) -> None:
        """Send ``(role, key, value)`` events (role: loans / repayments / transactions)."""
        produce_records(self.settings, [(self.names.by_role(r), k, v) for r, k, v in events])

    def produce_raw(self, events: Iterable[tuple[str, bytes | None, bytes]]) -> None:
        """Send ``(topic name, key, value)`` records as they are."""
        produce_records(self.settings, list(events))

    def read(self, role: str, idle_polls: int = 3) -> list[Any]:
        """Every record of an output/input topic, oldest first per partition."""
        return read_topic(self.settings, self.names.by_role(role), idle_polls)


def read_topic(settings: KafkaSettings, topic: str, idle_polls: int = 3) -> list[Any]:
    """All records of ``topic`` from the beginning until ``idle_polls`` empty fetches in a row."""
    consumer = KafkaConsumer(
        enable_auto_commit=False, auto_offset_reset="earliest", **settings.kafka_python_kwargs()
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        empty = 0
        while empty < idle_polls:
            got = consumer.poll(timeout_ms=400)
            empty = 0 if got else empty + 1
            for batch in got.values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


@dataclass
class WorkerProcess:
    """One ``riskmon worker`` subprocess of a :class:`Deployment`, stopped by PID."""

    dep: Deployment
    name: str
    log: Path = field(init=False)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    store: str = "memory://"

    def __post_init__(self) -> None:
        self.log = self.dep.root / f"{self.name}.log"

    @property
    def url(self) -> str:
        scheme = "https" if "RISKMON_WEB_TLS_CERT" in self.extra_env else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _http(self, path: str, timeout: float, auth: bool = True) -> tuple[int, bytes]:
        """GET ``path`` with the worker's token (if it has one and ``auth``) and its certificate."""
        token = self.extra_env.get("RISKMON_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token and auth else {}
        cafile = self.extra_env.get("RISKMON_WEB_TLS_CERT")
        return http_get(self.url + path, timeout, headers, cafile)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "worker not started"
        return self.proc.pid

    def start(self) -> WorkerProcess:
        """Start on a fresh free port (a restart gets a new one too)."""
        self.port = free_port()
        dep = self.dep
        cmd = [
            RISKMON, "worker",
            "--broker", dep.broker.url,
            "--partitions", str(dep.partitions),
            "--scorecard", str(dep.scorecard),
            "--web-host", "127.0.0.1",
            "--web-port", str(self.port),
            "--data-dir", str(dep.root / f"data-{self.name}"),
            "--app-id", dep.app_id,
            "--topic-prefix", dep.prefix,
            "--store", self.store,
            "--session-timeout", "6",
            "--loglevel", "info",
        ]  # fmt: skip
        # flags and extra_env only: no RISKMON_* setting leaks in from the caller
        env = {k: v for k, v in os.environ.items() if not k.startswith("RISKMON_")}
        env.update(self.extra_env)
        with open(self.log, "ab") as out:
            out.write(f"\n=== start {self.name} port {self.port}\n".encode())
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _check_alive(self) -> None:
        if not self.alive():
            rc = None if self.proc is None else self.proc.returncode
            raise AssertionError(f"worker {self.name} died (rc {rc}):\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        self._check_alive()
        return self._http(path, timeout)

    def metrics_text(self) -> str | None:
        """``GET /metrics`` body, or None while the web server is not up yet."""
        self._check_alive()
        try:
            status, body = self._http("/metrics", timeout=5)
        except OSError:
            return None
        return body.decode() if status == 200 else None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = self.metrics_text()
        assert text is not None, f"/metrics of {self.name} not answering"
        return parse_metrics(text)

    def metric_sum(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        return sum(
            v
            for (n, lab), v in self.metrics().items()
            if n == name and all((k, val) in lab for k, val in labels.items())
        )

    def customer(self, cid: str) -> tuple[int, dict[str, Any]]:
        status, body = self.get(f"/customers/{cid}")
        return status, json.loads(body) if body else {}

    def assigned(self) -> set[int] | None:
        """Input partitions in this worker's latest assignment (from Faust's info log)."""
        text = self.log.read_text(errors="replace")
        return _assignment_from_log(text[text.rfind("=== start") :], self.dep.names.inputs)

    def wait_ready(self, timeout: float = 90.0, partitions: bool = True) -> WorkerProcess:
        """Until /metrics answers and (optionally) the consumer holds an input assignment."""

        def ready() -> bool:
            if self.metrics_text() is None:
                return False
            return not partitions or bool(self.assigned())

        wait_until(f"worker {self.name} ready", ready, timeout)
        return self

    def kill(self) -> None:
        """SIGKILL by PID: no shutdown, nothing flushed or committed."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM by PID, SIGKILL if it has not exited within ``timeout``."""
        if not self.alive():
            return
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


_ASSIGNED = "Setting newly assigned partitions"
_ROW = re.compile(r"^\|\s*(\S+)\s*\|\s*\{([^}]*)\}\s*\|", re.MULTILINE)


def _partition_set(spec: str) -> set[int]:
    """Faust's ``{0-1}`` / ``{0, 2}`` / ``{1, 3-5}`` -> a set of ints."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _assignment_from_log(text: str, inputs: Iterable[str]) -> set[int] | None:
    """Input partitions of the last assignment table Faust logged (None: none logged yet).

    Only counts once Faust also logged "Worker ready" after it (recovery done, fetcher on).
    """
    at = text.rfind(_ASSIGNED)
    if at < 0 or "Worker ready" not in text[at:]:
        return None
    table = text[at : text.find("for group", at)]
    topics = set(inputs)
    found: set[int] = set()
    for topic, spec in _ROW.findall(table):
        if topic in topics:
            found |= _partition_set(spec)
    return found
