"""`riskmon demo` and `riskmon backtest` as a user runs them, in a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scoring import artifact
from streams.kafka.broker import free_port, wait_for_port
from tests.conftest import expert_scorecard
from tests.e2e.printing import Printing, alive
from tests.integration.workerproc import http_get

RISKMON = [sys.executable, "-m", "streams.cli"]


@pytest.mark.slow
def test_demo_on_a_small_book_writes_the_report_and_leaves_nothing_running(tmp_path: Path) -> None:
    """Exit 0, report.json/html with sane values, broker and worker PIDs gone afterwards."""
    out = tmp_path / "report"
    proc = subprocess.run(
        [*RISKMON, "demo", "--customers", "300", "--months", "6", "--play-seconds", "15",
         "--workers", "1", "--verify", "--report-dir", str(out)],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", proc.stdout)]
    assert len(pids) == 2, proc.stdout  # the broker and one worker
    assert not [p for p in pids if alive(p)]
    report = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html
    assert report["book"]["customers"] == 300
    # the card the report is about lies beside it
    card = json.loads((out / "scorecard.json").read_text())
    assert card["version"] == report["scorecard_version"]
    assert report["run"]["events"] > 10_000 and report["run"]["events_per_s"] > 0
    assert 0.5 < report["discrimination"]["auc"] <= 1.0
    assert report["alerts"]["opened"] > 0
    # backtest equals stream: the same alert records (ids and content, emitted_at aside)
    sv = report["stream_vs_backtest"]
    assert sv["equal"] is True and sv["streamed_alert_records"] == sv["backtest_alert_records"] > 0
    # the report's rescorings come from the workers' logs: one per rescoring, as offline
    assert sv["streamed_rescorings"] == sv["backtest_rescorings"] == report["book"]["rescorings"]
    assert "report.html" in proc.stdout and "lead time" in proc.stdout


@pytest.mark.slow
def test_demo_keep_running_takes_a_published_card_until_ctrl_c(tmp_path: Path) -> None:
    """`demo --keep-running`: after the report the broker and worker stay up on the given ports;
    a card published to the demo's broker reaches the running worker, its queue answers, and
    Ctrl-C stops everything (exit 0, no PID left)."""
    bport, wport = free_port(), free_port()
    demo = Printing.start(
        [*RISKMON, "demo", "--customers", "200", "--months", "4", "--play-seconds", "8",
         "--workers", "1", "--partitions", "2", "--report-dir", str(tmp_path / "report"),
         "--keep-running", "--broker-port", str(bport), "--web-port", str(wport)],
    )  # fmt: skip
    pids: list[int] = []
    try:
        started = r"broker (\S+) \(pid (\d+)\); workers: (\S+)/metrics \(pid (\d+)\)"
        m = demo.read_until(started, 400)
        assert m.group(1) == f"127.0.0.1:{bport}" and m.group(3) == f"http://127.0.0.1:{wport}"
        pids = [int(m.group(2)), int(m.group(4))]
        demo.read_until(r"report: .*report\.json", 300)
        demo.read_until(rf"publish CARD --broker 127\.0\.0\.1:{bport} ")
        demo.read_until(r"Ctrl-C stops them", 10)
        assert all(alive(p) for p in pids)

        card = expert_scorecard()  # not the demo's (bundled) card
        path = tmp_path / "card.json"
        path.write_text(artifact.dumps(card))
        pub = subprocess.run(
            [*RISKMON, "publish", str(path), "--broker", f"127.0.0.1:{bport}",
             "--role", "challenger", "--share", "50", "--shadow"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert pub.returncode == 0, pub.stderr
        info = f'{{arm="challenger",mode="shadow",scorecard_version="{card.version}"}}'
        deadline = time.monotonic() + 30
        while "riskmon_model_info" + info not in (
            text := http_get(f"http://127.0.0.1:{wport}/metrics")[1].decode()
        ):
            assert time.monotonic() < deadline, "the running worker did not take the card"
            time.sleep(0.5)
        queue = subprocess.run(
            [*RISKMON, "queue", "--worker", f"http://127.0.0.1:{wport}", "--capacity", "5",
             "--format", "json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert queue.returncode == 0, queue.stderr
        assert json.loads(queue.stdout)["capacity"] == 5
        assert "riskmon_events_total" in text

        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(60) == 0
        demo.read_until("stopping the broker and workers", 5)
        assert not [p for p in pids if alive(p)]
        assert not wait_for_port("127.0.0.1", bport, 0.5)
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()
            demo.proc.wait(10)
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)


@pytest.mark.slow
def test_backtest_of_a_simulated_book_writes_alerts_and_report(tmp_path: Path) -> None:
    """The offline path: simulate -> backtest with ground truth -> alerts.jsonl + report."""
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.csv"
    sim = subprocess.run(
        [*RISKMON, "simulate", "--customers", "200", "--months", "6", "--seed", "3",
         "--out", str(events), "--truth", str(truth)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    out = tmp_path / "bt"
    bt = subprocess.run(
        [*RISKMON, "backtest", str(events), "--out", str(out), "--truth", str(truth)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bt.returncode == 0, bt.stderr[-3000:]
    alerts = (out / "alerts.jsonl").read_text().splitlines()
    assert alerts and all(json.loads(a)["alert_id"] for a in alerts)
    report = json.loads((out / "report.json").read_text())
    assert report["alerts"]["opened"] == sum(1 for a in alerts if '"status":"opened"' in a)
    # the book starts with the simulation (2025-01-01 by default), not with the back-dated
    # contracts and payment history that come before it in the file
    jan_2025 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp()
    assert report["book"]["start"] == jan_2025
    assert report["evaluation_window"]["start"] == jan_2025 + 60 * 86400
    started = subprocess.run(
        [*RISKMON, "backtest", str(events), "--out", str(tmp_path / "bt2"), "--truth", str(truth),
         "--start", "2025-02-01"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-3000:]
    later = json.loads((tmp_path / "bt2" / "report.json").read_text())
    assert later["book"]["start"] == dt.datetime(2025, 2, 1, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    "args",
    [["--customers", "0"], ["--broker-port", "40001", "--web-port", "40000", "--workers", "2"]],
    ids=["no customers", "port clash"],
)
def test_demo_rejects_bad_options_with_one_line(args: list[str]) -> None:
    """Bad input: one line on stderr, exit code 2, nothing started."""
    proc = subprocess.run([*RISKMON, "demo", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
