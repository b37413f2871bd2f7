"""JSON Schema (draft 2020-12) of every record, for the teams that produce or consume events.

Generated from the msgspec definitions in :mod:`schemas.events` by ``msgspec.json.schema``, so
there is one definition of each record. The per-kind rules that ``__post_init__`` enforces (an
``opened`` loan needs its terms, an ``instalment_due`` needs its seq and due date, a
``reversal`` names the reversed event; a delinquency status past due does not report an
overdue amount of 0; a credit line has a limit and no schedule, its draws an amount and its
statements a balance, minimum and due date) are added as ``if``/``then`` clauses (two rules across
fields are only described: a statement's minimum is at most its balance, its due date not before
its day); a unit test checks they accept and
refuse exactly what the decoder does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from schemas.events import (
    INSTALMENT_TERMS,
    NOT_ON_A_LINE,
    SCHEMA_VERSION,
    Alert,
    DeadLetter,
    DelinquencyStatus,
    GradeChange,
    LineEvent,
    LoanEvent,
    ModelRecord,
    RepaymentEvent,
    TransactionEvent,
)
from schemas.fields import DESCRIPTIONS

DIALECT = "https://json-schema.org/draft/2020-12/schema"

RECORD_TYPES: dict[str, type[msgspec.Struct]] = {
    "loan_event": LoanEvent,
    "repayment_event": RepaymentEvent,
    "transaction_event": TransactionEvent,
    "delinquency_status": DelinquencyStatus,
    "line_event": LineEvent,
    "alert": Alert,
    "grade_change": GradeChange,
    "dead_letter": DeadLetter,
    "model_record": ModelRecord,
}
"""File stem -> record type; ``riskmon schemas`` writes ``<stem>.schema.json`` for each."""

_NEEDS: dict[type[msgspec.Struct], dict[str, tuple[str, ...]]] = {
    RepaymentEvent: {
        "instalment_due": ("instalment_seq", "due_date"),
        "reversal": ("reversed_event_id",),
    },
    LineEvent: {
        "draw": ("amount",),
        "statement": ("balance", "minimum_due", "due_date"),
    },
}

_LINE_LIMIT = {"properties": {"credit_limit": {"type": "number"}}, "required": ["credit_limit"]}
_LOAN_RULES = [  # LoanEvent.__post_init__
    {  # an opened instalment loan (no credit limit) needs its terms
        "if": {
            "properties": {
                "kind": {"const": "opened"},
                "credit_limit": {"not": {"type": "number"}},
            },
            "required": ["kind"],
        },
        "then": {
            "required": list(INSTALMENT_TERMS),
            "properties": {f: {"not": {"type": "null"}} for f in INSTALMENT_TERMS},
        },
    },
    {  # a credit line has no instalment terms
        "if": _LINE_LIMIT,
        "then": {"properties": {f: {"type": "null"} for f in NOT_ON_A_LINE}},
    },
]


_PAST_DUE_OWES = {  # DelinquencyStatus.__post_init__
    "if": {
        "properties": {"days_past_due": {"minimum": 1}, "overdue_amount": {"type": "number"}},
        "required": ["days_past_due", "overdue_amount"],
    },
    "then": {"properties": {"overdue_amount": {"exclusiveMinimum": 0}}},
}


def _kind_rules(needs: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    return [
        {
            "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
            "then": {
                "required": list(fields),
                "properties": {f: {"not": {"type": "null"}} for f in fields},
            },
        }
        for kind, fields in needs.items()
    ]


def record_schema(type_: type[msgspec.Struct]) -> dict[str, Any]:
    """A self-contained JSON Schema document for one record type, every field described."""
    doc = msgspec.json.schema(type_)
    name = type_.__name__
    for struct, body in doc["$defs"].items():
        for field, prop in body.get("properties", {}).items():
            text = DESCRIPTIONS.get(struct, {}).get(field)
            if text is not None:
                prop["description"] = text
    body = doc["$defs"][name]
    if type_ in _NEEDS:
        body["allOf"] = _kind_rules(_NEEDS[type_])
    if type_ is DelinquencyStatus:
        body["allOf"] = [_PAST_DUE_OWES]
    if type_ is LoanEvent:
        body["allOf"] = _LOAN_RULES
    return {
        "$schema": DIALECT,
        "$id": f"https://riskmon.example/schemas/v{SCHEMA_VERSION}/{name}.schema.json",
        "title": name,
        "description": body.get("description", ""),
        **doc,
    }


def write_schemas(out_dir: Path) -> list[Path]:
    """Write one ``<stem>.schema.json`` per record type into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, type_ in RECORD_TYPES.items():
        path = out_dir / f"{stem}.schema.json"
        path.write_text(json.dumps(record_schema(type_), indent=2, sort_keys=False) + "\n")
        paths.append(path)
    return paths
