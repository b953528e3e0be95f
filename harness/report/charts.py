"""Charts as inline SVG strings: pure functions of result rows and raw samples.

Titles are not drawn inside a chart (the page puts them in a ``<figcaption>``, which wraps); each
SVG carries its title as ``<title>`` for screen readers. Widths are computed from the longest
label (``text_width``), so nothing is cut at a chart's edge. Axes start from nice ticks and never
magnify differences below the metric's resolution (``value_axis``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

from harness.recommend import Recommendation
from harness.result import CaseResult

FONT_PX = 11
FONT = f'font-family="sans-serif" font-size="{FONT_PX}"'
# Category colours (Tableau 10), one per backend in order of appearance.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac", "#e15759")  # fmt: skip
FAIL_COLOUR = "#a0006e"
FIDELITY_RESOLUTION = 0.001  # the table prints the fidelity ratio to 0.1%


def text_width(text: str, px: float = FONT_PX) -> float:
    """A generous estimate of rendered width: 0.62 em per character (sans-serif averages
    about 0.55 em; digits are 0.556 em in Helvetica/Arial)."""
    return len(text) * px * 0.62


def _svg(width: float, height: float, body: list[str], title: str) -> str:
    w, h = math.ceil(width), math.ceil(height)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def fmt_tick(value: float, step: float) -> str:
    """A tick label with as many decimals as the step needs (0.002 -> 3), never an exponent."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return f"{value:.{decimals}f}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Ticks at 1, 2 or 5 x 10^k from the last at or below ``lo`` to the first at or above
    ``hi``, about ``count`` intervals apart."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    base = 10 ** math.floor(math.log10(raw))
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def value_axis(values: Sequence[float], resolution: float) -> tuple[float, float, list[float]]:
    """(low, high, ticks) of a linear axis for ``values`` whose differences below
    ``resolution`` mean nothing: the span is at least 10 resolutions (extended downward from
    the highest value, so ratios near 1 read 0.990 .. 1.000), ticks at least one resolution
    apart, so no two tick labels are equal."""
    lo, hi = min(values), max(values)
    if hi - lo < 10 * resolution:
        lo = hi - 10 * resolution
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    ticks = [t for t in nice_ticks(lo, hi) if lo <= t <= hi]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else resolution
    if step < resolution:
        ticks = [
            t for t in nice_ticks(lo, hi, max(1, int((hi - lo) / resolution))) if lo <= t <= hi
        ]
    return lo, hi, ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis over [lo, hi] (lo > 0): 1-2-5 decades, else every integer
    multiple, else linear nice ticks."""
    for mults in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [
            m * 10.0**k
            for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in mults
            if lo <= m * 10.0**k <= hi
        ]
        if len(ticks) >= 3:
            return ticks
    return [t for t in nice_ticks(lo, hi, 4) if lo <= t <= hi]


def resolution_of(values: Sequence[float], digits: int = 3) -> float:
    """The resolution of a figure shown with ``digits`` significant digits (cost, energy)."""
    top = max((abs(v) for v in values if v), default=1.0)
    return float(10 ** (math.floor(math.log10(top)) - digits + 1))


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
    cell_w, cell_h = 92, 28
    left = max(text_width(b) for b in backends) + 14
    longest = max(text_width(v) for v in variants)
    top = longest * math.sin(math.radians(35)) + 14  # variant labels rotated 35 degrees
    body = []
    for j, variant in enumerate(variants):
        x = left + j * cell_w + cell_w / 2
        body.append(
            f'<text x="{x:.1f}" y="{top - 6:.1f}" {FONT} '
            f'transform="rotate(-35 {x:.1f} {top - 6:.1f})">{escape(variant)}</text>'
        )
    for i, backend in enumerate(backends):
        y = top + i * cell_h
        body.append(f'<text x="4" y="{y + 18:.1f}" {FONT}>{escape(backend)}</text>')
        for j, variant in enumerate(variants):
            x = left + j * cell_w
            r = by.get((backend, variant))
            text: str
            if r is None or r.speedup_vs_baseline is None:
                fill, text = "#eeeeee", "-" if r is None else r.status
            else:
                fill, text = _speedup_colour(r.speedup_vs_baseline), f"{r.speedup_vs_baseline:.2f}x"
            body.append(
                f'<rect class="cell" x="{x:.1f}" y="{y:.1f}" width="{cell_w - 2}" '
                f'height="{cell_h - 2}" fill="{fill}"><title>{escape(backend)} / '
                f"{escape(variant)}: {text}</title></rect>"
            )
            body.append(f'<text x="{x + 6:.1f}" y="{y + 18:.1f}" {FONT}>{escape(text)}</text>')
            if r is not None and r.fidelity_ok is False:
                body.append(
                    f'<line x1="{x:.1f}" y1="{y + cell_h - 2:.1f}" x2="{x + cell_w - 2:.1f}" '
                    f'y2="{y:.1f}" stroke="{FAIL_COLOUR}" stroke-width="1.5"/>'
                )
    # The last rotated label reaches right of its cell's centre by cos(35) of its length.
    width = max(
        left + cell_w * len(variants),
        left + cell_w * (len(variants) - 0.5) + longest * math.cos(math.radians(35)),
    )
    return _svg(width + 10, top + cell_h * max(1, len(backends)) + 10, body, title)


def latency_distributions(
    rows: Sequence[CaseResult], samples: dict[str, np.ndarray], title: str
) -> str:
    """One horizontal box per case: whiskers p1-p99, box p25-p75, line at the median (ms),
    on an axis from 0 (a difference is seen at its true size)."""
    shown = [r for r in rows if r.case_id in samples and samples[r.case_id].size]
    if not shown:
        return ""
    labels = [f"{r.backend} / {r.variant} / {r.shape}" for r in shown]
    top_ms = max(float(np.quantile(samples[r.case_id], 0.99)) for r in shown)
    ticks = nice_ticks(0.0, top_ms, 4)
    hi = ticks[-1]
    left, width, row_h = max(text_width(t) for t in labels) + 16, 520, 22
    body = []

    def px(ms: float) -> float:
        return left + width * ms / hi

    for i, (r, label) in enumerate(zip(shown, labels, strict=True)):
        y = 6 + i * row_h
        q = np.quantile(samples[r.case_id], [0.01, 0.25, 0.5, 0.75, 0.99])
        body += [
            f'<text x="4" y="{y + 13}" {FONT}>{escape(label)}</text>',
            f'<line x1="{px(q[0]):.1f}" y1="{y + 9}" x2="{px(q[4]):.1f}" y2="{y + 9}" '
            'stroke="#555"/>',
            f'<rect class="box" x="{px(q[1]):.1f}" y="{y + 2}" '
            f'width="{max(px(q[3]) - px(q[1]), 1):.1f}" height="14" fill="#9ecae1" '
            'stroke="#3182bd"/>',
            f'<line x1="{px(q[2]):.1f}" y1="{y + 1}" x2="{px(q[2]):.1f}" y2="{y + 17}" '
            f'stroke="#08306b" stroke-width="2"><title>p50 {q[2]:.3f} ms</title></line>',
        ]
    axis_y = 6 + len(shown) * row_h + 6
    body.append(
        f'<line x1="{left:.1f}" y1="{axis_y}" x2="{left + width:.1f}" y2="{axis_y}" stroke="#000"/>'
    )
    step = ticks[1] - ticks[0]
    for ms in ticks:
        body.append(
            f'<text x="{px(ms):.1f}" y="{axis_y + 14}" {FONT} text-anchor="middle">'
            f"{fmt_tick(ms, step)}</text>"
        )
    body.append(
        f'<text x="{left + width / 2:.1f}" y="{axis_y + 30}" {FONT} text-anchor="middle">'
        "latency, ms</text>"
    )
    return _svg(left + width + 24, axis_y + 38, body, title)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (x minimised, y maximised), sorted by
    x then y descending. A point dominates another when it is no worse in both and better in
    one; equal points do not dominate each other, so ties are all on the front."""
    front = [
        i
        for i, (x, y) in enumerate(points)
        if not any(
            (ox <= x and oy >= y) and (ox < x or oy > y)
            for j, (ox, oy) in enumerate(points)
            if j != i
        )
    ]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def _place(
    cx: float, cy: float, label: str, taken: list[tuple[float, float, float, float]]
) -> tuple[float, float]:
    """Where to write a point's label: the first spot around it that overlaps no label or
    point placed so far (boxes in ``taken``, which grows)."""
    w, h = text_width(label), FONT_PX
    spots = [(7, -5), (7, 11), (-7 - w, -5), (-7 - w, 11), (-w / 2, -9), (-w / 2, 19),
             (12, 3), (-12 - w, 3), (7, -17), (7, 23)]  # fmt: skip
    for dx, dy in spots:
        box = (cx + dx, cy + dy - h, cx + dx + w, cy + dy + 2)
        if not any(
            box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken
        ):
            taken.append(box)
            return cx + dx, cy + dy
    dx, dy = spots[0]
    return cx + dx, cy + dy


def pareto_chart(
    rows: Sequence[CaseResult], y_attr: str, y_label: str, maximise: bool, title: str,
    resolution: float | None = None,
) -> str:  # fmt: skip
    """Scatter of p50 latency (log x) against ``y_attr``. Every point is numbered and listed
    in a legend (backend / variant / shape), coloured by backend; fidelity failures are hollow.
    The Pareto front (stepped line) is computed on y rounded to ``resolution`` (default: three
    significant digits), so values that differ only by rounding tie."""
    pts = [
        (r, float(r.latency_ms_p50), float(getattr(r, y_attr)))
        for r in rows
        if r.latency_ms_p50 and getattr(r, y_attr) is not None
    ]
    if not pts:
        return ""
    ys = [p[2] for p in pts]
    res = resolution or resolution_of(ys)
    backends = list(dict.fromkeys(r.backend for r, _, _ in pts))
    colour = {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(backends)}
    left, top, width, height = 64, 22, 520, 260
    xs = [math.log10(p[1]) for p in pts]
    x0, x1 = min(xs) - 0.06, max(xs) + 0.06
    y0, y1, yticks = value_axis(ys, res)

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + width * (x - x0) / (x1 - x0), top + height * (1 - (y - y0) / (y1 - y0)))

    body = [
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#999"/>',
        f'<text x="{left + width / 2}" y="{top + height + 32}" {FONT} text-anchor="middle">'
        "p50 latency, ms (log scale)</text>",
        f'<text x="{left}" y="{top - 8}" {FONT}>{escape(y_label)}'
        f"{' (higher is better)' if maximise else ' (lower is better)'}</text>",
    ]
    last_x = -math.inf
    for ms in log_ticks(10**x0, 10**x1):
        gx, _ = px(math.log10(ms), y0)
        if gx - last_x < 36:  # labels closer than this would touch
            continue
        last_x = gx
        body.append(
            f'<text x="{gx:.1f}" y="{top + height + 15}" {FONT} text-anchor="middle">{ms:g}</text>'
        )
    ystep = yticks[1] - yticks[0] if len(yticks) > 1 else res
    for y in yticks:
        _, gy = px(x0, y)
        body.append(
            f'<line x1="{left}" y1="{gy:.1f}" x2="{left + width}" y2="{gy:.1f}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{gy + 4:.1f}" {FONT} text-anchor="end">'
            f"{fmt_tick(y, ystep)}</text>"
        )
    rounded = [round(y / res) for y in ys]
    front = pareto_front([(x, q if maximise else -q) for x, q in zip(xs, rounded, strict=True)])
    steps: list[tuple[float, float]] = []
    for i in front:  # a step: across at the last point's value, then to this point
        if steps:
            steps.append((xs[i], steps[-1][1]))
        steps.append((xs[i], ys[i]))
    line = " ".join("{:.1f},{:.1f}".format(*px(x, y)) for x, y in steps)
    body.append(
        f'<polyline class="front" points="{line}" fill="none" stroke="#e6550d" '
        'stroke-dasharray="4 3"/>'
    )
    taken = [
        (cx - 5, cy - 5, cx + 5, cy + 5)
        for cx, cy in (px(x, y) for x, y in zip(xs, ys, strict=True))
    ]
    legend = []
    for n, ((r, ms, y), x) in enumerate(zip(pts, xs, strict=True), start=1):
        cx, cy = px(x, y)
        fill = colour[r.backend]
        failed = r.fidelity_ok is False
        tip = f"{n}: {r.backend} / {r.variant} / {r.shape}: {ms:.3f} ms, {y_label} {y:.4g}"
        shape = (f'fill="white" stroke="{FAIL_COLOUR}" stroke-width="2.5"' if failed
                 else f'fill="{fill}" stroke="#333" stroke-width="0.5"')  # fmt: skip
        body.append(
            f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" {shape}>'
            f"<title>{escape(tip)}</title></circle>"
        )
        lx, ly = _place(cx, cy, str(n), taken)
        body.append(f'<text class="label" x="{lx:.1f}" y="{ly:.1f}" {FONT}>{n}</text>')
        legend.append((n, r, ms, y, failed))
    widest = max(
        text_width(f"{n}  {r.backend} / {r.variant} / {r.shape}: {ms:.3g} ms, 0.000 FAIL")
        for n, r, ms, *_ in legend
    )
    col_w = widest + 22
    cols = 2 if 2 * col_w <= left + width + 16 else 1
    ly = top + height + 52
    for k, (n, r, ms, y, failed) in enumerate(legend):
        x, yy = 8 + (k % cols) * col_w, ly + (k // cols) * 16
        entry = (f"{n}  {r.backend} / {r.variant} / {r.shape}: {ms:.3g} ms, "
                 f"{fmt_tick(y, res)}{' FAIL' if failed else ''}")  # fmt: skip
        swatch = FAIL_COLOUR if failed else colour[r.backend]
        body.append(
            f'<rect x="{x:.1f}" y="{yy - 9}" width="9" height="9" fill="{swatch}"/>'
            f'<text class="legend" x="{x + 13:.1f}" y="{yy:.1f}" {FONT}>{escape(entry)}</text>'
        )
    rows_n = -(-len(legend) // cols)
    return _svg(max(left + width + 16, cols * col_w + 8), ly + 16 * rows_n, body, title)


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
