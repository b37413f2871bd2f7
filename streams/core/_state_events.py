"""A batch's events as the columns the state kernel reads.

:class:`EventColumns` queues what ``CustomerState.apply`` reads of each event, with the same
conversions (cents, ppm, day numbers, hashes) done over the whole batch at once; the intake kernel
(:mod:`streams.core._intake_kernel`) queues rows in the same layout straight from message bytes.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from hashlib import blake2b as _blake2b
from typing import Protocol

import numpy as np

from schemas.events import (
    GUARANTEE_METHODS,
    REPAYMENT_METHODS,
    DelinquencyStatus,
    InputEvent,
    LineEvent,
    LoanEvent,
    RepaymentEvent,
    TransactionEvent,
)
from streams.core._state_slots import *  # the arena's layout, read by name
from streams.core.delinquency import day_of_date
from streams.core.reported import report_fields
from streams.core.state import (
    _cents,
    _hash,
)

_TXN_KIND = {"credit": K_CREDIT, "debit": K_DEBIT, "bounced_debit": K_BOUNCED}
_REP_KIND = {"instalment_due": K_DUE, "payment_received": K_PAY, "reversal": K_REVERSAL}
_LOAN_KIND = {"opened": K_OPENED, "changed": K_CHANGED, "closed": K_CLOSED}
_REPAY_CODE = {m: k for k, m in enumerate(REPAYMENT_METHODS)}
_GUAR_CODE = {m: k for k, m in enumerate(GUARANTEE_METHODS)}


@lru_cache(maxsize=1 << 16)
def _id_hash(loan_id: str) -> int:
    """A loan or reversed event id's hash, offset (loan ids repeat: cached)."""
    return _hash(loan_id) - _H_OFFSET


class EventColumns:
    """A batch's events as the columns :func:`apply_many` reads (what ``CustomerState.apply``
    reads of each event, with the same conversions: cents, ppm, day numbers, hashes). Per
    event only a few appends; the conversions run over the whole batch in :meth:`arrays`."""

    def __init__(self, scan: Scanned | None = None) -> None:
        self._ints: list[int] = []  # R_INTS per event
        self._floats: list[float] = []  # R_FLOATS per event (NaN: absent)
        self._ids: list[bytes] = []  # event-id digests (state._hash before from_bytes)
        self._sched: list[int] = []
        self.n = 0
        # rows of ``scan`` (the intake kernel's, same columns) queued by :meth:`take_many`; the
        # pipeline sets it once the batch is scanned
        self.scan = scan
        self._taken: list[int] = []  # their scan rows
        self._taken_at: list[int] = []  # their places in the queue
        self._taken_slot: list[int] = []

    def take_many(self, slots: np.ndarray, rows: np.ndarray, at: np.ndarray) -> None:
        """Queue rows ``rows`` of the intake kernel's scan for the customers in arena rows
        ``slots``, at the queue places ``at`` (the places left are :meth:`add`'s, in the order
        it is called)."""
        self._taken += rows.tolist()
        self._taken_at += at.tolist()
        self._taken_slot += slots.tolist()
        self.n += len(rows)

    def add(self, slot: int, event: InputEvent, t: float) -> None:
        """Queue ``event`` (event time ``t``) for the customer in arena row ``slot``."""
        self._ids.append(_blake2b(event.event_id.encode(), digest_size=8).digest())
        if type(event) is TransactionEvent:
            kind = _TXN_KIND[event.kind]
            bal = event.balance_after
            cp = event.counterparty
            payer = zlib.crc32(cp.encode()) if cp and kind == K_CREDIT else _NONE
            self._ints += (slot, kind, 0, payer, 0, 0, 0, _NONE, _NONE, -1, 0, 0)
            self._floats += (t, event.amount, _NAN if bal is None else bal, 0.0, _NAN, 0.0, 0.0)
        elif type(event) is RepaymentEvent:
            kind = _REP_KIND[event.kind]
            seq = due = ref = 0
            if kind == K_DUE:
                assert event.instalment_seq is not None and event.due_date is not None
                seq, due = event.instalment_seq, day_of_date(event.due_date)
            elif kind == K_REVERSAL:
                assert event.reversed_event_id is not None
                ref = _id_hash(event.reversed_event_id)
            loan = _id_hash(event.loan_id)
            self._ints += (slot, kind, loan, _NONE, seq, due, ref, _NONE, _NONE, -1, 0, 0)
            self._floats += (t, event.amount, _NAN, 0.0, _NAN, 0.0, 0.0)
        elif type(event) is DelinquencyStatus:  # E_RDPD, E_ROWED, E_RCAT in seq, due, ref
            dpd, owed, cat = report_fields(event)
            loan = _id_hash(event.loan_id)
            self._ints += (slot, K_STATUS, loan, _NONE, dpd, owed, cat, _NONE, _NONE, -1, 0, 0)
            self._floats += (t, 0.0, _NAN, 0.0, _NAN, 0.0, 0.0)
        elif isinstance(event, LineEvent) or (
            isinstance(event, LoanEvent) and event.credit_limit is not None
        ):
            self._ints += (slot, K_LINE, _id_hash(event.loan_id), _NONE, 0, 0, 0)
            self._ints += (_NONE, _NONE, -1, 0, 0)
            self._floats += (t, 0.0, _NAN, 0.0, _NAN, 0.0, 0.0)
        else:
            assert isinstance(event, LoanEvent)
            sched0 = -1
            nsched = 0
            if event.schedule is not None:
                sched0 = len(self._sched) // 3
                items = sorted(
                    (i.seq, day_of_date(i.due_date), _cents(i.amount)) for i in event.schedule
                )
                nsched = len(items)
                for x in items:
                    self._sched += x
            rate, firm = event.annual_rate, event.firm
            repay, guar = event.repayment_method, event.guarantee_method
            self._ints += (
                slot,
                _LOAN_KIND[event.kind],
                _id_hash(event.loan_id),
                _NONE,
                0,
                0,
                0,
                _NONE if repay is None else _REPAY_CODE[repay],
                _NONE if guar is None else _GUAR_CODE[guar],
                sched0,
                nsched,
                firm is not None,
            )
            self._floats += (
                t,
                0.0,
                _NAN,
                event.principal or 0.0,
                _NAN if rate is None else rate,
                0.0 if firm is None else firm.years_in_business,
                0.0 if firm is None else firm.shareholder_holding_years,
            )
        self.n += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(int columns [n, EV_FIELDS], float columns [n, 3], schedules [m, 3])."""
        n = self.n
        raw = np.array(self._ints, dtype=np.int64).reshape(-1, R_INTS)
        fl = np.array(self._floats, dtype=np.float64).reshape(-1, R_FLOATS)
        ids = np.frombuffer(b"".join(self._ids), "<i8")
        if self._taken:  # merge the scanned rows in at their places
            assert self.scan is not None
            at = np.array(self._taken_at, np.int64)
            rows = np.array(self._taken, np.int64)
            mine = np.ones(n, np.bool_)
            mine[at] = False
            raw, py_raw = np.empty((n, R_INTS), np.int64), raw
            fl, py_fl = np.empty((n, R_FLOATS), np.float64), fl
            ids, py_ids = np.empty(n, np.int64), ids
            raw[mine], fl[mine], ids[mine] = py_raw, py_fl, py_ids
            raw[at] = self.scan.ints[rows]
            raw[at, 0] = self._taken_slot
            fl[at] = self.scan.floats[rows]
            ids[at] = self.scan.ids[rows]
        ev = np.empty((n, EV_FIELDS), np.int64)
        ev[:, _R_TO_E] = raw
        # state._hash: the digest as a little-endian unsigned int; kept offset (minus 2**63)
        ev[:, E_H] = ids ^ np.int64(-_H_OFFSET)
        # round(x * 100) and round(x * 1e6): numpy rounds half to even as Python does, and every
        # value here is below 2**53 (schemas bound money to 1e12, rates to 10)
        ev[:, E_AMT] = np.round(fl[:, 1] * 100)
        ev[:, E_PRINCIPAL] = np.round(fl[:, 3] * 100)
        for col, src, scale in ((E_BAL, 2, 100), (E_RATE, 4, 1_000_000)):
            x = fl[:, src]
            absent = np.isnan(x)
            ev[:, col] = np.where(absent, _NONE, np.round(np.where(absent, 0.0, x) * scale))
        evf = np.ascontiguousarray(fl[:, [0, 5, 6]])  # T_TIME, T_YEARS, T_HOLDING
        sched = np.array(self._sched, dtype=np.int64).reshape(-1, 3)
        return ev, evf, sched


class Scanned(Protocol):
    """Raw rows from elsewhere (``intake_kernel.Scan``) in :class:`EventColumns`' layout."""

    @property
    def ints(self) -> np.ndarray: ...  # [m, R_INTS]
    @property
    def floats(self) -> np.ndarray: ...  # [m, R_FLOATS]
    @property
    def ids(self) -> np.ndarray: ...  # int64 [m]: event-id digests, little-endian


R_INTS, R_FLOATS = 12, 7  # EventColumns' raw columns per event (intake_kernel fills them too)
# where the queued ints go: slot, kind, loan, payer, seq, due, ref, repay, guar, schedule, firm
_R_TO_E = [E_SLOT, E_KIND, E_LOAN, E_PAYER, E_SEQ, E_DUE, E_REF, E_REPAY, E_GUAR]
_R_TO_E += [E_SCHED0, E_SCHED_N, E_FIRM]
_NAN = float("nan")
