"""``riskmon history``: a feature table from an event file, computed by the stream's own code.

The events go through :class:`~streams.core.pipeline.Pipeline` in file order, exactly as the
backtest sends them (routing, partitions, dedupe, lateness, parking). Each time the file's event
time first passes an observation instant (the end of a month, of a week, or of a given day), every
customer with a live loan who is not 90+ days past due is taken as of that instant: the features
the stream would compute if it rescored the customer then, the card's score, grade and PD, and
the DPD. The outcome ``bad`` is 1 when the customer first reaches 90+ DPD within the horizon
after the observation, 0 when the data show the whole horizon without it, and empty when the data
end inside the horizon (censored). By default the stream's own DPD tells when a customer reached
90+ (at each of its rescorings, and as of the file's last event); a lender's labels file can
tell instead (``customer_id`` plus ``default_date``, or a 0/1 ``bad`` flag without dates).

Beside the table, ``TABLE.columns.json`` lists which columns are features, ids, outputs and the
target, so that ``riskmon train TABLE --target bad`` uses exactly the features.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import math
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.artifact import Scorecard
from scoring.data import write_table
from scoring.errors import InputError
from streams.core.entry import Entry, EntryCache
from streams.core.features import FEATURE_NAMES, FEATURES, FeatureBatch
from streams.core.pipeline import Pipeline
from streams.core.policy import Observation
from streams.core.policy_file import Policy
from streams.core.records import InRecord
from streams.evaluation.backtest import CHUNK, file_records, offline_pipeline
from streams.evaluation.fit_check import FitCheck, fit_check

DAY = 86400.0
DEFAULT_THRESHOLD = 90  # days past due that make a default ("bad")
ID_COLUMNS = ("customer_id", "as_of")
OUTPUT_COLUMNS = ("score", "grade", "pd", "dpd")
TARGET = "bad"


@dataclass(frozen=True)
class HistoryResult:
    rows: int
    bads: int
    censored: int
    observations: int  # observation instants taken
    events: int
    label_source: str
    dead_letters: dict[str, int] = field(default_factory=dict)
    fit: FitCheck | None = None  # does the scorecard suit this book?


class _Time(msgspec.Struct):
    event_time: dt.datetime | None = None


_time_decoder = msgspec.json.Decoder(_Time)


def _event_time(value: bytes) -> float | None:
    """A message's event time, read leniently (the pipeline judges the message itself)."""
    try:
        t = _time_decoder.decode(value).event_time
    except Exception:
        return None
    if t is None or t.tzinfo is None:
        return None
    return t.timestamp()


class Instants:
    """The observation instants, found as the events go by (the file is read once): the last
    second of each month (``month-end``), of each week ending on Sunday (``week-end``), or of
    each listed date (``2025-03-31,2025-06-30``)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.dates: list[float] | None = None
        if spec not in ("month-end", "week-end"):
            parsed = []
            for part in spec.split(","):
                try:
                    parsed.append(dt.date.fromisoformat(part.strip()))
                except ValueError:
                    raise InputError(
                        f"--at must be month-end, week-end or dates like 2025-03-31, got {part!r}"
                    ) from None
            self.dates = sorted({_end_of(d) for d in parsed})
        self.next: float | None = None  # the next instant to take

    def start(self, t: float) -> None:
        """The first event's time: the first instant is the end of its period."""
        if self.dates is not None:
            self.next = self.dates[0]
        else:
            self.next = self._period_end(dt.datetime.fromtimestamp(t, dt.UTC).date())

    def advance(self) -> None:
        assert self.next is not None
        if self.dates is not None:
            later = [d for d in self.dates if d > self.next]
            self.next = later[0] if later else None
        else:
            day = dt.datetime.fromtimestamp(self.next, dt.UTC).date() + dt.timedelta(days=1)
            self.next = self._period_end(day)

    def _period_end(self, day: dt.date) -> float:
        if self.spec == "month-end":
            return _end_of(day.replace(day=calendar.monthrange(day.year, day.month)[1]))
        return _end_of(day + dt.timedelta(days=(6 - day.weekday()) % 7))


def _end_of(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=dt.UTC).timestamp()


def _day(t: float) -> int:
    return int(t // DAY)


class _Labels:
    """When each customer defaulted, from the stream's own DPD or from a lender's file."""

    def __init__(self, path: Path | None) -> None:
        self.source = "stream DPD 90+"
        self.crossings: dict[str, set[int]] = {}  # customer -> days it reached 90+ DPD
        self.flags: dict[str, int] | None = None
        if path is not None:
            self._read(path)

    def _read(self, path: Path) -> None:
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read labels {path}: {exc}") from None
        if "customer_id" not in df.columns:
            raise InputError(f"labels {path} need a customer_id column")
        self.source = f"labels file {path.name}"
        date_col = next((c for c in ("default_date", "outcome_date") if c in df.columns), None)
        if date_col is not None:
            for cid, value in zip(df["customer_id"], df[date_col], strict=True):
                if value.strip():
                    try:
                        day = dt.date.fromisoformat(value.strip()[:10])
                    except ValueError:
                        raise InputError(f"labels {path}: bad date {value!r} for {cid}") from None
                    t = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
                    self.crossings.setdefault(cid, set()).add(_day(t))
            return
        flag_col = next((c for c in ("bad", "default", "flag") if c in df.columns), None)
        if flag_col is None:
            raise InputError(f"labels {path} need default_date (or outcome_date) or a bad flag")
        flags = {}
        for cid, value in zip(df["customer_id"], df[flag_col], strict=True):
            if value.strip() not in ("0", "1"):
                raise InputError(f"labels {path}: {flag_col} must be 0 or 1, got {value!r}")
            flags[cid] = int(value.strip())
        self.flags = flags

    def observe(self, o: Observation) -> None:
        """A rescoring at 90+ DPD tells the day the customer crossed 90."""
        if self.source == "stream DPD 90+" and o.dpd >= DEFAULT_THRESHOLD:
            crossed = _day(o.event_time) - o.dpd + DEFAULT_THRESHOLD
            self.crossings.setdefault(o.customer_id, set()).add(crossed)

    def label(self, cid: str, as_of: float, horizon_days: float, data_end: float) -> str:
        """ "1", "0", or "" (censored) for customer ``cid`` observed at ``as_of``."""
        if self.flags is not None:
            flag = self.flags.get(cid)
            return "" if flag is None else str(flag)
        day = _day(as_of)
        later = [d for d in self.crossings.get(cid, ()) if d > day]
        if later and min(later) <= day + horizon_days:
            return "1"
        return "0" if as_of + horizon_days * DAY <= data_end else ""

    def defaulted_by(self, cid: str, as_of: float) -> bool:
        """Whether ``cid`` reached default at or before ``as_of`` (by the labels' dates)."""
        if self.flags is not None or self.source == "stream DPD 90+":
            return False  # the stream's DPD at as_of tells (rows at 90+ are left out)
        return any(d <= _day(as_of) for d in self.crossings.get(cid, ()))


def history(
    events: Path,
    card: Scorecard,
    out: Path,
    at: str = "month-end",
    horizon_days: float = 365.0,
    labels: Path | None = None,
    partitions: int = 4,
    policy: Policy | None = None,
    outcomes_until: float | None = None,
) -> HistoryResult:
    """Write the feature table of ``events`` to ``out`` (CSV or Parquet by extension).
    ``outcomes_until``: until when outcomes are known (epoch seconds; default: the last event's
    time); an observation whose horizon runs past it, with no default seen, is censored."""
    if not horizon_days > 0:
        raise InputError("--horizon-days must be > 0")
    lab = _Labels(labels)
    pipe, entries = offline_pipeline(card, policy, lab.observe)
    instants = Instants(at)
    with tempfile.TemporaryDirectory(prefix="riskmon-history-") as tmp:
        parts = _Parts(Path(tmp))
        return _run(events, partitions, pipe, entries, instants, lab, parts, out, horizon_days,
                    outcomes_until)  # fmt: skip


def _run(
    events: Path,
    partitions: int,
    pipe: Pipeline,
    entries: EntryCache,
    instants: Instants,
    lab: _Labels,
    parts: _Parts,
    out: Path,
    horizon_days: float,
    outcomes_until: float | None,
) -> HistoryResult:
    dead: dict[str, int] = {}
    chunk: list[InRecord] = []
    n = 0
    data_end = -math.inf

    def flush() -> None:
        entries.start_batch(0)  # forget the decoded entries: the store has them as bytes
        res = pipe.process(chunk)
        for reason, count in res.dead_letters.items():
            dead[reason] = dead.get(reason, 0) + count
        chunk.clear()

    for rec in file_records(events, partitions):
        n += 1
        t = _event_time(rec.value)
        if t is not None:
            if data_end == -math.inf:  # the first event with a time starts the clock
                instants.start(t)
            while instants.next is not None and t > instants.next:
                flush()
                parts.add(_snapshot(pipe, instants.next))
                instants.advance()
            data_end = max(data_end, t)
        chunk.append(rec)
        if len(chunk) >= CHUNK:
            flush()
    if n == 0 or data_end == -math.inf:
        raise InputError(f"no event with a readable event_time in {events}")
    flush()
    res = pipe.end_of_input()
    for reason, count in res.dead_letters.items():
        dead[reason] = dead.get(reason, 0) + count
    while instants.next is not None and instants.next <= data_end:
        parts.add(_snapshot(pipe, instants.next))
        instants.advance()
    if lab.source == "stream DPD 90+":  # who is 90+ at the end of the data, and since when
        for last in _snapshot(pipe, data_end, keep_defaulted=True):
            for cid, dpd in zip(last["customer_id"], last["dpd"], strict=True):
                if dpd >= DEFAULT_THRESHOLD:
                    lab.crossings.setdefault(cid, set()).add(_day(data_end) - int(dpd) + 90)
    known = data_end if outcomes_until is None else outcomes_until

    def labelled(table: pd.DataFrame) -> pd.DataFrame:
        pairs = list(zip(table["customer_id"], table["as_of"], strict=True))
        keep = [not lab.defaulted_by(c, _as_of_t(a)) for c, a in pairs]
        table = table[keep].reset_index(drop=True)
        table[TARGET] = [
            lab.label(c, _as_of_t(a), horizon_days, known)
            for c, a in zip(table["customer_id"], table["as_of"], strict=True)
        ]
        table[TARGET] = pd.to_numeric(table[TARGET], errors="coerce").astype("Int64")
        return table

    rows, bads, censored = parts.write(out, labelled)
    _write_columns(out, horizon_days, lab.source)
    fit = fit_check(pipe)
    return HistoryResult(rows, bads, censored, parts.instants, n, lab.source, dead, fit)


def _as_of_t(as_of: str) -> float:
    return _end_of(dt.date.fromisoformat(as_of))


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=[*ID_COLUMNS, *FEATURE_NAMES, *OUTPUT_COLUMNS])


class _Parts:
    """The table's rows, spilled to Parquet files one snapshot part at a time (a book's rows
    need not fit in memory), labelled and written out at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: list[Path] = []
        self.instants = 0

    def add(self, frames: Iterator[pd.DataFrame]) -> None:
        self.instants += 1
        for frame in frames:
            path = self.root / f"part-{len(self.paths):05d}.parquet"
            frame.to_parquet(path, index=False)
            self.paths.append(path)

    def write(
        self, out: Path, labelled: Callable[[pd.DataFrame], pd.DataFrame]
    ) -> tuple[int, int, int]:
        """Label every part and write them to ``out``, CSV or Parquet by extension; (rows,
        bads, censored)."""
        if not self.paths:
            write_table(labelled(_empty()), out)
            return 0, 0, 0
        rows = bads = censored = 0
        parquet = out.suffix.lower() in (".parquet", ".pq")
        writer: Any = None
        try:
            for k, path in enumerate(self.paths):
                table = labelled(pd.read_parquet(path))
                rows += len(table)
                bads += int((table[TARGET] == 1).sum())
                censored += int(table[TARGET].isna().sum())
                if parquet:
                    chunk = pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False)
                    if writer is None:
                        writer = pq.ParquetWriter(out, SCHEMA)
                    writer.write_table(chunk)
                else:
                    table.to_csv(out, mode="w" if k == 0 else "a", header=k == 0, index=False)
                path.unlink()
        except OSError as exc:
            raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
        finally:
            if writer is not None:
                writer.close()
        return rows, bads, censored


#: the table's columns and types (one schema for every part, whatever a part's values)
_TYPES = {"grade": pa.string(), "dpd": pa.int64()}  # "dpd" is a feature and an output at once
SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("as_of", pa.string()),
        *(
            (f.name, _TYPES.get(f.name, pa.string() if f.kind == "categorical" else pa.float64()))
            for f in FEATURES
        ),
        *((c, _TYPES.get(c, pa.float64())) for c in OUTPUT_COLUMNS if c not in FEATURE_NAMES),
        (TARGET, pa.int64()),
    ]
)

#: customers per snapshot part (a part's feature rows and table are in memory at once)
PART_CUSTOMERS = 100_000


def _snapshot(pipe: Pipeline, as_of: float, keep_defaulted: bool = False) -> Iterator[pd.DataFrame]:
    """Every customer with a live loan, as of ``as_of``, in parts of :data:`PART_CUSTOMERS`:
    features, score, grade, PD, DPD."""
    stored = pipe.stored()
    ids = list(stored)
    for k in range(0, len(ids), PART_CUSTOMERS):
        part = _snapshot_part(pipe, ids[k : k + PART_CUSTOMERS], stored, as_of, keep_defaulted)
        if len(part):
            yield part


def _snapshot_part(
    pipe: Pipeline,
    customers: list[str],
    stored: Mapping[str, bytes],
    as_of: float,
    keep_defaulted: bool,
) -> pd.DataFrame:
    ids: list[str] = []
    batch = FeatureBatch(pipe.state_cfg)
    for cid in customers:
        state = Entry.from_bytes(stored[cid]).state
        if not state.loans and not state.lines:  # not a borrower (yet)
            continue
        ids.append(cid)
        batch.add(state, as_of)
    if not ids:
        return _empty()
    rows, facts = batch.compute()
    live = facts.active_loan & ((facts.dpd < DEFAULT_THRESHOLD) | keep_defaulted)
    rows, dpd = rows[live], facts.dpd[live]
    ids = [c for c, ok in zip(ids, live.tolist(), strict=True) if ok]
    scored = pipe.cs.score_many(pipe.columns.matrix(rows))
    table = pd.DataFrame({"customer_id": ids})
    table["as_of"] = dt.datetime.fromtimestamp(as_of, dt.UTC).date().isoformat()
    for j, f in enumerate(FEATURES):
        col = rows[:, j]
        if f.kind == "categorical":
            table[f.name] = [None if math.isnan(v) else f.levels[int(v)] for v in col.tolist()]
        else:
            table[f.name] = col
    table["score"] = scored.score
    table["grade"] = [pipe.cs.grade_names[g] for g in scored.grade.tolist()]
    table["pd"] = np.round(pipe.cs.pd(scored.score), 6)
    table["dpd"] = dpd
    return table


def columns_path(table: Path) -> Path:
    """The sidecar naming a table's columns: ``TABLE.columns.json``."""
    return table.with_name(table.name + ".columns.json")


def _write_columns(out: Path, horizon_days: float, source: str) -> None:
    doc = {
        "ids": list(ID_COLUMNS),
        "features": list(FEATURE_NAMES),
        "categorical": [f.name for f in FEATURES if f.kind == "categorical"],
        "outputs": list(OUTPUT_COLUMNS),
        "target": TARGET,
        "outcome": f"90+ DPD within {horizon_days:g} days ({source})",
    }
    try:
        columns_path(out).write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write {columns_path(out)}: {exc.strerror}") from None
