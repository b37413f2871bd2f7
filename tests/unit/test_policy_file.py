"""The policy file: one TOML file sets every number of event acceptance, the policy and the
treatment ladder; the shipped template is the defaults; mistakes are refused with their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.errors import InputError
from streams.core.intake import EventLimits
from streams.core.policy import PolicyConfig
from streams.core.policy_file import TEMPLATE, Policy, dumps, load, loads
from streams.core.state import StateConfig
from streams.core.treatment import TreatmentConfig


def test_the_template_is_the_defaults() -> None:
    """``riskmon policy`` prints TEMPLATE: loading it must give exactly the dataclass defaults,
    so the documented defaults cannot drift from the code's."""
    assert loads(TEMPLATE) == Policy()
    assert load(None) == Policy()


def test_every_number_can_be_set(tmp_path: Path) -> None:
    path = tmp_path / "monthly.toml"
    path.write_text(
        """
[events]
lateness_days = 40
future_skew_days = 0.5
max_message_bytes = 4096
pre_due_days = 3
[alerts]
notches = 3
persist_rescorings = 2
persist_days = 31
cooldown_days = 31.5
expiry_days = 75
inflow_collapse_ratio = 0.25
[alerts.severity]
grade = [[1, "blue"], [3, "red"]]
bounced_debit = "orange"
[treatment]
max_voice_calls_per_day = 2
dpd_rungs = [[0, "automated_voice"], [30, "legal_action"]]
"""
    )
    p = load(path)
    assert p.state == StateConfig(lateness_days=40.0, pre_due_days=3)
    assert p.limits == EventLimits(future_skew_days=0.5, max_message_bytes=4096)
    want = PolicyConfig(
        notches=3,
        persist_rescorings=2,
        persist_days=31.0,
        cooldown_days=31.5,
        expiry_days=75.0,
        inflow_collapse_ratio=0.25,
        grade_severity=((1, "blue"), (3, "red")),
        signal_severity=(
            ("bounced_debit", "orange"),
            ("pre_due_shortfall", "blue"),
            ("inflow_collapse", "yellow"),
            ("rate_increase", "blue"),
            ("high_risk", "orange"),
        ),
        treatment=TreatmentConfig(
            max_voice_calls_per_day=2, dpd_rungs=((0, "automated_voice"), (30, "legal_action"))
        ),
    )
    assert p.policy == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[alerts]\nnotch = 2\n", "unknown key(s) notch in [alerts]"),
        ("[events]\nlateness = 2\n", "unknown key(s) lateness in [events]"),
        ("[policy]\n", "unknown key(s) policy"),
        ("[alerts]\nnotches = 2.5\n", "[alerts] notches must be a whole number"),
        ("[alerts]\nexpiry_days = 'soon'\n", "[alerts] expiry_days must be a number"),
        ("[alerts]\nexpiry_days = 0\n", "expiry_days > 0"),
        ("[events]\nlateness_days = -1\n", "lateness_days must be >= 0"),
        ("[events]\nmax_message_bytes = 10\n", "at least 256"),
        ("[alerts.severity]\nbounced_debit = 'purple'\n", "policy severities"),
        ("[alerts.severity]\ngrade = [1, 2]\n", "must be [[level, severity], ...]"),
        ("[treatment]\ndpd_rungs = [[0, 'teleport']]\n", "unknown treatment rung"),
        ("[treatment]\nthird_party_contact = 1\n", "must be true or false"),
        ("[alerts\n", "not valid TOML"),
    ],
)
def test_mistakes_are_refused_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(InputError, match="policy") as err:
        loads(text)
    assert message in str(err.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read policy file"):
        load(tmp_path / "nope.toml")


def test_dumps_reads_back_equal() -> None:
    """``riskmon tune`` writes its policy with ``dumps``: every key, read back to the same."""
    changed = Policy(
        StateConfig(lateness_days=40.0, pre_due_days=3),
        PolicyConfig(
            notches=3,
            cooldown_days=31.5,
            bucket_severity=((1, "watch"), (2, "orange"), (3, "red")),
            signal_severity=(
                ("bounced_debit", "watch"),
                ("pre_due_shortfall", "blue"),
                ("inflow_collapse", "yellow"),
                ("rate_increase", "watch"),
                ("high_risk", "red"),
            ),
            high_risk_pd=0.6,
            treatment=TreatmentConfig(third_party_contact=True, quiet_start="21:30"),
        ),
        EventLimits(future_skew_days=0.5),
    )
    for policy in (Policy(), changed):
        text = dumps(policy, "fitted by a test\nsecond line")
        assert text.startswith("# fitted by a test\n# second line\n")
        assert loads(text) == policy
