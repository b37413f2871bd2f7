"""`riskmon demo`: the whole product on one machine.

Simulate a seeded SME book -> start the embedded broker, create the topics -> start N
``riskmon worker`` processes -> stream the book at accelerated event time, showing live progress
(events/s, alerts, dead letters, lag) -> build the early-warning report against the simulator's
ground truth from what the stream produced: the alerts topic and the rescorings the workers
logged (``--rescorings-dir``) -> stop everything. With ``--verify``, also run the same pure
pipeline over the same events (the backtest) and check that the streamed alerts equal the
backtest's. With ``keep_running`` the broker and workers stay up after the report until Ctrl-C
or SIGTERM, for what a user tries next on a loaded book: publish a card, read the queue.

Every process started here is stopped by PID in a ``finally``, on Ctrl-C too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from schemas.codec import decode
from schemas.events import Alert
from scoring import artifact
from scoring.artifact import default_scorecard_path
from scoring.compiled import CompiledScorecard
from streams.core import policy_file
from streams.core.policy_file import Policy
from streams.core.rescorings import read_logs
from streams.evaluation.backtest import backtest
from streams.evaluation.report import Rescorings, RunStats, Truth, build_report
from streams.evaluation.report_render import render_summary, write_report
from streams.kafka.broker import EmbeddedBroker, free_port, wait_for_port
from streams.kafka.connection import KafkaSettings
from streams.kafka.produce import produce_records, routed
from streams.kafka.topics import TopicNames, create_topics
from streams.sim.simulate import SimConfig, Simulation, records_from_lines, write_jsonl, write_truth


@dataclass
class DemoOptions:
    customers: int = 20_000
    months: int = 12
    seed: int = 1
    workers: int = 2  # one per core of the 2-core reference machine
    partitions: int = 4
    play_seconds: float = 75.0  # the book streams in about this long (event time is paced)
    speed: float | None = (
        None  # event seconds per wall second; overrides play_seconds; 0 = no pacing
    )
    lateness_days: float = 14.0  # accelerated time compresses topic lag: 1 s wall = days of events
    # the report's horizon: warm-up (60 d) + horizon within the 12-month book, so not censored
    horizon_days: float = 180.0
    report_dir: Path = Path("report")
    scorecard: Path = field(default_factory=default_scorecard_path)
    timeout_s: float = 900.0
    verify: bool = False  # also backtest the book and compare its alerts with the stream's
    policy: Path | None = None  # the policy file of the workers and the backtest
    keep_running: bool = False  # after the report, serve until Ctrl-C / SIGTERM
    broker_port: int = 0  # 0: any free port
    web_port: int = 0  # worker i serves on web_port + i; 0: any free ports

    def effective_policy(self) -> Policy:
        """The policy file's settings with this demo's lateness bound (the workers' too)."""
        p = policy_file.load(self.policy)
        state = dataclasses.replace(p.state, lateness_days=self.lateness_days)
        return dataclasses.replace(p, state=state)


#: Seconds a demo worker may take to open its web port. The first start on a machine compiles
#: the numba kernels, which takes about a minute on a 2-core machine beside the demo's broker and
#: simulator; later starts load them from numba's cache in seconds.
WORKER_START_S = 300.0


def _wait_started(w: WorkerProc, echo: Callable[[str], None]) -> None:
    """Until ``w`` answers on its web port; a clear error if it exits or never does."""
    start = time.monotonic()
    told = False
    while not wait_for_port("127.0.0.1", w.port, 1.0):
        waited = time.monotonic() - start
        if w.proc is not None and w.proc.poll() is not None:
            raise RuntimeError(f"worker {w.index} exited ({w.proc.returncode}): see {w.log}")
        if waited > WORKER_START_S:
            raise RuntimeError(f"worker {w.index} did not start in {waited:.0f} s: see {w.log}")
        if not told and waited > 10:
            echo("compiling the scoring kernels (first start only; cached for the next ones)...")
            told = True


@dataclass
class WorkerProc:
    """One ``riskmon worker`` subprocess, stopped by PID."""

    index: int
    broker: str
    scorecard: Path
    partitions: int
    data_dir: Path
    log: Path
    lateness_days: float = 7.0
    policy: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProc:
        cmd = [
            sys.executable, "-m", "streams.cli", "worker",
            "--broker", self.broker, "--partitions", str(self.partitions),
            "--scorecard", str(self.scorecard), "--web-port", str(self.port),
            "--data-dir", str(self.data_dir / f"w{self.index}"), "--app-id", "riskmon-demo",
            "--lateness-days", str(self.lateness_days),
            "--rescorings-dir", str(self.data_dir),
            "--event-clock", "stream",  # simulated history, played faster than time runs
        ]  # fmt: skip
        if self.policy is not None:
            cmd += ["--policy", str(self.policy)]
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # our Ctrl-C handler stops it, by PID
        )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> dict[str, float]:
        """Flattened samples of /metrics (name{labels} -> value); {} if not answering."""
        try:
            with urllib.request.urlopen(self.url + "/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
        return out

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)


def _sum(samples: dict[str, float], name: str, **match: str) -> float:
    total = 0.0
    for key, v in samples.items():
        n, _, labels = key.partition("{")
        if n == name and all(f"{k}={val}" in labels for k, val in match.items()):
            total += v
    return total


def _histogram_quantile(
    samples: list[dict[str, float]], name: str, q: float, **match: str
) -> float:
    """Quantile (linear within bucket) of a histogram summed over workers; NaN if empty."""
    buckets: dict[float, float] = {}
    for s in samples:
        for key, v in s.items():
            n, _, labels = key.partition("{")
            if n != f"{name}_bucket" or not all(f"{k}={x}" in labels for k, x in match.items()):
                continue
            le = labels.split("le=")[1].split(",")[0].rstrip("}")
            b = float("inf") if le in ("+Inf", "inf") else float(le)
            buckets[b] = buckets.get(b, 0.0) + v
    if not buckets:
        return float("nan")
    edges = sorted(buckets)
    total = buckets[edges[-1]]
    if total <= 0:
        return float("nan")
    rank, prev_edge, prev_count = q * total, 0.0, 0.0
    for e in edges:
        c = buckets[e]
        if c >= rank:
            if e == float("inf"):
                return prev_edge
            return prev_edge + (e - prev_edge) * (rank - prev_count) / max(c - prev_count, 1e-12)
        prev_edge, prev_count = e, c
    return prev_edge


class Pacer:
    """Event-time pacing for ``produce_records(..., pace=...)``: event time runs ``speed`` times
    wall time from ``start`` on (earlier events, e.g. old contracts, go at once). The producer
    flushes its open batches before each sleep, so paced records really leave on time."""

    def __init__(self, speed: float, start: float | None) -> None:
        self.speed = speed
        self.start = start  # None: the first record's event time
        self.high = -math.inf  # newest event time produced so far
        self.t0 = time.monotonic()
        self.produced = 0

    def tap(self, recs: Iterator[Any]) -> Iterator[tuple[str, bytes | None, bytes]]:
        """Yield (role, key, value), remembering each record's event time for :meth:`delay`."""
        for r in recs:
            if self.start is None:
                self.start = r.event_time
            if r.event_time > self.high:
                self.high = r.event_time
            self.produced += 1
            yield r.topic, r.key, r.value

    def delay(self, _record: Any) -> float:
        if self.speed <= 0 or self.start is None:
            return 0.0
        ahead = (max(self.high, self.start) - self.start) / self.speed - (
            time.monotonic() - self.t0
        )
        return ahead if ahead > 0.02 else 0.0


def _produce_thread(
    settings: KafkaSettings,
    names: TopicNames,
    events: Path,
    pacer: Pacer,
    stats: dict[str, Any],
    caught_up: Callable[[], bool],
) -> threading.Thread:
    """Produce the book: first the back-dated records (running contracts and their past
    payments, all before the book start) at once, wait until the workers have consumed them,
    then the rest paced by event time. Without the wait, a worker could see a customer's first
    account movements before the contract they belong to (the topics are not ordered relative
    to each other) and reject the contract as too late."""

    def run() -> None:
        try:
            with events.open("rb") as fh:
                # route like `riskmon produce` and the backtest: unroutable lines -> transactions
                recs = routed(pacer.tap(records_from_lines(fh)))
                start = pacer.start if pacer.start is not None else math.inf
                head: list[tuple[str, bytes | None, bytes]] = []
                rest: Iterator[tuple[str, bytes | None, bytes]] = iter(())
                for rec in recs:
                    head.append(rec)
                    if pacer.high >= start:
                        rest = itertools.chain([head.pop()], recs)
                        break
                produce_records(settings, [(names.by_role(t), k, v) for t, k, v in head])
                while not caught_up():
                    time.sleep(0.2)
                pacer.t0 = time.monotonic()
                paced = ((names.by_role(t), k, v) for t, k, v in rest)
                produce_records(settings, paced, pace=pacer.delay)
        except Exception as exc:  # surfaced by the main loop
            stats["error"] = exc
        finally:
            stats["done"] = True

    t = threading.Thread(target=run, name="riskmon-demo-producer", daemon=True)
    t.start()
    return t


def _read_alerts(settings: KafkaSettings, topic: str, expect_at_least: int) -> list[Alert]:
    """Every record on the alerts topic (read to the end; Tansu end offsets are approximate)."""

    async def run() -> list[Alert]:
        from aiokafka import AIOKafkaConsumer

        c = AIOKafkaConsumer(
            topic, auto_offset_reset="earliest", enable_auto_commit=False,
            **settings.aiokafka_kwargs(),
        )  # fmt: skip
        await c.start()
        out: list[Alert] = []
        idle = 0
        try:
            while idle < 3:
                batch = await c.getmany(timeout_ms=1000, max_records=50_000)
                got = [decode(m.value, Alert) for recs in batch.values() for m in recs]
                out.extend(got)
                idle = 0 if got or len(out) < expect_at_least else idle + 1
        finally:
            await c.stop()
        return out

    return asyncio.run(run())


def _strip(a: Alert) -> tuple[Any, ...]:
    """An alert without emitted_at (the only field allowed to differ between runs)."""
    import msgspec

    d = msgspec.to_builtins(a)
    d.pop("emitted_at")
    return tuple(sorted((k, repr(v)) for k, v in d.items()))


def run_demo(opts: DemoOptions, echo: Any = None) -> dict[str, Any]:
    """Run the demo; returns the report dict (also written to ``opts.report_dir``)."""
    if echo is None:
        import click

        echo = click.echo
    card = artifact.load(opts.scorecard)
    opts.report_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="riskmon-demo-"))
    events, truth_csv = work / "events.jsonl", opts.report_dir / "truth.csv"
    t_sim = time.monotonic()
    sim = Simulation(SimConfig(customers=opts.customers, months=opts.months, seed=opts.seed))
    with events.open("wb") as fh:
        n_events = write_jsonl(sim.records(), fh)
    truth_rows = sim.truth()
    write_truth(truth_rows, truth_csv)
    echo(
        f"simulated {opts.customers:,} customers x {opts.months} months: {n_events:,} messages "
        f"({sim.counts['duplicates']:,} duplicates, {sim.counts['late']:,} late, "
        f"{sim.counts['malformed']:,} malformed) in {time.monotonic() - t_sim:.1f}s"
    )
    broker = EmbeddedBroker(port=opts.broker_port, log_path=work / "tansu.log")
    workers: list[WorkerProc] = []
    stats: dict[str, Any] = {"done": False}
    pacer = Pacer(0.0, 0.0)
    names = TopicNames()
    streamed_ok = False
    try:
        broker.start()
        settings = KafkaSettings(bootstrap=(broker.url,))
        create_topics(settings, names, opts.partitions)
        for i in range(opts.workers):
            workers.append(
                WorkerProc(
                    i,
                    broker.url,
                    opts.scorecard,
                    opts.partitions,
                    work,
                    work / f"w{i}.log",
                    opts.lateness_days,
                    opts.policy,
                    port=opts.web_port + i if opts.web_port else free_port(),
                )
            )
            workers[-1].start()
        for w in workers:
            _wait_started(w, echo)
        echo(f"broker {broker.url} (pid {broker.pid}); workers: " + ", ".join(
            f"{w.url}/metrics (pid {w.proc.pid if w.proc else '?'})" for w in workers
        ))  # fmt: skip
        t_stream = time.monotonic()
        speed = opts.speed
        if speed is None:
            speed = (sim.end_epoch_s - _epoch(sim)) / opts.play_seconds
        pacer = Pacer(speed, _epoch(sim))
        progress = {"consumed": 0.0}

        def caught_up() -> bool:
            return progress["consumed"] >= pacer.produced - 1

        _produce_thread(settings, names, events, pacer, stats, caught_up)
        last = (t_stream, 0.0)
        first_done: float | None = None
        done_at: float | None = None
        samples: list[dict[str, float]] = []
        while True:
            time.sleep(1.0)
            samples = [w.metrics() for w in workers]
            consumed = sum(_sum(s, "riskmon_events_total") for s in samples)
            parked = sum(_sum(s, "riskmon_parked_events") for s in samples)
            progress["consumed"] = consumed + parked
            alerts = sum(_sum(s, "riskmon_alerts_total", status="opened") for s in samples)
            dead = sum(_sum(s, "riskmon_dead_letters_total") for s in samples)
            now = time.monotonic()
            rate = (consumed - last[1]) / max(now - last[0], 1e-9)
            last = (now, consumed)
            if first_done is None and consumed > 0:
                first_done = now
            lag = pacer.produced - consumed - parked
            echo(
                f"\r  {now - t_stream:6.1f}s  produced {pacer.produced:>10,}  "
                f"consumed {int(consumed):>10,}  {rate:>9,.0f} ev/s  alerts {int(alerts):>7,}  "
                f"dead letters {int(dead):>6,}  lag {int(lag):>9,}",
                nl=False,
            )
            if stats.get("error"):
                raise RuntimeError(f"producer failed: {stats['error']}")
            if any(w.proc is not None and w.proc.poll() is not None for w in workers):
                raise RuntimeError("a worker exited early: see its log in " + str(work))
            if stats["done"] and consumed + parked >= pacer.produced:
                done_at = now
                break
            if now - t_stream > opts.timeout_s:
                raise RuntimeError(f"demo timed out after {opts.timeout_s:.0f}s")
        echo("")
        consumed = sum(_sum(s, "riskmon_events_total") for s in samples)
        streamed = _read_alerts(
            settings,
            names.alerts,
            int(sum(_sum(s, "riskmon_alerts_total") for s in samples)),
        )
        run = _run_stats(samples, consumed, done_at - t_stream, opts.workers)
        streamed_ok = True
    finally:
        if not (opts.keep_running and streamed_ok):
            _stop_all(workers, broker)
    try:
        report = _report(opts, card, sim, work, events, truth_rows, streamed, run, echo)
        if opts.keep_running:
            _serve(broker, workers, echo)
    finally:
        _stop_all(workers, broker)
        if os.environ.get("RISKMON_DEMO_KEEP") is None:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return report


def _run_stats(
    samples: list[dict[str, float]], consumed: float, duration: float, workers: int
) -> RunStats:
    """Throughput, event-to-alert latency and dead letters of the streamed run, from the
    workers' last /metrics samples."""
    p50 = _histogram_quantile(samples, "riskmon_event_to_alert_seconds", 0.5, clock="ingest_time")
    p99 = _histogram_quantile(samples, "riskmon_event_to_alert_seconds", 0.99, clock="ingest_time")
    dead_by_reason: dict[str, int] = {}
    for s in samples:
        for key, v in s.items():
            if key.startswith("riskmon_dead_letters_total{"):
                reason = key.split("reason=")[1].rstrip("}").split(",")[0]
                dead_by_reason[reason] = dead_by_reason.get(reason, 0) + int(v)
    return RunStats(
        events=int(consumed),
        events_per_s=consumed / duration if duration > 0 else None,
        latency_p50_ms=p50 * 1000 if p50 == p50 else None,
        latency_p99_ms=p99 * 1000 if p99 == p99 else None,
        dead_letters=dead_by_reason,
        duration_s=duration,
        workers=workers,
    )


def _report(
    opts: DemoOptions,
    card: artifact.Scorecard,
    sim: Simulation,
    work: Path,
    events: Path,
    truth_rows: Any,
    streamed: list[Alert],
    run: RunStats,
    echo: Any,
) -> dict[str, Any]:
    """The early-warning report of the streamed run (and the backtest's check with --verify),
    written to ``opts.report_dir`` and summarised on ``echo``."""
    echo(f"streamed {run.events:,} events in {run.duration_s:.1f}s with {opts.workers} worker(s)")
    # the report is built from the stream: its alerts (a replayed batch re-sends records with the
    # same event ids) and the rescorings the workers logged
    alert_records = list({a.event_id: a for a in streamed}.values())
    obs = read_logs(sorted(work.glob("rescorings-*.bin")))
    truth = Truth.from_rows(truth_rows, start=_epoch(sim), end=float(sim.end_epoch_s))
    pd = CompiledScorecard(card).pd(np.asarray(obs.score))  # for the priority rule
    resc = Rescorings.from_arrays(
        obs.customer, obs.time, obs.score, obs.grade, obs.dpd, truth, pd=pd, exposure=obs.exposure
    )
    report = build_report(
        alert_records,
        resc,
        truth,
        [g.name for g in card.grades],
        run,
        horizon_days=opts.horizon_days,
    )
    if opts.verify:
        t_bt = time.monotonic()
        bt = backtest(events, card, opts.partitions, opts.effective_policy())
        secs = time.monotonic() - t_bt
        bt_alerts = bt.alerts
        echo(f"backtest of the same events: {len(bt_alerts):,} alert records in {secs:.1f}s")
        report["stream_vs_backtest"] = {
            "streamed_alert_records": len(alert_records),
            "backtest_alert_records": len(bt_alerts),
            "equal": sorted(map(_strip, alert_records)) == sorted(map(_strip, bt_alerts)),
            "streamed_ids": len(ids := {a.alert_id for a in alert_records}),
            "backtest_ids": len(bt_ids := {a.alert_id for a in bt_alerts}),
            "common_ids": len(ids & bt_ids),
            "streamed_rescorings": len(obs),
            "backtest_rescorings": len(bt.observations),
        }
    report["scorecard_version"] = card.version
    json_path, html_path = write_report(report, opts.report_dir)
    # the card the report is about, beside it (also what a rollback publishes again)
    (opts.report_dir / "scorecard.json").write_bytes(opts.scorecard.read_bytes())
    echo(render_summary(report))
    sv = report.get("stream_vs_backtest")
    if sv is not None:
        echo(
            f"stream vs backtest: {sv['streamed_alert_records']:,} vs "
            f"{sv['backtest_alert_records']:,} alert records, equal: {sv['equal']}"
        )
    echo(f"report: {html_path} and {json_path}")
    return report


def _stop_all(workers: list[WorkerProc], broker: EmbeddedBroker) -> None:
    """Stop every worker, then the broker, by PID (a no-op for those already stopped)."""
    for w in workers:
        w.stop()
    broker.stop()


def _serve(broker: EmbeddedBroker, workers: list[WorkerProc], echo: Any) -> None:
    """Keep the broker and workers up until Ctrl-C or SIGTERM (raises if one of them exits)."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        echo(f"kept running: broker {broker.url}, workers " + ", ".join(w.url for w in workers))
        echo(f"  riskmon publish CARD --broker {broker.url} --role challenger --share 10 --shadow")
        echo(f"  riskmon queue --worker {' --worker '.join(w.url for w in workers)} --capacity 20")
        echo("Ctrl-C stops them.")
        while not stop.wait(0.5):
            if broker.proc is not None and broker.proc.poll() is not None:
                raise RuntimeError(f"the broker exited ({broker.proc.returncode})")
            for w in workers:
                if w.proc is not None and w.proc.poll() is not None:
                    code = w.proc.returncode
                    raise RuntimeError(f"worker {w.index} exited ({code}): see {w.log}")
        echo("stopping the broker and workers")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _epoch(sim: Simulation) -> float:
    import datetime as dt

    start = dt.datetime.combine(sim.cfg.start, dt.time(), dt.UTC)
    return start.timestamp()
