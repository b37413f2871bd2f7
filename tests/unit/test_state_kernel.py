"""The numba state kernel applies events exactly as ``CustomerState.apply`` does: same outcomes,
same feature rows and exposure after every event, same state bytes; what it cannot do exactly it
declines."""

from __future__ import annotations

import datetime as dt
import random
from array import array

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import RecordError, decode
from schemas.events import INPUT_TYPES, DelinquencyStatus, Instalment, LoanEvent, RepaymentEvent
from streams.core import _state_codec as SC
from streams.core import _state_events as SE
from streams.core import _state_kernel as SK
from streams.core import _state_slots as SL
from streams.core.exposure import exposure_cents
from streams.core.features import FEATURES, features_and_facts_reference
from streams.core.state import _ROW_LEN, CustomerState, Outcome, StateConfig
from streams.sim.simulate import SimConfig, Simulation
from tests.unit.test_features_kernel import CID, T0, Event, books
from tests.unit.test_state_versions import cash_history, old_bytes

PARITY = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
CONFIGS = st.sampled_from(
    [
        StateConfig(),
        StateConfig(lateness_days=2, pre_due_days=9),
        StateConfig(max_recent_ids=3, max_loans=1),
    ]
)
SAME = {
    Outcome.APPLIED: SL.APPLIED,
    Outcome.DUPLICATE: SL.DUPLICATE,
    Outcome.TOO_LATE: SL.TOO_LATE,
    Outcome.AGGREGATE_OVERFLOW: SL.AGGREGATE_OVERFLOW,
}


class Run:
    """One apply_many call over customers loaded from ``states``."""

    def __init__(
        self,
        states: list[CustomerState] | list[bytes],
        events: list[tuple[int, Event]],
        lay: SL.Layout,
    ) -> None:
        self.lay = lay.vector
        cols = SE.EventColumns()
        for slot, ev in events:
            cols.add(slot, ev, ev.event_time.timestamp())
        blobs = [x if isinstance(x, bytes) else x.to_bytes() for x in states]
        res = SK.apply_batch(blobs, cols, lay.cfg, self.lay)
        self.arena, self.floats, self.declined = res.arena, res.floats, res.declined
        self.outcome, self.rows, self.active = res.outcome, res.rows, res.active
        self.as_of, self.bounced = res.as_of, res.bounced
        self.exposure, self.cls = res.exposure, res.cls

    def state(self, k: int, cid: str = CID) -> CustomerState:
        blob = SC.save(self.lay, self.arena, self.floats, [k], [cid])[0]
        state = CustomerState.from_bytes(blob)
        assert state.to_bytes() == blob  # what save writes is what msgspec writes
        return state


def check_event(run: Run, i: int, ref: CustomerState, outcome: Outcome, cfg: StateConfig) -> None:
    """Event ``i`` had the reference's outcome and, if applied, its feature row and facts."""
    assert run.outcome[i] == SAME[outcome], (i, outcome, run.outcome[i])
    if outcome is Outcome.APPLIED:
        row = np.full(len(FEATURES), -7.0)
        facts = features_and_facts_reference(ref, ref.last_event_time, row, cfg)
        assert row.tobytes() == run.rows[i].tobytes(), [
            (f.name, a, b) for f, a, b in zip(FEATURES, row, run.rows[i], strict=True) if a != b
        ]
        assert run.as_of[i] == ref.last_event_time
        assert run.active[i] == facts.active_loan
        assert run.bounced[i] == facts.new_bounced_debits
        assert run.exposure[i] == exposure_cents(ref, ref.last_event_time)
        assert run.cls[i] == ref.snapshot(ref.last_event_time, cfg).cat  # the reported class


REFUSED_BY_THE_PYTHON_PATH = (Outcome.UNKNOWN_LOAN, Outcome.INSTALMENT_GAP)


def known_loans_only(evs: list[Event], cfg: StateConfig) -> list[Event]:
    """The events without those the reference refuses as UNKNOWN_LOAN or INSTALMENT_GAP (they
    change nothing there; the kernel declines them, for the pipeline to park or dead-letter
    through the Python path)."""
    ref = CustomerState.new(CID)
    return [e for e in evs if ref.apply(e, cfg) not in REFUSED_BY_THE_PYTHON_PATH]


def test_an_instalment_beyond_the_schedule_is_declined_and_refused() -> None:
    """An instalment_due two beyond a 3-instalment schedule (the 4th is unknown): the reference
    refuses it (instalment_gap, nothing changed), the kernel declines the customer; the next
    instalment (the 4th) is applied by both."""
    cfg = StateConfig()
    ref = CustomerState.new(CID)
    assert ref.apply(_loan("L9", 3), cfg) is Outcome.APPLIED
    before = ref.to_bytes()

    def due(seq: int) -> RepaymentEvent:
        return RepaymentEvent(
            event_id=f"due-{seq}", customer_id=CID, event_time=T0 + dt.timedelta(days=1),
            kind="instalment_due", loan_id="L9", amount=100.0, instalment_seq=seq,
            due_date=T0.date() + dt.timedelta(days=30 * seq),
        )  # fmt: skip

    assert ref.apply(due(5), cfg) is Outcome.INSTALMENT_GAP
    assert ref.to_bytes() == before
    run = Run([CustomerState.from_bytes(before)], [(0, due(5))], SL.Layout(cfg, sched_cap=96))
    assert run.outcome[0] == SL.DECLINED and run.declined[0]
    assert ref.apply(due(4), cfg) is Outcome.APPLIED
    run = Run([CustomerState.from_bytes(before)], [(0, due(4))], SL.Layout(cfg, sched_cap=96))
    assert run.outcome[0] == SL.APPLIED and not run.declined[0]
    assert run.state(0).to_bytes() == ref.to_bytes()


@PARITY
@given(books(), CONFIGS)
def test_kernel_applies_events_like_the_reference(
    book: tuple[list[Event], list[float]], cfg: StateConfig
) -> None:
    """After every event: the outcome, the feature row, facts; at the end the state bytes.
    A declined customer matches up to the event it was declined at."""
    evs = known_loans_only(book[0], cfg)
    run = Run([CustomerState.new(CID)], [(0, e) for e in evs], SL.Layout(cfg, sched_cap=96))
    ref = CustomerState.new(CID)
    for i, e in enumerate(evs):
        if run.outcome[i] == SL.DECLINED:
            assert run.declined[0] and (run.outcome[i:] == SL.DECLINED).all()
            return
        check_event(run, i, ref, ref.apply(e, cfg), cfg)
    assert not run.declined[0]
    assert run.state(0).to_bytes() == ref.to_bytes()


@PARITY
@given(books(), books(), CONFIGS, st.integers(0, 2**32), st.sampled_from([5, 5, 3, 2]))
def test_loaded_states_of_two_customers_continue_like_the_reference(
    book1: tuple[list[Event], list[float]],
    book2: tuple[list[Event], list[float]],
    cfg: StateConfig,
    seed: int,
    version: int,
) -> None:
    """Each customer's first events applied by the reference, its state loaded into a slot
    from its bytes (current, or as version 3 or 2 wrote them: no outflow), the rest of both
    customers' events interleaved in one kernel call."""
    rng = random.Random(seed)
    refs, starts, rest = [], [], []
    for k, (evs, _offsets) in enumerate((book1, book2)):
        evs = known_loans_only(evs, cfg)
        cut = rng.randint(0, len(evs))
        ref = CustomerState.new(CID)
        for e in evs[:cut]:
            ref.apply(e, cfg)
        blob = ref.to_bytes()
        if version < 5 and not ref.lines and (version == 3 or not ref.reports):
            blob = old_bytes(ref, version)
            ref = CustomerState.from_bytes(blob)  # the reference reads them too
        starts.append(blob)
        refs.append(ref)
        rest.append([(k, e) for e in evs[cut:]])
    mixed: list[tuple[int, Event]] = []
    while rest[0] or rest[1]:  # interleave, keeping each customer's order
        k = rng.choice([j for j in (0, 1) if rest[j]])
        mixed.append(rest[k].pop(0))
    run = Run(starts, mixed, SL.Layout(cfg, sched_cap=96))
    for i, (k, e) in enumerate(mixed):
        if run.declined[k]:
            continue
        check_event(run, i, refs[k], refs[k].apply(e, cfg), cfg)
    for k in (0, 1):
        if not run.declined[k]:
            assert run.state(k).to_bytes() == refs[k].to_bytes()


def sim_events(customers: int, months: int, seed: int) -> dict[str, list[Event]]:
    """The simulator's decodable events by customer, in delivery order."""
    out: dict[str, list[Event]] = {}
    for r in Simulation(SimConfig(customers=customers, months=months, seed=seed)).records():
        try:
            ev = decode(r.value, INPUT_TYPES[r.topic])
        except RecordError:
            continue
        out.setdefault(ev.customer_id, []).append(ev)
    return out


def test_a_simulated_book_runs_without_a_decline_and_ends_in_the_reference_states() -> None:
    """The default layout holds a realistic book: no customer leaves the kernel."""
    cfg = StateConfig()
    by_cust = sim_events(25, 12, 5)
    cids = sorted(by_cust)
    events = [(k, e) for k, cid in enumerate(cids) for e in by_cust[cid]]
    random.Random(1).shuffle(events)  # customers interleave; each keeps its order:
    events.sort(key=lambda x: (by_cust[cids[x[0]]].index(x[1]), x[0]))
    run = Run([CustomerState.new(c) for c in cids], events, SL.Layout(cfg))
    assert not run.declined.any()
    assert (run.outcome == SL.APPLIED).sum() > 0.9 * len(events)
    for k, cid in enumerate(cids):
        ref = CustomerState.new(cid)
        for e in by_cust[cid]:
            ref.apply(e, cfg)
        assert run.state(k, cid).to_bytes() == ref.to_bytes()


def _loan(loan_id: str, n: int, when: dt.datetime = T0) -> LoanEvent:
    sched = [
        Instalment(seq=k, due_date=when.date() + dt.timedelta(days=30 * k), amount=100.0)
        for k in range(1, n + 1)
    ]
    return LoanEvent(
        event_id=f"open-{loan_id}",
        customer_id=CID,
        event_time=when,
        kind="changed",
        loan_id=loan_id,
        schedule=sched,
    )


def _pay(k: int, loan_id: str, when: dt.datetime) -> RepaymentEvent:
    return RepaymentEvent(
        event_id=f"pay-{k}",
        customer_id=CID,
        event_time=when,
        kind="payment_received",
        loan_id=loan_id,
        amount=100.0,
    )


def test_what_does_not_fit_a_slot_declines_that_customer_only() -> None:
    """A schedule longer than the slot holds, a repayment for an unknown loan: that customer
    is declined from that event on (the pipeline redoes it in Python); the other goes on."""
    cfg = StateConfig()
    later = T0 + dt.timedelta(days=1)
    events: list[tuple[int, Event]] = [
        (0, _loan("A", 3)),
        (1, _loan("B", 3)),
        (0, _loan("A2", 65, later)),  # 65 > sched_cap (64)
        (1, _pay(1, "B", later)),
        (0, _pay(2, "A", later)),  # after the decline
        (1, _pay(3, "nope", later)),  # unknown loan
        (1, _pay(4, "B", later)),
    ]
    run = Run([CustomerState.new(CID), CustomerState.new(CID)], events, SL.Layout(cfg))
    assert run.outcome.tolist() == [
        SL.APPLIED,
        SL.APPLIED,
        SL.DECLINED,
        SL.APPLIED,
        SL.DECLINED,
        SL.DECLINED,
        SL.DECLINED,
    ]
    assert run.declined.tolist() == [True, True]


def test_states_beyond_a_slot_or_int64_or_not_states_are_not_loaded() -> None:
    """Only the bytes that do not fit a slot (or are not a version-2 state) are declined; the
    others load and save back to the same bytes."""
    lay = SL.Layout(StateConfig()).vector
    ok = CustomerState.new(CID)
    ok.apply(_loan("A", 64), StateConfig())
    long = CustomerState.new(CID)
    long.apply(_loan("A", 65), StateConfig())
    big = CustomerState.from_bytes(ok.to_bytes())
    big.loans[0].paid = 1 << 63
    many = CustomerState.from_bytes(ok.to_bytes())
    many.ids = list(range(StateConfig().max_recent_ids + 1))
    many.id_t = [0] * len(many.ids)
    other = CustomerState.new("a-much-longer-customer-id-than-thirty-one-bytes")
    blobs = [x.to_bytes() for x in (long, ok, big, many, other)]
    blobs += [ok.to_bytes()[:-3], b"\x01" + ok.to_bytes()[1:], b"", b"\x02\xdc\x00\x11"]
    arena, floats, declined = SC.load(blobs, lay)
    assert declined.tolist() == [True, False, True, True, False, True, True, True, True]
    back = SC.save(lay, arena, floats, [1, 4], [CID, other.customer_id])
    assert back == [blobs[1], blobs[4]]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40), st.floats(allow_nan=False))
def test_ints_and_floats_are_written_as_msgspec_writes_them(ints: list[int], x: float) -> None:
    """Every int width and sign, hashes over the whole unsigned range, any float."""
    cfg = StateConfig()
    lay = SL.Layout(cfg).vector
    st_ = CustomerState.new(CID)
    st_.months = array("q", ints[: _ROW_LEN * (len(ints) // _ROW_LEN)])
    st_.ids = sorted(i + 2**63 for i in ints[: cfg.max_recent_ids])
    st_.id_t = ints[: len(st_.ids)]
    st_.payers = ints[:16]
    st_.bal = ints[0] if ints else 0
    st_.last_event_time, st_.years_in_business = x, -x
    blob = st_.to_bytes()
    arena, floats, declined = SC.load([blob], lay)
    if len(st_.months) // _ROW_LEN > lay[SL.Y_MONTH_CAP]:
        assert declined[0]
        return
    assert not declined[0]
    assert SC.save(lay, arena, floats, [0], [CID]) == [blob]


def _status(k: int, loan_id: str, when: dt.datetime, dpd: int = 5) -> DelinquencyStatus:
    return DelinquencyStatus(
        event_id=f"st-{k}",
        customer_id=CID,
        event_time=when,
        kind="delinquency_status",
        loan_id=loan_id,
        days_past_due=dpd,
        overdue_amount=250.0 if dpd else None,
        five_category="substandard",
    )


def test_reported_states_load_and_save_back_and_what_does_not_fit_declines() -> None:
    """States with reports (folded and pending) load into slots and save back to the same
    bytes; reports beyond the slot's capacity, out of the loans' order or naming no loan are
    declined (the Python path reads them); a status beyond the capacity declines the customer."""
    cfg = StateConfig()
    lay = SL.Layout(cfg, rep_cap=2)
    day = dt.timedelta(days=1)
    ok = CustomerState.new(CID)
    events = [_loan("A", 6), _loan("B", 6), _status(1, "B", T0 + day), _status(2, "A", T0 + day)]
    events += [_status(3, "A", T0 + 40 * day, 0), _status(4, "A", T0 + 41 * day)]
    for ev in events:
        assert ok.apply(ev, cfg) is Outcome.APPLIED
    assert ok.reports[0].day >= 0 and ok.reports[0].pending and ok.reports[1].day >= 0
    full = CustomerState.from_bytes(ok.to_bytes())
    full.reports[0].pending += [(10**6, 0, 1, 1, 1, -1), (10**6 + 1, 0, 1, 1, 1, -1)]
    swapped = CustomerState.from_bytes(ok.to_bytes())
    swapped.reports.reverse()
    orphan = CustomerState.from_bytes(ok.to_bytes())
    orphan.reports[1].h = 12345
    blobs = [x.to_bytes() for x in (ok, full, swapped, orphan)]
    assert blobs[0][0] == 5
    arena, floats, declined = SC.load(blobs, lay.vector)
    assert declined.tolist() == [False, True, True, True]
    assert SC.save(lay.vector, arena, floats, [0], [CID]) == [blobs[0]]
    # loan A has two reports pending: a third does not fit (B's does); declined from there on
    assert [len(r.pending) for r in ok.reports] == [2, 0]
    more = [_status(5, "B", T0 + 42 * day), _status(6, "A", T0 + 43 * day)]
    run = Run([CustomerState.from_bytes(blobs[0])], [(0, e) for e in more], lay)
    assert run.outcome.tolist() == [SL.APPLIED, SL.DECLINED]


def test_an_older_state_continues_in_the_kernel_with_reports() -> None:
    """A version-2 state (a changelog written before reports existed) loads into a slot; the
    first status is kept as the reference keeps it, and both write version 5."""
    cfg = StateConfig()
    ref = CustomerState.new(CID)
    ref.apply(_loan("A", 6), cfg)
    old = old_bytes(ref, 2)
    ev = _status(1, "A", T0 + dt.timedelta(days=2))
    run = Run([old], [(0, ev)], SL.Layout(cfg))
    assert not run.declined[0]
    check_event(run, 0, ref, ref.apply(ev, cfg), cfg)
    assert run.state(0).to_bytes() == ref.to_bytes() and ref.to_bytes()[0] == 5


def test_version_2_and_3_states_load_with_no_outflow_and_save_as_version_5() -> None:
    """Rows of 13 (before the outflow) load into the slot's rows of 14 with an outflow of 0, as
    ``CustomerState.from_bytes`` reads them; saved, they are the reference's version-5 bytes.
    Version 4 (always with credit lines) and lines in version 5 are declined."""
    cfg = StateConfig()
    ref = CustomerState.new(CID)
    for e in cash_history():
        ref.apply(e, cfg)
    lay = SL.Layout(cfg).vector
    blobs = [old_bytes(ref, 2), old_bytes(ref, 3), old_bytes(ref, 4), ref.to_bytes()]
    arena, floats, declined = SC.load(blobs, lay)
    assert declined.tolist() == [False, False, True, False]
    want = CustomerState.from_bytes(blobs[0]).to_bytes()
    assert want != ref.to_bytes()  # the outflow is gone
    assert SC.save(lay, arena, floats, [0, 1, 3], [CID] * 3) == [want, want, ref.to_bytes()]
