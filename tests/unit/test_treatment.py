"""The collection ladder: rung by DPD, one rung up for the worst grades, contact constraints."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streams.core.treatment
from scoring.errors import InputError
from streams.core.treatment import LADDER, TreatmentConfig, contact_constraints, recommend

N_GRADES = 8
CFG = TreatmentConfig()


def test_doctests() -> None:
    """The module's examples run."""
    assert doctest.testmod(streams.core.treatment).failed == 0


@pytest.mark.parametrize(
    ("dpd", "rung"),
    [
        (-3, "pre_due_reminder"),
        (0, "pre_due_reminder"),
        (1, "automated_voice"),
        (7, "automated_voice"),
        (8, "agent_call"),
        (30, "agent_call"),
        (31, "letter"),
        (60, "letter"),
        (61, "onsite_visit"),
        (91, "stop_drawdown_reduce_limit"),
        (121, "legal_action"),
        (180, "legal_action"),
        (181, "outsourcing"),
        (5000, "outsourcing"),
    ],
)
def test_good_grade_follows_the_dpd_thresholds(dpd: int, rung: str) -> None:
    """A customer in the best grade gets the rung whose DPD threshold was reached last."""
    assert rung == recommend(0, N_GRADES, dpd, CFG)


def test_worst_grades_move_one_rung_up_but_not_to_legal_action() -> None:
    """The two worst grades go one rung up; a grade bump never reaches legal action."""
    assert recommend(N_GRADES - 1, N_GRADES, 0, CFG) == "automated_voice"
    assert recommend(N_GRADES - 2, N_GRADES, 0, CFG) == "automated_voice"
    assert recommend(N_GRADES - 3, N_GRADES, 0, CFG) == "pre_due_reminder"
    assert recommend(N_GRADES - 1, N_GRADES, 61, CFG) == "stop_drawdown_reduce_limit"
    assert recommend(N_GRADES - 1, N_GRADES, 91, CFG) == "stop_drawdown_reduce_limit"
    assert recommend(N_GRADES - 1, N_GRADES, 121, CFG) == "legal_action"


def test_custom_rungs_are_used() -> None:
    """A bank's own thresholds replace the defaults, and no bump when high_risk_grades is 0."""
    cfg = TreatmentConfig(
        version="bank-x-2",
        dpd_rungs=((0, "automated_voice"), (30, "letter"), (90, "legal_action")),
        high_risk_grades=0,
    )
    assert [recommend(N_GRADES - 1, N_GRADES, d, cfg) for d in (0, 29, 30, 89, 90)] == [
        "automated_voice",
        "automated_voice",
        "letter",
        "letter",
        "legal_action",
    ]


@settings(max_examples=200, deadline=None)
@given(
    grade=st.integers(0, N_GRADES - 1),
    dpd=st.integers(0, 2000),
    more_dpd=st.integers(0, 400),
    worse=st.integers(0, N_GRADES - 1),
)
def test_rung_never_softens_with_more_dpd_or_a_worse_grade(
    grade: int, dpd: int, more_dpd: int, worse: int
) -> None:
    """More days past due or a worse grade never recommend a cheaper treatment."""
    base = LADDER.index(recommend(grade, N_GRADES, dpd, CFG))
    assert base <= LADDER.index(recommend(grade, N_GRADES, dpd + more_dpd, CFG))
    assert base <= LADDER.index(recommend(max(grade, worse), N_GRADES, dpd, CFG))


def test_default_contact_constraints_follow_the_2025_standard() -> None:
    """No contact 22:00-08:00, at most 3 voice calls a day, no third-party contact."""
    assert contact_constraints(CFG) == (
        "no_contact_22:00-08:00",
        "max_voice_calls_per_day=3",
        "no_third_party_contact",
    )


def test_contact_constraints_are_configurable() -> None:
    """Quiet hours and call limits come from the config; third-party contact can be allowed."""
    cfg = TreatmentConfig(
        quiet_start="21:00", quiet_end="09:00", max_voice_calls_per_day=2, third_party_contact=True
    )
    assert contact_constraints(cfg) == ("no_contact_21:00-09:00", "max_voice_calls_per_day=2")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dpd_rungs": ()},
        {"dpd_rungs": ((1, "letter"),)},
        {"dpd_rungs": ((0, "letter"), (30, "agent_call"), (30, "onsite_visit"))},
        {"dpd_rungs": ((0, "sms_blast"),)},
        {"bump_cap": "jail"},
        {"high_risk_grades": -1},
        {"quiet_start": "25:00"},
        {"quiet_end": "8am"},
    ],
)
def test_bad_config_is_an_input_error(kwargs: dict[str, object]) -> None:
    """A malformed ladder is refused at construction with a one-line input error."""
    with pytest.raises(InputError):
        TreatmentConfig(**kwargs)  # type: ignore[arg-type]
