"""A customer's exposure (outstanding principal over its active loans) and expected loss.

The events carry a loan's principal, rate and schedule, but never the principal still owed, so
it is read from the schedule: a loan's outstanding principal is the present value, at the
loan's current annual rate compounded monthly (one period per instalment), of the instalments
still unpaid, the oldest unpaid one a period away. For a schedule built at that rate (equal
instalments, equal principal, interest only with a balloon; a reschedule at a new rate from the
principal left) paid instalment by instalment, that is exactly the principal left after the
instalments paid; a partly paid instalment counts for what is still unpaid of it. Payments are
the ones the DPD count uses (oldest unpaid instalment first, the pending ones up to the as-of
day included). Closed loans owe nothing here; a loan whose schedule is announced instalment by
instalment counts the instalments announced so far; an unknown rate discounts nothing. An open
credit line counts its outstanding balance (``streams.core.lines.balance_now``).

``_exposure_kernel.exposure_packed`` is the numba twin the state kernel runs after every event;
this module is its reference (``tests/unit/test_exposure.py`` holds the two to equal cents).
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.core.delinquency import day_of
from streams.core.lines import balance_now
from streams.core.state import CustomerState

__all__ = ["expected_loss", "exposure_cents", "unpaid_value"]


def unpaid_value(amounts: Sequence[int], paid: int, rate_ppm: int) -> float:
    """Present value in cents of the unpaid part of a schedule (``amounts`` in cents, oldest
    first) once ``paid`` cents went to its oldest instalments, at ``rate_ppm`` (annual, parts per
    million; negative: unknown, no discount) a month per instalment."""
    r = rate_ppm / 12_000_000.0 if rate_ppm > 0 else 0.0
    v = 1.0 / (1.0 + r)
    f = v
    before = 0
    value = 0.0
    started = False
    for a in amounts:
        covered = min(max(paid - before, 0), a)
        before += a
        left = a - covered
        if not started:
            if left <= 0:
                continue
            started = True
        value += left * f
        f *= v
    return value


def exposure_cents(state: CustomerState, as_of: float) -> int:
    """The customer's outstanding principal in cents at ``as_of`` (epoch s), rounded."""
    day = day_of(as_of)
    total = 0.0
    for loan in state.loans:
        if loan.closed_t >= 0:
            continue
        paid = loan.paid
        for d, _h, cents, _ref in loan.pending:
            if d <= day:
                paid += cents
        total += unpaid_value(loan.amts, paid, loan.rate)
    lines = sum(balance_now(x, day) for x in state.lines if x.closed_t < 0)
    return int(total + 0.5) + lines


def expected_loss(pd: float, exposure: float) -> float:
    """The priority of an alert, a grade change or a queue entry: PD x exposure, in the loan
    currency, to the cent (loss given default is not modelled: a default loses the exposure)."""
    return round(pd * exposure, 2)
