"""`riskmon simulate`: a seeded synthetic SME loan book, delivered the way real feeds arrive.

The generative model (firms, loans, latent health, money flows, default) is documented in
``streams/sim/book.py`` and stepped month by month in ``streams/sim/month.py``. This module adds
the **delivery**: records come out in delivery order, with

* duplicates (``dup_rate`` of events re-sent, same bytes, up to a day later),
* late / out-of-order events (``late_rate``; ``too_late_share`` of them beyond the 7-day lateness
  bound, the rest 1 h to 6 days late; contract openings are never late),
* malformed messages (``malformed_rate`` of all messages: garbage bytes, truncated JSON, wrong
  types, unknown kind), as raw bytes.

With ``reported_dpd``, the lender's own delinquency is reported too: a ``delinquency_status`` per
live loan at the end of every month (23:59:59 UTC of its last day), its days past due, overdue
amount and five-category floor as the book stands (oldest unpaid instalment, oldest-first
allocation: what riskmon derives at that moment). They are delivered on time and once, outside
the delivery noise, so every other message is the same as without them.

Output: an iterator of :class:`SimRecord` (topic suffix, key, value, event time) for in-process
producing, or JSON lines (one message per line, malformed ones raw; :func:`records_from_lines`
turns the file back into exactly the same records). Ground truth (default date, health summary)
goes to a separate CSV, never into the events. Same config and seed -> same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
from numpy.typing import NDArray

from scoring.errors import InputError
from streams.sim.book import (
    DAY,
    GUARANTEES,
    INDUSTRIES,
    METHODS,
    REGIONS,
    TOPICS,
    Block,
    Book,
    new_book,
)
from streams.sim.encode import Encoder
from streams.sim.lines import LineBook, drop_line_firms
from streams.sim.month import step_month

LATENESS_BOUND_S = 7 * DAY
MALFORMED_KINDS = ("garbage", "truncated", "wrong_type", "unknown_kind")


class SimRecord(NamedTuple):
    """One message to produce. ``topic`` is the logical input name (loans/repayments/...)."""

    topic: str
    key: bytes | None
    value: bytes
    event_time: float  # epoch seconds; a malformed message carries its predecessor's time


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate and how it is delivered. Validated at construction."""

    customers: int = 10_000
    months: int = 12
    seed: int = 0
    start: dt.date = dt.date(2025, 1, 1)
    dup_rate: float = 0.01
    late_rate: float = 0.01
    too_late_share: float = 0.2
    malformed_rate: float = 0.001
    reported_dpd: bool = False  # monthly lender delinquency statuses (off: the default output)
    lines_share: float = 0.0  # share of firms on a credit line (0: the default output)

    def __post_init__(self) -> None:
        if not 1 <= self.customers <= 10_000_000:
            raise InputError(f"customers must be in 1..10000000, got {self.customers}")
        if not 1 <= self.months <= 120:
            raise InputError(f"months must be in 1..120, got {self.months}")
        if self.start.day != 1:
            raise InputError(f"start must be the first day of a month, got {self.start}")
        if not 0 <= self.seed < 2**63:
            raise InputError(f"seed must be a non-negative integer, got {self.seed}")
        for name in ("dup_rate", "late_rate", "too_late_share", "malformed_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 0.5 and not (name == "too_late_share" and 0.0 <= v <= 1.0):
                raise InputError(f"{name} must be in 0..0.5, got {v}")
        if not 0.0 <= self.lines_share <= 1.0:
            raise InputError(f"lines_share must be in 0..1, got {self.lines_share}")


@dataclass(frozen=True, slots=True)
class TruthRow:
    """Ground truth of one customer (the CSV row)."""

    customer_id: str
    default_date: str  # ISO date of the first day-end at 90+ DPD, "" if none
    distress_onset: str  # start of the latest distress episode (may precede the book), "" if none
    distress_months: int
    health_start: float
    health_end: float
    health_min: float
    industry: str
    region: str
    years_in_business: float
    shareholder_holding_years: float
    repayment_method: str  # of the first loan
    guarantee_method: str
    rate_increase_date: str


_KIND_TOPIC = {
    b"opened": "loans",
    b"changed": "loans",
    b"closed": "loans",
    b"instalment_due": "repayments",
    b"payment_received": "repayments",
    b"reversal": "repayments",
    b"credit": "transactions",
    b"debit": "transactions",
    b"bounced_debit": "transactions",
    b"delinquency_status": "loans",
    b"draw": "loans",
    b"statement": "loans",
}
_KIND = re.compile(rb'"kind":"([a-z_]+)"')
_CUSTOMER = re.compile(rb'"customer_id":"([^"\\]{1,128})"')


def topic_of(value: bytes) -> str:
    """The input topic of a message, from its ``kind``; unroutable messages spread by checksum."""
    m = _KIND.search(value)
    if m is not None and m.group(1) in _KIND_TOPIC:
        return _KIND_TOPIC[m.group(1)]
    return TOPICS[zlib.crc32(value) % len(TOPICS)]


def key_of(value: bytes) -> bytes | None:
    """The partition key (customer id bytes) of a message, if one can be found in it."""
    m = _CUSTOMER.search(value)
    return m.group(1) if m is not None else None


def _event_time(value: bytes) -> float | None:
    m = re.search(rb'"event_time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z"', value)
    if m is None:
        return None
    try:
        return dt.datetime.fromisoformat(m.group(1).decode()).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:  # not a real date (month 13): the worker dead-letters the message
        return None


def records_from_lines(lines: Iterable[bytes]) -> Iterator[SimRecord]:
    """JSON lines (as written by :func:`write_jsonl`) -> the records :class:`Simulation` made."""
    prev = 0.0
    for raw in lines:
        value = raw[:-1] if raw.endswith(b"\n") else raw
        t = _event_time(value)
        prev = prev if t is None else t
        yield SimRecord(topic_of(value), key_of(value), value, prev)


class Simulation:
    """A seeded run: iterate :meth:`records` once, then read :meth:`truth`."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self._rng = np.random.default_rng(cfg.seed)
        self._drng = np.random.default_rng([cfg.seed, 1])  # delivery noise, independent stream
        start_month = np.datetime64(cfg.start, "M")
        self.book: Book = new_book(cfg.customers, start_month, cfg.months, self._rng)
        self._enc = Encoder(cfg.customers, cfg.seed)
        self._h_end: NDArray[np.float64] | None = None
        self._method0 = self.book.method.copy()
        self.counts = {"events": 0, "duplicates": 0, "late": 0, "too_late": 0, "malformed": 0}
        if cfg.reported_dpd:
            self.counts["statuses"] = 0
        self._lines: LineBook | None = None
        if cfg.lines_share > 0:  # its own random stream: the book's draws stay the same
            self._lines = LineBook(self.book, cfg.lines_share, cfg.seed, cfg.months)
            self.counts["lines"] = int(self._lines.idx.size)

    @property
    def end_epoch_s(self) -> int:
        return int(self.book.month_start_day(self.cfg.months)) * DAY

    def records(self) -> Iterator[SimRecord]:
        """All messages of the run in delivery order."""
        pend_t = np.zeros(0, np.int64)
        pend_ev = np.zeros(0, np.int64)
        pend_v: list[bytes] = []
        pend_topic: list[str] = []
        pend_key: list[bytes | None] = []
        prev = 0.0
        for m in range(self.cfg.months):
            blocks = step_month(self.book, m, self._rng, self._enc)
            if self._lines is not None:
                blocks = drop_line_firms(blocks, self._lines.is_line)
                blocks += self._lines.step(self.book, m, self._enc)
            deliver, ev_t, values, topics, keys = self._deliver(blocks, m)
            if self.cfg.reported_dpd:  # on time, once: outside the delivery noise's draws
                st = self._enc.statuses(m, self.book)
                if self._lines is not None:  # of instalment loans only
                    st = drop_line_firms([st], self._lines.is_line)[0]
                deliver = np.concatenate([deliver, st.t])
                ev_t = np.concatenate([ev_t, st.t])
                values = values + st.values
                topics = topics + ["loans"] * len(st.values)
                keys = keys + [self._enc.cid[i].encode() for i in st.cust.tolist()]
                self.counts["statuses"] += len(st.values)
            all_t = np.concatenate([pend_t, deliver])
            all_ev = np.concatenate([pend_ev, ev_t])
            all_v = pend_v + values
            all_topic = pend_topic + topics
            all_key = pend_key + keys
            order = np.argsort(all_t, kind="stable")
            month_end = int(self.book.month_start_day(m + 1)) * DAY
            last = m == self.cfg.months - 1
            cut = len(order) if last else int(np.searchsorted(all_t[order], month_end))
            head = order[:cut]
            for j, t in zip(head.tolist(), all_ev[head].astype(float).tolist(), strict=True):
                if t < 0:  # malformed: the same rule as records_from_lines
                    parsed = _event_time(all_v[j])
                    t = prev if parsed is None else parsed
                prev = t
                yield SimRecord(all_topic[j], all_key[j], all_v[j], t)
            rest = order[cut:]
            pend_t, pend_ev = all_t[rest], all_ev[rest]
            pend_v = [all_v[j] for j in rest.tolist()]
            pend_topic = [all_topic[j] for j in rest.tolist()]
            pend_key = [all_key[j] for j in rest.tolist()]
        self._h_end = self.book.h.copy()

    def _deliver(
        self, blocks: list[Block], m: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], list[bytes], list[str], list[bytes | None]]:
        """Delivery times with lateness and duplicates, plus malformed messages."""
        cfg, rng = self.cfg, self._drng
        values = [v for blk in blocks for v in blk.values]
        ev_t = np.concatenate([blk.t for blk in blocks])
        cust = np.concatenate([blk.cust for blk in blocks])
        topic_idx = np.concatenate([np.full(len(blk.values), blk.topic) for blk in blocks])
        may_late = np.concatenate([np.full(len(blk.values), blk.may_be_late) for blk in blocks])
        n = len(values)
        late = may_late & (rng.random(n) < cfg.late_rate / max(float(may_late.mean()), 1e-9))
        too = late & (rng.random(n) < cfg.too_late_share)
        delay = np.where(
            too,
            rng.integers(LATENESS_BOUND_S + 12 * 3600, 16 * DAY, n),
            rng.integers(3600, 6 * DAY, n),
        )
        deliver = ev_t + np.where(late, delay, 0)
        dup = np.flatnonzero(rng.random(n) < cfg.dup_rate)
        dup_t = deliver[dup] + rng.integers(1, DAY, dup.size)
        self.counts["events"] += n
        self.counts["late"] += int(late.sum())
        self.counts["too_late"] += int(too.sum())
        self.counts["duplicates"] += int(dup.size)
        cids = self._enc.cid
        topics = [TOPICS[k] for k in topic_idx.tolist()]
        keys: list[bytes | None] = [cids[i].encode() for i in cust.tolist()]
        values += [values[j] for j in dup.tolist()]
        topics += [topics[j] for j in dup.tolist()]
        keys += [keys[j] for j in dup.tolist()]
        deliver = np.concatenate([deliver, dup_t])
        ev_t = np.concatenate([ev_t, ev_t[dup]])
        # malformed: a share of all delivered messages
        k = int(rng.binomial(len(values), cfg.malformed_rate / (1 + cfg.malformed_rate)))
        base = rng.integers(0, n, k) if n else np.zeros(0, np.int64)
        kinds = rng.integers(0, len(MALFORMED_KINDS), k)
        bad = [
            _malformed(values[b], int(kd), j, m, rng)
            for j, (b, kd) in enumerate(zip(base.tolist(), kinds.tolist(), strict=True))
        ]
        self.counts["malformed"] += k
        values += bad
        topics += [topic_of(v) for v in bad]
        keys += [key_of(v) for v in bad]
        deliver = np.concatenate([deliver, deliver[base] + 1])
        ev_t = np.concatenate([ev_t, np.full(k, -1, np.int64)])
        return deliver, ev_t, values, topics, keys

    def truth(self) -> list[TruthRow]:
        """Per-customer ground truth; call after :meth:`records` is exhausted."""
        if self._h_end is None:
            raise RuntimeError("truth() is known only after records() has been consumed")
        b = self.book
        day = _iso_day
        default_day = b.default_day
        if self._lines is not None:  # a line firm defaults on its line
            default_day = default_day.copy()
            default_day[self._lines.idx] = self._lines.default_day
        return [
            TruthRow(
                customer_id=self._enc.cid[i],
                default_date=day(int(default_day[i])),
                distress_onset=day(int(b.onset_day[i])),
                distress_months=int(b.distress_months[i]),
                health_start=round(float(b.h_start[i]), 4),
                health_end=round(float(self._h_end[i]), 4),
                health_min=round(float(b.h_min[i]), 4),
                industry=INDUSTRIES[b.industry[i]],
                region=REGIONS[b.region[i]],
                years_in_business=float(b.years[i]),
                shareholder_holding_years=float(b.holding[i]),
                repayment_method=METHODS[self._method0[i]],
                guarantee_method=GUARANTEES[b.guarantee[i]],
                rate_increase_date=day(int(b.rate_up_day[i])),
            )
            for i in range(b.n)
        ]


def _iso_day(epoch_day: int) -> str:
    return "" if epoch_day < 0 else str(np.datetime64(epoch_day, "D"))


def _malformed(value: bytes, kind: int, j: int, m: int, rng: np.random.Generator) -> bytes:
    """A broken message derived from a valid one; never contains a newline."""
    value = value.replace(b'"event_id":"sim', b'"event_id":"bad', 1)
    name = MALFORMED_KINDS[kind]
    if name == "garbage":
        raw = rng.integers(0, 256, int(rng.integers(8, 120))).astype(np.uint8).tobytes()
        return raw.replace(b"\n", b" ").replace(b"\r", b" ")
    if name == "truncated":
        return value[: int(rng.integers(10, max(11, len(value) - 1)))]
    if name == "wrong_type":
        swapped = re.sub(rb'"amount":([0-9.]+)', rb'"amount":"\1 CNY"', value, count=1)
        if swapped != value:
            return swapped
        return re.sub(rb'"event_time":"[^"]*"', b'"event_time":1735689600', value, count=1)
    return re.sub(rb'"kind":"[a-z_]+"', b'"kind":"refund"', value, count=1)


def write_jsonl(records: Iterable[SimRecord], out: IO[bytes]) -> int:
    """Write one message per line (malformed ones as their raw bytes); return the count."""
    n = 0
    buf: list[bytes] = []
    for rec in records:
        buf.append(rec.value)
        if len(buf) >= 65536:
            n += len(buf)
            buf.append(b"")
            out.write(b"\n".join(buf))
            buf.clear()
    if buf:
        n += len(buf)
        buf.append(b"")
        out.write(b"\n".join(buf))
    return n


def write_truth(rows: list[TruthRow], path: Path) -> None:
    """Ground truth as CSV, one row per customer."""
    fields = list(TruthRow.__dataclass_fields__)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for r in rows:
            w.writerow([getattr(r, k) for k in fields])


def simulate_to_files(cfg: SimConfig, out: Path, truth: Path) -> dict[str, int]:
    """Run a simulation into a JSON-lines file and a truth CSV; return delivery counts."""
    sim = Simulation(cfg)
    try:
        with out.open("wb") as f:
            written = write_jsonl(sim.records(), f)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror}") from None
    try:
        write_truth(sim.truth(), truth)
    except OSError as exc:
        raise InputError(f"cannot write {truth}: {exc.strerror}") from None
    rows = sim.truth()
    return {
        **sim.counts,
        "messages": written,
        "customers": cfg.customers,
        "defaults": sum(1 for r in rows if r.default_date),
    }
