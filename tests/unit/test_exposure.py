"""Exposure: the outstanding principal read from a loan's schedule, its numba twin, and the
expected loss that orders alerts and the queue."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import Instalment, LoanEvent, RepaymentEvent
from streams.core._exposure_kernel import exposure_packed
from streams.core._features_pack import pack
from streams.core.delinquency import day_of
from streams.core.exposure import expected_loss, exposure_cents, unpaid_value
from streams.core.features import FeatureBatch
from streams.core.state import CustomerState, Outcome, StateConfig
from streams.sim.book import METHODS, schedule
from tests.unit.test_features_kernel import CID, PARITY, T0, Event, books

CFG = StateConfig()


def assert_twins_agree(state: CustomerState, as_of: float) -> int:
    """The kernel on the packed state gives the reference's cents; returns them."""
    want = exposure_cents(state, as_of)
    buf = pack(state)
    if buf is not None:
        assert exposure_packed(buf, day_of(as_of)) == want
    return want


@PARITY
@given(books(), st.sampled_from([CFG, StateConfig(lateness_days=2)]))
def test_kernel_matches_the_reference_after_every_event(
    book: tuple[list[Event], list[float]], cfg: StateConfig
) -> None:
    """Random books (several loans, reversals, closes, rate changes, instalment notices): equal
    cents after every event and at later as-of times."""
    evs, offsets = book
    state = CustomerState.new(CID)
    for e in evs:
        state.apply(e, cfg)
        assert assert_twins_agree(state, state.last_event_time) >= 0
    for days in offsets:
        assert_twins_agree(state, state.last_event_time + days * 86400.0)


def _opened(method: int, principal_c: int, rate: float, amounts: list[int]) -> LoanEvent:
    first = T0.date() + dt.timedelta(days=30)
    return LoanEvent(
        event_id="open",
        customer_id=CID,
        event_time=T0,
        kind="opened",
        loan_id="L",
        principal=principal_c / 100,
        annual_rate=rate,
        term_months=len(amounts),
        repayment_method=METHODS[method],  # type: ignore[arg-type]
        guarantee_method="credit",
        schedule=[
            Instalment(seq=k + 1, due_date=first + dt.timedelta(days=30 * k), amount=a / 100)
            for k, a in enumerate(amounts)
        ],
    )


def _paid(k: int, cents: int, days: int) -> RepaymentEvent:
    return RepaymentEvent(
        event_id=f"pay-{k}",
        customer_id=CID,
        event_time=T0 + dt.timedelta(days=days),
        kind="payment_received",
        loan_id="L",
        amount=cents / 100,
    )


@pytest.mark.parametrize("method", range(len(METHODS)))
@pytest.mark.parametrize(("term", "rate"), [(12, 0.12), (36, 0.085), (6, 0.03)])
def test_exposure_is_the_principal_left_after_each_instalment(
    method: int, term: int, rate: float
) -> None:
    """The simulator's own schedules (annuity, equal principal, balloon; cents, interest rounded):
    after each instalment paid on its due day, the exposure is the principal the simulator says
    is left, to a cent per instalment of rounding; a missed instalment leaves it where it is."""
    principal_c = 12_345_678
    amounts, parts = schedule(
        np.array([principal_c]), np.array([rate]), np.array([term]), np.array([method])
    )
    amts, pp = amounts[0, :term].tolist(), parts[0, :term].tolist()
    state = CustomerState.new(CID)
    assert state.apply(_opened(method, principal_c, rate, amts), CFG) is Outcome.APPLIED
    assert abs(assert_twins_agree(state, state.last_event_time) - principal_c) <= term
    left = principal_c
    for k, a in enumerate(amts):
        assert state.apply(_paid(k, a, 30 * (k + 1)), CFG) is Outcome.APPLIED
        left -= pp[k]
        got = assert_twins_agree(state, state.last_event_time)
        assert abs(got - left) <= term, (k, got, left)
    assert left == 0 and exposure_cents(state, state.last_event_time) == 0


def test_arrears_keep_the_principal_and_a_closed_loan_owes_nothing() -> None:
    """Unpaid instalments stay owed, partly paid ones count for what is unpaid of them; a payment
    dated after the as-of day is not counted yet; closing the loan ends the exposure."""
    amts = [10_000] * 4
    state = CustomerState.new(CID)
    state.apply(_opened(1, 40_000, 0.0, amts), CFG)  # no interest: value = what is unpaid
    assert exposure_cents(state, state.last_event_time) == 40_000
    state.apply(_paid(0, 2_500, 95), CFG)  # 95 days on: three instalments due, a quarter paid
    assert assert_twins_agree(state, state.last_event_time) == 37_500
    assert exposure_cents(state, state.last_event_time - 86400.0) == 40_000  # before the payment
    closed = LoanEvent(
        event_id="close", customer_id=CID, event_time=T0 + dt.timedelta(days=96), kind="closed",
        loan_id="L",
    )  # fmt: skip
    state.apply(closed, CFG)
    assert assert_twins_agree(state, state.last_event_time) == 0


def test_unpaid_value_discounts_from_the_oldest_unpaid_instalment() -> None:
    v = 1 / (1 + 0.12 / 12)
    assert unpaid_value([100, 100, 100], 150, 120_000) == pytest.approx(50 * v + 100 * v * v)
    assert unpaid_value([100, 100], 0, -1) == 200.0  # unknown rate: no discount
    assert unpaid_value([100, 100], 500, 120_000) == 0.0  # overpaid
    assert unpaid_value([0, 100], 0, 120_000) == pytest.approx(100 * v)


def test_the_batch_path_carries_the_reference_exposure() -> None:
    """FeatureBatch (the pipeline's Python path) gives each moment's exposure, though the
    state changes after it is queued."""
    amts = [10_000] * 3
    state = CustomerState.new(CID)
    batch = FeatureBatch(CFG)
    want = []
    for ev in (_opened(0, 30_000, 0.0, amts), _paid(0, 10_000, 30), _paid(1, 10_000, 60)):
        state.apply(ev, CFG)
        batch.add(state, state.last_event_time)
        want.append(exposure_cents(state, state.last_event_time))
    _rows, facts = batch.compute()
    assert want == [30_000, 20_000, 10_000]
    assert facts.exposure_cents.tolist() == want
    assert facts.exposure.tolist() == [300.0, 200.0, 100.0]


def test_expected_loss_is_pd_times_exposure_to_the_cent() -> None:
    assert expected_loss(0.05, 12_345.67) == 617.28
    assert expected_loss(0.0, 1e6) == 0.0
    assert expected_loss(1.0, 0.0) == 0.0
