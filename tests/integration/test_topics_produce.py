"""Topics and the bulk producer against a real Tansu broker, read back with kafka-python."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner import murmur2

from scoring.errors import InputError
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.connection import KafkaSettings
from streams.kafka.produce import KIND_ROLE, Record, produce_file, produce_records
from streams.kafka.topics import TopicNames, admin_client, check_topics, create_topics

pytestmark = pytest.mark.slow


def fresh_names() -> TopicNames:
    return TopicNames(f"it-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def settings(broker: EmbeddedBroker) -> KafkaSettings:
    return KafkaSettings.from_env(broker.url, environ={})


def list_topics(settings: KafkaSettings) -> set[str]:
    with admin_client(settings) as admin:
        return set(admin.list_topics())


def consume_all(settings: KafkaSettings, topics: list[str], expected: int) -> list[Any]:
    """Every message of ``topics`` from the beginning, until ``expected`` have arrived."""
    consumer = KafkaConsumer(
        enable_auto_commit=False, auto_offset_reset="earliest", **settings.kafka_python_kwargs()
    )
    try:
        tps = [
            TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + 30
        while len(out) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        # nothing beyond what was sent
        for batch in consumer.poll(timeout_ms=500).values():
            out.extend(batch)
        return out
    finally:
        consumer.close()


def test_every_kind_routes_to_an_input_role() -> None:
    assert set(KIND_ROLE.values()) == {"loans", "repayments", "transactions"}
    assert {"opened", "payment_received", "bounced_debit"} <= set(KIND_ROLE)


def test_create_and_check_topics(settings: KafkaSettings) -> None:
    names = fresh_names()
    with pytest.raises(InputError, match="missing topics"):
        check_topics(settings, names)
    assert not set(names.all) & list_topics(settings), "checking must not auto-create"

    assert create_topics(settings, names, partitions=3) == dict.fromkeys(names.all, "created")
    assert check_topics(settings, names) == 3
    assert check_topics(settings, names, partitions=3) == 3
    assert set(names.all) <= list_topics(settings)
    # idempotent
    assert create_topics(settings, names, partitions=3) == dict.fromkeys(names.all, "exists")
    with pytest.raises(InputError, match="co-partitioning"):
        create_topics(settings, names, partitions=5)
    with pytest.raises(InputError, match="must all have 5 partitions"):
        check_topics(settings, names, partitions=5)


def test_mismatched_existing_topic_is_refused(settings: KafkaSettings) -> None:
    names = fresh_names()
    create_topics(settings, [names.repayments], partitions=2)
    with pytest.raises(InputError, match=rf"{names.repayments} has 2"):
        create_topics(settings, names, partitions=3)
    assert names.loans not in list_topics(settings), "nothing created when one count is wrong"
    create_topics(settings, [t for t in names.all if t != names.repayments], partitions=3)
    with pytest.raises(InputError, match=rf"{names.repayments}=2"):
        check_topics(settings, names)


def _event(i: int, customer: str, kind: str) -> dict[str, Any]:
    base = {"event_id": f"e{i}", "customer_id": customer, "event_time": "2024-02-01T10:00:00Z"}
    return {**base, "kind": kind, "loan_id": "L1", "account_id": "A1", "amount": float(i)}


def test_produce_file_routes_keys_and_partitions(settings: KafkaSettings, tmp_path: Path) -> None:
    names = fresh_names()
    partitions = 3
    create_topics(settings, names, partitions)
    kinds = {"loans": "changed", "repayments": "payment_received", "transactions": "debit"}
    customers = [f"CUST-{n:03d}" for n in range(25)] + ["ünïcode-客户"]
    # (line, topic, key) in file order
    entries: list[tuple[bytes, str, bytes | None]] = []
    for i in range(300):
        role = ("loans", "repayments", "transactions")[i % 3]
        cust = customers[(i * 7) % len(customers)]
        line = json.dumps(_event(i, cust, kinds[role]), ensure_ascii=False).encode()
        entries.append((line, names.by_role(role), cust.encode()))
    # unroutable lines go raw to the chosen topic; a readable customer id still keys the line,
    # so its dead letter lands on the customer's partition
    unroutable: list[tuple[bytes, bytes | None]] = [
        (b"this is not json", None),
        (b'{"customer_id": "CUST-001", "kind": "teleport"}', b"CUST-001"),
        (b'{"customer_id": "CUST-002"}', b"CUST-002"),
        (b'["kind", "debit"]', None),
        (b'{"kind": "debit", "customer_id": "trunc', None),
    ]
    for j, (bad, key) in enumerate(unroutable):
        entries.insert(17 * (j + 1), (bad, names.repayments, key))
    lines = [line for line, _, _ in entries]
    expected: dict[str, list[tuple[bytes | None, bytes]]] = defaultdict(list)
    for line, topic, key in entries:
        expected[topic].append((key, line))
    body = b"\n".join(lines[:50]) + b"\n\n  \n" + b"\r\n".join(lines[50:]) + b"\n"
    path = tmp_path / "events.jsonl"
    path.write_bytes(body)

    summary = produce_file(settings, path, names, unroutable_topic="repayments")

    assert summary.counts == {t: len(v) for t, v in expected.items()}
    assert summary.unroutable == len(unroutable)
    assert summary.total == len(lines)

    got = consume_all(settings, list(names.inputs), summary.total)
    assert len(got) == len(lines)
    by_topic: dict[str, list[Any]] = defaultdict(list)
    for m in got:
        by_topic[m.topic].append(m)
    partition_of_customer: dict[bytes, set[int]] = defaultdict(set)
    for topic, want in expected.items():
        msgs = by_topic[topic]
        assert Counter((m.key, m.value) for m in msgs) == Counter(want)
        for m in msgs:
            if m.key is not None:
                # Kafka's default partitioner (kafka-python's own murmur2), as the worker expects
                assert m.partition == (murmur2(m.key) & 0x7FFFFFFF) % partitions
                partition_of_customer[m.key].add(m.partition)
        # per-customer order within a topic is the file's order
        for key in {k for k, _ in want if k is not None}:
            sent = [v for k, v in want if k == key]
            received = sorted((m for m in msgs if m.key == key), key=lambda m: m.offset)
            assert [m.value for m in received] == sent
    assert all(len(p) == 1 for p in partition_of_customer.values()), "co-partitioned by customer"
    assert not by_topic.keys() - set(names.inputs)


def test_produce_refuses_missing_topics(settings: KafkaSettings, tmp_path: Path) -> None:
    names = fresh_names()
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(_event(1, "C1", "credit")) + "\n")
    with pytest.raises(InputError, match="missing topics"):
        produce_file(settings, path, names)
    ghost = f"{names.prefix}.ghost"
    with pytest.raises(InputError, match="does not exist"):
        produce_records(settings, [(ghost, b"C1", b"{}")])
    assert ghost not in list_topics(settings), "the producer must not auto-create topics"


def test_bad_unroutable_topic(settings: KafkaSettings, tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("{}\n")
    with pytest.raises(InputError, match="unroutable topic"):
        produce_file(settings, path, fresh_names(), unroutable_topic="alerts")


def test_pacing_flushes_before_waiting(settings: KafkaSettings) -> None:
    names = fresh_names()
    create_topics(settings, names, partitions=2)
    records: list[Record] = [(names.loans, f"C{i}".encode(), f"v{i}".encode()) for i in range(6)]
    seen_at_call: list[int] = []

    def pace(rec: Record) -> float:
        i = int(rec[2][1:])
        if i == 4:  # 0..2 were flushed before the pause at 3; 3 waits in an open batch
            seen_at_call.append(len(consume_all(settings, [names.loans], 3)))
        return 0.05 if i == 3 else 0.0

    assert produce_records(settings, records, pace=pace) == {names.loans: 6}
    assert seen_at_call == [3]
    assert sorted(m.value for m in consume_all(settings, [names.loans], 6)) == [
        r[2] for r in records
    ]
