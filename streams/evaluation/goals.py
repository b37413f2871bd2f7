"""The report's goals: each with its ``value``, ``target`` and ``met`` (None: cannot be told).

* ``beats_dpd_only_at_equal_volume``: at 1 % and at 5 % daily capacity, the score rule at the
  DPD-only rule's daily volume has recall **and** median lead time at least the DPD rule's.
* ``customer_alert_lift``: customer-level precision of the actionable alerts over the base rate
  >= 4, with at least 90 % of the defaults alerted before they default.
* ``alerted_customer_share``: at most 25 % of the book's customers get an actionable alert.
* ``pre_delinquency_share``: at least 50 % of the defaults are first alerted 30 days or more
  before their first missed instalment.
* ``median_lead_time_days`` >= 60 (actionable alerts) and ``recall_at_5pct`` >= 0.7 (score
  rule at 5 % daily capacity).

On censored outcomes (the book ends before the horizon) a goal is never called met, only missed.
"""

from __future__ import annotations

from typing import Any

GOAL_LEAD_DAYS = 60.0
GOAL_RECALL = 0.70
GOAL_CAPACITY = 0.05
GOAL_LIFT = 4.0
GOAL_LIFT_ALERTED = 0.90
GOAL_ALERTED_SHARE = 0.25
GOAL_PRE_DELINQUENCY = 0.50


def _goal(value: float | None, target: float, met: bool | None, **more: Any) -> dict[str, Any]:
    return {"value": value, "target": target, "met": met, **more}


def _at_least(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def _beats(capacity: dict[str, Any]) -> dict[str, Any]:
    """Score at the DPD rule's volume vs the DPD rule, per capacity."""
    per: dict[str, Any] = {}
    verdicts: list[bool | None] = []
    for share, at in capacity.items():
        eq, dpd = at["score_at_dpd_volume"], at["dpd_only"]
        eq_lead, dpd_lead = eq["lead_time_days"]["median"], dpd["lead_time_days"]["median"]
        met: bool | None = None
        if eq["recall"] is not None and dpd["recall"] is not None:
            lead_ok = dpd_lead is None or (eq_lead is not None and eq_lead >= dpd_lead)
            met = eq["recall"] >= dpd["recall"] and lead_ok
        verdicts.append(met)
        per[share] = {
            "met": met,
            "score_recall": eq["recall"],
            "dpd_only_recall": dpd["recall"],
            "score_precision": eq["precision"],
            "dpd_only_precision": dpd["precision"],
            "score_median_lead_days": eq_lead,
            "dpd_only_median_lead_days": dpd_lead,
        }
    overall = False if False in verdicts else None if None in verdicts or not verdicts else True
    return {"met": overall, "by_capacity": per}


def goals(
    lead: dict[str, Any],
    capacity: dict[str, Any],
    budget: dict[str, Any],
    censored: bool,
) -> dict[str, Any]:
    """Every goal of the report (definitions: module docstring)."""
    acted = budget["actionable"]
    med = lead["median"]
    rec = capacity[f"{GOAL_CAPACITY:.0%}"]["score"]["recall"]
    lift, alerted = acted["lift"], acted["defaults_alerted_share"]
    lift_met = (
        None
        if lift is None or alerted is None
        else (lift >= GOAL_LIFT and alerted >= GOAL_LIFT_ALERTED)
    )
    share = acted["customers_alerted_share"]
    early = acted["pre_delinquency_share"]
    out = {
        "beats_dpd_only_at_equal_volume": _beats(capacity),
        "customer_alert_lift": _goal(
            lift,
            GOAL_LIFT,
            lift_met,
            defaults_alerted_share=alerted,
            defaults_alerted_target=GOAL_LIFT_ALERTED,
        ),
        "alerted_customer_share": _goal(
            share, GOAL_ALERTED_SHARE, None if share is None else share <= GOAL_ALERTED_SHARE
        ),
        "pre_delinquency_share": _goal(
            early, GOAL_PRE_DELINQUENCY, _at_least(early, GOAL_PRE_DELINQUENCY)
        ),
        "median_lead_time_days": _goal(med, GOAL_LEAD_DAYS, _at_least(med, GOAL_LEAD_DAYS)),
        "recall_at_5pct": _goal(rec, GOAL_RECALL, _at_least(rec, GOAL_RECALL)),
    }
    if censored:
        # outcomes cut short by the book's end cannot show a goal met (defaults after the end
        # are unseen), only one missed on what was seen
        for goal in out.values():
            if goal["met"] is True:
                goal["met"] = None
            goal["note"] = "outcomes censored at the book's end: a goal is not called met"
    return out
