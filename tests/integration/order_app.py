"""A minimal Faust app on riskmon's batch seam with topic alignment: it records, per
partition, the order in which the aligned agent handed it the records of three co-partitioned
topics.

Topics: ``$ORDER_PREFIX.loans``, ``.repayments``, ``.transactions`` (riskmon's input roles, so
riskmon's producer chains them with ``ORDER_HEADER``); values are ASCII sequence numbers.
``GET /order/`` returns ``{partition: [value, ...]}`` in handed-over order.
``ORDER_USE_HEADER=0`` turns the order header off (high-water marks only).

Run: ``python tests/integration/order_app.py worker --web-bind 127.0.0.1 --web-port N``.
"""

from __future__ import annotations

import os
from typing import Any

import faust

from streams.kafka.agent import batched_agent
from streams.kafka.consumer import APP_SETTINGS
from streams.kafka.tables import RecordBatch
from streams.kafka.topics import ORDER_HEADER

PREFIX = os.environ.get("ORDER_PREFIX", "order")
PARTITIONS = int(os.environ.get("ORDER_PARTITIONS", "2"))

app = faust.App(
    f"{PREFIX}-app",
    broker=f"kafka://{os.environ.get('ORDER_BROKER', '127.0.0.1:9092')}",
    datadir=os.environ.get("ORDER_DATADIR", "./order-data"),
    store="memory://",
    broker_session_timeout=6.0,
    topic_partitions=PARTITIONS,
    **APP_SETTINGS,
)
inputs = app.topic(
    *(f"{PREFIX}.{role}" for role in ("loans", "repayments", "transactions")),
    key_type=bytes,
    value_type=bytes,
    value_serializer="raw",
)
seen: dict[int, list[str]] = {}


async def record(batch: RecordBatch) -> None:
    seen.setdefault(batch.partition, []).extend(
        (value or b"").decode() for _offset, _key, value, _ts, _hs in batch.records
    )


batched_agent(
    app,
    inputs,
    record,
    name="order",
    align=True,
    order_header=ORDER_HEADER if os.environ.get("ORDER_USE_HEADER", "1") == "1" else None,
)


@app.page("/order/")
async def order(web: Any, request: Any) -> Any:
    return web.json({str(p): vs for p, vs in seen.items()})


if __name__ == "__main__":
    app.main()
