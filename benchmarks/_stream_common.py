"""What the stream benchmarks share: the pre-produced simulator events, a ``riskmon worker``
timed over them from its /metrics, and the processes they start (always stopped by PID).

Not run on its own: ``bench_stream.py`` (throughput; what champion/challenger arms cost),
``bench_latency.py`` (event-to-alert under a paced load, the broker's floor) and
``bench_stream_memory.py`` (what the worker holds per customer) import it.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from scoring.artifact import default_scorecard_path
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.produce import Record
from streams.kafka.topics import TopicNames, create_topics
from streams.sim.simulate import SimConfig, Simulation
from tests.integration.workerproc import Deployment, WorkerProcess, parse_metrics

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
RecordsFor = Callable[[TopicNames], list[Record]]


# ----------------------------------------------------------------------------- events
def sim_records(n: int, months: int, seed: int, names: TopicNames) -> list[Record]:
    """The first ``n`` simulator messages (delivery noise included) of a book sized to give n."""
    customers = max(50, math.ceil(n / (7.5 * months)))
    sim = Simulation(SimConfig(customers=customers, months=months, seed=seed))
    return [(names.by_role(r.topic), r.key, r.value) for r in itertools.islice(sim.records(), n)]


class _Id(msgspec.Struct):
    event_id: Any = None


_id_decoder = msgspec.json.Decoder(_Id)


def event_id(value: bytes) -> str | None:
    try:
        eid = _id_decoder.decode(value).event_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return eid if isinstance(eid, str) else None


# ----------------------------------------------------------------------------- the riskmon worker
def progress_of(m: Samples) -> float:
    """Input events the worker has taken in: every outcome, plus the ones parked for a loan."""
    done = sum(v for (name, _), v in m.items() if name == "riskmon_events_total")
    return done + m.get(("riskmon_parked_events", ()), 0.0)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def run_full(
    dep: Deployment, name: str, n: int, profile: Path | None = None, settle_s: float = 6.0
) -> dict[str, Any]:
    """Start ``riskmon worker``, time it over the ``n`` pre-produced events, read its gauges
    (``settle_s`` after the last event: the state gauges are refreshed every 5 s)."""
    w = WorkerProcess(dep, name)
    spy: subprocess.Popen[bytes] | None = None
    try:
        w.start()
        m: Samples = {}
        while True:  # /metrics up, nothing consumed yet: the RSS baseline
            text = w.metrics_text()
            if text is not None:
                m = parse_metrics(text)
                break
            time.sleep(0.05)
        rss0 = rss_bytes(w.pid)
        if progress_of(m) > 0:
            print(f"  note: {name} consumed {progress_of(m):.0f} events before the RSS baseline")
        if profile is not None:
            spy = start_pyspy(w.pid, profile)
        t_first = c_first = cpu_first = 0.0
        t_last, c_last, cpu_last = 0.0, 0.0, 0.0
        deadline = time.monotonic() + 900
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            now = time.perf_counter()
            c = progress_of(w.metrics())
            if c > c_last:
                cpu = cpu_seconds(w.pid)
                if not t_first:
                    t_first, c_first, cpu_first = now, c, cpu
                t_last, c_last, cpu_last, idle_since = now, c, cpu, time.monotonic()
            if c_last >= n or (t_first and time.monotonic() - idle_since > 10):
                break
            time.sleep(0.05)
        if not t_first:
            raise RuntimeError(f"{name} processed nothing:\n{w.log_tail()}")
        if spy is not None:
            stop(spy, signal.SIGINT)
            spy = None
        rss1 = rss_bytes(w.pid)
        time.sleep(settle_s)
        m = w.metrics()
        customers = m.get(("riskmon_state_customers", ()), 0.0)
        state = m.get(("riskmon_state_bytes", ()), 0.0)
        rate = (c_last - c_first) / (t_last - t_first) if t_last > t_first else float("nan")
        out = {
            "events": c_last,
            "events_per_s": rate,
            # the worker's CPU time per event over the same window: less sensitive than its
            # rate to other load on a shared host (a busy host stretches wall time more)
            "cpu_us_per_event": 1e6 * (cpu_last - cpu_first) / (c_last - c_first)
            if c_last > c_first
            else float("nan"),
            "customers": customers,
            "bytes_per_customer": state / customers if customers else float("nan"),
            "rss_growth_per_customer": (rss1 - rss0) / customers if customers else float("nan"),
            "rss_mb": (rss0 / 1e6, rss1 / 1e6),
            "outcomes": by_label(m, "riskmon_events_total", "outcome"),
            "dead_letters": by_label(m, "riskmon_dead_letters_total", "reason"),
            "batch_mean": hist_mean(m, "riskmon_batch_size"),
            "batch_seconds_total": hist_sum(m, "riskmon_batch_seconds"),
            "kernel_seconds_total": hist_sum(m, "riskmon_kernel_seconds"),
            "phase_seconds": by_label(m, "riskmon_batch_phase_seconds_total", "phase"),
            "alerts": sum(v for (k, _), v in m.items() if k == "riskmon_alerts_total"),
            "models": models_of(m),
        }
        if c_last < n:
            print(f"  note: {name} stopped growing at {c_last:.0f} of {n} events")
        return out
    finally:
        if spy is not None:
            stop(spy, signal.SIGINT)
        w.stop()


def by_label(m: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, labels), v in m.items():
        if n == name:
            k = dict(labels).get(label, "")
            out[k] = out.get(k, 0.0) + v
    return out


def models_of(m: Samples) -> dict[str, Any]:
    """The cards a worker scored with, from its /metrics: each active arm (version, live or
    shadow), its share of customers and its rescorings, so a run is known to have had its arms."""
    return {
        "arms": [dict(lab) for (k, lab), v in m.items() if k == "riskmon_model_info" and v],
        "share_percent": by_label(m, "riskmon_model_share_percent", "arm"),
        "rescorings": by_label(m, "riskmon_arm_rescorings_total", "arm"),
    }


def hist_sum(m: Samples, name: str) -> float:
    return sum(v for (n, _), v in m.items() if n == f"{name}_sum")


def hist_mean(m: Samples, name: str) -> float:
    count = sum(v for (n, _), v in m.items() if n == f"{name}_count")
    return hist_sum(m, name) / count if count else float("nan")


# ----------------------------------------------------------------------------- processes
def start_pyspy(pid: int, out_dir: Path) -> subprocess.Popen[bytes]:
    out_dir.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    cmd = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
    cmd += ["--nonblocking", "--gil", "-o", str(out_dir / "worker.folded")]
    log = open(out_dir / "py-spy.log", "wb")  # noqa: SIM115 - closed by the child's exit
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def spawn_script(script: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Benchmark ``script`` in another process (its ``BENCH_MODE`` in ``env``), output to
    ``log_path``; the caller stops it by PID (``stop``)."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, script],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def deployment(broker: EmbeddedBroker, root: Path, prefix: str) -> Deployment:
    return Deployment(broker, default_scorecard_path(), root, PARTITIONS, prefix)


def other_group(dep: Deployment, suffix: str) -> Deployment:
    """Same topics, another consumer group and changelog: re-reads everything from offset 0."""
    from streams.kafka.app import TABLE

    other = copy.copy(dep)
    other.app_id = f"{dep.app_id}-{suffix}"
    create_topics(dep.settings, [f"{other.app_id}-{TABLE}-changelog"], dep.partitions)
    return other
