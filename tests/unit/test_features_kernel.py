"""The numba feature kernel gives bit-equal rows and equal facts to the Python reference."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import RecordError, decode
from schemas.events import (
    GUARANTEE_METHODS,
    INPUT_TYPES,
    REPAYMENT_METHODS,
    DelinquencyStatus,
    FirmProfile,
    Instalment,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)
from streams.core import delinquency
from streams.core._features_kernel import fill_packed, month_of_day, month_start_day
from streams.core._features_pack import pack, unpack
from streams.core.features import (
    FEATURE_NAMES,
    FEATURES,
    FeatureBatch,
    features_and_facts,
    features_and_facts_reference,
    features_into,
    features_into_reference,
)
from streams.core.state import (
    _ROW_LEN,
    BAL_SUM,
    OUTFLOW,
    CustomerState,
    Facts,
    Outcome,
    StateConfig,
)
from streams.sim.simulate import SimConfig, Simulation

UTC = dt.UTC
CID = "c-1"
T0 = dt.datetime(2023, 11, 20, 9, tzinfo=UTC)
Event = LoanEvent | RepaymentEvent | TransactionEvent | DelinquencyStatus
PARITY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _row_of(fn, state: CustomerState, as_of: float, cfg: StateConfig) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = np.full(len(FEATURES), -7.0)
    fn(state, as_of, out, cfg)
    return out


def assert_same(state: CustomerState, as_of: float, cfg: StateConfig) -> None:
    """Row bytes (NaN payloads included) and facts agree; the state is left untouched."""
    before = state.to_bytes()
    fast, ref = np.full(len(FEATURES), -7.0), np.full(len(FEATURES), -7.0)
    f_fast = features_and_facts(state, as_of, fast, cfg)
    f_ref = features_and_facts_reference(state, as_of, ref, cfg)
    assert fast.tobytes() == ref.tobytes(), [
        (FEATURES[j].name, a, b) for j, (a, b) in enumerate(zip(fast, ref, strict=True)) if a != b
    ]
    assert repr(f_fast) == repr(f_ref)  # repr: NaN == NaN, and bool vs numpy bool would show
    only = _row_of(features_into, state, as_of, cfg)
    assert only.tobytes() == _row_of(features_into_reference, state, as_of, cfg).tobytes()
    assert state.to_bytes() == before


@st.composite
def books(draw: st.DrawFn) -> tuple[list[Event], list[float]]:
    """Several loans (opened, changed, closed), schedules short and long, payments, reversals,
    instalment notices, account movements with a few payers, a firm profile, the lender's
    delinquency statuses (sometimes two a day, some for a loan never opened); arrival slightly
    out of order. Returns the events and as-of offsets (days) to read at."""
    n_loans = draw(st.integers(1, 4))
    evs: list[Event] = []
    payments: list[tuple[str, str, float]] = []
    money = st.sampled_from([0.01, 99.99, 500.0, 500.0, 1000.0, 1000.0, 2500.5, 1e12])
    for j in range(n_loans):
        lid = f"L{j}"
        start = T0 + dt.timedelta(days=draw(st.integers(0, 200)))
        n = draw(st.sampled_from([1, 3, 6, 12, 36, 70]))
        amount = draw(money)
        first = start.date() + dt.timedelta(days=draw(st.integers(1, 40)))
        sched = [
            Instalment(seq=k, due_date=first + dt.timedelta(days=30 * (k - 1)), amount=amount)
            for k in range(1, n + 1)
        ]
        full = draw(st.booleans())  # else a 'changed' event brings the loan: no opening, profile
        evs.append(
            LoanEvent(
                event_id=f"open-{lid}",
                customer_id=CID,
                event_time=start,
                kind="opened" if full else "changed",
                loan_id=lid,
                principal=amount * n if full else None,
                annual_rate=draw(st.sampled_from([0.05, 0.1])),
                term_months=n if full else None,
                repayment_method=draw(st.sampled_from(REPAYMENT_METHODS)),
                guarantee_method=draw(st.sampled_from(GUARANTEE_METHODS)) if full else None,
                schedule=sched,
                firm=FirmProfile(
                    industry="retail",
                    region="east",
                    years_in_business=draw(st.sampled_from([0.0, 3.5])),
                    shareholder_holding_years=1.0,
                )
                if full
                else None,
            )
        )
    for k in range(draw(st.integers(5, 80))):
        lid = f"L{draw(st.integers(0, n_loans - 1))}"
        when = T0 + dt.timedelta(seconds=draw(st.integers(0, 300 * 86400)))
        kinds = ["pay", "pay", "rev", "due", "credit", "debit", "bounced", "rate", "close"]
        kind = draw(st.sampled_from([*kinds, "status"]))
        eid = f"e{k}"
        rep = {"event_id": eid, "customer_id": CID, "event_time": when, "loan_id": lid}
        if kind == "pay":
            amt = draw(money)
            payments.append((eid, lid, amt))
            evs.append(RepaymentEvent(**rep, kind="payment_received", amount=amt))
        elif kind == "rev" and payments:
            target, tl, amt = draw(st.sampled_from(payments))
            payments.remove((target, tl, amt))
            rep["loan_id"] = tl
            evs.append(RepaymentEvent(**rep, kind="reversal", amount=amt, reversed_event_id=target))
        elif kind == "due":
            evs.append(
                RepaymentEvent(
                    **rep,
                    kind="instalment_due",
                    amount=draw(money),
                    instalment_seq=draw(st.integers(1, 80)),
                    due_date=when.date() + dt.timedelta(days=draw(st.integers(0, 10))),
                )
            )
        elif kind == "status":
            for n in range(draw(st.sampled_from([1, 1, 1, 2]))):  # two: one day, either order
                dpd = draw(st.sampled_from([0, 0, 2, 31, 95, 400]))
                owed = [None, None, 0.01, 500.0, 2500.5, 1e12] + ([0.0] if dpd == 0 else [])
                evs.append(
                    DelinquencyStatus(
                        event_id=f"{eid}-{n}",
                        customer_id=CID,
                        event_time=when + dt.timedelta(hours=draw(st.integers(-6, 6))),
                        kind="delinquency_status",
                        loan_id=draw(st.sampled_from([lid, lid, lid, "never-opened"])),
                        days_past_due=dpd,
                        overdue_amount=draw(st.sampled_from(owed)),
                        five_category=draw(st.sampled_from([None, "substandard", "loss"])),
                    )
                )
        elif kind in ("rate", "close"):
            evs.append(
                LoanEvent(
                    event_id=eid,
                    customer_id=CID,
                    event_time=when,
                    kind="changed" if kind == "rate" else "closed",
                    loan_id=lid,
                    annual_rate=draw(st.sampled_from([0.05, 0.08, 0.2]))
                    if kind == "rate"
                    else None,
                )
            )
        else:
            tk = {"credit": "credit", "debit": "debit"}.get(kind, "bounced_debit")
            evs.append(
                TransactionEvent(
                    event_id=eid,
                    customer_id=CID,
                    event_time=when,
                    kind=tk,  # type: ignore[arg-type]
                    account_id="A1",
                    amount=draw(money),
                    balance_after=draw(st.one_of(st.none(), money, st.just(-250.0))),
                    counterparty=draw(st.sampled_from(["p1", "p2", "p3"]))
                    if tk == "credit"
                    else None,
                )
            )
    rng = random.Random(draw(st.integers(0, 2**32)))
    evs.sort(key=lambda e: e.event_time.timestamp() + rng.random() * 3 * 86400)
    offsets = draw(
        st.lists(st.sampled_from([0.0, -3.0, 0.4, 5.0, 45.0, 400.0]), min_size=1, max_size=3)
    )
    return evs, offsets


@PARITY
@given(books(), st.sampled_from([StateConfig(), StateConfig(lateness_days=2, pre_due_days=9)]))
def test_kernel_matches_the_reference_after_every_event(
    book: tuple[list[Event], list[float]], cfg: StateConfig
) -> None:
    evs, offsets = book
    state = CustomerState.new(CID)
    for e in evs:
        state.apply(e, cfg)
        assert_same(state, state.last_event_time, cfg)
    for days in offsets:
        assert_same(state, state.last_event_time + days * 86400.0, cfg)


class BatchCheck:
    """Feeds a :class:`FeatureBatch` and remembers the reference answer at each moment."""

    def __init__(self, cfg: StateConfig) -> None:
        self.cfg = cfg
        self.batch = FeatureBatch(cfg)
        self.expected: list[tuple[bytes, Facts]] = []

    def add(self, state: CustomerState, as_of: float) -> None:
        ref = np.full(len(FEATURES), -7.0)
        facts = features_and_facts_reference(state, as_of, ref, self.cfg)
        self.batch.add(state, as_of)
        self.expected.append((ref.tobytes(), facts))

    def check(self) -> None:
        rows, facts = self.batch.compute()
        assert rows.shape == (len(self.expected), len(FEATURES))
        for i, (row, f) in enumerate(self.expected):
            assert rows[i].tobytes() == row, (i, rows[i], np.frombuffer(row))
            assert repr(facts[i]) == repr(f)
            assert repr(facts.head(i)) == repr(tuple(f[:10]))  # the pipeline's Observation fields


@PARITY
@given(books(), st.sampled_from([StateConfig(), StateConfig(lateness_days=2, pre_due_days=9)]))
def test_one_batch_call_matches_the_reference_at_every_moment(
    book: tuple[list[Event], list[float]], cfg: StateConfig
) -> None:
    """The pipeline's path: the state is queued after every event and changes right after; the
    one kernel call at the end still gives each moment's row and facts. The packed copy holds
    everything the reference reads (unpack: the kernel-declined path)."""
    evs, offsets = book
    state = CustomerState.new(CID)
    check = BatchCheck(cfg)
    for e in evs:
        if state.apply(e, cfg) is Outcome.APPLIED:
            check.add(state, state.last_event_time)
            buf = pack(state)
            assert buf is not None
            copy = unpack(buf, state.years_in_business, state.holding_years)
            assert_equal_reference(copy, state, state.last_event_time, cfg)
    for days in offsets:
        check.add(state, state.last_event_time + days * 86400.0)
    check.check()


def assert_equal_reference(
    a: CustomerState, b: CustomerState, as_of: float, cfg: StateConfig
) -> None:
    ra, rb = np.full(len(FEATURES), -7.0), np.full(len(FEATURES), -7.0)
    fa = features_and_facts_reference(a, as_of, ra, cfg)
    fb = features_and_facts_reference(b, as_of, rb, cfg)
    assert ra.tobytes() == rb.tobytes()
    assert repr(fa) == repr(fb)


def scheduled(schedule: list[Instalment], when: dt.datetime, balance: float) -> CustomerState:
    """A loan known only by its schedule, then one account movement leaving ``balance``."""
    cfg = StateConfig()
    state = CustomerState.new(CID)
    loan = LoanEvent(
        event_id="o", customer_id=CID, event_time=T0, kind="changed", loan_id="L", schedule=schedule
    )
    txn = TransactionEvent(
        event_id="t",
        customer_id=CID,
        event_time=when,
        kind="debit",
        account_id="A",
        amount=5.0,
        balance_after=balance,
    )
    assert state.apply(loan, cfg) is Outcome.APPLIED
    assert state.apply(txn, cfg) is Outcome.APPLIED
    return state


def test_unpackable_states_fall_back_to_the_reference() -> None:
    """Bit 63 of the pre-due mask or a figure beyond int64 cannot be packed; money beyond 2**49
    cents is refused by the kernel; all three still get the reference's answer."""
    cfg = StateConfig()
    sched = [
        Instalment(seq=k, due_date=dt.date(2024, 1, 1) + dt.timedelta(days=7 * k), amount=100.0)
        for k in range(1, 81)
    ]
    state = scheduled(sched, T0 + dt.timedelta(days=1), 1.0)
    assert pack(state) is not None
    check = BatchCheck(cfg)  # the batch path, each case queued and then changed
    check.add(state, state.last_event_time)
    state.loans[0].short = 1 << 63  # apply never sets it (state._SHORT_BITS)
    assert pack(state) is None
    assert_same(state, state.last_event_time, cfg)
    check.add(state, state.last_event_time)
    state.loans[0].short = 0
    state.bal = 1 << 63  # msgpack takes it (uint64), int64 does not
    assert pack(state) is None
    assert_same(state, state.last_event_time, cfg)
    check.add(state, state.last_event_time)
    state.bal = 0
    state.months[-_ROW_LEN + BAL_SUM] = 1 << 50  # the newest month row
    buf = pack(state)
    assert buf is not None
    as_of = state.last_event_time
    day = delinquency.day_of(as_of)
    out = np.empty(len(FEATURES))
    cls = np.empty(1, np.int64)
    assert fill_packed(buf, as_of, day, month_of_day(day), 5, 0.0, 0.0, out, cls) == -1
    assert_same(state, as_of, cfg)
    check.add(state, as_of)  # declined by the kernel: the reference runs on the packed copy
    state.months[-_ROW_LEN + BAL_SUM] = 0
    check.add(state, as_of + 86400.0)
    # a balance beyond 2**49 cents: the kernel declines only when the runway divides it
    state.bal, state.bal_t = 1 << 50, int(as_of)
    assert fill_packed(pack(state), as_of, day, month_of_day(day), 5, 0.0, 0.0, out, cls) == 1
    state.months[-_ROW_LEN + OUTFLOW] = 500  # the newest row: a complete month 40 days on
    later = as_of + 40 * 86400.0
    day = delinquency.day_of(later)
    assert fill_packed(pack(state), later, day, month_of_day(day), 5, 0.0, 0.0, out, cls) == -1
    assert_same(state, later, cfg)
    ref = _row_of(features_into_reference, state, later, cfg)
    assert ref[FEATURE_NAMES.index("cash_runway_3m")] == (1 << 50) / 500
    check.add(state, later)
    check.check()


@settings(max_examples=300, deadline=None)
@given(st.integers(-719_162, 2_932_896))
def test_calendar_matches_the_reference(day: int) -> None:
    """Day numbers from year 1 to 9999: same month and month start as the reference."""
    m = delinquency.month_of_day(day)
    assert month_of_day(day) == m
    assert month_start_day(m) == delinquency.month_start_day(m)
    if m < 9999 * 12 + 11:
        assert month_start_day(m + 1) - 1 == delinquency.month_end_day(m)


def test_kernel_matches_the_reference_on_a_simulated_book() -> None:
    """Every rescoring of 120 simulated customers over 12 months (arrears, cures, defaults,
    late and duplicate deliveries): bit-equal rows and equal facts, also 20 days on."""
    cfg = StateConfig()
    states: dict[str, CustomerState] = {}
    checked = delinquent = 0
    for rec in Simulation(SimConfig(customers=120, seed=3)).records():
        try:
            event = decode(rec.value, INPUT_TYPES[rec.topic])
        except RecordError:
            continue
        s = states.setdefault(event.customer_id, CustomerState.new(event.customer_id))
        if s.apply(event, cfg) is Outcome.APPLIED:
            assert_same(s, s.last_event_time, cfg)
            checked += 1
            delinquent += s.facts(s.last_event_time, cfg).dpd > 0
    cash = [
        FEATURE_NAMES.index(n) for n in ("cash_runway_3m", "inflow_trend_3m", "inflow_slope_4m")
    ]
    known = np.zeros(len(cash), np.int64)
    for s in states.values():
        assert_same(s, s.last_event_time + 20 * 86400.0, cfg)
        known += np.isfinite(_row_of(features_into, s, s.last_event_time, cfg)[cash])
    assert checked > 5_000 and delinquent > 200  # the book exercised arrears, not just cash
    assert (known > 60).all(), known  # and the cash-flow features had their months


def test_an_instalment_due_exactly_at_the_pre_due_horizon_counts() -> None:
    """Boundaries the random books rarely hit: due on as-of day + pre_due_days, and one day
    further (outside)."""
    cfg = StateConfig()
    due_day = dt.date(2024, 3, 10)
    for gap, short in ((cfg.pre_due_days, 1.0), (cfg.pre_due_days + 1, 0.0)):
        when = dt.datetime.combine(due_day - dt.timedelta(days=gap), dt.time(10), UTC)
        state = scheduled([Instalment(seq=1, due_date=due_day, amount=100.0)], when, 50.0)
        assert_same(state, state.last_event_time, cfg)
        out = np.empty(len(FEATURES))
        features_into(state, state.last_event_time, out, cfg)
        assert out[FEATURE_NAMES.index("pre_due_shortfall")] == short
