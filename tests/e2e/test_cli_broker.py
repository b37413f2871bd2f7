"""`riskmon broker`, `riskmon produce` and `riskmon schemas` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from streams.kafka.connection import KafkaSettings
from streams.kafka.topics import TopicNames, check_topics
from tests.e2e.printing import Printing, alive

pytestmark = pytest.mark.slow

RISKMON = str(Path(sys.executable).parent / "riskmon")


@dataclass
class BrokerCmd(Printing):
    """A running `riskmon broker`, its address and its Tansu child."""

    url: str = ""
    tansu_pid: int = 0


def start_broker(*args: str) -> BrokerCmd:
    cmd = BrokerCmd.start([RISKMON, "broker", "--port", "0", *args])
    m = cmd.read_until(r"listening on (\S+) \(Tansu pid (\d+)\)")
    cmd.url, cmd.tansu_pid = m.group(1), int(m.group(2))
    cmd.read_until(r"Ctrl-C stops the broker")
    return cmd


@pytest.fixture
def running() -> Iterator[list[BrokerCmd]]:
    """Started brokers; whatever a test leaves running is killed here by PID."""
    started: list[BrokerCmd] = []
    yield started
    for cmd in started:
        if cmd.proc.poll() is None:
            cmd.proc.kill()
            cmd.proc.wait(10)
        if cmd.tansu_pid and alive(cmd.tansu_pid):
            os.kill(cmd.tansu_pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_broker_serves_topics_and_stops_cleanly(
    sig: signal.Signals, running: list[BrokerCmd], tmp_path: Path
) -> None:
    cmd = start_broker("--partitions", "2", "--topic-prefix", "e2e")
    running.append(cmd)
    assert alive(cmd.tansu_pid)
    names = TopicNames("e2e")
    settings = KafkaSettings.from_env(cmd.url, environ={})
    assert check_topics(settings, names, partitions=2) == 2
    assert {f"  topic {t}: 2 partitions (created)" for t in names.all} <= set(cmd.seen)

    events = tmp_path / "events.jsonl"
    rows = [
        {"event_id": "e1", "customer_id": "C1", "event_time": "2024-01-01T00:00:00Z",
         "kind": "credit", "account_id": "A1", "amount": 10.0},
        {"event_id": "e2", "customer_id": "C2", "event_time": "2024-01-01T00:00:00Z",
         "kind": "opened", "loan_id": "L1"},
    ]  # fmt: skip
    events.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    env = {**os.environ, "RISKMON_BROKER": cmd.url, "RISKMON_TOPIC_PREFIX": "e2e"}
    out = subprocess.run(
        [RISKMON, "produce", str(events), "--json"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["counts"] == {"e2e.loans": 1, "e2e.repayments": 0, "e2e.transactions": 2}
    assert summary["unroutable"] == 1

    cmd.proc.send_signal(sig)
    assert cmd.proc.wait(timeout=20) == 0
    cmd.read_until("stopping broker")
    deadline = time.monotonic() + 5
    while alive(cmd.tansu_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(cmd.tansu_pid), "the Tansu child outlived `riskmon broker`"
    host, port = cmd.url.rsplit(":", 1)
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=1):
        pass


def test_user_errors_are_one_line_exit_2(running: list[BrokerCmd], tmp_path: Path) -> None:
    cmd = start_broker("--partitions", "1")
    running.append(cmd)
    port = cmd.url.rsplit(":", 1)[1]
    cases = [
        [RISKMON, "broker", "--port", port],  # port taken
        [RISKMON, "broker", "--port", "0", "--topic-prefix", "bad prefix!"],
        [RISKMON, "produce", str(tmp_path / "missing.jsonl"), "--broker", cmd.url],
        [RISKMON, "produce", str(tmp_path / "x.jsonl"), "--broker", cmd.url,
         "--topic-prefix", "nobody"],  # topics do not exist
        [RISKMON, "produce", str(tmp_path / "x.jsonl"), "--broker", cmd.url,
         "--security-protocol", "SASL_SSL"],  # no credentials
    ]  # fmt: skip
    (tmp_path / "x.jsonl").write_text("{}\n")
    for argv in cases:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (argv, out.stdout, out.stderr)
        err = out.stderr.strip()
        assert err.startswith("riskmon: error: ") and "\n" not in err, err
        assert "Traceback" not in out.stderr
    cmd.proc.send_signal(signal.SIGINT)
    assert cmd.proc.wait(timeout=20) == 0


def test_schemas_command_writes_valid_schemas(tmp_path: Path) -> None:
    out = subprocess.run(
        [RISKMON, "schemas", "--out", str(tmp_path / "s")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    files = sorted(Path(p).name for p in out.stdout.split())
    assert files == sorted(
        f"{n}.schema.json"
        for n in ("loan_event", "repayment_event", "transaction_event", "delinquency_status",
                  "line_event",
                  "alert", "grade_change", "dead_letter", "model_record")
    )  # fmt: skip
    schema = json.loads((tmp_path / "s" / "repayment_event.schema.json").read_text())
    v = jsonschema.Draft202012Validator(schema)
    payment = {"event_id": "p-1", "customer_id": "C9", "event_time": "2024-03-05T12:00:00Z",
               "source": "payments", "kind": "payment_received", "loan_id": "L9",
               "amount": 1500.0}  # fmt: skip
    assert not list(v.iter_errors(payment))
    assert list(v.iter_errors({**payment, "kind": "instalment_due"}))  # needs seq + due date


KCAT = Path(__file__).resolve().parents[2] / "scripts" / "kcat"


def test_shell_users_produce_from_stdin_and_read_with_kcat(running: list[BrokerCmd]) -> None:
    """`riskmon produce -` takes JSON lines on standard input; Debian's kcat, through
    scripts/kcat (the newer librdkafka), lists the broker's topics, produces a keyed record
    and reads back what riskmon produced."""
    cmd = start_broker("--partitions", "2", "--topic-prefix", "sh")
    running.append(cmd)
    env = {**os.environ, "RISKMON_BROKER": cmd.url, "RISKMON_TOPIC_PREFIX": "sh"}
    line = (
        '{"event_id": "s1", "customer_id": "C7", "event_time": "2024-01-01T00:00:00Z", '
        '"kind": "credit", "account_id": "A7", "amount": 5.0}\n'
    )
    out = subprocess.run(
        [RISKMON, "produce", "-", "--json"], input=line, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"]["sh.transactions"] == 1

    def kcat(*args: str, stdin: str | None = None) -> str:
        got = subprocess.run(
            [str(KCAT), "-b", cmd.url, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert got.returncode == 0, got.stderr
        return got.stdout

    listing = kcat("-L")
    assert all(f'topic "sh.{role}"' in listing for role in ("loans", "repayments"))
    kcat("-t", "sh.loans", "-P", "-K", "|", stdin="C8|{}\n")
    read = kcat("-t", "sh.transactions", "-C", "-o", "beginning", "-e", "-f", "%k %s\n")
    assert read.strip() == f"C7 {line.strip()}"
    assert kcat("-t", "sh.loans", "-C", "-o", "beginning", "-e", "-f", "%k %s\n").strip() == "C8 {}"
