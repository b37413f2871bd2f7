"""Live quality (streams/core/quality.py): defaults caught and missed, lead times and alert
endings as ``decide`` counts them, checked by hand, against the offline report's definition,
through a restart, across state versions and through the whole pipeline (no broker)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Alert
from streams.core.pipeline import Pipeline
from streams.core.policy import SEVERITIES, Observation, PolicyContext, decide
from streams.core.policy_state import OpenAlert, PolicyState
from streams.core.quality import Quality
from tests.conftest import expert_scorecard, loan_book
from tests.unit.test_pipeline import records
from tests.unit.test_policy import CTX, DAY, T0, _observations, ctx_with, late, obs

# a default on day d of T0 is dated to that day's end: leads from the same time of day run
# over the whole days by this fraction of a day
END = (DAY - T0 % DAY) / DAY


def default_time(o: Observation) -> float:
    """The report's default time: the end of the first day at 90+ DPD, from a rescoring's."""
    return (math.floor(o.event_time / DAY) - (o.dpd - 90) + 1) * DAY


WATCH_BOUNCES = ctx_with(
    signal_severity=(
        ("bounced_debit", "watch"),
        ("pre_due_shortfall", "blue"),
        ("inflow_collapse", "yellow"),
        ("rate_increase", "blue"),
        ("high_risk", "orange"),
    )
)


def counted(
    seq: Iterable[Observation], ctx: PolicyContext = CTX, state: PolicyState | None = None
) -> tuple[PolicyState, Quality, list[Alert]]:
    """Feed observations with a quality counter: final state, what it counted, the alerts."""
    q = Quality()
    s = state or PolicyState.new()
    alerts: list[Alert] = []
    for o in seq:
        s, out = decide(s, o, ctx, q)
        alerts += [r for r in out if isinstance(r, Alert)]
    return s, q, alerts


def ended(q: Quality) -> dict[str, int]:
    """Alert endings by ending (over signals)."""
    out: Counter[str] = Counter()
    for (_signal, ending), n in q.ended.items():
        out[ending] += n
    return dict(out)


def bounce_then_default() -> list[Observation]:
    """A bounced debit on day 10 (an actionable alert), arrears from day 40, 90 DPD on day 100."""
    return [
        obs(0, 0, 1),
        obs(1, 10, 1, new_bounced_debits=1),
        obs(2, 40, 2, **late(5, 1)),
        obs(3, 70, 3, **late(35, 2)),
        obs(4, 100, 4, **late(90, 3)),
        obs(5, 101, 4, **late(91, 4)),
    ]


def test_a_default_after_an_actionable_alert_is_caught_with_its_lead_time() -> None:
    """Lead = default - first actionable alert, in days (the bounce's, though it expired on
    day 40); the alerts open then (DPD from day 40, grade from day 70) ended in default; later
    rescorings in default count nothing more."""
    state, q, _ = counted(bounce_then_default())
    assert q.defaults == Counter(caught=1)
    assert q.lead_days == [pytest.approx(90 + END)]
    assert q.ended == Counter(
        {
            ("bounced_debit", "expired"): 1,
            ("dpd_bucket", "default"): 1,
            ("grade_worsening", "default"): 1,
        }
    )
    assert state.first_alert == T0 + 10 * DAY and state.settled == T0 + 100 * DAY


def test_a_default_first_seen_at_90_dpd_is_missed() -> None:
    """No alert before: missed, even though alerts open on the default rescoring (an alert at
    the default itself warns of nothing: the report's strict "before")."""
    seq = [obs(0, 0, 1), obs(1, 30, 1), obs(2, 120, 5, **late(95, 4))]
    state, q, alerts = counted(seq)
    opened = [a for a in alerts if a.status == "opened"]
    assert {a.signal for a in opened} == {"dpd_bucket", "grade_worsening"}
    assert {a.trigger_event_id for a in opened} == {"ev-2"}
    assert q.defaults == Counter(missed=1) and q.lead_days == [] and not q.ended
    # ... and that alert, opened in default, is not counted when it ends either
    _, q2, _ = counted([obs(3, 121, 1, has_arrears=False)], state=state)
    assert not q2


def test_watch_alerts_do_not_catch_a_default() -> None:
    """Only actionable alerts count: a watch-list bounce before the default is no catch, and
    its ending is not counted."""
    seq = [*bounce_then_default()[:2], obs(4, 100, 4, **late(90, 3))]
    _, q, alerts = counted(seq)
    _, qw, alerts_w = counted(seq, WATCH_BOUNCES)
    assert next(a.severity for a in alerts if a.status == "opened") == "yellow"
    assert next(a.severity for a in alerts_w if a.status == "opened") == "watch"
    assert q.defaults == Counter(caught=1)
    assert qw.defaults == Counter(missed=1) and not qw.ended


def test_a_default_is_counted_once_per_spell_through_restarts_and_replays() -> None:
    """Further 90+ rescorings, a restart from the stored bytes and a replay of the default
    rescoring on the stored state count nothing again."""
    seq = bounce_then_default()
    state, q, _ = counted(seq[:5])
    restored = PolicyState.from_bytes(state.to_bytes())
    again = [obs(6, 130, 5, **late(120, 4)), obs(7, 160, 6, **late(150, 5))]
    _, q2, _ = counted([seq[4], *again], state=restored)
    assert q.defaults == Counter(caught=1) and not q2


def test_a_cure_to_0_dpd_starts_a_new_spell() -> None:
    """After the default, 0 DPD ends the spell: the first spell's alerts do not catch the next
    default, the alerts still open then are not counted again; a new alert catches it."""
    state, _q, _ = counted(bounce_then_default())
    cure = [obs(10, 110, 1, has_arrears=False), obs(11, 111, 1)]
    state, qc, _ = counted(cure, state=state)
    assert state.first_alert == math.inf and not state.flags & 16
    assert not qc  # the two alerts resolved by the cure ended in default already
    # a second default with no alert in between: missed
    relapse = [obs(12, 150, 1), obs(13, 240, 4, **late(90, 3))]
    _, q2, _ = counted(relapse, state=state)
    assert q2.defaults == Counter(missed=1)
    # with a bounce in between: caught, lead from the bounce
    relapse = [obs(12, 150, 1, new_bounced_debits=1), obs(13, 240, 4, **late(90, 3))]
    _, q3, _ = counted(relapse, state=state)
    assert q3.defaults == Counter(caught=1) and q3.lead_days == [pytest.approx(90 + END)]


def test_endings_cure_expired_default() -> None:
    """Resolved by a payment: cure. No emission for 30 days: expired. Open at the default:
    default. Each counted once."""
    # cure: arrears, then paid back within the band
    _, q, _ = counted([obs(0, 0, 1), obs(1, 5, 1, **late(5, 1)), obs(2, 8, 1)])
    assert q.ended == Counter({("dpd_bucket", "cure"): 1}) and not q.defaults
    # expired: a bounce with no arrears is not cured by a payment, it expires
    _, q, _ = counted([obs(0, 0, 1), obs(1, 1, 1, new_bounced_debits=1), obs(2, 40, 1)])
    assert q.ended == Counter({("bounced_debit", "expired"): 1})
    # default: open at the default
    _, q, _ = counted(bounce_then_default())
    assert ended(q) == {"default": 2, "expired": 1}


def test_a_first_rescoring_already_in_default_is_not_counted() -> None:
    """A customer first seen at 90+ DPD (a loan backdated into default, a new worker on an old
    book): nothing could have warned, so neither caught nor missed."""
    state, q, _ = counted([obs(0, 0, 5, **late(120, 4)), obs(1, 1, 5, **late(121, 5))])
    assert not q and state.flags & 16


def v2_bytes(state: PolicyState) -> bytes:
    """``state`` as a version-2 worker stored it: without the two live-quality fields."""
    fields = msgspec.msgpack.decode(state.to_bytes()[1:])
    return b"\x02" + msgspec.msgpack.encode(fields[:-2])


def test_version_2_state_migrates() -> None:
    """A stored version-2 state reads back with the same fields, the earliest actionable open
    alert as the spell's first alert, and in default if it was past 90 DPD (M4+)."""
    state, _, _ = counted([*bounce_then_default()[:2], obs(2, 20, 2, **late(5, 1))])
    back = PolicyState.from_bytes(v2_bytes(state))
    assert back == state  # the earliest open alert is the bounce: the same first alert
    _, q, _ = counted([bounce_then_default()[4]], state=back)
    assert q.defaults == Counter(caught=1) and q.lead_days == [pytest.approx(90 + END)]
    # the bounce expired before the upgrade: the earliest alert known is the DPD one (day 40)
    state, _, _ = counted(bounce_then_default()[:4])
    assert PolicyState.from_bytes(v2_bytes(state)).first_alert == T0 + 40 * DAY
    # watch alerts are not a first alert; no open alert: none known
    watch = msgspec.structs.replace(state, open=(OpenAlert(2, "a", 0, T0, T0, 0, 0),))
    assert PolicyState.from_bytes(v2_bytes(watch)).first_alert == math.inf
    # past 90 DPD when stored: in default, counted before the upgrade
    in_default, _, _ = counted(bounce_then_default())
    old = v2_bytes(msgspec.structs.replace(in_default, flags=in_default.flags & ~16))
    back = PolicyState.from_bytes(old)
    assert back.flags & 16 and back.settled == back.clock
    _, q, _ = counted(
        [obs(9, 130, 5, **late(120, 4)), obs(10, 131, 1, has_arrears=False)], state=back
    )
    assert not q


def test_version_1_state_migrates_too() -> None:
    """Before "watch" (severity indices one lower) and before live quality, in one step."""
    state, _, _ = counted([*bounce_then_default()[:2], obs(2, 20, 2, **late(5, 1))])
    shifted = tuple(msgspec.structs.replace(a, severity=a.severity - 1) for a in state.open)
    old = msgspec.structs.replace(state, open=shifted)
    back = PolicyState.from_bytes(b"\x01" + v2_bytes(old)[1:])
    assert back == state
    assert [SEVERITIES[a.severity] for a in back.open] == ["yellow", "yellow"]


step = st.fixed_dictionaries(
    {
        "dt": st.sampled_from([0.0, 0.5, 3.0, 20.0]),
        "grade": st.integers(0, 7),
        "dpd": st.sampled_from([0, 0, 0, 5, 35, 70, 90, 100]),
        "bounced": st.sampled_from([0, 0, 1]),
        "pre_due": st.booleans(),
        "inflow": st.sampled_from([math.nan, 0.1, 1.2]),
        "rate": st.booleans(),
        "active": st.sampled_from([True, True, True, False]),
    }
)


@settings(max_examples=200, deadline=None)
@given(st.lists(step, min_size=1, max_size=30), st.sampled_from([CTX, WATCH_BOUNCES]))
def test_first_default_agrees_with_the_report_definition(
    steps: list[dict[str, Any]], ctx: PolicyContext
) -> None:
    """Up to the first 90+ DPD rescoring, what decide counts is the offline report's verdict on
    its records (streams/evaluation/budget.py): caught iff the first opened non-watch alert's
    event time is strictly before the default time (the end of the first day at 90+ DPD), lead
    = the difference in days. One deviation: alerts opened by the default rescoring itself do
    not count (at exactly 90 DPD the report's day-end default time would take them)."""
    seq = _observations(steps)
    at = next((i for i, o in enumerate(seq) if o.dpd >= 90), None)
    if at is not None:
        seq = seq[: at + 1]
    _, q, alerts = counted(seq, ctx)
    if at is None or at == 0:  # no default, or in default from the first rescoring
        assert not q.defaults
        return
    when = default_time(seq[at])
    before = [a for a in alerts if a.trigger_event_id != seq[at].trigger_event_id]
    first = min(
        (
            a.event_time.timestamp()
            for a in before
            if a.status == "opened" and a.severity != "watch"
        ),
        default=math.inf,
    )
    if first < when:
        assert q.defaults == Counter(caught=1)
        assert q.lead_days == [pytest.approx((when - first) / DAY)]
    else:
        assert q.defaults == Counter(missed=1)


def test_quality_merge_and_arithmetic() -> None:
    """Caught needs a strictly earlier alert; merge adds."""
    a, b = Quality(), Quality()
    a.default(T0, T0 + 45 * DAY)
    a.default(T0, T0)
    b.default(math.inf, T0)
    b.end("dpd_bucket", "cure")
    a.merge(b)
    assert a.defaults == Counter(caught=1, missed=2)
    assert a.lead_days == [45.0]
    assert a.ended == Counter({("dpd_bucket", "cure"): 1})
    assert not Quality() and a


def oracle(alerts: list[Alert], seen: list[Observation]) -> tuple[Counter[str], list[float]]:
    """Defaults by the report's definition, from a pipeline's alerts and rescorings: each
    customer's first 90+ DPD rescoring (not its first rescoring) dates the default to the end
    of the first day at 90+ DPD, caught by an opened non-watch alert of an earlier rescoring
    before that time."""
    opened: dict[str, list[float]] = {}  # trigger event id -> its opened alerts' times
    for a in alerts:
        if a.status == "opened" and a.severity != "watch":
            opened.setdefault(a.trigger_event_id, []).append(a.event_time.timestamp())
    first: dict[str, float] = {}  # customers rescored so far -> their first such alert
    outcome: Counter[str] = Counter()
    lead: list[float] = []
    done: set[str] = set()
    for o in seen:
        cid = o.customer_id
        if o.dpd >= 90 and cid not in done:
            done.add(cid)
            if cid in first:
                t, at = first[cid], default_time(o)
                outcome["caught" if t < at else "missed"] += 1
                if t < at:
                    lead.append((at - t) / DAY)
        first[cid] = min([first.get(cid, math.inf), *opened.get(o.trigger_event_id, ())])
    return outcome, lead


def test_the_pipeline_reports_what_the_report_would_on_both_policy_paths() -> None:
    """A book over five months (the deteriorating customers reach 90 DPD): the batch results'
    quality equals the report's definition on the same alerts, on the recorded path (decide
    for every rescoring) and the worker's (the policy kernel for the quiet ones), whatever the
    batch size."""
    book = loan_book({f"c{i}": i % 3 != 0 for i in range(9)}, months=5)
    recs = records(book)
    seen: list[Observation] = []
    results: list[Quality] = []
    for observe, batch in ((seen.append, 1000), (None, 1000), (None, 7)):
        pipe = Pipeline(expert_scorecard(), observe=observe, offline=True)
        q = Quality()
        alerts: list[Alert] = []
        for i in range(0, len(recs), batch):
            res = pipe.process(recs[i : i + batch])
            q.merge(res.quality)
            alerts += [a for a, _, _ in res.alerts]
        results.append(q)
        if observe is not None:
            outcome, lead = oracle(alerts, seen)
            assert q.defaults == outcome == Counter(caught=6)
            assert q.lead_days == pytest.approx(lead)
    for q in results[1:]:
        assert (q.defaults, q.ended) == (results[0].defaults, results[0].ended)
        assert sorted(q.lead_days) == pytest.approx(sorted(results[0].lead_days))
    assert ended(results[0]).get("default", 0) >= 6
