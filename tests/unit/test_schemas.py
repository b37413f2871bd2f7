"""Records: encode/decode round trip, decode errors with their reasons, JSON Schema export."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import RecordError, decode, encode, encode_many
from schemas.events import (
    ARMS,
    GUARANTEE_METHODS,
    REPAYMENT_METHODS,
    Alert,
    DeadLetter,
    DelinquencyStatus,
    FirmProfile,
    GradeChange,
    Instalment,
    LineEvent,
    LoanEvent,
    ModelRecord,
    Reason,
    RepaymentEvent,
    TransactionEvent,
)
from schemas.jsonschema import RECORD_TYPES, record_schema, write_schemas

# --- strategies, built explicitly so every Annotated constraint holds -------------------------

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


def bounded_text(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(exclude_categories=["Cs"]), min_size=lo, max_size=hi)


ids = bounded_text(1, 128)
short = bounded_text(0, 64)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
utc_times = st.datetimes(
    min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(9998, 12, 30), timezones=offsets
)
dates = st.dates()


def money(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def opt(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | s


common = {
    "event_id": ids,
    "customer_id": ids,
    "event_time": utc_times,
    "source": short,
}
instalments = st.builds(Instalment, seq=st.integers(1, 1200), due_date=dates, amount=money(0, 1e12))
firms = st.builds(
    FirmProfile,
    industry=short,
    region=short,
    years_in_business=money(0, 150),
    shareholder_holding_years=money(0, 150),
)
terms = {
    "principal": money(0, 1e12),
    "annual_rate": money(0, 10),
    "term_months": st.integers(1, 600),
    "repayment_method": st.sampled_from(REPAYMENT_METHODS),
    "guarantee_method": st.sampled_from(GUARANTEE_METHODS),
    "schedule": st.lists(instalments, max_size=8, unique_by=lambda i: i.seq),
    "firm": firms,
}
loan_opened = st.builds(
    LoanEvent, kind=st.just("opened"), loan_id=ids, product=short, **common, **terms
)
loan_other = st.builds(
    LoanEvent,
    kind=st.sampled_from(["changed", "closed"]),
    loan_id=ids,
    product=short,
    **common,
    **{k: opt(v) for k, v in terms.items()},
)
repayments = st.one_of(
    st.builds(
        RepaymentEvent,
        kind=st.just("instalment_due"),
        loan_id=ids,
        amount=money(0, 1e12),
        instalment_seq=st.integers(1, 1200),
        due_date=dates,
        **common,
    ),
    st.builds(
        RepaymentEvent,
        kind=st.just("payment_received"),
        loan_id=ids,
        amount=money(0, 1e12),
        instalment_seq=opt(st.integers(1, 1200)),
        due_date=opt(dates),
        **common,
    ),
    st.builds(
        RepaymentEvent,
        kind=st.just("reversal"),
        loan_id=ids,
        amount=money(0, 1e12),
        reversed_event_id=ids,
        **common,
    ),
)
transactions = st.builds(
    TransactionEvent,
    kind=st.sampled_from(["credit", "debit", "bounced_debit"]),
    account_id=ids,
    amount=money(0, 1e12),
    balance_after=opt(money(-1e12, 1e12)),
    counterparty=opt(bounded_text(0, 128)),
    **common,
)
statuses = st.builds(
    DelinquencyStatus,
    kind=st.just("delinquency_status"),
    loan_id=ids,
    days_past_due=st.integers(0, 36_500),
    overdue_amount=opt(money(0.01, 1e12)),
    five_category=opt(
        st.sampled_from(["normal", "special_mention", "substandard", "doubtful", "loss"])
    ),
    **common,
)
line_opened = st.builds(
    LoanEvent,
    kind=st.just("opened"),
    loan_id=ids,
    product=short,
    credit_limit=money(0, 1e12),
    annual_rate=opt(money(0, 10)),
    guarantee_method=opt(st.sampled_from(GUARANTEE_METHODS)),
    firm=opt(firms),
    **common,
)


@st.composite
def line_events(draw: st.DrawFn) -> LineEvent:
    t = draw(utc_times)
    head = {
        "event_id": draw(ids),
        "customer_id": draw(ids),
        "event_time": t,
        "source": draw(short),
        "loan_id": draw(ids),
    }
    if draw(st.booleans()):
        return LineEvent(kind="draw", amount=draw(money(0, 1e12)), **head)
    balance = draw(money(0, 1e12))
    return LineEvent(
        kind="statement",
        balance=balance,
        minimum_due=draw(money(0, balance)),
        due_date=t.astimezone(dt.UTC).date() + dt.timedelta(days=draw(st.integers(0, 60))),
        **head,
    )


reasons = st.lists(
    st.builds(Reason, code=text, text=text, points_lost=st.integers(-1000, 1000)), max_size=4
)
grades = st.sampled_from("ABCDEFG")
scores = money(-1e6, 1e6)
probabilities = st.floats(0, 1)
amounts = money(0, 1e15)  # output amounts have no upper bound
alerts = st.builds(
    Alert,
    alert_id=ids,
    status=st.sampled_from(["opened", "escalated", "resolved", "expired"]),
    severity=st.sampled_from(["blue", "yellow", "orange", "red"]),
    signal=text,
    old_grade=opt(grades),
    new_grade=grades,
    old_score=opt(scores),
    new_score=scores,
    pd=probabilities,
    exposure=amounts,
    priority=amounts,
    reasons=reasons,
    delta_reasons=reasons,
    dpd=st.integers(0, 10_000),
    m_bucket=text,
    five_category=st.sampled_from(["normal", "special_mention", "substandard", "doubtful", "loss"]),
    treatment=text,
    contact_constraints=st.lists(text, max_size=3),
    scorecard_version=text,
    trigger_event_id=text,
    trigger_topic=text,
    trigger_partition=st.integers(0, 10_000),
    trigger_offset=st.integers(0, 2**62),
    emitted_at=utc_times,
    arm=st.sampled_from(ARMS),
    **common,
)
grade_changes = st.builds(
    GradeChange,
    old_grade=opt(grades),
    new_grade=grades,
    old_score=opt(scores),
    new_score=scores,
    pd=probabilities,
    exposure=amounts,
    priority=amounts,
    scorecard_version=text,
    trigger_event_id=text,
    arm=st.sampled_from(ARMS),
    **common,
)
dead_letters = st.builds(
    DeadLetter,
    reason=text,
    detail=text,
    topic=text,
    partition=st.integers(0, 10_000),
    offset=st.integers(0, 2**62),
    key=opt(st.binary(max_size=64)),
    original=st.binary(max_size=512),
    **common,
)
model_records = st.builds(
    ModelRecord,
    role=st.sampled_from(ARMS),
    share=money(0, 100),
    shadow=st.booleans(),
    card=st.dictionaries(text, st.integers() | text, max_size=4),
    published_at=utc_times,
)
RECORDS: dict[type[Any], st.SearchStrategy[Any]] = {
    LoanEvent: loan_opened | loan_other | line_opened,
    LineEvent: line_events(),
    RepaymentEvent: repayments,
    TransactionEvent: transactions,
    DelinquencyStatus: statuses,
    Alert: alerts,
    GradeChange: grade_changes,
    DeadLetter: dead_letters,
    ModelRecord: model_records,
}

# --- round trip ------------------------------------------------------------------------------


def test_every_record_type_has_a_strategy_and_a_schema() -> None:
    assert set(RECORDS) == set(RECORD_TYPES.values())


@pytest.mark.parametrize("type_", list(RECORDS), ids=lambda t: t.__name__)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(type_: type[Any], data: st.DataObject) -> None:
    record = data.draw(RECORDS[type_])
    raw = encode(record)
    assert decode(raw, type_) == record
    assert decode(raw.decode(), type_) == record  # str input too


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_encode_many_is_encode_per_record(data: st.DataObject) -> None:
    """One encoder call for many records gives each record's own bytes (texts with newlines,
    quotes and any other character included: JSON escapes them)."""
    records = data.draw(st.lists(st.one_of(*RECORDS.values()), max_size=8))
    change = data.draw(RECORDS[GradeChange])
    records.append(msgspec.structs.replace(change, customer_id='a\nb"\u2028c'))
    assert encode_many(records) == [encode(r) for r in records]
    assert encode_many([]) == []


# --- decode errors ---------------------------------------------------------------------------

VALID_TX = {
    "schema_version": 1,
    "event_id": "e1",
    "customer_id": "C1",
    "event_time": "2024-05-01T09:30:00Z",
    "source": "core",
    "kind": "credit",
    "account_id": "A1",
    "amount": 120.5,
}


def tx(**changes: Any) -> bytes:
    doc = {k: v for k, v in {**VALID_TX, **changes}.items() if v is not ...}
    return json.dumps(doc).encode()


def test_valid_example_decodes() -> None:
    ev = decode(tx(), TransactionEvent)
    assert ev.event_time == dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC)
    assert (ev.kind, ev.amount, ev.balance_after) == ("credit", 120.5, None)


@pytest.mark.parametrize(
    ("raw", "reason", "where"),
    [
        (b"\x00\xff\xfe garbage", "not_json", ""),
        (b"", "not_json", ""),
        (tx()[:-7], "not_json", ""),
        (b"[1, 2, 3]", "schema", "object"),
        (tx(amount="12"), "schema", "$.amount"),
        (tx(event_time=12345), "schema", "$.event_time"),
        (tx(customer_id=None), "schema", "$.customer_id"),
        (tx(customer_id=...), "schema", "customer_id"),
        (tx(kind=...), "schema", "kind"),
        (tx(customer_id=""), "schema", "$.customer_id"),
        (tx(customer_id="x" * 129), "schema", "$.customer_id"),
        (tx(amount=1e13), "schema", "$.amount"),
        (tx(amount=-1), "schema", "$.amount"),
        (tx(amount=10**40), "schema", "$.amount"),
        (tx(schema_version=2), "schema", "$.schema_version"),
        (tx(kind="teleport"), "schema", "$.kind"),
        (tx(event_time="2024-05-01T09:30:00"), "schema", "$.event_time"),
        (tx(event_time="yesterday"), "schema", "$.event_time"),
    ],
    ids=[
        "garbage",
        "empty",
        "truncated",
        "array",
        "amount-str",
        "time-int",
        "id-null",
        "id-missing",
        "kind-missing",
        "id-empty",
        "id-too-long",
        "amount-huge",
        "amount-negative",
        "amount-bigint",
        "newer-schema",
        "unknown-kind",
        "naive-datetime",
        "bad-datetime",
    ],
)
def test_decode_errors(raw: bytes, reason: str, where: str) -> None:
    with pytest.raises(RecordError) as info:
        decode(raw, TransactionEvent)
    assert info.value.reason == reason
    assert where in info.value.detail
    assert str(info.value).startswith(f"{reason}: ")


def test_per_kind_rules_are_schema_errors() -> None:
    base = {"event_id": "e", "customer_id": "c", "event_time": "2024-01-01T00:00:00Z"}
    opened = {**base, "kind": "opened", "loan_id": "L1", "principal": 1000.0}
    with pytest.raises(RecordError) as info:
        decode(json.dumps(opened), LoanEvent)
    assert info.value.reason == "schema" and "annual_rate" in info.value.detail
    due = {**base, "kind": "instalment_due", "loan_id": "L1", "amount": 10.0}
    with pytest.raises(RecordError) as info:
        decode(json.dumps(due), RepaymentEvent)
    assert info.value.reason == "schema" and "due_date" in info.value.detail


@pytest.mark.parametrize(
    ("doc", "type_", "said"),
    [
        ({"kind": "opened", "credit_limit": 1e4, "schedule": []}, LoanEvent, "schedule"),
        ({"kind": "opened", "credit_limit": -1.0}, LoanEvent, "credit_limit"),
        ({"kind": "draw"}, LineEvent, "amount"),
        ({"kind": "draw", "amount": -5.0}, LineEvent, "amount"),
        ({"kind": "statement", "balance": 10.0, "minimum_due": 1.0}, LineEvent, "due_date"),
        (
            {"kind": "statement", "balance": 10.0, "minimum_due": 11.0, "due_date": "2024-02-01"},
            LineEvent,
            "minimum_due",
        ),
        (
            {"kind": "statement", "balance": 10.0, "minimum_due": 1.0, "due_date": "2023-12-31"},
            LineEvent,
            "before the statement date",
        ),
    ],
    ids=["line-schedule", "limit-negative", "draw-no-amount", "draw-negative", "no-due-date",
         "minimum-above-balance", "due-before-statement"],
)  # fmt: skip
def test_line_rules_are_schema_errors(doc: dict[str, Any], type_: type[Any], said: str) -> None:
    """A credit line's contract, draws and statements: invalid ones are schema dead letters
    naming what is wrong, never a crash."""
    base = {"event_id": "e", "customer_id": "c", "event_time": "2024-01-01T00:00:00Z"}
    with pytest.raises(RecordError) as info:
        decode(json.dumps({**base, "loan_id": "K1", **doc}), type_)
    assert info.value.reason == "schema" and said in info.value.detail


# --- JSON Schema ------------------------------------------------------------------------------


def _validator(type_: type[Any]) -> jsonschema.Draft202012Validator:
    schema = record_schema(type_)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_write_schemas_one_valid_file_per_record(tmp_path: Path) -> None:
    paths = write_schemas(tmp_path / "out")
    assert sorted(p.name for p in paths) == sorted(f"{s}.schema.json" for s in RECORD_TYPES)
    for path in paths:
        doc = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(doc)
        assert doc["title"] == RECORD_TYPES[path.name.removesuffix(".schema.json")].__name__
        # every event; the model record (a scorecard, keyed by role) is about no customer
        required = {"card", "role", "published_at"} if doc["title"] == "ModelRecord" else None
        assert (required or {"event_id", "customer_id", "event_time"}) <= set(
            doc["$defs"][doc["title"]]["required"]
        )


def test_schema_validates_a_real_opened_loan() -> None:
    loan = {
        "schema_version": 1,
        "event_id": "loan-0001-opened",
        "customer_id": "C000123",
        "event_time": "2024-01-15T08:00:00+01:00",
        "source": "core-banking",
        "kind": "opened",
        "loan_id": "L-77",
        "product": "fast_loan",
        "principal": 250000.0,
        "annual_rate": 0.072,
        "term_months": 2,
        "repayment_method": "equal_instalment",
        "guarantee_method": "guarantee",
        "schedule": [
            {"seq": 1, "due_date": "2024-02-15", "amount": 126000.0},
            {"seq": 2, "due_date": "2024-03-15", "amount": 126000.0},
        ],
        "firm": {
            "industry": "construction",
            "region": "north",
            "years_in_business": 6.5,
            "shareholder_holding_years": 3.0,
        },
    }
    v = _validator(LoanEvent)
    assert not list(v.iter_errors(loan))
    assert decode(json.dumps(loan), LoanEvent).firm is not None
    bad = {**loan, "repayment_method": "whenever"}
    assert list(v.iter_errors(bad))


@pytest.mark.parametrize("type_", list(RECORDS), ids=lambda t: t.__name__)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_schema_accepts_every_encoded_record(type_: type[Any], data: st.DataObject) -> None:
    record = data.draw(RECORDS[type_])
    errors = list(_validator(type_).iter_errors(json.loads(encode(record))))
    assert not errors, errors[0].message


@pytest.mark.parametrize(
    ("type_", "strategy"),
    [
        (LoanEvent, loan_opened),
        (LoanEvent, line_opened),
        (RepaymentEvent, repayments),
        (DelinquencyStatus, statuses),
        (LineEvent, line_events()),
    ],
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_schema_kind_rules_match_decoder(
    type_: type[Any], strategy: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    """Drop or null optional fields at random: schema and decoder accept or refuse together."""
    doc = json.loads(encode(data.draw(strategy)))
    optional = [f.name for f in msgspec.structs.fields(type_) if f.default is None]
    for name in data.draw(st.lists(st.sampled_from(optional), unique=True)):
        if data.draw(st.booleans()):
            doc.pop(name, None)
        else:
            doc[name] = None
    if type_ is DelinquencyStatus and data.draw(st.booleans()):  # no amount while past due
        doc["overdue_amount"] = 0
    schema_ok = not list(_validator(type_).iter_errors(doc))
    try:
        decode(json.dumps(doc), type_)
        decoder_ok = True
    except RecordError:
        decoder_ok = False
    assert schema_ok == decoder_ok, doc


def test_every_field_of_every_exported_schema_is_described() -> None:
    """The teams producing events read the JSON Schemas: no field without a description."""
    for stem, type_ in RECORD_TYPES.items():
        doc = record_schema(type_)
        for struct, body in doc["$defs"].items():
            for field, prop in body.get("properties", {}).items():
                assert prop.get("description"), f"{stem}: {struct}.{field}"


def test_the_firm_profile_is_optional_on_an_opened_loan() -> None:
    """A consumer or card book has no firm profile: an opened loan without one decodes and
    validates; the profile features are then missing."""
    import numpy as np

    from streams.core.features import FEATURE_NAMES, features_into
    from streams.core.state import CustomerState, StateConfig

    loan = {
        "event_id": "o1", "customer_id": "K1", "event_time": "2025-01-01T00:00:00Z",
        "kind": "opened", "loan_id": "L1", "principal": 1000, "annual_rate": 0.1,
        "term_months": 2, "repayment_method": "equal_instalment", "guarantee_method": "credit",
        "schedule": [{"seq": 1, "due_date": "2025-02-01", "amount": 500}],
    }  # fmt: skip
    ev = decode(json.dumps(loan).encode(), LoanEvent)
    assert ev.firm is None
    jsonschema.validate(loan, record_schema(LoanEvent))
    state = CustomerState.new("K1")
    state.apply(ev, StateConfig())
    row = np.empty(len(FEATURE_NAMES))
    features_into(state, ev.event_time.timestamp(), row, StateConfig())
    years = row[FEATURE_NAMES.index("years_in_business")]
    assert np.isnan(years)


def test_the_events_contract_lists_every_input_field() -> None:
    """docs/events.md, the contract for producing teams, names every field of every input
    record with its description (regenerate its tables when a field changes)."""
    from schemas.fields import DESCRIPTIONS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    structs = ("LoanEvent", "RepaymentEvent", "TransactionEvent", "DelinquencyStatus", "LineEvent")
    for struct in (*structs, "Instalment", "FirmProfile"):
        section = doc[doc.index(f"#### {struct}\n") :]
        for field, text in DESCRIPTIONS[struct].items():
            assert f"| `{field}` |" in section, f"{struct}.{field}"
            assert text in section, f"{struct}.{field}: description differs"
