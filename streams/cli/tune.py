"""`riskmon tune`: fit the alert policy's numbers to an alert budget on a book with outcomes."""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from streams.cli.options import (
    labels_option,
    policy_option,
    replay_partitions_option,
    scorecard_option,
    truth_option,
)

if TYPE_CHECKING:
    from streams.evaluation.tune import Candidate, TuneResult


@click.command("tune")
@click.argument("events", type=click.Path(dir_okay=False, path_type=Path))
@truth_option
@labels_option
@click.option(
    "--budget",
    type=float,
    required=True,
    help="Alert budget: actionable (not watch) alerts opened per 1,000 customers per month",
)
@click.option(
    "--min-lift",
    type=click.FloatRange(0, None),
    default=None,
    help="Only candidates whose actionable customer lift (precision over the base rate) is at "
    "least this, e.g. 4",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Policy file to write (TOML, for --policy of worker, backtest, demo)",
)
@click.option(
    "--candidates",
    type=int,
    default=50,
    show_default=True,
    help="Policies to try, the base policy included",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the candidates")
@click.option("--top", type=int, default=10, show_default=True, help="Best candidates shown")
@click.option(
    "--horizon-days",
    type=float,
    default=365.0,
    show_default=True,
    help="Customer lift: an alerted customer counts when it defaults within this many days",
)
@replay_partitions_option
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Monitoring start (UTC date; default: the month of the first account transaction)",
)
@policy_option
@scorecard_option
def tune_cmd(
    events: Path,
    truth: str | None,
    labels: str | None,
    budget: float,
    min_lift: float | None,
    out: Path,
    candidates: int,
    seed: int,
    top: int,
    horizon_days: float,
    partitions: int,
    start: dt.datetime | None,
    policy: Path | None,
    scorecard: Path,
) -> None:
    """Search the alert policy's numbers (grade notches, persistence, cool-down, expiry, the inflow
    and PD thresholds, which signals are watch-only) for the best policy within an alert budget,
    and write it as a policy file.

    Objective: among the candidates whose actionable (not watch) alerts opened per 1,000
    customers per month are at most --budget, the highest recall (defaults whose first
    actionable alert came before the default), then the longest median lead time (alert to
    default), then the smallest volume. Customer lift and the pre-delinquency share are shown
    beside them; --min-lift also requires a lift. The events are scored once with the base
    policy's event settings (--policy); each candidate then replays only the alert policy over
    the recorded rescorings. The candidates are the base, an evidence ladder (signals moved to
    the watch list, only M2 and worse worked, that with a PD threshold) and a random sample of a
    fixed grid (--seed: the same seed, the same candidates). Exits with an error when no
    candidate fits the budget."""
    from scoring import artifact
    from scoring.errors import InputError
    from streams.cli.backtest import read_outcomes
    from streams.core import policy_file
    from streams.core.gc_tuning import tune_gc
    from streams.evaluation.replay import record
    from streams.evaluation.tune import Outcomes, tune

    if not math.isfinite(budget) or budget <= 0:
        raise InputError(f"--budget must be a positive number of alerts, got {budget:g}")
    if candidates < 1 or top < 1 or horizon_days <= 0:
        raise InputError("--candidates and --top must be >= 1 and --horizon-days > 0")
    if (truth is None) == (labels is None):
        raise InputError("give --truth or --labels (one of them)")
    source = Path(truth or labels or "")
    for path, what in ((events, "event file"), (source, "outcomes file")):
        if not path.is_file():
            raise InputError(f"no such {what}: {path}")
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: no directory {out.parent}")
    card = artifact.load(scorecard)
    base = policy_file.load(policy)
    tune_gc()
    t0 = time.monotonic()
    rec = record(events, card, base, partitions)
    secs = time.monotonic() - t0
    click.echo(
        f"recorded {len(rec):,} rescorings of {len(rec.customers):,} customers "
        f"({rec.events:,} events) in {secs:.1f}s"
    )
    c = rec.columns
    t, outcome = read_outcomes(
        truth, labels, c.customer, c.floats["event_time"], rec.first_activity, start
    )
    outs = Outcomes.of(rec, t, horizon_days)

    def progress(cand: Candidate) -> None:
        click.echo(f"candidate #{cand.index} ({cand.index + 1} of {candidates}): {_line(cand)}")

    res = tune(rec, outs, base.policy, budget, candidates, seed, progress, min_lift)
    n = len(res.candidates)
    click.echo(
        f"replayed {n} candidates in {res.seconds:.1f}s ({res.seconds / n:.2f}s each); "
        f"outcome {outcome}, {res.base.defaults:,} defaults, {outs.months:.1f} months"
    )
    chosen = res.chosen
    lifted = "" if min_lift is None else f" with a lift of {min_lift:g} or more"
    if chosen is None:
        low = res.smallest
        best = max((c.lift or 0.0 for c in res.candidates if c.volume <= budget), default=None)
        raise InputError(
            f"no candidate fits the budget of {budget:g} alerts per 1,000 customers per month"
            f"{lifted}: the smallest volume reached is {low.volume:.1f} (candidate "
            f"#{low.index}){'' if best is None else f', the best lift within it {best:.2f}'}; "
            "raise --budget, lower --min-lift or try more --candidates"
        )
    click.echo(
        f"budget {budget:g} actionable alerts per 1,000 customers per month{lifted}: "
        f"{len(res.fitting)} of {n} candidates fit"
    )
    for line in _table(res, top):
        click.echo(line)
    header = (
        f"riskmon tune {events.name} ({outcome}): budget {budget:g} actionable alerts per 1,000 "
        f"customers per month{lifted}\nchosen candidate #{chosen.index} of {n} (seed {seed}): "
        f"{_line(chosen, timed=False)}\nchanges from the base policy: {chosen.changes}"
    )
    fitted = policy_file.Policy(base.state, chosen.config, base.limits)
    text = policy_file.dumps(fitted, header)
    if policy_file.loads(text) != fitted:  # pragma: no cover - dumps is tested to round-trip
        raise InputError("the fitted policy does not read back equal: not written")
    try:
        out.write_text(text)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out} (riskmon backtest {events} --policy {out})")


COMMANDS: list[click.Command] = [tune_cmd]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None, fmt: str = ".0f") -> str:
    return "-" if x is None else format(x, fmt)


def _line(c: Candidate, timed: bool = True) -> str:
    took = f" ({c.replay_seconds:.1f}s)" if timed else ""
    return (
        f"{c.volume:.1f} alerts/1k/month, recall {_pct(c.recall)}, median lead "
        f"{_num(c.median_lead_days)} d, lift {_num(c.lift, '.2f')}, pre-delinquency "
        f"{_pct(c.pre_delinquency_share)}{took}"
    )


def _table(res: TuneResult, top: int) -> list[str]:
    """The best fitting candidates, then the chosen one beside the base."""
    head = f"{'rank':>4}  {'#':>3}  {'alerts/1k/mo':>12}  {'recall':>7}  {'lead d':>6}  "
    head += f"{'lift':>5}  {'pre-delinq':>10}  changes from the base"
    lines = [head]
    for rank, c in enumerate(res.fitting[:top], 1):
        lines.append(
            f"{rank:>4}  {c.index:>3}  {c.volume:>12.1f}  {_pct(c.recall):>7}  "
            f"{_num(c.median_lead_days):>6}  {_num(c.lift, '.2f'):>5}  "
            f"{_pct(c.pre_delinquency_share):>10}  {c.changes}"
        )
    chosen, base = res.chosen, res.base
    assert chosen is not None
    rows = [
        ("alerts/1k/month", f"{base.volume:.1f}", f"{chosen.volume:.1f}"),
        ("actionable alerts", f"{base.opened:,}", f"{chosen.opened:,}"),
        ("watch-list alerts", f"{base.watch:,}", f"{chosen.watch:,}"),
        ("recall", _pct(base.recall), _pct(chosen.recall)),
        ("caught defaults", f"{base.caught:,}", f"{chosen.caught:,}"),
        ("median lead days", _num(base.median_lead_days), _num(chosen.median_lead_days)),
        ("customer lift", _num(base.lift, ".2f"), _num(chosen.lift, ".2f")),
        ("pre-delinquency", _pct(base.pre_delinquency_share), _pct(chosen.pre_delinquency_share)),
    ]
    lines += ["", f"{'':<18}  {'base #0':>10}  {f'chosen #{chosen.index}':>10}"]
    lines += [f"{name:<18}  {b:>10}  {c:>10}" for name, b, c in rows]
    return lines
