"""The collection queue end to end: a real worker on the real broker answers ``GET /queue`` with
exactly the open alerts the backtest of the same book leaves open, ``riskmon queue`` turns that
into a work list, and a restarted worker (its table recovered from the changelog) answers the
same."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from scoring import artifact
from streams.core.queue import MAX_LIMIT, OpenAlertIndex, QueueAnswer, QueueItem
from streams.evaluation.backtest import backtest
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.produce import produce_file
from streams.sim.simulate import SimConfig, Simulation, write_jsonl
from tests.integration.test_worker import handled
from tests.integration.workerproc import RISKMON, Deployment, WorkerProcess, wait_until
from tests.unit.test_queue import open_alerts

pytestmark = pytest.mark.slow

TOKEN = "queue-s3cret"
TOKEN_ENV = {"RISKMON_API_TOKEN": TOKEN}


def riskmon_queue(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKMON_")}
    return subprocess.run(
        [RISKMON, "queue", *args], capture_output=True, text=True, timeout=60, env=env
    )


def queue_of(w: WorkerProcess, limit: int = MAX_LIMIT) -> QueueAnswer:
    status, body = w.get(f"/queue?limit={limit}")
    assert status == 200, body
    return msgspec.json.decode(body, type=QueueAnswer)


def test_the_queue_is_the_backtests_open_alerts_before_and_after_a_restart(
    broker: EmbeddedBroker,
    expert_card_path: Path,
    tmp_path: Path,
    workers: Callable[..., WorkerProcess],
) -> None:
    dep = Deployment(broker, expert_card_path, tmp_path, partitions=2)
    path = tmp_path / "book.jsonl"
    with path.open("wb") as fh:
        write_jsonl(Simulation(SimConfig(customers=60, months=4, seed=21)).records(), fh)
    sent = produce_file(dep.settings, path, dep.names, "transactions").total
    w = workers(dep, "first", env=TOKEN_ENV).wait_ready()
    wait_until("the book processed", lambda: handled([w]) >= sent, 180)

    # the reference: the backtest of the same file, its table and its alert records
    bt = backtest(path, artifact.load(expert_card_path), dep.partitions)
    stored = bt.pipeline.stored() if bt.pipeline is not None else {}
    reference = OpenAlertIndex(bt.pipeline)  # type: ignore[arg-type]
    reference.rebuild((cid.encode(), raw) for cid, raw in stored.items())
    want = reference.answer(MAX_LIMIT, stored.get)
    still_open = open_alerts(bt.alerts)
    alerted = {a.customer_id for a in bt.alerts}
    assert 5 <= want.customers == len(still_open) < len(alerted)
    assert {i.customer_id: {a.alert_id for a in i.alerts} for i in want.items} == {
        c: set(m) for c, m in still_open.items()
    }

    got = queue_of(w)
    assert got == want
    assert queue_of(w, 3) == QueueAnswer(
        customers=want.customers, open_alerts=want.open_alerts, items=want.items[:3]
    )
    assert got.items[0].priority > got.items[-1].priority
    status, body = w._http("/queue", 10, auth=False)
    assert status == 401 and b"bearer token" in body
    for bad in ("0", "x", str(MAX_LIMIT + 1), "-3"):
        status, body = w.get(f"/queue?limit={bad}")
        assert status == 400 and b"limit must be" in body, bad
    cut = sorted(i.dpd for i in want.items)[len(want.items) // 2]
    late = reference.answer(MAX_LIMIT, stored.get, max_dpd=cut)
    assert 0 < late.customers < want.customers
    status, body = w.get(f"/queue?limit={MAX_LIMIT}&max_dpd={cut}")
    assert status == 200 and msgspec.json.decode(body, type=QueueAnswer) == late
    status, body = w.get("/queue?max_dpd=x")
    assert status == 400 and b"max_dpd must be" in body
    status, body = w.get("/queue")  # the default limit
    assert status == 200 and len(json.loads(body)["items"]) == min(100, want.customers)

    # the work list
    run = riskmon_queue("--worker", w.url, "--capacity", "4", "--token", TOKEN, "--format", "json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["customers_with_open_alerts"] == want.customers
    assert msgspec.convert(doc["items"], list[QueueItem]) == want.items[:4]
    run = riskmon_queue("--worker", w.url, "--capacity", "4", "--token", TOKEN,
                        "--max-dpd", str(cut))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"customers with open alerts at {cut} DPD or less" in run.stdout.splitlines()[-1]
    assert [ln.split()[1] for ln in run.stdout.splitlines()[1:-1]] == [
        i.customer_id for i in late.items[:4]
    ]
    run = riskmon_queue("--worker", w.url.removeprefix("http://"), "--capacity", "4",
                        "--token", TOKEN)  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:3] == ["rank", "customer_id", "priority"]
    assert [ln.split()[1] for ln in lines[1:5]] == [i.customer_id for i in want.items[:4]]
    assert lines[5].startswith(f"4 of {want.customers} customers with open alerts on 1 worker")
    for args, says in (
        (("--token", "wrong"), "refused the request (401, a wrong token)"),
        ((), "refused the request (401, no token"),
    ):
        run = riskmon_queue("--worker", w.url, "--capacity", "4", *args)
        assert run.returncode == 2 and says in run.stderr, run.stderr
        assert "Traceback" not in run.stderr and len(run.stderr.splitlines()) == 1
    gone = f"http://127.0.0.1:{free_port()}"
    run = riskmon_queue("--worker", w.url, "--worker", gone, "--capacity", "4", "--token", TOKEN)
    assert run.returncode == 2 and f"worker {gone} is unreachable" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr

    # a restart: the table comes back from its changelog, the queue from the table
    w.stop()
    w2 = workers(dep, "second", env=TOKEN_ENV).wait_ready()
    wait_until("the restarted worker's queue", lambda: queue_of(w2) == want, 30)
