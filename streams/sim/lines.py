"""Simulated revolving credit lines (``riskmon simulate --lines-share F``).

A share of the firms borrows on a credit line instead of an instalment loan; everything else
about them (latent health, distress, the account's money flows) is the book's model
(``streams/sim/book.py``). Per line firm, with its own random stream (so the instalment firms'
events are the same with or without lines):

* **Contract**: opened in the first month with a limit of 1.5 x the principal the firm would
  have borrowed, and drawn at once to that principal.
* **Draws**: each month before the statement, with probability 25 % (60 % in distress: a firm
  short of cash leans on its line), 5-35 % of the limit, capped at what the limit leaves.
* **Statements**: monthly on a fixed day (the 2nd-8th), interest at the annual rate / 12
  added; minimum due = min(balance, max(100.00, 4 % of balance)); due 20 days later.
* **Payments** behave by latent health as instalment payments do: a willing, healthy enough firm
  pays by the due day the minimums owed (the current one and any arrears) plus up to a quarter
  of the rest, or the whole balance (half the time when healthy); otherwise maybe late in the
  month (in full when health > -0.6, else partly), or nothing. A defaulted firm stops paying.
* **Default** (the ground truth) = the first day-end at 90+ DPD under the producer contract's
  line convention (docs/events.md): the oldest statement whose minimum is not covered by the
  payments made after it. It does not feed back into the book (the firm's health follows the
  book's model), so the book's random draws, and every other firm's events, stay the same.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from streams.sim.book import (
    DAY,
    GUARANTEES,
    INDUSTRIES,
    LOANS,
    REGIONS,
    REPAYMENTS,
    Block,
    Book,
    sigmoid,
)
from streams.sim.encode import _HEAD, Encoder, iso_days, iso_seconds

__all__ = ["LineBook", "drop_line_firms"]

HOUR = 3600
MIN_FIXED_C = 10_000  # 100.00: the minimum due's floor
MIN_SHARE = 0.04
DUE_AFTER_DAYS = 20


def drop_line_firms(blocks: list[Block], is_line: NDArray[np.bool_]) -> list[Block]:
    """The month's blocks without the instalment-loan events of the line firms (their loans,
    instalments, payments and reversals): those firms borrow on their line instead."""
    out = []
    for blk in blocks:
        if blk.topic not in (LOANS, REPAYMENTS):
            out.append(blk)
            continue
        keep = ~is_line[blk.cust]
        values = [v for v, k in zip(blk.values, keep.tolist(), strict=True) if k]
        out.append(Block(blk.topic, blk.cust[keep], blk.t[keep], values, blk.may_be_late))
    return out


class LineBook:
    """The line firms' lines, one array element per line firm (``idx``: their book rows)."""

    def __init__(self, b: Book, share: float, seed: int, months: int) -> None:
        self.rng = np.random.default_rng([seed, 2])  # independent of the book's and delivery's
        self.is_line = self.rng.random(b.n) < share
        self.idx = np.flatnonzero(self.is_line)
        k = self.idx.size
        self.limit_c = (b.principal_c[self.idx] * 3 // 2 // 100 * 100).astype(np.int64)
        self.balance_c = np.zeros(k, np.int64)
        self.credit_c = np.zeros(k, np.int64)  # paid towards the minimums (the convention)
        self.issued_c = np.zeros(k, np.int64)  # the minimums so far
        self.stmt_cum = np.zeros((k, months), np.int64)  # issued_c after each month's statement
        self.stmt_due = np.zeros((k, months), np.int64)
        self.stmt_day = self.rng.integers(1, 8, k)  # statement on the month's day 2..8
        self.default_day = np.full(k, -1, np.int64)

    def line_id(self, i: int) -> str:
        return f"K{i:07d}"

    def _oldest_unpaid_due(self, credit: NDArray[np.int64], m: int) -> NDArray[np.int64]:
        """Per line, the due day of the oldest statement (months < m + 1) not covered, -1."""
        cum = self.stmt_cum[:, : m + 1]
        unpaid = cum > credit[:, None]
        first = unpaid.argmax(axis=1)
        has = unpaid.any(axis=1)
        return np.where(has, self.stmt_due[np.arange(len(credit)), first], -1)

    def step(self, b: Book, m: int, enc: Encoder) -> list[Block]:
        """Month ``m`` of every line: its events as blocks. The book itself is only read: its
        draws (and so every other firm's events) stay the same."""
        rng, idx = self.rng, self.idx
        k = idx.size
        if k == 0:
            return []
        ms = int(b.month_start_day(m))
        me = int(b.month_start_day(m + 1))
        h = b.h[idx]
        defaulted = self.default_day >= 0
        blocks: list[Block] = []
        s_day = ms + self.stmt_day
        if m == 0:
            t_open = ms * DAY + 7 * HOUR + rng.integers(0, HOUR, k)
            blocks.append(self._opened(enc, b, t_open))
            first = np.minimum(b.principal_c[idx], self.limit_c)
            blocks.append(self._draws(enc, m, "w", np.arange(k), t_open + HOUR, first))
            self.balance_c += first
        # draws before the statement
        p = np.where(b.distress[idx], 0.6, 0.25)
        room = self.limit_c - self.balance_c
        amt = (rng.uniform(0.05, 0.35, k) * self.limit_c).astype(np.int64) // 100 * 100
        amt = np.minimum(amt, room)
        d = np.flatnonzero((rng.random(k) < p) & ~defaulted & (amt >= 100))
        t_draw = (ms + rng.integers(0, self.stmt_day)) * DAY + rng.integers(8 * HOUR, 18 * HOUR, k)
        blocks.append(self._draws(enc, m, "u", d, t_draw[d], amt[d]))
        self.balance_c[d] += amt[d]
        # the statement: interest, minimum, due date
        rate = b.rate[idx]
        self.balance_c += np.round(self.balance_c * rate / 12).astype(np.int64)
        bal = self.balance_c
        minimum = np.minimum(bal, np.maximum(MIN_FIXED_C, np.round(bal * MIN_SHARE))).astype(
            np.int64
        )
        due = s_day + DUE_AFTER_DAYS
        self.issued_c += minimum
        self.stmt_cum[:, m] = self.issued_c
        self.stmt_due[:, m] = due
        blocks.append(self._statements(enc, m, s_day, bal, minimum, due))
        # the payment, by latent health
        owed = self.issued_c - self.credit_c
        willing = rng.random(k) < sigmoid(4.0 * (h + 1.8))
        ok = ~defaulted & willing & (rng.random(k) < sigmoid(2.5 * (h + 1.2))) & (bal > 0)
        full = ok & (rng.random(k) < 0.5 * sigmoid(2.0 * h))
        extra = np.round(rng.uniform(0, 0.25, k) * np.maximum(bal - owed, 0)).astype(np.int64)
        pay_ok = np.where(full, bal, np.minimum(bal, owed + extra))
        late = ~ok & ~defaulted & (owed > 0) & (rng.random(k) < sigmoid(3.0 * (h + 0.7)))
        part = np.round(rng.uniform(0.2, 0.9, k) * owed).astype(np.int64)
        pay_late = np.minimum(bal, np.where(h > -0.6, owed, part))
        pay = np.where(ok, pay_ok, np.where(late, pay_late, 0))
        max_delay = np.maximum(me - due - 1, 2)
        delay = 2 + (rng.random(k) * (max_delay - 2)).astype(np.int64)
        pay_day = np.where(ok, due - rng.integers(0, 6, k), np.minimum(due + delay, me - 1))
        t_pay = pay_day * DAY + rng.integers(9 * HOUR, 18 * HOUR, k)
        payer = np.flatnonzero(pay > 0)
        blocks.append(self._payments(enc, m, payer, t_pay[payer], pay[payer]))
        # ground truth: the first day-end at 90+ DPD, before and after the payment
        du0 = self._oldest_unpaid_due(self.credit_c, m)
        end0 = np.where(pay > 0, pay_day, me)
        hit0 = (du0 >= 0) & (du0 + 90 >= ms) & (du0 + 90 < end0)
        self.credit_c = np.minimum(self.credit_c + pay, self.issued_c)
        self.balance_c -= pay
        du1 = self._oldest_unpaid_due(self.credit_c, m)
        hit1 = (pay > 0) & (du1 >= 0) & (np.maximum(du1 + 90, pay_day) < me)
        new = ~defaulted & (hit0 | hit1)
        self.default_day = np.where(
            new, np.where(hit0, du0 + 90, np.maximum(du1 + 90, pay_day)), self.default_day
        )
        return [blk for blk in blocks if blk.values]

    def _opened(self, enc: Encoder, b: Book, t: NDArray[np.int64]) -> Block:
        idx = self.idx
        ids = enc._ids(0, "k", idx.size)
        ts = iso_seconds(t)
        out = []
        for j, i in enumerate(idx.tolist()):
            body = (
                f'"kind":"opened","loan_id":"{self.line_id(i)}","product":"credit_line",'
                f'"credit_limit":{self.limit_c[j] / 100:.2f},"annual_rate":{b.rate[i]:.4f},'
                f'"guarantee_method":"{GUARANTEES[b.guarantee[i]]}",'
                f'"firm":{{"industry":"{INDUSTRIES[b.industry[i]]}",'
                f'"region":"{REGIONS[b.region[i]]}","years_in_business":{b.years[i]:.1f},'
                f'"shareholder_holding_years":{b.holding[i]:.1f}}}}}'
            )
            out.append((_HEAD.format(ids[j], enc.cid[i], ts[j]) + body).encode())
        return Block(LOANS, idx.copy(), t, out, may_be_late=False)

    def _draws(
        self,
        enc: Encoder,
        m: int,
        letter: str,
        rows: NDArray[np.int64],
        t: NDArray[np.int64],
        amount_c: NDArray[np.int64],
    ) -> Block:
        cust = self.idx[rows]
        ids = enc._ids(m, letter, rows.size)
        ts = iso_seconds(t)
        out = [
            (
                _HEAD.format(e, enc.cid[i], s)
                + f'"kind":"draw","loan_id":"{self.line_id(i)}","amount":{a / 100:.2f}}}'
            ).encode()
            for e, i, s, a in zip(ids, cust.tolist(), ts, amount_c.tolist(), strict=True)
        ]
        return Block(LOANS, cust, t, out)

    def _statements(
        self,
        enc: Encoder,
        m: int,
        s_day: NDArray[np.int64],
        bal: NDArray[np.int64],
        minimum: NDArray[np.int64],
        due: NDArray[np.int64],
    ) -> Block:
        cust = self.idx
        t = s_day * DAY + 23 * HOUR
        ids = enc._ids(m, "t", cust.size)
        ts = iso_seconds(t)
        dd = iso_days(due)
        out = [
            (
                _HEAD.format(e, enc.cid[i], s)
                + f'"kind":"statement","loan_id":"{self.line_id(i)}","balance":{b_ / 100:.2f},'
                f'"minimum_due":{mn / 100:.2f},"due_date":"{d}"}}'
            ).encode()
            for e, i, s, b_, mn, d in zip(
                ids, cust.tolist(), ts, bal.tolist(), minimum.tolist(), dd, strict=True
            )
        ]
        return Block(LOANS, cust.copy(), t, out)

    def _payments(
        self, enc: Encoder, m: int, rows: NDArray[np.int64], t: NDArray[np.int64], amt: NDArray
    ) -> Block:
        cust = self.idx[rows]
        ids = enc._ids(m, "q", rows.size)
        ts = iso_seconds(t)
        out = [
            (
                _HEAD.format(e, enc.cid[i], s)
                + f'"kind":"payment_received","loan_id":"{self.line_id(i)}",'
                f'"amount":{a / 100:.2f}}}'
            ).encode()
            for e, i, s, a in zip(ids, cust.tolist(), ts, amt.tolist(), strict=True)
        ]
        return Block(REPAYMENTS, cust, t, out)
