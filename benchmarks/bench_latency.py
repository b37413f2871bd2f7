"""Event-to-alert latency of the ``riskmon worker`` under a paced load, beside the broker's floor.

Part (4) of ``bench_stream.py``'s full run (its ``latency_ms`` in
``benchmarks/results/stream.json``), and runnable alone:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_latency.py --events 50000 --rate 5000 \\
        [--json OUT]

A fresh broker and worker; the simulator's events produced at ``--rate`` events/s in 10 ms
chunks. Each alert's broker timestamp minus the time its triggering event was handed to the
producer (alerts topic read back), split at the worker's ingest time (the alert's
``emitted_at``), beside the worker's own ingest-time histogram; then the broker's floor: the same
paced load on another fresh broker, read by a raw consumer process (this file, run with
``BENCH_MODE=floor``). Both by quarter of the run, because Tansu's memory storage slows down as
a partition fills with record batches (with riskmon's producer shipping a one-record batch per
topic-partition and flush, as it did until 2026-12, its fetches fell behind within ~10 s at
5k events/s). Every process started here is stopped by PID, also on error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from benchmarks._stream_common import (  # noqa: E402
    PARTITIONS,
    RecordsFor,
    Samples,
    deployment,
    event_id,
    progress_of,
    sim_records,
    spawn_script,
    stop,
    tail,
)
from schemas.codec import decode  # noqa: E402
from schemas.events import Alert, GradeChange  # noqa: E402
from streams.kafka.broker import EmbeddedBroker  # noqa: E402
from streams.kafka.connection import KafkaSettings  # noqa: E402
from streams.kafka.produce import Record, produce_records  # noqa: E402
from streams.kafka.topics import TopicNames  # noqa: E402
from tests.integration.workerproc import WorkerProcess  # noqa: E402


# ----------------------------------------------------------------------------- floor consumer
def floor_consumer_main() -> None:
    """The broker's own latency floor: a raw aiokafka consumer of the input topics (the
    worker's 10 ms fetch wait, no group) that writes each event id's receive time."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.kafka.consumer import FETCH_MAX_WAIT_MS

    names = TopicNames(os.environ["BENCH_PREFIX"])
    target, out = int(os.environ["BENCH_TARGET"]), Path(os.environ["BENCH_RESULT"])
    settings = KafkaSettings.from_env(os.environ["BENCH_BROKER"], environ={})

    async def consume() -> dict[str, float]:
        consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_partition_fetch_bytes=4_194_304,
            **settings.aiokafka_kwargs(),
        )
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in names.inputs for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            (out.parent / "floor.ready").touch()
            got: dict[str, float] = {}
            seen = 0
            while seen < target:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                now = time.time()
                for records in batches.values():
                    for r in records:
                        eid = event_id(r.value)
                        if eid is not None:
                            got.setdefault(eid, now)
                    seen += len(records)
            return got
        finally:
            await consumer.stop()

    out.write_text(json.dumps(asyncio.run(consume())))


# ----------------------------------------------------------------------------- paced load
class ChunkPacer:
    """``produce_records`` pacer: a flush every ``chunk`` records, on a ``rate`` schedule.

    Records the wall time each chunk was handed to the producer (its flush starts right after
    this call returns), so every event's send time is known to within that flush.
    """

    def __init__(self, rate: float, chunk: int) -> None:
        self.rate, self.chunk = rate, chunk
        self.n, self.t0 = 0, 0.0
        self.flushed: list[float] = []

    def __call__(self, rec: Record) -> float:
        now = time.perf_counter()
        if not self.t0:
            self.t0 = now
        i, self.n = self.n, self.n + 1
        if i and i % self.chunk == 0:
            self.flushed.append(time.time())
            return max(self.t0 + i / self.rate - now, 1e-6)  # > 0: always flush the chunk
        return 0.0


def paced_send_times(
    records: list[Record], settings: KafkaSettings, rate: float
) -> tuple[dict[str, float], float]:
    """Produce ``records`` at ``rate``; each event id's send time (its chunk's flush) and the
    achieved rate."""
    pacer = ChunkPacer(rate, chunk=max(1, int(rate / 100)))  # 10 ms ticks
    t0 = time.perf_counter()
    produce_records(settings, records, pace=pacer)
    achieved = len(records) / (time.perf_counter() - t0)
    end = time.time()
    sent: dict[str, float] = {}
    for i, (_t, _k, value) in enumerate(records):
        eid = event_id(value)
        k = i // pacer.chunk
        if eid is not None and eid not in sent:
            sent[eid] = pacer.flushed[k] if k < len(pacer.flushed) else end
    return sent, achieved


def run_latency(root: Path, records_for: RecordsFor, rate: float) -> dict[str, Any]:
    """Paced load on its own fresh broker + worker; event-to-alert from the alerts topic,
    split at the worker's ingest time (the alert's ``emitted_at``): before it, the broker, the
    fetch and the wait for the worker's event loop; after it, riskmon's batch and send."""
    with EmbeddedBroker() as broker:
        dep = deployment(broker, root, "benchlat")
        records = records_for(dep.names)
        w = WorkerProcess(dep, "paced")
        try:
            w.start().wait_ready(timeout=120)
            sent, achieved = paced_send_times(records, dep.settings, rate)
            deadline = time.monotonic() + 120
            while progress_of(w.metrics()) < len(records) and time.monotonic() < deadline:
                time.sleep(0.25)
            m = w.metrics()
        finally:
            w.stop()
        lat: dict[str, list[float]] = {"alerts": [], "grades": []}
        split: dict[str, list[float]] = {"to_ingest": [], "in_worker": []}
        at: list[float] = []  # each alert's send time, for the windows
        for role in ("alerts", "grades"):
            for r in dep.read(role):
                rec = decode(r.value, Alert) if role == "alerts" else decode(r.value, GradeChange)
                t = sent.get(rec.trigger_event_id)
                if t is None:
                    continue
                stamp = r.timestamp / 1000.0
                lat[role].append(stamp - t)
                if isinstance(rec, Alert):
                    ingest = rec.emitted_at.timestamp()
                    split["to_ingest"].append(ingest - t)
                    split["in_worker"].append(stamp - ingest)
                    at.append(t)
    out: dict[str, Any] = {
        "events": len(records),
        "achieved_rate": achieved,
        "worker_ingest_p50_ms": 1e3
        * hist_quantile(m, "riskmon_event_to_alert_seconds", 0.5, clock="ingest_time"),
        "worker_ingest_p99_ms": 1e3
        * hist_quantile(m, "riskmon_event_to_alert_seconds", 0.99, clock="ingest_time"),
        "windows": _windows(at, lat["alerts"], min(sent.values(), default=0.0)),
    }
    for role, xs in (*lat.items(), *split.items()):
        out[role] = {"n": len(xs), **_quantiles_ms(xs)}
    return out


def run_floor(root: Path, records_for: RecordsFor, rate: float) -> dict[str, Any]:
    """The same paced load on its own fresh broker, read by a raw consumer process (no
    riskmon): send-to-receive per event, the broker's own latency floor."""
    with EmbeddedBroker() as broker:
        dep = deployment(broker, root, "benchfloor")
        records = records_for(dep.names)
        result = root / "floor" / "received.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "BENCH_MODE": "floor",
            "BENCH_PREFIX": dep.prefix,
            "BENCH_BROKER": broker.url,
            "BENCH_TARGET": str(len(records)),
            "BENCH_RESULT": str(result),
            "PYTHONPATH": str(REPO),
        }
        log_path = root / "floor" / "consumer.log"
        proc = spawn_script(__file__, env, log_path)
        try:
            deadline = time.monotonic() + 60
            while not (result.parent / "floor.ready").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"floor consumer did not start:\n{tail(log_path)}")
                time.sleep(0.05)
            sent, achieved = paced_send_times(records, dep.settings, rate)
            proc.wait(timeout=120)
            got: dict[str, float] = json.loads(result.read_text())
        finally:
            stop(proc)
    pairs = [(t, got[e] - t) for e, t in sent.items() if e in got]
    return {
        "events": len(records),
        "achieved_rate": achieved,
        "received": {"n": len(pairs), **_quantiles_ms([d for _t, d in pairs])},
        "windows": _windows(
            [t for t, _d in pairs], [d for _t, d in pairs], min(sent.values(), default=0.0)
        ),
    }


def _windows(at: list[float], xs: list[float], t0: float, n: int = 4) -> list[dict[str, Any]]:
    """Quantiles of ``xs`` over ``n`` equal spans of send time ``at``: does latency grow as
    the broker's partitions fill?"""
    if not at:
        return []
    span = (max(at) - t0) / n or 1.0
    groups: list[list[float]] = [[] for _ in range(n)]
    for t, x in zip(at, xs, strict=True):
        groups[min(n - 1, int((t - t0) / span))].append(x)
    return [
        {"from_s": round(i * span, 1), "n": len(g)}
        | {k: round(v, 1) for k, v in _quantiles_ms(g).items()}
        for i, g in enumerate(groups)
        if g
    ]


def _quantiles_ms(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    s = sorted(xs)

    def q(p: float) -> float:
        return 1e3 * s[min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))]

    return {"p50": q(0.5), "p99": q(0.99), "max": 1e3 * s[-1]}


def hist_quantile(m: Samples, name: str, q: float, **labels: str) -> float:
    """Prometheus ``histogram_quantile``: linear inside the bucket holding rank q."""
    want = set(labels.items())
    buckets = sorted(
        (float(dict(lab)["le"]), v)
        for (n, lab), v in m.items()
        if n == f"{name}_bucket" and want <= set(lab)
    )
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lo_le, lo_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                return lo_le
            return lo_le + (le - lo_le) * (rank - lo_c) / (c - lo_c) if c > lo_c else le
        lo_le, lo_c = le, c
    return float("nan")


# ----------------------------------------------------------------------------- run and report
def run_both(events: int, months: int, rate: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The worker's event-to-alert, then the broker's floor, each on a broker of its own
    (Tansu's fetches slow down as a partition fills); the same ``events`` simulator records."""

    def paced(names: TopicNames) -> list[Record]:
        return sim_records(events, months, 11, names)

    with tempfile.TemporaryDirectory() as tmpdir:
        return run_latency(Path(tmpdir), paced, rate), run_floor(Path(tmpdir), paced, rate)


def report(lat: dict[str, Any], floor: dict[str, Any]) -> list[str]:
    """The printed lines: event-to-alert, its split at ingest, the floor, by quarter."""
    a, g = lat["alerts"], lat["grades"]
    ti, iw, fr = lat["to_ingest"], lat["in_worker"], floor["received"]
    lines = [
        f"paced {lat['events']:,} events at {lat['achieved_rate']:,.0f} ev/s: event-to-alert "
        f"p50 {a['p50']:.1f} ms, p99 {a['p99']:.1f} ms, max {a['max']:.1f} ms over "
        f"{a['n']} alerts; grade changes p50 {g['p50']:.1f} / p99 {g['p99']:.1f} ms over {g['n']}",
        f"  split at the worker's ingest: send -> ingest p50 {ti['p50']:.1f} / p99 "
        f"{ti['p99']:.1f} ms, ingest -> alert on the topic p50 {iw['p50']:.1f} / p99 "
        f"{iw['p99']:.1f} ms (worker's ingest-time histogram: p50 "
        f"{lat['worker_ingest_p50_ms']:.1f} / p99 {lat['worker_ingest_p99_ms']:.1f} ms)",
        f"  broker floor (same paced load, raw consumer, no riskmon): send -> receive p50 "
        f"{fr['p50']:.1f} / p99 {fr['p99']:.1f} ms over {fr['n']:,} events",
    ]
    for label, run in (("event-to-alert", lat), ("broker floor", floor)):
        w = ", ".join(f"{x['from_s']:g} s: {x['p50']:.0f}/{x['p99']:.0f}" for x in run["windows"])
        lines.append(f"  {label} p50/p99 ms by send time: {w}")
    return lines


def as_json(lat: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    """The ``latency_ms`` section of ``stream.json``."""
    a = lat["alerts"]
    return {
        "p50": round(a["p50"], 1),
        "p99": round(a["p99"], 1),
        "max": round(a["max"], 1),
        "alerts": a["n"],
        "rate": round(lat["achieved_rate"]),
        "grade_changes": {k: round(v, 1) for k, v in lat["grades"].items()},
        "worker_ingest_histogram": {
            "p50": round(lat["worker_ingest_p50_ms"], 1),
            "p99": round(lat["worker_ingest_p99_ms"], 1),
        },
        "send_to_ingest": {k: round(v, 1) for k, v in lat["to_ingest"].items()},
        "ingest_to_alert": {k: round(v, 1) for k, v in lat["in_worker"].items()},
        "windows": lat["windows"],
        "broker_floor": {
            **{k: round(v, 1) for k, v in floor["received"].items()},
            "rate": round(floor["achieved_rate"]),
            "windows": floor["windows"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=12, help="simulated history per customer")
    parser.add_argument("--rate", type=float, default=5_000.0, help="paced load, events/s")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    lat, floor = run_both(args.events, args.months, args.rate)
    print("\n".join(report(lat, floor)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {"events": lat["events"], "months": args.months, "latency_ms": as_json(lat, floor)}
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    if os.environ.get("BENCH_MODE") == "floor":
        floor_consumer_main()
    else:
        # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so every finally stops its process by PID
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        main()
