"""`riskmon train`, `riskmon score`, `riskmon evaluate`.

Heavy modules (pandas, sklearn, optbinning, numba, matplotlib) are imported inside the commands
so ``riskmon --help`` stays fast. User mistakes raise ``InputError`` (one line, exit 2).
"""

from __future__ import annotations

import click

from scoring.errors import InputError


def _csv_list(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


@click.command()
@click.argument("data")
@click.option("--target", required=True, help="Outcome column (binary: 0/1 or two labels).")
@click.option("--out", required=True, help="Scorecard JSON to write.")
@click.option(
    "--bad-value",
    default=None,
    help="Target value meaning bad (default: the one of bad/1/yes/true/default).",
)
@click.option(
    "--categorical",
    default="",
    help="Comma-separated columns to treat as categorical (text columns always are).",
)
@click.option("--exclude", default="", help="Comma-separated columns not to use (ids, dates).")
@click.option("--spec", default=None, help="Binning spec JSON (defaults and per-column options).")
@click.option("--pdo", default=20.0, show_default=True, help="Points to double the odds.")
@click.option("--base-score", default=600.0, show_default=True, help="Score at the base odds.")
@click.option("--base-odds", default=50.0, show_default=True, help="Good:bad odds at base score.")
@click.option("--grades", "n_grades", default=7, show_default=True, help="Number of grades.")
@click.option(
    "--grade-method",
    type=click.Choice(["quantile", "equal-width"]),
    default="quantile",
    show_default=True,
    help="How score bands are cut before monotonic merging.",
)
@click.option(
    "--min-iv", type=float, default=None, help="Drop characteristics below this IV (default 0.01)."
)
@click.option(
    "--max-corr",
    default=0.7,
    show_default=True,
    help="Drop the weaker of two characteristics whose WOE |correlation| exceeds this.",
)
@click.option("--min-bads", default=20, show_default=True, help="Refuse data with fewer bads.")
@click.option(
    "--segment-by",
    default="",
    help="Numeric column splitting the rows into segments, each with its own characteristics "
    "and points on one score scale (e.g. dpd).",
)
@click.option(
    "--segment-edges",
    default="",
    help="Comma-separated cut points of --segment-by (e.g. 1,30: below 1 / 1-29 / 30 and up).",
)
def train(
    data: str, target: str, out: str, bad_value: str | None, categorical: str, exclude: str,
    spec: str | None, pdo: float, base_score: float, base_odds: float, n_grades: int,
    grade_method: str, min_iv: float | None, max_corr: float, min_bads: int, segment_by: str,
    segment_edges: str,
) -> None:  # fmt: skip
    """Train a scorecard on DATA (CSV or Parquet) and write it as JSON. A table from `riskmon
    history` names its feature columns in DATA.columns.json: those are used, nothing else."""
    import json
    from pathlib import Path

    from scoring import artifact
    from scoring.binning import load_spec
    from scoring.data import read_table
    from scoring.train import TrainConfig
    from scoring.train import train as fit

    if pdo <= 0 or base_odds <= 0:
        raise InputError("--pdo and --base-odds must be positive")
    if bool(segment_by) != bool(segment_edges):
        raise InputError("--segment-by and --segment-edges go together")
    try:
        seg_edges = tuple(float(e) for e in _csv_list(segment_edges))
    except ValueError:
        raise InputError(f"--segment-edges must be numbers, got {segment_edges!r}") from None
    df = read_table(data)
    excluded, categoricals = _csv_list(exclude), _csv_list(categorical)
    sidecar = Path(data).with_name(Path(data).name + ".columns.json")
    if sidecar.is_file():
        try:
            doc = json.loads(sidecar.read_text())
            features = set(doc["features"])
            categoricals += tuple(c for c in doc.get("categorical", []) if c not in categoricals)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"cannot read the column list {sidecar}: {exc!r}") from None
        others = [c for c in df.columns if c not in features and c != target]
        excluded += tuple(c for c in others if c not in excluded)
        click.echo(f"features: the {len(features)} listed in {sidecar.name}")
    cfg = TrainConfig(
        target=target,
        bad_value=bad_value,
        categorical=categoricals,
        exclude=excluded,
        spec=load_spec(spec),
        scaling=artifact.Scaling(pdo=pdo, base_score=base_score, base_odds=base_odds),
        min_iv=TrainConfig(target=target).min_iv if min_iv is None else min_iv,
        max_corr=max_corr,
        n_grades=n_grades,
        grade_method="equal-width" if grade_method == "equal-width" else "quantile",
        min_bads=min_bads,
        segment_by=segment_by,
        segment_edges=seg_edges,
    )
    card = artifact.save(fit(df, cfg), out)
    t = card.training
    kept = [s for s in t["selection"] if s["status"] == "kept"]
    click.echo(f"trained {card.version} on {t['rows']} rows ({t['bads']} bads) -> {out}")
    if t.get("rows_without_target"):
        click.echo(f"  {t['rows_without_target']} rows without an outcome (censored) left out")
    click.echo(
        f"{len(kept)} characteristics kept, {len(t['selection']) - len(kept)} dropped; "
        f"train AUC {t['auc']:.3f}, Gini {t['gini']:.3f}, KS {t['ks']:.3f}"
    )
    for s in t["selection"]:
        if s["status"] == "dropped":
            where = f"[{s['segment']}] " if "segment" in s else ""
            click.echo(f"  dropped {where}{s['name']}: {s['reason']}")
    for g in t.get("segments", []):
        auc = "n/a" if g["auc"] is None else f"{g['auc']:.3f}"
        click.echo(
            f"segment {g['label']}: {g['rows']} rows, bad rate {g['bad_rate']:.1%}, "
            f"AUC {auc} within, {len(g['characteristics'])} characteristics"
        )
    click.echo(
        "grades: " + ", ".join(f"{g.name} >= {g.min_score:g} (PD {g.pd:.1%})" for g in card.grades)
    )
    if len(card.grades) < n_grades:
        click.echo(
            f"  {len(card.grades)} grades, not {n_grades}: bands without rising PD were merged. "
            "Running workers take a card only on their champion's number of grades (more "
            "history, or --grades to match)"
        )


@click.command()
@click.argument("scorecard")
@click.argument("data")
@click.option("--out", required=True, help="Output file: CSV, or Parquet by extension.")
@click.option("--id", "ids", default="", help="Comma-separated columns to pass through (ids).")
def score(scorecard: str, data: str, out: str, ids: str) -> None:
    """Score DATA with SCORECARD: score, grade, PD and top-4 reason codes with texts."""
    import pandas as pd

    from scoring import artifact
    from scoring.compiled import N_REASONS, CompiledScorecard
    from scoring.data import read_table, require_columns, to_matrix, write_table
    from scoring.reasons import reason_texts

    card = artifact.load(scorecard)
    df = read_table(data)
    id_cols = list(_csv_list(ids))
    require_columns(df, id_cols, "id column")
    cs = CompiledScorecard(card)
    fm = to_matrix(df, card)
    b = cs.score_many(fm.X, with_points=True)
    assert b.points is not None
    result = df[id_cols].copy() if id_cols else pd.DataFrame(index=df.index)
    result["score"] = b.score.astype("int64")
    result["grade"] = [cs.grade_names[g] for g in b.grade]
    result["pd"] = cs.pd(b.score).round(6)
    if card.segmentation is not None:
        result["segment"] = [card.segment_labels[g] for g in b.segment]
    texts = reason_texts(card, fm.X, b.reasons, b.points, b.segment)
    for r in range(N_REASONS):
        result[f"reason_{r + 1}"] = [cs.names[j] if j >= 0 else "" for j in b.reasons[:, r]]
        result[f"reason_{r + 1}_text"] = [t[r] for t in texts]
    write_table(result, out)
    click.echo(f"scored {len(result)} rows with {card.version} -> {out}")
    unseen = {k: v for k, v in fm.unseen.items() if v}
    if unseen:
        click.echo(
            "unseen categories (scored in their 'missing or unseen' bin): "
            + ", ".join(f"{k} {v}" for k, v in unseen.items())
        )


@click.command()
@click.argument("scorecard")
@click.argument("data")
@click.option("--target", default=None, help="Outcome column (default: the card's target).")
@click.option("--out", required=True, help="Directory for metrics.json and the PNG plots.")
@click.option("--baseline", default=None, help="Reference data (e.g. training) for PSI and CSI.")
@click.option("--bad-value", default=None, help="Target value meaning bad (default: as trained).")
def evaluate(
    scorecard: str, data: str, target: str | None, out: str, baseline: str | None,
    bad_value: str | None,
) -> None:  # fmt: skip
    """Evaluate SCORECARD on labelled DATA: metrics.json (AUC, Gini, KS, grades, PSI/CSI), plots."""
    from scoring import artifact
    from scoring.data import binary_target, read_table, require_columns
    from scoring.evaluate import evaluate as run
    from scoring.evaluate import summary

    card = artifact.load(scorecard)
    df = read_table(data)
    col = target or card.target
    require_columns(df, [col], "target column")
    unlabelled = int(df[col].isna().sum())
    if unlabelled:  # censored outcomes (a history table's last observations): no outcome yet
        df = df[df[col].notna()].reset_index(drop=True)
        click.echo(f"{unlabelled} rows without an outcome (censored) left out")
    trained_bad = card.training.get("bad_value")
    try:
        bad, _ = binary_target(df, col, bad_value or trained_bad)
    except InputError:
        if bad_value is not None or trained_bad is None:
            raise
        bad, _ = binary_target(df, col, None)  # labels differ from training's: detect
    base = read_table(baseline) if baseline else None
    metrics = run(card, df, bad, out, base)
    click.echo(summary(metrics))
    click.echo(f"wrote {out}/metrics.json and plots")


COMMANDS: list[click.Command] = [train, score, evaluate]
