"""Hash everything the pure pipeline produces for an event file: outputs, observations, states.

Run it before and after a hot-path change (state, features, policy, pipeline); the hashes must
not move unless the change means to alter behaviour. ``--profile`` prints the top cProfile rows.

    .venv/bin/riskmon simulate --customers 3000 --seed 7 --out /tmp/ev.jsonl
    .venv/bin/python scripts/pipeline_fingerprint.py /tmp/ev.jsonl
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import time
from pathlib import Path

from scoring.artifact import default_scorecard_path, load
from streams.core.pipeline import Pipeline
from streams.core.policy import Observation
from streams.evaluation.backtest import CHUNK, file_records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--no-observe",
        action="store_true",
        help="no observation recorder: the worker's path (the policy kernel takes the quiet "
        "rescorings); outputs and states must hash the same as with it",
    )
    args = ap.parse_args()
    h_out, h_obs, h_state = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()

    def observe(o: Observation) -> None:
        h_obs.update(repr(o._replace(ingest_time=0.0)).encode())

    card = load(default_scorecard_path())
    pipe = Pipeline(card, observe=None if args.no_observe else observe, offline=True)
    records = [r._replace(ingest_time=0.0) for r in file_records(args.file, args.partitions)]

    def run() -> None:
        for i in range(0, len(records), CHUNK):
            res = pipe.process(records[i : i + CHUNK])
            for o in res.outputs:
                h_out.update(o.topic.encode() + (o.key or b"") + o.value)
            for cid in sorted(res.dirty):
                h_state.update(cid.encode() + res.dirty[cid])

    t0 = time.perf_counter()
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    else:
        run()
    dt = time.perf_counter() - t0
    print(f"{len(records):,} records in {dt:.1f} s ({len(records) / dt:,.0f}/s)")
    print(f"outputs      {h_out.hexdigest()[:16]}")
    print(f"observations {h_obs.hexdigest()[:16]}")
    print(f"states       {h_state.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
