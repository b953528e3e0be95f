"""A recommendation as a terminal table, markdown or JSON (``infrabench recommend --format``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from harness import strict_json
from harness.recommend import Recommendation, Verdict, command, row_hardware_class, suite_snippet
from harness.render import markdown_table, text_table
from harness.roofline import Prediction

RECOMMEND_FORMATS = ("table", "markdown", "json")


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _cells(rec: Recommendation, v: Verdict) -> list[str]:
    r = v.row
    value = getattr(r, rec.objective.column)
    p99 = (
        "-"
        if r.latency_ms_p99 is None
        else f"{_num(r.latency_ms_p99)} [{_num(r.latency_ms_p99_ci_high)}]"
    )
    source = f" {r.energy_source}" if rec.objective.energy_based and value is not None else ""
    return [v.role, v.label, row_hardware_class(r), f"{_num(value)}{source}", p99,
            _num(r.fidelity_ratio), "yes" if v.on_front else "", v.why]  # fmt: skip


def _header(rec: Recommendation) -> list[str]:
    obj = rec.objective
    return ["role", "configuration", "hardware", f"{obj.name} {obj.unit}", "p99 ms [upper]",
            "fidelity", "front", "why"]  # fmt: skip


def _constraints(rec: Recommendation) -> str:
    c = rec.constraints
    parts = [f"p99 <= {_num(c.max_p99_ms)} ms" if c.max_p99_ms is not None else "",
             f"TTFT p99 <= {_num(c.max_ttft_ms)} ms" if c.max_ttft_ms is not None else "",
             f"TPOT p99 <= {_num(c.max_tpot_ms)} ms" if c.max_tpot_ms is not None else "",
             f"fidelity >= {_num(c.min_fidelity)}" if c.min_fidelity is not None else "",
             f"memory <= {_num(c.max_memory_mb)} MB" if c.max_memory_mb is not None else "",
             f"hardware in {', '.join(c.hardware)}" if c.hardware else ""]  # fmt: skip
    return ", ".join(p for p in parts if p) or "no constraints"


def _best(rec: Recommendation) -> str:
    return "highest" if rec.objective.maximize else "lowest"


def render_recommendation(
    rec: Recommendation,
    fmt: str,
    suites: Mapping[str, str],
    predictions: list[Prediction] | None = None,
) -> str:
    """``fmt`` is one of RECOMMEND_FORMATS; ``suites`` maps run id -> suite name (for the
    command that reproduces the winner). ``predictions`` (roofline what-if) follow in their
    own table, or under their own ``predicted`` key in JSON."""
    text = _recommendation(rec, fmt, suites)
    if predictions is None:
        return text
    if fmt == "json":
        data = json.loads(text)
        data["predicted"] = [{**asdict(p), "error": p.error} for p in predictions]
        return strict_json.dumps(data, indent=2) + "\n"
    return text + render_predictions(predictions, fmt)


def _recommendation(rec: Recommendation, fmt: str, suites: Mapping[str, str]) -> str:
    title = f"{_best(rec)} {rec.objective.name} under {_constraints(rec)}"
    winner = rec.winner
    cmd = snippet = None
    if winner is not None:
        cmd = command(winner.row, suites.get(winner.row.run_id))
        snippet = suite_snippet(winner.row, rec.constraints.min_fidelity)
    if fmt == "json":
        return strict_json.dumps(_as_dict(rec, cmd, snippet), indent=2, default=str) + "\n"
    header = _header(rec)
    rows = [_cells(rec, v) for v in rec.verdicts]
    notes = [
        *rec.notes,
        "upper = the p99's confidence interval upper bound, which a bound must meet",
    ]
    if fmt == "table":
        styles = [{"winner": "bold green", "excluded": "dim"}.get(v.role) for v in rec.verdicts]
        text = text_table(title, header, rows, styles, notes)
        if winner is None:
            return text + "no configuration meets the constraints (see why above)\n"
        return (
            text
            + f"reproduce: {cmd}\nsuite:\n"
            + "".join(f"  {line}\n" for line in (snippet or "").splitlines())
        )
    text = markdown_table(title, header, rows, notes)
    if winner is None:
        return text + "\nNo configuration meets the constraints.\n"
    return text + f"\nReproduce:\n\n```\n{cmd}\n```\n\nSuite:\n\n```toml\n{snippet}```\n"


def _as_dict(rec: Recommendation, cmd: str | None, snippet: str | None) -> dict[str, Any]:
    obj = rec.objective
    return {
        "objective": asdict(obj),
        "constraints": asdict(rec.constraints),
        "energy_source": rec.energy_source,
        "notes": rec.notes,
        "winner": None if rec.winner is None else rec.winner.label,
        "runner_up": None if rec.runner_up is None else rec.runner_up.label,
        "command": cmd,
        "suite_snippet": snippet,
        "verdicts": [
            {
                "label": v.label,
                "role": v.role,
                "on_front": v.on_front,
                "why": v.why,
                "hardware_class": row_hardware_class(v.row),
                "value": getattr(v.row, obj.column),
                "row": v.row.to_dict(),
            }
            for v in rec.verdicts
        ],
    }


def render_predictions(predictions: list[Prediction], fmt: str) -> str:
    """Roofline predictions (``fmt`` table or markdown) as a table apart from every measured
    figure: predicted latency and cost per class, beside the measured p50 where a row exists."""
    header = ["model", "variant", "shape", "hardware", "units", "predicted ms",
              "predicted USD/M", "measured p50 ms", "measured by", "error"]  # fmt: skip
    cells = [
        [
            p.model,
            p.variant,
            p.shape,
            p.hardware_class,
            str(p.units),
            _num(p.predicted_ms),
            _num(p.predicted_usd_per_million),
            "-"
            if p.measured_ms is None
            else _num(p.measured_ms) + (" (simulated)" if p.energy_source == "simulated" else ""),
            p.measured_by or "-",
            "-" if p.error is None else f"{p.error:+.0%}",
        ]
        for p in predictions
    ]
    title = "roofline what-if: PREDICTED, not measured"
    notes = [
        "predicted = sum over ops of max(FLOPs / peak, bytes / bandwidth); classes and their "
        "sources: harness/data/hardware.toml",
        "error = predicted / measured p50 - 1; a (simulated) row is the fpga-sim model",
    ]
    if fmt == "table":
        return text_table(title, header, cells, [None] * len(cells), notes)
    return markdown_table(title, header, cells, notes)
