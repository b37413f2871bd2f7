"""The README's worked example (events -> history -> train -> evaluate -> backtest) runs as
written, command by command, from a clean directory."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RISKMON = str(Path(sys.executable).parent / "riskmon")


def readme_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Your own book") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    joined = block.group(1).replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            words = shlex.split(line)
            assert words[0] == "riskmon", line
            commands.append([RISKMON, *words[1:]])
    return commands


def test_the_worked_example_runs_as_written(tmp_path: Path) -> None:
    commands = readme_commands()
    assert [c[1] for c in commands] == [
        "simulate", "history", "history", "train", "evaluate", "backtest",
    ]  # fmt: skip
    for cmd in commands:
        out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-2000:])
        assert "Traceback" not in out.stderr
    for name in ("train.csv", "train.csv.columns.json", "test.csv", "card.json"):
        assert (tmp_path / name).is_file(), name
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["auc"] > 0.75  # out of time, on the book's own card
    for name in ("alerts.jsonl", "scores.csv", "deadletter.jsonl", "report.json"):
        assert (tmp_path / "bt" / name).is_file(), name
    report = json.loads((tmp_path / "bt" / "report.json").read_text())
    assert report["outcome"] == "default per truth.csv" and report["horizon_days"] == 180
