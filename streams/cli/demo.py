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
@click.option(
    "--keep-running",
    is_flag=True,
    help="After the report, keep the broker and workers up until Ctrl-C (publish a card to "
    "them, read their queue)",
)
@click.option(
    "--broker-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="The embedded broker's port on 127.0.0.1 (0: any free port)",
)
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535 - 8),
    default=0,
    show_default=True,
    help="Worker i serves /metrics and /queue on this port + i (0: any free ports)",
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
    horizon_days: float,
    report_dir: str,
    scorecard: Path,
    verify: bool,
    policy: Path | None,
    keep_running: bool,
    broker_port: int,
    web_port: int,
) -> None:
    """Simulated loan book -> embedded broker -> worker(s) -> alerts -> early-warning report."""
    from scoring.errors import InputError
    from streams.evaluation.demo import DemoOptions, run_demo
    from streams.kafka.broker import wait_for_port
    from streams.sim.simulate import SimConfig

    SimConfig(customers=customers, months=months, seed=seed)  # validate before starting anything
    ports = [broker_port] if broker_port else []
    ports += [web_port + i for i in range(workers)] if web_port else []
    if len(set(ports)) < len(ports):
        raise InputError(f"--broker-port {broker_port} is among the workers' --web-port range")
    for port in ports:
        if wait_for_port("127.0.0.1", port, timeout=0.2):
            raise InputError(f"port {port} on 127.0.0.1 is already in use: choose another (0: any)")
    run_demo(DemoOptions(
        customers=customers, months=months, seed=seed, workers=workers, partitions=partitions,
        play_seconds=play_seconds, speed=speed, lateness_days=lateness_days,
        horizon_days=horizon_days, report_dir=Path(report_dir),
        scorecard=scorecard, verify=verify, policy=policy, keep_running=keep_running,
        broker_port=broker_port, web_port=web_port,
    ))  # fmt: skip


COMMANDS: list[click.Command] = [demo]
