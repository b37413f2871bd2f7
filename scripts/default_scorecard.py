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
from pathlib import Path

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
    report(card, oot)
    if args.compare:
        report(artifact.load(args.compare), oot)


def report(card: artifact.Scorecard, oot: pd.DataFrame) -> None:
    """``card``'s out-of-time AUC and KS on ``oot``, overall and per segment of the new card's
    segmentation (days past due: current, 1-29, 30+)."""
    b = CompiledScorecard(card).score_many(to_matrix(oot, card).X)
    bad = oot[TARGET].to_numpy()
    dpd = oot[SEGMENT_BY].to_numpy()
    print(f"{card.version}: out-of-time AUC {quality.auc(bad, b.score):.3f}  "
          f"KS {quality.ks(bad, b.score):.3f}")  # fmt: skip
    lo, hi = SEGMENT_EDGES
    for label, m in (("dpd < 1", dpd < lo), ("dpd [1, 30)", (dpd >= lo) & (dpd < hi)),
                     ("dpd >= 30", dpd >= hi)):  # fmt: skip
        if 0 < bad[m].sum() < m.sum():
            auc, ks = quality.auc(bad[m], b.score[m]), quality.ks(bad[m], b.score[m])
            print(f"  {label}: {m.sum()} rows, bad rate {bad[m].mean():.1%}, "
                  f"AUC {auc:.3f}  KS {ks:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
