"""What every field of every record means, for the JSON Schemas and ``docs/events.md``.

Kept beside :mod:`schemas.events` rather than inside its type annotations so the record
definitions stay readable; ``tests/unit/test_schemas.py`` fails when a field has no description.
"""

from __future__ import annotations

_COMMON = {
    "schema_version": "Version of this record's schema; riskmon reads versions up to its own.",
    "event_id": "Unique id of the event at its source: a second event with the same id is a "
    "duplicate and changes nothing.",
    "customer_id": "The borrowing customer; the Kafka key of input records is its UTF-8 bytes.",
    "event_time": "When it happened at the source, RFC 3339 with a UTC offset; it drives every "
    "window and bound (lateness, future skew).",
    "source": "Which system produced the record (free text).",
}

_PD = "Probability of default of the score now (the scorecard's calibration)."
_EXPOSURE = (
    "Outstanding principal over the customer's active loans at this rescoring, in the loan "
    "currency: each loan's unpaid instalments discounted at its rate, a credit line's "
    "outstanding balance (docs/domain.md)."
)
_PRIORITY = (
    "Expected loss = pd x exposure, in the loan currency, to the cent: the order to work alerts "
    "in (riskmon queue)."
)

_ARM = (
    "Which card of a rollout scored: champion, or challenger (the customers of the "
    "challenger's share, by a stable hash of the customer id). Absent in older records: "
    "champion."
)

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "Instalment": {
        "seq": "Instalment number, 1 for the first.",
        "due_date": "Date the instalment falls due (ISO date).",
        "amount": "Amount due, in the loan currency's major unit.",
    },
    "FirmProfile": {
        "industry": "Industry of the borrowing firm (free text).",
        "region": "Region of the borrowing firm (free text).",
        "years_in_business": "The owner's years in business at contract time.",
        "shareholder_holding_years": "How long the controlling shareholder has held the firm, "
        "in years, at contract time.",
    },
    "LoanEvent": {
        **_COMMON,
        "kind": "opened (with its terms), changed (a rate, method, schedule or credit limit "
        "change) or closed.",
        "loan_id": "The contract's id; repayments, delinquency statuses and line events name it.",
        "product": "Product name (free text).",
        "principal": "Amount lent, in the loan currency's major unit (required when opened).",
        "annual_rate": "Annual interest rate as a fraction, 0.085 = 8.5 % (required when "
        "opened; a higher rate in a change is a rate increase).",
        "term_months": "Term in months (required when opened).",
        "repayment_method": "How the loan is repaid (required when opened).",
        "guarantee_method": "What secures the loan (required when opened).",
        "schedule": "The instalments (required when opened; in a change, the new schedule).",
        "firm": "The borrowing firm's profile, if known; without it the profile features "
        "(years in business, shareholder holding time) are missing.",
        "credit_limit": "For a revolving credit line: its credit limit, in the loan currency's "
        "major unit. A contract opened with one is a line: it has no principal, term, "
        "repayment method or schedule (its draws and statements are line events); in a change, "
        "the new limit.",
    },
    "LineEvent": {
        **_COMMON,
        "event_time": "When it happened, RFC 3339 with a UTC offset. For a statement, the "
        "statement date: it describes the line at the end of that UTC day (its draws and "
        "payments that day included). It also drives the bounds (lateness, future skew).",
        "kind": "draw (money drawn on the line) or statement (the line's periodic statement).",
        "loan_id": "The credit line (the loan_id of a LoanEvent opened with a credit_limit).",
        "amount": "For draw: the amount drawn, in the line currency's major unit (required; "
        "a single draw above the line's credit limit is dead-lettered as over_limit).",
        "balance": "For statement: the balance owed at the end of the statement date, in the "
        "line currency's major unit (required).",
        "minimum_due": "For statement: the minimum payment due by due_date, at most balance "
        "(required; 0: nothing due). Left unpaid after due_date, the line is past due from "
        "due_date.",
        "due_date": "For statement: the date the minimum is due by, not before the statement "
        "date (required); paying on it is on time.",
    },
    "RepaymentEvent": {
        **_COMMON,
        "kind": "instalment_due (an instalment falls due), payment_received, or reversal (of "
        "an earlier payment).",
        "loan_id": "The contract the repayment belongs to (a LoanEvent's loan_id).",
        "amount": "Amount due, paid or reversed, in the loan currency's major unit.",
        "instalment_seq": "For instalment_due: which instalment. Payments are allocated to the "
        "oldest unpaid instalment first, whatever seq.",
        "due_date": "For instalment_due: the date it falls due.",
        "reversed_event_id": "For reversal: the event_id of the payment reversed.",
    },
    "TransactionEvent": {
        **_COMMON,
        "kind": "credit (money in), debit (money out) or bounced_debit (a debit the account "
        "could not cover).",
        "account_id": "The customer's account (free text id).",
        "amount": "Amount moved (or attempted, for a bounced debit), in the account currency's "
        "major unit.",
        "balance_after": "Account balance after the movement, if known (feeds the balance "
        "features).",
        "counterparty": "For credits: who paid (counts distinct payers); optional.",
    },
    "DelinquencyStatus": {
        **_COMMON,
        "event_time": "The moment the status is as of, RFC 3339 with a UTC offset: it describes "
        "the loan at the end of that UTC day (a nightly file about 31 March carries a 31 March "
        "time, not the time it was produced). It also drives the bounds (lateness, future skew).",
        "kind": "delinquency_status: the lender's own delinquency of one loan.",
        "loan_id": "The loan reported on (a LoanEvent's loan_id).",
        "days_past_due": "The lender's days past due of the loan at the end of the day, 0 = "
        "current; from this report on it is the loan's DPD, aged a day per day until a newer "
        "report or a payment clearing overdue_amount.",
        "overdue_amount": "The lender's overdue amount of the loan, in the loan currency's major "
        "unit; payments on later days clear it (the loan is then current). Omitted: none when "
        "days_past_due is 0; unknown when it is positive (only a newer report cures then).",
        "five_category": "The lender's five-category classification of the loan, if it reports "
        "one: the five-category floor is at least this until a newer report.",
    },
    "Reason": {
        "code": "The characteristic (a scorecard column).",
        "text": "Human-readable: the characteristic, its value and the points it costs.",
        "points_lost": "Points below the characteristic's best bin.",
    },
    "Alert": {
        **_COMMON,
        "alert_id": "Stable id of the alert across its lifecycle and across replays.",
        "status": "opened, escalated (worse), resolved (a payment cured the arrears) or expired.",
        "severity": "watch (a watch-list signal, not to be worked), blue, yellow, orange or red.",
        "signal": "What fired: grade_worsening, dpd_bucket, bounced_debit, pre_due_shortfall, "
        "inflow_collapse, rate_increase or high_risk.",
        "old_grade": "The reference grade the worsening is measured from.",
        "new_grade": "The grade now.",
        "old_score": "The reference score.",
        "new_score": "The score now.",
        "pd": _PD,
        "exposure": _EXPOSURE,
        "priority": _PRIORITY,
        "reasons": "Top reasons: characteristics losing the most points against their best.",
        "delta_reasons": "Characteristics that lost points since the reference grade.",
        "dpd": "Days past due now: the lender's reported DPD for a loan it reports on, else from "
        "the oldest unpaid instalment; the largest over the customer's loans.",
        "m_bucket": "Delinquency bucket (M0 current, M1 1-30, ...).",
        "five_category": "The five-category classification floor from DPD and the lender's "
        "reported categories.",
        "treatment": "Recommended rung of the collection ladder.",
        "contact_constraints": "Rules any contact must follow (hours, call limits, no third "
        "parties).",
        "scorecard_version": "Content-hash version of the scorecard that scored.",
        "trigger_event_id": "The input event that caused this record.",
        "trigger_topic": "Input role of that event (loans, repayments, transactions).",
        "trigger_partition": "Its Kafka partition.",
        "trigger_offset": "Its Kafka offset.",
        "emitted_at": "When riskmon sent the record (event time in a backtest).",
        "arm": _ARM,
    },
    "GradeChange": {
        **_COMMON,
        "old_grade": "Grade before.",
        "new_grade": "Grade after.",
        "old_score": "Score before.",
        "new_score": "Score after.",
        "pd": _PD,
        "exposure": _EXPOSURE,
        "priority": _PRIORITY,
        "scorecard_version": "Content-hash version of the scorecard that scored.",
        "trigger_event_id": "The input event that caused the change.",
        "arm": _ARM,
    },
    "DeadLetter": {
        **_COMMON,
        "reason": "Why: not_json, schema, too_deep, oversized, missing_key, key_mismatch, "
        "too_late, future_event, time_out_of_range, unknown_loan, instalment_gap, "
        "aggregate_overflow, "
        "unknown_topic, processing_error.",
        "detail": "What exactly was wrong (at most 500 characters).",
        "topic": "Topic the message came from.",
        "partition": "Its partition.",
        "offset": "Its offset.",
        "key": "Its Kafka key (base64), null if it had none.",
        "original": "The message's bytes as received (base64).",
    },
    "ModelRecord": {
        "schema_version": "Version of this record's schema; riskmon reads versions up to its own.",
        "role": "champion (scores every customer not routed to the challenger) or challenger; "
        "also the Kafka key.",
        "share": "Percent of customers (0-100) the challenger takes: those whose stable hash "
        "bucket of the customer id (crc32 mod 100) is below it. Ignored for the champion.",
        "shadow": "Challenger only: it scores its share's customers but emits nothing; the "
        "champion keeps deciding for them (compare in the metrics).",
        "card": "The scorecard artifact document (riskmon scorecard train), with its "
        "content-hash version.",
        "published_at": "When the record was published (UTC).",
    },
}
