"""One simulated month of the whole book: latent update, money flows, repayments, default check.

The model is documented in ``streams/sim/book.py``; this module applies it for month ``m``
(vectorised across customers) and returns the month's events as encoded blocks.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from streams.sim.book import (
    ALPHA,
    DAY,
    MAXT,
    RATE_UP_HIT,
    RATE_UP_MONTHLY,
    REVERSAL_RATE,
    RISK_IO,
    SEASON,
    TERMS,
    Block,
    Book,
    draw_loan,
    schedule,
    sigmoid,
)
from streams.sim.encode import Encoder

I64 = NDArray[np.int64]
HOUR = 3600


def _split(
    rng: np.random.Generator, total: NDArray[np.float64], count: NDArray[np.int64]
) -> tuple[I64, I64]:
    """Split each customer's ``total`` into ``count`` random parts: (customer, cents) rows."""
    cust = np.repeat(np.arange(len(total)), count)
    w = rng.random(len(cust)) + 0.2
    wsum = np.bincount(cust, w, len(total))
    cents = np.round(total[cust] * w / wsum[cust] * 100).astype(np.int64)
    return cust, np.maximum(cents, 1)


def _times(rng: np.random.Generator, ms: int, ndays: int, k: int) -> I64:
    """Random business-hour times (06:00-22:00 UTC) in the month, epoch seconds."""
    return (ms + rng.integers(0, ndays, k)) * DAY + rng.integers(6 * HOUR, 22 * HOUR, k)


def _fully_paid(cd: I64, paid: I64, term: I64) -> I64:
    """Number of leading instalments fully covered by ``paid`` (oldest-first allocation)."""
    seq = np.arange(MAXT)[None, :]
    return ((cd <= paid[:, None]) & (seq < term[:, None])).sum(axis=1)


def _initial_book(b: Book, rng: np.random.Generator, enc: Encoder) -> list[Block]:
    """The running loans as the feed first shows them: each contract at its origination (a month
    before instalment 1, so before the start) and the instalments already paid, on their due
    days, so a consumer's state starts with the true repayment history of the loan."""
    everyone = np.arange(b.n)
    due = b.due_days(everyone)
    opened_t = (due[:, 0] - 30) * DAY + 10 * HOUR + rng.integers(0, HOUR, b.n)
    blocks = [enc.loans("opened", 0, b, everyone, opened_t)]
    mob = -b.fdm  # instalments due before the start, all paid
    seq = np.arange(MAXT)[None, :]
    paid = seq < mob[:, None]
    cust = np.repeat(everyone, mob)
    t = due[paid] * DAY + 9 * HOUR + rng.integers(0, HOUR, cust.size)
    blocks.append(enc.payments(0, b.loan_no[cust], cust, t, b.amounts[paid], letter="h"))
    return blocks


def step_month(b: Book, m: int, rng: np.random.Generator, enc: Encoder) -> list[Block]:
    """Advance the book by month ``m`` and return its events."""
    n = b.n
    everyone = np.arange(n)
    ms = int(b.month_start_day(m))
    me = int(b.month_start_day(m + 1))
    ndays = me - ms
    cal = int((b.start_month + m).astype(np.int64) % 12)
    blocks: list[Block] = []

    # contracts: the initial book, then renewals (a new loan id)
    if m == 0:
        blocks.extend(_initial_book(b, rng, enc))
    ren = np.flatnonzero(b.renew_month == m)
    if ren.size:
        old_io = b.method[ren] == 2
        b.loan_no[ren] += 1
        b.method[ren] = rng.choice(3, ren.size, p=[0.5, 0.25, 0.25])
        b.term[ren] = rng.choice(TERMS[:3], ren.size, p=[0.3, 0.5, 0.2])
        b.base_risk[ren] += RISK_IO * ((b.method[ren] == 2).astype(float) - old_io)
        b.fdm[ren] = m + 1
        b.renew_month[ren] = -1
        draw_loan(b, ren, rng)
        t = (ms + rng.integers(0, 10, ren.size)) * DAY + rng.integers(0, 6 * HOUR, ren.size)
        blocks.append(enc.loans("opened", m, b, ren, t))

    defaulted = b.default_day >= 0
    k_now = m - b.fdm  # 0-based instalment index falling due this month
    # rate increases on live loans with >= 2 instalments left (new schedule from this month)
    up = np.flatnonzero(
        b.active
        & ~defaulted
        & ~b.rate_up
        & (k_now >= 0)
        & (k_now <= b.term - 2)
        & (rng.random(n) < RATE_UP_MONTHLY)
    )
    if up.size:
        k0 = k_now[up]
        paid_pp = np.where(
            k0 > 0, np.cumsum(b.principal_part[up], axis=1)[np.arange(up.size), k0 - 1], 0
        )
        b.rate[up] = np.round(b.rate[up] + rng.uniform(0.01, 0.03, up.size), 4)
        n_left = b.term[up] - k0
        new_amt, new_pp = schedule(b.principal_c[up] - paid_pp, b.rate[up], n_left, b.method[up])
        rows = np.repeat(up, MAXT).reshape(up.size, MAXT)
        cols = k0[:, None] + np.arange(MAXT)[None, :]
        live = np.arange(MAXT)[None, :] < n_left[:, None]
        b.amounts[rows[live], cols[live]] = new_amt[live]
        b.principal_part[rows[live], cols[live]] = new_pp[live]
        b.rate_up[up] = True
        b.h[up] -= RATE_UP_HIT  # the higher instalment squeezes the firm at once
        b.rate_up_day[up] = ms
        blocks.append(enc.loans("changed", m, b, up, ms * DAY + rng.integers(0, 6 * HOUR, up.size)))

    # latent health: shocks, distress onset / recovery, drift
    b.industry_shock = 0.7 * b.industry_shock + rng.normal(0, 0.15, b.industry_shock.size)
    b.region_shock = 0.7 * b.region_shock + rng.normal(0, 0.10, b.region_shock.size)
    shock = b.industry_shock[b.industry] + b.region_shock[b.region]
    risk = b.risk
    onset = ~b.distress & ~defaulted & (rng.random(n) < sigmoid(ALPHA + risk - 1.5 * shock))
    recover = b.distress & ~defaulted & (rng.random(n) < 0.18 * sigmoid(2.0 * (b.h + 2.0)))
    b.distress = (b.distress & ~recover) | onset
    b.decline[onset] = rng.uniform(0.2, 0.6, int(onset.sum()))
    b.onset_day[onset] = ms
    eps = rng.normal(0.0, 1.0, n)
    h_normal = b.h + 0.3 * (-0.25 * risk - b.h) + 0.5 * shock + 0.15 * eps
    h_down = b.h - b.decline + 0.3 * shock + 0.1 * eps
    b.h = np.where(b.distress | defaulted, np.maximum(h_down, -4.0), h_normal)
    b.distress_months += b.distress
    b.h_min = np.minimum(b.h_min, b.h)
    h = b.h

    # account inflows and spending
    inflow = (
        b.revenue
        * SEASON[b.industry, cal]
        * np.exp(0.6 * h.clip(-4, 1))
        * rng.lognormal(0, 0.25, n)
    )
    n_cred = rng.poisson(0.6 + 3.0 * sigmoid(h + 1.0)).clip(0, 6)
    inflow = np.where(n_cred == 0, 0.0, inflow)
    bal = b.balance_c / 100.0
    fixed = 0.35 * b.revenue * np.exp(0.2 * h)
    target = 0.8 * b.revenue * np.exp(0.3 * h)  # the cash buffer a firm tries to keep
    spend = np.maximum(fixed + 0.45 * inflow + 0.4 * (bal - target), 0.7 * fixed)
    n_deb = np.where(spend > 1, 1 + rng.poisson(1.2, n).clip(0, 3), 0)
    c_cust, c_amt = _split(rng, inflow, n_cred)
    c_t = _times(rng, ms, ndays, c_cust.size)
    n_payers = (1 + 5 * sigmoid(h + 0.5)).astype(np.int64)
    c_payer = rng.integers(0, n_payers[c_cust])
    d_cust, d_amt = _split(rng, spend, n_deb)
    d_t = _times(rng, ms, ndays, d_cust.size)
    d_kind = rng.integers(0, 4, d_cust.size)

    # the month's instalment and arrears
    cd = np.cumsum(b.amounts, axis=1)
    last = np.clip(b.term - 1, 0, MAXT - 1)
    has_inst = b.active & (k_now >= 0) & (k_now < b.term)
    n_due = np.clip(k_now + 1, 0, b.term)
    cum_due = np.where(n_due > 0, cd[everyone, np.clip(n_due - 1, 0, MAXT - 1)], 0)
    owed = np.where(b.active, np.maximum(cum_due - b.paid_c, 0), 0)
    oblig = owed > 0
    due_day = ms + b.due_day - 1
    t_due = due_day * DAY + 8 * HOUR + rng.integers(0, 1800, n)
    t_try = due_day * DAY + 9 * HOUR + rng.integers(0, HOUR, n)
    due_days = b.due_days(everyone)
    n_prev = np.clip(k_now, 0, b.term)  # instalments due before this month
    s1 = _fully_paid(cd, b.paid_c, b.term)
    o1 = np.where(s1 < n_prev, due_days[everyone, np.clip(s1, 0, MAXT - 1)], -1)

    # liquidity at the debit attempt
    before = np.bincount(c_cust, c_amt * (c_t < t_try[c_cust]), n) - np.bincount(
        d_cust, d_amt * (d_t < t_try[d_cust]), n
    )
    liquid = b.balance_c + before.astype(np.int64)
    willing = rng.random(n) < sigmoid(4.0 * (h + 1.8))
    balloon = has_inst & (b.method == 2) & (k_now == b.term - 1)
    refi = balloon & ~defaulted & willing & (rng.random(n) < sigmoid(2.0 * h + 2.5))
    refi_amt = np.where(refi, b.principal_part[everyone, last], 0)
    ok = oblig & ~defaulted & willing & (liquid + refi_amt >= owed)
    bounced = oblig & ~ok
    max_delay = np.minimum(20, me - due_day - 1)  # a late payment stays in this month
    delay = 2 + (rng.random(n) * np.maximum(max_delay - 2, 0)).astype(np.int64)
    late = bounced & ~defaulted & (max_delay > 2) & (rng.random(n) < sigmoid(3.0 * (h + 0.7)))
    partial = np.round(rng.uniform(0.2, 0.9, n) * owed).astype(np.int64)
    pay = np.where(ok, owed, np.where(late, np.where(h > -0.6, owed, partial), 0))
    t_pay = np.where(ok, t_try, (due_day + delay) * DAY + rng.integers(9 * HOUR, 18 * HOUR, n))
    payers = np.flatnonzero(pay > 0)
    paid_after = b.paid_c + pay
    completes = b.active & (paid_after >= cd[everyone, last])
    rev = ok & (o1 < 0) & ~completes & (rng.random(n) < REVERSAL_RATE * np.exp(-h))
    t_rev = t_pay + rng.integers(2, 5, n) * DAY
    rev &= t_rev < me * DAY
    paid_final = paid_after - np.where(rev, pay, 0)

    # ground truth: first day-end with DPD >= 90 (oldest unpaid instalment, oldest-first)
    s2 = _fully_paid(cd, paid_after, b.term)
    o2 = np.where(s2 < n_prev, due_days[everyone, np.clip(s2, 0, MAXT - 1)], -1)
    tp_day = np.where(pay > 0, t_pay // DAY, me)
    c1 = np.maximum(ms, o1 + 90)
    c2 = np.maximum(tp_day, o2 + 90)
    hit1 = (o1 >= 0) & (c1 < np.minimum(tp_day, me))
    hit2 = (o2 >= 0) & (pay > 0) & (c2 < me)
    new_default = ~defaulted & (hit1 | hit2)
    b.default_day = np.where(new_default, np.where(hit1, c1, c2), b.default_day)
    b.paid_c = paid_final

    # repayment events
    due_idx = np.flatnonzero(has_inst)
    blocks.append(
        enc.dues(
            m, b, due_idx, t_due[due_idx], k_now[due_idx] + 1, b.amounts[due_idx, k_now[due_idx]]
        )
    )
    blocks.append(enc.payments(m, b.loan_no[payers], payers, t_pay[payers] + 1, pay[payers]))
    rv = np.flatnonzero(rev)
    payment_j = np.searchsorted(payers, rv)
    blocks.append(enc.reversals(m, b.loan_no[rv], rv, t_rev[rv], pay[rv], payment_j))
    closing = np.flatnonzero(completes & (pay > 0) & ~rev)
    if closing.size:
        blocks.append(enc.loans("closed", m, b, closing, t_pay[closing] + HOUR))
        b.active[closing] = False
        renew = rng.random(closing.size) < 0.9 * sigmoid(2.0 * h[closing] + 1.5)
        b.renew_month[closing[renew]] = m + 1

    # account transactions with a running balance (event-time order per customer)
    bo = np.flatnonzero(bounced)
    refi_i = np.flatnonzero(refi)
    parts = [
        (c_cust, c_t, c_amt, 0),
        (d_cust, d_t, -d_amt, 1),
        (payers, t_pay[payers], -pay[payers], 2),
        (bo, t_try[bo] + 60, np.zeros(bo.size, np.int64), 3),
        (refi_i, t_try[refi_i] - HOUR, refi_amt[refi_i], 4),
        (rv, t_rev[rv], pay[rv], 5),
    ]
    cust = np.concatenate([p[0] for p in parts])
    tt = np.concatenate([p[1] for p in parts])
    signed = np.concatenate([p[2] for p in parts]).astype(np.int64)
    order = np.lexsort((tt, cust))
    sc = cust[order]
    cs = np.cumsum(signed[order])
    first = np.ones(sc.size, bool)
    first[1:] = sc[1:] != sc[:-1]
    seg_start = np.maximum.accumulate(np.where(first, np.arange(sc.size), 0))
    base = cs[seg_start] - signed[order][seg_start]
    after = np.empty_like(cs)
    after[order] = b.balance_c[sc] + cs - base
    b.balance_c = b.balance_c + np.bincount(cust, signed, n).astype(np.int64)

    off = np.cumsum([0] + [p[0].size for p in parts])
    sl = [slice(off[k], off[k + 1]) for k in range(len(parts))]
    cp_debit = ("supplier", "payroll", "rent", "tax")
    blocks.append(
        enc.transactions(
            m, "c", "credit", c_cust, c_t, c_amt, after[sl[0]],
            [f"P{i:07d}-{k}" for i, k in zip(c_cust.tolist(), c_payer.tolist(), strict=True)],
        )
    )  # fmt: skip
    blocks.append(
        enc.transactions(
            m, "x", "debit", d_cust, d_t, d_amt, after[sl[1]],
            [cp_debit[k] for k in d_kind.tolist()],
        )
    )  # fmt: skip
    loan_cp = [
        enc.loan_id(i, ln)
        for i, ln in zip(payers.tolist(), b.loan_no[payers].tolist(), strict=True)
    ]
    blocks.append(
        enc.transactions(m, "l", "debit", payers, t_pay[payers], pay[payers], after[sl[2]], loan_cp)
    )
    bo_cp = [enc.loan_id(i, ln) for i, ln in zip(bo.tolist(), b.loan_no[bo].tolist(), strict=True)]
    blocks.append(
        enc.transactions(m, "b", "bounced_debit", bo, t_try[bo] + 60, owed[bo], after[sl[3]], bo_cp)
    )
    blocks.append(
        enc.transactions(
            m, "f", "credit", refi_i, t_try[refi_i] - HOUR, refi_amt[refi_i], after[sl[4]],
            ["refinance"] * refi_i.size,
        )
    )  # fmt: skip
    blocks.append(
        enc.transactions(
            m, "v", "credit", rv, t_rev[rv], pay[rv], after[sl[5]], ["loan-reversal"] * rv.size
        )
    )
    return [blk for blk in blocks if blk.values]
