"""Charts as inline SVG strings: pure functions of result rows and raw samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

from harness.recommend import Recommendation
from harness.result import CaseResult

FONT = 'font-family="sans-serif" font-size="11"'


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _speedup_colour(speedup: float) -> str:
    """Red below 1x, white at 1x, green above (log scale, saturating at 4x / 0.25x)."""
    t = max(-1.0, min(1.0, math.log(speedup, 4)))
    if t >= 0:
        r, g, b = int(255 * (1 - t)), 255 - int(80 * t), int(255 * (1 - t))
    else:
        r, g, b = 255, int(255 * (1 + t)), int(255 * (1 + t))
    return f"rgb({r},{g},{b})"


def speedup_heatmap(rows: Sequence[CaseResult], title: str) -> str:
    """Backend x variant grid of speedup_vs_baseline; a cell failing fidelity is crossed out."""
    backends = sorted({r.backend for r in rows})
    variants = list(dict.fromkeys(r.variant for r in rows))
    by = {(r.backend, r.variant): r for r in rows}
    cell_w, cell_h, left, top = 92, 28, 110, 110
    body = [f'<text x="4" y="14" {FONT} font-weight="bold">{escape(title)}</text>']
    for j, variant in enumerate(variants):
        x = left + j * cell_w + cell_w / 2
        body.append(
            f'<text x="{x}" y="{top - 6}" {FONT} transform="rotate(-35 {x} {top - 6})">'
            f"{escape(variant)}</text>"
        )
    for i, backend in enumerate(backends):
        y = top + i * cell_h
        body.append(f'<text x="4" y="{y + 18}" {FONT}>{escape(backend)}</text>')
        for j, variant in enumerate(variants):
            x = left + j * cell_w
            r = by.get((backend, variant))
            text: str
            if r is None or r.speedup_vs_baseline is None:
                fill, text = "#eeeeee", "-" if r is None else r.status
            else:
                fill, text = _speedup_colour(r.speedup_vs_baseline), f"{r.speedup_vs_baseline:.2f}x"
            body.append(
                f'<rect class="cell" x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{fill}"><title>{escape(backend)} / {escape(variant)}: {text}</title></rect>'
            )
            body.append(f'<text x="{x + 6}" y="{y + 18}" {FONT}>{escape(text)}</text>')
            if r is not None and r.fidelity_ok is False:
                body.append(
                    f'<line x1="{x}" y1="{y + cell_h - 2}" x2="{x + cell_w - 2}" y2="{y}" '
                    'stroke="#a0006e" stroke-width="1.5"/>'
                )
    width = left + cell_w * max(1, len(variants)) + 10
    return _svg(width, top + cell_h * max(1, len(backends)) + 10, body, title)


def latency_distributions(
    rows: Sequence[CaseResult], samples: dict[str, np.ndarray], title: str
) -> str:
    """One horizontal box per case: whiskers p1-p99, box p25-p75, line at the median (ms)."""
    shown = [r for r in rows if r.case_id in samples and samples[r.case_id].size]
    if not shown:
        return ""
    hi = max(float(np.quantile(samples[r.case_id], 0.99)) for r in shown) * 1.05
    left, width, row_h = 300, 520, 22
    body = [f'<text x="4" y="14" {FONT} font-weight="bold">{escape(title)}</text>']

    def px(ms: float) -> float:
        return left + width * ms / hi

    for i, r in enumerate(shown):
        y = 30 + i * row_h
        q = np.quantile(samples[r.case_id], [0.01, 0.25, 0.5, 0.75, 0.99])
        label = f"{r.variant} / {r.backend} / {r.shape}"
        body += [
            f'<text x="4" y="{y + 13}" {FONT}>{escape(label)}</text>',
            f'<line x1="{px(q[0])}" y1="{y + 9}" x2="{px(q[4])}" y2="{y + 9}" stroke="#555"/>',
            f'<rect class="box" x="{px(q[1])}" y="{y + 2}" width="{max(px(q[3]) - px(q[1]), 1)}" '
            f'height="14" fill="#9ecae1" stroke="#3182bd"/>',
            f'<line x1="{px(q[2])}" y1="{y + 1}" x2="{px(q[2])}" y2="{y + 17}" stroke="#08306b" '
            f'stroke-width="2"><title>p50 {q[2]:.3f} ms</title></line>',
        ]
    axis_y = 30 + len(shown) * row_h + 6
    body.append(
        f'<line x1="{left}" y1="{axis_y}" x2="{left + width}" y2="{axis_y}" stroke="#000"/>'
    )
    for k in range(5):
        ms = hi * k / 4
        body.append(f'<text x="{px(ms) - 8}" y="{axis_y + 14}" {FONT}>{ms:.3g}</text>')
    body.append(f'<text x="{left + width + 6}" y="{axis_y + 14}" {FONT}>ms</text>')
    return _svg(left + width + 40, axis_y + 24, body, title)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when x is minimised and y maximised, sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_chart(
    rows: Sequence[CaseResult], y_attr: str, y_label: str, maximise: bool, title: str
) -> str:
    """Scatter of p50 latency (log x) against ``y_attr``; the Pareto front is joined up."""
    pts = [
        (r, float(r.latency_ms_p50), float(getattr(r, y_attr)))
        for r in rows
        if r.latency_ms_p50 and getattr(r, y_attr) is not None
    ]
    if not pts:
        return ""
    left, top, width, height = 60, 34, 520, 260
    xs = [math.log10(p[1]) for p in pts]
    ys = [p[2] for p in pts]
    x0, x1 = min(xs) - 0.05, max(xs) + 0.05
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.08 or abs(y1) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + width * (x - x0) / (x1 - x0), top + height * (1 - (y - y0) / (y1 - y0)))

    body = [
        f'<text x="4" y="14" {FONT} font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#999"/>',
        f'<text x="{left + width / 2 - 40}" y="{top + height + 30}" {FONT}>'
        "p50 latency, ms (log)</text>",
        f'<text x="{left}" y="{top - 4}" {FONT}>{escape(y_label)}</text>',
    ]
    for k in range(5):
        x = x0 + (x1 - x0) * k / 4
        y = y0 + (y1 - y0) * k / 4
        gx, _ = px(x, y0)
        _, gy = px(x0, y)
        body.append(f'<text x="{gx - 10}" y="{top + height + 14}" {FONT}>{10**x:.3g}</text>')
        body.append(f'<text x="{left - 44}" y="{gy + 4}" {FONT}>{y:.4g}</text>')
    front = pareto_front([(x, y if maximise else -y) for x, y in zip(xs, ys, strict=True)])
    line = " ".join(f"{px(xs[i], ys[i])[0]:.1f},{px(xs[i], ys[i])[1]:.1f}" for i in front)
    body.append(f'<polyline points="{line}" fill="none" stroke="#e6550d" stroke-dasharray="4 3"/>')
    for (r, ms, y), x in zip(pts, xs, strict=True):
        cx, cy = px(x, y)
        colour = "#a0006e" if r.fidelity_ok is False else "#3182bd"
        tip = f"{r.variant} / {r.backend} / {r.shape}: {ms:.3f} ms, {y_label} {y:.4g}"
        body.append(
            f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    return _svg(left + width + 20, top + height + 40, body, title)


_ROLE_COLOURS = {"winner": "#2ca25f", "runner-up": "#3182bd", "feasible": "#3182bd",
                 "excluded": "#bbbbbb"}  # fmt: skip


def recommendation_chart(rec: Recommendation, title: str) -> str:
    """The recommendation's rows: p99 latency (log x) against the objective; the Pareto front
    ringed in orange, rows that fail a constraint grey, the winner green and named."""
    obj = rec.objective
    pts = [
        (v, float(v.row.latency_ms_p99), float(getattr(v.row, obj.column)))
        for v in rec.verdicts
        if v.row.latency_ms_p99 and getattr(v.row, obj.column) is not None
    ]
    if not pts:
        return ""
    left, top, width, height = 60, 34, 520, 260
    xs = [math.log10(ms) for _, ms, _ in pts]
    ys = [y for _, _, y in pts]
    x0, x1 = min(xs) - 0.05, max(xs) + 0.05
    pad = (max(ys) - min(ys)) * 0.08 or abs(max(ys)) * 0.05 or 1.0
    y0, y1 = min(ys) - pad, max(ys) + pad

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + width * (x - x0) / (x1 - x0), top + height * (1 - (y - y0) / (y1 - y0)))

    body = [
        f'<text x="4" y="14" {FONT} font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#999"/>',
        f'<text x="{left + width / 2 - 40}" y="{top + height + 30}" {FONT}>'
        "p99 latency, ms (log)</text>",
        f'<text x="{left}" y="{top - 4}" {FONT}>{escape(f"{obj.name} {obj.unit}")}</text>',
    ]
    for k in range(5):
        gx, _ = px(x0 + (x1 - x0) * k / 4, y0)
        _, gy = px(x0, y0 + (y1 - y0) * k / 4)
        body.append(f'<text x="{gx - 10}" y="{top + height + 14}" {FONT}>'
                    f"{10 ** (x0 + (x1 - x0) * k / 4):.3g}</text>")  # fmt: skip
        body.append(
            f'<text x="{left - 44}" y="{gy + 4}" {FONT}>{y0 + (y1 - y0) * k / 4:.4g}</text>'
        )
    for (v, ms, y), x in zip(pts, xs, strict=True):
        cx, cy = px(x, y)
        ring = ' stroke="#e6550d" stroke-width="2"' if v.on_front else ""
        radius = 6 if v.role == "winner" else 4
        tip = f"{v.label}: p99 {ms:.4g} ms, {obj.name} {y:.4g}; {v.why}"
        body.append(
            f'<circle class="point {v.role}" cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}" '
            f'fill="{_ROLE_COLOURS[v.role]}"{ring}><title>{escape(tip)}</title></circle>'
        )
        if v.role == "winner":
            body.append(f'<text x="{cx + 8:.1f}" y="{cy - 8:.1f}" {FONT}>winner</text>')
    return _svg(left + width + 20, top + height + 40, body, title)
