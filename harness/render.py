"""Results as a terminal table, markdown, CSV or JSON. JSON and CSV carry every column."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.compare import CaseComparison
from harness.measure.stats import min_samples_for
from harness.result import COLUMNS, CaseResult

FORMATS = ("table", "markdown", "csv", "json")


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p50(r: CaseResult) -> str:
    if r.latency_ms_p50 is None:
        return "-"
    low, high = _num(r.latency_ms_p50_ci_low, 3), _num(r.latency_ms_p50_ci_high, 3)
    return f"{r.latency_ms_p50:.3f} [{low}, {high}]"


def _p99(r: CaseResult) -> str:
    if r.status != "ok":
        return "-"
    if r.latency_ms_p99 is None:
        return f"insufficient (n<{min_samples_for(0.99, 0.95)})"
    return _num(r.latency_ms_p99, 3)


_SOURCE_TAGS = {"measured": "meas", "estimated": "est", "simulated": "sim"}


def _sourced(value: float | None, r: CaseResult, digits: int) -> str:
    """An energy-derived figure with its source next to it: never a bare number."""
    if value is None:
        return "-"
    return f"{value:.{digits}g} {_SOURCE_TAGS.get(r.energy_source or '', '?')}"


def notes(results: list[CaseResult]) -> list[str]:
    """Caveats printed under a table: what the energy tags mean and when sources are mixed."""
    sources = sorted({r.energy_source for r in results if r.energy_source})
    lines = []
    if any(r.fidelity_ok is False for r in results):
        lines.append(
            "FAIL = the variant keeps less than the suite's share (default 99%) of the fp32 "
            "metric: faster, but not an acceptable substitute"
        )
    if "estimated" in sources:
        lines.append("est = estimated energy (worker CPU-seconds x watts per core), not measured")
    if "simulated" in sources:
        lines.append("sim = simulated energy from an accelerator model, not measured")
    if len(sources) > 1:
        lines.append(
            f"energy sources differ ({', '.join(sources)}): energy, $ and gCO2 figures of "
            "different sources are not comparable and are not ranked against each other"
        )
    return lines


def _fidelity(r: CaseResult) -> str:
    if r.fidelity is None or r.fidelity_ratio is None:
        return "-"
    verdict = "" if r.fidelity_ok else " FAIL"
    return f"{r.fidelity_metric} {r.fidelity:.4f} ({r.fidelity_ratio:.1%}){verdict}"


def _speedup(r: CaseResult) -> str:
    return "-" if r.speedup_vs_baseline is None else f"{r.speedup_vs_baseline:.2f}x"


_DISPLAY: tuple[tuple[str, Callable[[CaseResult], str]], ...] = (
    ("model", lambda r: r.model),
    ("variant", lambda r: r.variant),
    ("backend", lambda r: r.backend),
    ("prec", lambda r: r.executed_precision or "-"),
    ("thr", lambda r: str(r.threads)),
    ("batch", lambda r: str(r.batch_size)),
    ("seq", lambda r: "-" if r.seq_len is None else str(r.seq_len)),
    ("dims", lambda r: (r.shape or "").partition("-")[2] or "-"),
    ("status", lambda r: r.status),
    ("p50 ms [95% CI]", _p50),
    ("p90 ms", lambda r: _num(r.latency_ms_p90, 3)),
    ("p99 ms", _p99),
    ("n", lambda r: "-" if r.n_samples is None else str(r.n_samples)),
    ("cv", lambda r: _num(r.cv, 3)),
    ("items/s", lambda r: _num(r.throughput_per_s, 1)),
    ("load s", lambda r: _num(r.load_s)),
    ("1st ms", lambda r: _num(r.first_inference_ms, 1)),
    ("peak MB", lambda r: _num(r.peak_rss_mb, 0)),
    ("model MB", lambda r: _num(r.model_mem_mb, 0)),
    ("J/inf", lambda r: _sourced(r.energy_j_per_inference, r, 3)),
    ("W", lambda r: _sourced(r.power_w, r, 3)),
    ("$/M inf", lambda r: _sourced(r.cost_usd_per_million, r, 3)),
    ("gCO2/M", lambda r: _sourced(r.gco2_per_million, r, 3)),
    ("fidelity (of fp32)", _fidelity),
    ("speedup", _speedup),
    ("reason", lambda r: r.reason or ""),
)


def display_rows(results: list[CaseResult]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the human-readable view (a subset of the columns); the dims column
    (a user model's shape bindings) only when some row has them."""
    shown = [
        (h, f) for h, f in _DISPLAY if h != "dims" or any("-" in (r.shape or "") for r in results)
    ]
    return [h for h, _ in shown], [[f(r) for _, f in shown] for r in results]


def _terminal_table(
    title: str,
    header: list[str],
    rows: list[list[str]],
    styles: list[str | None],
    footnotes: list[str],
) -> str:
    out = Table(title=title or None)
    for name in header:
        out.add_column(name, overflow="fold")
    for row, style in zip(rows, styles, strict=True):
        out.add_row(*row, style=style)
    # Wide enough that no row is folded: the terminal may wrap, but rows stay greppable.
    console = Console(file=io.StringIO(), width=400, force_terminal=False)
    console.print(out)
    for line in footnotes:
        console.print(f"note: {line}")
    text: str = console.file.getvalue()  # type: ignore[attr-defined]
    return text


def _markdown_table(
    title: str, header: list[str], rows: list[list[str]], footnotes: list[str]
) -> str:
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    lines += ["", *(f"> note: {line}" for line in footnotes)] if footnotes else []
    return "\n".join(lines) + "\n"


def table(results: list[CaseResult], title: str = "") -> str:
    status_styles = {"failed": "red", "skipped": "yellow"}
    styles = ["magenta" if r.fidelity_ok is False else status_styles.get(r.status) for r in results]
    return _terminal_table(title, *display_rows(results), styles, notes(results))


def markdown(results: list[CaseResult], title: str = "") -> str:
    return _markdown_table(title, *display_rows(results), notes(results))


def as_csv(results: list[CaseResult]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({k: "" if v is None else v for k, v in r.to_dict().items()})
    return buffer.getvalue()


def as_json(results: list[CaseResult]) -> str:
    rows: list[dict[str, Any]] = [r.to_dict() for r in results]
    return json.dumps(rows, indent=2, default=str) + "\n"


def render(results: list[CaseResult], fmt: str, title: str = "") -> str:
    """``fmt`` is one of FORMATS."""
    if fmt == "table":
        return table(results, title)
    if fmt == "markdown":
        return markdown(results, title)
    if fmt == "csv":
        return as_csv(results)
    return as_json(results)


def _ratio(c: CaseComparison) -> str:
    if c.ratio is None:
        return "-"
    return f"{c.ratio:.3f} [{c.ratio_ci_low:.3f}, {c.ratio_ci_high:.3f}]"


_COMPARE: tuple[tuple[str, Callable[[CaseComparison], str]], ...] = (
    ("model", lambda c: c.model),
    ("variant", lambda c: c.variant),
    ("backend", lambda c: c.backend),
    ("shape", lambda c: c.shape or "-"),
    ("verdict", lambda c: c.verdict + (" + FIDELITY FAIL" if c.fidelity_regression else "")),
    ("base p50 ms", lambda c: _num(c.base_p50_ms, 3)),
    ("cand p50 ms", lambda c: _num(c.candidate_p50_ms, 3)),
    ("ratio [95% CI]", _ratio),
    ("p (Holm)", lambda c: "-" if c.p_adjusted is None else f"{c.p_adjusted:.2g}"),
    ("noise floor", lambda c: "-" if c.noise_floor is None else f"{c.noise_floor:.1%}"),
    ("fidelity", lambda c: f"{_num(c.base_fidelity, 4)} -> {_num(c.candidate_fidelity, 4)}"),
    ("cost ratio", lambda c: _num(c.cost_ratio, 3)),
    ("reason", lambda c: c.reason),
)


def comparison_rows(rows: list[CaseComparison]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a comparison's human-readable view."""
    return [h for h, _ in _COMPARE], [[f(r) for _, f in _COMPARE] for r in rows]


def render_comparison(rows: list[CaseComparison], fmt: str, title: str) -> str:
    """A comparison as a table, markdown or JSON."""
    if fmt == "json":
        return json.dumps([r.to_dict() for r in rows], indent=2) + "\n"
    header, cells = comparison_rows(rows)
    if fmt == "table":
        styles = ["red" if r.regression else None for r in rows]
        return _terminal_table(title, header, cells, styles, [])
    return _markdown_table(title, header, cells, [])
