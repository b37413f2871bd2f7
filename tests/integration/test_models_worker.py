"""Model rollout on the real broker with real workers: a card published mid-stream is taken at a
batch boundary without a restart, a SIGKILL during the switch recovers to the same records, and
a corrupt card on the models topic is refused, counted and logged while the worker keeps its
cards. The expected records come from the pure pipeline switched at the same point.

Champion: the expert card of tests/conftest.py; challenger: the bundled default card.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas.codec import decode
from schemas.events import Alert, GradeChange
from scoring import artifact
from streams.core.models import ModelSet, bucket, encode_model
from streams.core.pipeline import Pipeline
from streams.core.records import InRecord
from tests.conftest import expert_scorecard, loan_book
from tests.integration.test_worker import (
    Event,
    committed,
    customers_on,
    event_time,
    feed,
    handled,
    steps,
    true_ends,
)
from tests.integration.workerproc import RISKMON, Deployment, WorkerProcess, wait_until

pytestmark = pytest.mark.slow

DEFAULT = artifact.load(artifact.default_scorecard_path())
SHARE = 50.0


def book() -> tuple[list[str], list[list[Event]]]:
    """Customers on both partitions and in both arms, most deteriorating; event-time steps."""
    custs = customers_on(2, 4)
    arms = {bucket(c) < SHARE for c in custs}
    assert arms == {True, False}, "the book needs customers in both arms"
    events = loan_book({c: i % 3 != 2 for i, c in enumerate(custs)}, months=4)
    return custs, steps(events)


def reference(groups: Sequence[Sequence[Event]], switch_at: int, models: ModelSet) -> list[Any]:
    """The pure pipeline over the steps, one event per batch, ``models`` from step
    ``switch_at`` on: its alert and grade-change records as dicts."""
    pipe = Pipeline(expert_scorecard())
    table: dict[str, bytes] = {}
    pipe.load = table.get
    out = []
    i = 0
    for n, group in enumerate(groups):
        if n == switch_at:
            pipe.set_models(models)
        for ev in sorted(group, key=event_time):
            pipe.entries.clear()
            res = pipe.process([InRecord(ev[0], 0, i, ev[1], ev[2], 1.0e9 + i)])
            i += 1
            table.update(res.dirty)
            out.extend(o for o in res.outputs if o.topic in ("alerts", "grades"))
    return [record_dict(o.topic, o.value) for o in out]


def record_dict(topic: str, value: bytes) -> dict[str, Any]:
    """An alert or grade change without what may differ between runs (when it was sent and
    where its trigger sat in Kafka)."""
    d = msgspec.to_builtins(decode(value, Alert if topic == "alerts" else GradeChange))
    for f in ("emitted_at", "trigger_partition", "trigger_offset"):
        d.pop(f, None)
    return d


def sent(dep: Deployment) -> list[dict[str, Any]]:
    """The worker's alerts and grade changes, a re-emitted record (after a crash) once."""
    got: dict[str, dict[str, Any]] = {}
    for topic in ("alerts", "grades"):
        for r in dep.read(topic):
            d = record_dict(topic, r.value)
            assert got.setdefault(d["event_id"], d) == d, "a re-emitted record differs"
    return list(got.values())


def assert_same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    g = {d["event_id"]: d for d in got}
    w = {d["event_id"]: d for d in want}
    assert sorted(g) == sorted(w), (sorted(set(g) - set(w)), sorted(set(w) - set(g)))
    for k in w:
        assert g[k] == w[k], k


def publish(dep: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [RISKMON, "publish", "--broker", dep.broker.url, "--topic-prefix", dep.prefix, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def send_models(dep: Deployment, records: list[tuple[bytes, bytes | None]]) -> None:
    """Raw records to the models topic (which the worker created at its start)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**dep.settings.kafka_python_kwargs())
    try:
        for key, value in records:
            producer.send(dep.names.models, key=key, value=value, partition=0).get(timeout=30)
    finally:
        producer.close()


def switched(w: WorkerProcess, n: int) -> Callable[[], bool]:
    return lambda: w.metric_sum("riskmon_model_switches_total") >= n


def arms_of(w: WorkerProcess) -> dict[str, str]:
    """Active arm -> card version, from riskmon_model_info."""
    return {
        dict(labels)["arm"]: dict(labels)["scorecard_version"]
        for (name, labels), v in w.metrics().items()
        if name == "riskmon_model_info" and v == 1
    }


@pytest.fixture
def default_card(tmp_path: Path) -> Path:
    path = tmp_path / "default.json"
    path.write_text(artifact.dumps(DEFAULT))
    return path


def test_a_challenger_published_mid_stream_takes_its_customers_without_a_restart(
    dep: Deployment, workers: Callable[..., WorkerProcess], default_card: Path
) -> None:
    _custs, groups = book()
    half = len(groups) // 2
    w = workers(dep).wait_ready()
    pid = w.pid
    assert arms_of(w) == {"champion": expert_scorecard().version}
    feed(dep, [w], groups[:half])
    p = publish(dep, str(default_card), "--role", "challenger", "--share", str(SHARE))
    assert p.returncode == 0, p.stderr
    wait_until("the worker takes the challenger", switched(w, 1), timeout=30)
    feed(dep, [w], groups[half:])
    assert w.alive() and w.pid == pid  # no restart
    assert arms_of(w) == {"challenger": DEFAULT.version, "champion": expert_scorecard().version}

    want = reference(groups, half, ModelSet(expert_scorecard(), DEFAULT, SHARE))
    got = sent(dep)
    assert_same(got, want)
    # before the switch everyone is the champion's; after it, the challenger's customers get
    # the challenger's grades and alerts (and re-based references: a grade change each)
    arms = {(d["arm"], d["scorecard_version"], bucket(d["customer_id"]) < SHARE) for d in got}
    assert ("challenger", DEFAULT.version, True) in arms
    assert ("champion", expert_scorecard().version, False) in arms
    assert not {a for a in arms if a[0] == "challenger" and not a[2]}
    assert w.metric_sum("riskmon_arm_rescorings_total", arm="challenger") > 0
    assert w.metric_sum("riskmon_arm_rescorings_total", arm="champion") > 0
    alerts = [d for d in got if "alert_id" in d]
    assert w.metric_sum("riskmon_arm_alerts_total") == len(alerts)

    # promote, retire the trial, roll back: each publication taken by the running worker
    steps_ = (
        ([str(default_card), "--role", "champion"], {"challenger": DEFAULT.version}),
        (["--role", "challenger", "--retire"], {}),
        ([str(dep.scorecard), "--role", "champion"], {}),
    )
    champions = (DEFAULT.version, DEFAULT.version, expert_scorecard().version)
    for (args, challenger), champion in zip(steps_, champions, strict=True):
        n = w.metric_sum("riskmon_model_switches_total")
        p = publish(dep, *args)
        assert p.returncode == 0, p.stderr
        wait_until(f"switch {n + 1}", switched(w, int(n) + 1), timeout=30)
        assert arms_of(w) == {"champion": champion, **challenger}
    assert w.pid == pid


def test_sigkill_during_a_switch_recovers_to_the_records_of_a_run_without_it(
    dep: Deployment, workers: Callable[..., WorkerProcess], default_card: Path
) -> None:
    _custs, groups = book()
    half = len(groups) // 2
    w = workers(dep, "first").wait_ready()
    feed(dep, [w], groups[:half])
    # the records before the publication processed and persisted (committed): a record whose
    # state was not yet written when the worker dies is processed again after the restart,
    # with the cards the restarted worker has (docs/architecture.md, model rollout)
    ends = true_ends(dep)
    wait_until("every input committed to its end", lambda: committed(dep) == ends, timeout=30)
    p = publish(dep, str(default_card), "--role", "challenger", "--share", str(SHARE))
    assert p.returncode == 0, p.stderr
    w.kill()  # while the worker takes the new card (or just before)
    w2 = workers(dep, "second").wait_ready()
    # the restarted worker read the models topic before taking a batch
    assert arms_of(w2) == {"challenger": DEFAULT.version, "champion": expert_scorecard().version}
    # the rest of the book at once: a backlog, merged in send order after the restart
    backlog = [e for g in groups[half:] for e in g]
    dep.produce(backlog)
    wait_until("the backlog handled", lambda: handled([w2]) >= len(backlog), timeout=60)
    assert w2.metric_sum("riskmon_dead_letters_total") == 0
    want = reference(groups, half, ModelSet(expert_scorecard(), DEFAULT, SHARE))
    assert_same(sent(dep), want)


def test_a_corrupt_card_on_the_models_topic_is_refused_and_the_worker_keeps_its_card(
    dep: Deployment, workers: Callable[..., WorkerProcess]
) -> None:
    _custs, groups = book()
    w = workers(dep).wait_ready()
    _, value = encode_model("champion", DEFAULT)
    doc = json.loads(value)
    doc["card"]["grades"][0]["min_score"] += 1  # content no longer matches its version
    send_models(
        dep,
        [
            (b"champion", json.dumps(doc).encode()),
            (b"champion", b"\x00 not a model record"),
            (b"champion", None),
        ],
    )
    for reason in ("bad_artifact", "not_json", "champion_retired"):
        wait_until(
            f"a {reason} refusal counted",
            lambda r=reason: w.metric_sum("riskmon_model_records_rejected_total", reason=r) == 1,
            timeout=30,
        )
    assert "model record refused, cards kept (bad_artifact)" in w.log.read_text()
    feed(dep, [w], groups)
    assert w.alive() and arms_of(w) == {"champion": expert_scorecard().version}
    assert w.metric_sum("riskmon_model_switches_total") == 0
    assert_same(sent(dep), reference(groups, len(groups), ModelSet(expert_scorecard())))
