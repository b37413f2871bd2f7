"""riskmon record definitions: events in, alerts/grade changes/dead letters out."""

from schemas.codec import RecordError, decode, encode
from schemas.events import (
    Alert,
    DeadLetter,
    GradeChange,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)

__all__ = [
    "Alert",
    "DeadLetter",
    "GradeChange",
    "LoanEvent",
    "RecordError",
    "RepaymentEvent",
    "TransactionEvent",
    "decode",
    "encode",
]
