"""Simulator throughput: customers x months -> JSON lines, one core.

    .venv/bin/python benchmarks/bench_simulate.py --customers 100000 --months 12 --json OUT

Measures the whole `riskmon simulate` path (latent model, event generation, delivery noise,
JSON-lines writing) and, separately, the in-process generation without writing; wall and CPU
time are both shown because writing ~2.4 GB is often disk-bound. Target: 100 k customers x
12 months in < 60 s on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from streams.sim.simulate import SimConfig, Simulation, simulate_to_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", type=Path, default=None, help="write results as JSON here")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the files (tmp)")
    args = ap.parse_args()
    cfg = SimConfig(customers=args.customers, months=args.months, seed=args.seed)

    t0, c0 = time.perf_counter(), time.process_time()
    n_gen = sum(1 for _ in Simulation(cfg).records())
    gen_s, gen_cpu = time.perf_counter() - t0, time.process_time() - c0

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        out, truth = Path(tmp) / "events.jsonl", Path(tmp) / "truth.csv"
        t0, c0 = time.perf_counter(), time.process_time()
        counts = simulate_to_files(cfg, out, truth)
        file_s, file_cpu = time.perf_counter() - t0, time.process_time() - c0
        size = os.path.getsize(out)

    results = {
        "customers": args.customers,
        "months": args.months,
        "messages": counts["messages"],
        "defaults": counts["defaults"],
        "generate_s": round(gen_s, 2),
        "generate_cpu_s": round(gen_cpu, 2),
        "generate_msgs_per_s": round(n_gen / gen_s),
        "to_file_s": round(file_s, 2),
        "to_file_cpu_s": round(file_cpu, 2),
        "file_mb": round(size / 1e6, 1),
        "target_s": 60,
    }
    print(f"{'step':<28}{'wall s':>10}{'cpu s':>10}{'messages/s':>14}")
    print(f"{'generate (iterator)':<28}{gen_s:>10.1f}{gen_cpu:>10.1f}{n_gen / gen_s:>14,.0f}")
    print(
        f"{'generate + write JSONL':<28}{file_s:>10.1f}{file_cpu:>10.1f}"
        f"{counts['messages'] / file_s:>14,.0f}"
    )
    print(
        f"{args.customers} customers x {args.months} months: {counts['messages']:,} messages, "
        f"{counts['defaults']} defaults, {size / 1e6:.0f} MB; target < 60 s: "
        f"{'met' if file_s < 60 else 'MISSED'}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
