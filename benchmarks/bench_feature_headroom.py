"""How much early-warning power riskmon's features leave on the table, before delinquency.

Among customer-months at 0 DPD (where a warning is early by definition), it compares how well
the stream's own features rank the customers who reach 90+ DPD within the table's horizon,
against the same features plus candidate features built from the raw account transactions
(monthly inflow, outflow, month-end balance): cash runway, inflow trends, balance trend, credit
counts. Two models, each cross-validated by customer (5 folds): gradient boosting (what the
features could give) and a binned logistic regression (what a scorecard of them gives).
Candidates that win here are worth a place in the state and the card; none is in riskmon yet.

    riskmon simulate --customers 20000 --months 12 --seed 1 --out ev.jsonl --truth truth.csv
    riskmon history ev.jsonl --out hist.csv --labels truth.csv --horizon-days 180
    python benchmarks/bench_feature_headroom.py ev.jsonl hist.csv \
        --from 2025-03-31 --to 2025-06-30 --json benchmarks/results/feature_headroom.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import OneHotEncoder

CANDIDATES = {
    "runway": "month-end balance / mean monthly outflow (3 m)",
    "inflow_last_vs_prev3": "log inflow this month - mean log inflow of the 3 before",
    "inflow_slope_4m": "slope of log monthly inflow over 4 months",
    "inflow_3m_vs_base": "mean log inflow (3 m) - mean log inflow of the months before",
    "balance_trend_3m": "log month-end balance - log month-end balance 3 months before",
    "balance_min_to_inflow": "minimum balance this month / mean monthly inflow (3 m)",
    "credits_ratio": "credits this month / mean credits of the 3 before",
}
_INTERNAL = ("refinance", "loan-reversal")  # credits that are no customer revenue


class _Tx(msgspec.Struct):
    kind: str
    customer_id: str
    event_time: str
    amount: float = 0.0
    balance_after: float | None = None
    counterparty: str = ""


def monthly(events: Path) -> pd.DataFrame:
    """Per customer and calendar month: inflow, credits, outflow, month-end and minimum
    balance (duplicates dropped, months without transactions filled)."""
    dec = msgspec.json.Decoder(_Tx)
    rows = []
    with events.open("rb") as fh:
        for line in fh:
            if b'"account_id"' not in line:
                continue
            try:
                t = dec.decode(line)
            except msgspec.DecodeError:
                continue  # the malformed messages riskmon dead-letters
            if t.kind in ("credit", "debit"):
                rows.append((t.customer_id, t.event_time, t.kind, t.amount, t.balance_after,
                             t.counterparty))  # fmt: skip
    tx = pd.DataFrame(rows, columns=["cid", "time", "kind", "amount", "bal", "cp"])
    tx = tx.drop_duplicates().sort_values(["cid", "time"])
    tx["month"] = tx.time.str[:7]
    credit = tx[(tx.kind == "credit") & ~tx.cp.isin(_INTERNAL)].groupby(["cid", "month"])
    m = pd.concat(
        [
            credit.amount.sum().rename("inflow"),
            credit.amount.count().rename("credits"),
            tx[tx.kind == "debit"].groupby(["cid", "month"]).amount.sum().rename("outflow"),
            tx.groupby(["cid", "month"]).bal.last().rename("bal_end"),
            tx.groupby(["cid", "month"]).bal.min().rename("bal_min"),
        ],
        axis=1,
    )
    full = pd.MultiIndex.from_product(
        [m.index.get_level_values(0).unique(), sorted(tx.month.unique())], names=["cid", "month"]
    )
    m = m.reindex(full)
    m[["inflow", "credits", "outflow"]] = m[["inflow", "credits", "outflow"]].fillna(0.0)
    m["bal_end"] = m.groupby(level=0).bal_end.ffill()
    m["bal_min"] = m.bal_min.fillna(m.bal_end)
    return m.reset_index()


def candidates(m: pd.DataFrame) -> pd.DataFrame:
    """The candidate features at each month end (as_of), from that month and those before."""
    g = m.groupby("cid")
    li = np.log1p(m.inflow)
    m = m.assign(li=li)
    g = m.groupby("cid")

    def roll(col: str, n: int, shift: int = 0, how: str = "mean") -> pd.Series:
        return g[col].transform(lambda s: getattr(s.shift(shift).rolling(n, min_periods=1), how)())

    def slope(s: pd.Series) -> pd.Series:
        x = np.arange(4.0)
        return s.rolling(4, min_periods=4).apply(lambda y: np.polyfit(x, y, 1)[0], raw=True)

    inflow3 = roll("inflow", 3)
    out = pd.DataFrame(
        {
            "customer_id": m.cid,
            "as_of": pd.to_datetime(m.month) + pd.offsets.MonthEnd(0),
            "runway": m.bal_end / (roll("outflow", 3) + 1.0),
            "inflow_last_vs_prev3": li - roll("li", 3, 1),
            "inflow_slope_4m": g.li.transform(slope),
            "inflow_3m_vs_base": roll("li", 3)
            - g.li.transform(lambda s: s.shift(3).expanding().mean()),
            "balance_trend_3m": np.log1p(m.bal_end.clip(lower=0))
            - np.log1p(g.bal_end.shift(3).clip(lower=0)),
            "balance_min_to_inflow": m.bal_min / (inflow3 + 1.0),
            "credits_ratio": m.credits / (roll("credits", 3, 1) + 0.5),
        }
    )
    return out


def _binned(x: pd.DataFrame) -> np.ndarray:
    """Each column cut into 8 quantile bins, missing its own bin (a scorecard's view)."""
    cols = []
    for c in x.columns:
        v = x[c].astype(float)
        q = pd.qcut(v.rank(method="first"), 8, labels=False) if v.notna().sum() > 100 else v * 0
        cols.append(q.fillna(-1).astype(int).astype(str).to_numpy())
    return np.stack(cols, 1)


def evaluate(table: pd.DataFrame, cols: list[str], model: str) -> dict[str, float]:
    """Out-of-fold AUC and the default rate in the top 1 % and 5 % of the ranking."""
    y = table.bad.to_numpy().astype(int)
    groups = table.customer_id.to_numpy()
    x: Any = (
        table[cols].astype(float).to_numpy()
        if model == "boosting"
        else OneHotEncoder(handle_unknown="ignore").fit_transform(_binned(table[cols]))
    )
    p = np.zeros(len(y))
    for train, test in GroupKFold(5).split(x, y, groups):
        clf: Any = (
            HistGradientBoostingClassifier(
                max_iter=300, learning_rate=0.05, max_leaf_nodes=15, random_state=0
            )
            if model == "boosting"
            else LogisticRegression(C=0.1, max_iter=2000)
        )
        clf.fit(x[train], y[train])
        p[test] = clf.predict_proba(x[test])[:, 1]
    order = np.argsort(-p)
    return {
        "auc": float(roc_auc_score(y, p)),
        "top1_default_rate": float(y[order[: max(1, len(y) // 100)]].mean()),
        "top5_default_rate": float(y[order[: max(1, len(y) // 20)]].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events", type=Path, help="the event file (JSON lines)")
    ap.add_argument("history", type=Path, help="`riskmon history` of it, month-end, CSV")
    ap.add_argument("--from", dest="start", default=None, help="first observation date")
    ap.add_argument("--to", dest="end", default=None, help="last observation date")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    hist = pd.read_csv(a.history, low_memory=False, parse_dates=["as_of"])
    features = json.loads(a.history.with_name(a.history.name + ".columns.json").read_text())
    numeric = [c for c in features["features"] if pd.api.types.is_numeric_dtype(hist[c])]
    hist = hist[hist.bad.notna() & (hist.dpd == 0)]
    if a.start:
        hist = hist[hist.as_of >= a.start]
    if a.end:
        hist = hist[hist.as_of <= a.end]
    table = hist.merge(candidates(monthly(a.events)), on=["customer_id", "as_of"], how="left")
    print(f"{len(table):,} customer-months at 0 DPD, default rate {table.bad.mean():.2%} "
          f"({time.monotonic() - t0:.0f}s to build)")  # fmt: skip
    sets = {"riskmon's features": numeric}
    sets |= {f"+ {c}": [*numeric, c] for c in CANDIDATES}
    sets["+ all candidates"] = numeric + list(CANDIDATES)
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "rows": len(table),
        "default_rate": float(table.bad.mean()),
        "candidates": CANDIDATES,
        "results": {},
    }
    print(f"{'features':>28} {'model':>9} {'AUC':>6} {'top 1%':>7} {'top 5%':>7}")
    for name, cols in sets.items():
        for model in ("scorecard", "boosting"):
            if model == "boosting" and name.startswith("+ ") and name != "+ all candidates":
                continue  # one boosting run per end of the range is enough
            r = evaluate(table, cols, model)
            out["results"][f"{name} / {model}"] = r
            print(f"{name:>28} {model:>9} {r['auc']:>6.3f} {r['top1_default_rate']:>7.1%} "
                  f"{r['top5_default_rate']:>7.1%}", flush=True)  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
