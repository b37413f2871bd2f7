"""``riskmon history``: the table's features and scores are what the stream computes, outcomes
come from the stream's DPD or the lender's labels, and ``riskmon train`` uses its features."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from schemas.codec import decode
from schemas.events import INPUT_TYPES
from scoring.artifact import default_scorecard_path, load
from scoring.reference import score_row
from streams.core.features import FEATURE_NAMES, FEATURES, features_into
from streams.core.pipeline import Pipeline
from streams.core.policy import Observation
from streams.core.state import CustomerState, StateConfig
from streams.evaluation.backtest import CHUNK, file_records
from streams.evaluation.history import columns_path, history
from streams.sim.simulate import SimConfig, Simulation, write_jsonl, write_truth

CARD = load(default_scorecard_path())
DAY = 86400.0


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A clean simulated book (file order = event-time order) and its ground truth."""
    root = tmp_path_factory.mktemp("history")
    cfg = SimConfig(customers=150, months=6, seed=11, dup_rate=0, late_rate=0, malformed_rate=0)
    sim = Simulation(cfg)
    events, truth = root / "events.jsonl", root / "truth.csv"
    with events.open("wb") as fh:
        write_jsonl(sim.records(), fh)
    write_truth(sim.truth(), truth)
    return events, truth


def stream_rescorings(events: Path) -> list[Observation]:
    seen: list[Observation] = []
    pipe = Pipeline(CARD, observe=seen.append, offline=True)
    recs = list(file_records(events, 4))
    for i in range(0, len(recs), CHUNK):
        pipe.process(recs[i : i + CHUNK])
    return seen


def test_table_features_and_scores_are_the_streams(book: tuple[Path, Path], tmp_path: Path) -> None:
    """Where a customer's last rescoring before an observation fell on the observation day, the
    table's DPD equals that rescoring's; every feature equals an independent replay of the
    customer's events through the reference state at the end of the day, and the score and grade
    are the reference scorer's on those features. (A same-day rescoring's score can differ from
    the day-end one: windows and days-since features move during the day.)"""
    events, _truth = book
    out = tmp_path / "table.csv"
    res = history(events, CARD, out, at="month-end", horizon_days=60)
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == res.rows > 500
    assert list(table.columns)[:2] == ["customer_id", "as_of"]
    last: dict[tuple[str, str], Observation] = {}
    for o in stream_rescorings(events):
        day = dt.datetime.fromtimestamp(o.event_time, dt.UTC).date().isoformat()
        last[(o.customer_id, day)] = o  # the day's last rescoring wins
    pipe = Pipeline(CARD, offline=True)
    compared = 0
    for row in table.itertuples(index=False):
        o = last.get((row.customer_id, row.as_of))
        if o is None:
            continue
        compared += 1
        assert row.dpd == o.dpd
    assert compared > 100

    # every feature, against a replay through CustomerState.apply (the state kernel's reference)
    by_customer: dict[str, list[tuple[str, bytes]]] = {}
    for line in events.read_bytes().splitlines():
        rec = next(iter(file_records_from([line])))
        by_customer.setdefault(rec[1], []).append((rec[0], line))
    for row in table.head(80).itertuples(index=False):
        as_of = (
            dt.datetime.fromisoformat(row.as_of)
            .replace(hour=23, minute=59, second=59, tzinfo=dt.UTC)
            .timestamp()
        )
        state = CustomerState.new(row.customer_id)
        for role, line in by_customer[row.customer_id]:
            ev = decode(line, INPUT_TYPES[role])
            if ev.event_time.timestamp() <= as_of:
                state.apply(ev, StateConfig())
        want = np.empty(len(FEATURES))
        features_into(state, as_of, want, StateConfig())
        got = row._asdict()
        for f, v in zip(FEATURES, want.tolist(), strict=True):
            cell = got[f.name]
            if np.isnan(v):
                assert cell == "", f.name
            elif f.kind == "categorical":
                assert cell == f.levels[int(v)], f.name
            else:
                assert float(cell) == pytest.approx(v), f.name
        ref = score_row(CARD, pipe.columns.matrix(want[None, :])[0].tolist())
        assert row.score == ref.score and row.grade == pipe.cs.grade_names[ref.grade]


def file_records_from(lines: list[bytes]) -> list[tuple[str, str]]:
    from streams.kafka.produce import route_line

    out = []
    for line in lines:
        role, key = route_line(line)
        assert role is not None and key is not None
        out.append((role, key.decode()))
    return out


def test_outcomes_from_the_stream_and_from_labels_agree_and_censor(
    book: tuple[Path, Path], tmp_path: Path
) -> None:
    """bad = 90+ DPD within the horizon: from the stream's DPD and from the simulator's truth
    the labels mostly agree; rows whose horizon runs past the data are censored (empty); no row
    is taken of a customer already in default."""
    events, truth = book
    own, lab = tmp_path / "own.csv", tmp_path / "lab.csv"
    history(events, CARD, own, at="month-end", horizon_days=60)
    history(events, CARD, lab, at="month-end", horizon_days=60, labels=truth)
    a, b = pd.read_csv(own), pd.read_csv(lab)
    end = max(
        decode(line, INPUT_TYPES[r]).event_time.timestamp()
        for line, (r, _k) in zip(
            events.read_bytes().splitlines(),
            file_records_from(events.read_bytes().splitlines()),
            strict=True,
        )
    )
    as_of = pd.to_datetime(a["as_of"]).map(lambda d: d.timestamp() + DAY - 1)
    complete = as_of + 60 * DAY <= end
    assert a.loc[complete, "bad"].notna().all()  # a complete window has an outcome
    assert not complete[a["bad"].isna()].any()  # censored only where the data end too soon
    assert (a.loc[~complete, "bad"] == 1).any()  # a default seen early is known all the same
    assert (a["dpd"] < 90).all()
    m = a.merge(b, on=["customer_id", "as_of"], suffixes=("_own", "_lab")).dropna(
        subset=["bad_own", "bad_lab"]
    )
    assert len(m) > 300 and m["bad_lab"].sum() > 5
    agree = (m["bad_own"] == m["bad_lab"]).mean()
    assert agree > 0.97, agree
    defaults = pd.read_csv(truth, keep_default_na=False).set_index("customer_id")["default_date"]
    for row in b.itertuples(index=False):
        d = defaults[row.customer_id]
        assert not d or d > row.as_of  # nobody observed after their default


def test_the_sidecar_lists_the_features_and_train_uses_exactly_them(
    book: tuple[Path, Path], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from streams.cli.scorecard import train

    events, truth = book
    out = tmp_path / "table.parquet"
    history(events, CARD, out, at="week-end", horizon_days=30, labels=truth)
    doc = json.loads(columns_path(out).read_text())
    assert doc["features"] == list(FEATURE_NAMES) and doc["target"] == "bad"
    card_path = tmp_path / "card.json"
    result = CliRunner().invoke(
        train,
        [str(out), "--target", "bad", "--out", str(card_path), "--min-bads", "5"],
    )
    assert result.exit_code == 0, result.output
    card = load(card_path)
    names = {s["name"] for s in card.training["selection"]}
    assert names == set(FEATURE_NAMES)  # every feature considered, nothing else
    assert card.training["rows_without_target"] > 0  # the censored tail left out


def test_simulate_history_is_history_on_the_simulators_book(tmp_path: Path) -> None:
    """`simulate --history`: the observation dates run every 7 days from the day before the
    first month after the warm-up starts to the day before the last month a full 365-day
    outcome window follows starts, and the outcomes are the simulator's truth."""
    from streams.evaluation.sim_history import TARGET, write_history

    cfg = SimConfig(customers=120, months=19, seed=4)
    path = tmp_path / "h.csv"
    n = write_history(cfg, path)
    df = pd.read_csv(path)
    assert len(df) == n > 60 and TARGET == "bad"
    dates = sorted(dt.date.fromisoformat(d) for d in set(df["as_of"]))
    assert dates[0] == dt.date(2025, 6, 30)  # the day before month 6 starts
    assert dates[-1] <= dt.date(2025, 7, 31) < dates[-1] + dt.timedelta(days=7)  # ... month 7
    assert {b - a for a, b in itertools.pairwise(dates)} == {dt.timedelta(days=7)}
    assert df["bad"].notna().all()
    _ = dataclasses  # (kept for the book fixture's replace)


def test_parts_give_the_same_table(
    book: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table is spilled in parts of PART_CUSTOMERS customers and labelled at the end: with
    parts of 37 customers, CSV and Parquet hold the same rows as with one part."""
    from streams.evaluation import history as module

    events, truth = book
    whole = tmp_path / "whole.csv"
    history(events, CARD, whole, at="month-end", horizon_days=60, labels=truth)
    monkeypatch.setattr(module, "PART_CUSTOMERS", 37)
    for name in ("parts.csv", "parts.parquet"):
        history(events, CARD, tmp_path / name, at="month-end", horizon_days=60, labels=truth)
    a = pd.read_csv(whole).sort_values(["as_of", "customer_id"]).reset_index(drop=True)
    b = pd.read_csv(tmp_path / "parts.csv").sort_values(["as_of", "customer_id"])
    c = pd.read_parquet(tmp_path / "parts.parquet").sort_values(["as_of", "customer_id"])
    pd.testing.assert_frame_equal(a, b.reset_index(drop=True))
    pd.testing.assert_frame_equal(a, c.reset_index(drop=True), check_dtype=False)
