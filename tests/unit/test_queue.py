"""The collection queue: items from table entries, the open-alert index, merging workers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from schemas.codec import decode
from schemas.events import Alert
from streams.core.entry import Entry
from streams.core.exposure import expected_loss
from streams.core.pipeline import Pipeline
from streams.core.policy import Observation
from streams.core.queue import (
    OpenAlertIndex,
    QueueAlert,
    QueueItem,
    merge,
    order_key,
    queue_item,
)
from streams.core.records import InRecord
from streams.sim.simulate import SimConfig, Simulation
from tests.conftest import expert_scorecard


def open_alerts(alerts: Iterable[Alert]) -> dict[str, dict[str, Alert]]:
    """Per customer, its alerts still open after these records (by alert id: the last record)."""
    out: dict[str, dict[str, Alert]] = {}
    for a in alerts:
        mine = out.setdefault(a.customer_id, {})
        if a.status in ("opened", "escalated"):
            mine[a.alert_id] = a
        else:
            mine.pop(a.alert_id, None)
    return {c: m for c, m in out.items() if m}


@pytest.fixture(scope="module")
def book() -> dict[str, Any]:
    """A simulated book through the pipeline in batches, as a worker runs it: the table, the
    index noted batch by batch, every alert record and each customer's last rescoring."""
    sim = Simulation(SimConfig(customers=80, months=8, seed=4))
    recs = [InRecord(r.topic, 0, i, r.key, r.value, 1.0e9) for i, r in enumerate(sim.records())]
    last: dict[str, Observation] = {}
    table: dict[str, bytes] = {}
    pipe = Pipeline(expert_scorecard(), load=table.get, observe=lambda o: last.update({o[0]: o}))
    index = OpenAlertIndex(pipe)
    alerts: list[Alert] = []
    for i in range(0, len(recs), 997):
        pipe.entries.clear()
        res = pipe.process(recs[i : i + 997])
        table.update(res.dirty)
        for cid in res.dirty:
            index.note(cid, pipe.entries[cid].policy)
        alerts += [decode(o.value, Alert) for o in res.outputs if o.topic == "alerts"]
    return {"pipe": pipe, "table": table, "index": index, "alerts": alerts, "last": last}


def test_the_queue_lists_every_open_alert_by_priority(book: dict[str, Any]) -> None:
    """Exactly the customers whose alerts were opened and neither resolved nor expired, with
    those alerts and their severities; each item's picture is its latest rescoring's (score,
    grade, DPD, PD, exposure); highest expected loss first."""
    pipe, table, last = book["pipe"], book["table"], book["last"]
    want = open_alerts(book["alerts"])
    assert len(want) > 5
    answer = book["index"].answer(10_000, table.get)
    assert answer.customers == len(want) and len(answer.items) == len(want)
    assert answer.open_alerts == sum(len(m) for m in want.values())
    assert [order_key(i) for i in answer.items] == sorted(order_key(i) for i in answer.items)
    assert answer.items[0].priority > answer.items[-1].priority
    for item in answer.items:
        mine = want[item.customer_id]
        assert {a.alert_id: a.severity for a in item.alerts} == {
            k: a.severity for k, a in mine.items()
        }
        assert {a.alert_id: a.signal for a in item.alerts} == {k: a.signal for k, a in mine.items()}
        o = last[item.customer_id]
        assert (item.score, item.dpd, item.pd, item.exposure) == (o.score, o.dpd, o.pd, o.exposure)
        assert item.grade == pipe.cs.grade_names[o.grade]
        assert item.priority == expected_loss(o.pd, o.exposure)
        # the headline alert is the most severe open one
        rank = ("blue", "yellow", "orange", "red")
        assert rank.index(item.severity) == max(rank.index(a.severity) for a in item.alerts)
        assert (item.alert_id, item.signal) == (item.alerts[0].alert_id, item.alerts[0].signal)
        entry = Entry.from_bytes(table[item.customer_id], item.customer_id)
        assert item.score == entry.policy.last_score


def test_max_dpd_keeps_the_customers_at_most_that_late(book: dict[str, Any]) -> None:
    """``max_dpd`` drops the customers further past due (those in default go to recovery) and
    counts only those kept; the order of the rest is unchanged."""
    table, index = book["table"], book["index"]
    every = index.answer(10_000, table.get)
    dpds = sorted({i.dpd for i in every.items})
    assert len(dpds) > 2  # the book has customers at several DPDs with open alerts
    cut = dpds[len(dpds) // 2]
    kept = index.answer(10_000, table.get, max_dpd=cut)
    assert kept.items == [i for i in every.items if i.dpd <= cut]
    assert 0 < kept.customers == len(kept.items) < every.customers
    assert kept.open_alerts == sum(len(i.alerts) for i in kept.items)
    assert index.answer(2, table.get, max_dpd=cut).items == kept.items[:2]


def test_the_max_dpd_parameter_is_a_whole_number() -> None:
    from streams.kafka.web import queue_max_dpd

    assert queue_max_dpd(None) == (True, None)
    assert queue_max_dpd("0") == (True, 0) and queue_max_dpd("89") == (True, 89)
    for bad in ("-1", "1.5", "x", "", "100000", " 5"):
        assert queue_max_dpd(bad) == (False, None), bad


def test_a_rebuild_from_the_table_answers_the_same(book: dict[str, Any]) -> None:
    """A restarted worker (its index rebuilt from the recovered table) answers byte for byte
    what the running one answered; ``limit`` cuts the same order."""
    table = book["table"]
    fresh = OpenAlertIndex(book["pipe"])
    fresh.rebuild((cid.encode(), raw) for cid, raw in table.items())
    assert len(fresh) == len(book["index"])
    assert fresh.answer(10_000, table.get) == book["index"].answer(10_000, table.get)
    top = fresh.answer(3, table.get)
    assert top.items == fresh.answer(10_000, table.get).items[:3]
    assert top.customers == len(fresh)


def test_the_index_follows_the_table(book: dict[str, Any]) -> None:
    """A customer whose alerts closed leaves the queue; one whose entry is gone from the table
    (its partition moved) is dropped; a changed entry is read again."""
    pipe, table = book["pipe"], dict(book["table"])
    index = OpenAlertIndex(pipe)
    index.rebuild((cid.encode(), raw) for cid, raw in table.items())
    first = index.answer(10_000, table.get).items
    a, b, c = first[0].customer_id, first[1].customer_id, first[2].customer_id
    closed = Entry.from_bytes(table[a], a)
    closed.policy = msgspec_replace(closed.policy, open=())
    table[a] = closed.to_bytes()
    index.note(a, closed.policy)
    del table[b]
    moved = Entry.from_bytes(table[c], c)
    lone = moved.policy.open[:1]
    moved.policy = msgspec_replace(moved.policy, open=lone)
    table[c] = moved.to_bytes()
    got = {i.customer_id: i for i in index.answer(10_000, table.get).items}
    assert a not in got and b not in got
    assert [x.alert_id for x in got[c].alerts] == [lone[0].alert_id]
    assert len(got) == len(first) - 2 and len(index) == len(first) - 2


def msgspec_replace(struct: Any, **changes: Any) -> Any:
    import msgspec

    return msgspec.structs.replace(struct, **changes)


def test_queue_item_is_none_without_open_alerts(book: dict[str, Any]) -> None:
    pipe, table = book["pipe"], book["table"]
    quiet = [c for c in table if c not in open_alerts(book["alerts"])]
    assert quiet
    assert queue_item(pipe, quiet[0], Entry.from_bytes(table[quiet[0]], quiet[0])) is None


def _item(cid: str, priority: float) -> QueueItem:
    alert = QueueAlert(alert_id=f"al-{cid}", signal="dpd_bucket", severity="red",
                       opened_at="2025-03-01T00:00:00Z")  # fmt: skip
    return QueueItem(
        customer_id=cid, priority=priority, pd=0.1, exposure=priority * 10, grade="F",
        score=500.0, dpd=40, treatment="letter", alert_id=alert.alert_id, signal=alert.signal,
        severity=alert.severity, opened_at=alert.opened_at, alerts=[alert],
        as_of="2025-03-02T00:00:00Z",
    )  # fmt: skip


def test_merge_takes_the_top_capacity_over_workers_once_each() -> None:
    w1 = [_item("a", 900.0), _item("c", 300.0), _item("e", 100.0)]
    w2 = [_item("b", 500.0), _item("d", 300.0), _item("a", 800.0)]  # "a" answered twice
    got = merge([w1, w2], 4)
    assert [i.customer_id for i in got] == ["a", "b", "c", "d"]  # ties by customer id
    assert got[0].priority == 900.0
    assert [i.customer_id for i in merge([w1, w2], 10)] == ["a", "b", "c", "d", "e"]
    assert merge([[], []], 3) == []


def test_the_limit_parameter_is_a_bounded_whole_number() -> None:
    from streams.kafka.web import QUEUE_LIMIT, queue_limit

    assert queue_limit(None, 10_000) == QUEUE_LIMIT and queue_limit(None, 7) == 7
    assert queue_limit("25", 10_000) == 25 and queue_limit("10000", 10_000) == 10_000
    for bad in ("0", "-1", "1.5", "x", "", "10001", "9" * 40, " 5"):
        assert queue_limit(bad, 10_000) is None, bad


def test_the_work_list_as_csv_and_worker_urls() -> None:
    import csv
    import io

    from scoring.errors import InputError
    from streams.cli.queue import COLUMNS, as_csv, worker_url

    rows = list(csv.reader(io.StringIO(as_csv([_item("b", 500.0), _item("a", 20.5)]))))
    assert rows[0] == list(COLUMNS)
    assert [r[:3] for r in rows[1:]] == [["1", "b", "500.00"], ["2", "a", "20.50"]]
    assert worker_url("w1:6066/") == "http://w1:6066"
    assert worker_url("https://w2:6066") == "https://w2:6066"
    with pytest.raises(InputError, match="not a worker URL"):
        worker_url("ftp://w3")
