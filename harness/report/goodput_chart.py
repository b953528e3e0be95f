"""The goodput-vs-request-rate chart of ``llm-server`` rows, one series per sweep.

A sweep is the rows that differ only in their offered rate (same variant, backend, threads and
engine batch). x: offered rate (``target_qps``); solid line: goodput (``goodput_rps``: requests
per second that met the TTFT and TPOT objectives); dashed: achieved rate; dotted grey: goodput
= offered. The knee (:func:`harness.scenarios.goodput.knee`, from each row's SLO attainment) is
a filled marker with a vertical tick. Both axes start at 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from html import escape

from harness.report.charts import FONT, PALETTE, _svg, fmt_tick, nice_ticks, text_width
from harness.result import CaseResult
from harness.scenarios.goodput import RatePoint, knee

WIDTH, HEIGHT, LEFT, TOP, BOTTOM = 520, 260, 56, 10, 40


def _attainment(row: CaseResult) -> float | None:
    try:
        details = json.loads(row.details or "{}")
    except json.JSONDecodeError:
        return None
    value = details.get("llm_server", {}).get("attainment") if isinstance(details, dict) else None
    return float(value) if isinstance(value, int | float) else None


def sweeps(rows: Sequence[CaseResult]) -> dict[str, list[CaseResult]]:
    """llm-server rows with a goodput, grouped into sweeps (label -> rows by offered rate)."""
    out: dict[str, list[CaseResult]] = {}
    for r in rows:
        if r.scenario != "llm-server" or r.target_qps is None or r.goodput_rps is None:
            continue
        batch = re.sub(r"-r[0-9.e+-]+rps$", "", r.serving or "")
        label = f"{r.variant} {r.backend} t{r.threads} {batch}".strip()
        out.setdefault(label, []).append(r)
    return {k: sorted(v, key=lambda r: r.target_qps or 0.0) for k, v in out.items()}


def sweep_knee(rows: Sequence[CaseResult]) -> float | None:
    """The knee of one sweep's rows (each row's attainment against its own goal)."""
    goals = {json.loads(r.details or "{}").get("llm_server", {}).get("attainment_goal", 0.9)
             for r in rows}  # fmt: skip
    points = []
    for r in rows:  # a failed rate (every request failed) attained nothing
        attained = 0.0 if r.status == "failed" else _attainment(r)
        if attained is not None:
            points.append(RatePoint(r.target_qps or 0.0, attained))
    return knee(points, max(goals)) if points else None


def goodput_vs_rate(rows: Sequence[CaseResult], title: str) -> str:
    """SVG of goodput and achieved rate against the offered rate for every llm-server sweep;
    "" when there is none."""
    series = sweeps(rows)
    if not series:
        return ""
    top = max(max(r.target_qps or 0.0, r.achieved_qps or 0.0) for rs in series.values()
              for r in rs)  # fmt: skip
    ticks = nice_ticks(0.0, top, 5)
    hi = ticks[-1]
    legend_w = max(text_width(t) for t in series) + 30

    def px(v: float) -> float:
        return LEFT + WIDTH * v / hi

    def py(v: float) -> float:
        return TOP + HEIGHT * (1 - v / hi)

    base = TOP + HEIGHT
    body = [
        f'<line x1="{LEFT}" y1="{base}" x2="{LEFT + WIDTH}" y2="{base}" stroke="#000"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#000"/>',
        f'<line x1="{px(0):.1f}" y1="{py(0):.1f}" x2="{px(hi):.1f}" y2="{py(hi):.1f}" '
        'stroke="#999" stroke-dasharray="1 3"><title>goodput = offered rate</title></line>',
    ]
    step = ticks[1] - ticks[0]
    for t in ticks:
        body.append(f'<text x="{px(t):.1f}" y="{base + 14}" {FONT} text-anchor="middle">'
                    f"{fmt_tick(t, step)}</text>")  # fmt: skip
        body.append(f'<text x="{LEFT - 4}" y="{py(t) + 4:.1f}" {FONT} text-anchor="end">'
                    f"{fmt_tick(t, step)}</text>")  # fmt: skip
    body.append(f'<text x="{LEFT + WIDTH / 2}" y="{base + 32}" {FONT} text-anchor="middle">'
                "offered request rate, requests per second</text>")  # fmt: skip
    mid = TOP + HEIGHT / 2
    body.append(f'<text x="12" y="{mid}" {FONT} text-anchor="middle" '
                f'transform="rotate(-90 12 {mid})">requests per second</text>')  # fmt: skip
    for i, (label, rs) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        for key, dash in (("goodput_rps", ""), ("achieved_qps", ' stroke-dasharray="4 3"')):
            points = [(px(r.target_qps or 0.0), py(getattr(r, key))) for r in rs
                      if getattr(r, key) is not None]  # fmt: skip
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}"{dash}/>')
        at = sweep_knee(rs)
        for r in rs:
            fill = colour if at is not None and r.target_qps == at else "#fff"
            body.append(
                f'<circle cx="{px(r.target_qps or 0.0):.1f}" cy="{py(r.goodput_rps or 0.0):.1f}" '
                f'r="3.5" fill="{fill}" stroke="{colour}"><title>{escape(label)}: offered '
                f"{r.target_qps:g}/s, achieved {r.achieved_qps or 0:.2f}/s, goodput "
                f"{r.goodput_rps:.2f}/s, error rate {r.error_rate or 0:.0%}</title></circle>"
            )
        if at is not None:
            x = px(at)
            body.append(
                f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base - 8}" '
                f'stroke="{colour}" stroke-width="2"><title>knee {at:g}/s</title></line>'
            )
        knee_text = f" (knee {at:g}/s)" if at is not None else " (no knee)"
        y = TOP + 14 * i + 8
        body.append(f'<line x1="{LEFT + WIDTH + 12}" y1="{y - 4}" x2="{LEFT + WIDTH + 26}" '
                    f'y2="{y - 4}" stroke="{colour}" stroke-width="2"/>')  # fmt: skip
        body.append(f'<text x="{LEFT + WIDTH + 30}" y="{y}" {FONT}>'
                    f"{escape(label + knee_text)}</text>")  # fmt: skip
    return _svg(LEFT + WIDTH + legend_w + 90, base + BOTTOM, body, title)
