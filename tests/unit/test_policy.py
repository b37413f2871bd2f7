"""The alert policy, driven with plain observation sequences (no broker)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import decode, encode
from schemas.events import Alert, GradeChange, Reason
from scoring.errors import InputError
from streams.core.policy import (
    SEVERITIES,
    SIGNALS,
    Observation,
    PolicyConfig,
    PolicyContext,
    alert_id,
    decide,
)
from streams.core.policy_state import Cooldown, OpenAlert, PolicyState
from streams.core.treatment import TreatmentConfig, contact_constraints, recommend

DAY = 86400.0
T0 = 1_700_000_000.0  # 2023-11-14, event time
GRADES = ("A", "B", "C", "D", "E", "F", "G", "H")
NAMES = ("dpd_max_6m", "bounced_3m", "inflow_trend")
LABELS = ("days past due (max 6 m)", "bounced debits (3 m)", "inflow trend")
BEST_POINTS = (60, 50, 40)
CTX = PolicyContext(GRADES, NAMES, LABELS, "card-1")
CID = "cust-7"

Record = Alert | GradeChange


def obs(n: int, day: float, grade: int = 1, **kw: Any) -> Observation:
    """Observation ``n`` at ``day`` days after T0; points fall with the grade."""
    base: dict[str, Any] = {
        "customer_id": CID,
        "event_time": T0 + day * DAY,
        "trigger_event_id": f"ev-{n}",
        "trigger_topic": "transactions",
        "trigger_partition": 3,
        "trigger_offset": 1000 + n,
        "score": 640.0 - 15.0 * grade,
        "grade": grade,
        "reasons": (Reason(NAMES[0], f"{LABELS[0]} = 0: -{grade} points", grade),),
        "points": (BEST_POINTS[0] - 4 * grade, BEST_POINTS[1] - grade, BEST_POINTS[2]),
        "dpd": 0,
        "bucket": 0,
        "bucket_name": "M0",
        "five_category": "normal",
        "new_bounced_debits": 0,
        "pre_due_shortfall": False,
        "inflow_ratio": 1.0,
        "rate_increased": False,
        "has_arrears": False,
        "active_loan": True,
        "ingest_time": T0 + day * DAY + 0.25,
        "pd": 0.01 * (grade + 1),
        "exposure": 25_000.0,
    }
    base.update(kw)
    return Observation(**base)


def late(dpd: int, bucket: int) -> dict[str, Any]:
    """Observation fields of a customer in arrears."""
    return {
        "dpd": dpd,
        "bucket": bucket,
        "bucket_name": f"M{bucket}",
        "five_category": "special_mention",
        "has_arrears": True,
        "trigger_topic": "repayments",
    }


def run(
    seq: Iterable[Observation], ctx: PolicyContext = CTX, state: PolicyState | None = None
) -> tuple[PolicyState, list[list[Record]]]:
    """Feed observations one by one; the final state and the records of each observation."""
    st_ = state or PolicyState.new()
    outs = []
    for o in seq:
        st_, out = decide(st_, o, ctx)
        outs.append(out)
    return st_, outs


def alerts(outs: Sequence[Sequence[Record]]) -> list[Alert]:
    return [r for out in outs for r in out if isinstance(r, Alert)]


def ctx_with(**cfg: Any) -> PolicyContext:
    return PolicyContext(GRADES, NAMES, LABELS, "card-1", PolicyConfig(**cfg))


# -- audit trail --------------------------------------------------------------------------------


def test_every_grade_change_is_recorded_and_only_changes() -> None:
    """A GradeChange per change of grade (the first score included), none when it stays."""
    grades = [1, 1, 2, 2, 1, 1, 1, 2]
    _, outs = run(obs(i, i / 24, g) for i, g in enumerate(grades))
    changes = [r for out in outs for r in out if isinstance(r, GradeChange)]
    expected = [(None, "B"), ("B", "C"), ("C", "B"), ("B", "C")]
    assert [(c.old_grade, c.new_grade) for c in changes] == expected
    assert changes[0].old_score is None
    assert changes[1].old_score == 640.0 - 15.0 * 1
    assert changes[1].new_score == 640.0 - 15.0 * 2
    assert all(c.scorecard_version == "card-1" and c.source == "riskmon" for c in changes)
    assert changes[1].trigger_event_id == "ev-2"
    assert changes[1].event_time == dt.datetime.fromtimestamp(T0 + 2 / 24 * DAY, dt.UTC)
    assert len({c.event_id for c in changes}) == len(changes)


def test_grade_changes_are_recorded_without_a_loan() -> None:
    """The audit trail does not depend on an active loan; alerts do."""
    _, outs = run([obs(0, 0, 1, active_loan=False), obs(1, 1, 6, active_loan=False)])
    assert [type(r) for out in outs for r in out] == [GradeChange, GradeChange]


# -- grade worsening with hysteresis ------------------------------------------------------------


def test_one_notch_wobble_never_alerts() -> None:
    """Moving between the reference grade and one worse, many times a day for months: no alert."""
    seq = [obs(i, i / 6, 1 + (i // 3) % 2) for i in range(6 * 120)]
    _, outs = run(seq)
    assert alerts(outs) == []


def test_two_notches_alert_at_once() -> None:
    """Two notches below the reference opens a grade alert on that observation."""
    _, outs = run([obs(0, 0, 1), obs(1, 1, 3)])
    (a,) = alerts(outs)
    assert (a.signal, a.status, a.old_grade, a.new_grade) == ("grade_worsening", "opened", "B", "D")
    assert a.severity == "orange"
    assert outs[1][-1] is a


def test_persistent_one_notch_needs_k_rescorings_and_d_days() -> None:
    """One notch worse alerts only after k consecutive rescorings AND d days (both required)."""
    ctx = ctx_with(persist_rescorings=3, persist_days=14)
    many_quick = [obs(0, 0, 1)] + [obs(i, 1 + i / 100, 2) for i in range(1, 30)]
    assert alerts(run(many_quick, ctx)[1]) == []  # 29 rescorings in one day
    few_slow = [obs(0, 0, 1), obs(1, 1, 2), obs(2, 40, 2)]
    assert alerts(run(few_slow, ctx)[1]) == []  # 2 rescorings over 39 days
    both = [obs(0, 0, 1), obs(1, 1, 2), obs(2, 8, 2), obs(3, 14.9, 2), obs(4, 15.1, 2)]
    _, outs = run(both, ctx)
    assert [len([r for r in o if isinstance(r, Alert)]) for o in outs] == [0, 0, 0, 0, 1]
    (a,) = alerts(outs)
    assert (a.signal, a.severity, a.new_grade) == ("grade_worsening", "yellow", "C")


def test_a_good_rescoring_restarts_the_persistence_count() -> None:
    """Worse, back at the reference, worse again: the k/d clock starts over."""
    ctx = ctx_with(persist_rescorings=2, persist_days=10)
    seq = [obs(0, 0, 1), obs(1, 1, 2), obs(2, 9, 1), obs(3, 12, 2), obs(4, 20, 2), obs(5, 22.5, 2)]
    _, outs = run(seq, ctx)
    assert [bool(alerts([o])) for o in outs] == [False] * 5 + [True]


def test_further_worsening_escalates_the_same_alert() -> None:
    """A worse grade escalates with the same alert_id; the same or a better grade is absorbed."""
    _, outs = run([obs(0, 0, 1), obs(1, 1, 3), obs(2, 2, 3), obs(3, 3, 4), obs(4, 4, 3)])
    got = alerts(outs)
    assert [(a.status, a.new_grade, a.severity) for a in got] == [
        ("opened", "D", "orange"),
        ("escalated", "E", "red"),
    ]
    assert got[0].alert_id == got[1].alert_id
    assert got[1].event_id != got[0].event_id
    assert got[1].old_grade == "B"  # still measured against the reference


def test_alert_content() -> None:
    """Every field of an opened alert comes from the observation, the reference and the config."""
    first = obs(0, 0, 1)
    trigger = obs(1, 2.5, 4, **late(12, 1), new_bounced_debits=0)
    _, outs = run([first, trigger])
    a = next(x for x in alerts(outs) if x.signal == "grade_worsening")
    assert a.customer_id == CID and a.source == "riskmon"
    assert a.alert_id == alert_id(CID, "grade_worsening", "ev-1")
    assert (a.old_grade, a.new_grade) == ("B", "E")
    assert (a.old_score, a.new_score) == (first.score, trigger.score)
    assert a.reasons == list(trigger.reasons)
    lost = [r - p for r, p in zip(first.points, trigger.points, strict=True)]
    assert [(r.code, r.points_lost) for r in a.delta_reasons] == [
        (NAMES[0], lost[0]),
        (NAMES[1], lost[1]),
    ]
    assert LABELS[0] in a.delta_reasons[0].text
    assert (a.dpd, a.m_bucket, a.five_category) == (12, "M1", "special_mention")
    assert a.treatment == recommend(4, len(GRADES), 12, TreatmentConfig())
    assert a.contact_constraints == list(contact_constraints(TreatmentConfig()))
    assert a.scorecard_version == "card-1"
    assert (a.trigger_event_id, a.trigger_topic, a.trigger_partition, a.trigger_offset) == (
        "ev-1",
        "repayments",
        3,
        1001,
    )
    assert a.event_time == dt.datetime.fromtimestamp(trigger.event_time, dt.UTC)
    assert a.emitted_at == dt.datetime.fromtimestamp(trigger.ingest_time, dt.UTC)
    assert decode(encode(a), Alert) == a  # passes the schema's validation


# -- hard-rule signals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "signal"),
    [
        ({"new_bounced_debits": 1}, "bounced_debit"),
        ({"pre_due_shortfall": True}, "pre_due_shortfall"),
        ({"inflow_ratio": 0.1}, "inflow_collapse"),
        ({"rate_increased": True}, "rate_increase"),
        ({"pd": 0.7}, "high_risk"),
    ],
)
def test_hard_signal_alerts_with_its_configured_severity(
    fields: dict[str, Any], signal: str
) -> None:
    """Each hard rule opens its own alert at the grade it happens, with the configured severity."""
    sev = tuple((s, SEVERITIES[(i + 1) % 5]) for i, s in enumerate(SIGNALS[2:]))
    ctx = ctx_with(signal_severity=sev, high_risk_pd=0.5)
    _, outs = run([obs(0, 0, 1), obs(1, 1, 1, **fields)], ctx)
    (a,) = alerts(outs)
    assert (a.signal, a.status, a.severity) == (signal, "opened", dict(sev)[signal])
    assert (a.old_grade, a.new_grade, a.delta_reasons) == ("B", "B", [])


@pytest.mark.parametrize(
    "fields",
    [{"pre_due_shortfall": True}, {"inflow_ratio": 0.05}, {"rate_increased": True}, {"pd": 0.9}],
)
def test_level_signals_fire_on_the_rising_edge_only(fields: dict[str, Any]) -> None:
    """A condition that stays true for months gives one alert, not one per cool-down period."""
    ctx = ctx_with(expiry_days=1000, high_risk_pd=0.5)
    _, outs = run([obs(0, 0)] + [obs(i, i, **fields) for i in range(1, 90)], ctx)
    assert [a.status for a in alerts(outs)] == ["opened"]


def test_high_risk_is_off_by_default_and_fires_again_after_the_pd_fell_back() -> None:
    """Without ``high_risk_pd`` a PD of 0.99 opens nothing; with it, a PD at the threshold opens
    an alert, and after the PD fell below it and the alert expired, a new rise opens another."""
    seq = [obs(0, 0), obs(1, 1, pd=0.99), obs(2, 2, pd=0.99)]
    assert alerts(run(seq)[1]) == []
    seq = [obs(0, 0), obs(1, 1, pd=0.6), obs(2, 50, pd=0.2), obs(3, 80, pd=0.61)]
    got = [(a.signal, a.status) for a in alerts(run(seq, ctx_with(high_risk_pd=0.6))[1])]
    assert got == [("high_risk", "opened"), ("high_risk", "expired"), ("high_risk", "opened")]
    assert alerts(run(seq, ctx_with(high_risk_pd=0.62))[1]) == []


def test_a_policy_pd_threshold_outside_0_1_is_refused() -> None:
    for bad in (0.0, 1.5, -1.0):
        with pytest.raises(InputError, match="high_risk_pd"):
            PolicyConfig(high_risk_pd=bad)


def test_unknown_inflow_ratio_is_no_collapse() -> None:
    """NaN inflow ratio (no history yet) never fires the inflow-collapse rule."""
    _, outs = run([obs(0, 0), obs(1, 1, inflow_ratio=math.nan)])
    assert alerts(outs) == []


def test_dpd_bucket_opens_escalates_and_absorbs() -> None:
    """M1 opens, M2 escalates the same alert, back to M1 and into M2 again changes nothing."""
    seq = [obs(0, 0), obs(1, 1, **late(1, 1)), obs(2, 31, **late(31, 2))]
    seq += [obs(3, 32, **late(10, 1)), obs(4, 40, **late(35, 2))]
    _, outs = run(seq, ctx_with(notches=5))  # keep the grade signal out of the way
    got = [a for a in alerts(outs) if a.signal == "dpd_bucket"]
    assert [(a.status, a.m_bucket, a.severity) for a in got] == [
        ("opened", "M1", "yellow"),
        ("escalated", "M2", "orange"),
    ]
    assert got[0].alert_id == got[1].alert_id


def test_no_alerts_without_an_active_loan() -> None:
    """Before a loan starts, nothing alerts whatever the customer looks like."""
    bad = {"new_bounced_debits": 2, "pre_due_shortfall": True, "inflow_ratio": 0.0}
    _, outs = run([obs(0, 0, 1, active_loan=False), obs(1, 1, 6, active_loan=False, **bad)])
    assert alerts(outs) == []


# -- cool-down ----------------------------------------------------------------------------------


def test_cool_down_after_a_resolve() -> None:
    """In the cool-down the same signal does not re-open at the same level; after it, it does."""
    ctx = ctx_with(cooldown_days=7, notches=5)
    seq = [obs(0, 0), obs(1, 1, **late(3, 1)), obs(2, 2)]  # M1, paid -> resolved
    seq += [obs(3, 4, **late(2, 1)), obs(4, 5)]  # M1 again inside the cool-down: nothing
    seq += [obs(5, 12, **late(2, 1))]  # M1 again after the cool-down: a new alert
    _, outs = run(seq, ctx)
    got = alerts(outs)
    assert [(a.status, a.trigger_event_id) for a in got] == [
        ("opened", "ev-1"),
        ("resolved", "ev-2"),
        ("opened", "ev-5"),
    ]
    assert got[2].alert_id != got[0].alert_id


def test_further_worsening_breaks_the_cool_down() -> None:
    """Inside the cool-down a signal re-opens only at a higher level than last alerted."""
    ctx = ctx_with(cooldown_days=7, notches=5)
    seq = [obs(0, 0), obs(1, 1, **late(3, 1)), obs(2, 2), obs(3, 3, **late(40, 2))]
    _, outs = run(seq, ctx)
    assert [(a.status, a.m_bucket) for a in alerts(outs)] == [
        ("opened", "M1"),
        ("resolved", "M0"),
        ("opened", "M2"),
    ]


def test_bounced_debits_in_one_episode_alert_once() -> None:
    """Repeated bounced debits while the alert is open are absorbed, not re-alerted."""
    seq = [obs(0, 0)] + [obs(i, i, new_bounced_debits=1) for i in range(1, 6)]
    _, outs = run(seq)
    assert [a.status for a in alerts(outs)] == ["opened"]


# -- lifecycle ----------------------------------------------------------------------------------


def test_payment_that_cures_resolves_every_open_alert_on_that_observation() -> None:
    """No arrears and the grade back within the band -> a resolved record per open alert."""
    seq = [obs(0, 0, 1), obs(1, 3, 4, **late(5, 1), new_bounced_debits=1)]
    cure = obs(2, 4, 2, trigger_topic="repayments")
    state, outs = run([*seq, cure])
    opened = {a.signal: a.alert_id for a in alerts(outs[:2]) if a.status == "opened"}
    assert set(opened) == {"grade_worsening", "dpd_bucket", "bounced_debit"}
    resolved = alerts(outs[2:])
    assert {a.signal: a.alert_id for a in resolved} == opened
    assert all(a.status == "resolved" and a.trigger_event_id == "ev-2" for a in resolved)
    assert state.open == ()
    assert state.ref_grade == 2  # the reference restarts at the cured grade


def test_cure_waits_for_the_grade_to_recover() -> None:
    """Arrears paid but the grade still two notches down: open; the grade recovers: resolved."""
    seq = [obs(0, 0, 1), obs(1, 3, 4, **late(5, 1)), obs(2, 4, 3), obs(3, 6, 2)]
    _, outs = run(seq)
    assert [len(alerts([o])) for o in outs[2:]] == [0, 2]
    assert {a.status for a in alerts(outs[3:])} == {"resolved"}


def test_alert_without_arrears_expires() -> None:
    """A bounced debit without arrears is not cured by good days; it expires after the period."""
    ctx = ctx_with(expiry_days=30)
    seq = [obs(0, 0), obs(1, 1, new_bounced_debits=1)] + [obs(i, i) for i in range(2, 31)]
    seq.append(obs(31, 31.5))
    _, outs = run(seq, ctx)
    got = alerts(outs)
    assert [(a.status, a.trigger_event_id) for a in got] == [
        ("opened", "ev-1"),
        ("expired", "ev-31"),
    ]
    assert got[0].alert_id == got[1].alert_id


def test_escalation_restarts_the_expiry_clock() -> None:
    """Expiry counts from the last emission, not from the opening."""
    ctx = ctx_with(expiry_days=30, notches=5)
    seq = [obs(0, 0), obs(1, 1, **late(1, 1)), obs(2, 25, **late(25, 1)), obs(3, 31, **late(31, 2))]
    seq += [obs(4, 45, **late(45, 2)), obs(5, 61.5, **late(61, 2))]
    _, outs = run(seq, ctx)
    assert [(a.status, a.trigger_event_id) for a in alerts(outs)] == [
        ("opened", "ev-1"),
        ("escalated", "ev-3"),
        ("expired", "ev-5"),
    ]


def test_expired_grade_alert_makes_the_grade_the_new_normal() -> None:
    """After a grade alert expires the customer is measured against the grade it stayed at."""
    ctx = ctx_with(expiry_days=30)
    seq = [obs(0, 0, 1), obs(1, 1, 3)] + [obs(i, i, 3) for i in range(2, 40)] + [obs(40, 41, 4)]
    state, outs = run(seq, ctx)
    assert [a.status for a in alerts(outs)] == ["opened", "expired"]
    assert state.ref_grade == 3


def test_closed_loan_without_arrears_resolves() -> None:
    """The loan closing (repaid) resolves the open alerts."""
    seq = [obs(0, 0, 1), obs(1, 1, 1, new_bounced_debits=1), obs(2, 2, 1, active_loan=False)]
    state, outs = run(seq)
    assert [a.status for a in alerts(outs)] == ["opened", "resolved"]
    assert state.ref_grade == -1


def test_new_scorecard_rebaselines_without_alerting() -> None:
    """Grades of a new scorecard version are not compared with the old card's reference."""
    state, _ = run([obs(0, 0, 1)])
    new_card = PolicyContext(GRADES, NAMES, LABELS, "card-2")
    state, outs = run([obs(1, 1, 4)], new_card, state)
    assert alerts(outs) == []
    assert state.ref_grade == 4
    _, outs = run([obs(2, 2, 6)], new_card, state)
    assert [a.old_grade for a in alerts(outs)] == ["E"]


def test_late_event_does_not_turn_the_clock_back() -> None:
    """An out-of-order event cannot re-open the cool-down window or delay expiry."""
    ctx = ctx_with(expiry_days=30)
    seq = [obs(0, 0), obs(1, 1, new_bounced_debits=1), obs(2, 40), obs(3, 20)]
    state, outs = run(seq, ctx)
    assert [a.status for a in alerts(outs)] == ["opened", "expired"]
    assert state.clock == T0 + 40 * DAY


# -- the long scenario --------------------------------------------------------------------------


def test_long_scenario() -> None:
    """Two customers over six months: one deteriorates, is alerted, escalated, pays and is
    resolved, then stays quiet through a cool-down; the other wobbles and is never alerted."""
    seq_a: list[Observation] = [obs(0, 0, 1)]
    day, n = 0.0, 1
    for g in (1, 1, 2, 1, 2, 2):  # normal life with a wobble
        day += 5
        seq_a.append(obs(n, day, g))
        n += 1
    day += 3
    seq_a.append(obs(n, day, 2, inflow_ratio=0.2))  # inflow collapses: hard signal
    n += 1
    day += 4
    seq_a.append(obs(n, day, 3, new_bounced_debits=1))  # 2 notches + a bounced debit
    n += 1
    day += 6
    seq_a.append(obs(n, day, 4, **late(6, 1)))  # missed instalment: M1 + escalation
    n += 1
    day += 20
    seq_a.append(obs(n, day, 5, **late(32, 2)))  # M2: both escalate again
    n += 1
    day += 1
    seq_a.append(obs(n, day, 2))  # paid in full: everything resolves
    cured_at = n
    n += 1
    day += 1
    seq_a.append(obs(n, day, 2, new_bounced_debits=1))  # a day after the resolve: cool-down
    n += 1
    for _ in range(10):
        day += 10
        seq_a.append(obs(n, day, 2))
        n += 1
    state_a, outs_a = run(seq_a)
    got = alerts(outs_a)
    by_signal: dict[str, list[str]] = {}
    for a in got:
        by_signal.setdefault(a.signal, []).append(a.status)
    assert by_signal == {
        "inflow_collapse": ["opened", "expired"],  # 30 days without news by the M2 rescoring
        "grade_worsening": ["opened", "escalated", "escalated", "resolved"],
        "bounced_debit": ["opened", "resolved"],
        "dpd_bucket": ["opened", "escalated", "resolved"],
    }
    assert {a.trigger_event_id for a in got if a.status == "resolved"} == {f"ev-{cured_at}"}
    assert [a.severity for a in got if a.signal == "grade_worsening"][:3] == [
        "orange",
        "red",
        "red",
    ]
    for sig in by_signal:
        assert len({a.alert_id for a in got if a.signal == sig}) == 1
    assert state_a.open == ()

    wobble = [obs(i, i * 1.5, 1 + (i % 2), customer_id="cust-8") for i in range(120)]
    assert alerts(run(wobble)[1]) == []


# -- determinism and state ----------------------------------------------------------------------


def _scenario() -> list[Observation]:
    seq = [obs(0, 0, 1), obs(1, 2, 3, new_bounced_debits=1), obs(2, 9, 4, **late(9, 1))]
    seq += [obs(3, 40, 5, **late(40, 2)), obs(4, 41, 1), obs(5, 80, 1, pre_due_shortfall=True)]
    return [*seq, obs(6, 120, 1)]


def test_same_observations_give_byte_identical_records() -> None:
    """Twice the same sequence -> the same bytes; a replay differs only in emitted_at."""
    first = [encode(r) for out in run(_scenario())[1] for r in out]
    again = [encode(r) for out in run(_scenario())[1] for r in out]
    assert len(first) > 8
    assert first == again
    replay_seq = [o._replace(ingest_time=o.ingest_time + 3600) for o in _scenario()]
    replay = [r for out in run(replay_seq)[1] for r in out]
    original = [r for out in run(_scenario())[1] for r in out]
    for r0, r1 in zip(original, replay, strict=True):
        if isinstance(r0, Alert):
            assert isinstance(r1, Alert)
            assert r1.emitted_at - r0.emitted_at == dt.timedelta(hours=1)
            assert msgspec.structs.replace(r1, emitted_at=r0.emitted_at) == r0
        else:
            assert r1 == r0


def test_recovered_state_continues_like_the_original() -> None:
    """Serialising the state after any observation and continuing from the copy changes nothing."""
    seq = _scenario()
    full = [encode(r) for out in run(seq)[1] for r in out]
    for cut in range(len(seq)):
        state, head = run(seq[:cut])
        restored = PolicyState.from_bytes(state.to_bytes())
        assert restored == state
        _, tail = run(seq[cut:], state=restored)
        assert [encode(r) for out in head + tail for r in out] == full


def test_decide_does_not_change_its_input_state() -> None:
    """The old state is still the old state (its bytes are unchanged)."""
    state, _ = run(_scenario()[:3])
    before = state.to_bytes()
    decide(state, obs(9, 50, 6, **late(50, 2)), CTX)
    assert state.to_bytes() == before


def test_state_stays_small() -> None:
    """With every signal open the state is a few hundred bytes (target: < 2 KB per customer)."""
    everything = {"new_bounced_debits": 1, "pre_due_shortfall": True, "inflow_ratio": 0.0}
    last = obs(1, 1, 6, rate_increased=True, pd=0.9, **late(70, 3), **everything)
    state, _ = run([obs(0, 0, 1), last], ctx_with(high_risk_pd=0.5))
    assert len(state.open) == len(SIGNALS)
    assert len(state.to_bytes()) < 600


def test_version_1_state_keeps_its_severities() -> None:
    """A state stored before "watch" existed (severity indices one lower) reads back with the
    same severity names: a restarted worker does not downgrade open alerts."""
    everything = {"new_bounced_debits": 1, "pre_due_shortfall": True, "inflow_ratio": 0.0}
    state, _ = run([obs(0, 0, 1), obs(1, 1, 6, **late(70, 3), **everything)])
    old_open = tuple(msgspec.structs.replace(a, severity=a.severity - 1) for a in state.open)
    old = msgspec.structs.replace(state, open=old_open)
    v1 = b"\x01" + old.to_bytes()[1:]
    back = PolicyState.from_bytes(v1)
    assert [SEVERITIES[a.severity] for a in back.open] == [
        SEVERITIES[a.severity] for a in state.open
    ]
    assert back == state


def test_unknown_state_version_is_refused() -> None:
    """Bytes from a future layout are an error, not a silent misread."""
    with pytest.raises(ValueError, match="version"):
        PolicyState.from_bytes(b"\x09" + PolicyState.new().to_bytes()[1:])


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
small = st.integers(0, 10)
open_alerts = st.builds(
    OpenAlert,
    signal=st.integers(0, len(SIGNALS) - 1),
    alert_id=st.text(min_size=1, max_size=30),
    severity=st.integers(0, 3),
    opened_at=finite,
    changed_at=finite,
    level=small,
    seq=small,
)
states = st.builds(
    PolicyState,
    ref_grade=st.integers(-1, 7),
    ref_score=finite,
    ref_points=st.lists(st.integers(-(2**40), 2**40), max_size=12).map(tuple),
    card_tag=st.integers(0, 2**32 - 1),
    last_grade=st.integers(-1, 7),
    last_score=finite,
    worse_count=st.integers(0, 2**31),
    worse_since=finite,
    last_bucket=small,
    flags=st.integers(0, 31),
    clock=finite,
    open=st.lists(open_alerts, max_size=6).map(tuple),
    cooldowns=st.lists(
        st.builds(Cooldown, signal=st.integers(0, 5), until=finite, level=small), max_size=6
    ).map(tuple),
    first_alert=st.floats(allow_nan=False, width=64),  # inf: no alert yet
    settled=st.floats(allow_nan=False, width=64),
)


@settings(max_examples=200, deadline=None)
@given(states)
def test_state_round_trips_exactly(state: PolicyState) -> None:
    """Any state -> bytes -> the same state, and the bytes are stable."""
    data = state.to_bytes()
    back = PolicyState.from_bytes(data)
    assert back == state
    assert back.to_bytes() == data


step = st.fixed_dictionaries(
    {
        "dt": st.floats(0, 20),
        "grade": st.integers(0, 7),
        "dpd": st.sampled_from([0, 0, 0, 5, 35, 70, 100]),
        "bounced": st.integers(0, 2),
        "pre_due": st.booleans(),
        "inflow": st.sampled_from([math.nan, 0.1, 0.8, 1.2]),
        "rate": st.booleans(),
        "active": st.sampled_from([True, True, True, False]),
    }
)


def _observations(steps: list[dict[str, Any]]) -> list[Observation]:
    out, day = [], 0.0
    for i, s in enumerate(steps):
        day += s["dt"]
        bucket = min(7, math.ceil(s["dpd"] / 30)) if s["dpd"] else 0
        out.append(
            obs(
                i,
                day,
                s["grade"],
                dpd=s["dpd"],
                bucket=bucket,
                bucket_name=f"M{bucket}",
                has_arrears=s["dpd"] > 0,
                new_bounced_debits=s["bounced"],
                pre_due_shortfall=s["pre_due"],
                inflow_ratio=s["inflow"],
                rate_increased=s["rate"],
                active_loan=s["active"],
            )
        )
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(step, min_size=1, max_size=40))
def test_lifecycle_invariants(steps: list[dict[str, Any]]) -> None:
    """Any history: valid records, one open alert per signal, a closed alert never comes back,
    escalations never lower the severity, and the state round-trips after every step."""
    state = PolicyState.new()
    status: dict[str, str] = {}
    severity: dict[str, int] = {}
    for o in _observations(steps):
        state, out = decide(state, o, CTX)
        assert PolicyState.from_bytes(state.to_bytes()) == state
        for r in out:
            assert decode(encode(r), type(r)) == r
            if not isinstance(r, Alert):
                continue
            prev = status.get(r.alert_id)
            if r.status == "opened":
                assert prev is None and o.active_loan
            else:
                assert prev in ("opened", "escalated")
            if r.status == "escalated":
                assert SEVERITIES.index(r.severity) >= severity[r.alert_id]
            status[r.alert_id] = r.status
            severity[r.alert_id] = SEVERITIES.index(r.severity)
        still_open = {a for a, s in status.items() if s in ("opened", "escalated")}
        assert still_open == {a.alert_id for a in state.open}
        assert len({a.signal for a in state.open}) == len(state.open)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"notches": 0},
        {"persist_rescorings": 0},
        {"expiry_days": 0},
        {"cooldown_days": -1},
        {"grade_severity": ((2, "red"), (1, "blue"))},
        {"bucket_severity": ((1, "purple"),)},
        {"signal_severity": (("bounced_debit", "red"),)},
    ],
)
def test_bad_policy_config_is_an_input_error(kwargs: dict[str, Any]) -> None:
    """A malformed policy config is refused at construction."""
    with pytest.raises(InputError):
        PolicyConfig(**kwargs)


def test_context_checks_names_and_labels() -> None:
    """Names and labels must pair up."""
    with pytest.raises(InputError):
        PolicyContext(GRADES, NAMES, LABELS[:2], "card-1")
    assert dataclasses.replace(CTX, scorecard_version="x").card_tag != CTX.card_tag
