"""``riskmon tune``: replaying the recorded rescorings under a policy gives exactly the alerts of
a full backtest with that policy; the chosen policy keeps to the budget; a tighter budget buys
fewer alerts; the search is deterministic; bad input is one line and exit code 2."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from schemas.codec import encode
from schemas.events import Alert
from scoring.artifact import default_scorecard_path, load
from streams.cli.backtest import read_outcomes
from streams.core import policy_file
from streams.core.policy import PolicyConfig
from streams.core.policy_file import Policy
from streams.evaluation.backtest import backtest
from streams.evaluation.budget import alert_budget
from streams.evaluation.replay import Recording, record, replay
from streams.evaluation.tune import (
    SPACE,
    WATCH_KNOBS,
    Outcomes,
    candidates,
    describe,
    judge,
    ladder,
    tune,
)
from streams.sim.simulate import SimConfig, Simulation, write_jsonl, write_truth

CARD = load(default_scorecard_path())
# recorded under a non-default alert policy: the rescorings must not depend on it
RECORDED_UNDER = dataclasses.replace(PolicyConfig(), notches=3, cooldown_days=60.0)
TRIED = (
    PolicyConfig(),
    dataclasses.replace(
        PolicyConfig(),
        notches=1,
        persist_rescorings=2,
        persist_days=7.0,
        cooldown_days=30.0,
        expiry_days=60.0,
        inflow_collapse_ratio=0.4,
        bucket_severity=((1, "watch"), (2, "orange"), (3, "red")),
        signal_severity=(
            ("bounced_debit", "watch"),
            ("pre_due_shortfall", "blue"),
            ("inflow_collapse", "yellow"),
            ("rate_increase", "watch"),
            ("high_risk", "orange"),
        ),
    ),
)


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated book with its duplicates, late and malformed lines, and its truth."""
    root = tmp_path_factory.mktemp("tune")
    sim = Simulation(SimConfig(customers=300, months=8, seed=7))
    events, truth = root / "events.jsonl", root / "truth.csv"
    with events.open("wb") as fh:
        write_jsonl(sim.records(), fh)
    write_truth(sim.truth(), truth)
    return events, truth


@pytest.fixture(scope="module")
def recorded(book: tuple[Path, Path]) -> Recording:
    return record(book[0], CARD, Policy(policy=RECORDED_UNDER))


@pytest.fixture(scope="module")
def outcomes(book: tuple[Path, Path], recorded: Recording) -> Outcomes:
    c = recorded.columns
    times = c.floats["event_time"]
    truth, _ = read_outcomes(str(book[1]), None, c.customer, times, recorded.first_activity, None)
    return Outcomes.of(recorded, truth)


def _without_reasons(alerts: list[Alert]) -> list[bytes]:
    return [encode(msgspec.structs.replace(a, reasons=[])) for a in alerts]


@pytest.mark.parametrize("cfg", TRIED, ids=["default", "loose-with-watch"])
def test_replay_is_the_backtest(
    book: tuple[Path, Path], recorded: Recording, cfg: PolicyConfig
) -> None:
    """Byte for byte (but the reason texts, which the pipeline adds on emitting): a full
    backtest with the policy, and the replay of a recording made under another policy."""
    full = backtest(book[0], CARD, 4, Policy(policy=cfg), rescorings=False)
    expected = _without_reasons(full.alerts)
    got = replay(recorded, cfg)
    assert len(expected) > 100 and any(a.status == "escalated" for a in got)
    assert _without_reasons(got) == expected
    # and the lean replay the search uses differs only by the (empty) delta reasons
    lean = replay(recorded, cfg, delta_reasons=False)
    assert lean == [msgspec.structs.replace(a, delta_reasons=[]) for a in got]


def test_the_tried_policies_differ(recorded: Recording) -> None:
    """(Else the equality above would prove little.)"""
    a, b = (replay(recorded, cfg, delta_reasons=False) for cfg in TRIED)
    assert len(a) != len(b) and any(x.severity == "watch" for x in b)


def test_candidates_are_deterministic_and_start_with_the_base() -> None:
    base = PolicyConfig()
    one, again, other = (candidates(base, 20, s) for s in (5, 5, 6))
    assert one == again and one != other
    assert one[0] == base and len(one) == len(set(map(repr, one))) == 20
    assert describe(base, base) == "base"
    assert any("watch: " in describe(c, base) for c in one)
    # M1 on the watch list, M2 and worse still work: a candidate of its own
    firsts = [c for c in one if "first level watch: " in describe(c, base)]
    assert firsts
    for c in firsts:
        for name in ("bucket_severity", "grade_severity"):
            rows, base_rows = getattr(c, name), getattr(base, name)
            if rows != base_rows and rows[0][1] == "watch" and rows[1][1] != "watch":
                assert rows[1:] == base_rows[1:]


def test_the_ladder_watches_the_lowest_lift_signals_first(
    recorded: Recording, outcomes: Outcomes
) -> None:
    """After the base, the candidates put signals on the watch list one more at a time in
    order of the base policy's customer lift per signal, lowest first; each step is tried
    again with M1 alone on the watch list."""
    base = PolicyConfig()
    res = tune(recorded, outcomes, base, budget=1e9, k=6, seed=3)
    alerts = replay(recorded, base, delta_reasons=False)
    by = alert_budget(alerts, outcomes.rescorings, outcomes.truth, outcomes.default, 365.0)
    lift = {s: by["by_signal"].get(s, {}).get("lift") for s in WATCH_KNOBS}
    order = sorted(WATCH_KNOBS, key=lambda s: (-1.0 if lift[s] is None else lift[s], s))
    assert [c.changes for c in res.candidates[:3]] == [
        "base",
        f"watch: {order[0]}",
        f"watch: {order[0]}, first level watch: dpd_bucket"
        if order[0] != "dpd_bucket"
        else f"watch: {','.join(sorted(order[:2], key=WATCH_KNOBS.index))}",
    ]
    assert len(res.candidates) == 6 and len({repr(c.config) for c in res.candidates}) == 6
    steps = ladder(base, lift)
    assert steps[0] == res.candidates[1].config
    # then M2 and worse only, alone and with high_risk at each searched PD threshold
    n = len(SPACE["high_risk_pd"])
    m2 = steps[-1 - n]
    assert m2.bucket_severity[0][1] == "watch"
    assert {s for _, s in m2.bucket_severity[1:]} != {"watch"}
    assert {s for _, s in m2.grade_severity} == {"watch"}
    assert {s for s, v in m2.signal_severity if v != "watch"} == {"high_risk"}
    assert m2.high_risk_pd == math.inf
    assert [c.high_risk_pd for c in steps[-n:]] == list(SPACE["high_risk_pd"])
    assert all(dataclasses.replace(c, high_risk_pd=math.inf) == m2 for c in steps[-n:])


def test_the_chosen_policy_keeps_to_the_budget(recorded: Recording, outcomes: Outcomes) -> None:
    base = PolicyConfig()
    loose = tune(recorded, outcomes, base, budget=1e9, k=12, seed=3)
    volumes = sorted(c.volume for c in loose.candidates)
    assert loose.chosen is not None and loose.base.config == base
    # a budget between the smallest and the largest volume reached
    budget = volumes[len(volumes) // 2]
    tight = tune(recorded, outcomes, base, budget=budget, k=12, seed=3)
    assert tight.chosen is not None and tight.chosen.volume <= budget
    assert all(c.volume <= budget for c in tight.fitting)
    # the best within the budget: no fitting candidate has a better recall
    assert tight.chosen.key() == min(c.key() for c in tight.fitting)
    # tighter budget: fewer alerts, and no more recall than the looser budget's best
    assert len(tight.fitting) < len(loose.fitting)
    assert tight.chosen.opened <= loose.chosen.opened
    assert (tight.chosen.recall or 0) <= (loose.chosen.recall or 0)
    # the same numbers when the chosen policy is replayed again
    c = tight.chosen
    again = judge(replay(recorded, c.config), outcomes, c.index, c.config, c.changes, 0.0)
    assert dataclasses.replace(again, replay_seconds=c.replay_seconds) == c


def test_min_lift_keeps_only_candidates_whose_lift_reaches_it(
    recorded: Recording, outcomes: Outcomes
) -> None:
    """With ``min_lift`` the best candidate is chosen among those precise enough: the same
    candidates are tried, those below the lift drop out of the ranking."""
    base = PolicyConfig()
    loose = tune(recorded, outcomes, base, budget=1e9, k=8, seed=3)
    lifts = sorted({c.lift or 0.0 for c in loose.candidates})
    bar = lifts[len(lifts) // 2]
    assert lifts[0] < bar  # some candidates fall below it
    lifted = tune(recorded, outcomes, base, budget=1e9, k=8, seed=3, min_lift=bar)
    assert [c.config for c in lifted.candidates] == [c.config for c in loose.candidates]
    assert [c.index for c in lifted.fitting] == [
        c.index for c in loose.fitting if (c.lift or 0.0) >= bar
    ]
    assert lifted.chosen is not None and (lifted.chosen.lift or 0.0) >= bar


def _riskmon(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_writes_a_policy_the_backtest_reproduces(
    book: tuple[Path, Path], tmp_path: Path
) -> None:
    events, truth = book
    out = tmp_path / "policy.toml"
    r = _riskmon("tune", events, "--truth", truth, "--budget", "1000", "--candidates", "4",
                 "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "chosen #" in r.stdout and "base #0" in r.stdout and "rank" in r.stdout
    fitted = policy_file.load(out)
    full = backtest(events, CARD, 4, fitted, rescorings=False)
    rec = record(events, CARD, fitted)
    assert _without_reasons(replay(rec, fitted.policy)) == _without_reasons(full.alerts)
    # a lender's labels file instead (the truth has its columns: customer_id, default_date)
    r = _riskmon("tune", events, "--labels", truth, "--budget", "1000", "--candidates", "2",
                 "--out", out)  # fmt: skip
    assert r.returncode == 0 and "outcome default per truth.csv" in r.stdout, r.stderr


def _one_line_error(r: subprocess.CompletedProcess[str], says: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("riskmon: error: "), r.stderr
    assert says in lines[0], lines[0]


def test_cli_bad_input_is_one_line(book: tuple[Path, Path], tmp_path: Path) -> None:
    events, truth = book
    out = tmp_path / "p.toml"
    cases = {
        "no such event file": ("tune", tmp_path / "nope.jsonl", "--truth", truth),
        "no such outcomes file": ("tune", events, "--truth", tmp_path / "nope.csv"),
        "--budget must be a positive": ("tune", events, "--truth", truth, "--budget", "-3"),
        "give --truth or --labels": ("tune", events, "--truth", truth, "--labels", truth),
    }
    for says, args in cases.items():
        argv = [*args, "--out", out] + ([] if "--budget" in args else ["--budget", "10"])
        _one_line_error(_riskmon(*argv), says)
    assert not out.exists()


def test_cli_no_candidate_fits(book: tuple[Path, Path], tmp_path: Path) -> None:
    events, truth = book
    out = tmp_path / "p.toml"
    r = _riskmon("tune", events, "--truth", truth, "--budget", "0.001", "--candidates", "2",
                 "--out", out)  # fmt: skip
    _one_line_error(r, "the smallest volume reached is")
    r = _riskmon("tune", events, "--truth", truth, "--budget", "1000", "--min-lift", "1000",
                 "--candidates", "2", "--out", out)  # fmt: skip
    _one_line_error(r, "with a lift of 1000 or more")
    assert "lower --min-lift" in r.stderr
    assert not out.exists()
