"""What the ``riskmon worker`` holds per customer, by ``tracemalloc`` (no broker needed).

Part (6) of ``bench_stream.py``'s full run (its ``memory_per_customer`` in
``benchmarks/results/stream.json``; part (5), the worker's own gauges and RSS growth, is measured
on the running worker there), and runnable alone:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_stream_memory.py --events 200000 [--json OUT]

The same simulator events as ``bench_stream.py`` through the pipeline in this process, in
per-partition batches as the worker cuts them; then the memory table store's key + value per
customer, and a decoded entry as the worker caches it between batches when
``--cache-customers`` is set (off by default).
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from benchmarks._stream_common import PARTITIONS, sim_records  # noqa: E402
from scoring import artifact  # noqa: E402
from scoring.artifact import default_scorecard_path  # noqa: E402
from streams.core.entry import Entry  # noqa: E402
from streams.core.pipeline import Pipeline  # noqa: E402
from streams.core.records import InRecord  # noqa: E402
from streams.kafka.produce import Record, murmur2_partition  # noqa: E402
from streams.kafka.topics import TopicNames  # noqa: E402


def memory_per_customer(records: list[Record], names: TopicNames) -> dict[str, Any]:
    """What the worker holds per customer, by ``tracemalloc`` (RSS moves by tens of MB with
    buffers and the allocator: over 6,000 added customers it gave 1.2 to 6.2 KB per customer,
    run to run). The same book through the same pipeline in this process, per-partition batches
    as the worker cuts them; then (a) the memory table store: each customer's key and value bytes
    in a dict, (b) the decoded entries the worker caches between batches."""
    final: dict[bytes, bytes] = {}  # customer key -> entry bytes, as the store holds them
    card = artifact.load(default_scorecard_path())
    pipe = Pipeline(card, offline=True, load=lambda cid: final.get(cid.encode()))
    offsets: Counter[tuple[str, int]] = Counter()
    queues: dict[int, list[InRecord]] = {}

    def flush(batch: list[InRecord]) -> None:
        final.update((cid.encode(), raw) for cid, raw in pipe.process(batch).dirty.items())
        pipe.entries.clear()  # read back from ``final``: the cache is measured below

    for topic, key, value in records:
        role, p = names.role(topic), murmur2_partition(key, PARTITIONS)
        q = queues.setdefault(p, [])
        q.append(InRecord(role, p, offsets[(role, p)], key, value, 0.0))
        offsets[(role, p)] += 1
        if len(q) == 4_000:
            flush(q)
            queues[p] = []
    for q in queues.values():
        if q:
            flush(q)
    n = len(final)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # fresh copies (bytes(b) would return b itself), as the store holds its own
        store = {bytes(bytearray(k)): bytes(bytearray(v)) for k, v in final.items()}
        after_store = tracemalloc.get_traced_memory()[0]
        cache = {k: Entry.from_bytes(v) for k, v in store.items()}
        after_cache = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del store, cache
    return {
        "customers": n,
        "serialised_bytes_per_customer": round(sum(map(len, final.values())) / n),
        "store_bytes_per_customer": round((after_store - before) / n),
        "cached_entry_bytes_per_customer": round((after_cache - after_store) / n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--months", type=int, default=12, help="simulated history per customer")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    names = TopicNames("bench")
    mem = memory_per_customer(sim_records(args.events, args.months, 7, names), names)
    print(report(mem))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {"events": args.events, "months": args.months, "memory_per_customer": mem}
        args.json.write_text(json.dumps(out, indent=2) + "\n")


def report(mem: dict[str, Any]) -> str:
    return (
        f"held per customer (tracemalloc, {mem['customers']:,} customers): table store "
        f"{mem['store_bytes_per_customer']:,} B (value {mem['serialised_bytes_per_customer']:,} B),"
        f" decoded entry in the worker's cache {mem['cached_entry_bytes_per_customer']:,} B"
    )


if __name__ == "__main__":
    main()
