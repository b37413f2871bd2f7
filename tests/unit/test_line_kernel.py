"""The line kernel (``_line_kernel``, inside the feature kernel) against the reference
(``lines.line_figures`` + ``features._fill``): bit-equal feature rows and equal facts on random
histories of lines (draws, statements, payments, reversals, statuses, a limit change, a close)
beside an instalment loan, at as-of days before, between and after the events."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import (
    DelinquencyStatus,
    InputEvent,
    Instalment,
    LineEvent,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)
from streams.core._features_pack import pack, unpack
from streams.core.features import (
    FEATURE_NAMES,
    FeatureBatch,
    features_and_facts,
    features_and_facts_reference,
)
from streams.core.state import CustomerState, StateConfig

CFG = StateConfig()
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
LINES = ("K1", "K2")


def _t(minute: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute)


@st.composite
def histories(draw: st.DrawFn) -> list[InputEvent]:
    """Events over ~14 months: two lines (one maybe closed or re-limited), an instalment loan,
    account credits; amounts from cents to near the money limit now and then."""
    n = draw(st.integers(5, 60))
    money = st.one_of(st.integers(0, 200_000).map(lambda c: c / 100), st.floats(1e9, 1e12))
    evs: list[InputEvent] = [
        LoanEvent(event_id="o1", customer_id="C", event_time=_t(0), kind="opened", loan_id="K1",
                  credit_limit=draw(st.sampled_from([0.0, 5000.0, 1e6]))),
        LoanEvent(event_id="o2", customer_id="C", event_time=_t(5), kind="opened", loan_id="K2",
                  credit_limit=2000.0),
        LoanEvent(event_id="o3", customer_id="C", event_time=_t(9), kind="opened", loan_id="L1",
                  principal=1000.0, annual_rate=0.1, term_months=1,
                  repayment_method="equal_instalment", guarantee_method="credit",
                  schedule=[Instalment(1, (T0 + dt.timedelta(days=40)).date(), 1000.0)]),
    ]  # fmt: skip
    minute = 10
    for k in range(n):
        minute += draw(st.integers(60, 20 * 24 * 60))
        t = _t(minute)
        lid = draw(st.sampled_from(LINES))
        kind = draw(
            st.sampled_from(["draw", "statement", "statement", "pay", "pay", "reversal",
                             "status", "limit", "close", "credit"])
        )  # fmt: skip
        eid = f"e{k}"
        if kind == "draw":
            evs.append(LineEvent(event_id=eid, customer_id="C", event_time=t, kind="draw",
                                 loan_id=lid, amount=draw(money)))  # fmt: skip
        elif kind == "statement":
            bal = draw(money)
            evs.append(
                LineEvent(event_id=eid, customer_id="C", event_time=t, kind="statement",
                          loan_id=lid, balance=bal, minimum_due=min(bal, draw(money)),
                          due_date=t.date() + dt.timedelta(days=draw(st.integers(0, 40))))
            )  # fmt: skip
        elif kind == "pay":
            evs.append(RepaymentEvent(event_id=eid, customer_id="C", event_time=t,
                                      kind="payment_received", loan_id=lid,
                                      amount=draw(money)))  # fmt: skip
        elif kind == "reversal":
            ref = f"e{draw(st.integers(0, max(k - 1, 0)))}"
            evs.append(RepaymentEvent(event_id=eid, customer_id="C", event_time=t,
                                      kind="reversal", loan_id=lid, amount=draw(money),
                                      reversed_event_id=ref))  # fmt: skip
        elif kind == "status":
            dpd = draw(st.integers(0, 120))
            owed = draw(st.none() | st.floats(0.01, 5000.0)) if dpd else None
            evs.append(DelinquencyStatus(event_id=eid, customer_id="C", event_time=t,
                                         kind="delinquency_status", loan_id=lid,
                                         days_past_due=dpd, overdue_amount=owed))  # fmt: skip
        elif kind == "limit":
            evs.append(LoanEvent(event_id=eid, customer_id="C", event_time=t, kind="changed",
                                 loan_id=lid, credit_limit=draw(money)))  # fmt: skip
        elif kind == "close":
            evs.append(LoanEvent(event_id=eid, customer_id="C", event_time=t, kind="closed",
                                 loan_id=lid))  # fmt: skip
        else:
            evs.append(TransactionEvent(event_id=eid, customer_id="C", event_time=t,
                                        kind="credit", account_id="A", amount=draw(money),
                                        balance_after=draw(money)))  # fmt: skip
    # delivered up to 5 days out of order (inside the lateness bound)
    shifts = draw(st.lists(st.integers(0, 5 * 24 * 60), min_size=len(evs), max_size=len(evs)))
    order = sorted(
        range(len(evs)), key=lambda i: evs[i].event_time + dt.timedelta(minutes=shifts[i])
    )
    return [evs[i] for i in order]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=histories(), offsets=st.lists(st.integers(0, 40), min_size=1, max_size=3))
def test_kernel_rows_and_facts_equal_the_reference(
    evs: list[InputEvent], offsets: list[int]
) -> None:
    s = CustomerState.new("C")
    batch = FeatureBatch(CFG)
    expected = []
    for ev in evs:
        if s.apply(ev, CFG).value != "applied":
            continue
        now = s.last_event_time
        for off in (0, *offsets):  # the event's own moment and days after it
            as_of = now + off * 86400.0
            ref = np.empty(len(FEATURE_NAMES))
            facts = features_and_facts_reference(s, as_of, ref, CFG)
            got = np.empty(len(FEATURE_NAMES))
            assert features_and_facts(s, as_of, got, CFG) == facts or math.isnan(facts.inflow_ratio)
            assert _same(got, ref), (as_of, got.tolist(), ref.tolist())
            buf = pack(s)
            assert buf is not None
            back = np.empty(len(FEATURE_NAMES))
            features_and_facts_reference(unpack(buf, s.years_in_business, s.holding_years),
                                         as_of, back, CFG)  # fmt: skip
            assert _same(back, ref)
            batch.add(s, as_of)
            expected.append((ref, facts))
    if not expected:
        return
    rows, cols = batch.compute()
    for i, (ref, facts) in enumerate(expected):
        assert _same(rows[i], ref)
        assert cols[i]._replace(inflow_ratio=0.0) == facts._replace(inflow_ratio=0.0)
        assert cols.exposure_cents[i] >= 0
