"""State versions: every state is written as version 5 (rows of 14 with the month's outflow);
versions 1 to 4 (rows of 13) are still read, with an outflow of 0."""

from __future__ import annotations

import datetime as dt
import math

import msgspec
import numpy as np
import pytest

from streams.core.delinquency import day_of, month_of_day
from streams.core.features import FEATURES, features_into
from streams.core.state import _ROW_LEN, OUTFLOW, STATE_VERSION, CustomerState, StateError
from tests.unit.test_state import Event, at, due, opened, pay, run, txn


def test_unknown_state_version_is_a_clear_error() -> None:
    data = run([opened()]).to_bytes()
    assert data[0] == STATE_VERSION == 5  # every state is written as the current version
    with pytest.raises(StateError, match="version 99 is not supported"):
        CustomerState.from_bytes(bytes([99]) + data[1:])
    with pytest.raises(StateError, match="corrupt"):
        CustomerState.from_bytes(data[:-3])


def old_bytes(s: CustomerState, version: int) -> bytes:
    """``s`` as riskmon wrote it before version 5: rows of 13 (no OUTFLOW, the last field);
    version 3 without ``lines``, 2 without ``reports`` either, 1 also one list per month."""
    assert OUTFLOW == _ROW_LEN - 1
    fields = [getattr(s, f) for f in s.__struct_fields__]
    rows = [r[:OUTFLOW] for r in s.month_rows()]
    fields[s.__struct_fields__.index("months")] = (
        rows if version == 1 else [x for r in rows for x in r]
    )
    drop = {1: 2, 2: 2, 3: 1, 4: 0}[version]
    assert all(not f for f in fields[len(fields) - drop :])  # nothing that version could hold
    return bytes([version]) + msgspec.msgpack.encode(fields[: len(fields) - drop])


def cash_history() -> list[Event]:
    """A loan, a payment, and five months of credits, debits and a bounced debit."""
    start = at(due(1))
    evs: list[Event] = [opened(), pay("p1", start, 1000.0)]
    for k in range(16):
        when = start + dt.timedelta(days=9 * k)
        evs.append(txn(f"c{k}", when, "credit", 900.0 + k, 5000.0 + k))
        evs.append(txn(f"d{k}", when + dt.timedelta(hours=1), "debit", 600.0 + k, 4400.0 + k))
    evs.append(txn("b1", start + dt.timedelta(days=20), "bounced_debit", 7000.0, 4000.0))
    return sorted(evs, key=lambda e: e.event_time)


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_older_versions_read_with_no_outflow_and_are_written_as_version_5(version: int) -> None:
    """Versions 1 to 4 kept rows of 13: they load with an outflow of 0 (unknown, so the cash
    runway is NaN until new months fill) and are written back as the current version."""
    s = run(cash_history())
    assert all(len(r) == 14 for r in s.month_rows())
    assert sum(r[OUTFLOW] > 0 for r in s.month_rows()) >= 3
    back = CustomerState.from_bytes(old_bytes(s, version))
    assert [r[:OUTFLOW] for r in back.month_rows()] == [r[:OUTFLOW] for r in s.month_rows()]
    zeroed = CustomerState.from_bytes(s.to_bytes())
    for r in range(OUTFLOW, len(zeroed.months), _ROW_LEN):
        zeroed.months[r] = 0
    assert back == zeroed  # nothing else differs
    data = back.to_bytes()
    assert data[0] == STATE_VERSION and CustomerState.from_bytes(data) == back
    runway = [f.name for f in FEATURES].index("cash_runway_3m")
    row, old_row = np.empty(len(FEATURES)), np.empty(len(FEATURES))
    features_into(s, s.last_event_time, row)
    features_into(back, s.last_event_time, old_row)
    assert row[runway] > 0 and math.isnan(old_row[runway])


def test_outflow_sums_debits_not_bounced_debits() -> None:
    """A month's OUTFLOW is the sum of its debits in cents; a bounced debit moves no money."""
    s = run(cash_history())
    m = month_of_day(day_of(at(due(1)).timestamp()))
    row = s.month_rows()[[r[0] for r in s.month_rows()].index(m)]
    ks = [k for k in range(16) if month_of_day(day_of(at(due(1)).timestamp()) + 9 * k) == m]
    assert row[OUTFLOW] == sum(60000 + 100 * k for k in ks) and row[OUTFLOW] > 0
