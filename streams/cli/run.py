"""`riskmon demo`, `riskmon replay`, `riskmon backtest`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import click

from streams.kafka.connection import KafkaSettings, kafka_options
from streams.kafka.settings import default_scorecard_path, tune_gc


class _TruthRow(NamedTuple):
    customer_id: str
    default_date: str


@click.command("demo")
@click.option("--customers", type=int, default=20_000, show_default=True)
@click.option("--months", type=int, default=12, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 8),
    default=2,
    show_default=True,
    help="Worker processes sharing the partitions",
)
@click.option("--partitions", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--play-seconds",
    type=float,
    default=75.0,
    show_default=True,
    help="Stream the book in about this many seconds (paced by event time)",
)
@click.option(
    "--speed", type=float, default=None, help="Event seconds per wall second instead (0: no pacing)"
)
@click.option(
    "--lateness-days",
    type=float,
    default=14.0,
    show_default=True,
    help="Lateness bound of the workers and the backtest",
)
@click.option("--report-dir", type=click.Path(file_okay=False), default="report", show_default=True)
@click.option(
    "--scorecard",
    type=click.Path(dir_okay=False),
    default=None,
    help="Scorecard JSON (default: the bundled one)",
)
@click.option(
    "--verify/--no-verify",
    default=False,
    show_default=True,
    help="Also backtest the book offline and check its alerts equal the stream's",
)
def demo(
    customers: int,
    months: int,
    seed: int,
    workers: int,
    partitions: int,
    play_seconds: float,
    speed: float | None,
    lateness_days: float,
    report_dir: str,
    scorecard: str | None,
    verify: bool,
) -> None:
    """Simulated loan book -> embedded broker -> worker(s) -> alerts -> early-warning report."""
    from streams.evaluation.demo import DemoOptions, run_demo
    from streams.sim.simulate import SimConfig

    SimConfig(customers=customers, months=months, seed=seed)  # validate before starting anything
    run_demo(DemoOptions(
        customers=customers, months=months, seed=seed, workers=workers, partitions=partitions,
        play_seconds=play_seconds, speed=speed, lateness_days=lateness_days,
        report_dir=Path(report_dir),
        scorecard=Path(scorecard) if scorecard else default_scorecard_path(), verify=verify,
    ))  # fmt: skip


@click.command("replay")
@click.argument("file", type=click.Path(dir_okay=False))
@kafka_options
@click.option("--topic-prefix", envvar="RISKMON_TOPIC_PREFIX", default="riskmon", show_default=True)
@click.option(
    "--speed",
    type=float,
    default=0.0,
    show_default=True,
    help="Pace by event time: event seconds per wall second (0: full speed)",
)
def replay(file: str, kafka: KafkaSettings, topic_prefix: str, speed: float) -> None:
    """Send recorded events (JSON lines) to the input topics, at full speed or paced."""
    from scoring.errors import InputError
    from streams.evaluation.demo import Pacer
    from streams.kafka.produce import produce_records, routed
    from streams.kafka.topics import TopicNames, check_topics
    from streams.sim.simulate import records_from_lines

    path = Path(file)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    names = TopicNames(topic_prefix)
    check_topics(kafka, names.inputs)
    pacer = Pacer(speed, None)
    t0 = time.monotonic()
    with (
        path.open("rb") as fh,
        click.progressbar(length=path.stat().st_size, label="replaying") as bar,
    ):

        def lines() -> Iterator[bytes]:
            for line in fh:
                bar.update(len(line))
                yield line

        recs = (
            (names.by_role(t), k, v) for t, k, v in routed(pacer.tap(records_from_lines(lines())))
        )
        counts = produce_records(kafka, recs, pace=pacer.delay)
    dt = time.monotonic() - t0
    for topic, n in sorted(counts.items()):
        click.echo(f"{topic:<32} {n:>10,}")
    click.echo(f"sent {pacer.produced:,} messages in {dt:.1f}s ({pacer.produced / dt:,.0f}/s)")


@click.command("backtest")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--scorecard",
    type=click.Path(dir_okay=False),
    default=None,
    help="Scorecard JSON (default: the bundled one)",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Writes alerts.jsonl, and report.json/html when --truth is given",
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False),
    default=None,
    help="Ground truth CSV from `riskmon simulate --truth` (enables the report)",
)
@click.option(
    "--partitions",
    type=int,
    default=4,
    show_default=True,
    help="Partition count of the stream being reproduced",
)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Monitoring start for the report (UTC date; default: the month of the first account "
    "transaction, as loan and payment history may be back-dated)",
)
def backtest_cmd(
    file: str,
    scorecard: str | None,
    out_dir: str,
    truth: str | None,
    partitions: int,
    start: dt.datetime | None,
) -> None:
    """Run the stream's own state, scoring and alert code over an event file, no broker."""
    import csv
    import math

    from schemas.codec import encode
    from scoring import artifact
    from scoring.errors import InputError
    from streams.evaluation.backtest import backtest
    from streams.evaluation.report import Rescorings, RunStats, Truth, build_report
    from streams.evaluation.report_render import render_summary, write_report

    card = artifact.load(Path(scorecard) if scorecard else default_scorecard_path())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tune_gc()
    t0 = time.monotonic()
    res = backtest(Path(file), card, partitions)
    secs = time.monotonic() - t0
    with (out / "alerts.jsonl").open("wb") as fh:
        for a in res.alerts:
            fh.write(encode(a) + b"\n")
    click.echo(
        f"{res.events:,} events in {secs:.1f}s ({res.events / max(secs, 1e-9):,.0f}/s); "
        f"{len(res.alerts):,} alert records -> {out / 'alerts.jsonl'}"
    )
    if truth is None:
        return
    try:
        with open(truth, newline="") as fh:
            rows = [_TruthRow(r["customer_id"], r["default_date"]) for r in csv.DictReader(fh)]
    except (OSError, KeyError) as exc:
        raise InputError(f"cannot read ground truth {truth}: {exc!r}") from exc
    times = res.observations.time
    if not times:
        raise InputError("no rescorings in the event file: nothing to report")
    if start is not None:
        begin = start.replace(tzinfo=dt.UTC)
    else:  # the month of the first account transaction: contracts and their payment history
        # may be back-dated years before the stream (the simulator does)
        first = res.first_activity if math.isfinite(res.first_activity) else min(times)
        begin = dt.datetime.fromtimestamp(first, dt.UTC).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
    t = Truth.from_rows(rows, start=begin.timestamp(), end=max(times))
    o = res.observations
    resc = Rescorings.from_arrays(o.customer, o.time, o.score, o.grade, o.dpd, t)
    run = RunStats(
        events=res.events,
        events_per_s=res.events / max(secs, 1e-9),
        dead_letters=dict(res.dead_letters),
        duration_s=secs,
    )
    report = build_report(res.alerts, resc, t, [g.name for g in card.grades], run)
    j, h = write_report(report, out)
    click.echo(render_summary(report))
    click.echo(f"report: {h} and {j}")


COMMANDS: list[click.Command] = [demo, replay, backtest_cmd]
