"""The simulator's documented properties: determinism, valid records, ground truth consistent with
the events, factor directions, early signs before default, and the delivered noise rates."""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from functools import cache

import numpy as np
import pytest

from schemas.codec import RecordError, decode
from schemas.events import (
    INPUT_TYPES,
    InputEvent,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)
from scoring.errors import InputError
from streams.sim.simulate import (
    SimConfig,
    SimRecord,
    Simulation,
    TruthRow,
    records_from_lines,
    write_jsonl,
)

DAY = 86_400


@cache
def run(cfg: SimConfig) -> tuple[list[SimRecord], list[TruthRow], dict[str, int]]:
    sim = Simulation(cfg)
    recs = list(sim.records())
    return recs, sim.truth(), dict(sim.counts)


SMALL = SimConfig(customers=600, months=12, seed=11)
NOISY = SimConfig(
    customers=1500, months=12, seed=5, dup_rate=0.05, late_rate=0.05, malformed_rate=0.02
)
BOOK = SimConfig(customers=8000, months=12, seed=3)


def valid_events(recs: list[SimRecord]) -> list[tuple[SimRecord, InputEvent]]:
    """Decoded valid events, first delivery of each event id only."""
    seen: set[str] = set()
    out = []
    for r in recs:
        try:
            ev = decode(r.value, INPUT_TYPES[r.topic])
        except RecordError:
            continue
        if ev.event_id not in seen:
            seen.add(ev.event_id)
            out.append((r, ev))
    return out


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    """Two runs of one config deliver identical messages; another seed does not."""
    cfg = SimConfig(customers=300, months=4, seed=7, malformed_rate=0.01)
    a = list(Simulation(cfg).records())
    b = list(Simulation(cfg).records())
    c = list(Simulation(SimConfig(customers=300, months=4, seed=8)).records())
    assert a == b
    assert [r.value for r in a] != [r.value for r in c]


def test_every_valid_message_decodes_to_its_topic_type_and_is_keyed_by_customer() -> None:
    """Valid messages decode with the schema of their topic, key = customer id, source simulator;
    the only undecodable ones are the injected malformed messages."""
    recs, _, counts = run(NOISY)
    bad = 0
    for r in recs:
        try:
            ev = decode(r.value, INPUT_TYPES[r.topic])
        except RecordError:
            bad += 1
            continue
        assert r.key == ev.customer_id.encode()
        assert ev.source == "simulator"
        assert ev.event_time.utcoffset() == dt.timedelta(0)
        assert r.event_time == ev.event_time.timestamp()
    assert bad == counts["malformed"] > 0


def test_event_ids_are_unique_except_exact_duplicates() -> None:
    """An event id seen twice always carries the same bytes (a deliberate duplicate)."""
    recs, _, counts = run(NOISY)
    by_id: dict[str, bytes] = {}
    dups = 0
    for r, ev in (
        (r, decode(r.value, INPUT_TYPES[r.topic])) for r in recs if b'"event_id":"sim' in r.value
    ):
        if ev.event_id in by_id:
            assert by_id[ev.event_id] == r.value
            dups += 1
        by_id[ev.event_id] = r.value
    assert dups == counts["duplicates"]


def test_jsonl_round_trip_gives_the_same_records() -> None:
    """Writing JSON lines and reading them back yields exactly the in-process records."""
    recs, _, _ = run(NOISY)
    buf = io.BytesIO()
    assert write_jsonl(recs, buf) == len(recs)
    lines = buf.getvalue().splitlines(keepends=True)
    assert len(lines) == len(recs)
    assert list(records_from_lines(lines)) == recs


def _epoch_day(d: dt.date) -> int:
    return d.toordinal() - dt.date(1970, 1, 1).toordinal()


def reference_default_days(recs: list[SimRecord], end_day: int) -> dict[str, int]:
    """Independent DPD reference: first day-end with an instalment unpaid 90+ days after its due
    date, payments allocated oldest first (cumulative paid vs cumulative due). Dues come from the
    latest contract schedule; every instalment_due event must agree with it."""
    schedules: dict[tuple[str, str], tuple[float, dict[int, tuple[int, int]]]] = {}
    due_events: list[RepaymentEvent] = []
    flows: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    payments: dict[str, tuple[int, int]] = {}
    events = sorted((ev for _, ev in valid_events(recs)), key=lambda e: e.event_time)
    for ev in events:  # event-time order: a reversal may be delivered before its payment
        if isinstance(ev, LoanEvent):
            t = ev.event_time.timestamp()
            key = (ev.customer_id, ev.loan_id)
            if ev.schedule is not None and t >= schedules.get(key, (-1.0, {}))[0]:
                sched = {
                    i.seq: (_epoch_day(i.due_date), round(i.amount * 100)) for i in ev.schedule
                }
                schedules[key] = (t, sched)
            continue
        if not isinstance(ev, RepaymentEvent):
            continue
        key = (ev.customer_id, ev.loan_id)
        cents = round(ev.amount * 100)
        day = int(ev.event_time.timestamp()) // DAY
        if ev.kind == "instalment_due":
            due_events.append(ev)
        elif ev.kind == "payment_received":
            flows[key].append((day, cents))
            payments[ev.event_id] = (day, cents)
        else:
            assert ev.reversed_event_id in payments
            flows[key].append((day, -cents))
    for ev in due_events:
        assert ev.due_date is not None and ev.instalment_seq is not None
        due_day, cents = schedules[(ev.customer_id, ev.loan_id)][1][ev.instalment_seq]
        assert (due_day, cents) == (_epoch_day(ev.due_date), round(ev.amount * 100))
    out: dict[str, int] = {}
    for key, (_, sched) in schedules.items():
        cum_due = 0
        for seq in sorted(sched):
            due, cents = sched[seq]
            cum_due += cents
            d = due + 90
            if d >= end_day:
                break
            paid = sum(c for day, c in flows[key] if day <= d)
            if paid < cum_due:
                out[key[0]] = min(out.get(key[0], d), d)
                break
    return out


def test_ground_truth_defaults_are_the_90_dpd_dates_in_the_repayment_events() -> None:
    """Every customer with a default date reaches 90+ DPD on exactly that day in the delivered
    events (after dedupe, lateness, malformed); nobody else reaches 90+ DPD."""
    recs, truth, _ = run(NOISY)
    sim = Simulation(NOISY)
    ref = reference_default_days(recs, sim.end_epoch_s // DAY)
    got = {
        t.customer_id: _epoch_day(dt.date.fromisoformat(t.default_date))
        for t in truth
        if t.default_date
    }
    assert len(got) > 30
    assert got == ref


def _rate(truth: list[TruthRow], mask: np.ndarray) -> float:
    d = np.array([bool(t.default_date) for t in truth])
    return float(d[mask].mean())


def _z(truth: list[TruthRow], risky: np.ndarray, other: np.ndarray) -> float:
    """Two-proportion z statistic of the default rate, risky group minus the other group."""
    d = np.array([bool(t.default_date) for t in truth])
    pooled = d[risky | other].mean()
    se = np.sqrt(pooled * (1 - pooled) * (1 / risky.sum() + 1 / other.sum()))
    return float((d[risky].mean() - d[other].mean()) / se)


@pytest.mark.parametrize(
    ("factor", "risky"),
    [
        ("interest-only repayment", lambda t: t.repayment_method == "interest_only_balloon"),
        ("credit-only guarantee", lambda t: t.guarantee_method == "credit"),
        ("under 3 years in business", lambda t: t.years_in_business < 3),
        ("shareholder held < 2 years", lambda t: t.shareholder_holding_years < 2),
    ],
)
def test_factor_raises_default_rate(factor: str, risky: object) -> None:
    """The docs/domain.md factors raise the default rate over a book of a few thousand firms
    (one-sided two-proportion z > 2)."""
    _, truth, _ = run(BOOK)
    mask = np.array([risky(t) for t in truth])  # type: ignore[operator]
    assert 0.05 < mask.mean() < 0.95, factor
    assert _rate(truth, mask) > _rate(truth, ~mask), factor
    assert _z(truth, mask, ~mask) > 2.0, factor


def test_rate_increase_raises_default_rate() -> None:
    """Firms whose rate went up in the first four months default more afterwards than firms with
    no increase that were still performing then."""
    _, truth, _ = run(BOOK)
    cut = "2025-05-01"
    up = np.array(
        [
            t.rate_increase_date != ""
            and t.rate_increase_date < cut
            and (t.default_date == "" or t.default_date > t.rate_increase_date)
            for t in truth
        ]
    )
    none = np.array(
        [
            t.rate_increase_date == "" and (t.default_date == "" or t.default_date >= cut)
            for t in truth
        ]
    )
    assert up.sum() > 100
    assert _rate(truth, up) > _rate(truth, none)
    assert _z(truth, up, none) > 2.0


def test_book_default_rate_is_plausible() -> None:
    """A 12-month book defaults at a few percent: neither nobody nor everybody."""
    _, truth, _ = run(BOOK)
    assert 0.02 < _rate(truth, np.ones(len(truth), bool)) < 0.15


def test_inflows_fall_before_default_but_not_only_for_defaulters() -> None:
    """Defaulters' account inflows drop in the two months before their first missed instalment
    (early warning is possible), while some performing firms show drops as deep over the same
    months (not trivially separable)."""
    recs, truth, _ = run(BOOK)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp()
    month = DAY * 30.44
    inflow: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(12))
    for _, ev in valid_events(recs):
        if isinstance(ev, TransactionEvent) and (ev.counterparty or "").startswith("P"):
            m = int((ev.event_time.timestamp() - start) // month)
            inflow[ev.customer_id][min(m, 11)] += ev.amount
    performing = [t.customer_id for t in truth if not t.default_date]

    def drop(cid: str, k: int) -> float:
        """Inflow in months k-2, k-1 relative to the first two months."""
        return float(inflow[cid][k - 2 : k].mean() / (inflow[cid][:2].mean() + 1.0))

    peers = {k: np.array([drop(c, k) for c in performing]) for k in range(4, 12)}
    relative, overlap = [], []
    for t in truth:
        if not t.default_date:
            continue
        first_miss = dt.datetime.fromisoformat(t.default_date).replace(tzinfo=dt.UTC).timestamp()
        k = int((first_miss - 90 * DAY - start) // month)  # month of the first missed instalment
        if k < 4:
            continue
        d = drop(t.customer_id, k)
        relative.append(d / np.median(peers[k]))
        overlap.append((peers[k] <= d).mean())
    assert len(relative) > 30
    print(
        f"defaulters' inflow vs peers: {np.median(relative):.2f}, overlap {np.median(overlap):.3f}"
    )
    assert np.median(relative) < 0.8
    assert np.median(overlap) > 0.02


def test_delivered_noise_rates_match_the_configuration() -> None:
    """Duplicates, late (out-of-order), too-late (> 7 days behind) and malformed shares are
    within tolerance of the configured rates."""
    recs, _, _ = run(NOISY)
    events = valid_events(recs)
    n_unique = len(events)
    n_valid = sum(1 for r in recs if b'"event_id":"sim' in r.value)
    # malformed messages all carry "bad" ids or none; valid ones "sim" ids
    malformed = len(recs) - n_valid
    dups = n_valid - n_unique
    seen_max = -1.0
    late = too_late = 0
    for r, _ in events:
        if r.event_time < seen_max:
            late += 1
            too_late += r.event_time < seen_max - 7 * DAY
        seen_max = max(seen_max, r.event_time)
    assert dups / n_unique == pytest.approx(NOISY.dup_rate, abs=0.005)
    assert late / n_unique == pytest.approx(NOISY.late_rate, abs=0.005)
    assert too_late / n_unique == pytest.approx(NOISY.late_rate * NOISY.too_late_share, abs=0.004)
    assert malformed / len(recs) == pytest.approx(NOISY.malformed_rate, abs=0.003)


def test_malformed_messages_cover_every_kind_and_never_contain_newlines() -> None:
    """Garbage, truncated JSON, wrong types and unknown kinds all occur; none breaks a line."""
    recs, _, _ = run(NOISY)
    bad = [r.value for r in recs if b'"event_id":"sim' not in r.value]
    assert all(b"\n" not in v for v in bad)
    reasons = set()
    for v in bad:
        with pytest.raises(RecordError) as exc:
            decode(v, INPUT_TYPES["transactions"])
        reasons.add(exc.value.reason)
    assert reasons == {"not_json", "schema"}
    assert any(b'"kind":"refund"' in v for v in bad)
    assert any(b'"amount":"' in v for v in bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"customers": 0},
        {"months": 0},
        {"start": dt.date(2025, 1, 15)},
        {"dup_rate": -0.1},
        {"malformed_rate": 0.9},
    ],
)
def test_bad_configuration_is_an_input_error(kwargs: dict[str, object]) -> None:
    """Out-of-range settings raise InputError (one-line CLI error, exit 2)."""
    with pytest.raises(InputError):
        SimConfig(**kwargs)  # type: ignore[arg-type]


def test_cli_writes_events_and_truth(tmp_path: object) -> None:
    """`riskmon simulate` writes a JSON-lines file and a truth CSV with one row per customer."""
    from pathlib import Path

    from click.testing import CliRunner

    from streams.cli.simulate import simulate

    d = Path(str(tmp_path))
    res = CliRunner().invoke(
        simulate,
        ["--customers", "50", "--months", "3", "--seed", "1", "--out", str(d / "e.jsonl"),
         "--truth", str(d / "t.csv")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = (d / "e.jsonl").read_bytes().splitlines()
    assert len(lines) > 50 * 3 * 4
    assert len((d / "t.csv").read_text().splitlines()) == 51
    bad = CliRunner().invoke(simulate, ["--start", "2025-13-01", "--out", "a", "--truth", "b"])
    assert isinstance(bad.exception, InputError)


def test_history_needs_a_full_outcome_window(tmp_path: object) -> None:
    """A book too short for warm-up + a 12-month target window is an input error."""
    from pathlib import Path

    from streams.evaluation.sim_history import write_history

    with pytest.raises(InputError):
        write_history(SimConfig(customers=10, months=12), Path(str(tmp_path)) / "h.csv")


def test_reported_dpd_adds_month_end_statuses_equal_to_the_derived_dpd(tmp_path: object) -> None:
    """``--reported-dpd``: every other message is the same as without it (the default output
    does not change), and each month-end status reports the book as it stands, which is what
    riskmon derives from the events at that moment when none arrives late: days past due,
    overdue amount, five-category floor."""
    from pathlib import Path

    from click.testing import CliRunner

    from schemas.codec import decode_input
    from schemas.events import DelinquencyStatus
    from streams.cli.simulate import simulate
    from streams.core.state import CustomerState, StateConfig

    base = SimConfig(customers=300, months=6, seed=4, malformed_rate=0.01)
    plain = list(Simulation(base).records())
    sim = Simulation(SimConfig(**{**_fields(base), "reported_dpd": True}))
    recs = list(sim.records())
    statuses = [r for r in recs if r.topic == "loans" and b'"delinquency_status"' in r.value]
    assert [r for r in recs if r not in statuses] == plain
    assert len(statuses) == sim.counts["statuses"] > 300 * 5
    on_time = {"dup_rate": 0.0, "late_rate": 0.0, "malformed_rate": 0.0, "reported_dpd": True}
    recs = list(Simulation(SimConfig(**{**_fields(base), **on_time})).records())
    cfg = StateConfig()
    states: dict[str, CustomerState] = {}
    late = 0
    for r in recs:  # the derived DPD, from the other events as delivered, at each status
        try:
            ev = decode_input(r.value, r.topic)
        except RecordError:
            continue
        s = states.setdefault(ev.customer_id, CustomerState.new(ev.customer_id))
        if isinstance(ev, DelinquencyStatus):
            assert ev.event_time.time() == dt.time(23, 59, 59)
            f = s.facts(ev.event_time.timestamp(), cfg)
            assert (ev.days_past_due, ev.overdue_amount or 0.0, ev.five_category) == (
                f.dpd,
                f.overdue_amount,
                f.five_category,
            )
            late += ev.days_past_due > 0
        else:
            s.apply(ev, cfg)
    assert late > 20  # some loans are reported past due
    d = Path(str(tmp_path))
    args = ["--customers", "20", "--months", "2", "--out", str(d / "e"), "--truth", str(d / "t")]
    res = CliRunner().invoke(simulate, [*args, "--reported-dpd"])
    assert res.exit_code == 0 and "lender delinquency statuses" in res.output, res.output
    assert b'"kind":"delinquency_status"' in (d / "e").read_bytes()


def _fields(cfg: SimConfig) -> dict[str, object]:
    return {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}


def test_lines_share_turns_firms_into_credit_lines_and_leaves_the_others_alone() -> None:
    """``--lines-share``: the chosen firms send a line's contract, draws, monthly statements
    and payments (every one decodes) and no instalment-loan event; every other firm's events
    are the same as without lines; each line's DPD replayed from its events (riskmon's reference
    state) reaches 90 on the ground truth's default day and not before."""
    from schemas.codec import decode_input
    from schemas.events import LineEvent
    from streams.core.state import CustomerState, StateConfig

    quiet = {"dup_rate": 0.0, "late_rate": 0.0, "malformed_rate": 0.0}
    base = SimConfig(customers=400, months=12, seed=9, **quiet)  # type: ignore[arg-type]
    plain = list(Simulation(base).records())
    sim = Simulation(SimConfig(**{**_fields(base), "lines_share": 0.3}))
    recs = list(sim.records())
    truth = {t.customer_id: t for t in sim.truth()}
    line_firms = {f"C{i:07d}" for i in np.flatnonzero(sim._lines.is_line).tolist()}  # type: ignore[union-attr]
    assert 80 < len(line_firms) == sim.counts["lines"] < 160
    assert [r for r in recs if r.key.decode() not in line_firms] == [  # type: ignore[union-attr]
        r
        for r in plain
        if r.key.decode() not in line_firms  # type: ignore[union-attr]
    ]
    cfg = StateConfig()
    states: dict[str, CustomerState] = {}
    kinds: dict[str, int] = defaultdict(int)
    first90: dict[str, str] = {}
    for r in recs:
        if r.key.decode() not in line_firms:  # type: ignore[union-attr]
            continue
        ev = decode_input(r.value, r.topic)
        kinds[ev.kind] += 1
        if isinstance(ev, RepaymentEvent | LineEvent):
            assert ev.loan_id.startswith("K")
        elif isinstance(ev, LoanEvent):
            assert ev.credit_limit is not None and ev.schedule is None
        s = states.setdefault(ev.customer_id, CustomerState.new(ev.customer_id))
        assert s.apply(ev, cfg).value == "applied"
    assert kinds["opened"] == len(line_firms) and kinds["statement"] == 12 * len(line_firms)
    assert kinds["draw"] > len(line_firms) and kinds["payment_received"] > 6 * len(line_firms)
    assert set(kinds) <= {"opened", "draw", "statement", "payment_received", "credit", "debit",
                          "bounced_debit"}  # fmt: skip
    end = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    for cid, s in states.items():  # walk each day: the first day-end at 90+ DPD
        for day in range(int(dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp()) // DAY,
                         int(end) // DAY):  # fmt: skip
            if s.facts(day * DAY + DAY - 1, cfg).dpd >= 90:
                first90[cid] = str(np.datetime64(day, "D"))
                break
    defaults = {c for c in line_firms if truth[c].default_date}
    assert len(defaults) >= 3
    assert {c: truth[c].default_date for c in defaults} == {c: first90.get(c) for c in defaults}
    assert not [c for c in line_firms - defaults if c in first90]
