"""The early-warning report as people read it: a dozen terminal lines, a self-contained HTML page
with embedded plots, and the JSON beside it. The numbers come from :mod:`streams.evaluation.report`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streams.evaluation.goals import GOAL_LEAD_DAYS, GOAL_RECALL


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def goal_rows(g: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Each goal as (what it asks, its value as text, met)."""
    bt = g["beats_dpd_only_at_equal_volume"]
    versus = "; ".join(
        f"{cap}: recall {_fmt(c['score_recall'], '.1%')} vs {_fmt(c['dpd_only_recall'], '.1%')}, "
        f"lead {_fmt(c['score_median_lead_days'], '.0f')} vs "
        f"{_fmt(c['dpd_only_median_lead_days'], '.0f')} d"
        for cap, c in bt["by_capacity"].items()
    )
    lift, share = g["customer_alert_lift"], g["alerted_customer_share"]
    early, lead, rec = g["pre_delinquency_share"], g["median_lead_time_days"], g["recall_at_5pct"]
    return [
        ("better than DPD-only at equal volume", versus, bt["met"]),
        (
            "customer lift >= 4 with 90% of defaults alerted",
            f"lift {_fmt(lift['value'], '.2f')}, "
            f"{_fmt(lift['defaults_alerted_share'], '.0%')} alerted",
            lift["met"],
        ),
        ("at most 25% of customers alerted", _fmt(share["value"], ".0%"), share["met"]),
        (
            "50% of defaults alerted 30+ d before the first missed instalment",
            _fmt(early["value"], ".0%"),
            early["met"],
        ),
        ("median lead time >= 60 d", f"{_fmt(lead['value'], '.0f')} d", lead["met"]),
        ("recall >= 70% at 5% daily capacity", _fmt(rec["value"], ".1%"), rec["met"]),
    ]


def render_summary(report: dict[str, Any]) -> str:
    """A dozen lines for the terminal."""
    b, a, lead = report["book"], report["alerts"], report["lead_time_days"]
    run, disc, g = report["run"], report["discrimination"], report["goals"]
    sev = ", ".join(f"{k} {v}" for k, v in a["by_severity"].items()) or "none"
    sig = ", ".join(f"{k} {v}" for k, v in list(a["by_signal"].items())[:4]) or "none"
    lines = [
        f"book: {b['customers']:,} customers over {b['days']:.0f} days, {b['defaults']:,} "
        f"defaults ({report.get('outcome', '90+ DPD')}), {b['rescorings']:,} rescorings",
        f"alerts opened: {a['opened']:,} ({a['customers_alerted']:,} customers); "
        f"by severity: {sev}; top signals: {sig}",
        f"caught defaults: {lead['caught']:,} of {lead['defaults']:,}; lead time median "
        f"{_fmt(lead['median'], '.0f')} d (p25 {_fmt(lead['p25'], '.0f')}, "
        f"p75 {_fmt(lead['p75'], '.0f')})",
    ]
    for key, c in report["capacity"].items():
        s, d, e = c["score"], c["dpd_only"], c["score_at_dpd_volume"]
        lines.append(
            f"capacity {key}/day ({c['daily_volume']:,}): score P {_fmt(s['precision'], '.1%')} "
            f"R {_fmt(s['recall'], '.1%')} | DPD-only P {_fmt(d['precision'], '.1%')} "
            f"R {_fmt(d['recall'], '.1%')} | score at DPD volume R {_fmt(e['recall'], '.1%')}"
        )
        p = c.get("priority_at_dpd_volume")
        if p is not None:
            lines.append(
                f"  priority (PD x exposure) at DPD volume ({p['daily_volume']:,}/day): "
                f"{_rule_line(p)} | DPD-only: {_rule_line(d)}"
            )
    cens = (
        " (outcomes censored at book end)"
        if report["evaluation_window"]["horizon_censored"]
        else ""
    )
    budget = report.get("alert_budget")
    if budget is not None:
        o = budget["actionable"]
        lines.append(
            "alert budget (actionable): customer precision "
            f"{_fmt(o['customer_precision'], '.1%')} = lift "
            f"{_fmt(o['lift'], '.2f')} over the {budget['base_rate']:.1%} base rate; "
            f"{_fmt(o['alerts_per_caught_default'], '.1f')} alerts per caught default; "
            f"{o['never_defaulting_alerted_share']:.0%} of never-defaulting customers alerted; "
            f"{_fmt(o['pre_delinquency_share'], '.0%')} of defaults alerted 30+ d before their "
            "first missed instalment"
        )
    lines.append(
        f"behaviour score, {report.get('outcome', '90+ DPD')} within "
        f"{report['horizon_days']:.0f} d{cens}: "
        f"AUC {_fmt(disc['auc'], '.3f')}, KS {_fmt(disc['ks'], '.3f')}"
    )
    dl = sum(run["dead_letters"].values())
    lines.append(
        f"run: {run['events']:,} events, {_fmt(run['events_per_s'], ',.0f')} ev/s, latency p50 "
        f"{_fmt(run['latency_p50_ms'])} ms p99 {_fmt(run['latency_p99_ms'])} ms, "
        f"{dl:,} dead letters"
    )

    mark = {True: "MET", False: "NOT MET", None: "n/a"}
    lines += [f"goal {label}: {value} -> {mark[met]}" for label, value, met in goal_rows(g)]
    return "\n".join(lines)


def _rule_line(r: dict[str, Any]) -> str:
    """Recall, precision, median lead and expected loss caught of one capacity rule."""
    return (
        f"R {_fmt(r['recall'], '.1%')} P {_fmt(r['precision'], '.1%')} lead "
        f"{_fmt(r['lead_time_days']['median'], '.0f')} d, EL caught "
        f"{_fmt(r.get('expected_loss_caught'), ',.0f')}"
    )


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _bars(ax: Any, counts: Mapping[str, int], title: str, colors: Sequence[str] | None) -> None:
    if counts:
        ax.bar(list(counts), list(counts.values()), color=colors)
        ax.tick_params(axis="x", labelrotation=30)
    else:
        ax.text(0.5, 0.5, "no alerts", ha="center", va="center", transform=ax.transAxes)
    ax.set(title=title, ylabel="opened alerts")


def _plots(report: dict[str, Any]) -> dict[str, str]:
    """Each plot as a PNG data URI, built from the report dict alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    a = report["alerts"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    palette = {
        "watch": "#999999",
        "blue": "#4a7fd4",
        "yellow": "#e0c030",
        "orange": "#e58a2b",
        "red": "#cc3333",
    }
    _bars(ax, a["by_severity"], "Alerts by severity", [palette[s] for s in a["by_severity"]])
    out["alerts_by_severity"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    _bars(ax, a["by_signal"], "Alerts by signal", None)
    out["alerts_by_signal"] = _png(fig)

    names = report["grade_names"]
    m = np.asarray(report["grade_migration"]["matrix"], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(np.log1p(m), cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        if v:
            ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set(
        xlabel="grade at end",
        ylabel="grade at evaluation start",
        title="Grade migration (customers)",
    )
    out["grade_migration"] = _png(fig)

    lead = report["lead_time_days"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    h = lead["histogram"]
    if h["counts"]:
        edges = h["edges"]
        ax.bar(edges[:-1], h["counts"], width=np.diff(edges), align="edge", edgecolor="white")
        ax.axvline(lead["median"], color="k", ls="--", label=f"median {lead['median']:.0f} d")
        ax.axvline(GOAL_LEAD_DAYS, color="tab:red", ls=":", label="goal 60 d")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no caught defaults", ha="center", va="center", transform=ax.transAxes)
    outcome = report.get("outcome", "90+ DPD")
    ax.set(
        xlabel=f"days from first alert to {outcome}", ylabel="caught defaults", title="Lead time"
    )
    out["lead_time"] = _png(fig)

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), sharey=True)
    rules = [
        ("score", "score"),
        ("score_at_dpd_volume", "score @ DPD volume"),
        ("priority_at_dpd_volume", "priority @ DPD volume"),
        ("dpd_only", "DPD-only 30+"),
    ]
    caps = list(report["capacity"])
    rules = [r for r in rules if all(r[0] in report["capacity"][c] for c in caps)]
    x = np.arange(len(caps))
    width = 0.8 / len(rules)
    for ax, metric in zip(axes, ("precision", "recall"), strict=True):
        for k, (key, label) in enumerate(rules):
            vals = [report["capacity"][c][key][metric] or 0.0 for c in caps]
            ax.bar(x + (k - (len(rules) - 1) / 2) * width, vals, width=width, label=label)
        ax.set_xticks(x, [f"{c}/day" for c in caps])
        ax.set(title=metric.capitalize(), ylim=(0, 1))
    axes[1].axhline(GOAL_RECALL, color="k", ls=":", lw=1)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(rules))
    out["precision_recall"] = _png(fig)
    return out


_CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.met{color:#1a7f37;font-weight:bold}.miss{color:#b42318;font-weight:bold}
img{max-width:100%;margin:.3em}pre{background:#f7f7f7;padding:.6em;font-size:.85em}"""


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _goal_cell(met: bool | None) -> str:
    if met is None:
        return "n/a"
    return '<span class="met">met</span>' if met else '<span class="miss">not met</span>'


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: inline CSS, plots as base64 PNG data URIs, no external links."""
    plots = _plots(report)
    outcome = report.get("outcome", "90+ DPD")
    img = {k: f'<img alt="{k}" src="{v}">' for k, v in plots.items()}
    run, g, lead, w = (
        report["run"],
        report["goals"],
        report["lead_time_days"],
        report["evaluation_window"],
    )
    cap_rows = []
    for key, c in report["capacity"].items():
        names = ("score", "score_at_dpd_volume", "priority", "priority_at_dpd_volume", "dpd_only")
        for name in (n for n in names if n in c):
            r = c[name]
            cap_rows.append(
                (
                    key,
                    name,
                    f"{r['flags_per_day']:.1f}",
                    _fmt(r["precision"], ".1%"),
                    _fmt(r["recall"], ".1%"),
                    r["defaulters_caught"],
                    _fmt(r["lead_time_days"]["median"], ".0f"),
                    _fmt(r.get("expected_loss_caught"), ",.0f"),
                )
            )
    disc = report["discrimination"]
    goals = (
        "<table><tr><th>goal</th><th>value</th><th>status</th></tr>"
        + "".join(
            f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td>"
            f"<td>{_goal_cell(met)}</td></tr>"
            for label, value, met in goal_rows(g)
        )
        + "</table>"
    )
    run_rows = [
        ("events", f"{run['events']:,}"),
        ("events/s", _fmt(run["events_per_s"], ",.0f")),
        ("event-to-alert latency p50 (ms)", _fmt(run["latency_p50_ms"])),
        ("event-to-alert latency p99 (ms)", _fmt(run["latency_p99_ms"])),
        ("duration (s)", _fmt(run["duration_s"])),
        ("workers", _fmt(run["workers"], "d")),
    ] + [(f"dead letters: {k}", f"{v:,}") for k, v in sorted(run["dead_letters"].items())]
    censored = (
        "<p>The book is shorter than warm-up + horizon: outcomes are censored at the book's end, "
        "so precision is a lower bound.</p>"
        if w["horizon_censored"]
        else ""
    )
    b = report["book"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>riskmon early-warning report"
        f"</title><style>{_CSS}</style></head><body>",
        "<h1>riskmon early-warning report</h1>",
        f"<pre>{html.escape(render_summary(report))}</pre>",
        "<h2>Goals</h2>",
        goals,
        "<h2>Alerts</h2>",
        _table(("status", "alerts"), report["alerts"]["by_status"].items()),
        img["alerts_by_severity"],
        img["alerts_by_signal"],
        "<h2>Grade migration (evaluation start vs last rescoring)</h2>",
        img["grade_migration"],
        f"<h2>Lead time (first alert to {html.escape(outcome)}, caught defaults)</h2>",
        f"<p>{lead['caught']:,} of {lead['defaults']:,} defaults caught; median "
        f"{_fmt(lead['median'], '.0f')} d, p25 {_fmt(lead['p25'], '.0f')} d, p75 "
        f"{_fmt(lead['p75'], '.0f')} d. DPD-only (first 30+ DPD) median: "
        f"{_fmt(report['dpd_only_lead_time_days']['median'], '.0f')} d.</p>",
        img["lead_time"],
        "<h2>Precision and recall at a daily alert capacity</h2>",
        f"<p>{w['days']} evaluation days after a {w['warmup_days']:.0f}-day warm-up; "
        f"{w['catchable_defaulters']:,} defaulters catchable in the window; horizon "
        f"{report['horizon_days']:.0f} days.</p>{censored}",
        _table(
            (
                "capacity",
                "rule",
                "flags/day",
                "precision",
                "recall",
                "caught",
                "median lead (d)",
                "expected loss caught",
            ),
            cap_rows,
        ),
        "<p><i>priority</i> flags the highest expected loss (PD of the latest score x exposure, "
        "as <code>riskmon queue</code> orders); <i>expected loss caught</i> sums each caught "
        "defaulter's exposure at the rule's first right flag (definitions: "
        "<code>streams/evaluation/capacity.py</code>).</p>",
        img["precision_recall"],
        f"<h2>Behaviour score: {html.escape(outcome)} within "
        f"{report['horizon_days']:.0f} days</h2>",
        _table(
            ("snapshots", "rows", "bads", "AUC", "Gini", "KS"),
            [
                (
                    disc["snapshots"],
                    f"{disc['rows']:,}",
                    f"{disc['bads']:,}",
                    _fmt(disc["auc"], ".3f"),
                    _fmt(disc["gini"], ".3f"),
                    _fmt(disc["ks"], ".3f"),
                )
            ],
        ),
        "<h2>Throughput and latency</h2>",
        _table(("measure", "value"), run_rows),
        f"<p>Book: {b['customers']:,} customers, {b['rescorings']:,} rescorings.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(report: dict[str, Any], report_dir: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``report_dir`` (created); return both."""
    report_dir.mkdir(parents=True, exist_ok=True)
    js = report_dir / "report.json"
    js.write_text(json.dumps(report, indent=1, allow_nan=False))
    page = report_dir / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    return js, page
