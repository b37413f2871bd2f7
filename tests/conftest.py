"""Shared fixtures. Every process a fixture starts, it stops by PID."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.codec import encode
from schemas.events import (
    FirmProfile,
    Instalment,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)
from scoring.artifact import Bin, Characteristic, Grade, Scorecard, save, with_version
from streams.kafka.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A fresh Tansu broker for the test session (memory-only), killed by PID at the end."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = EmbeddedBroker(log_path=log).start()
    try:
        yield b
    finally:
        b.stop()
        assert b.proc is not None and b.proc.poll() is not None, f"broker pid {b.pid} still alive"


# -- a small, readable scorecard over streaming features and a hand-made loan book ----------------
def _num(name: str, label: str, edges: list[float], points: list[int]) -> Characteristic:
    bins = tuple(Bin(f"bin {i}", p, 0.0) for i, p in enumerate(points))
    return Characteristic(
        name=name,
        label=label,
        kind="numeric",
        coefficient=-1.0,
        iv=0.1,
        bins=(*bins, Bin("missing", max(points), 0.0)),
        missing_bin=len(points),
        edges=tuple(edges),
    )


def expert_scorecard() -> Scorecard:
    """Rule-of-thumb points on four streaming features: delinquency, bounces, inflow, lateness."""
    chars = (
        _num("dpd", "days past due", [1, 31, 61, 91], [120, 90, 60, 30, 0]),
        _num("bounced_3m", "bounced debits (3 m)", [1, 2, 4], [100, 80, 60, 40]),
        _num(
            "inflow_ratio_6m", "last month inflow / 6 m average", [0.3, 0.6, 0.9], [40, 70, 90, 100]
        ),
        _num("late_6m", "late instalments (6 m)", [1, 2, 3], [100, 80, 60, 40]),
    )
    cuts = [("A", 400), ("B", 380), ("C", 350), ("D", 320), ("E", 280), ("F", 220), ("G", -1e9)]
    grades = tuple(Grade(n, m, pd=0.01 * (i + 1)) for i, (n, m) in enumerate(cuts))
    return with_version(Scorecard(characteristics=chars, grades=grades))


@pytest.fixture(scope="session")
def expert_card_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("card") / "expert.json"
    save(expert_scorecard(), path)
    return path


T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def loan_book(customers: dict[str, bool], months: int = 4) -> list[tuple[str, bytes, bytes]]:
    """(topic role, key, value) events in event-time order: customer -> deteriorates?

    A deteriorating customer pays the first instalment only, then debits bounce and inflows
    collapse; a healthy one pays every instalment and keeps its inflows.
    """
    out: list[tuple[dt.datetime, str, bytes, bytes]] = []
    for cust, bad in customers.items():
        key = cust.encode()
        sched = [
            Instalment(seq=i, due_date=(T0 + dt.timedelta(days=30 * i)).date(), amount=1000.0)
            for i in range(1, months + 3)
        ]
        firm = FirmProfile(
            industry="retail", region="north", years_in_business=3, shareholder_holding_years=2
        )
        out.append(
            (
                T0,
                "loans",
                key,
                encode(
                    LoanEvent(
                        event_id=f"{cust}-open",
                        customer_id=cust,
                        event_time=T0,
                        kind="opened",
                        loan_id=f"{cust}-L",
                        principal=5500,
                        annual_rate=0.1,
                        term_months=months + 2,
                        repayment_method="equal_instalment",
                        guarantee_method="credit",
                        schedule=sched,
                        firm=firm,
                    )
                ),
            )
        )
        for i in range(1, months + 1):
            due = T0 + dt.timedelta(days=30 * i)
            out.append(
                (
                    due,
                    "repayments",
                    key,
                    encode(
                        RepaymentEvent(
                            event_id=f"{cust}-due{i}",
                            customer_id=cust,
                            event_time=due,
                            kind="instalment_due",
                            loan_id=f"{cust}-L",
                            amount=1000.0,
                            instalment_seq=i,
                            due_date=due.date(),
                        )
                    ),
                )
            )
            paid = not bad or i == 1
            t = due + dt.timedelta(hours=1)
            if paid:
                out.append(
                    (
                        t,
                        "repayments",
                        key,
                        encode(
                            RepaymentEvent(
                                event_id=f"{cust}-pay{i}",
                                customer_id=cust,
                                event_time=t,
                                kind="payment_received",
                                loan_id=f"{cust}-L",
                                amount=1000.0,
                            )
                        ),
                    )
                )
            else:
                out.append(
                    (
                        t,
                        "transactions",
                        key,
                        encode(
                            TransactionEvent(
                                event_id=f"{cust}-bounce{i}",
                                customer_id=cust,
                                event_time=t,
                                kind="bounced_debit",
                                account_id=f"{cust}-A",
                                amount=1000.0,
                                balance_after=10.0,
                            )
                        ),
                    )
                )
            t = due + dt.timedelta(days=3)
            inflow = 50.0 if bad and i > 1 else 3000.0
            out.append(
                (
                    t,
                    "transactions",
                    key,
                    encode(
                        TransactionEvent(
                            event_id=f"{cust}-in{i}",
                            customer_id=cust,
                            event_time=t,
                            kind="credit",
                            account_id=f"{cust}-A",
                            amount=inflow,
                            balance_after=inflow,
                            counterparty="p1",
                        )
                    ),
                )
            )
    out.sort(key=lambda x: x[0])
    return [(role, k, v) for _, role, k, v in out]


@pytest.fixture
def book() -> type:
    """Access to the hand-made book helpers from tests (``book.loan_book(...)``)."""

    class _Book:
        loan_book = staticmethod(loan_book)
        T0 = T0

    return _Book
