"""The HTML report: results table, speedup heatmap, latency distributions, Pareto charts and,
for two runs, the comparison. One file; nothing is fetched when it is opened."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np

from harness.columns import WIDE, default_view, display_rows, is_generative, noise_flags, notes
from harness.compare import CaseComparison, hardware_speedups
from harness.recommend import Recommendation
from harness.render import comparison_rows
from harness.report.charts import (
    FIDELITY_RESOLUTION,
    latency_distributions,
    pareto_chart,
    recommendation_chart,
    speedup_heatmap,
)
from harness.report.generative_charts import decode_vs_batch, ttft_tpot_chart
from harness.report.goodput_chart import goodput_vs_rate
from harness.report.load_chart import latency_vs_load
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
td.est, th.est { font-style: italic; text-decoration: underline dotted; }
.note { font-size: 12px; color: #555; }
figure { display: inline-block; margin: 8px 16px 16px 0; vertical-align: top;
         max-width: 100%; overflow-x: auto; }
figcaption { font-size: 13px; font-weight: bold; margin: 0 0 4px; max-width: 600px; }
.scroll { max-width: 100%; overflow-x: auto; margin: 8px 0 20px; }
.scroll table { margin: 0; }
td.wrap { white-space: normal; min-width: 16em; }
details { margin: 0 0 20px; font-size: 13px; }
tr.noisy td { background: #fff6d5; }
h1, h2, h3, p { overflow-wrap: anywhere; }
"""


# The run's table: the terminal's default view (the decoders' for decoder rows) and the spread
# and resource figures; it fits a 1280 px window. Every column is one click away (a <details>
# table that scrolls sideways).
REPORT_EXTRA = ("n", "cv", "peak_mb", "energy", "co2", "noise")


def report_columns(cases: Sequence[CaseResult]) -> tuple[str, ...]:
    return (*default_view(cases)[0], *REPORT_EXTRA)


@dataclass
class ReportRun:
    run: dict[str, Any]
    cases: list[CaseResult]
    samples: dict[str, np.ndarray]  # case_id -> ms


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str]) -> str:
    def cell(tag: str, text: str) -> str:
        if text.endswith(" est"):  # an estimated figure (cell) or a column of them (header)
            return f'<{tag} class="est" title="estimated, not measured">{escape(text)}</{tag}>'
        if len(text) > 40:  # a reason or a noise flag: wraps instead of widening the table
            return f'<{tag} class="wrap">{escape(text)}</{tag}>'
        return f"<{tag}>{escape(text)}</{tag}>"

    head = "".join(cell("th", h) for h in header)
    body = []
    for cells, cls in zip(rows, classes, strict=True):
        tds = "".join(cell("td", c) for c in cells)
        body.append(f'<tr class="{cls}">{tds}</tr>')
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'  # a wide table scrolls, the page does not


def _row_class(r: CaseResult) -> str:
    if r.fidelity_ok is False:
        return "fidelity-fail"
    return "noisy" if r.status == "ok" and noise_flags(r) else r.status


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}</figure>"


def _run_section(rr: ReportRun) -> str:
    run = rr.run
    header, rows = display_rows(rr.cases, report_columns(rr.cases))
    wide_header, wide_rows = display_rows(rr.cases, WIDE)
    classes = [_row_class(r) for r in rr.cases]
    parts = [
        f"<h2>Run {escape(str(run['run_id']))} &middot; suite {escape(str(run['suite']))}</h2>",
        f'<p class="note">{escape(str(run["cpu_model"]))}, {run["logical_cpus"]} CPUs, '
        f"ISA {escape(str(run['isa_flags']))}; started {escape(str(run['started_at']))}; "
        f"versions {escape(str(run['versions']))}</p>",
        _table(header, rows, classes),
        *(f'<p class="note">{escape(line)}</p>' for line in notes(rr.cases)),
        f"<details><summary>every column</summary>{_table(wide_header, wide_rows, classes)}"
        "</details>",
    ]
    across = hardware_speedups(rr.cases)
    if across:  # fleet rows of several classes: a hardware comparison, side by side
        keys = ("model", "variant", "backend", "shape", "threads", "hardware_class",
                "latency_ms_p50", "speedup_vs_slowest_class")  # fmt: skip
        cells = [[_num(a[k]) if isinstance(a[k], float) else str(a[k]) for k in keys]
                 for a in across]  # fmt: skip
        parts.append("<h3>Across hardware classes</h3>" + _table(keys, cells, [""] * len(cells)))
    groups: dict[tuple[str, str | None], list[CaseResult]] = {}
    for r in rr.cases:
        groups.setdefault((r.model, r.shape), []).append(r)
    for (model, shape), rows_ in groups.items():
        ok = [r for r in rows_ if r.status == "ok"]
        label = f"{model} {shape or ''}".strip()
        titles = [
            f"{label}: speedup vs baseline (crossed: fails fidelity)",
            f"{label}: latency (whiskers p1-p99, box p25-p75, line p50)",
            f"{label}: latency vs fidelity (dashed: Pareto front)",
            f"{label}: latency vs cost (dashed: Pareto front)",
            f"{label}: server latency vs load (solid p99, dashed p50; hollow: over the bound)",
            f"{label}: TTFT and TPOT (bar p50, tick p99)",
            f"{label}: LLM goodput vs request rate (solid goodput, dashed achieved; filled: "
            "the knee)",
        ]
        charts = [
            speedup_heatmap(rows_, titles[0]),
            latency_distributions(ok, rr.samples, titles[1]),
            pareto_chart(ok, "fidelity_ratio", "fidelity, share of fp32", True, titles[2],
                         resolution=FIDELITY_RESOLUTION),
            pareto_chart(ok, "cost_usd_per_million", "USD per 1M inferences", False, titles[3]),
            latency_vs_load(ok, titles[4]),
            ttft_tpot_chart(ok, titles[5]),
            goodput_vs_rate([r for r in rows_ if r.status != "skipped"], titles[6]),  # a
            # rate where every request failed is the overload point: it stays in the sweep
        ]  # fmt: skip
        parts.append(f"<h3>{escape(label)}</h3>")
        parts += [_figure(t, svg) for t, svg in zip(titles, charts, strict=True) if svg]
    parts += _decoding(rr.cases)
    return "\n".join(parts)


def _decoding(cases: Sequence[CaseResult]) -> list[str]:
    """Per decoder model, decode tokens/s against batch size over every shape of the run."""
    parts = []
    for model in dict.fromkeys(r.model for r in cases if is_generative(r)):
        title = (f"{model}: decode tokens/s vs batch size (colour: backend / variant, dash: "
                 "prompt length)")  # fmt: skip
        svg = decode_vs_batch([r for r in cases if r.model == model], title)
        if svg:
            parts += [f"<h3>{escape(model)}: decoding</h3>", _figure(title, svg)]
    return parts


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
