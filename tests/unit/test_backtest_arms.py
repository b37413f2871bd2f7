"""The backtest runs a champion/challenger split as the stream would and compares the arms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scoring.artifact import default_scorecard_path, load
from streams.core.models import ModelSet, bucket
from streams.evaluation.backtest import backtest
from streams.sim.simulate import SimConfig, Simulation, write_jsonl
from tests.conftest import expert_scorecard

DEFAULT = load(default_scorecard_path())
EXPERT = expert_scorecard()


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("arms") / "events.jsonl"
    with path.open("wb") as fh:
        write_jsonl(Simulation(SimConfig(customers=300, months=10, seed=5)).records(), fh)
    return path


def test_each_arm_counts_its_own_customers_and_alerts(events: Path) -> None:
    split = backtest(events, DEFAULT, models=ModelSet(DEFAULT, EXPERT, 40.0), rescorings=False)
    arms = split.arm_summary()
    assert set(arms) == {"champion", "challenger"}
    assert arms["challenger"]["card"] == EXPERT.version
    cids = list(split.pipeline.stored()) if split.pipeline else []
    assert arms["challenger"]["customers"] == sum(bucket(c) < 40 for c in cids) > 0
    assert arms["champion"]["customers"] + arms["challenger"]["customers"] == len(cids)
    by_arm = {"champion": 0, "challenger": 0}
    for a in split.alerts:
        if a.status == "opened":
            by_arm[a.arm] += 1
            assert a.arm == ("challenger" if bucket(a.customer_id) < 40 else "champion")
    assert by_arm == {k: v["alerts_opened"] for k, v in arms.items()}
    # the champion's half decides as in a run with the champion alone
    alone = backtest(events, DEFAULT, rescorings=False)
    mine = [a for a in alone.alerts if bucket(a.customer_id) >= 40]
    assert [a.event_id for a in split.alerts if a.arm == "champion"] == [a.event_id for a in mine]
    assert set(alone.arm_summary()) == {"champion"}


def test_the_cli_prints_and_writes_the_comparison(
    events: Path, expert_card_path: Path, tmp_path: Path
) -> None:
    riskmon = str(Path(sys.executable).with_name("riskmon"))
    out = tmp_path / "out"
    cmd = [riskmon, "backtest", str(events), "--out", str(out), "--challenger",
           str(expert_card_path), "--share", "40"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    arms = json.loads((out / "arms.json").read_text())
    assert set(arms) == {"champion", "challenger"} and "challenger" in r.stdout
    # a valid card over features the stream does not compute: one line, no traceback
    from dataclasses import replace

    from scoring.artifact import save, with_version

    foreign = replace(EXPERT.characteristics[0], name="no_such_feature")
    bad = tmp_path / "bad.json"
    save(with_version(replace(EXPERT, characteristics=(foreign,), version="")), bad)
    r = subprocess.run([*cmd[:-4], "--challenger", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("riskmon: error: unusable_card"), r.stderr
