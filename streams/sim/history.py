"""`riskmon simulate --history`: a training table built by the streaming feature code itself.

The book is simulated without delivery noise (no duplicates, late or malformed messages), so
delivery order is event-time order, and every event goes through the same
``CustomerState.apply`` the worker uses. At each observation date (the first day of every month
from month ``WARMUP_MONTHS`` on, as long as a full outcome window follows) the features of every
customer with a live loan who has not defaulted yet are taken with ``streams.core.features``, and
the target is the ground truth: 90+ DPD within the next ``HORIZON_MONTHS`` months.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np

from schemas.codec import decode
from schemas.events import INPUT_TYPES, LoanEvent
from scoring.errors import InputError
from streams.core.features import FEATURE_NAMES, FEATURES, features_into
from streams.core.state import CustomerState, StateConfig
from streams.sim.book import DAY
from streams.sim.simulate import SimConfig, Simulation

WARMUP_MONTHS = 6
HORIZON_MONTHS = 12
TARGET = "default_12m"


def write_history(cfg: SimConfig, path: Path, state_cfg: StateConfig | None = None) -> int:
    """Simulate ``cfg`` and write the training table to ``path`` (CSV); return the row count."""
    if cfg.months < WARMUP_MONTHS + HORIZON_MONTHS:
        raise InputError(
            f"--history needs --months >= {WARMUP_MONTHS + HORIZON_MONTHS} ({WARMUP_MONTHS} "
            f"months of warm-up + a {HORIZON_MONTHS}-month outcome window), got {cfg.months}"
        )
    scfg = state_cfg or StateConfig()
    clean = dataclasses.replace(cfg, dup_rate=0.0, late_rate=0.0, malformed_rate=0.0)
    sim = Simulation(clean)
    obs_months = list(range(WARMUP_MONTHS, cfg.months - HORIZON_MONTHS + 1))
    obs_t = [int(sim.book.month_start_day(m)) * DAY for m in obs_months]
    states: dict[str, CustomerState] = {}
    live: dict[str, set[str]] = {}
    snaps: list[tuple[int, list[str], np.ndarray]] = []
    k = 0

    def snapshot() -> None:
        ids = [c for c, loans in live.items() if loans]
        mat = np.empty((len(ids), len(FEATURES)), dtype=np.float64)
        for row, cid in enumerate(ids):
            features_into(states[cid], float(obs_t[k]), mat[row], scfg)
        snaps.append((obs_t[k], ids, mat))

    for rec in sim.records():
        while k < len(obs_t) and rec.event_time >= obs_t[k]:
            snapshot()
            k += 1
        ev = decode(rec.value, INPUT_TYPES[rec.topic])
        state = states.get(ev.customer_id)
        if state is None:
            state = states[ev.customer_id] = CustomerState.new(ev.customer_id)
        state.apply(ev, scfg)
        if isinstance(ev, LoanEvent):
            loans = live.setdefault(ev.customer_id, set())
            if ev.kind == "closed":
                loans.discard(ev.loan_id)
            else:
                loans.add(ev.loan_id)
    while k < len(obs_t):
        snapshot()
        k += 1

    default_s = {t.customer_id: _epoch_s(t.default_date) for t in sim.truth()}
    rows = 0
    try:
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["customer_id", "obs_date", *FEATURE_NAMES, TARGET])
            for (t0, ids, mat), m in zip(snaps, obs_months, strict=True):
                horizon_end = int(sim.book.month_start_day(m + HORIZON_MONTHS)) * DAY
                obs_date = str(np.datetime64(t0 // DAY, "D"))
                for cid, values in zip(ids, mat.tolist(), strict=True):
                    d = default_s[cid]
                    if d is not None and d < t0:
                        continue  # already in default: not part of the performing book
                    target = int(d is not None and d < horizon_end)
                    w.writerow([cid, obs_date, *_cells(values), target])
                    rows += 1
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    return rows


def _epoch_s(date: str) -> int | None:
    return None if not date else int(np.datetime64(date, "D").astype(np.int64)) * DAY


def _cells(values: list[float]) -> list[str | float]:
    """Feature values for CSV: categoricals as their level, missing as an empty cell."""
    out: list[str | float] = []
    for f, v in zip(FEATURES, values, strict=True):
        if math.isnan(v):
            out.append("")
        elif f.kind == "categorical":
            out.append(f.levels[int(v)])
        else:
            out.append(v)
    return out
