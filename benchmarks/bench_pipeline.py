"""The pure pipeline (no Kafka): events/s of ``Pipeline.process`` in worker-sized batches.

    .venv/bin/python benchmarks/bench_pipeline.py [--customers 3000] [--json OUT]

What the worker's handler runs, without the broker: a simulated book (delivery noise included)
routed to partitions as the producer does, grouped per partition into ``--batch``-record batches
(what one fetch hands the agent), fed to one :class:`~streams.core.pipeline.Pipeline` with the
worker's GC settings, its entry handling (read from the table as bytes each batch, written back) and
its drift monitor (``--cached``: entries kept decoded, no drift monitor). Baseline in the same run:
decoding the same records with the same msgspec types (the least any consumer does per event). Then
where the best run's time went, by phase (the pipeline's own split, which the worker exports as
``riskmon_batch_phase_seconds``). Quick to rerun after a hot-path change (the worker benchmark,
``bench_stream.py``, needs a broker and minutes); ``scripts/pipeline_fingerprint.py`` checks that
the change kept the decisions.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable

from schemas.codec import RecordError, decode
from schemas.events import INPUT_TYPES
from scoring.artifact import default_scorecard_path, load
from streams.core.drift import DriftMonitor
from streams.core.gc_tuning import tune_gc
from streams.core.pipeline import Pipeline
from streams.core.records import InRecord
from streams.kafka.produce import murmur2_partition
from streams.kafka.settings import WorkerConfig
from streams.sim.simulate import SimConfig, Simulation


def book(customers: int, months: int, seed: int, partitions: int) -> list[InRecord]:
    """The simulator's messages as the worker would consume them (role, partition, offset)."""
    offsets: Counter[tuple[str, int]] = Counter()
    out = []
    for r in Simulation(SimConfig(customers=customers, months=months, seed=seed)).records():
        p = murmur2_partition(r.key or b"", partitions)
        out.append(InRecord(r.topic, p, offsets[(r.topic, p)], r.key, r.value, 0.0))
        offsets[(r.topic, p)] += 1
    return out


def batches(records: list[InRecord], size: int) -> list[list[InRecord]]:
    """Per-partition batches of ``size`` records, in the order a partition's fetches complete."""
    out: list[list[InRecord]] = []
    cur: dict[int, list[InRecord]] = defaultdict(list)
    for r in records:
        b = cur[r.partition]
        b.append(r)
        if len(b) == size:
            out.append(b)
            cur[r.partition] = []
    out += [b for b in cur.values() if b]
    return out


def best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` runs (the least disturbed by the shared machine)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4700, help="records per batch (worker: ~4-8k)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--cached",
        action="store_true",
        help="keep decoded entries between batches, no drift monitor (the worker's "
        "--cache-customers; before 2026-12 the only mode)",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    records = book(args.customers, args.months, args.seed, args.partitions)
    groups = batches(records, args.batch)
    card = load(default_scorecard_path())
    Pipeline(card, offline=True)  # load the kernels from numba's cache before timing
    tune_gc()  # as the worker does

    def decode_only() -> int:
        bad = 0
        for r in records:
            try:
                decode(r.value, INPUT_TYPES[r.topic])
            except RecordError:
                bad += 1
        return bad

    outcomes: Counter[str] = Counter()
    runs: list[tuple[float, Counter[str]]] = []  # (wall s, seconds by phase) per run

    def pipeline() -> None:
        table: dict[str, bytes] = {}
        if args.cached:  # a fresh state each run: every run does the same
            pipe = Pipeline(card, offline=True)
        else:  # as the worker: entries read from the table, drift monitored
            window = WorkerConfig().drift_window_days * 86400.0
            drift = DriftMonitor(card, window_s=window)
            pipe = Pipeline(card, load=table.get, drift=drift, offline=True)
        outcomes.clear()
        phases: Counter[str] = Counter()
        t0 = time.perf_counter()
        for b in groups:
            if not args.cached:
                pipe.entries.clear()
            res = pipe.process(b)
            table.update(res.dirty)
            for (_role, outcome), n in res.outcomes.items():
                outcomes[outcome] += n
            phases.update(getattr(res, "phase_seconds", {}))  # none before 89d997b (A/B runs)
        runs.append((time.perf_counter() - t0, phases))

    n = len(records)
    base = n / best(decode_only, args.repeat)
    full = n / best(pipeline, args.repeat)
    rows = [
        ("decode only (msgspec, same types)", base),
        ("pipeline: state, features, scoring, policy, outputs", full),
    ]
    print(f"{n:,} records, {len(groups)} batches of <= {args.batch:,}; outcomes {dict(outcomes)}")
    print(f"{'variant':52s} {'events/s':>10s} {'vs decode':>10s}")
    for name, eps in rows:
        print(f"{name:52s} {eps:10,.0f} {eps / base:10.3f}")
    wall, phases = min(runs, key=lambda r: r[0])  # the best run's split (BatchResult.phase_seconds)
    split = {k: 1e6 * v / n for k, v in phases.items()}
    print(f"\nwhere the best run's time goes (us per event; {1e6 * wall / n:.1f} in all):")
    print(f"{'phase':12s} {'us/event':>9s} {'share':>7s}")
    for k, us in split.items():
        print(f"{k:12s} {us:9.2f} {us * n / 1e6 / wall:7.1%}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "records": n,
                    "batch": args.batch,
                    "customers": args.customers,
                    "outcomes": dict(outcomes),
                    "results": [{"name": k, "events_per_s": round(v)} for k, v in rows],
                    "us_per_event": round(1e6 / full, 2),
                    "phases_us_per_event": {k: round(v, 2) for k, v in split.items()},
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
