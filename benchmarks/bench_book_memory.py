"""Peak memory and time of ``riskmon backtest`` and ``riskmon history`` over a whole book.

    .venv/bin/python benchmarks/bench_book_memory.py --customers 100000 --months 2 [--json OUT]

Simulates the book to a temporary JSON-lines file (delivery noise included), then runs each
command's code in its own fresh process and reads that process's peak resident memory
(``VmHWM``; ``ru_maxrss`` would carry the parent's size at the fork): the backtest without a
report (alerts, scores, dead letters), the backtest with one (every rescoring kept for it) and
``history`` at month ends. Prints a table and writes JSON.
A lender's book of 1,000,000 customers should stay under 4 GiB in each.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS = ("backtest", "backtest+report", "history")


def _high_water_kb() -> int:
    """This process's own peak resident set, reset at exec (unlike ``ru_maxrss``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(kind: str, events: Path, truth: Path, out: Path) -> dict[str, Any]:
    """One run in this (fresh) process; its peak memory and time."""
    from scoring.artifact import default_scorecard_path, load
    from streams.core.gc_tuning import tune_gc
    from streams.evaluation.backtest import backtest
    from streams.evaluation.history import history

    card = load(default_scorecard_path())
    tune_gc()
    t0 = time.perf_counter()
    if kind == "history":
        res = history(events, card, out / "table.parquet", "month-end", 365.0, truth)
        n = res.events
    else:
        bt = backtest(events, card, 4, rescorings=kind == "backtest+report")
        n = bt.events
        sum(1 for _ in bt.final_views())  # scores.csv's pass over every customer
    secs = time.perf_counter() - t0
    peak_kb = _high_water_kb()
    return {"run": kind, "events": n, "seconds": round(secs, 1), "peak_mib": round(peak_kb / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma list of {', '.join(RUNS)}")
    ap.add_argument(
        "--book-dir",
        type=Path,
        default=None,
        help="keep the simulated book here (events.jsonl, truth.csv), and reuse it if present",
    )
    ap.add_argument("--child", nargs=4, metavar=("KIND", "EVENTS", "TRUTH", "OUT"))
    args = ap.parse_args()
    if args.child:
        kind, events, truth, out = args.child
        print(json.dumps(child(kind, Path(events), Path(truth), Path(out))))
        return
    from streams.sim.simulate import SimConfig, simulate_to_files

    results = []
    runs = [r for r in args.runs.split(",") if r]
    if unknown := set(runs) - set(RUNS):
        ap.error(f"unknown runs: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = str(args.book_dir or scratch)
        Path(tmp).mkdir(parents=True, exist_ok=True)
        events, truth = Path(tmp) / "events.jsonl", Path(tmp) / "truth.csv"
        if events.is_file() and truth.is_file():
            messages = sum(1 for _ in events.open("rb"))
            print(f"reusing {events}: {messages:,} messages")
        else:
            t0 = time.perf_counter()
            counts = simulate_to_files(
                SimConfig(customers=args.customers, months=args.months, seed=args.seed),
                events,
                truth,
            )
            messages = counts["messages"]
            print(
                f"simulated {args.customers:,} customers x {args.months} months: "
                f"{messages:,} messages in {time.perf_counter() - t0:.0f} s"
            )
        for kind in runs:
            got = subprocess.run(
                [sys.executable, __file__, "--child", kind, str(events), str(truth), tmp],
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(got.stdout.strip().splitlines()[-1]))
    per = args.customers
    print(f"{'run':<18} {'events':>12} {'seconds':>9} {'peak MiB':>9} {'KB/customer':>12}")
    for r in results:
        kb = r["peak_mib"] * 1024 / per
        print(f"{r['run']:<18} {r['events']:>12,} {r['seconds']:>9} {r['peak_mib']:>9} {kb:>12.1f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "customers": args.customers,
                    "months": args.months,
                    "messages": messages,
                    "machine": platform.machine(),
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
