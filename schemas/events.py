"""Every record that crosses a riskmon topic, defined once.

Input (produced by core banking / payments, keyed by ``customer_id`` bytes):
``LoanEvent``, ``DelinquencyStatus`` and ``LineEvent`` -> ``riskmon.loans``, ``RepaymentEvent`` ->
``riskmon.repayments``, ``TransactionEvent`` -> ``riskmon.transactions``.
Output (produced by riskmon): ``Alert`` -> ``riskmon.alerts``, ``GradeChange`` ->
``riskmon.grades``, ``DeadLetter`` -> ``riskmon.deadletter``.
Models (``riskmon publish``, keyed by role, compacted): ``ModelRecord`` -> ``riskmon.models``.

Every record carries ``schema_version``, ``event_id``, ``customer_id``, ``event_time`` (UTC,
timezone-aware RFC 3339) and ``source``. Amounts are in the loan currency's major unit.
"""

from __future__ import annotations

import datetime as dt
import typing
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

SCHEMA_VERSION = 1

Id = Annotated[str, Meta(min_length=1, max_length=128)]
UtcTime = Annotated[dt.datetime, Meta(tz=True)]
Money = Annotated[float, Meta(ge=-1e12, le=1e12)]
NonNegMoney = Annotated[float, Meta(ge=0, le=1e12)]
Rate = Annotated[float, Meta(ge=0, le=10)]  # annual rate as a fraction, 0.085 = 8.5 %
Years = Annotated[float, Meta(ge=0, le=150)]
Probability = Annotated[float, Meta(ge=0, le=1)]
Amount = Annotated[float, Meta(ge=0)]  # an output figure: a sum of input amounts, unbounded
#: which card of a champion/challenger rollout scored (docs/architecture.md, model rollout)
Arm = Literal["champion", "challenger"]
ARMS: tuple[str, ...] = Arm.__args__  # type: ignore[attr-defined]

RepaymentMethod = Literal["equal_instalment", "equal_principal", "interest_only_balloon"]
GuaranteeMethod = Literal["credit", "guarantee", "mortgage_pledge"]
REPAYMENT_METHODS: tuple[str, ...] = RepaymentMethod.__args__  # type: ignore[attr-defined]
GUARANTEE_METHODS: tuple[str, ...] = GuaranteeMethod.__args__  # type: ignore[attr-defined]


class _Record(Struct, frozen=True, kw_only=True, forbid_unknown_fields=False, gc=False):
    """Fields every record carries. ``gc=False`` (inherited by every record type, and set on
    the nested structs): frozen records of decoded values cannot form reference cycles, so the
    collector need not track the thousands decoded per batch (decoding is faster)."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    event_id: Id
    customer_id: Id
    event_time: UtcTime
    source: Annotated[str, Meta(max_length=64)] = "unknown"


class Instalment(Struct, frozen=True, gc=False):
    """One scheduled instalment of a loan."""

    seq: Annotated[int, Meta(ge=1, le=1200)]
    due_date: dt.date
    amount: NonNegMoney


class FirmProfile(Struct, frozen=True, kw_only=True, gc=False):
    """The borrowing firm, as known at contract time."""

    industry: Annotated[str, Meta(max_length=64)]
    region: Annotated[str, Meta(max_length=64)]
    years_in_business: Years
    shareholder_holding_years: Years  # controlling shareholder's holding time


INSTALMENT_TERMS = (
    "principal",
    "annual_rate",
    "term_months",
    "repayment_method",
    "guarantee_method",
    "schedule",
)
NOT_ON_A_LINE = ("principal", "term_months", "repayment_method", "schedule")


class LoanEvent(_Record, frozen=True, kw_only=True):
    """A contract opened, changed (e.g. rate increase, reschedule) or closed.

    A contract opened with a ``credit_limit`` is a revolving credit line: it has no schedule
    (its draws and statements are :class:`LineEvent` records, its payments repayments)."""

    kind: Literal["opened", "changed", "closed"]
    loan_id: Id
    product: Annotated[str, Meta(max_length=64)] = "fast_loan"
    principal: NonNegMoney | None = None
    annual_rate: Rate | None = None
    term_months: Annotated[int, Meta(ge=1, le=600)] | None = None
    repayment_method: RepaymentMethod | None = None
    guarantee_method: GuaranteeMethod | None = None
    schedule: list[Instalment] | None = None
    firm: FirmProfile | None = None
    credit_limit: NonNegMoney | None = None

    def __post_init__(self) -> None:
        if self.credit_limit is not None:
            extra = [f for f in NOT_ON_A_LINE if getattr(self, f) is not None]
            if extra:
                raise ValueError(
                    f"a credit line (credit_limit) has no {', '.join(extra)}: "
                    "its draws and statements are line events"
                )
        elif self.kind == "opened":
            missing = [f for f in INSTALMENT_TERMS if getattr(self, f) is None]
            if missing:
                raise ValueError(f"an 'opened' loan event needs {', '.join(missing)}")
        if self.schedule is not None:
            seqs = [i.seq for i in self.schedule]
            if len(set(seqs)) != len(seqs):
                raise ValueError("schedule has duplicate instalment seq numbers")


class RepaymentEvent(_Record, frozen=True, kw_only=True):
    """An instalment falling due, a payment received against a loan, or a payment reversed."""

    kind: Literal["instalment_due", "payment_received", "reversal"]
    loan_id: Id
    amount: NonNegMoney
    instalment_seq: Annotated[int, Meta(ge=1, le=1200)] | None = None
    due_date: dt.date | None = None
    reversed_event_id: Id | None = None

    def __post_init__(self) -> None:
        if self.kind == "instalment_due" and (self.instalment_seq is None or self.due_date is None):
            raise ValueError("an 'instalment_due' event needs instalment_seq and due_date")
        if self.kind == "reversal" and self.reversed_event_id is None:
            raise ValueError("a 'reversal' event needs reversed_event_id")


class TransactionEvent(_Record, frozen=True, kw_only=True):
    """A movement on the customer's repayment account."""

    kind: Literal["credit", "debit", "bounced_debit"]
    account_id: Id
    amount: NonNegMoney
    balance_after: Money | None = None
    counterparty: Annotated[str, Meta(max_length=128)] | None = None


FiveCategory = Literal["normal", "special_mention", "substandard", "doubtful", "loss"]
MAX_REPORTED_DPD = 36_500  # a hundred years: beyond it a reported DPD is a data error


class DelinquencyStatus(_Record, frozen=True, kw_only=True):
    """The lender's own delinquency of one loan, as of the end of ``event_time``'s UTC day.

    Where a loan has such a report it is the source of that loan's DPD (aged a day per day
    until a newer report, or a payment clearing the reported overdue amount), its M-bucket and
    five-category floor; without one, DPD is derived from the instalments (docs/events.md)."""

    kind: Literal["delinquency_status"]
    loan_id: Id
    days_past_due: Annotated[int, Meta(ge=0, le=MAX_REPORTED_DPD)]
    overdue_amount: NonNegMoney | None = None
    five_category: FiveCategory | None = None

    def __post_init__(self) -> None:
        if self.days_past_due > 0 and self.overdue_amount == 0:
            raise ValueError(
                "days_past_due > 0 with overdue_amount 0: an overdue loan owes something "
                "(leave overdue_amount out when it is not known)"
            )


class LineEvent(_Record, frozen=True, kw_only=True):
    """A draw on a revolving credit line, or the line's statement.

    A statement describes the line at the end of ``event_time``'s UTC day (the statement date):
    its balance, the minimum due and the date it is due by. Payments on the line are
    ``RepaymentEvent`` ``payment_received`` records naming the line; the minimums they leave
    unpaid after their due dates make the line past due (docs/events.md)."""

    kind: Literal["draw", "statement"]
    loan_id: Id
    amount: NonNegMoney | None = None
    balance: NonNegMoney | None = None
    minimum_due: NonNegMoney | None = None
    due_date: dt.date | None = None

    def __post_init__(self) -> None:
        if self.kind == "draw":
            if self.amount is None:
                raise ValueError("a 'draw' line event needs amount")
            return
        if self.balance is None or self.minimum_due is None or self.due_date is None:
            raise ValueError("a 'statement' line event needs balance, minimum_due and due_date")
        if self.minimum_due > self.balance:
            raise ValueError("minimum_due is above the statement's balance")
        if self.due_date < self.event_time.astimezone(dt.UTC).date():
            raise ValueError("due_date is before the statement date (event_time's UTC day)")


InputEvent = LoanEvent | RepaymentEvent | TransactionEvent | DelinquencyStatus | LineEvent

Severity = Literal["watch", "blue", "yellow", "orange", "red"]
AlertStatus = Literal["opened", "escalated", "resolved", "expired"]


class Reason(Struct, frozen=True, gc=False):
    """A reason code: a characteristic and the points it costs against its best bin."""

    code: str  # characteristic name
    text: str  # "days past due (max 6 m) = 45: -23 points"
    points_lost: int


class Alert(_Record, frozen=True, kw_only=True):
    """An early-warning record for collections. ``alert_id`` is stable across replays."""

    alert_id: Id
    status: AlertStatus
    severity: Severity
    signal: str
    old_grade: str | None
    new_grade: str
    old_score: float | None
    new_score: float
    pd: Probability
    exposure: Amount
    priority: Amount
    reasons: list[Reason]
    delta_reasons: list[Reason]
    dpd: int
    m_bucket: str
    five_category: FiveCategory
    treatment: str
    contact_constraints: list[str]
    scorecard_version: str
    trigger_event_id: str
    trigger_topic: str
    trigger_partition: int
    trigger_offset: int
    emitted_at: UtcTime
    arm: Arm = "champion"  # optional: records written before model rollout decode


class GradeChange(_Record, frozen=True, kw_only=True):
    """Audit trail: every change of a customer's grade."""

    old_grade: str | None
    new_grade: str
    old_score: float | None
    new_score: float
    pd: Probability
    exposure: Amount
    priority: Amount
    scorecard_version: str
    trigger_event_id: str
    arm: Arm = "champion"


class DeadLetter(_Record, frozen=True, kw_only=True):
    """A message riskmon could not use, with the reason and the original bytes (base64)."""

    reason: str  # short, bounded code: not_json, schema, unknown_customer, too_late, ...
    detail: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    original: bytes


InputType = (
    type[LoanEvent]
    | type[RepaymentEvent]
    | type[TransactionEvent]
    | type[DelinquencyStatus]
    | type[LineEvent]
)
INPUT_TYPES: dict[str, type[LoanEvent] | type[RepaymentEvent] | type[TransactionEvent]] = {
    "loans": LoanEvent,
    "repayments": RepaymentEvent,
    "transactions": TransactionEvent,
}
"""Input role -> the main record type of its topic (``TOPIC_TYPES``: every type it carries;
decode input messages with ``schemas.codec.decode_input``)."""
TOPIC_TYPES: dict[str, tuple[InputType, ...]] = {
    "loans": (LoanEvent, DelinquencyStatus, LineEvent),
    "repayments": (RepaymentEvent,),
    "transactions": (TransactionEvent,),
}
"""Every record type each input topic carries (``INPUT_TYPES``' type first), told apart by
``kind``: the lender's delinquency status travels with the loan events it describes, a credit
line's draws and statements with the line's own loan events."""


def kinds_of(type_: type[Any]) -> tuple[str, ...]:
    """The ``kind`` values a record type takes."""
    return tuple(typing.get_args(typing.get_type_hints(type_)["kind"]))


class ModelRecord(Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """A scorecard for the stream, keyed by ``role``: the worker scores with the latest record
    of each role (a tombstone retires the challenger). ``card`` is the artifact document,
    checked as the file loader checks it (schema, validity, content hash)."""

    schema_version: Annotated[int, Meta(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    role: Arm
    share: Annotated[float, Meta(ge=0, le=100)] = 100.0
    shadow: bool = False
    card: dict[str, Any]
    published_at: UtcTime


OUTPUT_TYPES: dict[str, type[Alert] | type[GradeChange] | type[DeadLetter]] = {
    "alerts": Alert,
    "grades": GradeChange,
    "deadletter": DeadLetter,
}

__all__ = [
    "ARMS",
    "GUARANTEE_METHODS",
    "INPUT_TYPES",
    "INSTALMENT_TERMS",
    "NOT_ON_A_LINE",
    "OUTPUT_TYPES",
    "REPAYMENT_METHODS",
    "SCHEMA_VERSION",
    "TOPIC_TYPES",
    "Alert",
    "DeadLetter",
    "DelinquencyStatus",
    "FirmProfile",
    "GradeChange",
    "InputEvent",
    "Instalment",
    "LineEvent",
    "LoanEvent",
    "ModelRecord",
    "Reason",
    "RepaymentEvent",
    "TransactionEvent",
    "kinds_of",
    "msgspec",
]
