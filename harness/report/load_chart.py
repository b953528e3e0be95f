"""The latency-vs-load chart of server-scenario rows: p50 and p99 against achieved QPS.

Each server row's details hold its max-QPS search probes (``loadgen.probes``: target and
achieved QPS, p50 and p99 in ms, passed). One colour per configuration (backend / serving
knobs); the p99 line is solid, the p50 line dashed, a passing probe's marker filled, a failing
one's hollow; the dashed horizontal line is the p99 bound. Both axes start at 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

from harness.report.charts import FONT, PALETTE, _svg, fmt_tick, nice_ticks, text_width
from harness.result import CaseResult

WIDTH, HEIGHT, LEFT, TOP, BOTTOM = 520, 260, 56, 10, 40


def _probes(row: CaseResult) -> list[dict[str, Any]]:
    try:
        details = json.loads(row.details or "{}")
    except json.JSONDecodeError:
        return []
    probes = details.get("loadgen", {}).get("probes", []) if isinstance(details, dict) else []
    usable = [p for p in probes if p.get("achieved_qps") and p.get("p99_ms") is not None]
    return sorted(usable, key=lambda p: p["achieved_qps"])


def latency_vs_load(rows: Sequence[CaseResult], title: str) -> str:
    """SVG of p50/p99 (ms) against achieved QPS for every server row with probes; "" when
    there is none."""
    series = [(r, _probes(r)) for r in rows if r.scenario == "server"]
    series = [(r, p) for r, p in series if p]
    if not series:
        return ""
    bound = max((r.latency_bound_ms or 0.0) for r, _ in series)
    x_ticks = nice_ticks(0.0, max(p["achieved_qps"] for _, ps in series for p in ps), 5)
    y_ticks = nice_ticks(0.0, max([bound, *(p["p99_ms"] for _, ps in series for p in ps)]), 4)
    x_hi, y_hi = x_ticks[-1], y_ticks[-1]
    labels = [f"{r.backend} {r.serving or ''}".strip() for r, _ in series]
    legend_w = max(text_width(t) for t in labels) + 30

    def px(qps: float) -> float:
        return LEFT + WIDTH * qps / x_hi

    def py(ms: float) -> float:
        return TOP + HEIGHT * (1 - ms / y_hi)

    body: list[str] = []
    base = TOP + HEIGHT
    body.append(f'<line x1="{LEFT}" y1="{base}" x2="{LEFT + WIDTH}" y2="{base}" stroke="#000"/>')
    body.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#000"/>')
    for q in x_ticks:
        body.append(f'<text x="{px(q):.1f}" y="{base + 14}" {FONT} text-anchor="middle">'
                    f"{fmt_tick(q, x_ticks[1] - x_ticks[0])}</text>")  # fmt: skip
    for ms in y_ticks:
        body.append(f'<text x="{LEFT - 4}" y="{py(ms) + 4:.1f}" {FONT} text-anchor="end">'
                    f"{fmt_tick(ms, y_ticks[1] - y_ticks[0])}</text>")  # fmt: skip
    body.append(f'<text x="{LEFT + WIDTH / 2}" y="{base + 32}" {FONT} text-anchor="middle">'
                "achieved load, queries per second</text>")  # fmt: skip
    body.append(f'<text x="12" y="{TOP + HEIGHT / 2}" {FONT} text-anchor="middle" '
                f'transform="rotate(-90 12 {TOP + HEIGHT / 2})">latency, ms</text>')  # fmt: skip
    if bound:
        body.append(f'<line x1="{LEFT}" y1="{py(bound):.1f}" x2="{LEFT + WIDTH}" '
                    f'y2="{py(bound):.1f}" stroke="#e15759" stroke-dasharray="6 3">'
                    f"<title>p99 bound {bound:g} ms</title></line>")  # fmt: skip
    for i, ((_, probes), label) in enumerate(zip(series, labels, strict=True)):
        colour = PALETTE[i % len(PALETTE)]
        for key, dash in (("p99_ms", ""), ("p50_ms", ' stroke-dasharray="4 3"')):
            points = [(px(p["achieved_qps"]), py(p[key])) for p in probes if p[key] is not None]
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}"{dash}/>')
        for p in probes:
            fill = colour if p["passed"] else "#fff"
            body.append(
                f'<circle cx="{px(p["achieved_qps"]):.1f}" cy="{py(p["p99_ms"]):.1f}" r="3.5" '
                f'fill="{fill}" stroke="{colour}"><title>{escape(label)}: target '
                f"{p['target_qps']:.1f} QPS, achieved {p['achieved_qps']:.1f}, p99 "
                f"{p['p99_ms']:.1f} ms</title></circle>"
            )
        y = TOP + 14 * i + 8
        body.append(f'<line x1="{LEFT + WIDTH + 12}" y1="{y - 4}" x2="{LEFT + WIDTH + 26}" '
                    f'y2="{y - 4}" stroke="{colour}" stroke-width="2"/>')  # fmt: skip
        body.append(f'<text x="{LEFT + WIDTH + 30}" y="{y}" {FONT}>{escape(label)}</text>')
    return _svg(LEFT + WIDTH + legend_w + 12, base + BOTTOM, body, title)
