"""The lender's reported delinquency (``DelinquencyStatus``): the source of a reported loan's
DPD, bucket and five-category floor, aged day by day, cured by a newer report or by payments
clearing the reported overdue amount; refused or dead-lettered like every other event."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from schemas.codec import RecordError, decode, decode_input, encode
from schemas.events import Alert, DeadLetter, DelinquencyStatus, LoanEvent, RepaymentEvent
from streams.core.features import FEATURE_NAMES, FEATURES, features_into
from streams.core.pipeline import Pipeline
from streams.core.state import CustomerState, Facts, Outcome, StateConfig
from streams.evaluation.backtest import backtest
from tests.conftest import T0, expert_scorecard, loan_book
from tests.unit.test_pipeline import records
from tests.unit.test_state import CFG, CID, at, opened, pay, reverse, run, ts
from tests.unit.test_state_versions import old_bytes


def status(
    eid: str,
    when: dt.datetime | dt.date,
    dpd: int,
    owed: float | None = None,
    cat: str | None = None,
    loan: str = "L1",
) -> DelinquencyStatus:
    if isinstance(when, dt.date) and not isinstance(when, dt.datetime):
        when = at(when)
    return DelinquencyStatus(
        event_id=eid,
        customer_id=CID,
        event_time=when,
        kind="delinquency_status",
        loan_id=loan,
        days_past_due=dpd,
        overdue_amount=owed,
        five_category=cat,  # type: ignore[arg-type]
    )


def day(m: int, d: int) -> dt.date:
    return dt.date(2024, m, d)


def facts(s: CustomerState, d: dt.date) -> Facts:
    """The facts at the end of day ``d``."""
    return s.facts(ts(d), CFG)


def feature(s: CustomerState, d: dt.date, name: str) -> float:
    row = np.empty(len(FEATURES))
    features_into(s, ts(d), row, CFG)
    return float(row[FEATURE_NAMES.index(name)])


# the loan: 1,000 due on the 10th of each month from 10 Feb 2024, nothing paid unless said


def test_before_its_first_report_a_loan_keeps_the_derived_dpd() -> None:
    s = run([opened(), status("r", day(3, 1), 5, 500.0)])
    assert facts(s, day(2, 29)).dpd == 19  # derived: from 10 Feb
    assert facts(s, day(3, 1)).dpd == 5  # the lender's


def test_a_reported_dpd_ages_a_day_per_day_with_bucket_and_floor() -> None:
    """30 reported on 1 March is 40 on 11 March (derived would say 30), 91 on 31 May: M4 and
    substandard; the instalments falling due meanwhile do not move it."""
    s = run([opened(), status("r", day(3, 1), 30, 800.0)])
    got = [facts(s, d) for d in (day(3, 1), day(3, 11), day(5, 31))]
    assert [f.dpd for f in got] == [30, 40, 121]
    assert [f.bucket_name for f in got] == ["M1", "M2", "M5"]
    assert [f.five_category for f in got] == ["special_mention"] * 2 + ["substandard"]
    assert [f.overdue_amount for f in got] == [800.0] * 3
    assert all(f.has_arrears for f in got)


def test_a_report_of_zero_cures_whatever_the_schedule_says() -> None:
    """Nothing paid by riskmon's records, yet the lender says current: DPD 0, no arrears."""
    s = run([opened(), status("r", day(4, 20), 0)])
    assert facts(s, day(4, 19)).dpd == 69
    f = facts(s, day(4, 20))
    assert (f.dpd, f.bucket_name, f.five_category, f.overdue_amount, f.has_arrears) == (
        0,
        "M0",
        "normal",
        0.0,
        False,
    )
    assert facts(s, day(6, 30)).dpd == 0  # until a newer report


def test_payments_clearing_the_reported_overdue_amount_cure_from_that_day() -> None:
    """A day's payments count before that day's report; later ones clear the amount: partial
    leaves the DPD ageing, the one that completes it cures at its day's end."""
    s = run(
        [
            opened(),
            pay("same-day", at(day(3, 1), 8), 300.0),
            status("r", at(day(3, 1), 20), 10, 500.0),
            pay("p1", at(day(3, 5)), 200.0),
            pay("p2", at(day(3, 8)), 300.0),
        ]
    )
    assert [facts(s, d).dpd for d in (day(3, 4), day(3, 7), day(3, 8))] == [13, 16, 0]
    assert facts(s, day(3, 7)).overdue_amount == 300.0
    assert facts(s, day(3, 8)).has_arrears is False


def test_a_reversal_of_the_clearing_payment_reopens_the_arrears() -> None:
    s = run([opened(), status("r", day(3, 1), 10, 500.0), pay("p", at(day(3, 20)), 500.0)])
    assert facts(s, day(4, 15)).dpd == 0
    late_reversal = reverse("rv", at(day(4, 16)), "p", 500.0)  # > 7 days: a negative payment
    assert s.apply(late_reversal, CFG) is Outcome.APPLIED
    assert facts(s, day(4, 16)).dpd == 10 + (day(4, 16) - day(3, 1)).days
    assert facts(s, day(4, 15)).dpd == 0


def test_without_an_overdue_amount_only_a_newer_report_cures() -> None:
    """Past due by an unreported amount: payments do not cure (riskmon cannot tell what the
    lender counts as owed); the overdue amount is riskmon's own figure; a report of 0 cures."""
    s = run([opened(), status("r", day(3, 1), 10), pay("p", at(day(3, 2)), 5000.0)])
    f = facts(s, day(3, 20))
    assert (f.dpd, f.overdue_amount, f.has_arrears) == (29, 0.0, True)  # paid ahead, still late
    assert s.apply(status("r2", day(3, 21), 0), CFG) is Outcome.APPLIED
    assert facts(s, day(3, 21)).dpd == 0 and not facts(s, day(3, 21)).has_arrears


def test_an_overdue_amount_at_zero_days_falls_due_that_day() -> None:
    """As riskmon counts an instalment unpaid on its due day: 0 DPD that day, 1 the next."""
    s = run([opened(), status("r", day(3, 1), 0, 250.0)])
    assert [facts(s, d).dpd for d in (day(3, 1), day(3, 2), day(3, 3))] == [0, 1, 2]
    assert facts(s, day(3, 1)).has_arrears


def test_the_reported_class_raises_the_floor_until_a_newer_report() -> None:
    s = run([opened(), status("r", day(3, 1), 10, 500.0, "doubtful"), pay("p", at(day(3, 2)), 500)])
    f = facts(s, day(3, 5))
    assert (f.dpd, f.five_category) == (0, "doubtful")  # cured, the class stands
    assert s.apply(status("r2", day(3, 6), 0, None, "normal"), CFG) is Outcome.APPLIED
    assert facts(s, day(3, 6)).five_category == "normal"
    s.apply(status("r3", day(3, 7), 200, 100.0, "special_mention"), CFG)
    assert facts(s, day(3, 7)).five_category == "substandard"  # the DPD's floor is higher


def test_of_two_reports_of_one_day_the_later_stands_in_any_arrival_order() -> None:
    early = status("a", at(day(3, 1), 9), 40, 900.0)
    later = status("b", at(day(3, 1), 18), 5, 100.0)
    one = run([opened(), early, later])
    two = run([opened(), later, early])
    assert one.to_bytes() == two.to_bytes()
    assert facts(one, day(3, 1)).dpd == 5


def test_a_late_report_governs_the_days_up_to_the_next_one() -> None:
    """A report arriving after a newer one (inside the lateness bound) still sets the DPD of
    the days between them: the month's worst DPD sees it."""
    a = status("a", day(3, 1), 30, 500.0)
    b = status("b", day(3, 6), 0)
    in_order, late = run([opened(), a, b]), run([opened(), b, a])
    assert in_order.to_bytes() == late.to_bytes()
    assert facts(late, day(3, 6)).dpd == 0
    assert feature(late, day(3, 6), "dpd_max_3m") == 34  # 5 March: 30 + 4


def test_features_see_the_reported_dpd() -> None:
    """dpd, the windowed maxima and months since 30+ DPD follow the lender's count, also once
    the days are folded into the monthly history."""
    s = run([opened(), status("r", day(3, 1), 45, 500.0)])
    s.apply(pay("p", at(day(3, 3)), 500.0), CFG)  # 46 on 2 March, cured at the end of the 3rd
    later = at(day(5, 20))  # the watermark moves on: March is folded
    s.apply(status("r2", later, 0), CFG)
    assert s.reports[0].day > 0 and len(s.reports[0].pending) == 1  # March's is folded
    assert feature(s, day(5, 20), "dpd") == 0
    assert feature(s, day(5, 20), "dpd_max_3m") == 46
    assert feature(s, day(5, 20), "months_since_30dpd") == 2
    assert feature(s, day(5, 20), "late_3m") == 3  # the schedule's own late instalments


def test_a_status_for_an_unknown_loan_or_too_late_changes_nothing() -> None:
    s = run([opened(), pay("p", at(day(3, 20)), 10.0)])
    before = s.to_bytes()
    assert s.apply(status("x", day(3, 20), 3, loan="nope"), CFG) is Outcome.UNKNOWN_LOAN
    assert s.apply(status("y", day(3, 1), 3), CFG) is Outcome.TOO_LATE
    assert s.to_bytes() == before


def test_bytes_round_trip_with_and_without_reports_and_an_evicted_loan_drops_its_own() -> None:
    """States with and without reports round-trip (version 5); version-2 bytes (before reports)
    and version-3 bytes (with them) as an older worker wrote them still read."""
    plain = run([opened()])
    assert plain.to_bytes()[0] == 5 and CustomerState.from_bytes(plain.to_bytes()) == plain
    assert CustomerState.from_bytes(old_bytes(plain, 2)) == plain
    s = run([opened("L1"), opened("L2"), status("r", day(3, 1), 3, 100.0, loan="L2")])
    blob = s.to_bytes()
    assert blob[0] == 5 and CustomerState.from_bytes(blob) == s
    assert CustomerState.from_bytes(old_bytes(s, 3)) == s
    cfg = StateConfig(max_loans=1)
    one = CustomerState.new(CID)
    closed = LoanEvent(
        event_id="c2", customer_id=CID, event_time=at(day(3, 1)), kind="closed", loan_id="L2"
    )
    l3 = msgspec.structs.replace(opened("L3"), event_time=at(day(3, 2)))
    for ev in (opened("L2"), status("r", day(3, 1), 3, loan="L2"), closed, l3):
        assert one.apply(ev, cfg) is Outcome.APPLIED
    assert len(one.loans) == 1 and one.reports == []
    assert CustomerState.from_bytes(one.to_bytes()) == one


def test_reports_are_kept_in_the_order_of_the_loans() -> None:
    """(The kernel writes them in loan order: the reference must too.)"""
    later_for_the_first = status("a", day(3, 2), 3, loan="L1")
    s = run([opened("L1"), opened("L2"), status("b", day(3, 1), 3, loan="L2"), later_for_the_first])
    assert [r.h for r in s.reports] == [loan.h for loan in s.loans]


# -- the contract: hostile values are dead-lettered with a reason ------------------------------

GOOD: dict[str, Any] = {
    "event_id": "s1",
    "customer_id": "a",
    "event_time": "2024-03-01T23:00:00Z",
    "kind": "delinquency_status",
    "loan_id": "a-L",
    "days_past_due": 12,
}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"days_past_due": -1}, "$.days_past_due"),
        ({"days_past_due": 12.5}, "$.days_past_due"),
        ({"days_past_due": "12"}, "$.days_past_due"),
        ({"days_past_due": 36_501}, "$.days_past_due"),
        ({"days_past_due": None}, "$.days_past_due"),
        ({"days_past_due": ...}, "days_past_due"),
        ({"overdue_amount": -5}, "$.overdue_amount"),
        ({"overdue_amount": 1e13}, "$.overdue_amount"),
        ({"overdue_amount": 0}, "owes something"),
        ({"five_category": "bad"}, "$.five_category"),
        ({"loan_id": ""}, "$.loan_id"),
    ],
)
def test_invalid_values_are_schema_errors(change: dict[str, Any], where: str) -> None:
    doc = {k: v for k, v in {**GOOD, **change}.items() if v is not ...}
    with pytest.raises(RecordError) as info:
        decode_input(json.dumps(doc), "loans")
    assert info.value.reason == "schema" and where in info.value.detail


def test_the_loans_topic_reads_both_record_types_with_their_own_errors() -> None:
    assert isinstance(decode_input(json.dumps(GOOD), "loans"), DelinquencyStatus)
    assert decode_input(json.dumps({**GOOD, "overdue_amount": 0}).replace("12", "0"), "loans")
    loan = {**GOOD, "kind": "opened"}
    with pytest.raises(RecordError, match="principal"):  # a loan event's error, as before
        decode_input(json.dumps(loan), "loans")
    with pytest.raises(RecordError) as info:
        decode_input(b"{not json", "loans")
    assert info.value.reason == "not_json"
    with pytest.raises(RecordError):  # a status is no repayment
        decode_input(json.dumps(GOOD), "repayments")


def _statuses(*docs: dict[str, Any]) -> list[tuple[str, bytes, bytes]]:
    return [("loans", d["customer_id"].encode(), json.dumps(d).encode()) for d in docs]


def test_through_the_pipeline_bad_statuses_are_dead_lettered_unknown_loans_parked() -> None:
    """A hostile value: a ``schema`` dead letter; a status for a loan never seen: parked, then
    dead-lettered as ``unknown_loan`` (here at the end of the input); the rest unchanged."""
    book = loan_book({"a": True, "b": False})
    t = "2026-01-02T23:00:00Z"  # the book's second day
    bad = _statuses(
        {**GOOD, "event_id": "x1", "event_time": t, "days_past_due": -3},
        {**GOOD, "event_id": "x2", "event_time": t, "overdue_amount": 0},
        {**GOOD, "event_id": "x3", "event_time": t, "customer_id": "b", "loan_id": "ghost"},
    )
    clean = Pipeline(expert_scorecard(), offline=True)
    clean_res = clean.process(records(book))
    pipe = Pipeline(expert_scorecard(), offline=True)
    res = pipe.process(records(bad + book))
    end = pipe.end_of_input()
    outs = [*res.outputs, *end.outputs]
    dead = [decode(o.value, DeadLetter) for o in outs if o.topic == "deadletter"]
    dead = [d for d in dead if d.topic == "riskmon.loans"]
    assert Counter(d.reason for d in dead) == {"schema": 2, "unknown_loan": 1}
    assert [d.original for d in dead if d.reason == "unknown_loan"] == [bad[2][2]]
    out = Counter(o for (_t, o), n in (res.outcomes + end.outcomes).items() for _ in range(n))
    assert sum(out.values()) == len(book) + len(bad)
    alerts = [o.value for o in res.outputs if o.topic == "alerts"]
    assert alerts == [o.value for o in clean_res.outputs if o.topic == "alerts"]


def test_a_status_before_its_loan_is_parked_then_applied() -> None:
    """The loans topic carries both: a status sent ahead of its contract waits for it."""
    book = loan_book({"a": True})
    opened_ev = decode(book[0][2], LoanEvent)
    st = msgspec.structs.replace(
        decode_input(json.dumps(GOOD), "loans"),  # type: ignore[type-var]
        event_time=opened_ev.event_time + dt.timedelta(hours=1),
        days_past_due=0,
    )
    late_open = msgspec.structs.replace(opened_ev, event_time=st.event_time + dt.timedelta(hours=1))
    pipe = Pipeline(expert_scorecard(), offline=True)
    first = pipe.process(records([("loans", b"a", encode(st))]))
    assert first.parked == 1 and not first.outputs
    res = pipe.process(records([("loans", b"a", encode(late_open))], offsets=Counter(loans=1)))
    assert res.parked == -1 and res.outcomes[("loans", "processed")] == 2
    assert pipe.entries["a"].state.reports


def test_repayment_event_is_unchanged_by_the_new_type() -> None:
    """(The repayments topic has one type: its decoder is the plain one.)"""
    book = loan_book({"a": False})
    ev = decode_input(book[1][2], "repayments")
    assert isinstance(ev, RepaymentEvent)


# -- a backtest where the lender's DPD differs from the derived one ----------------------------


def _book_file(path: Path, statuses: list[DelinquencyStatus]) -> Path:
    """loan_book's two customers ("paying" pays every instalment, "stopped" only the first),
    with ``statuses`` merged in event-time order, as a JSON-lines file."""
    events = loan_book({"paying": False, "stopped": True})
    lines = [(decode_input(v, r).event_time, v) for r, _k, v in events]
    lines += [(s.event_time, encode(s)) for s in statuses]
    lines.sort(key=lambda x: x[0])
    path.write_bytes(b"\n".join(v for _t, v in lines) + b"\n")
    return path


def _lender(cust: str, eid: str, days: int, dpd: int) -> DelinquencyStatus:
    return DelinquencyStatus(
        event_id=eid,
        customer_id=cust,
        event_time=T0 + dt.timedelta(days=days, hours=23),
        kind="delinquency_status",
        loan_id=f"{cust}-L",
        days_past_due=dpd,
    )


def test_a_backtest_follows_the_lenders_dpd_where_it_differs_from_the_instalments(
    tmp_path: Path,
) -> None:
    """The lender counts "paying" 40 days past due on day 45 (say, fees riskmon never saw)
    and "stopped" current after a restructuring: the dpd_bucket alerts, their DPD, bucket and
    floor, and the final picture follow the lender's count, aged day by day; without the
    statuses the same book alerts the other way round."""
    lender = [
        _lender("paying", "l1", 45, 40),
        _lender("paying", "l2", 75, 70),
        _lender("stopped", "l3", 61, 0),
        _lender("stopped", "l4", 91, 0),
    ]
    card = expert_scorecard()
    plain = backtest(_book_file(tmp_path / "plain.jsonl", []), card)
    told = backtest(_book_file(tmp_path / "told.jsonl", lender), card)

    def bucket_alerts(res: Any, cust: str) -> list[Any]:
        return [a for a in res.alerts if a.signal == "dpd_bucket" and a.customer_id == cust]

    assert not bucket_alerts(plain, "paying") and bucket_alerts(plain, "stopped")
    assert not bucket_alerts(told, "stopped")  # the lender says current: no DPD alert
    paying = bucket_alerts(told, "paying")
    assert [(a.status, a.m_bucket, a.severity, a.dpd) for a in paying] == [
        ("opened", "M2", "orange", 40),
        ("escalated", "M3", "red", 70),
        ("escalated", "M4", "red", 115),  # no newer report: it kept ageing past 90
    ]
    assert [a.trigger_event_id for a in paying[:2]] == ["l1", "l2"]
    assert [a.five_category for a in paying] == ["special_mention"] * 2 + ["substandard"]
    # every rescoring of "paying" from day 45 on carries the lender's DPD, aged
    obs = told.observations
    seen = [
        (t, d) for c, t, d in zip(obs.customer, obs.time, obs.dpd, strict=True) if c == "paying"
    ]
    start = (T0 + dt.timedelta(days=45)).timestamp()
    for t, d in seen:
        if start <= t < (T0 + dt.timedelta(days=75)).timestamp():
            assert d == 40 + int(t // 86400) - int(start // 86400), (t, d)
    views = {v["customer_id"]: v for v in told.final_views()}
    last, l2 = max(t for t, _d in seen), (T0 + dt.timedelta(days=75)).timestamp()
    assert views["paying"]["dpd"] == 70 + int(last // 86400) - int(l2 // 86400)
    assert views["stopped"]["dpd"] == 0
    assert told.accounting()["messages"] == plain.accounting()["messages"] + 4
    assert told.dead_letters == plain.dead_letters


@pytest.mark.parametrize("batch", [7, 700])
def test_kernel_and_python_path_agree_on_a_book_with_reports(batch: int) -> None:
    """A simulated book with month-end statuses (every third one reporting 17 days more than
    the instalments say, every fifth also a class) and its delivery noise: the state kernel and
    the all-Python path give the same records, outcomes and table bytes."""
    import re

    from streams.sim.simulate import SimConfig, Simulation
    from tests.unit.test_pipeline import kernel_and_python

    events = []
    k = 0
    for r in Simulation(SimConfig(customers=60, months=8, seed=11, reported_dpd=True)).records():
        value = r.value
        if b'"delinquency_status"' in value:
            k += 1
            if k % 3 == 0:
                value = re.sub(
                    rb'"days_past_due":(\d+)',
                    lambda m: b'"days_past_due":%d' % (int(m.group(1)) + 17),
                    value,
                )
                value = re.sub(rb',"overdue_amount":[0-9.]+', b"", value)
            if k % 5 == 0:
                value = value.replace(b'"five_category":"normal"', b'"five_category":"doubtful"')
        events.append((r.topic, r.key or b"", value))
    recs = records(events)
    (out_k, table_k, outcomes_k), (out_p, table_p, outcomes_p) = kernel_and_python(recs, batch)
    assert outcomes_k == outcomes_p and outcomes_k[("loans", "processed")] > 60 * 8
    assert out_k == out_p
    assert table_k == table_p
    alerts = [decode(o.value, Alert) for o in out_k if o.topic == "alerts"]
    assert {"doubtful"} <= {a.five_category for a in alerts}
