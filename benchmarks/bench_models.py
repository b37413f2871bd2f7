"""What a champion/challenger rollout costs the pipeline: events/s with one card, with a live
challenger on half of the customers, and with a shadow challenger scoring every customer.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_models.py [--customers 3000] [--json OUT]

The same simulated book and worker-sized batches as ``bench_pipeline.py`` (entries read from and
written to a table each batch, drift monitored per card, as the worker does), fed to one
:class:`~streams.core.pipeline.Pipeline` per variant. The variants run in interleaved rounds on
the same batches and each keeps its best round (the machines are shared and noisy); the ratios
are against the one-card baseline of the same run. Champion: the bundled card; challenger: the
expert card of the tests (four characteristics) and, as a second live variant, the bundled card
again (the cost of splitting alone, with two cards of the same size).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_pipeline import batches, book
from scoring.artifact import Scorecard, default_scorecard_path, load
from streams.core.drift import DriftMonitor
from streams.core.gc_tuning import tune_gc
from streams.core.models import ModelSet
from streams.core.pipeline import Pipeline
from streams.core.records import InRecord
from streams.kafka.settings import WorkerConfig
from tests.conftest import expert_scorecard

OUT = Path(__file__).with_name("results") / "models.json"


def variants(card: Scorecard) -> dict[str, ModelSet]:
    expert = expert_scorecard()
    return {
        "one card (baseline)": ModelSet(card),
        "challenger live 50 % (expert card)": ModelSet(card, expert, 50.0),
        "challenger live 50 % (same-size card)": ModelSet(card, card, 50.0),
        "challenger shadow 100 % (expert card)": ModelSet(card, expert, 100.0, shadow=True),
        "challenger shadow 100 % (same-size card)": ModelSet(card, card, 100.0, shadow=True),
    }


def runner(card: Scorecard, models: ModelSet, groups: list[list[InRecord]]) -> Callable[[], float]:
    """One timed pass over ``groups`` with a fresh table; returns its wall seconds."""
    window = WorkerConfig().drift_window_days * 86400.0

    def run() -> float:
        table: dict[str, bytes] = {}
        pipe = Pipeline(card, load=table.get, drift=DriftMonitor(card, window_s=window))
        pipe.set_models(models, now=True)
        t0 = time.perf_counter()
        for b in groups:
            pipe.entries.clear()
            table.update(pipe.process(b).dirty)
        return time.perf_counter() - t0

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4700, help="records per batch (worker: ~4-8k)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=OUT)
    args = ap.parse_args()

    records = book(args.customers, args.months, args.seed, args.partitions)
    groups = batches(records, args.batch)
    card = load(default_scorecard_path())
    tune_gc()
    runs = {name: runner(card, ms, groups) for name, ms in variants(card).items()}
    for run in runs.values():  # a warm-up round, not counted: kernels loaded, caches filled
        run()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.rounds):
        for name, run in runs.items():
            best[name] = min(best[name], run())
    n = len(records)
    base = n / best["one card (baseline)"]
    print(f"{n:,} records, {len(groups)} batches of <= {args.batch:,}, best of {args.rounds}")
    print(f"{'variant':44s} {'events/s':>10s} {'vs one card':>12s} {'cost':>7s}")
    rows = []
    for name, seconds in best.items():
        eps = n / seconds
        rows.append({"name": name, "events_per_s": round(eps), "ratio": round(eps / base, 3)})
        print(f"{name:44s} {eps:10,.0f} {eps / base:12.3f} {1 - eps / base:7.1%}")
    args.json.write_text(
        json.dumps(
            {
                "records": n,
                "batch": args.batch,
                "customers": args.customers,
                "months": args.months,
                "rounds": args.rounds,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
