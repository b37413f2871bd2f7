"""Customer state: DPD from the oldest unpaid instalment, dedupe, lateness, ordering, bytes."""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import (
    DelinquencyStatus,
    FirmProfile,
    Instalment,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)
from streams.core.delinquency import day_of, month_of_day
from streams.core.features import FEATURES, features_into
from streams.core.state import (
    _ROW_LEN,
    BAL_SUM,
    INFLOW,
    OUTFLOW,
    PAID,
    STATE_VERSION,
    CustomerState,
    Outcome,
    StateConfig,
    StateError,
    _advance,
    _quiet_until,
)

UTC = dt.UTC
CID = "cust-1"
T0 = dt.datetime(2024, 1, 5, 9, tzinfo=UTC)
FIRST_DUE = dt.date(2024, 2, 10)
CFG = StateConfig()
Event = LoanEvent | RepaymentEvent | TransactionEvent | DelinquencyStatus


def due(k: int) -> dt.date:
    """Due date of instalment k (1-based): the 10th of each month from February 2024."""
    m = FIRST_DUE.month - 1 + k - 1
    return dt.date(FIRST_DUE.year + m // 12, m % 12 + 1, 10)


def at(d: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(d, dt.time(hour), UTC)


def opened(loan: str = "L1", n: int = 12, amount: float = 1000.0, rate: float = 0.08) -> LoanEvent:
    sched = [Instalment(seq=k, due_date=due(k), amount=amount) for k in range(1, n + 1)]
    firm = FirmProfile(
        industry="retail", region="east", years_in_business=5.0, shareholder_holding_years=2.0
    )
    return LoanEvent(
        event_id=f"open-{loan}",
        customer_id=CID,
        event_time=T0,
        kind="opened",
        loan_id=loan,
        principal=amount * n,
        annual_rate=rate,
        term_months=n,
        repayment_method="equal_instalment",
        guarantee_method="guarantee",
        schedule=sched,
        firm=firm,
    )


def pay(eid: str, when: dt.datetime, amount: float, loan: str = "L1") -> RepaymentEvent:
    return RepaymentEvent(
        event_id=eid,
        customer_id=CID,
        event_time=when,
        kind="payment_received",
        loan_id=loan,
        amount=amount,
    )


def reverse(eid: str, when: dt.datetime, target: str, amount: float) -> RepaymentEvent:
    return RepaymentEvent(
        event_id=eid,
        customer_id=CID,
        event_time=when,
        kind="reversal",
        loan_id="L1",
        amount=amount,
        reversed_event_id=target,
    )


def txn(
    eid: str, when: dt.datetime, kind: str, amount: float, balance: float | None
) -> TransactionEvent:
    return TransactionEvent(
        event_id=eid,
        customer_id=CID,
        event_time=when,
        kind=kind,  # type: ignore[arg-type]
        account_id="A1",
        amount=amount,
        balance_after=balance,
        counterparty="payer-x" if kind == "credit" else None,
    )


def run(events: list[Event], cfg: StateConfig = CFG) -> CustomerState:
    s = CustomerState.new(CID)
    for e in events:
        assert s.apply(e, cfg) == Outcome.APPLIED, e
    return s


def ts(d: dt.date) -> float:
    return at(d, 23).timestamp()


def test_dpd_counts_from_the_oldest_unpaid_instalment() -> None:
    """Nothing paid: DPD at day end = as-of date - first due date; bucket and floor follow."""
    s = run([opened()])
    as_of = dt.date(2024, 5, 20)
    f = s.facts(ts(as_of), CFG)
    assert (as_of - due(1)).days == f.dpd
    assert f.bucket_name == "M4"  # 100 days
    assert f.five_category == "substandard"
    assert f.has_arrears and f.active_loan
    assert f.overdue_amount == 4000.0  # Feb, Mar, Apr, May instalments


def test_partial_payment_keeps_dpd_full_payment_moves_to_next_instalment() -> None:
    """A partial payment does not reset DPD; paying the oldest in full moves it on."""
    s = run([opened(), pay("p1", at(dt.date(2024, 3, 1)), 600.0)])
    as_of = dt.date(2024, 3, 5)
    assert (as_of - due(1)).days == s.facts(ts(as_of), CFG).dpd
    s2 = run([opened(), pay("p1", at(dt.date(2024, 3, 1)), 600.0), pay("p2", at(as_of), 400.0)])
    assert s2.facts(ts(as_of), CFG).dpd == 0  # instalment 2 is due 2024-03-10
    as_of2 = dt.date(2024, 3, 25)
    assert (as_of2 - due(2)).days == s2.facts(ts(as_of2), CFG).dpd


def test_payment_on_the_due_date_is_on_time() -> None:
    """Paid at the due date (any hour): no DPD, no late instalment."""
    s = run([opened(), pay("p1", at(due(1), 22), 1000.0)])
    row = np.empty(len(FEATURES))
    features_into(s, ts(due(1) + dt.timedelta(days=3)), row, CFG)
    names = [f.name for f in FEATURES]
    assert row[names.index("dpd")] == 0
    assert row[names.index("late_3m")] == 0
    assert row[names.index("days_paid_before_due_3m")] == 0


def test_duplicate_event_changes_nothing() -> None:
    """Re-delivering an event (same event_id) is reported and leaves the bytes unchanged."""
    p = pay("p1", at(dt.date(2024, 2, 9)), 1000.0)
    s = run([opened(), p])
    before = s.to_bytes()
    assert s.apply(p, CFG) == Outcome.DUPLICATE
    assert s.apply(opened(), CFG) == Outcome.TOO_LATE  # a month older: outside the bound
    assert before == s.to_bytes()


def test_event_older_than_the_lateness_bound_is_too_late() -> None:
    """Older than watermark - lateness: rejected, nothing changes; inside the bound: applied."""
    s = run([opened(), txn("t1", at(dt.date(2024, 4, 1)), "credit", 10.0, 100.0)])
    before = s.to_bytes()
    old = pay("p-old", at(dt.date(2024, 4, 1)) - dt.timedelta(days=7, seconds=1), 1000.0)
    assert s.apply(old, CFG) == Outcome.TOO_LATE
    assert before == s.to_bytes()
    ok = pay("p-ok", at(dt.date(2024, 4, 1)) - dt.timedelta(days=6), 1000.0)
    assert s.apply(ok, CFG) == Outcome.APPLIED


def test_duplicate_of_a_forgotten_event_is_too_late() -> None:
    """Once an id is forgotten, its re-delivery is outside the bound: still no change."""
    p = pay("p1", at(dt.date(2024, 2, 9)), 1000.0)
    s = run([opened(), p, txn("t1", at(dt.date(2024, 3, 9)), "credit", 1.0, 1.0)])
    assert s.apply(p, CFG) == Outcome.TOO_LATE


def test_id_memory_overflow_raises_the_floor() -> None:
    """A burst beyond max_recent_ids forgets the oldest id but then rejects its time range."""
    cfg = StateConfig(max_recent_ids=4)
    s = run([opened()], cfg)
    burst = [
        txn(f"b{k}", at(dt.date(2024, 2, 1)) + dt.timedelta(minutes=k), "debit", 1.0, 5.0)
        for k in range(6)
    ]
    for e in burst:
        assert s.apply(e, cfg) == Outcome.APPLIED
    assert len(s.ids) == 4
    before = s.to_bytes()
    for e in burst:
        assert s.apply(e, cfg) in (Outcome.DUPLICATE, Outcome.TOO_LATE)
    assert before == s.to_bytes()


def test_repayment_for_unknown_loan() -> None:
    """A payment for a loan the state has never seen is unknown_loan and changes nothing."""
    s = run([opened()])
    before = s.to_bytes()
    assert s.apply(pay("p1", at(due(1)), 5.0, loan="nope"), CFG) == Outcome.UNKNOWN_LOAN
    assert CustomerState.new(CID).apply(pay("p2", T0, 5.0), CFG) == Outcome.UNKNOWN_LOAN
    assert before == s.to_bytes()


def _features(s: CustomerState, as_of: float) -> list[float]:
    row = np.empty(len(FEATURES))
    features_into(s, as_of, row, CFG)
    return row.tolist()


def _same(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def test_reversal_within_lateness_cancels_the_payment() -> None:
    """Payment then its reversal a few days later: as if the payment never happened."""
    p = pay("p1", at(due(1) - dt.timedelta(days=1)), 1000.0)
    r = reverse("r1", at(due(1) + dt.timedelta(days=2)), "p1", 1000.0)
    tick = txn("t1", at(due(1) + dt.timedelta(days=2)), "debit", 1.0, 50.0)
    with_pair = run([opened(), p, r, tick])
    without = run([opened(), tick])
    as_of = ts(due(1) + dt.timedelta(days=20))
    assert _same(_features(without, as_of), _features(with_pair, as_of))
    assert with_pair.facts(as_of, CFG).dpd == 20
    before = with_pair.to_bytes()  # a second reversal of the same payment does nothing
    r2 = reverse("r2", at(due(1) + dt.timedelta(days=3)), "p1", 1000.0)
    assert with_pair.apply(r2, CFG) == Outcome.APPLIED
    assert _same(_features(without, as_of), _features(with_pair, as_of))
    assert before != with_pair.to_bytes()  # only its id is remembered


def test_reversal_of_an_old_payment_reopens_the_arrears_from_the_due_date() -> None:
    """A payment reversed months later: the instalment is unpaid again, DPD from its due date."""
    p = pay("p1", at(due(1)), 1000.0)
    later = due(1) + dt.timedelta(days=40)
    ticks = [
        txn(f"t{k}", at(due(1) + dt.timedelta(days=k)), "debit", 1.0, 9.0) for k in (10, 20, 30)
    ]
    s = run([opened(), p, *ticks, pay("p2", at(due(2)), 1000.0)])
    assert s.facts(ts(later), CFG).dpd == 0
    assert s.apply(reverse("r1", at(later), "p1", 1000.0), CFG) == Outcome.APPLIED
    assert (later - due(2)).days == s.facts(ts(later), CFG).dpd  # p2 now covers instalment 1


def test_rate_increase_and_closing() -> None:
    """A 'changed' event raising the rate sets the flag; closing the only loan clears active."""
    change = LoanEvent(
        event_id="c1",
        customer_id=CID,
        event_time=T0 + dt.timedelta(days=30),
        kind="changed",
        loan_id="L1",
        annual_rate=0.11,
    )
    s = run([opened(), change])
    assert s.facts(ts(dt.date(2024, 2, 5)), CFG).rate_increased
    close = LoanEvent(
        event_id="x1",
        customer_id=CID,
        event_time=T0 + dt.timedelta(days=31),
        kind="closed",
        loan_id="L1",
    )
    assert s.apply(close, CFG) == Outcome.APPLIED
    assert not s.facts(ts(dt.date(2024, 2, 5)), CFG).active_loan


def test_bounced_debit_and_pre_due_shortfall_facts() -> None:
    """A bounced debit counts on its day; a balance below the coming instalment is flagged."""
    bad = due(1) - dt.timedelta(days=2)
    s = run([opened(), txn("b1", at(bad), "bounced_debit", 1000.0, 300.0)])
    f = s.facts(ts(bad), CFG)
    assert f.new_bounced_debits == 1
    assert f.pre_due_shortfall  # 300 < 1000 due in 2 days
    assert s.facts(ts(bad + dt.timedelta(days=1)), CFG).new_bounced_debits == 0
    rich = run([opened(), txn("c1", at(bad), "credit", 5000.0, 5300.0)])
    assert not rich.facts(ts(bad), CFG).pre_due_shortfall


# -- serialisation -----------------------------------------------------------------------------


def test_monthly_cells_beyond_int64_are_a_clear_error() -> None:
    s = run([opened(), txn("t1", at(due(1)), "credit", 10.0, 20.0)])
    fields = [getattr(s, f) for f in s.__struct_fields__]
    i = s.__struct_fields__.index("months")
    fields[i] = [*s.months[:-1], 1 << 63]
    with pytest.raises(StateError, match="int64"):
        CustomerState.from_bytes(bytes([STATE_VERSION]) + msgspec.msgpack.encode(fields))
    fields[i] = list(s.months[:-1])  # a cell short: every later row would be misaligned
    with pytest.raises(StateError, match="not rows of 14"):
        CustomerState.from_bytes(bytes([STATE_VERSION]) + msgspec.msgpack.encode(fields))


def test_a_month_sum_near_int64_refuses_the_transaction_and_changes_nothing() -> None:
    s = run([opened(), txn("t1", at(due(1)), "credit", 10.0, 20.0)])
    r = s._find_row(s.months[-_ROW_LEN])
    s.months[r + INFLOW] = (1 << 62) + 5
    before = s.to_bytes()
    big = txn("t2", at(due(1)) + dt.timedelta(hours=1), "credit", 1e12, 1e12)
    assert s.apply(big, CFG) is Outcome.AGGREGATE_OVERFLOW
    assert s.to_bytes() == before  # no row, id, balance or watermark moved
    debit = txn("t3", at(due(1)) + dt.timedelta(hours=2), "debit", 5.0, 15.0)
    assert s.apply(debit, CFG) is Outcome.APPLIED  # the inflow sum is not touched by a debit
    s.months[r + OUTFLOW] = 1 << 62
    before = s.to_bytes()
    assert s.apply(txn("t5", at(due(1)) + dt.timedelta(hours=3), "debit", 5.0, None), CFG) is (
        Outcome.AGGREGATE_OVERFLOW  # the outflow sum
    )
    assert s.to_bytes() == before
    s.months[r + INFLOW] = 0
    assert s.apply(txn("t6", at(due(1)) + dt.timedelta(hours=3), "credit", 5.0, None), CFG) is (
        Outcome.APPLIED  # a credit does not touch the outflow sum
    )
    s.months[r + OUTFLOW] = 0
    s.months[r + BAL_SUM] = -(1 << 62)
    assert s.apply(txn("t4", at(due(1)) + dt.timedelta(hours=3), "debit", 5.0, 10.0), CFG) is (
        Outcome.AGGREGATE_OVERFLOW
    )


def test_folded_sums_saturate_at_int64() -> None:
    """A month's paid sum folded past int64 stays at its limit instead of failing the event."""
    s = run([opened(), pay("p1", at(due(1)), 1000.0)])
    m = month_of_day(day_of(at(due(1)).timestamp()))
    r = s._find_row(m)
    if r < 0:
        r = s._insert_row(m)
    s.months[r + PAID] = (1 << 63) - 10
    later = at(due(1)) + dt.timedelta(days=40)
    assert s.apply(txn("t1", later, "debit", 1.0, 1.0), CFG) is Outcome.APPLIED  # folds p1
    assert s.months[r + PAID] == (1 << 63) - 1


# -- random event histories --------------------------------------------------------------------

LATE_DAYS = 3.0


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """A loan opened first, then payments, reversals, account movements and a rate change."""
    n = draw(st.integers(1, 40))
    evs: list[Event] = [
        opened(n=draw(st.integers(2, 8)), amount=draw(st.sampled_from([500.0, 1000.0])))
    ]
    payments: list[str] = []
    for k in range(n):
        when = T0 + dt.timedelta(days=1, seconds=draw(st.integers(0, 150 * 86400)))
        kind = draw(
            st.sampled_from(["pay", "pay", "rev", "credit", "debit", "bounced", "rate", "status"])
        )
        amount = draw(st.sampled_from([100.0, 499.99, 500.0, 1000.0, 2000.0]))
        bal = draw(st.floats(-5000, 20000, allow_nan=False).map(lambda x: round(x, 2)))
        if kind == "pay":
            payments.append(f"e{k}")
            evs.append(pay(f"e{k}", when, amount))
        elif kind == "rev" and payments:
            # each payment reversed at most once (module docstring); or an unknown payment
            target = draw(st.sampled_from([*payments, f"never-seen-{k}"]))
            if target in payments:
                payments.remove(target)
                if draw(st.booleans()):  # a redundant second reversal close to the first
                    again = when + dt.timedelta(hours=draw(st.integers(0, 48)))
                    evs.append(reverse(f"e{k}-again", again, target, amount))
            evs.append(reverse(f"e{k}", when, target, amount))
        elif kind == "status":  # the lender's delinquency; sometimes two on one day
            evs.append(status_of(f"e{k}", when, draw))
            if draw(st.integers(0, 3)) == 0:
                again = when + dt.timedelta(hours=draw(st.integers(-5, 5)))
                evs.append(status_of(f"e{k}-again", again, draw))
        elif kind == "rate":
            evs.append(
                LoanEvent(
                    event_id=f"e{k}",
                    customer_id=CID,
                    event_time=when,
                    kind="changed",
                    loan_id="L1",
                    annual_rate=draw(st.sampled_from([0.05, 0.08, 0.12])),
                )
            )
        else:
            tk = {"credit": "credit", "debit": "debit"}.get(kind, "bounced_debit")
            evs.append(txn(f"e{k}", when, tk, amount, bal))
    return evs


def status_of(eid: str, when: dt.datetime, draw: st.DrawFn) -> DelinquencyStatus:
    """A delinquency status with any mix of days, overdue amount and class."""
    dpd = draw(st.sampled_from([0, 0, 3, 30, 95, 400]))
    owed = draw(st.sampled_from([None, None, 100.0, 1000.0, 3000.0] + ([0.0] if not dpd else [])))
    return DelinquencyStatus(
        event_id=eid,
        customer_id=CID,
        event_time=when,
        kind="delinquency_status",
        loan_id="L1",
        days_past_due=dpd,
        overdue_amount=owed,
        five_category=draw(st.sampled_from([None, "normal", "substandard"])),
    )


def in_order(evs: list[Event]) -> list[Event]:
    """Event-time order (the opening first); reversals after what they reverse."""
    return [evs[0], *sorted(evs[1:], key=lambda e: e.event_time)]


def shuffled_within_bound(evs: list[Event], seed: int) -> list[Event]:
    """Each event delayed by < LATE_DAYS: it always arrives inside the lateness bound."""
    rng = random.Random(seed)
    late = LATE_DAYS * 86400 * 0.999
    rest = sorted(evs[1:], key=lambda e: e.event_time.timestamp() + rng.random() * late)
    return [evs[0], *rest]


def _apply_all(evs: list[Event], cfg: StateConfig) -> CustomerState:
    s = CustomerState.new(CID)
    for e in evs:
        s.apply(e, cfg)
    return s


@settings(max_examples=150, deadline=None)
@given(histories(), st.integers(0, 2**32))
def test_out_of_order_inside_the_bound_gives_the_same_state(evs: list[Event], seed: int) -> None:
    """Same bytes, facts and features whether events arrive in order or shuffled within bound."""
    cfg = StateConfig(lateness_days=LATE_DAYS, max_recent_ids=1000)
    a = _apply_all(in_order(evs), cfg)
    b = _apply_all(shuffled_within_bound(evs, seed), cfg)
    assert a.to_bytes() == b.to_bytes()
    for extra in (0.0, 5 * 86400.0, 60 * 86400.0):
        as_of = a.last_event_time + extra
        fa, fb = a.facts(as_of, cfg), b.facts(as_of, cfg)
        assert _same([fa.inflow_ratio], [fb.inflow_ratio])
        assert fa._replace(inflow_ratio=0.0) == fb._replace(inflow_ratio=0.0)
        assert _same(_features(a, as_of), _features(b, as_of))


@settings(max_examples=100, deadline=None)
@given(histories(), st.integers(0, 2**32))
def test_state_round_trips_through_bytes(evs: list[Event], seed: int) -> None:
    """from_bytes(to_bytes(s)) == s, and it keeps working after more events."""
    s = _apply_all(shuffled_within_bound(evs, seed), CFG)
    back = CustomerState.from_bytes(s.to_bytes())
    assert s == back
    assert s.to_bytes() == back.to_bytes()
    more = txn("after", dt.datetime.fromtimestamp(s.last_event_time + 60, UTC), "credit", 5.0, 1.0)
    assert s.apply(more, CFG) == back.apply(more, CFG)
    assert s == back


def test_state_stays_small_whatever_the_history() -> None:
    """Typical (2 loans, a year, 20 movements a month) and longer customers stay < 2 KB."""
    sizes = []
    for years in (1, 2, 6):
        evs: list[Event] = [opened("L1", n=12 * years), opened("L2", n=12 * years, amount=700.0)]
        for k in range(1, 12 * years + 1):
            evs.append(pay(f"p1-{k}", at(due(k)), 1000.0, "L1"))
            evs.append(pay(f"p2-{k}", at(due(k), 13), 700.0, "L2"))
        for k in range(20 * 12 * years):
            when = T0 + dt.timedelta(hours=36 * k + 1)
            kind = "credit" if k % 3 == 0 else "debit"
            evs.append(txn(f"t{k}", when, kind, 400.0, 3000.0 + 17 * (k % 50)))
        s = run(in_order(evs))
        sizes.append(len(s.to_bytes()))
        assert len(s.loans[0].days) <= 12  # paid, settled instalments are dropped
        assert len(s.month_rows()) <= 13
    assert max(sizes) < 2000
    assert sizes[2] <= sizes[1] + 40  # three times the history, (almost) the same size


def test_a_long_unpaid_weekly_schedule_with_low_balances_still_serialises() -> None:
    """Pre-due marks on instalment 64+ of the kept schedule used to overflow msgpack's ints."""
    sched = [
        Instalment(seq=k, due_date=FIRST_DUE + dt.timedelta(days=7 * k), amount=100.0)
        for k in range(1, 121)
    ]
    ev = LoanEvent(
        event_id="open-weekly",
        customer_id=CID,
        event_time=T0,
        kind="changed",
        loan_id="L1",
        schedule=sched,
    )
    s = CustomerState.new(CID)
    assert s.apply(ev, CFG) == Outcome.APPLIED
    for k in range(1, 121):  # a low balance two days before every due date, nothing paid
        when = at(FIRST_DUE + dt.timedelta(days=7 * k - 2))
        assert s.apply(txn(f"t{k}", when, "debit", 1.0, 5.0), CFG) == Outcome.APPLIED
        back = CustomerState.from_bytes(s.to_bytes())
        assert back == s
    assert s.loans[0].base_seq == 0  # nothing settled: the kept schedule starts at instalment 1
    assert s.loans[0].short.bit_length() <= 63
    assert s.facts(s.last_event_time, CFG).dpd > 7 * 100


def test_an_earlier_reversal_arriving_after_a_later_one_still_cancels_its_payment() -> None:
    """Two reversals of one payment: the first within the lateness bound of it (cancels it),
    the second beyond (a negative payment on its own). Whatever their arrival order, the
    earliest counts, so the payment vanishes (found by the out-of-order property test)."""
    cfg = StateConfig(lateness_days=LATE_DAYS, max_recent_ids=1000)
    paid = pay("p", at(dt.date(2024, 1, 6), 9), 100.0)
    first = reverse("r1", dt.datetime(2024, 1, 9, 6, tzinfo=UTC), "p", 100.0)  # 3 days: cancels
    second = reverse("r2", dt.datetime(2024, 1, 10, tzinfo=UTC), "p", 100.0)  # 4 days
    # every arrival order inside the bound (the payment is 3.6 days before r2: it comes first)
    orders = [[paid, first, second], [paid, second, first], [first, paid, second]]
    states = [run([opened(n=2, amount=500.0), *evs], cfg) for evs in orders]
    assert len({s.to_bytes() for s in states}) == 1
    assert [p[2] for p in states[0].loans[0].pending] == [0]  # only r1's tombstone is left


@settings(max_examples=60, deadline=None)
@given(histories())
def test_a_fold_that_skips_the_walk_is_the_walk(evs: list[Event]) -> None:
    """``_fold`` only moves the cursor of a loan where ``_quiet_until`` holds: checked against
    ``_advance`` itself after every event, for every end day in the next ten weeks."""
    s = CustomerState.new(CID)
    quiet = walked = 0
    for e in in_order(evs):
        s.apply(e, CFG)
        for loan in s.loans:
            rep = s._report(loan.h)  # the lender's reports on it, if any
            for end in range(loan.f_day + 1, loan.f_day + 70):
                if not _quiet_until(loan, end, rep):
                    walked += 1
                    continue
                quiet += 1
                c = loan.cursor()
                sink: dict[int, list[int]] = {}
                k = bisect.bisect_left(loan.pending, (end,))
                rc = None if rep is None else rep.cursor()
                reports = None if rep is None else rep.pending
                _advance(loan, c, loan.pending[:k], end, sink, rc, reports)
                assert sink == {}
                assert c == [end, *loan.cursor()[1:]]
                assert rep is None or rc == rep.cursor()
    assert quiet and walked  # the opening's schedule: weeks of quiet, then a due date
