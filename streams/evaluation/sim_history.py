"""`riskmon simulate --history`: ``riskmon history`` applied to the simulator's book.

The book is simulated without delivery noise (no duplicates, late or malformed messages), then
goes through the same code as a lender's file (:mod:`streams.evaluation.history`): the stream's
pipeline, observed every ``EVERY_DAYS`` days from the end of the day before month
``WARMUP_MONTHS`` starts to the last month start a full outcome window follows, labelled from
the simulator's ground truth: 90+ DPD within the next ``HORIZON_DAYS`` days.

Weekly, not monthly: the stream rescores a customer on every event, on any day of a month spent
in arrears, and month-end snapshots show the card a customer in arrears only at the day past due
its due date puts at the month end. Observed weekly, the 1-29 DPD segment gets four times the rows,
spread over the month (`benchmarks/results/weekly_card.json` has what that changed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from pathlib import Path

from scoring.artifact import default_scorecard_path, load
from scoring.errors import InputError
from streams.evaluation.history import TARGET, history
from streams.sim.simulate import SimConfig, Simulation, write_jsonl, write_truth

WARMUP_MONTHS = 6
HORIZON_MONTHS = 12
HORIZON_DAYS = 365.0
EVERY_DAYS = 7

__all__ = ["EVERY_DAYS", "HORIZON_DAYS", "TARGET", "WARMUP_MONTHS", "write_history"]


def write_history(cfg: SimConfig, path: Path) -> int:
    """Simulate ``cfg`` and write the training table to ``path``; return the row count."""
    if cfg.months < WARMUP_MONTHS + HORIZON_MONTHS:
        raise InputError(
            f"--history needs --months >= {WARMUP_MONTHS + HORIZON_MONTHS} ({WARMUP_MONTHS} "
            f"months of warm-up + a {HORIZON_MONTHS}-month outcome window), got {cfg.months}"
        )
    clean = dataclasses.replace(cfg, dup_rate=0.0, late_rate=0.0, malformed_rate=0.0)
    sim = Simulation(clean)
    months = range(WARMUP_MONTHS, cfg.months - HORIZON_MONTHS + 1)
    # from the end of the day before the first observed month starts, every EVERY_DAYS days to
    # the day before the last one starts
    first, last = (int(sim.book.month_start_day(m)) - 1 for m in (months[0], months[-1]))
    days = range(first, last + 1, EVERY_DAYS)
    at = ",".join(str(dt.date(1970, 1, 1) + dt.timedelta(days=d)) for d in days)
    with tempfile.TemporaryDirectory() as tmp:
        events, truth = Path(tmp) / "events.jsonl", Path(tmp) / "truth.csv"
        with events.open("wb") as fh:
            write_jsonl(sim.records(), fh)
        write_truth(sim.truth(), truth)
        card = load(default_scorecard_path())
        res = history(
            events, card, path, at, HORIZON_DAYS, truth, outcomes_until=float(sim.end_epoch_s)
        )
    return res.rows
