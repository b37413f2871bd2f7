"""What an early-warning rule could reach on the simulated book if it saw the latent health.

The report's goals ask, at once, for a customer-level lift of at least 4 with 90 % of defaults
alerted, at most 25 % of the book alerted in a year, and half the defaults alerted 30 days or
more before their first missed instalment, and a median lead time (first alert to default) of
at least 60 days. This script asks whether any rule can meet them on the simulator's book: it
replays the simulator in-process (the same seeded book the demo streams) and scores an
**oracle** that alerts a customer at the first month start at which its latent health ``h``
(which the events only reflect through noisy money flows) is below a threshold, or at the onset
of distress. Every observable feature is a noisy estimate of ``h``, so no rule on the events
does better than the oracle's frontier.

A collections desk works M2 (31+ DPD) whatever the model says, so each oracle rule is also
scored "| M2": alerted at the oracle's alert or at M2, whichever comes first. Both concern the
oldest unpaid instalment: the default is the first day-end at 90+ DPD, M2 begins at 31 DPD, so
a defaulter's M2 alert is taken as default - 59 days. "distress >= k months" alerts once the
firm has been in distress for k months in all (counted at a month start): what its money flows
could reveal only after a month or two.

With ``--events FILE --truth FILE`` (the same book, as ``riskmon simulate`` writes it) it also
scores simple actionable rules on riskmon's own rescorings of it (the bundled card): "DPD >= 31"
(M2 and worse), and that rule or the card's PD at or above a threshold, at any DPD, only at
0 DPD or only at DPD >= k: what a policy that keeps the other signals on the watch list can
reach. ``first_alert_at_30dpd_share`` is the share of alerted defaulters first alerted at
exactly 30 DPD. The bundled card segments by DPD (current / 1-29 / 30+): at 30 DPD a customer
enters the 30+ segment, one day before M2, and its PD may jump there. A rule whose median lead
sits just above 60 days with a large share first alerted at 30 DPD owes that day to the segment
edge, not to an earlier warning (so it went with the card trained on month-end snapshots: "dpd
>= 8 & pd >= 0.6", lead 60.6 days, 16 % at 30 DPD).

Measures follow the report's alert budget: customer precision = alerted customers defaulting
within the horizon after their first alert; lift = precision / the share of customers who
default in the book; first missed instalment = the first bounced instalment debit; lead = the
median days from first alert to default over the defaults alerted before it.

    python benchmarks/bench_goal_ceiling.py --customers 20000 --months 12 --seeds 1,99 \
        --json benchmarks/results/goal_ceiling.json [--events ev.jsonl --truth truth.csv]

(``--events`` must be the first seed's book, as ``riskmon simulate`` writes it.)
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
ONSET_THRESHOLDS = tuple(round(-1.0 - 0.1 * k, 1) for k in range(9))  # -1.0 .. -1.8
M2_BEFORE_DEFAULT = 59 * DAY  # M2 (31 DPD) to default (90+ DPD at day-end), same instalment
NEVER = np.iinfo(np.int64).max


def trace(cfg: SimConfig) -> dict[str, np.ndarray]:
    """Replay the book month by month: health, distress flag and months in distress so far at
    each month start, first bounced instalment day and default day per customer (days since
    the epoch)."""
    rng = np.random.default_rng(cfg.seed)  # the book's own stream, as Simulation draws it
    start = np.datetime64(cfg.start, "M")
    book = new_book(cfg.customers, start, cfg.months, rng)
    enc = Encoder(cfg.customers, cfg.seed)
    n = cfg.customers
    health = np.empty((cfg.months, n))
    distress = np.empty((cfg.months, n), bool)
    distress_months = np.empty((cfg.months, n), np.int64)
    month_day = np.empty(cfg.months, np.int64)
    bounce = np.full(n, NEVER)
    for m in range(cfg.months):
        blocks = step_month(book, m, rng, enc)
        health[m] = book.h
        distress[m] = book.distress
        distress_months[m] = book.distress_months
        month_day[m] = int(book.month_start_day(m))
        for blk in blocks:
            if blk.values and b'"kind":"bounced_debit"' in blk.values[0]:
                np.minimum.at(bounce, blk.cust, blk.t // DAY)
    default = np.where(book.default_day >= 0, book.default_day, NEVER)
    return {
        "health": health,
        "distress": distress,
        "distress_months": distress_months,
        "month_day": month_day,
        "bounce": bounce,
        "default": default,
    }


def _row(
    rule: str, first: np.ndarray, default: np.ndarray, missed: np.ndarray, horizon_days: int
) -> dict[str, Any]:
    """One rule's figures from its first alert times (epoch s, ``inf`` none): those of
    :func:`streams.evaluation.budget.first_alert_measures`, the median lead time in days over
    the defaults alerted before their default, and whether all the goals are met."""
    m = first_alert_measures(first, default, missed, horizon_days * float(DAY), 0)
    caught = np.isfinite(default) & (first < default)
    lead = float(np.median(default[caught] - first[caught]) / DAY) if caught.any() else None
    return {
        "rule": rule,
        "alerted_share": m["customers_alerted_share"],
        "customer_precision": m["customer_precision"],
        "lift": m["lift"],
        "defaults_alerted_share": m["defaults_alerted_share"],
        "pre_delinquency_share": m["pre_delinquency_share"],
        "median_lead_days": lead,
        "all_goals": bool(
            (m["lift"] or 0) >= 4
            and (m["defaults_alerted_share"] or 0) >= 0.9
            and (m["customers_alerted_share"] or 1) <= 0.25
            and (m["pre_delinquency_share"] or 0) >= 0.5
            and (lead or 0) >= 60
        ),
    }


def _seconds(days: np.ndarray) -> np.ndarray:
    """Epoch days (``NEVER``: none) as epoch seconds (``inf``: none)."""
    return np.where(days == NEVER, np.inf, days * float(DAY))


def frontier(tr: dict[str, np.ndarray], horizon_days: int) -> list[dict[str, Any]]:
    """The oracle's alert budget per health threshold, at the onset of distress and after k
    months in distress, each alone and combined with M2 (default - 59 days)."""
    health, month_day = tr["health"], tr["month_day"]
    default, missed = _seconds(tr["default"]), _seconds(tr["bounce"])
    m2 = default - M2_BEFORE_DEFAULT

    def first_month(cond: np.ndarray) -> np.ndarray:
        """The first month start at which ``cond`` holds, per customer (epoch s)."""
        return _seconds(np.where(cond, month_day[:, None], NEVER).min(axis=0))

    below = {thr: first_month(health < thr) for thr in THRESHOLDS}
    onset = first_month(tr["distress"])
    months = {k: first_month(tr["distress_months"] >= k) for k in (2, 3)}
    plain = [(f"h < {thr:.1f}", below[thr]) for thr in THRESHOLDS]
    plain += [("distress onset", onset)]
    with_m2 = [(f"h < {thr:.1f} | M2", np.minimum(below[thr], m2)) for thr in THRESHOLDS]
    with_m2 += [("onset | M2", np.minimum(onset, m2))]
    with_m2 += [
        (f"onset | h < {thr:.1f} | M2", np.minimum(np.minimum(onset, below[thr]), m2))
        for thr in ONSET_THRESHOLDS
    ]
    with_m2 += [(f"distress >= {k} months | M2", np.minimum(months[k], m2)) for k in months]
    rows = []
    for rule, first in [*plain, *with_m2]:
        first = first.copy()
        first[first >= default] = np.inf  # alerts only count before the default
        rows.append(_row(rule, first, default, missed, horizon_days))
    base = float(np.isfinite(default).mean())
    return [{"customers": health.shape[1], "base_rate": base} | r for r in rows]


def rules(events: Path, truth: Path, horizon_days: int) -> list[dict[str, Any]]:
    """Simple actionable rules on the card's rescorings of ``events`` (first rescoring in the
    monitoring window at which the rule holds, before the default), with the share of alerted
    defaulters whose first alert came at exactly 30 DPD (the card's 30+ segment edge, one day
    before M2: see the module docstring)."""
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
    for k in (1, 8, 15):
        for p in (0.5, 0.6):
            grid.append((f"dpd >= 31 | dpd >= {k} & pd >= {p}", m2 | ((r.dpd >= k) & (pd >= p))))
    order = np.lexsort((r.time, r.customer))  # by customer, then time
    out = []
    for name, mask in grid:
        hit = order[(mask & live)[order]]
        # each customer's first rescoring at which the rule holds
        top = hit[np.r_[True, r.customer[hit][1:] != r.customer[hit][:-1]]] if hit.size else hit
        first = np.full(n, np.inf)
        first[r.customer[top]] = r.time[top]
        first_dpd = np.full(n, -1, np.int64)
        first_dpd[r.customer[top]] = r.dpd[top]
        caught = np.isfinite(default) & (first < default)
        at30 = float((first_dpd[caught] == 30).mean()) if caught.any() else None
        row = _row(name, first, default, missed, horizon_days)
        out.append(row | {"first_alert_at_30dpd_share": at30})
    return out


def _f(x: float | None, spec: str, width: int) -> str:
    """``x`` formatted for the tables, "-" when undefined (no alerts or no defaults)."""
    return f"{'-' if x is None else format(x, spec):>{width}}"


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
        "command": "python benchmarks/bench_goal_ceiling.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(
        f"{'seed':>5} {'oracle rule':>26} {'alerted':>8} {'precision':>9} {'lift':>5} "
        f"{'alerted dflt':>12} {'30d+ early':>10} {'lead d':>6} {'all goals':>9}"
    )
    for seed in (int(s) for s in a.seeds.split(",")):
        cfg = SimConfig(customers=a.customers, months=a.months, seed=seed)
        rows = frontier(trace(cfg), a.horizon_days)
        out["seeds"][str(seed)] = rows
        for r in rows:
            print(
                f"{seed:>5} {r['rule']:>26} {r['alerted_share']:>8.1%} "
                f"{_f(r['customer_precision'], '.1%', 9)} {_f(r['lift'], '.2f', 5)} "
                f"{_f(r['defaults_alerted_share'], '.1%', 12)} "
                f"{_f(r['pre_delinquency_share'], '.1%', 10)} "
                f"{_f(r['median_lead_days'], '.1f', 6)} {'yes' if r['all_goals'] else 'no':>9}"
            )
    if a.events and a.truth:
        print(f"\nactionable rules on riskmon's rescorings of {a.events}")
        print(
            f"{'rule':>33} {'alerted':>8} {'lift':>5} {'alerted dflt':>12} "
            f"{'30d+ early':>10} {'lead d':>6} {'at 30 dpd':>9} {'all goals':>9}"
        )
        out["rules"] = rules(a.events, a.truth, a.horizon_days)
        for r in out["rules"]:
            print(
                f"{r['rule']:>33} {r['alerted_share']:>8.1%} {_f(r['lift'], '.2f', 5)} "
                f"{_f(r['defaults_alerted_share'], '.1%', 12)} "
                f"{_f(r['pre_delinquency_share'], '.1%', 10)} "
                f"{_f(r['median_lead_days'], '.1f', 6)} "
                f"{_f(r['first_alert_at_30dpd_share'], '.1%', 9)} "
                f"{'yes' if r['all_goals'] else 'no':>9}"
            )
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
