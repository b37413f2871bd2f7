"""A minimal Faust app on riskmon's batch seam (``streams.kafka``): per-customer event count
and amount sum.

Input: topic ``$BATCH_TOPIC`` keyed by raw customer id bytes, value = the amount as ASCII digits.
State: table ``totals`` (raw bytes, changelog co-partitioned with the input); each value packs
(count, sum, last applied input offset). The offset makes replays after a crash idempotent: a
customer lives in one partition, offsets grow, so a record at or below the stored offset was
already applied. ``GET /state/`` returns this worker's active partitions and their keys.

Run: ``python tests/integration/batch_app.py worker --web-bind 127.0.0.1 --web-port N`` with
``BATCH_BROKER``, ``BATCH_APP_ID``, ``BATCH_TOPIC``, ``BATCH_PARTITIONS``, ``BATCH_DATADIR`` set.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import faust

from streams.kafka.agent import batched_agent
from streams.kafka.consumer import APP_SETTINGS
from streams.kafka.tables import RecordBatch, batch_table, read_local

STATE = struct.Struct("<qqq")  # count, sum, last applied input offset
TOPIC = os.environ.get("BATCH_TOPIC", "batch.events")
PARTITIONS = int(os.environ.get("BATCH_PARTITIONS", "4"))

app = faust.App(
    os.environ.get("BATCH_APP_ID", "batchdemo"),
    broker=f"kafka://{os.environ.get('BATCH_BROKER', '127.0.0.1:9092')}",
    datadir=os.environ.get("BATCH_DATADIR", "./batchdemo-data"),
    store="memory://",
    broker_session_timeout=6.0,
    topic_partitions=PARTITIONS,
    table_standby_replicas=0,  # one copy per partition: ownership is easy to observe
    **APP_SETTINGS,
)
events = app.topic(TOPIC, key_type=bytes, value_type=bytes, value_serializer="raw")
totals = batch_table(app, "totals", PARTITIONS)


async def count_and_sum(batch: RecordBatch) -> None:
    """Apply one partition batch, then write each touched customer once."""
    touched: dict[bytes, list[int]] = {}
    read = batch.reader(totals)
    for offset, key, value, _ts, _hs in batch.records:
        if key is None or value is None:
            continue
        state = touched.get(key)
        if state is None:
            raw = read(key)
            state = touched[key] = list(STATE.unpack(raw)) if raw else [0, 0, -1]
        if offset <= state[2]:
            continue  # replayed after a crash: already in the restored state
        state[0] += 1
        state[1] += int(value)
        state[2] = offset
    await batch.write(totals, {k: STATE.pack(*s) for k, s in touched.items()})


batched_agent(app, events, count_and_sum, name="count_and_sum")


@app.page("/state/")
async def state(web: Any, request: Any) -> Any:
    """This worker's active input partitions and, for them, key -> [count, sum, last offset]."""
    active = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == TOPIC)
    store = totals.data
    keys = [k for k, p in store._key_partition.items() if p in active]
    values = {}
    for key in keys:
        raw = read_local(totals, key)
        if raw is not None:
            values[key.decode()] = list(STATE.unpack(raw))
    return web.json(
        {
            "partitions": active,
            "rebalancing": bool(app.rebalancing),
            "recovering": bool(app.in_recovery),
            "keys": values,
        }
    )


if __name__ == "__main__":
    app.main()
