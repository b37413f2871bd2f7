"""`riskmon tune`'s cost: record a book's rescorings once, then replay only the policy per
candidate, against running a full backtest per candidate.

    riskmon simulate --customers 20000 --months 12 --seed 1 --out ev.jsonl --truth truth.csv
    .venv/bin/python benchmarks/bench_tune.py ev.jsonl truth.csv --candidates 10 \\
        --json benchmarks/results/tune.json

Measured, one after another in this process (numba's cache warm: run any riskmon command once
first):

* ``record``: one backtest of the file keeping every rescoring as the policy saw it
  (``streams.evaluation.replay.record``), plus the outcomes (truth, rescoring arrays)
* ``replay + judge``: per candidate (``streams.evaluation.tune.candidates``, the base first),
  the policy replayed over the recording and its numbers (volume, recall, lead, lift)
* ``backtest``: one full backtest with the base policy as `riskmon backtest --truth` runs it
  (every rescoring kept, so every one goes through ``decide``), and one as the stream runs it
  (the policy kernel for the quiet rescorings, no rescorings kept): what each candidate would
  cost without the recording, before the report itself
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from scoring.artifact import default_scorecard_path, load
from streams.cli.backtest import read_outcomes
from streams.core.gc_tuning import tune_gc
from streams.core.policy_file import Policy
from streams.evaluation.backtest import backtest
from streams.evaluation.replay import record, replay
from streams.evaluation.tune import Outcomes, candidates, describe, judge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events", type=Path)
    ap.add_argument("truth", type=Path)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    card = load(default_scorecard_path())
    base = Policy()
    tune_gc()

    t0 = time.monotonic()
    rec = record(args.events, card, base)
    c = rec.columns
    times = c.floats["event_time"]
    truth, _ = read_outcomes(str(args.truth), None, c.customer, times, rec.first_activity, None)
    outs = Outcomes.of(rec, truth)
    record_s = time.monotonic() - t0

    rows: list[dict[str, Any]] = []
    for i, cfg in enumerate(candidates(base.policy, args.candidates, args.seed)):
        t = time.monotonic()
        alerts = replay(rec, cfg, delta_reasons=False)
        replay_s = time.monotonic() - t
        cand = judge(alerts, outs, i, cfg, describe(cfg, base.policy), replay_s)
        rows.append(
            {
                "candidate": i,
                "replay_s": replay_s,
                "replay_judge_s": time.monotonic() - t,
                "alert_records": len(alerts),
                "volume_per_1k_month": cand.volume,
                "recall": cand.recall,
                "median_lead_days": cand.median_lead_days,
                "changes": cand.changes,
            }
        )
        print(f"candidate {i}: {rows[-1]['replay_judge_s']:.2f}s, {len(alerts):,} alert records")

    t = time.monotonic()
    full = backtest(args.events, card, 4, base, rescorings=True)
    backtest_report_s = time.monotonic() - t
    t = time.monotonic()
    backtest(args.events, card, 4, base, rescorings=False)
    backtest_stream_s = time.monotonic() - t

    per = sum(r["replay_judge_s"] for r in rows) / len(rows)
    n = len(rows)
    result = {
        "events": rec.events,
        "rescorings": len(rec),
        "customers": len(rec.customers),
        "candidates": n,
        "record_s": record_s,
        "replay_judge_s_mean": per,
        "replay_judge_s_max": max(r["replay_judge_s"] for r in rows),
        "backtest_with_rescorings_s": backtest_report_s,
        "backtest_stream_path_s": backtest_stream_s,
        "speedup_vs_backtest_with_rescorings": backtest_report_s / per,
        "speedup_vs_backtest_stream_path": backtest_stream_s / per,
        "tune_50_candidates_estimate_s": record_s + 50 * per,
        "backtests_50_candidates_estimate_s": 50 * backtest_report_s,
        "base_alert_records": len(full.alert_records),
        "by_candidate": rows,
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
    }
    table = [
        ("book", f"{rec.events:,} events, {len(rec):,} rescorings, {len(rec.customers):,} "
                 "customers"),
        ("record (once)", f"{record_s:.1f} s"),
        (f"replay + judge, mean of {n}", f"{per:.2f} s per candidate"),
        ("backtest as `backtest --truth`", f"{backtest_report_s:.1f} s "
                                           f"({backtest_report_s / per:.1f}x a replay)"),
        ("backtest, stream path", f"{backtest_stream_s:.1f} s "
                                  f"({backtest_stream_s / per:.1f}x a replay)"),
        ("50 candidates: tune", f"{record_s + 50 * per:.0f} s"),
        ("50 candidates: 50 backtests", f"{50 * backtest_report_s:.0f} s"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in table)
    for k, v in table:
        print(f"{k:<{width}}  {v}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


def _cpus() -> int | None:
    import os

    return os.cpu_count()


if __name__ == "__main__":
    main()
