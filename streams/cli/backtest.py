"""`riskmon backtest`: the stream's own pipeline over an event file, no broker."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import click

from streams.cli.options import (
    labels_option,
    policy_option,
    replay_partitions_option,
    scorecard_option,
    truth_option,
)
from streams.core import policy_file
from streams.core.gc_tuning import tune_gc

if TYPE_CHECKING:
    from collections.abc import Sequence

    from streams.evaluation.backtest import BacktestResult
    from streams.evaluation.report import Truth


class _TruthRow(NamedTuple):
    customer_id: str
    default_date: str


@click.command("backtest")
@click.argument("file", type=click.Path(dir_okay=False))
@scorecard_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Writes alerts.jsonl, scores.csv, deadletter.jsonl, and report.json/html with "
    "--truth or --labels",
)
@truth_option
@labels_option
@click.option(
    "--horizon-days",
    type=float,
    default=365.0,
    show_default=True,
    help="Report: a flag is right when the customer defaults within this many days",
)
@click.option(
    "--warmup-days",
    type=float,
    default=60.0,
    show_default=True,
    help="Report: days after the start before flags are judged",
)
@replay_partitions_option
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Monitoring start for the report (UTC date; default: the month of the first account "
    "transaction, as loan and payment history may be back-dated)",
)
@policy_option
@click.option(
    "--challenger",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A second card for a share of the customers, as `riskmon publish --role challenger` "
    "would run it; prints and writes arms.json comparing the two",
)
@click.option(
    "--share",
    type=click.FloatRange(0, 100),
    default=50.0,
    show_default=True,
    help="With --challenger: percent of customers it takes (stable hash of the customer id)",
)
@click.option(
    "--lateness-days",
    type=float,
    default=None,
    help="Lateness bound (overrides the policy file's; default 7)",
)
def backtest_cmd(
    file: str,
    scorecard: Path,
    out_dir: str,
    truth: str | None,
    partitions: int,
    start: dt.datetime | None,
    policy: Path | None,
    lateness_days: float | None,
    labels: str | None,
    horizon_days: float,
    warmup_days: float,
    challenger: Path | None,
    share: float,
) -> None:
    """Run the stream's own state, scoring and alert code over an event file, no broker."""

    import numpy as np

    from scoring import artifact
    from scoring.compiled import CompiledScorecard
    from streams.evaluation.backtest import backtest
    from streams.evaluation.report import Rescorings, RunStats, build_report
    from streams.evaluation.report_render import render_summary, write_report

    card = artifact.load(scorecard)
    rules = policy_file.load(policy)
    if lateness_days is not None:
        state = dataclasses.replace(rules.state, lateness_days=lateness_days)
        rules = dataclasses.replace(rules, state=state)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tune_gc()
    t0 = time.monotonic()
    with_report = truth is not None or labels is not None  # it needs every rescoring
    models = None
    if challenger is not None:
        from streams.core.models import ModelSet

        models = ModelSet(card, artifact.load(challenger), share)
    res = backtest(Path(file), card, partitions, rules, rescorings=with_report, models=models)
    secs = time.monotonic() - t0
    with (out / "alerts.jsonl").open("wb") as fh:
        for raw in res.alert_records:
            fh.write(raw + b"\n")
    with (out / "deadletter.jsonl").open("wb") as fh:
        for raw in res.dead_letter_records:
            fh.write(raw + b"\n")
    click.echo(
        f"{res.events:,} events in {secs:.1f}s ({res.events / max(secs, 1e-9):,.0f}/s); "
        f"{len(res.alert_records):,} alert records -> {out / 'alerts.jsonl'}"
    )
    ended = ", ".join(f"{k} {v:,}" for k, v in res.accounting().items() if k != "messages")
    click.echo(f"messages {res.events:,}: {ended}")
    if res.dead_letters:
        reasons = ", ".join(f"{k} {v:,}" for k, v in res.dead_letters.most_common())
        click.echo(f"dead letters by reason ({out / 'deadletter.jsonl'}): {reasons}")
    scored = _write_scores(res, out / "scores.csv")
    click.echo(f"scores: {scored:,} customers -> {out / 'scores.csv'}")
    _echo_fit(res)
    if models is not None:
        _echo_arms(res, out / "arms.json")
    if truth is None and labels is None:
        return
    o = res.observations
    t, outcome = read_outcomes(truth, labels, o.customer, o.time, res.first_activity, start)
    pd = CompiledScorecard(card).pd(np.asarray(o.score))  # for the priority rule
    resc = Rescorings.from_arrays(
        o.customer, o.time, o.score, o.grade, o.dpd, t, pd=pd, exposure=o.exposure
    )
    run = RunStats(
        events=res.events,
        events_per_s=res.events / max(secs, 1e-9),
        dead_letters=dict(res.dead_letters),
        duration_s=secs,
    )
    report = build_report(
        res.alerts,
        resc,
        t,
        [g.name for g in card.grades],
        run,
        horizon_days=horizon_days,
        warmup_days=warmup_days,
        outcome=outcome,
    )
    j, h = write_report(report, out)
    click.echo(render_summary(report))
    click.echo(f"report: {h} and {j}")


COMMANDS: list[click.Command] = [backtest_cmd]


def read_outcomes(
    truth: str | None,
    labels: str | None,
    customers: Sequence[str],
    times: Sequence[float],
    first_activity: float,
    start: dt.datetime | None,
) -> tuple[Truth, str]:
    """The outcomes of a run over an event file, and their name: the simulator's ``truth``
    (90+ DPD) or the lender's ``labels`` (customers it does not list did not default), over
    the rescorings' ``customers`` and event ``times``; the book starts at ``start`` or else at
    the month of ``first_activity`` (contracts and payment history may be back-dated)."""
    import csv
    import math

    from scoring.errors import InputError
    from streams.evaluation.report import Truth

    if truth is not None and labels is not None:
        raise InputError("give --truth or --labels, not both")
    source = truth or labels
    if source is None:
        raise InputError("give --truth or --labels")
    try:
        with open(source, newline="") as fh:
            rows = [_TruthRow(r["customer_id"], r["default_date"]) for r in csv.DictReader(fh)]
    except (OSError, KeyError) as exc:
        raise InputError(f"cannot read outcomes {source}: {exc!r}") from exc
    outcome = "90+ DPD"
    if labels is not None:  # the lender's outcome; customers it does not list did not default
        outcome = f"default per {Path(labels).name}"
        listed = {r.customer_id for r in rows}
        rows += [_TruthRow(c, "") for c in sorted(set(customers) - listed)]
    if not times:
        raise InputError("no rescorings in the event file: nothing to report")
    if start is not None:
        begin = start.replace(tzinfo=dt.UTC)
    else:  # the month of the first account transaction: contracts and their payment history
        # may be back-dated years before the stream (the simulator does)
        first = first_activity if math.isfinite(first_activity) else min(times)
        begin = dt.datetime.fromtimestamp(first, dt.UTC).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
    return Truth.from_rows(rows, start=begin.timestamp(), end=max(times)), outcome


def _write_scores(res: BacktestResult, path: Path) -> int:
    """Per customer, its picture at the end of the file (what the read API would answer):
    last event time, score, grade, PD, DPD, bucket, five-category floor and top reasons."""
    import csv

    from scoring.errors import InputError

    fields = ["customer_id", "last_event_time", "score", "grade", "pd", "dpd", "m_bucket",
              "five_category", "reasons"]  # fmt: skip
    n = 0
    try:
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(fields)
            for view in res.final_views():
                reasons = "; ".join(r["text"] for r in view["reasons"])
                w.writerow([*(view[f] for f in fields[:-1]), reasons])
                n += 1
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    return n


def _echo_arms(res: BacktestResult, path: Path) -> None:
    """The champion/challenger comparison: a table, and ``arms.json``."""
    import json

    arms = res.arm_summary()
    path.write_text(json.dumps(arms, indent=2) + "\n")
    cols = ["customers", "rescorings", "alerts_opened", "alerts_per_1000_rescorings",
            "defaults_caught", "defaults_missed", "caught_share", "median_lead_days"]  # fmt: skip
    click.echo(f"{'arm':12s} " + " ".join(f"{c:>12.12s}" for c in cols))
    for name, row in arms.items():
        cells = ["-" if row[c] is None else f"{row[c]:,}" for c in cols]
        click.echo(f"{name:12s} " + " ".join(f"{c:>12s}" for c in cells))
    click.echo(f"arms: {path}")


def _echo_fit(res: BacktestResult) -> None:
    """The scorecard fit check, its warnings on standard error."""
    from streams.evaluation.fit_check import fit_check

    if res.pipeline is None:
        return
    fit = fit_check(res.pipeline)
    click.echo(fit.summary())
    for warning in fit.warnings:
        click.echo(f"warning: {warning}", err=True)
