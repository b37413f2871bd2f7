"""Rebuild the bundled default behaviour scorecard from simulator history (deterministic).

    python scripts/default_scorecard.py [--customers 20000 --months 24 --seed 7] [--compare OLD]

Simulates a seeded book, writes the training table with the streaming feature code (``riskmon
simulate --history``, i.e. ``riskmon history`` on the simulator's book, observed weekly), trains
on the first ~4/7 of the observation dates and evaluates out of time on the later ones, then
writes ``scoring/data/default_scorecard.json``. ``--compare OLD`` also scores the same
out-of-time rows with another card (the one it replaces, say), so the two are judged alike.
The card has three segments by days past due (current, 1-29, 30+), each fitted on its own rows:
a behaviour card is dominated by delinquency, which a single set of bins over a book where fewer
than 5 % of the rows are in arrears cannot express.
The same seed gives the same content hash.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from scoring import artifact, quality
from scoring.compiled import CompiledScorecard
from scoring.data import to_matrix
from scoring.train import TrainConfig, train
from streams.evaluation.sim_history import TARGET, write_history
from streams.sim.simulate import SimConfig

OUT = Path(__file__).resolve().parent.parent / "scoring" / "data" / "default_scorecard.json"
# ids and the table's own score columns (the card in the package scored them) are no features;
# the table's dpd column is the feature dpd
EXCLUDE = ("customer_id", "as_of", "score", "grade", "pd")
SEGMENT_BY, SEGMENT_EDGES = "dpd", (1.0, 30.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--compare", type=Path, help="another card to score the same rows with")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hist = Path(tmp) / "history.csv"
        write_history(SimConfig(customers=args.customers, months=args.months, seed=args.seed), hist)
        df = pd.read_csv(hist)
    dates = sorted(df["as_of"].unique())
    cut = dates[len(dates) * 4 // 7]  # first ~4/7 of the observation dates train, the rest is OOT
    fit, oot = df[df["as_of"] < cut], df[df["as_of"] >= cut]
    cfg = TrainConfig(
        target=TARGET, exclude=EXCLUDE, segment_by=SEGMENT_BY, segment_edges=SEGMENT_EDGES
    )
    card = artifact.save(train(fit, cfg), args.out)
    print(f"wrote {args.out} ({card.version}): {len(card.characteristics)} characteristics")
    print(f"train rows {len(fit)} (obs < {cut}); out-of-time rows {len(oot)} (obs >= {cut})")
    segment = CompiledScorecard(card).score_many(to_matrix(oot, card).X).segment
    for judged in [card] + ([artifact.load(args.compare)] if args.compare else []):
        report(judged, oot, segment, card.segment_labels)


def report(
    card: artifact.Scorecard, oot: pd.DataFrame, segment: np.ndarray, labels: Sequence[str]
) -> None:
    """``card``'s out-of-time AUC and KS on ``oot``, overall and per ``segment`` (the new card's,
    so that another card is judged on the same groups of rows)."""
    score = CompiledScorecard(card).score_many(to_matrix(oot, card).X).score
    bad = oot[TARGET].to_numpy()
    print(f"{card.version}: out-of-time AUC {quality.auc(bad, score):.3f}  "
          f"KS {quality.ks(bad, score):.3f}")  # fmt: skip
    for g, label in enumerate(labels):
        m = segment == g
        if 0 < bad[m].sum() < m.sum():
            auc, ks = quality.auc(bad[m], score[m]), quality.ks(bad[m], score[m])
            print(f"  segment {label}: {m.sum()} rows, bad rate {bad[m].mean():.1%}, "
                  f"AUC {auc:.3f}  KS {ks:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
