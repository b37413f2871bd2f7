"""`riskmon history`: a feature table from an event file, by the stream's own code."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from streams.cli.options import policy_option, scorecard_option


@click.command("history")
@click.argument("events", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Table to write: CSV, or Parquet by extension (.parquet); TABLE.columns.json beside it",
)
@click.option(
    "--at",
    default="month-end",
    show_default=True,
    help="Observation dates: month-end, week-end, or dates like 2025-03-31,2025-06-30",
)
@click.option(
    "--horizon-days",
    type=float,
    default=365.0,
    show_default=True,
    help="Outcome window: bad = 90+ DPD within this many days after the observation",
)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Your outcomes instead of the stream's DPD: CSV with customer_id and default_date "
    "(empty: none), or customer_id and a 0/1 bad flag",
)
@click.option(
    "--outcomes-until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Last day outcomes are known (default: the last event's time); observations whose "
    "horizon runs past it without a default are censored",
)
@click.option(
    "--partitions", type=int, default=4, show_default=True, help="Partition count of the stream"
)
@scorecard_option
@policy_option
def history_cmd(
    events: Path,
    out: Path,
    at: str,
    horizon_days: float,
    labels: Path | None,
    outcomes_until: dt.datetime | None,
    partitions: int,
    scorecard: Path,
    policy: Path | None,
) -> None:
    """Per customer and observation date: the features exactly as the stream computes them,
    score, grade, PD, DPD and the outcome (bad = 1/0, empty when censored). Train on it with
    `riskmon train TABLE --target bad --out card.json`."""
    import time

    from scoring import artifact
    from streams.core import policy_file
    from streams.core.gc_tuning import tune_gc
    from streams.evaluation.history import columns_path, history

    card = artifact.load(scorecard)
    tune_gc()
    t0 = time.monotonic()
    until = None
    if outcomes_until is not None:
        until = outcomes_until.replace(tzinfo=dt.UTC).timestamp() + 86399.0  # its end
    rules = policy_file.load(policy)
    res = history(events, card, out, at, horizon_days, labels, partitions, rules, until)
    click.echo(
        f"{res.events:,} events, {res.observations} observation dates -> {res.rows:,} rows "
        f"({res.bads:,} bad, {res.censored:,} censored) in {time.monotonic() - t0:.1f}s: {out}"
    )
    click.echo(f"outcome: 90+ DPD within {horizon_days:g} days, from the {res.label_source}")
    click.echo(f"columns: {columns_path(out)}")
    if res.fit is not None:
        click.echo(res.fit.summary())
        for warning in res.fit.warnings:
            click.echo(f"warning: {warning}", err=True)
    if res.dead_letters:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(res.dead_letters.items()))
        click.echo(f"dead letters by reason: {reasons}")


COMMANDS: list[click.Command] = [history_cmd]
