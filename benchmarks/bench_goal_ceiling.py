"""What an early-warning rule could reach on the simulated book if it saw the latent health.

The report's goals ask, at once, for a customer-level lift of at least 4 with 90 % of defaults
alerted, at most 25 % of the book alerted in a year, and half the defaults alerted 30 days or
more before their first missed instalment. This script asks whether any rule can meet them on
the simulator's book: it replays the simulator in-process (the same seeded book the demo
streams) and scores an **oracle** that alerts a customer at the first month start at which
its latent health ``h`` (which the events only reflect through noisy money flows) is below a
threshold. Every observable feature is a noisy estimate of ``h``, so no rule on the events
does better than the oracle's frontier.

With ``--events FILE --truth FILE`` (the same book, as ``riskmon simulate`` writes it) it also
scores simple actionable rules on riskmon's own rescorings of it (the bundled card): "DPD >= 31"
(M2 and worse), and that rule or the card's PD at or above a threshold, at any DPD or only at
0 DPD: what a policy that keeps the other signals on the watch list can reach.

Measures follow the report's alert budget: customer precision = alerted customers defaulting
within the horizon after their first alert; lift = precision / the share of customers who
default in the book; first missed instalment = the first bounced instalment debit.

    python benchmarks/bench_goal_ceiling.py --customers 20000 --months 12 --seeds 1,99 \
        --json benchmarks/results/goal_ceiling.json [--events ev.jsonl --truth truth.csv]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from streams.evaluation.budget import first_alert_measures
from streams.sim.book import new_book
from streams.sim.encode import Encoder
from streams.sim.month import step_month
from streams.sim.simulate import SimConfig

DAY = 86_400
THRESHOLDS = tuple(round(-0.6 - 0.1 * k, 1) for k in range(13))  # -0.6 .. -1.8


def trace(cfg: SimConfig) -> dict[str, np.ndarray]:
    """Replay the book month by month: health at each month start, first bounced instalment
    day and default day per customer (days since the epoch)."""
    rng = np.random.default_rng(cfg.seed)  # the book's own stream, as Simulation draws it
    start = np.datetime64(cfg.start, "M")
    book = new_book(cfg.customers, start, cfg.months, rng)
    enc = Encoder(cfg.customers, cfg.seed)
    n = cfg.customers
    health = np.empty((cfg.months, n))
    distress = np.empty((cfg.months, n), bool)
    month_day = np.empty(cfg.months, np.int64)
    bounce = np.full(n, np.iinfo(np.int64).max)
    for m in range(cfg.months):
        blocks = step_month(book, m, rng, enc)
        health[m] = book.h
        distress[m] = book.distress
        month_day[m] = int(book.month_start_day(m))
        for blk in blocks:
            if blk.values and b'"kind":"bounced_debit"' in blk.values[0]:
                np.minimum.at(bounce, blk.cust, blk.t // DAY)
    default = np.where(book.default_day >= 0, book.default_day, np.iinfo(np.int64).max)
    return {
        "health": health,
        "distress": distress,
        "month_day": month_day,
        "bounce": bounce,
        "default": default,
    }


def _row(rule: str, m: dict[str, Any]) -> dict[str, Any]:
    """One rule's figures, from :func:`streams.evaluation.budget.first_alert_measures`."""
    return {
        "rule": rule,
        "alerted_share": m["customers_alerted_share"],
        "customer_precision": m["customer_precision"],
        "lift": m["lift"],
        "defaults_alerted_share": m["defaults_alerted_share"],
        "pre_delinquency_share": m["pre_delinquency_share"],
    }


def frontier(tr: dict[str, np.ndarray], horizon_days: int) -> list[dict[str, Any]]:
    """The oracle's alert budget per health threshold, and at the onset of distress."""
    health, month_day = tr["health"], tr["month_day"]
    never = np.iinfo(np.int64).max

    def seconds(days: np.ndarray) -> np.ndarray:
        return np.where(days == never, np.inf, days * float(DAY))

    default, missed = seconds(tr["default"]), seconds(tr["bounce"])
    rows = []
    rules = [(f"h < {thr:.1f}", health < thr) for thr in THRESHOLDS]
    for rule, below in [*rules, ("distress onset", tr["distress"])]:
        # the first month start with h below the threshold, if before the default
        first = seconds(np.where(below, month_day[:, None], never).min(axis=0))
        first[first >= default] = np.inf
        m = first_alert_measures(first, default, missed, horizon_days * float(DAY), 0)
        row = _row(rule, m)
        row["all_goals"] = bool(
            (m["lift"] or 0) >= 4
            and (m["defaults_alerted_share"] or 0) >= 0.9
            and (m["customers_alerted_share"] or 1) <= 0.25
            and (m["pre_delinquency_share"] or 0) >= 0.5
        )
        rows.append(row)
    base = float(np.isfinite(default).mean())
    return [{"customers": health.shape[1], "base_rate": base} | r for r in rows]


def rules(events: Path, truth: Path, horizon_days: int) -> list[dict[str, Any]]:
    """Simple actionable rules on the card's rescorings of ``events`` (first rescoring in the
    monitoring window at which the rule holds, before the default)."""
    from scoring import artifact
    from scoring.compiled import CompiledScorecard
    from streams.cli.backtest import read_outcomes
    from streams.cli.options import default_scorecard_path
    from streams.core import policy_file
    from streams.evaluation.budget import first_missed
    from streams.evaluation.replay import record
    from streams.evaluation.tune import Outcomes

    card = artifact.load(default_scorecard_path())
    rec = record(events, card, policy_file.load(None), 4)
    c = rec.columns
    t, _ = read_outcomes(
        str(truth), None, c.customer, c.floats["event_time"], rec.first_activity, None
    )
    r = Outcomes.of(rec, t, float(horizon_days)).rescorings
    pd = CompiledScorecard(card).pd(r.score)
    n = len(t.customers)
    default = t.default_array()
    missed = first_missed(r, n)
    live = (r.time >= t.start) & (r.time <= t.end) & (r.time < default[r.customer])
    m2 = r.dpd >= 31
    grid: list[tuple[str, np.ndarray]] = [("dpd >= 31", m2)]
    for p in (0.3, 0.4, 0.5, 0.6, 0.8):
        grid.append((f"dpd >= 31 | pd >= {p}", m2 | (pd >= p)))
        grid.append((f"dpd >= 31 | pd >= {p} at 0 dpd", m2 | ((pd >= p) & (r.dpd == 0))))
    out = []
    for name, mask in grid:
        first = np.full(n, np.inf)
        np.minimum.at(first, r.customer[mask & live], r.time[mask & live])
        m = first_alert_measures(first, default, missed, horizon_days * float(DAY), 0)
        caught = np.isfinite(default) & (first < default)
        lead = float(np.median(default[caught] - first[caught]) / DAY)
        out.append(_row(name, m) | {"median_lead_days": lead})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--seeds", default="1,99")
    ap.add_argument("--horizon-days", type=int, default=180)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--events", type=Path, help="the first seed's event file: rules on it too")
    ap.add_argument("--truth", type=Path, help="... and its truth file")
    a = ap.parse_args(argv)
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "customers": a.customers,
        "months": a.months,
        "horizon_days": a.horizon_days,
        "seeds": {},
    }
    head = (
        f"{'seed':>5} {'oracle rule':>14} {'alerted':>8} {'precision':>9} {'lift':>5} "
        f"{'alerted dflt':>12} {'30d+ early':>10} {'all goals':>9}"
    )
    print(head)
    for seed in (int(s) for s in a.seeds.split(",")):
        cfg = SimConfig(customers=a.customers, months=a.months, seed=seed)
        rows = frontier(trace(cfg), a.horizon_days)
        out["seeds"][str(seed)] = rows
        for r in rows:
            print(
                f"{seed:>5} {r['rule']:>14} {r['alerted_share']:>8.1%} "
                f"{r['customer_precision']:>9.1%} {r['lift']:>5.2f} "
                f"{r['defaults_alerted_share']:>12.1%} {r['pre_delinquency_share']:>10.1%} "
                f"{'yes' if r['all_goals'] else 'no':>9}"
            )
    if a.events and a.truth:
        print(f"\nactionable rules on riskmon's rescorings of {a.events}")
        print(
            f"{'rule':>32} {'alerted':>8} {'lift':>5} {'alerted dflt':>12} "
            f"{'30d+ early':>10} {'lead d':>6}"
        )
        out["rules"] = rules(a.events, a.truth, a.horizon_days)
        for r in out["rules"]:
            print(
                f"{r['rule']:>32} {r['alerted_share']:>8.1%} {r['lift']:>5.2f} "
                f"{r['defaults_alerted_share']:>12.1%} {r['pre_delinquency_share']:>10.1%} "
                f"{r['median_lead_days']:>6.0f}"
            )
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
