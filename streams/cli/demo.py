"""`riskmon demo`: the whole product on one machine, ending with an early-warning report."""

from __future__ import annotations

from pathlib import Path

import click

from streams.cli.options import policy_option, scorecard_option


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
@click.option(
    "--horizon-days",
    type=click.FloatRange(1, None),
    default=180.0,
    show_default=True,
    help="Report: a flag is right when the customer defaults within this many days (a year's "
    "book cannot show a 365-day horizon: the report would be censored throughout)",
)
@click.option("--report-dir", type=click.Path(file_okay=False), default="report", show_default=True)
@scorecard_option
@click.option(
    "--verify/--no-verify",
    default=False,
    show_default=True,
    help="Also backtest the book offline and check its alerts equal the stream's",
)
@policy_option
def demo(
    customers: int,
    months: int,
    seed: int,
    workers: int,
    partitions: int,
    play_seconds: float,
    speed: float | None,
    lateness_days: float,
    horizon_days: float,
    report_dir: str,
    scorecard: Path,
    verify: bool,
    policy: Path | None,
) -> None:
    """Simulated loan book -> embedded broker -> worker(s) -> alerts -> early-warning report."""
    from streams.evaluation.demo import DemoOptions, run_demo
    from streams.sim.simulate import SimConfig

    SimConfig(customers=customers, months=months, seed=seed)  # validate before starting anything
    run_demo(DemoOptions(
        customers=customers, months=months, seed=seed, workers=workers, partitions=partitions,
        play_seconds=play_seconds, speed=speed, lateness_days=lateness_days,
        horizon_days=horizon_days, report_dir=Path(report_dir),
        scorecard=scorecard, verify=verify, policy=policy,
    ))  # fmt: skip


COMMANDS: list[click.Command] = [demo]
