"""A customer's current picture for the read API: grade, score, PD, reasons, DPD, floor."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from streams.core import features as F
from streams.core.entry import Entry
from streams.core.pipeline import Pipeline


def customer_view(pipeline: Pipeline, customer_id: str, raw: bytes) -> dict[str, Any]:
    """What ``GET /customers/{id}`` answers for a customer whose table entry is ``raw``: the
    entry's state scored now by the card that decides for it (its rollout arm), with the card's
    top reasons."""
    st = Entry.from_bytes(raw).state
    arm = pipeline.arms.deciding(customer_id)  # the card its alerts come from
    cfg, cs, columns = pipeline.state_cfg, arm.cs, arm.columns
    row = np.empty(len(F.FEATURES), dtype=np.float64)
    F.features_into(st, st.last_event_time, row, cfg)
    x = columns.row(row)
    score, grade = cs.score_one(x)
    facts = st.facts(st.last_event_time, cfg)
    reasons = [
        columns.reason(int(c), float(x[int(c)]), int(cs.one_lost[c]))
        for c in cs.one_reasons
        if c >= 0
    ]
    return {
        "customer_id": customer_id,
        "grade": cs.grade_names[grade],
        "score": score,
        "pd": float(cs.pd(score)),
        "reasons": [
            {"code": r.code, "text": r.text, "points_lost": r.points_lost} for r in reasons
        ],
        "dpd": int(facts.dpd),
        "m_bucket": str(facts.bucket_name),
        "five_category": str(facts.five_category),
        "last_event_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.last_event_time)),
        "scorecard_version": arm.card.version,
        "arm": arm.name,
    }
