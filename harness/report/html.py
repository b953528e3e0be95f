"""The HTML report: results table, speedup heatmap, latency distributions, Pareto charts and,
for two runs, the comparison. One file; nothing is fetched when it is opened."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np

from harness.compare import CaseComparison
from harness.recommend import Recommendation
from harness.render import comparison_rows, display_rows, notes
from harness.report.charts import (
    latency_distributions,
    pareto_chart,
    recommendation_chart,
    speedup_heatmap,
)
from harness.result import CaseResult

CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0 20px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; }
tr.failed td { color: #b00020; }
tr.skipped td { color: #8a6d00; }
tr.fidelity-fail td { background: #fbe3f2; }
tr.regression td { background: #fde0dc; }
td.est { font-style: italic; text-decoration: underline dotted; }
.note { font-size: 12px; color: #555; }
figure { display: inline-block; margin: 8px 16px 16px 0; vertical-align: top; }
"""


@dataclass
class ReportRun:
    run: dict[str, Any]
    cases: list[CaseResult]
    samples: dict[str, np.ndarray]  # case_id -> ms


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for cells, cls in zip(rows, classes, strict=True):
        tds = "".join(
            f'<td class="est" title="estimated, not measured">{escape(c)}</td>'
            if c.endswith(" est")
            else f"<td>{escape(c)}</td>"
            for c in cells
        )
        body.append(f'<tr class="{cls}">{tds}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _row_class(r: CaseResult) -> str:
    return "fidelity-fail" if r.fidelity_ok is False else r.status


def _run_section(rr: ReportRun) -> str:
    run = rr.run
    header, rows = display_rows(rr.cases)
    parts = [
        f"<h2>Run {escape(str(run['run_id']))} &middot; suite {escape(str(run['suite']))}</h2>",
        f'<p class="note">{escape(str(run["cpu_model"]))}, {run["logical_cpus"]} CPUs, '
        f"ISA {escape(str(run['isa_flags']))}; started {escape(str(run['started_at']))}; "
        f"versions {escape(str(run['versions']))}</p>",
        _table(header, rows, [_row_class(r) for r in rr.cases]),
        *(f'<p class="note">{escape(line)}</p>' for line in notes(rr.cases)),
    ]
    groups: dict[tuple[str, str | None], list[CaseResult]] = {}
    for r in rr.cases:
        groups.setdefault((r.model, r.shape), []).append(r)
    for (model, shape), rows_ in groups.items():
        ok = [r for r in rows_ if r.status == "ok"]
        label = f"{model} {shape or ''}".strip()
        charts = [
            speedup_heatmap(rows_, f"{label}: speedup vs baseline (crossed: fails fidelity)"),
            latency_distributions(ok, rr.samples, f"{label}: latency (p1-p99, p25-p75, p50)"),
            pareto_chart(
                ok,
                "fidelity_ratio",
                "fidelity vs fp32",
                True,
                f"{label}: latency vs fidelity (dashed: Pareto front)",
            ),
            pareto_chart(
                ok,
                "cost_usd_per_million",
                "USD per 1M",
                False,
                f"{label}: latency vs cost (dashed: Pareto front)",
            ),
        ]
        parts.append(f"<h3>{escape(label)}</h3>")
        parts += [f"<figure>{svg}</figure>" for svg in charts if svg]
    return "\n".join(parts)


def recommendation_section(rec: Recommendation, command: str | None) -> str:
    """The chosen configuration, why every other lost, and the Pareto chart (winner marked)."""
    obj = rec.objective
    header = ["role", "configuration", f"{obj.name} {obj.unit}", "p99 ms [upper]", "front", "why"]
    rows = [
        [
            v.role,
            v.label,
            _num(getattr(v.row, obj.column)),
            f"{_num(v.row.latency_ms_p99)} [{_num(v.row.latency_ms_p99_ci_high)}]",
            "yes" if v.on_front else "",
            v.why,
        ]
        for v in rec.verdicts
    ]
    classes = ["" if v.role != "excluded" else "skipped" for v in rec.verdicts]
    best = "highest" if obj.maximize else "lowest"
    winner = rec.winner
    parts = [
        "<h2>Recommendation</h2>",
        f"<p>{best} {escape(obj.name)}: <b>{escape(winner.label)}</b></p>"
        if winner
        else "<p><b>No configuration meets the constraints.</b></p>",
        f"<pre>{escape(command)}</pre>" if command else "",
        _table(header, rows, classes),
        *(f'<p class="note">{escape(n)}</p>' for n in rec.notes),
    ]
    chart = recommendation_chart(rec, f"{obj.name} vs p99 (orange ring: Pareto front)")
    if chart:
        parts.append(f"<figure>{chart}</figure>")
    return "\n".join(p for p in parts if p)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def html_report(
    runs: Sequence[ReportRun],
    comparison: list[CaseComparison] | None,
    recommendation: tuple[Recommendation, str | None] | None = None,
) -> str:
    """The whole report as one HTML document; ``recommendation`` (with the command that
    reproduces its winner) adds a Recommendation section first."""
    sections = [_run_section(rr) for rr in runs]
    if recommendation is not None:
        sections.insert(0, recommendation_section(*recommendation))
    if comparison is not None:
        header, rows = comparison_rows(comparison)
        classes = ["regression" if c.regression else "" for c in comparison]
        sections.insert(
            1 if recommendation else 0, "<h2>Comparison</h2>" + _table(header, rows, classes)
        )
    title = "infrabench report: " + ", ".join(str(rr.run["run_id"]) for rr in runs)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
