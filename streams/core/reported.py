"""The lender's own delinquency of a loan, as the customer state keeps it (the reference).

A :class:`~schemas.events.DelinquencyStatus` reports a loan's days past due ``R`` (and, if known,
its overdue amount ``O`` and five-category class) as of the end of its event time's UTC day
``A``. From the first report on, reports are the source of that loan's DPD:

* The report in force at the end of day ``T`` is the latest with ``A <= T`` (of two on one day,
  the one with the later event time, then the larger event-id hash: arrival order never
  matters). Days before a loan's first report keep the DPD derived from its instalments.
* It says the loan's arrears fell due on day ``A - R`` (``R = 0`` with ``O > 0``: they fall due
  that day, as riskmon counts an instalment unpaid on its due day): while they are unpaid, DPD at
  the end of day ``T`` is ``T - (A - R)``. It ages a day per day, as the lender's own count does,
  until a newer report.
* A payment cures: once the loan's payments on days after ``A`` add up to ``O``, the loan is
  current (DPD 0, nothing overdue) until a newer report. A reversal undoes its payment here too.
  Without ``O`` a past-due report cannot be cleared by payments (riskmon does not know what the
  lender counts as owed): only a newer report cures it. ``R = 0`` without ``O`` is current.
* Instalments falling due after ``A`` do not move the reported DPD: the next report does.
* ``O`` less the payments since is the loan's overdue amount (riskmon's own figure when ``O``
  is unknown); a reported five-category class stands until a newer report, whatever is paid.
* Everything else (late instalments, paid / due, consecutive late, the pre-due shortfall) still
  comes from the schedule and the payments.

A report lands within the lateness bound of its customer's watermark, so always after the fold
cursor: it waits in its loan's ``pending`` list and is folded, in day order with the loan's
payments, by ``state._advance``.
"""

from __future__ import annotations

import msgspec

from schemas.events import DelinquencyStatus
from streams.core.delinquency import FIVE_CATEGORIES

__all__ = ["PendingReport", "Report", "arrears_day", "report_fields", "reported_overdue"]

PendingReport = tuple[int, int, int, int, int, int]
"""(as-of day, whole-second event time, event-id hash, days past due, owed cents, class)."""

UNKNOWN = -1  # owed: past due by an amount the lender did not report


class Report(msgspec.Struct, array_like=True):
    """One loan's reports: the one in force at the loan's cursor (folded) and those not folded.

    Cursor: ``day`` the as-of day of the report in force (-1: none yet, the DPD is derived up
    to the first pending report), ``due`` the day its arrears count from, ``owed`` its overdue
    cents (0: current, -1: unknown), ``paid`` the cents paid on the loan on the days after
    ``day`` up to the cursor, ``cat`` its five-category index (-1: none reported).
    ``pending``: one :data:`PendingReport` per as-of day (the day's latest), sorted.
    """

    h: int  # the loan's id hash
    day: int = -1
    due: int = 0
    owed: int = 0
    paid: int = 0
    cat: int = -1
    pending: list[PendingReport] = msgspec.field(default_factory=list)

    def cursor(self) -> list[int]:
        return [self.day, self.due, self.owed, self.paid, self.cat]

    def set_cursor(self, c: list[int]) -> None:
        self.day, self.due, self.owed, self.paid, self.cat = c

    def add(self, entry: PendingReport) -> None:
        """Keep ``entry`` unless a later report of its day is pending (it replaces an earlier
        one): of one day's reports, the latest stands, whatever the arrival order."""
        pending = self.pending
        day = entry[0]
        for k, old in enumerate(pending):
            if old[0] == day:
                if entry[1:3] > old[1:3]:
                    pending[k] = entry
                return
            if old[0] > day:
                pending.insert(k, entry)
                return
        pending.append(entry)


def report_fields(ev: DelinquencyStatus) -> tuple[int, int, int]:
    """(days past due, owed cents or -1 unknown, class index or -1) of a report."""
    dpd = ev.days_past_due
    if ev.overdue_amount is not None:  # past due owes at least a cent (an amount below rounds)
        owed = max(round(ev.overdue_amount * 100), 1 if dpd > 0 else 0)
    else:
        owed = 0 if dpd == 0 else UNKNOWN
    cat = -1 if ev.five_category is None else FIVE_CATEGORIES.index(ev.five_category)
    return dpd, owed, cat


def arrears_day(c: list[int]) -> int | None:
    """The day the reported arrears count from at report cursor ``c``; None when current."""
    _day, due, owed, paid, _cat = c
    if owed == 0 or (owed > 0 and paid >= owed):
        return None
    return due


def reported_overdue(c: list[int]) -> int | None:
    """Overdue cents at report cursor ``c``; None when the lender did not report the amount."""
    owed, paid = c[2], c[3]
    if owed == UNKNOWN:
        return None
    return owed - paid if paid < owed else 0
