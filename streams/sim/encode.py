"""Columnar simulator events -> JSON bytes of the ``schemas.events`` records.

Formatting is done with string templates over numpy-prepared columns (timestamps converted in
one vectorised call) because building a msgspec Struct per event costs more than the whole
simulation step; the unit tests decode every line with ``schemas.codec.decode`` to keep the
templates honest. Amounts are integer cents, printed with two decimals.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from streams.core.delinquency import DEFAULT_FIVE_FLOORS, FIVE_CATEGORIES
from streams.sim.book import (
    DAY,
    GUARANTEES,
    INDUSTRIES,
    LOANS,
    MAXT,
    METHODS,
    REGIONS,
    REPAYMENTS,
    TRANSACTIONS,
    Block,
    Book,
)

_HEAD = (
    '{{"schema_version":1,"event_id":"{}","customer_id":"{}","event_time":"{}Z",'
    '"source":"simulator",'
)


def iso_seconds(t: NDArray[np.int64]) -> list[str]:
    """Epoch seconds -> 'YYYY-MM-DDTHH:MM:SS' strings (UTC), vectorised."""
    out: list[str] = np.datetime_as_string(t.astype("datetime64[s]"), unit="s").tolist()
    return out


def iso_days(d: NDArray[np.int64]) -> list[str]:
    out: list[str] = np.datetime_as_string(d.astype("datetime64[D]"), unit="D").tolist()
    return out


class Encoder:
    """Holds the id strings of a book and turns columns into encoded records."""

    def __init__(self, n: int, seed: int) -> None:
        self.cid = [f"C{i:07d}" for i in range(n)]
        self.seed = seed

    def _ids(self, m: int, letter: str, k: int) -> list[str]:
        prefix = f"sim{self.seed}-{m}{letter}"
        return [f"{prefix}{j}" for j in range(k)]

    def loan_id(self, i: int, loan_no: int) -> str:
        return f"L{i:07d}-{loan_no}"

    def loans(
        self, kind: str, m: int, b: Book, idx: NDArray[np.int64], t: NDArray[np.int64]
    ) -> Block:
        """``opened`` (full contract), ``changed`` (new rate and schedule) or ``closed``."""
        letter = {"opened": "o", "changed": "g", "closed": "z"}[kind]
        ids = self._ids(m, letter, len(idx))
        ts = iso_seconds(t)
        out: list[bytes] = []
        if kind == "closed":
            for j, i in enumerate(idx.tolist()):
                out.append(
                    (
                        _HEAD.format(ids[j], self.cid[i], ts[j])
                        + f'"kind":"closed","loan_id":"{self.loan_id(i, int(b.loan_no[i]))}"}}'
                    ).encode()
                )
            return Block(LOANS, idx, t, out)
        due = np.datetime_as_string(b.due_days(idx).astype("datetime64[D]"), unit="D").tolist()
        seq = np.arange(1, MAXT + 1)
        for j, i in enumerate(idx.tolist()):
            term = int(b.term[i])
            dates = due[j][:term]
            amounts = b.amounts[i, :term].tolist()
            sched = ",".join(
                f'{{"seq":{s},"due_date":"{d}","amount":{a / 100:.2f}}}'
                for s, d, a in zip(seq[:term].tolist(), dates, amounts, strict=True)
            )
            body = (
                f'"kind":"{kind}","loan_id":"{self.loan_id(i, int(b.loan_no[i]))}",'
                f'"product":"fast_loan","annual_rate":{b.rate[i]:.4f},"schedule":[{sched}]'
            )
            if kind == "opened":
                body += (
                    f',"principal":{b.principal_c[i] / 100:.2f},"term_months":{term},'
                    f'"repayment_method":"{METHODS[b.method[i]]}",'
                    f'"guarantee_method":"{GUARANTEES[b.guarantee[i]]}",'
                    f'"firm":{{"industry":"{INDUSTRIES[b.industry[i]]}",'
                    f'"region":"{REGIONS[b.region[i]]}","years_in_business":{b.years[i]:.1f},'
                    f'"shareholder_holding_years":{b.holding[i]:.1f}}}'
                )
            out.append((_HEAD.format(ids[j], self.cid[i], ts[j]) + body + "}").encode())
        return Block(LOANS, idx, t, out, may_be_late=kind != "opened")

    def dues(
        self,
        m: int,
        b: Book,
        idx: NDArray[np.int64],
        t: NDArray[np.int64],
        seq: NDArray[np.int64],
        amount_c: NDArray[np.int64],
    ) -> Block:
        ids = self._ids(m, "d", len(idx))
        ts = iso_seconds(t)
        dd = iso_days(t // DAY)
        out = [
            (
                _HEAD.format(e, self.cid[i], s)
                + f'"kind":"instalment_due","loan_id":"L{i:07d}-{ln}","amount":{a / 100:.2f},'
                f'"instalment_seq":{q},"due_date":"{d}"}}'
            ).encode()
            for e, i, s, ln, a, q, d in zip(
                ids,
                idx.tolist(),
                ts,
                b.loan_no[idx].tolist(),
                amount_c.tolist(),
                seq.tolist(),
                dd,
                strict=True,
            )
        ]
        return Block(REPAYMENTS, idx, t, out)

    def payments(
        self,
        m: int,
        loan_no: NDArray[np.int64],
        idx: NDArray[np.int64],
        t: NDArray[np.int64],
        amount_c: NDArray[np.int64],
        letter: str = "p",
    ) -> Block:
        ids = self._ids(m, letter, len(idx))
        ts = iso_seconds(t)
        out = [
            (
                _HEAD.format(e, self.cid[i], s)
                + f'"kind":"payment_received","loan_id":"L{i:07d}-{ln}","amount":{a / 100:.2f}}}'
            ).encode()
            for e, i, s, ln, a in zip(
                ids, idx.tolist(), ts, loan_no.tolist(), amount_c.tolist(), strict=True
            )
        ]
        return Block(REPAYMENTS, idx, t, out)

    def reversals(
        self,
        m: int,
        loan_no: NDArray[np.int64],
        idx: NDArray[np.int64],
        t: NDArray[np.int64],
        amount_c: NDArray[np.int64],
        payment_j: NDArray[np.int64],
    ) -> Block:
        ids = self._ids(m, "r", len(idx))
        ts = iso_seconds(t)
        pay = f"sim{self.seed}-{m}p"
        out = [
            (
                _HEAD.format(e, self.cid[i], s)
                + f'"kind":"reversal","loan_id":"L{i:07d}-{ln}","amount":{a / 100:.2f},'
                f'"reversed_event_id":"{pay}{pj}"}}'
            ).encode()
            for e, i, s, ln, a, pj in zip(
                ids,
                idx.tolist(),
                ts,
                loan_no.tolist(),
                amount_c.tolist(),
                payment_j.tolist(),
                strict=True,
            )
        ]
        return Block(REPAYMENTS, idx, t, out)

    def transactions(
        self,
        m: int,
        letter: str,
        kind: str,
        idx: NDArray[np.int64],
        t: NDArray[np.int64],
        amount_c: NDArray[np.int64],
        balance_c: NDArray[np.int64],
        counterparty: list[str],
    ) -> Block:
        ts = iso_seconds(t)
        cid = self.cid
        head = f'{{"schema_version":1,"event_id":"sim{self.seed}-{m}{letter}'
        mid = '","source":"simulator","kind":"' + kind + '","account_id":"A'
        out = [
            (
                f'{head}{j}","customer_id":"{cid[i]}","event_time":"{s}Z{mid}{cid[i][1:]}",'
                f'"amount":{a / 100:.2f},"balance_after":{bal / 100:.2f},"counterparty":"{cp}"}}'
            ).encode()
            for j, i, s, a, bal, cp in zip(
                range(len(ts)),
                idx.tolist(),
                ts,
                amount_c.tolist(),
                balance_c.tolist(),
                counterparty,
                strict=True,
            )
        ]
        return Block(TRANSACTIONS, idx, t, out)

    def statuses(self, m: int, b: Book) -> Block:
        """The lender's ``delinquency_status`` of every live loan at the end of month ``m``, as
        the book stands: days past due from the oldest unpaid instalment (oldest-first
        allocation), the amount due and unpaid, the five-category floor of those days."""
        idx = np.flatnonzero(b.active)
        day = int(b.month_start_day(m + 1)) - 1  # the month's last day, reported at its end
        term = b.term[idx]
        cd = np.cumsum(b.amounts[idx], axis=1)
        n_due = np.clip(m - b.fdm[idx] + 1, 0, term)  # instalments due by the month's end
        seq = np.arange(MAXT)[None, :]
        settled = ((cd <= b.paid_c[idx, None]) & (seq < term[:, None])).sum(axis=1)
        late = settled < n_due
        rows = np.arange(idx.size)
        oldest = b.due_days(idx)[rows, np.clip(settled, 0, MAXT - 1)]
        dpd = np.where(late, np.maximum(day - oldest, 0), 0)
        due_c = np.where(n_due > 0, cd[rows, np.clip(n_due - 1, 0, MAXT - 1)], 0)
        owed = np.maximum(due_c - b.paid_c[idx], 0)
        cat = np.searchsorted(np.asarray(DEFAULT_FIVE_FLOORS), dpd, side="left")
        t = np.full(idx.size, (day + 1) * DAY - 1, np.int64)
        ids = self._ids(m, "s", len(idx))
        stamp = iso_seconds(t[:1])[0] if idx.size else ""
        out = []
        for j, i in enumerate(idx.tolist()):
            body = (
                f'"kind":"delinquency_status","loan_id":"{self.loan_id(i, int(b.loan_no[i]))}",'
                f'"days_past_due":{int(dpd[j])}'
            )
            if owed[j] > 0:
                body += f',"overdue_amount":{owed[j] / 100:.2f}'
            body += f',"five_category":"{FIVE_CATEGORIES[int(cat[j])]}"}}'
            out.append((_HEAD.format(ids[j], self.cid[i], stamp) + body).encode())
        return Block(LOANS, idx, t, out, may_be_late=False)
