"""The simulated SME loan book: firms, loans, a latent financial health and its money flows.

Generative model (one step = one calendar month, vectorised with numpy across customers):

* **Firm and loan** (static, drawn at start). Industry (8) and region (6) with risk offsets;
  years in business (lognormal, median ~6 y); controlling shareholder's holding time (a share of
  it); repayment method (equal instalment 50 %, equal principal 25 %, interest-only with balloon
  25 %); guarantee (credit 50 %, guarantee 30 %, mortgage/pledge 20 %); term 6/12/24/36 months;
  principal ~ 0.5-1.5 months of revenue per year of term. Loans have run 0..term-2 months at
  the start; the feed first replays each contract (at origination) and its paid instalments.
* **Risk propensity** ``risk`` (log-odds) = industry + region + few years in business + short
  shareholder holding + interest-only + credit-only guarantee + idiosyncratic noise; a **rate
  increase** (a ``changed`` event, ~1.2 % of live loans a month) adds to it from then on and
  raises the instalment. These are the docs/domain.md factor directions.
* **Latent health** ``h`` (0 = normal, lower = weaker). Normal firms mean-revert to
  ``-0.25 * risk`` with noise plus an industry shock and a regional shock (both AR(1)). Each
  month a normal firm enters **distress** with probability ``sigmoid(ALPHA + risk - shocks)``;
  a distressed firm's health falls by 0.2-0.6 a month until it recovers (12 % a month, less when
  deep). Distress is what ends in default, but many episodes recover: not trivially separable.
* **Money**: monthly inflow = revenue x industry seasonality x ``exp(0.6 h)`` x noise, in 0-6
  credits from a payer pool that shrinks with health; spending = fixed costs + a variable share
  + owner draws above a one-month buffer, in 1-4 debits. So inflows fall and balances thin
  months before any instalment is missed.
* **Repayment**: on the due day the bank debits instalment + arrears. It succeeds when the
  balance covers it and the firm is willing (``sigmoid(4 (h + 1.8))``); otherwise a bounced
  debit, then maybe a late full payment (health > -0.6) or a partial one, or nothing. A balloon
  is refinanced with probability ``sigmoid(2 h + 2.5)``. A few payments are reversed.
* **Default** = the first day at which DPD >= 90, DPD counted at day end from the oldest unpaid
  instalment (payments allocated oldest first, docs/domain.md). Amounts are integer cents, so the
  ground truth is exact. A defaulted firm stops paying. A repaid loan closes; a healthy firm may
  renew it the next month (a new loan id, ~75 % of healthy firms).

Calibrated for about 5-8 % defaults over 12 months; see ``benchmarks/bench_simulate.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

INDUSTRIES = (
    "retail",
    "wholesale",
    "manufacturing",
    "construction",
    "catering",
    "transport",
    "agriculture",
    "services",
)
INDUSTRY_RISK = np.array([0.10, 0.0, 0.0, 0.30, 0.35, 0.10, 0.20, -0.10])
# inflow multiplier by calendar month (Jan..Dec), one row per industry
SEASON = np.array(
    [
        [0.90, 0.85, 0.95, 1.00, 1.00, 0.95, 0.95, 1.00, 1.00, 1.05, 1.10, 1.35],
        [0.95, 0.85, 1.00, 1.00, 1.00, 1.00, 0.95, 0.95, 1.05, 1.05, 1.10, 1.10],
        [0.90, 0.80, 1.05, 1.05, 1.05, 1.00, 0.95, 0.95, 1.05, 1.05, 1.05, 1.10],
        [0.60, 0.65, 0.95, 1.10, 1.15, 1.15, 1.10, 1.10, 1.10, 1.10, 1.00, 0.90],
        [1.15, 1.25, 0.90, 0.95, 1.00, 0.95, 1.00, 1.05, 0.95, 1.05, 0.85, 1.00],
        [0.95, 0.80, 1.00, 1.00, 1.00, 1.00, 1.00, 1.00, 1.05, 1.10, 1.05, 1.05],
        [0.70, 0.70, 0.80, 0.85, 0.90, 1.00, 1.00, 1.10, 1.45, 1.50, 1.10, 0.90],
        [0.95, 0.90, 1.00, 1.00, 1.00, 1.00, 0.95, 0.95, 1.00, 1.05, 1.05, 1.10],
    ]
)
REGIONS = ("east", "north", "south", "central", "west", "northeast")
REGION_RISK = np.array([-0.10, 0.0, -0.05, 0.05, 0.15, 0.20])
METHODS = ("equal_instalment", "equal_principal", "interest_only_balloon")
GUARANTEES = ("credit", "guarantee", "mortgage_pledge")
TERMS = np.array([6, 12, 24, 36])
MAXT = 36

ALPHA = -6.2  # baseline monthly distress-onset log-odds
RISK_IO = 0.55
RISK_GUARANTEE = np.array([0.7, 0.25, 0.0])  # credit, guarantee, mortgage/pledge
RISK_YOUNG = 0.8  # x exp(-years_in_business / 3)
RISK_HOLDING = 0.7  # x exp(-shareholder_holding_years / 2)
RISK_RATE_UP = 1.0
RATE_UP_HIT = 0.6
RATE_UP_MONTHLY = 0.0125
REVERSAL_RATE = 0.004
DAY = 86_400


def sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Book:
    """All customers' static profile and dynamic state, one array element per customer."""

    n: int
    start_month: np.datetime64  # datetime64[M]
    industry: NDArray[np.int64]
    region: NDArray[np.int64]
    years: NDArray[np.float64]
    holding: NDArray[np.float64]
    guarantee: NDArray[np.int64]
    revenue: NDArray[np.float64]  # typical monthly inflow, currency units
    base_risk: NDArray[np.float64]
    due_day: NDArray[np.int64]  # 1..28
    # current loan
    loan_no: NDArray[np.int64]
    method: NDArray[np.int64]
    principal_c: NDArray[np.int64]  # cents
    rate: NDArray[np.float64]
    term: NDArray[np.int64]
    fdm: NDArray[np.int64]  # month index (vs start) of instalment seq 1
    amounts: NDArray[np.int64]  # [n, MAXT] instalment amounts in cents
    principal_part: NDArray[np.int64]  # [n, MAXT] principal share of each instalment
    paid_c: NDArray[np.int64]  # paid on the current loan, cents
    active: NDArray[np.bool_]
    renew_month: NDArray[np.int64]  # month of a pending renewal, -1 none
    # latent
    h: NDArray[np.float64]
    distress: NDArray[np.bool_]
    decline: NDArray[np.float64]
    rate_up: NDArray[np.bool_]
    balance_c: NDArray[np.int64]
    industry_shock: NDArray[np.float64]
    region_shock: NDArray[np.float64]
    # ground truth
    default_day: NDArray[np.int64]  # epoch day, -1 none
    rate_up_day: NDArray[np.int64]
    onset_day: NDArray[np.int64]  # start of the latest distress episode, -1 none
    distress_months: NDArray[np.int64]
    h_start: NDArray[np.float64]
    h_min: NDArray[np.float64]
    month_days: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    month_offset: int = 48

    def month_start_day(self, m: NDArray[np.int64] | int) -> NDArray[np.int64]:
        """Epoch day of the first day of month ``m`` (relative to the start month)."""
        return self.month_days[np.asarray(m) + self.month_offset]

    @property
    def risk(self) -> NDArray[np.float64]:
        return self.base_risk + RISK_RATE_UP * self.rate_up

    def due_days(self, idx: NDArray[np.int64]) -> NDArray[np.int64]:
        """[len(idx), MAXT] epoch day of each instalment of the customers' current loans."""
        seq = np.arange(MAXT)
        months = np.clip(self.fdm[idx, None] + seq[None, :], -self.month_offset, None)
        months = np.minimum(months, len(self.month_days) - self.month_offset - 1)
        return self.month_start_day(months) + self.due_day[idx, None] - 1


def schedule(
    principal_c: NDArray[np.int64],
    rate: NDArray[np.float64],
    n_left: NDArray[np.int64],
    method: NDArray[np.int64],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Instalments (cents) and their principal parts for ``n_left`` remaining monthly payments.

    Returns two [len, MAXT] arrays, zero beyond ``n_left``. The last instalment absorbs rounding
    so the principal parts sum exactly to ``principal_c``.
    """
    k = len(principal_c)
    seq = np.arange(MAXT)[None, :]
    live = seq < n_left[:, None]
    r = rate[:, None] / 12.0
    p = principal_c[:, None].astype(np.float64)
    nl = n_left[:, None].astype(np.float64)
    annuity = p * r / (1.0 - (1.0 + r) ** -nl)
    # remaining principal before payment j for an annuity
    rem_ann = p * (1 + r) ** seq - annuity * ((1 + r) ** seq - 1) / r
    pp_ann = annuity - rem_ann * r
    pp_eq = np.broadcast_to(p / nl, (k, MAXT))
    pp_io = np.where(seq == nl - 1, p, 0.0)
    m = method[:, None]
    pp = np.where(m == 0, pp_ann, np.where(m == 1, pp_eq, pp_io))
    pp = np.where(live, np.round(pp), 0).astype(np.int64)
    last = np.clip(n_left - 1, 0, MAXT - 1)
    rows = np.arange(k)
    pp[rows, last] += principal_c - pp.sum(axis=1)
    remaining = principal_c[:, None] - np.cumsum(pp, axis=1) + pp
    interest = np.where(live, np.round(remaining * r), 0).astype(np.int64)
    return pp + interest, pp


def new_book(n: int, start_month: np.datetime64, months: int, rng: np.random.Generator) -> Book:
    """Draw ``n`` firms with one running loan each, health at its stationary mix."""
    industry = rng.choice(len(INDUSTRIES), n, p=[0.22, 0.12, 0.14, 0.10, 0.12, 0.08, 0.07, 0.15])
    region = rng.choice(len(REGIONS), n, p=[0.28, 0.18, 0.22, 0.14, 0.10, 0.08])
    years = np.round(np.exp(rng.normal(np.log(6.0), 0.8, n)).clip(0.3, 60), 1)
    holding = np.round(years * rng.beta(2.0, 1.5, n), 1)
    method = rng.choice(3, n, p=[0.5, 0.25, 0.25])
    guarantee = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    revenue = np.exp(rng.normal(np.log(120_000.0), 0.7, n))
    base_risk = (
        INDUSTRY_RISK[industry]
        + REGION_RISK[region]
        + RISK_YOUNG * np.exp(-years / 3.0)
        + RISK_HOLDING * np.exp(-holding / 2.0)
        + RISK_IO * (method == 2)
        + RISK_GUARANTEE[guarantee]
        + rng.normal(0.0, 0.6, n)
    )
    term = rng.choice(TERMS, n, p=[0.15, 0.45, 0.25, 0.15])
    mob = (rng.random(n) * (term - 1)).astype(np.int64)  # instalments already paid
    offset = 48
    month_days = (
        (start_month + np.arange(-offset, months + offset)).astype("datetime64[D]").astype(np.int64)
    )
    b = Book(
        n=n,
        start_month=start_month,
        industry=industry,
        region=region,
        years=years,
        holding=holding,
        guarantee=guarantee,
        revenue=revenue,
        base_risk=base_risk,
        due_day=rng.integers(1, 29, n),
        loan_no=np.ones(n, np.int64),
        method=method,
        principal_c=np.zeros(n, np.int64),
        rate=np.zeros(n),
        term=term,
        fdm=-mob,
        amounts=np.zeros((n, MAXT), np.int64),
        principal_part=np.zeros((n, MAXT), np.int64),
        paid_c=np.zeros(n, np.int64),
        active=np.ones(n, bool),
        renew_month=np.full(n, -1, np.int64),
        h=np.zeros(n),
        distress=np.zeros(n, bool),
        decline=np.zeros(n),
        rate_up=np.zeros(n, bool),
        balance_c=np.zeros(n, np.int64),
        industry_shock=np.zeros(len(INDUSTRIES)),
        region_shock=np.zeros(len(REGIONS)),
        default_day=np.full(n, -1, np.int64),
        rate_up_day=np.full(n, -1, np.int64),
        onset_day=np.full(n, -1, np.int64),
        distress_months=np.zeros(n, np.int64),
        h_start=np.zeros(n),
        h_min=np.zeros(n),
        month_days=month_days,
        month_offset=offset,
    )
    everyone = np.arange(n)
    draw_loan(b, everyone, rng)
    b.paid_c[:] = np.where(mob > 0, np.cumsum(b.amounts, axis=1)[everyone, mob - 1], 0)
    # stationary start: ~5 % already in a distress episode of 0-4 months
    mu = -0.25 * base_risk
    b.h = mu + rng.normal(0.0, 0.25, n)
    b.distress = rng.random(n) < 0.035 * np.exp(0.5 * base_risk).clip(0.3, 3)
    age = rng.integers(0, 5, n)
    b.decline = rng.uniform(0.2, 0.6, n)
    b.h = np.where(b.distress, b.h - b.decline * age, b.h)
    b.onset_day = np.where(b.distress, b.month_start_day(0) - 30 * age, -1)
    b.balance_c = np.round(revenue * np.exp(rng.normal(-0.5, 0.5, n)) * np.exp(0.5 * b.h) * 100)
    b.balance_c = b.balance_c.astype(np.int64)
    b.h_start = b.h.copy()
    b.h_min = b.h.copy()
    return b


def draw_loan(b: Book, idx: NDArray[np.int64], rng: np.random.Generator) -> None:
    """New principal, rate and schedule for customers ``idx`` (method/term already set)."""
    k = len(idx)
    b.principal_c[idx] = np.round(
        b.revenue[idx] * rng.uniform(0.5, 1.5, k) * (b.term[idx] / 12.0) * 100, -4
    ).astype(np.int64)
    b.rate[idx] = np.round(0.04 + 0.02 * b.base_risk[idx].clip(-1, 3) + rng.uniform(0, 0.03, k), 4)
    b.rate[idx] = b.rate[idx].clip(0.03, 0.18)
    amounts, pp = schedule(b.principal_c[idx], b.rate[idx], b.term[idx], b.method[idx])
    b.amounts[idx] = amounts
    b.principal_part[idx] = pp
    b.paid_c[idx] = 0
    b.active[idx] = True


@dataclass
class Block:
    """Events of one kind from one month, columnar; ``values`` are the encoded JSON bytes."""

    topic: int  # index into TOPICS
    cust: NDArray[np.int64]
    t: NDArray[np.int64]  # event time, epoch seconds
    values: list[bytes]
    may_be_late: bool = True


TOPICS = ("loans", "repayments", "transactions")
LOANS, REPAYMENTS, TRANSACTIONS = 0, 1, 2
