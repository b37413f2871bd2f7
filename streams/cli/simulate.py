"""`riskmon simulate` (the demo's loan book)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import click

from scoring.errors import InputError


def _parse_start(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"--start must be a date like 2025-01-01, got {value!r}") from None


@click.command()
@click.option("--customers", type=int, default=10_000, show_default=True, help="Firms in the book")
@click.option("--months", type=int, default=12, show_default=True, help="Months to simulate")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same bytes)"
)
@click.option(
    "--start", default="2025-01-01", show_default=True, help="First day of the first month"
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Events as JSON lines (one message per line; malformed ones raw)",
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ground truth CSV: default date and latent health per customer",
)
@click.option(
    "--history",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Training table: features every 7 days after a 6-month warm-up + 90+ DPD target",
)
@click.option(
    "--dup-rate",
    type=float,
    default=0.01,
    show_default=True,
    help="Share of events delivered twice",
)
@click.option(
    "--late-rate",
    type=float,
    default=0.01,
    show_default=True,
    help="Share of events delivered late / out of order",
)
@click.option(
    "--too-late-share",
    type=float,
    default=0.2,
    show_default=True,
    help="Share of late events beyond the 7-day lateness bound",
)
@click.option(
    "--malformed-rate",
    type=float,
    default=0.001,
    show_default=True,
    help="Share of malformed messages (garbage, truncated, wrong types, unknown kind)",
)
@click.option(
    "--reported-dpd",
    is_flag=True,
    default=False,
    help="Also send the lender's own delinquency: a delinquency_status per live loan at each "
    "month's end (days past due, overdue amount, five-category floor as the book stands)",
)
@click.option(
    "--lines-share",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of firms borrowing on a revolving credit line (draws, monthly statements, "
    "minimum due) instead of an instalment loan; 0 keeps the default book byte for byte",
)
def simulate(
    customers: int,
    months: int,
    seed: int,
    start: str,
    out: Path | None,
    truth: Path | None,
    history: Path | None,
    dup_rate: float,
    late_rate: float,
    too_late_share: float,
    malformed_rate: float,
    reported_dpd: bool,
    lines_share: float,
) -> None:
    """Simulate a seeded SME loan book: events to --out, ground truth to --truth."""
    from streams.sim.simulate import SimConfig, simulate_to_files

    cfg = SimConfig(
        customers=customers,
        months=months,
        seed=seed,
        start=_parse_start(start),
        dup_rate=dup_rate,
        late_rate=late_rate,
        too_late_share=too_late_share,
        malformed_rate=malformed_rate,
        reported_dpd=reported_dpd,
        lines_share=lines_share,
    )
    if history is not None:
        from streams.evaluation.sim_history import write_history

        t0 = time.perf_counter()
        rows = write_history(cfg, history)
        click.echo(f"wrote {rows} rows to {history} in {time.perf_counter() - t0:.1f} s")
        if out is None and truth is None:
            return
    if out is None or truth is None:
        raise InputError("--out and --truth are both required (or give --history alone)")
    if out.resolve() == truth.resolve():
        raise InputError("--out and --truth must be different files")
    t0 = time.perf_counter()
    c = simulate_to_files(cfg, out, truth)
    click.echo(
        f"wrote {c['messages']:,} messages to {out} ({c['duplicates']:,} duplicates, "
        f"{c['late']:,} late of which {c['too_late']:,} beyond 7 days, {c['malformed']:,} "
        f"malformed) and ground truth to {truth}: {c['defaults']:,} of {c['customers']:,} "
        f"customers default; {time.perf_counter() - t0:.1f} s"
    )
    if reported_dpd:
        click.echo(f"of which {c['statuses']:,} lender delinquency statuses (month ends)")
    if lines_share > 0:
        click.echo(f"{c['lines']:,} of the firms borrow on a credit line")


COMMANDS: list[click.Command] = [simulate]
