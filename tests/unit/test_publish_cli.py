"""`riskmon publish` refuses what it cannot send before connecting to anything: a missing or
corrupt card, a card the stream cannot score with, a share outside 0-100, flags that do not fit
the role. (Sending is tested against the real broker in tests/integration/test_models_worker.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from scoring.errors import InputError
from streams.cli.models import publish

NOWHERE = ["--broker", "127.0.0.1:1"]  # never reached: every case fails before connecting


def run(*args: str) -> tuple[int, str, BaseException | None]:
    r = CliRunner().invoke(publish, [*args, *NOWHERE])
    return r.exit_code, r.output, r.exception


def test_a_missing_card_is_a_clear_error(tmp_path: Path) -> None:
    _, _, exc = run(str(tmp_path / "none.json"), "--role", "champion")
    assert isinstance(exc, InputError) and "cannot read scorecard" in str(exc)


def test_a_corrupt_card_is_refused(tmp_path: Path, expert_card_path: Path) -> None:
    doc = json.loads(expert_card_path.read_text())
    doc["grades"][0]["min_score"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    _, _, exc = run(str(bad), "--role", "champion")
    assert isinstance(exc, InputError) and "does not match its version" in str(exc)


@pytest.mark.parametrize("share", ["-1", "100.5", "abc"])
def test_a_share_outside_0_100_is_a_usage_error(expert_card_path: Path, share: str) -> None:
    code, out, _ = run(str(expert_card_path), "--role", "challenger", "--share", share)
    assert code == 2 and "--share" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "challenger"], "needs --share"),
        (["--role", "champion", "--share", "10"], "for a challenger"),
        (["--role", "champion", "--shadow"], "for a challenger"),
        (["--role", "challenger", "--retire"], "--retire takes"),
    ],
)
def test_flags_that_do_not_fit_the_role_are_refused(
    expert_card_path: Path, args: list[str], message: str
) -> None:
    _, _, exc = run(str(expert_card_path), *args)
    assert isinstance(exc, InputError) and message in str(exc)


def test_no_card_without_retire_is_refused() -> None:
    _, _, exc = run("--role", "challenger", "--share", "5")
    assert isinstance(exc, InputError) and "needs a CARD" in str(exc)


def test_a_card_over_other_features_is_refused(tmp_path: Path) -> None:
    from dataclasses import replace

    from scoring.artifact import save, with_version
    from tests.conftest import expert_scorecard

    card = expert_scorecard()
    foreign = replace(card.characteristics[0], name="turnover_ratio")
    path = tmp_path / "foreign.json"
    save(with_version(replace(card, characteristics=(foreign,), version="")), path)
    _, _, exc = run(str(path), "--role", "champion")
    assert isinstance(exc, InputError) and "not streaming features" in str(exc)
