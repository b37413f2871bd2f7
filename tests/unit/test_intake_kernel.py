"""The intake kernel reads exactly what msgspec + ``EventColumns.add`` would queue, or declines.

Messages are generated as JSON text with the variations producers make (field order, spacing,
optional fields absent or null, offsets, fraction digits, integer amounts, unknown fields,
repeated keys, escapes, non-ASCII) and then mutated byte-wise. For every message the kernel
accepts, msgspec must accept it too and the queued columns must be identical; a canonical
message (as msgspec encodes it) must be accepted, so the test cannot pass by declining all.
"""

from __future__ import annotations

import datetime as dt
import json

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import encode
from schemas.events import INPUT_TYPES, RepaymentEvent, TransactionEvent
from streams.core import _intake_kernel as IK
from streams.core import _state_events as SE

PARITY = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
TYPE_OF = {"repayments": IK.REPAYMENT, "transactions": IK.TRANSACTION}
DECODERS = {t: msgspec.json.Decoder(INPUT_TYPES[t]) for t in TYPE_OF}


def mostly(valid: st.SearchStrategy[str], other: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``valid`` 9 times in 10: a message needs every field valid to be read at all."""
    return st.integers(0, 9).flatmap(lambda k: other if k == 0 else valid)


plain = st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"\\')
printable = st.characters(min_codepoint=32, max_codepoint=126)
ids = mostly(
    st.text(plain, min_size=1, max_size=128).map(json.dumps),
    st.sampled_from(['""', '"' + "x" * 129 + '"', "7", "null"])
    | st.text(printable, max_size=8).map(json.dumps)  # quotes and backslashes: escapes
    | st.text(max_size=8).map(json.dumps)  # non-ASCII, control characters
    | st.text(max_size=8).map(lambda x: json.dumps(x, ensure_ascii=False)),
)
years = st.integers(1900, 2199)
offsets = mostly(
    st.sampled_from(["Z", "+00:00", "+08:00", "-05:30", "+23:59"]),
    st.sampled_from(["z", "-00:00", "+24:00", "+08:60", "+0800", ""]),
)


@st.composite
def event_time(draw: st.DrawFn) -> str:
    t = draw(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2199, 12, 31)))
    digits = draw(mostly(st.integers(0, 6), st.integers(7, 9)))
    frac = f".{t.microsecond:06d}000"[: digits + 1] if digits else ""
    sep = draw(mostly(st.just("T"), st.sampled_from(["t", " "])))
    date = draw(mostly(st.just(f"{t:%Y-%m-%d}"), st.sampled_from(["1899-12-31", "2200-01-01"])))
    return json.dumps(f"{date}{sep}{t:%H:%M:%S}{frac}{draw(offsets)}")


def money(lo: float, hi: float) -> st.SearchStrategy[str]:
    """Amounts as producers write them (shortest repr, fixed decimals, integers), and not."""
    return mostly(
        st.floats(lo, hi).map(repr)  # exponents at the ends: msgspec's
        | st.decimals(lo, hi, places=2).map(str)
        | st.integers(int(lo), int(hi)).map(str),
        st.floats(allow_nan=False).map(repr)
        | st.sampled_from(["-0", "-0.0", "1.", ".5", "01", "1e3", "1.50", "true", '"5"', "1e400"])
        | st.sampled_from([repr(lo - 0.01), repr(hi + 0.01), "12345678901234.56"]),
    )


def field_values(topic: str) -> dict[str, st.SearchStrategy[str]]:
    """Per field, raw JSON text for its value (valid mostly, invalid sometimes)."""
    kinds = (
        ["instalment_due", "payment_received", "reversal"]
        if topic == "repayments"
        else ["credit", "debit", "bounced_debit"]
    )
    out: dict[str, st.SearchStrategy[str]] = {
        "schema_version": mostly(st.just("1"), st.sampled_from(["2", "0", "1.0", "null", "01"])),
        "event_id": ids,
        "customer_id": ids,
        "event_time": mostly(event_time(), st.sampled_from(['"2026-02-30T00:00:00Z"', "null"])),
        "source": mostly(
            st.text(plain, max_size=64).map(json.dumps), st.just('"' + "s" * 65 + '"')
        ),
        "kind": mostly(st.sampled_from(kinds), st.sampled_from(["refund", "Credit", ""])).map(
            json.dumps
        ),
        "amount": money(0, 1e12),
    }
    dates = st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)).map(lambda d: f'"{d:%Y-%m-%d}"')
    if topic == "repayments":
        out["loan_id"] = ids
        out["instalment_seq"] = mostly(
            st.integers(1, 1200).map(str) | st.just("null"),
            st.sampled_from(["1201", "0", "-1", "3.0", '"3"']),
        )
        out["due_date"] = mostly(
            dates | st.just("null"), st.sampled_from(['"2026-02-29"', '"2026-2-1"', '"0000-01-01"'])
        )
        out["reversed_event_id"] = mostly(ids, st.just("null"))
    else:
        out["account_id"] = ids
        out["balance_after"] = mostly(money(-1e12, 1e12), st.just("null"))
        out["counterparty"] = mostly(
            st.text(plain, max_size=128).map(json.dumps) | st.just("null"),
            st.just('"' + "c" * 129 + '"'),
        )
    return out


REQUIRED = {"event_id", "customer_id", "event_time", "kind", "amount", "loan_id", "account_id"}


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    topic = draw(st.sampled_from(sorted(TYPE_OF)))
    fields = field_values(topic)
    names = [n for n in fields if n in REQUIRED or draw(st.booleans())]
    if draw(st.integers(0, 19)) == 0:
        names.remove(draw(st.sampled_from(names)))  # a required one, maybe
    names = draw(st.permutations(names))
    pairs = [(n, draw(fields[n])) for n in names]
    if draw(st.integers(0, 19)) == 0:
        pairs.append((draw(st.sampled_from([*fields, "extra"])), '"x"'))  # repeated / unknown
    ws = draw(mostly(st.just(""), st.sampled_from([" ", "\n", "\t ", "\r\n"])))
    body = ("," + ws).join(f'{ws}"{k}"{ws}:{ws}{v}' for k, v in pairs)
    return topic, f"{ws}{{{body}{ws}}}{ws}".encode()


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    topic, raw = draw(messages())
    b = bytearray(raw)
    for _ in range(draw(st.integers(0, 3))):
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        op = draw(st.sampled_from(["flip", "cut", "dup"]))
        if op == "flip":
            b[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del b[i:]
        else:
            b[i:i] = b[i : i + 1]
    return topic, bytes(b)


def assert_same(batch: list[tuple[str, bytes]]) -> int:
    """Queue ``batch`` as the pipeline does (kernel rows where accepted, else msgspec) and
    all through msgspec; the queues must be identical. The number the kernel accepted."""
    scan = IK.scan([v for _, v in batch], np.array([TYPE_OF[t] for t, _ in batch], np.int64))
    ref, mixed = SE.EventColumns(), SE.EventColumns(scan)
    for j, (topic, value) in enumerate(batch):
        try:
            event = DECODERS[topic].decode(value)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            assert not scan.ok[j], f"accepted what msgspec rejects ({exc}): {value!r}"
            continue
        t = event.event_time.timestamp()
        ref.add(j, event, t)
        if scan.ok[j]:
            c0, c1, e0, e1 = scan.spans[j].tolist()
            assert value[c0:c1].decode() == event.customer_id
            assert value[e0:e1].decode() == event.event_id
            assert scan.time[j] == t
            mixed.take_many(np.array([j]), np.array([j]), np.array([mixed.n]))
        else:
            mixed.add(j, event, t)
    if ref.n:
        for a, b in zip(ref.arrays(), mixed.arrays(), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), (a, b, batch)
    return int(scan.ok.sum())


@PARITY
@given(st.lists(messages(), min_size=1, max_size=8))
def test_accepted_messages_queue_exactly_what_msgspec_does(batch: list[tuple[str, bytes]]) -> None:
    assert_same(batch)


@PARITY
@given(st.lists(mutated(), min_size=1, max_size=8))
def test_mutated_messages_are_declined_or_read_exactly(batch: list[tuple[str, bytes]]) -> None:
    assert_same(batch)


def canonical() -> list[tuple[str, bytes]]:
    t = dt.datetime(2026, 3, 1, 9, 30, 15, 250000, tzinfo=dt.UTC)
    base = {"event_id": "e-1", "customer_id": "C0001", "event_time": t, "source": "core"}
    events = [
        RepaymentEvent(
            **base,
            kind="instalment_due",
            loan_id="L1",
            amount=1200.5,
            instalment_seq=3,
            due_date=dt.date(2026, 3, 15),
        ),
        RepaymentEvent(**base, kind="payment_received", loan_id="L1", amount=0.07),
        RepaymentEvent(**base, kind="reversal", loan_id="L1", amount=5, reversed_event_id="e-0"),
        TransactionEvent(
            **base,
            kind="credit",
            account_id="A1",
            amount=57177.45,
            balance_after=-157402.53,
            counterparty="P1",
        ),
        TransactionEvent(**base, kind="debit", account_id="A1", amount=1e12),
        TransactionEvent(**base, kind="bounced_debit", account_id="A1", amount=12.0),
    ]
    return [
        ("repayments" if isinstance(e, RepaymentEvent) else "transactions", encode(e))
        for e in events
    ]


def test_canonical_messages_are_all_read_by_the_kernel() -> None:
    batch = canonical()
    assert assert_same(batch) == len(batch)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"source":"core"', b'"source":"c\\u006fre"'),  # an escape
        (b'"amount":0.07', b'"amount":7e-2'),  # an exponent
        (b'"amount":0.07', b'"amount":0.0700000000000001'),  # 16 digits
        (b'15.250000Z"', b'15.25+00:00","extra":{"a":[1]}'),  # an unknown field
        (b"2026-03-01T09:30:15.250000Z", b"1899-12-31T23:59:59Z"),  # year < 1900
    ],
)
def test_declined_forms_go_to_msgspec_with_the_same_result(old: bytes, new: bytes) -> None:
    """Forms the kernel leaves to msgspec (still valid records): declined, same queue."""
    topic, value = canonical()[1]
    changed = value.replace(old, new)
    assert changed != value
    DECODERS[topic].decode(changed)  # valid
    assert assert_same([(topic, changed)]) == 0


def test_nothing_to_scan() -> None:
    scan = IK.scan([], np.zeros(0, np.int64))
    assert scan.ok.shape == (0,) and scan.ints.shape == (0, SE.R_INTS)
    loan = b'{"kind":"opened"}'
    assert not IK.scan([loan], np.zeros(1, np.int64)).ok[0]  # type 0: never read here


def with_customer(value: bytes, cid: str) -> bytes:
    return value.replace(b'"customer_id":"C0001"', b'"customer_id":"' + cid.encode() + b'"')


@PARITY
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),  # which canonical message
            st.sampled_from(["C0001", "C0002", "C01", "C0001 ", "X"]),
            st.sampled_from(["none", "same", "other", "empty"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_keys_are_checked_and_customers_grouped(batch: list[tuple[int, str, str]]) -> None:
    """A message without a key, or whose key differs from its customer id, is declined
    (msgspec's path dead-letters it); ``first`` is the first accepted message of the same
    customer."""
    msgs = canonical()
    values = [with_customer(msgs[m][1], cid) for m, cid, _ in batch]
    key_of = {"none": None, "same": "", "other": "C0002x", "empty": b""}
    keys: list[bytes | None] = []
    for (_, cid, how), _v in zip(batch, values, strict=True):
        k = key_of[how]
        keys.append(cid.encode() if k == "" else k.encode() if isinstance(k, str) else k)
    types = np.array([TYPE_OF[msgs[m][0]] for m, _, _ in batch], np.int64)
    plain = IK.scan(values, types)  # no keys: every canonical message is read
    assert plain.ok.all()
    scan = IK.scan(values, types, keys)
    seen: dict[str, int] = {}
    for j, ((_, cid, _how), key) in enumerate(zip(batch, keys, strict=True)):
        assert scan.ok[j] == (key == cid.encode()), (j, key, cid)
        if scan.ok[j]:
            assert scan.first[j] == seen.setdefault(cid, j)
        else:
            assert scan.first[j] == -1
    # without keys, the same grouping over all messages
    firsts: dict[str, int] = {}
    assert plain.first.tolist() == [
        firsts.setdefault(cid, j) for j, (_, cid, _) in enumerate(batch)
    ]


def redeliveries_reference(
    group: list[int],
    role: list[int],
    partition: list[int],
    offset: list[int],
    offsets: list[list[int]],
) -> tuple[list[bool], list[int]]:
    """The per-record rule as ``Entry.offsets`` states it, in plain Python."""
    redelivered, touched = [], [-1] * len(offsets)
    for i, (g, r, p, o) in enumerate(zip(group, role, partition, offset, strict=True)):
        if g < 0:
            redelivered.append(False)
            continue
        mine = offsets[g]
        if mine[0] != p:  # first record, or the topics were repartitioned
            mine[:] = [p, -1, -1, -1]
        if o <= mine[r]:
            redelivered.append(True)
            continue
        mine[r] = o
        redelivered.append(False)
        if touched[g] < 0:
            touched[g] = i
    return redelivered, touched


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda groups: st.tuples(
            st.lists(
                st.tuples(
                    st.integers(-1, groups - 1),
                    st.integers(1, 3),
                    st.integers(0, 1),
                    st.integers(0, 6),
                ),
                max_size=30,
            ),
            st.lists(
                st.lists(st.integers(-1, 6), min_size=4, max_size=4),
                min_size=groups,
                max_size=groups,
            ),
        )
    )
)
def test_redeliveries_match_the_per_record_rule(
    case: tuple[list[tuple[int, int, int, int]], list[list[int]]],
) -> None:
    records, offsets = case
    cols = [list(c) for c in zip(*records, strict=True)] if records else [[], [], [], []]
    ref_offsets = [list(o) for o in offsets]
    ref, ref_touched = redeliveries_reference(*cols, ref_offsets)
    arr = np.array(offsets, np.int64).reshape(-1, 4)
    redelivered = np.zeros(len(records), np.bool_)
    touched = np.full(len(offsets), -1, np.int64)
    IK.redeliveries(*(np.array(c, np.int64) for c in cols), arr, redelivered, touched)
    assert redelivered.tolist() == ref
    assert touched.tolist() == ref_touched
    assert arr.tolist() == ref_offsets
