"""Compact, versioned per-customer state across all of a customer's loans and accounts.

This module is the readable reference of the state kernel (``_state_kernel``, ``_loan_kernel``,
``_state_codec``): ``tests/unit/test_state_kernel.py`` holds the kernel to it event by event. It
stays one module on purpose: its guarantees (below) are kept jointly by the transaction, repayment,
loan and fold methods of one class, and it is read side by side with the kernel.

One :class:`CustomerState` per customer, updated by :meth:`CustomerState.apply` for every event
and serialised with :meth:`~CustomerState.to_bytes` (a version byte + msgpack, money as integer
cents so every aggregate is exact and order-independent).

**Event time drives everything.** ``last_event_time`` (the watermark) is the newest applied event
time. Guarantees, with ``L = cfg.lateness_days``:

* An event older than ``watermark - L`` is rejected: :attr:`Outcome.TOO_LATE`.
* Any accepted event set gives the same state, bytes and features whatever its arrival order,
  as long as each event arrives while it is inside the lateness bound. Transactions feed
  commutative monthly aggregates (sums, counts, min, latest-by-time). Payments and reversals wait
  in a per-loan pending list and are folded, in event-time order, into the settled delinquency
  history once they are ``2 L + 2`` days behind the watermark (no earlier event can arrive then);
  features replay the pending part on the fly.
* **Duplicates** (same ``event_id``): the 64-bit hashes of accepted event ids are kept while
  their event can still pass the lateness check, so a re-delivered event is either rejected as
  :attr:`Outcome.DUPLICATE` or, once older than the bound, as :attr:`Outcome.TOO_LATE`: either way
  it changes nothing. If more than ``cfg.max_recent_ids`` ids fall inside the bound (a burst), the
  oldest is forgotten and the acceptance floor rises above its time, so the guarantee still holds
  at the price of a shorter effective lateness for that customer.
* A repayment for a loan the state has never seen: :attr:`Outcome.UNKNOWN_LOAN`.
* A **reversal** within ``L`` days of the payment it references cancels that payment outright (it
  never happened); an older payment is undone from the reversal's day on (a negative payment), so
  the instalments it covered fall due again and DPD runs from their original due dates. Further
  reversals of the same payment within ``L`` days of the first do nothing. All matching is by
  event day (``|days apart| <= L``), never by what happens to be in memory, so the result does
  not depend on arrival order; two reversals of one payment more than ``L`` days apart are both
  applied (a producer error riskmon cannot detect with bounded memory).
* Payments are allocated to the oldest instalment first (``instalment_seq`` is not used).
* A **delinquency status** (the lender's own days past due of a loan) makes the lender's reports
  that loan's DPD from the report's day on (:mod:`streams.core.reported`); a status for a loan
  the state has never seen: :attr:`Outcome.UNKNOWN_LOAN`.
* A **credit line** (a contract opened with a credit limit) keeps statements, draws and payments
  in ``lines`` (:mod:`streams.core.lines`): its DPD runs from the oldest statement whose minimum
  is not covered. A draw or statement for an unknown line: :attr:`Outcome.UNKNOWN_LOAN`; one
  naming an instalment loan, an ``instalment_due`` naming a line, or a limit on an instalment
  loan: :attr:`Outcome.WRONG_PRODUCT`; a single draw above the line's limit:
  :attr:`Outcome.OVER_LIMIT`.

Memory is bounded whatever the history: at most 13 monthly aggregates, ``max_loans`` loans whose
paid-and-settled instalments are dropped, ``max_recent_ids`` ids and ``_MAX_PAYERS`` payers.

The monthly aggregates live in one flat ``array('q')`` (14 ints per month): compact in memory
(~1.5 KB instead of ~5 KB of int objects) and handed to the feature kernel as one memory copy.
Its int64 cells bound the money sums: a transaction that would take a month's inflow, outflow or
balance sum beyond ``2**62`` cents is rejected (:attr:`Outcome.AGGREGATE_OVERFLOW`), and folded
delinquency sums saturate at the int64 range (both need ~10**5 maximal events in one month).
A month's ``OUTFLOW`` sums its debits; a bounced debit moves no money and is counted in
``BOUNCED`` only.

**Versions.** Every state is written as version 5 (all fields, rows of 14). Versions 1 to 4 are
still read: their rows of 13 (no outflow) get an outflow of 0, which the features cannot tell
from a month without debits. Such a customer's cash runway is NaN while none of its last three
complete months was recorded with the outflow, and counts the older ones as months without
outflow (a longer runway) until three were. The next write of such a state is version 5.
"""

from __future__ import annotations

import hashlib
import zlib
from array import array
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import NamedTuple

import msgspec

from schemas.events import (
    GUARANTEE_METHODS,
    REPAYMENT_METHODS,
    DelinquencyStatus,
    InputEvent,
    Instalment,
    LineEvent,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)
from streams.core.delinquency import (
    DEFAULT_BUCKET_BOUNDS,
    DEFAULT_BUCKET_NAMES,
    DEFAULT_FIVE_FLOORS,
    FIVE_CATEGORIES,
    bucket_index,
    day_of,
    day_of_date,
    five_category_index,
    month_end_day,
    month_of_day,
)
from streams.core.lines import (
    Line,
    LineFigures,
    apply_contract,
    apply_line_event,
    fold_line,
    line_figures,
)
from streams.core.reported import (
    PendingReport,
    Report,
    arrears_day,
    report_fields,
    reported_overdue,
)

__all__ = [
    "STATE_VERSION",
    "CustomerState",
    "Facts",
    "Loan",
    "Outcome",
    "StateConfig",
    "StateError",
    "facts_of",
    "make_facts",
    "new_bounced_debits",
]

# 5: + a month's outflow (rows of 14); every state is written in this version, with all its
# fields. 4: + credit lines (``lines``). 3: + the lender's reported delinquency (``reports``).
# 2: months as one flat list of ints (rows of 13). 1: a list per month. All five are read; rows
# of 13 get an outflow of 0 (see the module docstring).
STATE_VERSION = 5
_DAY = 86400.0
_MAX_PAYERS = 16
_WINDOW_MONTHS = 13  # the current month + 12 before it
# Loan.short tracks instalments 0..62 of the kept schedule: a bigger int would not serialise
# (msgpack ints end at 2**64) nor fit the feature kernel's int64. Only a customer 63+ instalments
# behind (the kept schedule starts at the oldest unpaid one) loses pre-due marks, on instalments
# already far past due.
_SHORT_BITS = 63

# Monthly aggregate row layout (14 ints per month in ``CustomerState.months``, money in cents).
MONTH, DPD_MAX, LATE, DUE, PAID, EARLY_SUM, SETTLED, PREDUE_SHORT = range(8)
INFLOW, BOUNCED, BAL_SUM, BAL_N, BAL_MIN, OUTFLOW = range(8, 14)
_ROW_LEN = 14
_OLD_ROW_LEN = 13  # versions 1 to 4: no OUTFLOW (the last field)
_DELINQ_FIELDS = range(LATE, PREDUE_SHORT + 1)  # summed; DPD_MAX is a max
_I64_MAX = (1 << 63) - 1
_SUM_LIMIT = 1 << 62  # a transaction-fed month sum beyond this is refused (one event < 2**47)


class StateError(ValueError):
    """Bytes that are not a customer state this version can read."""


class Outcome(StrEnum):
    """What :meth:`CustomerState.apply` did with an event."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"
    UNKNOWN_LOAN = "unknown_loan"
    AGGREGATE_OVERFLOW = "aggregate_overflow"  # a month's sum would leave its int64 cell
    # an instalment_due beyond the loan's schedule + 1 (instalments before it are unknown): kept
    # nowhere, so refused; the contract's schedule (a changed loan event) or the missing
    # instalments first, then it again
    INSTALMENT_GAP = "instalment_gap"
    # a line's draw or statement naming an instalment loan, an instalment naming a line, or a
    # credit limit for an instalment loan: kept nowhere, so refused
    WRONG_PRODUCT = "wrong_product"
    OVER_LIMIT = "over_limit"  # a single draw above its line's credit limit


@dataclass(frozen=True, slots=True)
class StateConfig:
    """State settings, resolved once; buckets and floors are configuration (docs/domain.md)."""

    lateness_days: float = 7
    bucket_bounds: tuple[int, ...] = DEFAULT_BUCKET_BOUNDS
    bucket_names: tuple[str, ...] = DEFAULT_BUCKET_NAMES
    five_floors: tuple[int, ...] = DEFAULT_FIVE_FLOORS
    pre_due_days: int = 5  # balance observed this many days before a due date is "pre-due"
    max_recent_ids: int = 24  # ids inside the lateness bound; a burst beyond shortens it
    max_loans: int = 3

    def __post_init__(self) -> None:
        if self.lateness_days < 0:
            raise ValueError("lateness_days must be >= 0")
        if list(self.bucket_bounds) != sorted(set(self.bucket_bounds)):
            raise ValueError("bucket_bounds must be strictly increasing")
        if len(self.bucket_names) != len(self.bucket_bounds) + 1:
            raise ValueError("need one more bucket name than bucket bounds")
        if len(self.five_floors) != len(FIVE_CATEGORIES) - 1 or list(self.five_floors) != sorted(
            self.five_floors
        ):
            raise ValueError("five_floors needs 4 increasing DPD thresholds")
        if self.pre_due_days < 0 or self.max_recent_ids < 1 or self.max_loans < 1:
            raise ValueError("pre_due_days >= 0, max_recent_ids >= 1, max_loans >= 1")


class Facts(NamedTuple):
    """What the alert policy's hard rules need, at an as-of time. The first ten fields are
    ``policy.Observation``'s ``dpd .. active_loan``, in this order (the pipeline copies them)."""

    dpd: int
    bucket: int
    bucket_name: str
    five_category: str
    new_bounced_debits: int  # bounced debits on the as-of day
    pre_due_shortfall: bool  # balance below what falls due in the next pre_due_days
    inflow_ratio: float  # last complete month's inflow / average of the 6 before (NaN: no base)
    rate_increased: bool  # an active loan's rate is above its opening rate
    has_arrears: bool
    active_loan: bool
    overdue_amount: float


def _hash(s: str) -> int:
    """Stable 64-bit id hash (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little")


def _cents(x: float) -> int:
    return round(x * 100)


def _ppm(rate: float) -> int:
    return round(rate * 1_000_000)


def _new_row(month: int) -> list[int]:
    row = [0] * _ROW_LEN
    row[MONTH] = month
    return row


@cache
def _month_end(month: int) -> int:
    return month_end_day(month)


class Loan(msgspec.Struct, array_like=True):
    """One loan: contract terms, the remaining schedule and the settled repayment cursor.

    ``days``/``amts`` hold instalments ``base_seq + 1 ..`` (paid and settled ones are dropped).
    Cursor (all days before ``f_day`` are final): ``paid`` cents paid against the kept schedule,
    ``u`` the oldest unpaid instalment and ``s_u`` the cumulative amount due through it, ``n``
    the first instalment not yet past its due day and ``s_n`` the amount due before it.
    ``pending`` holds ``(day, id_hash, cents, reversed_id_hash)`` not yet folded, sorted.
    """

    h: int
    opened_t: int = -1
    closed_t: int = -1
    principal: int = 0
    rate0: int = -1
    rate: int = -1
    rate_t: int = -1
    repay: int = -1
    guar: int = -1
    meth_t: int = -1
    sched_t: int = -1
    base_seq: int = 0
    days: list[int] = msgspec.field(default_factory=list)
    amts: list[int] = msgspec.field(default_factory=list)
    short: int = 0  # bit k < 63: balance seen below instalment k's amount in its pre-due days
    f_day: int = 0
    paid: int = 0
    u: int = 0
    s_u: int = 0
    n: int = 0
    s_n: int = 0
    consec: int = 0
    last30: int = -1
    pending: list[tuple[int, int, int, int]] = msgspec.field(default_factory=list)

    def cursor(self) -> list[int]:
        return [self.f_day, self.paid, self.u, self.s_u, self.n, self.s_n, self.consec, self.last30]

    def set_cursor(self, c: list[int]) -> None:
        self.f_day, self.paid, self.u, self.s_u, self.n, self.s_n, self.consec, self.last30 = c

    def reset_cursor(self) -> None:
        """Recompute ``u, s_u, n, s_n`` after the schedule changed."""
        amts, days, paid = self.amts, self.days, self.paid
        s = 0
        u = len(amts)
        for k, a in enumerate(amts):
            s += a
            if s > paid:
                u = k
                break
        self.u, self.s_u = u, s
        n = bisect_left(days, self.f_day)
        self.n, self.s_n = n, sum(amts[:n])


def _advance(
    loan: Loan,
    c: list[int],
    entries: list[tuple[int, int, int, int]],
    end: int,
    sink: dict[int, list[int]],
    rc: list[int] | None = None,
    reports: list[PendingReport] | None = None,
) -> None:
    """End-of-day status of days ``c[0] .. end - 1``: payments applied, lateness and DPD recorded.

    ``entries`` are sorted, with days in ``[c[0], end)``. Writes per-month delinquency figures into
    ``sink`` and leaves the cursor ``c`` at ``end``. The ONE implementation of the delinquency
    history: used to fold settled events and to replay pending ones for features. A loan the
    lender reports on also has its report cursor ``rc`` (left at ``end`` too) and its pending
    ``reports`` (sorted, days in ``[c[0], end)``): from a day with a report in force, its DPD is
    the report's (:mod:`streams.core.reported`), a day's payments counting before its report.
    """
    cur, paid, u, s_u, n, s_n, consec, last30 = c
    days, amts, short = loan.days, loan.amts, loan.short
    nd = len(days)
    i, ne = 0, len(entries)
    if rc is None:
        rc = [-1, 0, 0, 0, -1]  # no report: never changed, as ``reports`` is empty
    reports = reports or []
    j, nr = 0, len(reports)
    while True:
        nxt = entries[i][0] if i < ne else end
        if j < nr and reports[j][0] < nxt:
            nxt = reports[j][0]
        seg_end = nxt - 1
        if seg_end >= cur:  # days cur..seg_end with the same oldest unpaid instalment u
            while n < nd and days[n] <= seg_end:
                dd = days[n]
                m = month_of_day(dd)
                row = sink.get(m) or sink.setdefault(m, _new_row(m))
                row[DUE] += amts[n]
                if n >= u:
                    row[LATE] += 1
                    consec += 1
                else:
                    consec = 0
                if (short >> n) & 1:
                    row[PREDUE_SHORT] += 1
                s_n += amts[n]
                n += 1
            # a report in force: its arrears if any; else the oldest unpaid instalment
            du = arrears_day(rc) if rc[0] >= 0 else days[u] if u < nd else None
            if du is not None and seg_end > du:
                m = month_of_day(max(cur, du + 1))
                me = month_of_day(seg_end)
                while m <= me:
                    d = min(_month_end(m), seg_end) - du
                    row = sink.get(m) or sink.setdefault(m, _new_row(m))
                    if d > row[DPD_MAX]:
                        row[DPD_MAX] = d
                    m += 1
                if seg_end - du >= 30:
                    last30 = seg_end
            cur = seg_end + 1
        if nxt >= end:
            break
        d = nxt
        tot = 0
        while i < ne and entries[i][0] == d:
            tot += entries[i][2]
            i += 1
        if tot and rc[0] >= 0:
            rc[3] += tot  # paid since the report in force
        while j < nr and reports[j][0] == d:
            _d, _t, _h, dpd, owed, cat = reports[j]
            rc[:] = [d, d - dpd, owed, 0, cat]
            j += 1
        if tot:
            paid += tot
            m = month_of_day(d)
            row = sink.get(m) or sink.setdefault(m, _new_row(m))
            row[PAID] += tot
            while u < nd and s_u <= paid:
                row[EARLY_SUM] += days[u] - d
                row[SETTLED] += 1
                u += 1
                if u < nd:
                    s_u += amts[u]
            while u > 0:
                prev = s_u - amts[u] if u < nd else s_u
                if prev <= paid:
                    break
                u -= 1
                s_u = prev
    c[:] = [cur, paid, u, s_u, n, s_n, consec, last30]


def _quiet_until(loan: Loan, end: int, rep: Report | None = None) -> bool:
    """True if nothing is paid, falls due, is reported or is overdue on ``loan`` before day
    ``end``: :func:`_advance` up to ``end`` would then only move the cursor's day (and write
    nothing). ``rep``: the loan's reports, if the lender reports on it."""
    n = loan.n  # instalments before n fell due before the cursor's day
    if not (
        (not loan.pending or loan.pending[0][0] >= end)
        and (n >= len(loan.days) or loan.days[n] >= end)
    ):
        return False
    if rep is None or rep.day < 0:
        return (rep is None or not rep.pending or rep.pending[0][0] >= end) and loan.u >= n
    return (not rep.pending or rep.pending[0][0] >= end) and arrears_day(rep.cursor()) is None


class Snapshot(NamedTuple):
    """A customer's delinquency picture at an as-of day: settled history + replayed pending."""

    day: int
    month: int
    rows: dict[int, list[int]]  # month -> aggregate row, months as_of-12 .. as_of
    dpd: int
    overdue: int  # cents due by the as-of day and not paid
    due_soon: int  # cents unpaid and falling due within pre_due_days
    consec: int
    last30: int  # last day with DPD >= 30, -1 never
    cat: int = -1  # the worst five-category class the lender reports in force, -1 none
    lines: LineFigures | None = None  # the credit lines' figures, None without lines


class CustomerState(msgspec.Struct, array_like=True):
    """Everything riskmon remembers about one customer; see the module docstring."""

    customer_id: str
    last_event_time: float = 0.0  # watermark: epoch seconds of the newest applied event
    floor: float = 0.0  # events before this are too late (raised by id-memory overflow)
    fold_day: int = 0
    ids: list[int] = msgspec.field(default_factory=list)  # recent event-id hashes, by (time, hash)
    id_t: list[int] = msgspec.field(default_factory=list)  # their event times (whole seconds)
    loans: list[Loan] = msgspec.field(default_factory=list)
    months: array = msgspec.field(default_factory=lambda: array("q"))  # rows of 14, by month
    bal: int = 0  # latest balance (cents) by event time
    bal_t: int = -1
    last_credit_t: int = -1
    bounced_day: int = -1
    bounced_n: int = 0  # bounced debits on bounced_day
    payers: list[int] = msgspec.field(default_factory=list)  # month << 32 | crc32(payer), top 16
    years_in_business: float = -1.0
    holding_years: float = -1.0
    profile_t: int = -1
    # the loans the lender reports on, in the order of ``loans`` (last but one: version 2 has
    # no such field, msgspec then gives the default)
    reports: list[Report] = msgspec.field(default_factory=list)
    # revolving credit lines (last: versions 2 and 3 have no such field)
    lines: list[Line] = msgspec.field(default_factory=list)

    @classmethod
    def new(cls, customer_id: str) -> CustomerState:
        return cls(customer_id)

    # -- serialisation -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Version byte + msgpack of every field (always the current version)."""
        return _VERSION_BYTE + _encoder.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> CustomerState:
        if not data:
            raise StateError("empty customer state")
        version = data[0]
        # 1 nests months; 1 and 2 have no reports; 1 to 3 no lines; 1 to 4 rows of 13
        if version not in (1, 2, 3, 4, STATE_VERSION):
            # Upgrade path: decode older layouts here and convert; never guess at newer ones.
            raise StateError(
                f"customer state version {version} is not supported (this build reads "
                f"versions 1 to {STATE_VERSION}); upgrade riskmon or rebuild the state from the "
                "changelog"
            )
        try:
            return (_decoder if version == STATE_VERSION else _old_decoder).decode(
                memoryview(data)[1:]
            )
        except msgspec.DecodeError as exc:
            raise StateError(f"corrupt customer state: {exc}") from None

    # -- events --------------------------------------------------------------------------------
    def apply(
        self,
        event: InputEvent,
        cfg: StateConfig,
        t: float | None = None,
    ) -> Outcome:
        """Apply one event; see the module docstring for duplicates, lateness and ordering.
        ``t``: the event time in epoch seconds, when the caller has it already."""
        if t is None:
            t = event.event_time.timestamp()
        lateness = cfg.lateness_days * _DAY
        if t < self.last_event_time - lateness or t < self.floor:
            return Outcome.TOO_LATE
        h = _hash(event.event_id)
        ids = self.ids
        if h in ids:
            return Outcome.DUPLICATE
        if isinstance(event, TransactionEvent):
            if not self._transaction(event, t, cfg):
                return Outcome.AGGREGATE_OVERFLOW
        elif isinstance(event, RepaymentEvent):
            refused = self._repayment(event, t, h, cfg)
            if refused is not None:
                return refused
        elif isinstance(event, DelinquencyStatus):
            if not self._status(event, t, h):
                return Outcome.UNKNOWN_LOAN
        elif isinstance(event, LineEvent):
            refused = self._line_event(event, t, h)
            if refused is not None:
                return refused
        elif event.credit_limit is not None or (self.lines and self._find_line(event.loan_id)):
            refused = self._line_contract(event, t, cfg)
            if refused is not None:
                return refused
        else:
            self._loan(event, t, cfg)
        id_t = self.id_t
        ti = int(t)
        i = bisect_right(id_t, ti)
        while i > 0 and id_t[i - 1] == ti and ids[i - 1] > h:
            i -= 1
        id_t.insert(i, ti)
        ids.insert(i, h)
        if t > self.last_event_time:
            self.last_event_time = t
            # forget ids whose event would now be too late anyway (times are whole seconds)
            k = bisect_right(id_t, t - lateness - 1)
            if k:
                del id_t[:k]
                del ids[:k]
            # fold on week boundaries of event time, so when folds happen (and the bytes) does
            # not depend on arrival order. The schedule itself matters: a fold drops settled
            # instalments, which a later negative payment (a reversal whose payment has not
            # arrived yet) can then no longer reopen (28-day folds changed such DPDs, 3 -> 33)
            fold = (day_of(t - 2 * lateness) - 2) // 7 * 7
            if fold > self.fold_day:
                self._fold(fold)
        if len(ids) > cfg.max_recent_ids:
            self.floor = max(self.floor, id_t[0] + 1.0)
            del id_t[0]
            del ids[0]
        return Outcome.APPLIED

    def _transaction(self, ev: TransactionEvent, t: float, cfg: StateConfig) -> bool:
        """Apply a transaction; False (nothing changed) if a month sum would overflow."""
        day = day_of(t)
        month = month_of_day(day)
        amount = _cents(ev.amount)
        kind = ev.kind
        bal = _cents(ev.balance_after) if ev.balance_after is not None else None
        months = self.months
        r = self._find_row(month)
        if r >= 0 and (
            (kind == "credit" and months[r + INFLOW] >= _SUM_LIMIT)
            or (kind == "debit" and months[r + OUTFLOW] >= _SUM_LIMIT)
            or (bal is not None and abs(months[r + BAL_SUM]) >= _SUM_LIMIT)
        ):
            return False
        if r < 0:
            r = self._insert_row(month)
        if kind == "credit":
            months[r + INFLOW] += amount
            self.last_credit_t = max(self.last_credit_t, int(t))
            if ev.counterparty:
                self._payer(month, zlib.crc32(ev.counterparty.encode()))
        elif kind == "debit":
            months[r + OUTFLOW] += amount
        elif kind == "bounced_debit":  # no money moved: counted, not in OUTFLOW
            months[r + BOUNCED] += 1
            if day > self.bounced_day:
                self.bounced_day, self.bounced_n = day, 1
            elif day == self.bounced_day:
                self.bounced_n += 1
        if bal is not None:
            ti = int(t)
            if ti > self.bal_t or (ti == self.bal_t and bal < self.bal):
                self.bal, self.bal_t = bal, ti
            if months[r + BAL_N] == 0 or bal < months[r + BAL_MIN]:
                months[r + BAL_MIN] = bal
            months[r + BAL_SUM] += bal
            months[r + BAL_N] += 1
            horizon = day + cfg.pre_due_days
            for loan in self.loans:
                days = loan.days
                k = bisect_left(days, day + 1)
                while k < len(days) and days[k] <= horizon:
                    if bal < loan.amts[k] and k < _SHORT_BITS:
                        loan.short |= 1 << k
                    k += 1
        return True

    def _payer(self, month: int, h32: int) -> None:
        payers = self.payers
        for k, x in enumerate(payers):
            if x & 0xFFFFFFFF == h32:
                if x >> 32 < month:
                    del payers[k]
                    insort(payers, month << 32 | h32)
                return
        key = month << 32 | h32
        if len(payers) < _MAX_PAYERS:
            insort(payers, key)
        elif key > payers[0]:
            del payers[0]
            insort(payers, key)

    def _find_loan(self, loan_id: str) -> Loan | None:
        h = _hash(loan_id)
        for loan in self.loans:
            if loan.h == h:
                return loan
        return None

    def _repayment(self, ev: RepaymentEvent, t: float, h: int, cfg: StateConfig) -> Outcome | None:
        """Apply a repayment event; the outcome if it is refused (nothing changed), else None."""
        loan = self._find_loan(ev.loan_id)
        day = day_of(t)
        kind = ev.kind
        if loan is None:
            line = self._find_line(ev.loan_id) if self.lines else None
            if line is None:
                return Outcome.UNKNOWN_LOAN
            if kind == "instalment_due":
                return Outcome.WRONG_PRODUCT
            self._payment(line.pays, ev, day, h, cfg)
            return None
        if kind == "instalment_due":
            assert ev.instalment_seq is not None and ev.due_date is not None
            due, cents = day_of_date(ev.due_date), _cents(ev.amount)
            if not self._instalment(loan, ev.instalment_seq, due, cents):
                return Outcome.INSTALMENT_GAP
            return None
        self._payment(loan.pending, ev, day, h, cfg)
        return None

    def _payment(
        self,
        pending: list[tuple[int, int, int, int]],
        ev: RepaymentEvent,
        day: int,
        h: int,
        cfg: StateConfig,
    ) -> None:
        """Queue a payment or a reversal on a loan's (or line's) pending list."""
        kind = ev.kind
        window = int(cfg.lateness_days)
        if kind == "payment_received":
            for k, (d, _rh, cents, ref) in enumerate(pending):
                if ref == h and cents != 0 and abs(d - day) <= window:
                    pending[k] = (d, _rh, 0, ref)  # its reversal arrived first: both vanish
                    return None
            insort(pending, (day, h, _cents(ev.amount), 0))
            return None
        assert ev.reversed_event_id is not None
        ref = _hash(ev.reversed_event_id)
        for k, (d, rh, cents, pref) in enumerate(pending):
            if pref == ref and abs(day - d) <= window:  # already reversed: one counts,
                if (day, h) >= (d, rh):  # the earliest, whatever the arrival order
                    return None
                del pending[k]
                if cents == 0:  # the later one had cancelled the payment: this one does
                    insort(pending, (day, h, 0, ref))
                    return None
                # the later one was a negative payment (its payment was more than L days away
                # or not seen): decide afresh for this earlier one, which may be close enough
                break
        for k, (d, ph, cents, _ref) in enumerate(pending):
            if ph == ref and cents > 0 and abs(day - d) <= window:
                del pending[k]
                insort(pending, (day, h, 0, ref))  # tombstone: a second reversal does nothing
                return None
        insort(pending, (day, h, -_cents(ev.amount), ref))
        return None

    def _status(self, ev: DelinquencyStatus, t: float, h: int) -> bool:
        """Queue the lender's status of a loan; False (nothing changed) for an unknown loan."""
        loan = self._find_loan(ev.loan_id)
        if loan is None:
            line = self._find_line(ev.loan_id) if self.lines else None
            if line is None:
                return False
            if line.report is None:
                line.report = Report(line.h)
            dpd, owed, cat = report_fields(ev)
            line.report.add((day_of(t), int(t), h, dpd, owed, cat))
            return True
        rep = self._report(loan.h)
        if rep is None:  # the loan's first: reports are kept in the order of the loans
            rep = Report(loan.h)
            order = [x.h for x in self.loans]
            at = order.index(loan.h)
            k = 0
            while k < len(self.reports) and order.index(self.reports[k].h) < at:
                k += 1
            self.reports.insert(k, rep)
        dpd, owed, cat = report_fields(ev)
        rep.add((day_of(t), int(t), h, dpd, owed, cat))
        return True

    def _find_line(self, loan_id: str) -> Line | None:
        h = _hash(loan_id)
        for line in self.lines:
            if line.h == h:
                return line
        return None

    def _line_contract(self, ev: LoanEvent, t: float, cfg: StateConfig) -> Outcome | None:
        """A line opened, its limit changed, or closed; refused for an instalment loan's id."""
        if self._find_loan(ev.loan_id) is not None:
            return Outcome.WRONG_PRODUCT
        ti = int(t)
        apply_contract(self.lines, _hash(ev.loan_id), ev, ti, self.fold_day, cfg.max_loans)
        firm = ev.firm
        if firm is not None and ti >= self.profile_t:
            self.years_in_business = firm.years_in_business
            self.holding_years = firm.shareholder_holding_years
            self.profile_t = ti
        return None

    def _line_event(self, ev: LineEvent, t: float, h: int) -> Outcome | None:
        """A draw or a statement on a line; the outcome if it is refused (nothing changed)."""
        line = self._find_line(ev.loan_id) if self.lines else None
        if line is None:
            return Outcome.WRONG_PRODUCT if self._find_loan(ev.loan_id) else Outcome.UNKNOWN_LOAN
        return None if apply_line_event(line, ev, t, h) else Outcome.OVER_LIMIT

    def _report(self, h: int) -> Report | None:
        for rep in self.reports:
            if rep.h == h:
                return rep
        return None

    def _instalment(self, loan: Loan, seq: int, due: int, cents: int) -> bool:
        """Set or append instalment ``seq``; False (nothing changed) for a gap in the schedule."""
        k = seq - loan.base_seq - 1
        if k < 0:
            return True  # already settled and dropped
        if k < len(loan.days):
            if loan.days[k] == due and loan.amts[k] == cents:
                return True
            loan.days[k], loan.amts[k] = due, cents
        elif k == len(loan.days):
            loan.days.append(due)
            loan.amts.append(cents)
        else:
            return False  # a gap: the instalments before it are not known
        loan.reset_cursor()
        return True

    def _loan(self, ev: LoanEvent, t: float, cfg: StateConfig) -> None:
        ti = int(t)
        loan = self._find_loan(ev.loan_id)
        if loan is None:
            loan = Loan(_hash(ev.loan_id), f_day=self.fold_day)
            self.loans.append(loan)
            if len(self.loans) > cfg.max_loans:
                self._evict_loan()
        kind = ev.kind
        if kind == "opened":
            loan.opened_t = ti
            loan.principal = _cents(ev.principal or 0.0)
            if ev.annual_rate is not None:
                loan.rate0 = _ppm(ev.annual_rate)
        elif kind == "closed":
            loan.closed_t = max(loan.closed_t, ti)
        if ev.annual_rate is not None and (
            ti > loan.rate_t or (ti == loan.rate_t and _ppm(ev.annual_rate) > loan.rate)
        ):
            loan.rate, loan.rate_t = _ppm(ev.annual_rate), ti
        has_terms = ev.repayment_method is not None or ev.guarantee_method is not None
        if has_terms and ti >= loan.meth_t:
            if ev.repayment_method is not None:
                loan.repay = REPAYMENT_METHODS.index(ev.repayment_method)
            if ev.guarantee_method is not None:
                loan.guar = GUARANTEE_METHODS.index(ev.guarantee_method)
            loan.meth_t = ti
        if ev.schedule is not None and ti >= loan.sched_t:
            self._schedule(loan, ev.schedule)
            loan.sched_t = ti
        firm = ev.firm
        if firm is not None and ti >= self.profile_t:
            self.years_in_business = firm.years_in_business
            self.holding_years = firm.shareholder_holding_years
            self.profile_t = ti

    def _schedule(self, loan: Loan, schedule: list[Instalment]) -> None:
        items = sorted((i.seq, day_of_date(i.due_date), _cents(i.amount)) for i in schedule)
        items = [x for x in items if x[0] > loan.base_seq]
        loan.days = [d for _, d, _ in items]
        loan.amts = [a for _, _, a in items]
        loan.short = 0
        loan.reset_cursor()

    def _evict_loan(self) -> None:
        """Drop the closed loan closed longest ago (else the oldest opened) beyond max_loans."""
        closed = [x for x in self.loans if x.closed_t >= 0]
        pool = closed or self.loans
        victim = min(pool, key=lambda x: (x.closed_t if closed else x.opened_t, x.h))
        self.loans.remove(victim)
        self.reports = [r for r in self.reports if r.h != victim.h]

    # -- folding settled history ---------------------------------------------------------------
    def _find_row(self, month: int) -> int:
        """Index of ``month``'s row in ``months``, or -1 (rows are sorted; the newest is last)."""
        months = self.months
        for r in range(len(months) - _ROW_LEN, -1, -_ROW_LEN):
            m = months[r]
            if m == month:
                return r
            if m < month:
                break
        return -1

    def _insert_row(self, month: int) -> int:
        """Insert an empty row for ``month`` (not present) in order; returns its index."""
        months = self.months
        r = len(months)
        while r > 0 and months[r - _ROW_LEN] > month:
            r -= _ROW_LEN
        months[r:r] = array("q", _new_row(month))
        return r

    def month_rows(self) -> list[list[int]]:
        """The monthly aggregates as one list per month, oldest first (a copy)."""
        m = self.months
        return [m[r : r + _ROW_LEN].tolist() for r in range(0, len(m), _ROW_LEN)]

    def _fold(self, fold_day: int) -> None:
        """Settle every loan's history up to ``fold_day`` (no earlier event can arrive now)."""
        self.fold_day = fold_day
        sink: dict[int, list[int]] = {}
        for loan in self.loans:
            if loan.f_day >= fold_day:
                continue
            pend = loan.pending
            rep = self._report(loan.h) if self.reports else None
            if _quiet_until(loan, fold_day, rep):  # most folds: the walk is skipped
                loan.f_day = fold_day
            else:
                k = bisect_left(pend, (fold_day,))
                c = loan.cursor()
                if rep is None:
                    _advance(loan, c, pend[:k], fold_day, sink)
                else:
                    rc = rep.cursor()
                    kr = bisect_left(rep.pending, (fold_day,))
                    _advance(loan, c, pend[:k], fold_day, sink, rc, rep.pending[:kr])
                    rep.set_cursor(rc)
                    del rep.pending[:kr]
                loan.set_cursor(c)
                del pend[:k]
            drop = min(loan.u, loan.n)
            if drop:
                gone = sum(loan.amts[:drop])
                del loan.days[:drop]
                del loan.amts[:drop]
                loan.short >>= drop
                loan.base_seq += drop
                loan.paid -= gone
                loan.s_u -= gone
                loan.s_n -= gone
                loan.u -= drop
                loan.n -= drop
        if self.lines:
            dpd_max: dict[int, int] = {}
            for line in self.lines:
                fold_line(line, fold_day, dpd_max)
            for m, d in dpd_max.items():
                row = sink.get(m) or sink.setdefault(m, _new_row(m))
                if d > row[DPD_MAX]:
                    row[DPD_MAX] = d
        months = self.months
        for m, src in sink.items():
            r = self._find_row(m)
            if r < 0:
                r = self._insert_row(m)
            if src[DPD_MAX] > months[r + DPD_MAX]:
                months[r + DPD_MAX] = src[DPD_MAX]
            for f in _DELINQ_FIELDS:
                months[r + f] = max(-_I64_MAX, min(_I64_MAX, months[r + f] + src[f]))
        oldest = month_of_day(fold_day) - (_WINDOW_MONTHS - 1)
        k = 0
        while k < len(months) and months[k] < oldest:
            k += _ROW_LEN
        if k:
            del months[:k]

    # -- reading -------------------------------------------------------------------------------
    def snapshot(self, as_of: float, cfg: StateConfig) -> Snapshot:
        """Settled history plus the pending events replayed up to the end of the as-of day."""
        day = day_of(as_of)
        month = month_of_day(day)
        lo = month - (_WINDOW_MONTHS - 1)
        rows: dict[int, list[int]] = {}  # copies of the stored rows
        months = self.months
        for r in range(len(months) - _ROW_LEN, -1, -_ROW_LEN):  # walk back from the newest
            m = months[r]
            if m < lo:
                break
            if m <= month:
                rows[m] = months[r : r + _ROW_LEN].tolist()
        overlay: dict[int, list[int]] = {}
        dpd = overdue = due_soon = consec = 0
        last30 = cat = -1
        horizon = day + cfg.pre_due_days
        for loan in self.loans:
            c = loan.cursor()
            rep = self._report(loan.h) if self.reports else None
            rc = None if rep is None else rep.cursor()
            if day >= c[0]:
                pend = loan.pending
                k = bisect_left(pend, (day + 1,))
                if rep is None:
                    _advance(loan, c, pend[:k], day + 1, overlay)
                else:
                    kr = bisect_left(rep.pending, (day + 1,))
                    _advance(loan, c, pend[:k], day + 1, overlay, rc, rep.pending[:kr])
            _f, paid, u, s_u, _n, s_n, lc, l30 = c
            days, amts = loan.days, loan.amts
            owes = reported_overdue(rc) if rc is not None and rc[0] >= 0 else None
            if rc is not None and rc[0] >= 0:  # the lender's report in force
                du = arrears_day(rc)
                if du is not None and du < day and day - du > dpd:
                    dpd = day - du
                cat = max(cat, rc[4])
            elif u < len(days) and days[u] < day and day - days[u] > dpd:
                dpd = day - days[u]
            if owes is not None:
                overdue += owes
            elif s_n > paid:
                overdue += s_n - paid
            k = max(u, _n)
            if k < len(days) and days[k] <= horizon:
                due_soon += (s_u - paid) if k == u else amts[k]
                k += 1
                while k < len(days) and days[k] <= horizon:
                    due_soon += amts[k]
                    k += 1
            consec = max(consec, lc)
            last30 = max(last30, l30)
        lf = None
        if self.lines:
            dpd_max: dict[int, int] = {}
            lf = line_figures(self.lines, day, dpd_max)
            for m, d in dpd_max.items():
                mrow = overlay.get(m) or overlay.setdefault(m, _new_row(m))
                if d > mrow[DPD_MAX]:
                    mrow[DPD_MAX] = d
            dpd = max(dpd, lf.dpd)
            overdue += lf.overdue
            last30 = max(last30, lf.last30)
            cat = max(cat, lf.cat)
        for m, src in overlay.items():
            if not lo <= m <= month:
                continue
            row = rows.get(m)
            if row is None:
                rows[m] = src
                continue
            if src[DPD_MAX] > row[DPD_MAX]:
                row[DPD_MAX] = src[DPD_MAX]
            for f in _DELINQ_FIELDS:
                row[f] += src[f]
        return Snapshot(day, month, rows, dpd, overdue, due_soon, consec, last30, cat, lf)

    def facts(self, as_of: float, cfg: StateConfig) -> Facts:
        """Hard-rule facts for the alert policy at ``as_of`` (epoch seconds)."""
        return facts_of(self, self.snapshot(as_of, cfg), cfg)

    def active_loans(self) -> list[Loan]:
        return [x for x in self.loans if x.closed_t < 0]

    def has_open_line(self) -> bool:
        return any(x.closed_t < 0 for x in self.lines)


def inflow_ratio(rows: dict[int, list[int]], month: int, base_months: int) -> float:
    """Last complete month's inflow / mean over the observed months among the ``base_months``
    before it (NaN: no inflow in the base)."""
    last = rows.get(month - 1)
    total = seen = 0
    for m in range(month - 1 - base_months, month - 1):
        r = rows.get(m)
        if r is not None:  # a month the customer was observed in (before: not on book yet)
            total += r[INFLOW]
            seen += 1
    if total <= 0:
        return float("nan")
    return (last[INFLOW] if last is not None else 0) * seen / total


def facts_of(
    state: CustomerState, snap: Snapshot, cfg: StateConfig, inflow6: float | None = None
) -> Facts:
    """Facts from an existing snapshot (features and facts share one replay; ``inflow6``: the
    6-month inflow ratio when the caller already computed it)."""
    active = state.active_loans()
    return make_facts(
        cfg,
        new_bounced_debits(state, snap.day),
        snap.dpd,
        state.bal_t >= 0 and snap.due_soon > 0 and state.bal < snap.due_soon,
        inflow_ratio(snap.rows, snap.month, 6) if inflow6 is None else inflow6,
        any(x.rate0 >= 0 and x.rate > x.rate0 for x in active),
        snap.overdue / 100,
        bool(active) or state.has_open_line(),
        snap.cat,
    )


def new_bounced_debits(state: CustomerState, day: int) -> int:
    """Bounced debits on ``day`` (the as-of day of a rescoring)."""
    return state.bounced_n if state.bounced_day == day else 0


def make_facts(
    cfg: StateConfig,
    new_bounced: int,
    dpd: int,
    pre_due_shortfall: bool,
    inflow: float,
    rate_increased: bool,
    overdue_amount: float,
    active_loan: bool,
    reported_class: int = -1,
) -> Facts:
    """The one assembly of :class:`Facts` (buckets, floor) from figures the snapshot or the
    feature kernel computed. Positional: faster than keywords. ``reported_class``: the worst
    five-category class the lender reports in force (-1: none), a floor besides the DPD's.
    A customer past due has arrears (a reported DPD may come without an overdue amount)."""
    b = bucket_index(dpd, cfg.bucket_bounds)
    return Facts(
        dpd,
        b,
        cfg.bucket_names[b],
        FIVE_CATEGORIES[max(five_category_index(dpd, cfg.five_floors), reported_class)],
        new_bounced,
        pre_due_shortfall,
        inflow,
        rate_increased,
        overdue_amount > 0 or dpd > 0,
        active_loan,
        overdue_amount,
    )


def _enc_hook(obj: object) -> object:
    if isinstance(obj, array):
        return obj.tolist()
    raise NotImplementedError(f"cannot serialise {type(obj).__name__}")


def _months(obj: list[int], width: int) -> array:
    """Monthly aggregates from their stored ints (rows of ``width``) as rows of ``_ROW_LEN``:
    an older row's missing fields (the outflow) are 0."""
    if len(obj) % width:
        raise ValueError(f"monthly aggregates: {len(obj)} values, not rows of {width}")
    if width < _ROW_LEN:
        pad = [0] * (_ROW_LEN - width)
        obj = [x for r in range(0, len(obj), width) for x in (*obj[r : r + width], *pad)]
    try:
        return array("q", obj)
    except (TypeError, OverflowError) as exc:
        raise ValueError(f"monthly aggregates are not int64 values: {exc}") from None


def _dec_hook(type_: type, obj: object) -> object:
    if type_ is array and isinstance(obj, list):
        return _months(obj, _ROW_LEN)
    raise NotImplementedError(f"cannot decode {type_}")


def _old_dec_hook(type_: type, obj: object) -> object:
    """Versions 1 to 4: rows of 13 (version 1 one list per month)."""
    if type_ is array and isinstance(obj, list):
        if obj and isinstance(obj[0], list):  # version 1: one list per month
            obj = [x for row in obj for x in row]
        return _months(obj, _OLD_ROW_LEN)
    raise NotImplementedError(f"cannot decode {type_}")


_VERSION_BYTE = bytes([STATE_VERSION])
_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.msgpack.Decoder(CustomerState, dec_hook=_dec_hook)
_old_decoder = msgspec.msgpack.Decoder(CustomerState, dec_hook=_old_dec_hook)
