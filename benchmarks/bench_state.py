"""Cost of the customer state on the hot path: apply, feature row, to_bytes / from_bytes, bytes.

Typical customer: 2 loans, a year of history, 20 account movements a month, monthly repayments.
Worst case: ``max_loans`` loans with 36-instalment schedules, the id memory full (a burst inside
the lateness bound), 16 payers, every month populated, and pending payments.

    .venv/bin/python benchmarks/bench_state.py [--json OUT]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Literal

import numpy as np

from schemas.events import (
    FirmProfile,
    Instalment,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)
from streams.core.features import FEATURES, FeatureBatch, features_and_facts, features_into
from streams.core.state import CustomerState, StateConfig

UTC = dt.UTC
START = dt.datetime(2024, 1, 3, 9, tzinfo=UTC)
Event = LoanEvent | RepaymentEvent | TransactionEvent


def _loan(cid: str, lid: str, at: dt.datetime, n: int, amount: float) -> LoanEvent:
    first = at.date() + dt.timedelta(days=30)
    sched = [
        Instalment(seq=i + 1, due_date=first + dt.timedelta(days=30 * i), amount=amount)
        for i in range(n)
    ]
    firm = FirmProfile(
        industry="retail", region="east", years_in_business=6.0, shareholder_holding_years=4.0
    )
    return LoanEvent(
        event_id=f"{lid}-open",
        customer_id=cid,
        event_time=at,
        kind="opened",
        loan_id=lid,
        principal=amount * n,
        annual_rate=0.08,
        term_months=n,
        repayment_method="equal_instalment",
        guarantee_method="credit",
        schedule=sched,
        firm=firm,
    )


def customer_events(
    cid: str, months: int = 12, loans: int = 2, term: int = 12, movements: int = 20
) -> list[Event]:
    """A year in the life of a customer, in event-time order."""
    evs: list[Event] = []
    for j in range(loans):
        lo = _loan(cid, f"{cid}-L{j}", START + dt.timedelta(hours=j), term, 1000.0 + 100 * j)
        evs.append(lo)
        assert lo.schedule is not None
        for ins in lo.schedule:
            t = dt.datetime.combine(ins.due_date, dt.time(10), UTC) - dt.timedelta(days=j % 2)
            if t < START + dt.timedelta(days=30 * months):
                evs.append(
                    RepaymentEvent(
                        event_id=f"{cid}-L{j}-p{ins.seq}",
                        customer_id=cid,
                        event_time=t,
                        kind="payment_received",
                        loan_id=f"{cid}-L{j}",
                        amount=ins.amount,
                    )
                )
    bal = 5000.0
    for k in range(months * movements):
        t = START + dt.timedelta(hours=1 + k * 30 * 24 / movements)
        kind: Literal["credit", "debit", "bounced_debit"] = (
            "credit" if k % 3 == 0 else ("bounced_debit" if k % 97 == 5 else "debit")
        )
        bal += 900.0 if kind == "credit" else -400.0
        evs.append(
            TransactionEvent(
                event_id=f"{cid}-t{k}",
                customer_id=cid,
                event_time=t,
                kind=kind,
                account_id=f"{cid}-A",
                amount=450.0,
                balance_after=bal,
                counterparty=f"payer{k % 7}" if kind == "credit" else None,
            )
        )
    evs.sort(key=lambda e: e.event_time)
    return evs


def worst_customer(cfg: StateConfig) -> CustomerState:
    """Every bounded structure at its cap."""
    cid = "worst-customer-with-a-long-identifier-0123456789"
    evs = customer_events(cid, months=13, loans=cfg.max_loans, term=36, movements=20)
    s = CustomerState.new(cid)
    for e in evs:
        s.apply(e, cfg)
    t0 = s.last_event_time
    for k in range(cfg.max_recent_ids + 4):  # a burst inside the lateness bound, many payers
        at = dt.datetime.fromtimestamp(t0 + 60 * (k + 1), UTC)
        s.apply(
            TransactionEvent(
                event_id=f"burst-{k}",
                customer_id=cid,
                event_time=at,
                kind="credit",
                account_id="A",
                amount=123456.78,
                balance_after=-98765432.1,
                counterparty=f"burst-payer-{k}",
            ),
            cfg,
        )
    for j, loan in enumerate(s.loans):  # partial payments still pending
        for k in range(3):
            at = dt.datetime.fromtimestamp(t0 + 3600 * (k + 1), UTC)
            s.apply(
                RepaymentEvent(
                    event_id=f"pp-{j}-{k}",
                    customer_id=cid,
                    event_time=at,
                    kind="payment_received",
                    loan_id=f"{cid}-L{j}",
                    amount=333.33,
                ),
                cfg,
            )
        assert loan.pending
    return s


def _per_call(fn: Callable[[], object], n: int) -> float:
    fn()  # warm-up: the first call of a jitted kernel loads it from numba's cache (~0.4 s)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=300)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    cfg = StateConfig()

    streams = [customer_events(f"cust-{i:07d}") for i in range(args.customers)]
    n_events = sum(len(x) for x in streams)
    states = [CustomerState.new(f"cust-{i:07d}") for i in range(args.customers)]
    t0 = time.perf_counter()
    for s, evs in zip(states, streams, strict=True):
        for e in evs:
            s.apply(e, cfg)
    apply_us = (time.perf_counter() - t0) / n_events * 1e6

    s = states[0]
    as_of = s.last_event_time
    row = np.empty(len(FEATURES), dtype=np.float64)
    feat_us = _per_call(lambda: features_into(s, as_of, row, cfg), 20000)
    both_us = _per_call(lambda: features_and_facts(s, as_of, row, cfg), 20000)
    facts_us = _per_call(lambda: s.facts(as_of, cfg), 20000)

    def one_batch() -> None:  # the pipeline's path: queue every customer, one kernel call
        batch = FeatureBatch(cfg)
        for x in states:
            batch.add(x, x.last_event_time)
        batch.compute()

    def one_by_one() -> None:  # the same rows, one kernel call each
        for x in states:
            features_and_facts(x, x.last_event_time, row, cfg)

    batch_us = _per_call(one_batch, 200) / len(states)
    single_us = _per_call(one_by_one, 200) / len(states)
    data = s.to_bytes()
    to_us = _per_call(s.to_bytes, 20000)
    from_us = _per_call(lambda: CustomerState.from_bytes(data), 20000)
    typical = [len(x.to_bytes()) for x in states]
    worst = worst_customer(cfg)
    wdata = worst.to_bytes()
    wfeat_us = _per_call(lambda: features_into(worst, worst.last_event_time, row, cfg), 5000)
    wto_us = _per_call(worst.to_bytes, 5000)
    wfrom_us = _per_call(lambda: CustomerState.from_bytes(wdata), 5000)

    out = {
        "events": n_events,
        "apply_us": round(apply_us, 2),
        "features_us": round(feat_us, 2),
        "facts_us": round(facts_us, 2),
        "features_and_facts_us": round(both_us, 2),
        "features_and_facts_each_us": round(single_us, 2),  # every customer, one call each
        "feature_batch_row_us": round(batch_us, 2),  # the same rows from one batched call
        "to_bytes_us": round(to_us, 2),
        "from_bytes_us": round(from_us, 2),
        "bytes_typical_mean": round(sum(typical) / len(typical), 1),
        "bytes_typical_max": max(typical),
        "bytes_worst": len(wdata),
        "worst_features_us": round(wfeat_us, 2),
        "worst_to_bytes_us": round(wto_us, 2),
        "worst_from_bytes_us": round(wfrom_us, 2),
    }
    for k, v in out.items():
        print(f"{k:24s} {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
