"""Revolving credit lines in the reference state: DPD from minimum-due arrears, payments above
the minimum, draws over the limit, refusals, reported statuses, the features and the codec."""

from __future__ import annotations

import datetime as dt
import math
import random
from pathlib import Path

import numpy as np
import pytest

from schemas.events import (
    DelinquencyStatus,
    InputEvent,
    Instalment,
    LineEvent,
    LoanEvent,
    RepaymentEvent,
)
from streams.core.delinquency import day_of
from streams.core.entry import Entry
from streams.core.exposure import exposure_cents
from streams.core.features import FEATURE_NAMES, features_and_facts_reference
from streams.core.lines import balance_now
from streams.core.state import CustomerState, Outcome, StateConfig
from tests.unit.test_state_versions import old_bytes

CFG = StateConfig()
T0 = dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)
_n = iter(range(10**9))


def at(day: int, hour: int = 10) -> dt.datetime:
    return T0 + dt.timedelta(days=day, hours=hour - 10)


def eid() -> str:
    return f"e{next(_n)}"


def line(day: int = 0, limit: float = 1000.0, lid: str = "K1") -> LoanEvent:
    return LoanEvent(
        event_id=eid(), customer_id="C", event_time=at(day), kind="opened", loan_id=lid,
        credit_limit=limit, annual_rate=0.12, guarantee_method="credit",
    )  # fmt: skip


def draw(day: int, amount: float, lid: str = "K1") -> LineEvent:
    return LineEvent(
        event_id=eid(), customer_id="C", event_time=at(day), kind="draw", loan_id=lid,
        amount=amount,
    )  # fmt: skip


def stmt(day: int, balance: float, minimum: float, due: int, lid: str = "K1") -> LineEvent:
    return LineEvent(
        event_id=eid(), customer_id="C", event_time=at(day, 23), kind="statement", loan_id=lid,
        balance=balance, minimum_due=minimum, due_date=at(due).date(),
    )  # fmt: skip


def pay(day: int, amount: float, lid: str = "K1", event_id: str | None = None) -> RepaymentEvent:
    return RepaymentEvent(
        event_id=event_id or eid(), customer_id="C", event_time=at(day, 12),
        kind="payment_received", loan_id=lid, amount=amount,
    )  # fmt: skip


def instalment_loan() -> LoanEvent:
    return LoanEvent(
        event_id=eid(), customer_id="C", event_time=at(0), kind="opened", loan_id="L1",
        principal=900.0, annual_rate=0.1, term_months=1, repayment_method="equal_instalment",
        guarantee_method="credit", schedule=[Instalment(1, at(30).date(), 900.0)],
    )  # fmt: skip


def run(events: list[InputEvent]) -> CustomerState:
    s = CustomerState.new("C")
    for ev in events:
        assert s.apply(ev, CFG) is Outcome.APPLIED, ev
    return s


def features(s: CustomerState, day: int) -> dict[str, float]:
    row = np.empty(len(FEATURE_NAMES))
    features_and_facts_reference(s, at(day, 23).timestamp(), row, CFG)
    return dict(zip(FEATURE_NAMES, row.tolist(), strict=True))


def dpd(s: CustomerState, day: int) -> int:
    return s.facts(at(day, 23).timestamp(), CFG).dpd


def test_an_unpaid_minimum_is_past_due_from_its_due_date() -> None:
    s = run([line(), draw(1, 600.0), stmt(30, 600.0, 50.0, 45)])
    assert dpd(s, 45) == 0  # due today: on time until the day ends
    assert dpd(s, 46) == 1
    assert dpd(s, 75) == 30
    f = s.facts(at(75, 23).timestamp(), CFG)
    assert f.overdue_amount == 50.0 and f.has_arrears and f.bucket_name == "M1"


def test_a_partial_payment_leaves_dpd_and_covering_the_oldest_moves_it_on() -> None:
    s = run([line(), draw(1, 600.0), stmt(30, 600.0, 50.0, 45), pay(40, 20.0)])
    s2 = [stmt(60, 580.0, 50.0, 75), pay(80, 30.0)]
    for ev in s2:
        assert s.apply(ev, CFG) is Outcome.APPLIED
    assert dpd(s, 79) == 34  # 20 of the first 50: still from day 45
    assert dpd(s, 80) == 5  # the first covered late: from the second's due day (75)
    assert s.facts(at(80, 23).timestamp(), CFG).overdue_amount == 50.0


def test_paying_above_the_minimum_does_not_prepay_the_next_statement() -> None:
    """An instalment loan's overpayment covers the next instalment; a line's does not: the
    lender's next minimum already reflects the lower balance."""
    s = run([line(), draw(1, 900.0), stmt(30, 900.0, 50.0, 45), pay(40, 500.0)])
    s.apply(stmt(60, 400.0, 30.0, 75), CFG)
    assert dpd(s, 75) == 0 and dpd(s, 76) == 1 and dpd(s, 90) == 15
    assert s.facts(at(90, 23).timestamp(), CFG).overdue_amount == 30.0
    loan = run(
        [
            LoanEvent(
                event_id=eid(), customer_id="C", event_time=at(0), kind="opened", loan_id="L1",
                principal=900.0, annual_rate=0.1, term_months=2,
                repayment_method="equal_instalment", guarantee_method="credit",
                schedule=[Instalment(1, at(45).date(), 50.0), Instalment(2, at(75).date(), 30.0)],
            ),
            pay(40, 500.0, lid="L1"),
        ]
    )  # fmt: skip
    assert dpd(loan, 90) == 0  # the instalment convention: the overpayment prepaid #2


def test_a_payment_on_the_statement_day_is_in_its_balance_not_its_minimum() -> None:
    s = run([line(), draw(1, 600.0), pay(30, 100.0), stmt(30, 500.0, 50.0, 45)])
    assert dpd(s, 50) == 5
    assert s.apply(pay(31, 50.0), CFG) is Outcome.APPLIED
    assert dpd(s, 50) == 0


def test_paying_on_the_due_day_is_on_time_and_a_zero_minimum_is_never_due() -> None:
    s = run([line(), draw(1, 600.0), stmt(30, 600.0, 50.0, 45), pay(45, 50.0)])
    assert dpd(s, 60) == 0
    s2 = run([line(), stmt(30, 0.0, 0.0, 45)])
    assert dpd(s2, 100) == 0


def test_a_single_draw_above_the_limit_is_refused_and_changes_nothing() -> None:
    s = run([line(limit=1000.0), draw(1, 600.0)])
    before = s.to_bytes()
    assert s.apply(draw(2, 1000.01), CFG) is Outcome.OVER_LIMIT
    assert s.to_bytes() == before
    # draws that together go over the limit happened: applied, utilisation above 1
    assert s.apply(draw(3, 600.0), CFG) is Outcome.APPLIED
    assert features(s, 3)["line_utilisation"] == pytest.approx(1.2)


def test_events_naming_the_wrong_product_or_no_line_are_refused() -> None:
    s = run([line(lid="K1")])
    s.apply(
        LoanEvent(
            event_id=eid(), customer_id="C", event_time=at(0), kind="opened", loan_id="L1",
            principal=900.0, annual_rate=0.1, term_months=1,
            repayment_method="equal_instalment", guarantee_method="credit",
            schedule=[Instalment(1, at(30).date(), 900.0)],
        ),
        CFG,
    )  # fmt: skip
    before = s.to_bytes()
    assert s.apply(stmt(5, 0.0, 0.0, 20, lid="L1"), CFG) is Outcome.WRONG_PRODUCT
    assert s.apply(draw(5, 1.0, lid="nope"), CFG) is Outcome.UNKNOWN_LOAN
    assert s.apply(line(5, lid="L1"), CFG) is Outcome.WRONG_PRODUCT
    due = RepaymentEvent(
        event_id=eid(), customer_id="C", event_time=at(5), kind="instalment_due", loan_id="K1",
        amount=10.0, instalment_seq=1, due_date=at(30).date(),
    )  # fmt: skip
    assert s.apply(due, CFG) is Outcome.WRONG_PRODUCT
    assert s.to_bytes() == before


def test_a_reported_status_overrides_the_line_until_cured() -> None:
    s = run([line(), draw(1, 600.0), stmt(30, 600.0, 50.0, 45)])
    status = DelinquencyStatus(
        event_id=eid(), customer_id="C", event_time=at(50, 23), kind="delinquency_status",
        loan_id="K1", days_past_due=40, overdue_amount=80.0, five_category="special_mention",
    )  # fmt: skip
    assert s.apply(status, CFG) is Outcome.APPLIED
    assert dpd(s, 49) == 4  # before the report: the statements' DPD
    f = s.facts(at(55, 23).timestamp(), CFG)
    assert (f.dpd, f.overdue_amount, f.five_category) == (45, 80.0, "special_mention")
    s.apply(pay(56, 80.0), CFG)  # pays the reported overdue (and the minimum): cured
    assert dpd(s, 57) == 0


def test_line_features_utilisation_payment_ratio_and_paid_in_full() -> None:
    s = run(
        [
            line(limit=1000.0), draw(1, 800.0), stmt(30, 800.0, 40.0, 45), pay(44, 800.0),
            draw(50, 200.0), stmt(60, 200.0, 20.0, 75), pay(70, 30.0),
        ]
    )  # fmt: skip
    f = features(s, 80)
    assert f["line_utilisation"] == pytest.approx(0.17)  # 200 - 30 of 1000
    assert f["line_utilisation_max_6m"] == pytest.approx(0.8)
    assert f["line_payment_min_ratio"] == pytest.approx(1.5)  # 30 of a 20 minimum
    assert f["line_paid_full_share_6m"] == pytest.approx(0.5)  # the first paid in full
    assert exposure_cents(s, at(80, 23).timestamp()) == 17_000
    plain = run([line(), draw(1, 10.0)])
    g = features(plain, 5)
    assert math.isnan(g["line_payment_min_ratio"]) and math.isnan(g["line_paid_full_share_6m"])


def test_state_with_a_line_round_trips_and_version_4_bytes_still_read() -> None:
    s = run([line(), draw(1, 600.0), stmt(30, 600.0, 50.0, 45), pay(40, 20.0)])
    data = s.to_bytes()
    assert data[0] == 5
    back = CustomerState.from_bytes(data)
    assert back == s and back.to_bytes() == data
    assert CustomerState.from_bytes(old_bytes(s, 4)) == s  # no debits: the outflow was 0 anyway


def _book(seed: int) -> list[InputEvent]:
    rng = random.Random(seed)
    evs: list[InputEvent] = [line(0, 5000.0)]
    for m in range(14):
        d0 = 30 * m
        evs.append(draw(d0 + rng.randint(1, 10), float(rng.randint(1, 900))))
        evs.append(stmt(d0 + 15, float(rng.randint(100, 4000)), float(rng.randint(0, 99)), d0 + 35))
        for _ in range(rng.randint(0, 2)):
            evs.append(pay(d0 + rng.randint(16, 45), float(rng.randint(1, 120))))
    return sorted(evs, key=lambda e: e.event_time)


@pytest.mark.parametrize("seed", range(6))
def test_arrival_order_within_the_bound_does_not_change_the_state(seed: int) -> None:
    """Lines keep the state's guarantee: events shuffled within the lateness bound give the
    same bytes, DPD and features (folds included: the book spans 14 months)."""
    evs = _book(seed)
    rng = random.Random(seed + 100)
    jittered = sorted(evs, key=lambda e: e.event_time.timestamp() + rng.uniform(0, 5 * 86400))
    a, b = run(evs), run(jittered)
    assert a.to_bytes() == b.to_bytes()
    last = 30 * 14 + 30
    fa, fb = features(a, last), features(b, last)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k] == fb[k] or (math.isnan(fa[k]) and math.isnan(fb[k])), k
    assert len(a.lines[0].stmts) < 14  # old covered statements were dropped on the folds


def test_a_backtest_of_a_book_with_lines_accounts_for_every_message(tmp_path: Path) -> None:
    """A simulated book with 30 % of firms on credit lines (duplicates, late and malformed
    messages included) through the whole pipeline: every message ends processed, duplicate or
    dead-lettered (none with a line-specific reason: the simulator sends valid line events);
    line firms get DPD from their statements, dpd_bucket alerts, and exposure = balance."""
    from scoring.artifact import default_scorecard_path, load
    from streams.evaluation.backtest import backtest
    from streams.sim.simulate import SimConfig, Simulation, write_jsonl, write_truth

    sim = Simulation(SimConfig(customers=300, months=8, seed=21, lines_share=0.3))
    path = tmp_path / "events.jsonl"
    with path.open("wb") as f:
        write_jsonl(sim.records(), f)
    write_truth(sim.truth(), tmp_path / "truth.csv")
    assert sim._lines is not None
    line_firms = {f"C{i:07d}" for i in sim._lines.idx.tolist()}
    res = backtest(path, load(default_scorecard_path()))
    acc = res.accounting()
    assert acc["messages"] == res.events
    assert acc["messages"] == acc["processed"] + acc["duplicate"] + acc["dead_letter"]
    assert set(res.dead_letters) <= {"too_late", "schema", "not_json"}, res.dead_letters
    obs = res.observations
    line_dpd = [d for c, d in zip(obs.customer, obs.dpd, strict=True) if c in line_firms]
    assert max(line_dpd) >= 90 and sum(d > 0 for d in line_dpd) > 100
    alerted = {a.customer_id for a in res.alerts if a.signal == "dpd_bucket"}
    assert len(alerted & line_firms) >= 5
    # exposure = the line's outstanding balance: the last rescoring's equals the final state's
    assert res.pipeline is not None
    stored = res.pipeline.stored()
    last: dict[str, tuple[float, float]] = {}
    for c, t, e in zip(obs.customer, obs.time, obs.exposure, strict=True):
        if c in line_firms:
            last[c] = (t, e)
    checked = 0
    for c, (t, e) in last.items():
        st = Entry.from_bytes(stored[c]).state
        if st.last_event_time == t:
            assert (
                e
                == exposure_cents(st, t) / 100
                == sum(balance_now(x, day_of(t)) for x in st.lines if x.closed_t < 0) / 100
            )
            checked += e > 0
    assert checked >= 20


def test_history_has_the_line_features_as_columns_and_train_takes_them(tmp_path: Path) -> None:
    """`riskmon history` on a book with lines: the line features are columns, filled for line
    firms only (NaN = missing for the others), and `riskmon train` runs on the table."""
    import pandas as pd
    from click.testing import CliRunner

    from scoring.artifact import default_scorecard_path, load
    from streams.cli.scorecard import train
    from streams.evaluation.history import history
    from streams.sim.simulate import SimConfig, Simulation, write_jsonl, write_truth

    sim = Simulation(SimConfig(customers=300, months=8, seed=21, lines_share=0.3))
    path = tmp_path / "events.jsonl"
    with path.open("wb") as f:
        write_jsonl(sim.records(), f)
    write_truth(sim.truth(), tmp_path / "truth.csv")
    assert sim._lines is not None
    line_firms = {f"C{i:07d}" for i in sim._lines.idx.tolist()}
    out = tmp_path / "table.csv"
    history(path, load(default_scorecard_path()), out, horizon_days=60)
    df = pd.read_csv(out)
    on_line = df["customer_id"].isin(line_firms)
    names = ["line_utilisation", "line_utilisation_max_6m", "line_payment_min_ratio"]
    assert df.loc[on_line, names[0]].notna().all() and df.loc[~on_line, names].isna().all().all()
    assert on_line.sum() > 200 and df.loc[on_line, "line_paid_full_share_6m"].notna().sum() > 100
    card_path = tmp_path / "card.json"
    args = [str(out), "--target", "bad", "--out", str(card_path), "--min-bads", "5"]
    result = CliRunner().invoke(train, args)
    assert result.exit_code == 0, result.output
    considered = {s["name"] for s in load(card_path).training["selection"]}
    assert set(names) <= considered


@pytest.mark.parametrize("batch", [7, 700])
def test_kernel_and_python_path_agree_on_a_book_with_lines(batch: int) -> None:
    """A simulated book where a third of the firms are on lines, with its delivery noise: the
    state kernel (which hands line customers to the Python path) and the all-Python path give
    the same records, outcomes and table bytes."""
    from streams.sim.simulate import SimConfig, Simulation
    from tests.unit.test_pipeline import kernel_and_python, records

    sim = Simulation(SimConfig(customers=60, months=8, seed=11, lines_share=0.33))
    recs = records([(r.topic, r.key or b"", r.value) for r in sim.records()])
    (out_k, table_k, outcomes_k), (out_p, table_p, outcomes_p) = kernel_and_python(recs, batch)
    assert outcomes_k == outcomes_p and outcomes_k[("loans", "processed")] > 15 * 8
    assert out_k == out_p
    assert table_k == table_p


def test_bad_line_events_are_dead_letters_with_a_reason(tmp_path: Path) -> None:
    """Through the pipeline, every refused line event is a dead letter naming why, never a crash
    or a silent drop: schema (negative draw, minimum above balance, a schedule on a line),
    over_limit, wrong_product (both ways), unknown_loan (a line never opened)."""
    import json

    from schemas.codec import encode
    from streams.core.pipeline import Pipeline
    from tests.conftest import expert_scorecard
    from tests.unit.test_pipeline import records

    def raw(ev: InputEvent) -> dict[str, object]:
        return json.loads(encode(ev))

    good = [raw(line()), raw(instalment_loan()), raw(draw(1, 100.0))]
    bad = {
        "schema": [
            {**raw(draw(2, 1.0)), "amount": -5.0},
            {**raw(stmt(3, 10.0, 1.0, 20)), "minimum_due": 11.0},
            {**raw(line(4, lid="K9")), "schedule": []},
        ],
        "over_limit": [raw(draw(5, 1000.5))],
        "wrong_product": [raw(stmt(6, 10.0, 1.0, 20, lid="L1")), raw(line(7, lid="L1"))],
        "unknown_loan": [raw(draw(8, 1.0, lid="never"))],
    }
    due_on_line = RepaymentEvent(
        event_id=eid(), customer_id="C", event_time=at(9), kind="instalment_due", loan_id="K1",
        amount=10.0, instalment_seq=1, due_date=at(30).date(),
    )  # fmt: skip
    bad["wrong_product"].append(raw(due_on_line))
    events = []
    for doc in good + [d for ds in bad.values() for d in ds]:
        role = "repayments" if doc["kind"] == "instalment_due" else "loans"
        events.append((role, b"C", json.dumps(doc).encode()))
    pipe = Pipeline(expert_scorecard(), offline=True)
    res = pipe.process(records(events))
    end = pipe.end_of_input()
    dead = res.dead_letters + end.dead_letters
    assert dict(dead) == {reason: len(docs) for reason, docs in bad.items()}
    processed = sum(n for (_t, o), n in res.outcomes.items() if o == "processed")
    assert processed == len(good)
    assert processed + sum(dead.values()) == len(events)


def test_old_state_layouts_still_read() -> None:
    """Every state is written as version 5; bytes as an older worker wrote them (version 2
    before reports, 3 before lines, 4 with lines; rows of 13 without the outflow) read back to
    the same state (no debits here, so no outflow is lost)."""
    s = run([instalment_loan()])
    assert s.to_bytes()[0] == 5 and CustomerState.from_bytes(old_bytes(s, 2)) == s
    status = DelinquencyStatus(
        event_id=eid(), customer_id="C", event_time=at(3), kind="delinquency_status",
        loan_id="L1", days_past_due=0,
    )  # fmt: skip
    assert s.apply(status, CFG) is Outcome.APPLIED
    assert s.to_bytes()[0] == 5 and CustomerState.from_bytes(old_bytes(s, 3)) == s
    assert s.apply(line(4), CFG) is Outcome.APPLIED
    data = s.to_bytes()
    assert data[0] == 5 and CustomerState.from_bytes(data) == s
    assert CustomerState.from_bytes(old_bytes(s, 4)) == s
