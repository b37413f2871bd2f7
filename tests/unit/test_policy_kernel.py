"""The policy kernel's quiet path gives exactly ``decide``'s states, records and live quality."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core._policy_kernel import QuietInputs, quiet_pass
from streams.core.policy import Observation, PolicyConfig, PolicyContext, decide, grade_change
from streams.core.policy_state import Cooldown, OpenAlert, PolicyState
from streams.core.quality import Quality

DAY = 86400.0
T0 = 1_700_000_000.0
GRADES = ("A", "B", "C", "D", "E", "F")
NAMES = ("dpd_max_6m", "bounced_3m", "inflow_trend")
CTX = PolicyContext(GRADES, NAMES, NAMES, "card-1")
CTX_FAST = PolicyContext(  # short persistence, so the persistence rule fires inside a batch
    GRADES, NAMES, NAMES, "card-1", PolicyConfig(persist_rescorings=2, persist_days=1.0)
)
CTX_PD = PolicyContext(  # the high_risk rule on
    GRADES, NAMES, NAMES, "card-1", PolicyConfig(high_risk_pd=0.5)
)
Record = Any


def observation(c: int, n: int, s: dict[str, Any]) -> Observation:
    grade = s["grade"]
    bucket = min(7, math.ceil(s["dpd"] / 30)) if s["dpd"] else 0
    return Observation(
        f"cust-{c}",
        s["t"],
        f"ev-{c}-{n}",
        "transactions",
        0,
        n,
        640.0 - 15.0 * grade + s["wobble"],
        grade,
        (),
        (60 - 4 * grade, 50 - grade + s["wobble"], 40),
        s["dpd"],
        bucket,
        f"M{bucket}",
        "normal",
        s["bounced"],
        s["pre_due"],
        s["inflow"],
        s["rate"],
        s["dpd"] > 0 or s["arrears"],
        s["active"],
        s["t"] + 0.5,
        s.get("pd", 0.01 * (grade + 1)),
        1000.0 * (n % 7) if s["active"] else 0.0,
    )


step = st.fixed_dictionaries(
    {
        "customer": st.integers(0, 3),
        "dt": st.sampled_from([0.0, 0.3, 1.0, 2.5, 9.0, 31.0, -2.0]),  # negative: a late event
        "grade": st.sampled_from([1, 1, 1, 1, 2, 3, 0, 4]),
        "wobble": st.sampled_from([0, 0, 0, 1, -1]),
        "dpd": st.sampled_from([0, 0, 0, 0, 0, 5, 35, 70, 90, 120]),  # 90+: a default
        "arrears": st.sampled_from([False, False, True]),
        "bounced": st.sampled_from([0, 0, 0, 0, 0, 0, 1]),
        "pre_due": st.sampled_from([False, False, False, False, True]),
        "inflow": st.sampled_from([math.nan, 0.1, 0.8, 1.2, 1.2, 1.2]),
        "rate": st.sampled_from([False, False, False, False, False, True]),
        "active": st.sampled_from([True, True, True, True, True, False]),
        "pd": st.sampled_from([0.02, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9]),
    }
)
starts = st.sampled_from(
    [
        PolicyState.new(),
        # a reference taken under another scorecard: re-taken at the next active rescoring
        PolicyState(1, 625.0, (56, 49, 40), 12345, 1, 625.0, 0, 0.0, 0, 0, T0),
        # a reference of another card's length: always left to decide
        PolicyState(1, 625.0, (56, 49), 12345, 1, 625.0, 0, 0.0, 0, 0, T0),
        # (card_tag 0 below: _tagged gives these the card's tag)
        # a one-notch-worse streak under way, an old edge flag set
        PolicyState(1, 625.0, (56, 49, 40), 0, 2, 610.0, 2, T0 - 3 * DAY, 0, 4, T0),
        # one notch worse than the reference, no streak counted yet (a restored old state)
        PolicyState(1, 625.0, (56, 49, 40), 0, 2, 610.0, 0, 0.0, 0, 0, T0),
        # edge flags set (pre-due shortfall, rate increase): no alert while they stay on
        PolicyState(1, 625.0, (56, 49, 40), 0, 1, 625.0, 0, 0.0, 0, 2 | 8, T0),
        # above the PD threshold already (high_risk's edge flag), a high_risk alert open
        PolicyState(
            1,
            625.0,
            (56, 49, 40),
            0,
            1,
            625.0,
            0,
            0.0,
            0,
            32,
            T0,
            (OpenAlert(6, "a-high", 3, T0 - 3 * DAY, T0 - 3 * DAY, 0, 0),),
        ),
        # a cool-down that expires inside the batch
        PolicyState(
            1, 625.0, (56, 49, 40), 0, 1, 625.0, 0, 0.0, 0, 0, T0, (), (Cooldown(2, T0 + DAY, 0),)
        ),
        # cool-downs after a grade alert at C and a dpd alert at M1: a worse grade or bucket
        # opens a new alert, the same holds back
        PolicyState(
            1,
            625.0,
            (56, 49, 40),
            0,
            1,
            625.0,
            0,
            0.0,
            0,
            0,
            T0,
            (),
            (Cooldown(0, T0 + 5 * DAY, 2), Cooldown(1, T0 + 5 * DAY, 1)),
        ),
        # open alerts (a grade alert at C, a dpd alert at M1 whose expiry comes inside the
        # batch), arrears seen, cool-downs of other signals: absorbed, escalated, resolved or
        # expired by what follows
        PolicyState(
            1,
            625.0,
            (56, 49, 40),
            0,
            3,
            595.0,
            1,
            T0,
            1,
            1,
            T0,
            (
                OpenAlert(0, "a-grade", 1, T0, T0, 3, 0),
                OpenAlert(1, "a-dpd", 1, T0 - 25 * DAY, T0 - 25 * DAY, 1, 0),
            ),
            (
                Cooldown(0, T0 + 7 * DAY, 3),
                Cooldown(1, T0 - 18 * DAY, 1),
                Cooldown(2, T0 + 5 * DAY, 0),
            ),
            T0 - 40 * DAY,  # the spell's first actionable alert: a default now is caught
        ),
        # in default (arrears seen), a dpd alert open since before it (counted then) and one
        # opened in default: their endings are not counted again; a 0 DPD ends the spell
        PolicyState(
            1,
            625.0,
            (56, 49, 40),
            0,
            4,
            580.0,
            0,
            0.0,
            4,
            1 | 16,
            T0,
            (
                OpenAlert(1, "a-dpd", 3, T0 - 60 * DAY, T0 - 5 * DAY, 4, 2),
                OpenAlert(2, "a-bounce", 2, T0 - 2 * DAY, T0 - 2 * DAY, 0, 0),
            ),
            (),
            T0 - 60 * DAY,
            T0 - 2 * DAY,
        ),
    ]
)


def _tagged(p: PolicyState, ctx: PolicyContext) -> PolicyState:
    """Give the states meant to be under this card the card's tag."""
    if p.card_tag == 0 and p.ref_grade >= 0:
        return msgspec.structs.replace(p, card_tag=ctx.card_tag)
    return p


def _inputs(obs: list[tuple[int, Observation]]) -> QuietInputs:
    def col(name: str, dtype: Any) -> np.ndarray:
        return np.array([getattr(o, name) for _, o in obs], dtype=dtype)

    return QuietInputs(
        np.array([c for c, _ in obs], dtype=np.int64),
        col("event_time", np.float64),
        col("score", np.float64),
        col("grade", np.int32),  # the scoring kernel's dtypes
        np.array([o.points for _, o in obs], dtype=np.int32).reshape(len(obs), len(NAMES)),
        col("bucket", np.int64),
        col("new_bounced_debits", np.int64),
        col("pre_due_shortfall", np.bool_),
        col("inflow_ratio", np.float64),
        col("rate_increased", np.bool_),
        col("has_arrears", np.bool_),
        col("active_loan", np.bool_),
        col("dpd", np.int32),  # (the feature columns' dtype)
        col("pd", np.float64),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(starts, min_size=4, max_size=4),
    st.lists(step, min_size=1, max_size=60),
    st.integers(0, 60),
    st.sampled_from([CTX, CTX_FAST, CTX_PD]),
)
def test_quiet_pass_then_decide_equals_decide_alone(
    initial: list[PolicyState], steps: list[dict[str, Any]], cut: int, ctx: PolicyContext
) -> None:
    """Four customers' rescorings in two batches (cut anywhere): the kernel takes the quiet
    ones (also of customers with open alerts or cool-downs), decide the rest from the kernel's
    state; every record, every final state and the live quality (defaults caught and missed,
    lead times, alert endings) is what decide alone gives."""
    initial = [_tagged(p, ctx) for p in initial]
    clock = [T0] * 4
    obs: list[tuple[int, Observation]] = []
    for n, s in enumerate(steps):
        c = s["customer"]
        clock[c] += s["dt"] * DAY
        obs.append((c, observation(c, n, {**s, "t": clock[c]})))

    expected_states = list(initial)
    expected: list[list[Record]] = []
    state_after: list[bytes] = []  # decide's state of the customer after each rescoring
    want_quality, quality = Quality(), Quality()
    for c, o in obs:
        expected_states[c], out = decide(expected_states[c], o, ctx, want_quality)
        expected.append(out)
        state_after.append(expected_states[c].to_bytes())

    states = list(initial)
    got: list[list[Record]] = []
    for lo, hi in ((0, cut), (cut, len(obs))):
        part = obs[lo:hi]
        if not part:
            continue
        outs: dict[int, list[Record]] = {}
        seen: list[int] = []

        def decide_row(
            i: int, state: PolicyState, part: Any = part, outs: Any = outs, seen: Any = seen
        ) -> Any:
            seen.append(i)
            new, out = decide(state, part[i][1], ctx, quality)
            outs[i] = out
            return new

        q = quiet_pass(states, _inputs(part), ctx, decide_row)
        for c in range(4):  # each customer's loud rows reach decide in arrival order
            mine = [i for i in seen if part[i][0] == c]
            assert mine == sorted(mine)
        assert sorted(seen) == np.flatnonzero(q.decided).tolist()
        for c, a in enumerate(q.states):  # the state after each customer's last rescoring
            rows = [i for i, (cc, _) in enumerate(part) if cc == c]
            if a is None:
                assert not rows or all(
                    not q.regraded[i] and not q.decided[i] and expected[lo + i] == [] for i in rows
                )
                continue
            assert a.to_bytes() == state_after[lo + rows[-1]]
            states[c] = a
        for i, (_c, o) in enumerate(part):
            if q.decided[i]:
                got.append(outs[i])
            else:  # the pipeline's way: a grade change record if the kernel moved the grade
                old = (int(q.old_grade[i]), float(q.old_score[i]))
                args = (
                    o.customer_id, o.trigger_event_id, o.event_time, *old, o.grade, o.score, o.pd,
                    o.exposure,
                )  # fmt: skip
                got.append([grade_change(*args, ctx)] if q.regraded[i] else [])
    assert got == expected
    assert [s.to_bytes() for s in states] == [s.to_bytes() for s in expected_states]
    # (decide sees the customers' loud rows in rounds: the lead times in another order)
    assert (quality.defaults, quality.ended) == (want_quality.defaults, want_quality.ended)
    assert sorted(quality.lead_days) == sorted(want_quality.lead_days)


def test_only_the_loud_rescoring_goes_to_decide_and_the_kernel_goes_on_after_it() -> None:
    """Steady rescorings are the kernel's; the one that would alert (a bounced debit) is handed
    to decide with the state before it, and the kernel takes the rest from decide's state."""
    start, _ = decide(PolicyState.new(), observation(0, 0, _quiet_step(T0)), CTX)
    steps = [_quiet_step(T0 + k * DAY) for k in range(1, 6)]
    steps[3]["bounced"] = 1
    obs = [(0, observation(0, n, s)) for n, s in enumerate(steps, 1)]
    handed: list[tuple[int, PolicyState]] = []
    outs: list[Any] = []

    def decide_row(i: int, state: PolicyState) -> PolicyState:
        handed.append((i, state))
        new, out = decide(state, obs[i][1], CTX)
        outs.append(out)
        return new

    q = quiet_pass([start], _inputs(obs), CTX, decide_row)
    assert q.decided.tolist() == [False, False, False, True, False]
    assert not q.regraded.any()
    assert [i for i, _ in handed] == [3] and handed[0][1].clock == T0 + 3 * DAY
    assert [r.signal for r in outs[0]] == ["bounced_debit"]
    state = start
    for _, o in obs:
        state, _out = decide(state, o, CTX)
    assert q.states[0] == state  # with the alert open, after the last rescoring


def _never(i: int, state: PolicyState) -> PolicyState:
    raise AssertionError(f"rescoring {i} is quiet")


def test_arrears_mark_is_set_and_cleared_as_decide_does() -> None:
    """Arrears without a bucket change are quiet; so is the cure after them, which clears the
    arrears mark (the state decide keeps to resolve alerts opened meanwhile)."""
    start, _ = decide(PolicyState.new(), observation(0, 0, _quiet_step(T0)), CTX)
    steps = [_quiet_step(T0 + k * DAY) for k in range(1, 4)]
    steps[0]["arrears"] = True
    obs = [(0, observation(0, n, s)) for n, s in enumerate(steps, 1)]
    for upto in (1, 3):  # the state after the arrears, then after the cure
        decided, after, _, _, _ = quiet_pass([start], _inputs(obs[:upto]), CTX, _never)
        assert not decided.any()
        state = start
        for _, o in obs[:upto]:
            state, out = decide(state, o, CTX)
            assert out == []
        assert after[0] == state
        assert bool(state.flags & 1) == (upto == 1)  # policy_state._ARREARS_SEEN


def _quiet_step(t: float) -> dict[str, Any]:
    return {
        "t": t,
        "grade": 1,
        "wobble": 0,
        "dpd": 0,
        "arrears": False,
        "bounced": 0,
        "pre_due": False,
        "inflow": 1.0,
        "rate": False,
        "active": True,
    }
