"""The feature builder: catalogue, exact values on hand-built histories, no side effects."""

from __future__ import annotations

import datetime as dt
import math
import statistics

import numpy as np

from schemas.events import (
    GUARANTEE_METHODS,
    REPAYMENT_METHODS,
    FirmProfile,
    Instalment,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)
from streams.core.features import (
    FEATURE_NAMES,
    FEATURES,
    feature_dict,
    features_and_facts,
    features_into,
)
from streams.core.state import CustomerState, Outcome, StateConfig

UTC = dt.UTC
CID = "c-42"
CFG = StateConfig()
OPEN_AT = dt.datetime(2024, 1, 2, 8, tzinfo=UTC)


def due(k: int) -> dt.date:
    m = k  # instalment k due on the 15th, from February 2024
    return dt.date(2024 + m // 12, m % 12 + 1, 15)


def at(d: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(d, dt.time(hour), UTC)


def end_of(d: dt.date) -> float:
    return at(d, 23).timestamp()


def opened() -> LoanEvent:
    return LoanEvent(
        event_id="open",
        customer_id=CID,
        event_time=OPEN_AT,
        kind="opened",
        loan_id="L",
        principal=6000.0,
        annual_rate=0.09,
        term_months=6,
        repayment_method="interest_only_balloon",
        guarantee_method="mortgage_pledge",
        schedule=[Instalment(seq=k, due_date=due(k), amount=1000.0) for k in range(1, 7)],
        firm=FirmProfile(
            industry="food", region="north", years_in_business=3.0, shareholder_holding_years=1.5
        ),
    )


def pay(eid: str, d: dt.date, amount: float = 1000.0) -> RepaymentEvent:
    return RepaymentEvent(
        event_id=eid,
        customer_id=CID,
        event_time=at(d),
        kind="payment_received",
        loan_id="L",
        amount=amount,
    )


def credit(eid: str, d: dt.date, amount: float, balance: float, payer: str) -> TransactionEvent:
    return TransactionEvent(
        event_id=eid,
        customer_id=CID,
        event_time=at(d, 9),
        kind="credit",
        account_id="A",
        amount=amount,
        balance_after=balance,
        counterparty=payer,
    )


def build(events: list[LoanEvent | RepaymentEvent | TransactionEvent]) -> CustomerState:
    s = CustomerState.new(CID)
    for e in sorted(events, key=lambda e: e.event_time):
        assert s.apply(e, CFG) is Outcome.APPLIED
    return s


def row(s: CustomerState, as_of: float) -> dict[str, float]:
    out = np.full(len(FEATURES), -12345.0)
    features_into(s, as_of, out, CFG)
    return dict(zip(FEATURE_NAMES, out.tolist(), strict=True))


def test_catalogue_is_consistent() -> None:
    """Unique names, a label each, categoricals carry their schema levels."""
    assert len(set(FEATURE_NAMES)) == len(FEATURES)
    assert all(f.label and f.kind in ("numeric", "categorical") for f in FEATURES)
    cats = {f.name: f.levels for f in FEATURES if f.kind == "categorical"}
    assert cats == {"repayment_method": REPAYMENT_METHODS, "guarantee_method": GUARANTEE_METHODS}
    assert all(not f.levels for f in FEATURES if f.kind == "numeric")
    assert FEATURES[FEATURE_NAMES.index("dpd_max_6m")].label == "days past due (max 6 m)"


def test_new_customer_with_a_loan_has_every_column_filled() -> None:
    """Every column is written (no leftover sentinel); missing history is NaN, not 0."""
    s = build([opened()])
    r = row(s, end_of(dt.date(2024, 1, 20)))
    assert -12345.0 not in r.values()
    assert r["dpd"] == 0
    assert math.isnan(r["inflow_ratio_6m"]) and math.isnan(r["balance_avg_3m"])
    assert math.isnan(r["months_since_30dpd"]) and math.isnan(r["days_since_inflow"])
    assert REPAYMENT_METHODS.index("interest_only_balloon") == r["repayment_method"]
    assert GUARANTEE_METHODS.index("mortgage_pledge") == r["guarantee_method"]


def test_delinquency_depth_and_frequency_after_a_cured_arrear() -> None:
    """Instalment 1 paid 40 days late, 2 and 3 on time: max DPD 40, one late, then cured."""
    late_pay = due(1) + dt.timedelta(days=40)  # pays instalments 1 and 2 together
    s = build([opened(), pay("p1", late_pay, 2000.0), pay("p3", due(3) - dt.timedelta(days=2))])
    as_of = due(3) + dt.timedelta(days=1)  # 2024-04-16
    r = row(s, end_of(as_of))
    assert r["dpd"] == 0
    assert r["dpd_max_6m"] == 40 - 1  # DPD at the end of the day before the payment day
    assert r["late_6m"] == 2  # instalments 1 (Feb 15) and 2 (Mar 15) were unpaid at due date
    assert r["consecutive_late"] == 0  # instalment 3 was paid on time
    last_30 = late_pay - dt.timedelta(days=1)
    assert (as_of - last_30).days // 30.4375 == r["months_since_30dpd"]
    assert r["overdue_amount"] == 0
    # 3 m = February .. April: instalments 1-3 due (3000), 2000 + 1000 paid
    assert r["paid_due_ratio_3m"] == 1.0
    early = [(due(1) - late_pay).days, (due(2) - late_pay).days, 2]  # negative = paid late
    assert sum(early) / 3 == r["days_paid_before_due_3m"]


def test_current_arrears_and_adequacy() -> None:
    """Nothing paid for two instalments: DPD, overdue amount, late count and consecutive late."""
    s = build([opened()])
    as_of = due(2) + dt.timedelta(days=5)
    r = row(s, end_of(as_of))
    assert (as_of - due(1)).days == r["dpd"]
    assert r["overdue_amount"] == 2000.0
    assert 2 == r["late_3m"] == r["consecutive_late"]
    assert r["paid_due_ratio_3m"] == 0.0


def test_inflow_balance_and_payers_match_a_hand_computation() -> None:
    """Monthly inflows, balances and distinct payers computed independently of the state."""
    inflows = {1: 800.0, 2: 1000.0, 3: 1200.0, 4: 1000.0, 5: 300.0}  # month (2024) -> amount
    balances = {1: 1500.0, 2: 2500.0, 3: 900.0, 4: 3000.0, 5: 1200.0}
    events: list[LoanEvent | RepaymentEvent | TransactionEvent] = [opened()]
    for m, amount in inflows.items():
        events.append(credit(f"c{m}", dt.date(2024, m, 20), amount, balances[m], f"payer-{m % 3}"))
    s = build(events)
    as_of = dt.date(2024, 6, 3)  # June; last complete month = May
    r = row(s, end_of(as_of))
    base6 = [inflows[m] for m in (1, 2, 3, 4)]  # observed months among the 6 before May
    assert inflows[5] / statistics.mean(base6) == r["inflow_ratio_6m"]
    assert (as_of - dt.date(2024, 5, 20)).days + (23 - 9) / 24 == r["days_since_inflow"]
    assert r["distinct_payers_3m"] == 2  # April payer-1, May payer-2
    assert statistics.mean([balances[4], balances[5]]) == r["balance_avg_3m"]
    assert min(balances[4], balances[5]) == r["balance_min_3m"]
    means6 = [balances[m] for m in (1, 2, 3, 4, 5)]
    expect = statistics.stdev(means6) / statistics.mean(means6)
    assert math.isclose(expect, r["balance_volatility_6m"], rel_tol=1e-12)


def test_profile_ages_with_event_time() -> None:
    """Years in business and holding time grow with the as-of time; months on book too."""
    s = build([opened()])
    later = OPEN_AT + dt.timedelta(days=365.25)
    r = row(s, later.timestamp())
    assert math.isclose(4.0, r["years_in_business"])
    assert math.isclose(2.5, r["shareholder_holding_years"])
    assert r["months_on_book"] == 12


def test_feature_dict_uses_level_strings_and_none() -> None:
    """Training tables get categorical levels as strings and None for missing."""
    d = feature_dict(build([opened()]), end_of(dt.date(2024, 1, 20)), CFG)
    assert list(FEATURE_NAMES) == list(d)
    assert d["repayment_method"] == "interest_only_balloon"
    assert d["inflow_ratio_6m"] is None
    assert d["dpd"] == 0.0


def test_features_read_without_side_effects_and_share_one_replay() -> None:
    """Building features leaves the state's bytes alone; features_and_facts == the two calls."""
    s = build([opened(), pay("p1", due(1) + dt.timedelta(days=3), 600.0)])
    before = s.to_bytes()
    as_of = end_of(due(2) + dt.timedelta(days=2))
    a = np.empty(len(FEATURES))
    b = np.empty(len(FEATURES))
    features_into(s, as_of, a, CFG)
    facts = features_and_facts(s, as_of, b, CFG)
    assert before == s.to_bytes()
    np.testing.assert_array_equal(a, b)
    assert math.isnan(facts.inflow_ratio) and math.isnan(s.facts(as_of, CFG).inflow_ratio)
    assert s.facts(as_of, CFG)._replace(inflow_ratio=0) == facts._replace(inflow_ratio=0)
    assert facts.dpd == a[FEATURE_NAMES.index("dpd")]
