"""The intake's fast path: repayment and transaction messages scanned in one compiled call.

Decoding a message with msgspec, reading its event time and queueing it for the state kernel
(``EventColumns.add``) in Python was the largest share of the worker's intake. :func:`scan` reads a
whole batch's repayment and transaction messages straight from their bytes into the rows
``EventColumns.add`` would queue (its raw int and float tuples and the event id's digest), plus
where each message's customer and event ids are.

It accepts only what it can read exactly as msgspec does, and declines the rest to msgspec:
a flat JSON object of the type's own fields, each at most once; strings of printable ASCII
without escapes; numbers without an exponent and with at most 15 digits (so ``m / 10**k`` is
the correctly rounded value, as msgspec's); RFC 3339 times with ``Z`` or an offset and at most
6 fraction digits, years 1900..2199 (microseconds exact in a float). Declined messages are
decoded by msgspec as before, which gives their dead-letter reason if they are bad: the fast
path never decides that a message is invalid. Loan events (nested schedules, firm) always go
to msgspec. ``tests/unit/test_intake_kernel.py`` checks, on generated and mutated messages,
that whatever is accepted equals msgspec's decode queued by ``EventColumns.add``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, cast

import numpy as np
from numba import njit

from schemas.events import SCHEMA_VERSION
from streams.core._hash_kernel import SCRATCH_WORDS, blake2b8, crc32
from streams.core._json_lex import (
    _FAIL,
    _NO_DAY,
    _date,
    _null,
    _number,
    _string,
    _time,
    _word,
    _ws,
)
from streams.core._state_events import R_FLOATS, R_INTS
from streams.core._state_slots import (
    K_BOUNCED,
    K_CREDIT,
    K_DEBIT,
    K_DUE,
    K_PAY,
    K_REVERSAL,
    NONE,
)

__all__ = ["REPAYMENT", "TRANSACTION", "Scan", "redeliveries", "scan", "warm_up"]

# message types (per message; anything else is declined)
REPAYMENT, TRANSACTION = 1, 2

# field codes: a key's index in _KEYS
(
    _F_SCHEMA,
    _F_EVENT_ID,
    _F_CUSTOMER_ID,
    _F_EVENT_TIME,
    _F_SOURCE,
    _F_KIND,
    _F_LOAN_ID,
    _F_AMOUNT,
    _F_SEQ,
    _F_DUE_DATE,
    _F_REVERSED,
    _F_ACCOUNT_ID,
    _F_BALANCE,
    _F_COUNTERPARTY,
) = range(14)
_KEY_NAMES = (
    "schema_version",
    "event_id",
    "customer_id",
    "event_time",
    "source",
    "kind",
    "loan_id",
    "amount",
    "instalment_seq",
    "due_date",
    "reversed_event_id",
    "account_id",
    "balance_after",
    "counterparty",
)
# per message type, the fields it has (the first six are every record's)
_COMMON = (_F_SCHEMA, _F_EVENT_ID, _F_CUSTOMER_ID, _F_EVENT_TIME, _F_SOURCE, _F_KIND)
_OWN = {
    REPAYMENT: (*_COMMON, _F_LOAN_ID, _F_AMOUNT, _F_SEQ, _F_DUE_DATE, _F_REVERSED),
    TRANSACTION: (*_COMMON, _F_ACCOUNT_ID, _F_AMOUNT, _F_BALANCE, _F_COUNTERPARTY),
}
# kind literals per message type, with their state-kernel kind codes
_KINDS = {
    REPAYMENT: (("instalment_due", K_DUE), ("payment_received", K_PAY), ("reversal", K_REVERSAL)),
    TRANSACTION: (("credit", K_CREDIT), ("debit", K_DEBIT), ("bounced_debit", K_BOUNCED)),
}


def _table(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Words as a padded uint8 matrix and their lengths (numba freezes globals as constants)."""
    width = max(len(w) for w in words)
    tab = np.zeros((len(words), width), np.uint8)
    for i, w in enumerate(words):
        tab[i, : len(w)] = np.frombuffer(w.encode(), np.uint8)
    return tab, np.array([len(w) for w in words], np.int64)


_KEYS, _KEY_LEN = _table(list(_KEY_NAMES))
_ALLOWED = np.zeros((3, len(_KEY_NAMES)), np.bool_)  # [message type, field]
for _t, _fields in _OWN.items():
    _ALLOWED[_t, list(_fields)] = True
# kind words: rows 3*(type-1) .. +2, their codes beside
_KIND_WORDS, _KIND_LEN = _table([w for t in (REPAYMENT, TRANSACTION) for w, _ in _KINDS[t]])
_NUMERIC = sum(1 << f for f in (_F_AMOUNT, _F_BALANCE, _F_SCHEMA, _F_SEQ))  # numbers, not strings
# per message type, the fields it must have (bits): msgspec's required ones
_REQUIRED = np.zeros(3, np.int64)
_REQUIRED[REPAYMENT] = sum(1 << f for f in (*_COMMON[1:4], _F_KIND, _F_LOAN_ID, _F_AMOUNT))
_REQUIRED[TRANSACTION] = sum(1 << f for f in (*_COMMON[1:4], _F_KIND, _F_ACCOUNT_ID, _F_AMOUNT))
_OPTIONAL = np.zeros(len(_KEY_NAMES), np.bool_)  # fields that take null
_OPTIONAL[[_F_SEQ, _F_DUE_DATE, _F_REVERSED, _F_BALANCE, _F_COUNTERPARTY]] = True
_KIND_CODE = np.array([k for t in (REPAYMENT, TRANSACTION) for _, k in _KINDS[t]], np.int64)
_MONEY_MAX = 1e12
_ID_MAX = 128


class Scan(NamedTuple):
    """:func:`scan`'s rows, one per message. ``ok``: read here (else: decode with msgspec);
    ``spans``: (customer id start, end, event id start, end) within the message."""

    ok: np.ndarray  # bool
    spans: np.ndarray  # int64 [n, 4]
    time: np.ndarray  # float64: event time, epoch seconds
    ints: np.ndarray  # int64 [n, R_INTS]: EventColumns' raw ints (slot 0)
    floats: np.ndarray  # float64 [n, R_FLOATS]
    ids: np.ndarray  # int64: the event id's blake2b digest (little-endian)
    first: np.ndarray  # int64: the first accepted message with this one's customer id (-1: not ok)


def scan(
    values: Sequence[bytes], types: np.ndarray, keys: Sequence[bytes | None] | None = None
) -> Scan:
    """Read the messages ``values`` (``types[i]``: REPAYMENT, TRANSACTION or 0: decline).

    Given their Kafka ``keys``, a message without a key (None) or whose key differs from its
    customer id is declined too (msgspec's path dead-letters it). Accepted messages are grouped by
    customer id (``first``), so the caller looks each customer up once per batch, not once per
    message.
    """
    n = len(values)
    ends = np.cumsum(np.fromiter(map(len, values), np.int64, n))
    buf = np.frombuffer(b"".join(values), np.uint8)
    res = Scan(
        np.zeros(n, np.bool_),
        np.zeros((n, 4), np.int64),
        np.zeros(n, np.float64),
        np.zeros((n, R_INTS), np.int64),
        np.zeros((n, R_FLOATS), np.float64),
        np.zeros(n, np.int64),
        np.full(n, -1, np.int64),
    )
    if n:
        _scan(buf, ends, types.astype(np.int64), *res[:6])
        if keys is not None:
            given = cast("Sequence[bytes]", keys)
            if None in keys:  # unkeyed messages (rare): declined
                absent = np.fromiter(map(_is_none, keys), np.bool_, n)
                given = list(map(_or_empty, keys))
            else:
                absent = np.zeros(n, np.bool_)
            kends = np.cumsum(np.fromiter(map(len, given), np.int64, n))
            kbuf = np.frombuffer(b"".join(given), np.uint8)
            _check_keys(buf, ends, kbuf, kends, absent, res.spans, res.ok)
        _group(buf, ends, res.spans, res.ok, res.first)
    return res


def _or_empty(key: bytes | None) -> bytes:
    return key or b""


def _is_none(key: bytes | None) -> bool:
    return key is None


@njit(nogil=True, cache=True)
def _same(buf: np.ndarray, a: int, b: int, other: np.ndarray, c: int, d: int) -> bool:
    """``buf[a:b] == other[c:d]``."""
    if b - a != d - c:
        return False
    for k in range(b - a):  # noqa: SIM110 - a generator does not compile in numba
        if buf[a + k] != other[c + k]:
            return False
    return True


@njit(nogil=True, cache=True)
def _check_keys(
    buf: np.ndarray,
    ends: np.ndarray,
    kbuf: np.ndarray,
    kends: np.ndarray,
    absent: np.ndarray,
    spans: np.ndarray,
    ok: np.ndarray,
) -> None:
    """Decline accepted messages without a key or whose key is not their customer id (the
    msgspec path dead-letters them)."""
    for i in range(len(ends)):
        if not ok[i]:
            continue
        if absent[i]:
            ok[i] = False
            continue
        a = ends[i - 1] if i else 0
        k0 = kends[i - 1] if i else 0
        if not _same(buf, a + spans[i, 0], a + spans[i, 1], kbuf, k0, kends[i]):
            ok[i] = False


@njit(nogil=True, cache=True)
def _group(
    buf: np.ndarray, ends: np.ndarray, spans: np.ndarray, ok: np.ndarray, first: np.ndarray
) -> None:
    """``first[i]``: the first accepted message with message i's customer id (FNV-1a hashes
    sorted stably; a hash shared by two different ids, never seen, declines the later one)."""
    n = len(ends)
    h = np.zeros(n, np.uint64)
    for i in range(n):
        if ok[i]:
            a = ends[i - 1] if i else 0
            x = np.uint64(14695981039346656037)
            for p in range(a + spans[i, 0], a + spans[i, 1]):
                x = (x ^ np.uint64(buf[p])) * np.uint64(1099511628211)
            h[i] = x
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(h[idx], kind="mergesort")]
    j = 0
    while j < len(order):
        head = order[j]
        first[head] = head
        a = ends[head - 1] if head else 0
        k = j + 1
        while k < len(order) and h[order[k]] == h[head]:
            r = order[k]
            b = ends[r - 1] if r else 0
            c0, c1 = a + spans[head, 0], a + spans[head, 1]
            if _same(buf, c0, c1, buf, b + spans[r, 0], b + spans[r, 1]):
                first[r] = head
            else:
                ok[r] = False
            k += 1
        j = k


@njit(nogil=True, cache=True)
def redeliveries(
    group: np.ndarray,
    role: np.ndarray,
    partition: np.ndarray,
    offset: np.ndarray,
    offsets: np.ndarray,
    redelivered: np.ndarray,
    touched: np.ndarray,
) -> None:
    """A batch's redeliveries, in arrival order: message ``i`` (its customer's row
    ``group[i]`` of ``offsets``, -1: none; ``role[i]`` 1..3 = loans/repayments/transactions)
    is a redelivery if its offset is at or below the last one its customer handled on that
    topic; else it becomes that last one. A customer's offsets restart when its partition
    changes. ``offsets`` rows are ``pipeline.Entry.offsets`` and are updated in place;
    ``touched[g]``: the first message that is not a redelivery (-1: none)."""
    for i in range(len(group)):
        g = group[i]
        if g < 0:
            continue
        o = offsets[g]
        if o[0] != partition[i]:
            o[0] = partition[i]
            o[1] = o[2] = o[3] = -1
        s = role[i]
        if offset[i] <= o[s]:
            redelivered[i] = True
            continue
        o[s] = offset[i]
        if touched[g] < 0:
            touched[g] = i


def warm_up() -> None:
    """Load (or compile: seconds) the kernel now rather than in the first batch."""
    scan([b"{}"], np.array([REPAYMENT], np.int64), [None])
    one = np.zeros(1, np.int64)
    redeliveries(one, one + 1, one, one, np.full((1, 4), -1), np.zeros(1, np.bool_), one - 1)


@njit(nogil=True, cache=True)
def _scan(
    buf: np.ndarray,
    ends: np.ndarray,
    types: np.ndarray,
    ok: np.ndarray,
    spans: np.ndarray,
    time: np.ndarray,
    ints: np.ndarray,
    floats: np.ndarray,
    ids: np.ndarray,
) -> None:
    work = np.empty(SCRATCH_WORDS, np.uint64)  # blake2b8's
    start = 0
    for i in range(len(ends)):
        a, end = start, ends[i]
        start = end
        typ = types[i]
        if typ != REPAYMENT and typ != TRANSACTION:
            continue
        seen = 0  # bit per field: read (a repeated one is declined)
        given = 0  # ... with a value other than null
        kind = -1
        t = 0.0
        amount = 0.0
        bal = np.nan
        seq = 0
        due = _NO_DAY
        e0 = e1 = l0 = l1 = r0 = r1 = q0 = q1 = 0  # event, loan, reversed ids, counterparty
        p = _ws(buf, a, end)
        if p >= end or buf[p] != 123:
            continue
        p = _ws(buf, p + 1, end)
        good = p < end and buf[p] != 125  # {} lacks the required fields
        while good:
            k_end = _string(buf, p, end)
            if k_end == _FAIL:
                good = False
                break
            f = _word(buf, p + 1, k_end, _KEYS, _KEY_LEN, -1)
            if f == _FAIL or not _ALLOWED[typ, f] or seen & (1 << f):
                good = False  # unknown (msgspec ignores it) or repeated: msgspec's call
                break
            seen |= 1 << f
            p = _ws(buf, k_end + 1, end)
            if p >= end or buf[p] != 58:
                good = False
                break
            p = _ws(buf, p + 1, end)
            if p >= end:
                good = False
                break
            nul = _null(buf, p, end)
            if nul != _FAIL:
                # null: only the optional fields take it (absent == null for them)
                good = _OPTIONAL[f]
                p = nul
            elif (1 << f) & _NUMERIC:
                q, x, is_int = _number(buf, p, end)
                if q == _FAIL:
                    good = False
                    break
                if f == _F_AMOUNT:
                    good = 0.0 <= x <= _MONEY_MAX
                    amount = x
                elif f == _F_BALANCE:
                    good = -_MONEY_MAX <= x <= _MONEY_MAX
                    bal = x
                elif f == _F_SCHEMA:
                    good = is_int and 1 <= x <= SCHEMA_VERSION
                else:
                    good = is_int and 1 <= x <= 1200
                    seq = int(x)
                p = q
            else:  # a string field
                q = _string(buf, p, end)
                if q == _FAIL:
                    good = False
                    break
                s0, s1 = p + 1, q
                n = s1 - s0
                if f == _F_EVENT_ID:
                    good = 1 <= n <= _ID_MAX
                    e0, e1 = s0, s1
                elif f == _F_CUSTOMER_ID:
                    good = 1 <= n <= _ID_MAX
                    spans[i, 0], spans[i, 1] = s0 - a, s1 - a
                elif f == _F_LOAN_ID:
                    good = 1 <= n <= _ID_MAX
                    l0, l1 = s0, s1
                elif f == _F_ACCOUNT_ID:
                    good = 1 <= n <= _ID_MAX
                elif f == _F_REVERSED:
                    good = 1 <= n <= _ID_MAX
                    r0, r1 = s0, s1
                elif f == _F_COUNTERPARTY:
                    good = n <= _ID_MAX
                    q0, q1 = s0, s1
                elif f == _F_SOURCE:
                    good = n <= 64
                elif f == _F_EVENT_TIME:
                    good, t = _time(buf, s0, s1)
                elif f == _F_DUE_DATE:
                    due = _date(buf, s0, s1)
                    good = due != _NO_DAY
                else:  # kind
                    w = _word(buf, s0, s1, _KIND_WORDS, _KIND_LEN, 3 * (typ - 1))
                    good = w != _FAIL
                    kind = _KIND_CODE[w] if good else -1
                p = q + 1
            if not good:
                break
            if nul == _FAIL:
                given |= 1 << f
            p = _ws(buf, p, end)
            if p < end and buf[p] == 44:
                p = _ws(buf, p + 1, end)
            elif p < end and buf[p] == 125:
                p = _ws(buf, p + 1, end)
                good = p == end  # nothing after the object
                break
            else:
                good = False
        if not good:
            continue
        # required fields, and the records' own rules (their __post_init__)
        need = _REQUIRED[typ]
        if kind == K_DUE:
            need |= 1 << _F_SEQ | 1 << _F_DUE_DATE
        elif kind == K_REVERSAL:
            need |= 1 << _F_REVERSED
        if given & need != need:
            continue
        ok[i] = True
        spans[i, 2], spans[i, 3] = e0 - a, e1 - a
        time[i] = t
        ids[i] = blake2b8(buf, e0, e1, work)
        row = ints[i]
        # as EventColumns.add: slot, kind, loan, payer, seq, due, ref, repay, guar, sched0,
        # nsched, firm; floats: time, amount, balance, principal, rate, years, holding
        row[1] = kind
        row[7] = NONE
        row[8] = NONE
        row[9] = -1
        fl = floats[i]
        fl[0] = t
        fl[1] = amount
        fl[2] = np.nan
        fl[4] = np.nan
        if typ == TRANSACTION:
            row[3] = crc32(buf, q0, q1) if q1 > q0 and kind == K_CREDIT else NONE
            fl[2] = bal
        else:
            row[2] = blake2b8(buf, l0, l1, work) ^ np.int64(-(1 << 63))  # _id_hash: minus 2**63
            row[3] = NONE
            if kind == K_DUE:
                row[4], row[5] = seq, due
            elif kind == K_REVERSAL:
                row[6] = blake2b8(buf, r0, r1, work) ^ np.int64(-(1 << 63))
