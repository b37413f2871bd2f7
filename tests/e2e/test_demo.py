"""`riskmon demo` and `riskmon backtest` as a user runs them, in a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

RISKMON = [sys.executable, "-m", "streams.cli"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"  # zombies have exited


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
    assert not [p for p in pids if _alive(p)]
    report = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html
    assert report["book"]["customers"] == 300
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


def test_demo_rejects_bad_options_with_one_line() -> None:
    """Bad input: one line on stderr, exit code 2, nothing started."""
    proc = subprocess.run(
        [*RISKMON, "demo", "--customers", "0"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
