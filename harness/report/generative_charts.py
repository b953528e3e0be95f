"""Charts of decoder rows: TTFT beside TPOT, and decode tokens/s against batch size.

Inline SVG in the conventions of :mod:`harness.report.charts` (title as ``<title>``, widths from
the longest label, axes from nice ticks starting at 0). Each drawn value is also an attribute of
its element (``data-p50``, ``data-points``...), written with ``repr``, so a reader or a test can
take the numbers from the SVG without reading pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from harness.report.charts import FONT, PALETTE, _svg, fmt_tick, nice_ticks, text_width
from harness.result import CaseResult

PANEL_W, PANEL_GAP, ROW_H = 260, 40, 22
DASHES = ("", "6 3", "2 2", "8 3 2 3")  # one per prompt length, in order of size


def _timed(r: CaseResult) -> bool:
    return r.status == "ok" and (r.ttft_ms_p50 is not None or r.tpot_ms_p50 is not None)


def ttft_tpot_chart(rows: Sequence[CaseResult], title: str) -> str:
    """Two panels side by side, one row per configuration (backend / variant): TTFT on the
    left, TPOT on the right, each on its own axis in ms from 0; the bar is the p50, the tick
    the p99 (none where there were too few generations for one). "" without decoder rows."""
    shown = [r for r in rows if _timed(r)]
    if not shown:
        return ""
    labels = [f"{r.backend} / {r.variant}" for r in shown]
    left = max(text_width(t) for t in labels) + 16
    top = 20
    axis_y = top + len(shown) * ROW_H + 4
    body = [
        f'<text x="4" y="{top + 15 + i * ROW_H}" {FONT}>{escape(label)}</text>'
        for i, label in enumerate(labels)
    ]
    panels = (("ttft", "TTFT", "time to first token, ms"),
              ("tpot", "TPOT", "time per output token, ms"))  # fmt: skip
    for k, (metric, name, axis) in enumerate(panels):
        x0 = left + k * (PANEL_W + PANEL_GAP)
        p50s = [getattr(r, f"{metric}_ms_p50") for r in shown]
        p99s = [getattr(r, f"{metric}_ms_p99") for r in shown]
        known = [v for v in (*p50s, *p99s) if v is not None]
        ticks = nice_ticks(0.0, max(known, default=1.0), 4)
        hi, step = ticks[-1], ticks[1] - ticks[0]

        def px(ms: float, x0: float = x0, hi: float = hi) -> float:
            return x0 + PANEL_W * ms / hi

        body.append(
            f'<text x="{x0}" y="{top - 6}" {FONT} font-weight="bold">{name} '
            "(bar p50, tick p99)</text>"
        )
        for i, (label, p50, p99) in enumerate(zip(labels, p50s, p99s, strict=True)):
            y = top + i * ROW_H
            said = f"{label}: {name} p50 {_ms(p50)}, p99 {_ms(p99)}"
            data = f'data-metric="{metric}" data-label="{escape(label)}"'
            data += f' data-p50="{p50!r}"' if p50 is not None else ""
            data += f' data-p99="{p99!r}"' if p99 is not None else ""
            width = max(px(p50) - x0, 1.0) if p50 is not None else 0.0
            body.append(
                f'<rect class="bar {metric}" {data} x="{x0}" y="{y + 4}" width="{width:.1f}" '
                f'height="14" fill="{PALETTE[k]}"><title>{escape(said)}</title></rect>'
            )
            if p99 is not None:
                body.append(
                    f'<line class="p99 {metric}" x1="{px(p99):.1f}" y1="{y + 1}" '
                    f'x2="{px(p99):.1f}" y2="{y + 21}" stroke="#222" stroke-width="2">'
                    f"<title>{escape(said)}</title></line>"
                )
        body.append(
            f'<line x1="{x0}" y1="{axis_y}" x2="{x0 + PANEL_W}" y2="{axis_y}" stroke="#000"/>'
        )
        for ms in ticks:
            body.append(
                f'<text x="{px(ms):.1f}" y="{axis_y + 14}" {FONT} text-anchor="middle">'
                f"{fmt_tick(ms, step)}</text>"
            )
        body.append(
            f'<text x="{x0 + PANEL_W / 2}" y="{axis_y + 30}" {FONT} text-anchor="middle">'
            f"{axis}</text>"
        )
    return _svg(left + 2 * PANEL_W + PANEL_GAP + 24, axis_y + 38, body, title)


def _ms(value: float | None) -> str:
    return "too few generations" if value is None else f"{value:.4g} ms"


@dataclass(frozen=True)
class DecodeSeries:
    """One line of the decode chart: (batch size, decode tokens/s) points, sorted by batch."""

    label: str
    config: str  # backend / variant: the line's colour
    prompt_len: int  # the line's dash
    points: tuple[tuple[int, float], ...]


def decode_series(rows: Sequence[CaseResult]) -> list[DecodeSeries]:
    """One series per backend / variant / prompt length (and generation length and threads
    where those vary too), in order of appearance, of the ok rows with a decode rate."""
    timed = [r for r in rows if r.status == "ok" and r.decode_tokens_per_s and r.batch_size]
    several_gens = len({r.gen_len for r in timed}) > 1
    several_threads = len({r.threads for r in timed}) > 1
    grouped: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
    for r in timed:
        config = f"{r.backend} / {r.variant}"
        label = f"{config} / prompt {r.prompt_len}"
        label += f" gen {r.gen_len}" if several_gens else ""
        label += f" t{r.threads}" if several_threads else ""
        point = (int(r.batch_size or 0), float(r.decode_tokens_per_s or 0.0))
        grouped.setdefault((label, config, r.prompt_len or 0), []).append(point)
    return [DecodeSeries(label, config, prompt, tuple(sorted(points)))
            for (label, config, prompt), points in grouped.items()]  # fmt: skip


def decode_vs_batch(rows: Sequence[CaseResult], title: str) -> str:
    """Decode tokens/s (all rows of a batch together, from 0) against batch size (log 2 axis,
    a tick at each batch measured): one line per series of :func:`decode_series`, coloured by
    backend / variant, dashed by prompt length. "" without decoder rows."""
    series = decode_series(rows)
    if not series:
        return ""
    prompts = sorted({s.prompt_len for s in series})
    configs = list(dict.fromkeys(s.config for s in series))
    batches = sorted({b for s in series for b, _ in s.points})
    lo, hi = math.log2(batches[0]), math.log2(batches[-1])
    left, top, width, height = 64, 10, 420, 240
    yticks = nice_ticks(0.0, max(t for s in series for _, t in s.points), 4)

    def px(batch: int) -> float:
        span = hi - lo
        return left + (width * (math.log2(batch) - lo) / span if span else width / 2)

    def py(tps: float) -> float:
        return top + height * (1 - tps / yticks[-1])

    base = top + height
    body = [
        f'<line x1="{left}" y1="{base}" x2="{left + width}" y2="{base}" stroke="#000"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="#000"/>',
        f'<text x="{left + width / 2}" y="{base + 32}" {FONT} text-anchor="middle">'
        "batch size (log 2)</text>",
        f'<text x="12" y="{top + height / 2}" {FONT} text-anchor="middle" '
        f'transform="rotate(-90 12 {top + height / 2})">decode tokens/s, whole batch</text>',
    ]
    last_x = -math.inf
    for b in batches:
        if px(b) - last_x < 24:  # labels closer than this would touch
            continue
        last_x = px(b)
        body.append(f'<text x="{px(b):.1f}" y="{base + 14}" {FONT} text-anchor="middle">{b}</text>')
    for t in yticks:
        body.append(
            f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + width}" y2="{py(t):.1f}" '
            f'stroke="#eee"/><text x="{left - 4}" y="{py(t) + 4:.1f}" {FONT} text-anchor="end">'
            f"{fmt_tick(t, yticks[1] - yticks[0])}</text>"
        )
    legend_x = left + width + 14
    for i, line in enumerate(series):
        label, points = line.label, line.points
        colour = PALETTE[configs.index(line.config) % len(PALETTE)]
        dash = DASHES[prompts.index(line.prompt_len) % len(DASHES)]
        style = f' stroke-dasharray="{dash}"' if dash else ""
        path = " ".join(f"{px(b):.1f},{py(t):.1f}" for b, t in points)
        data = " ".join(f"{b}:{t!r}" for b, t in points)
        body.append(
            f'<polyline class="series" data-series="{escape(label)}" data-points="{data}" '
            f'points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"{style}/>'
        )
        for b, t in points:
            tip = f"{label}: batch {b}, {t:.4g} decode tokens/s"
            body.append(
                f'<circle cx="{px(b):.1f}" cy="{py(t):.1f}" r="3.5" fill="{colour}">'
                f"<title>{escape(tip)}</title></circle>"
            )
        y = top + 14 * i + 8
        body.append(
            f'<line x1="{legend_x}" y1="{y - 4}" x2="{legend_x + 18}" y2="{y - 4}" '
            f'stroke="{colour}" stroke-width="2"{style}/>'
            f'<text x="{legend_x + 22}" y="{y}" {FONT}>{escape(label)}</text>'
        )
    legend_w = max(text_width(s.label) for s in series) + 40
    bottom = max(base + 40, top + 14 * len(series) + 12)
    return _svg(legend_x + legend_w, bottom, body, title)
