"""Markdown for scripts/device-check.sh's summary, from its JSON files (no GPU, no harness).

    python scripts/device_summary.py env ENV.json
    python scripts/device_summary.py runs BARE_LOOP.md RUN-base.json [RUN-graphs.json ...]

``runs`` prints every run's rows, then the ratios issue 17 asks for: fp16 and bf16 against fp32
(p50 speedup per batch, from the base run), CUDA graphs on against off (same batch and
variant), each torch.compile mode against eager fp16, and the harness-vs-bare-loop table. Run
files are named ``run-LABEL.json`` (``show --format json``: a list of rows).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def env_lines(env: dict[str, Any]) -> list[str]:
    gpus = ", ".join(
        f"{g.get('name')} ({g.get('memory')}, driver {g.get('driver')}, CUDA {g.get('cuda', '?')}, "
        f"compute capability {g.get('compute_capability')})"
        for g in env.get("gpus", [])
    )
    cpus = f"{env.get('cpu_model')}, {env.get('logical_cpus')} CPUs"
    lines = [
        f"- machine: {cpus}; GPUs: {gpus or 'none'}",
        f"- python {env.get('python')}; "
        + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
    ]
    for name, b in env.get("backends", {}).items():
        lines.append(f"- backend {name}: {'usable' if b['usable'] else 'unusable: ' + b['reason']}")
    return lines


def rows_table(label: str, rows: list[Row]) -> list[str]:
    lines = [
        f"### {label}",
        "",
        "| case | status | p50 ms | p99 ms | compile_s | device MiB | J/inf | fidelity | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"fp32": 0, "fp16": 1, "bf16": 2}
    for r in sorted(rows, key=lambda r: (r["backend"] != "torch-cuda", r["backend"],
                                         order.get(r["variant"], 9), r["batch_size"])):  # fmt: skip
        lines.append(
            f"| {r['model']}/{r['variant']}/{r['backend']}/b{r['batch_size']} | {r['status']} "
            f"| {_f(r.get('latency_ms_p50'), '.4f')} | {_f(r.get('latency_ms_p99'), '.4f')} "
            f"| {_f(r.get('compile_s'), '.1f')} | {_f(r.get('device_mem_mb'), '.0f')} "
            f"| {_f(r.get('energy_j_per_inference'), '.3e')} "
            f"| {_f(r.get('fidelity_ratio'), '.5f')} | {(r.get('reason') or '')[:100]} |"
        )
    return [*lines, ""]


def decoder_table(label: str, rows: list[Row]) -> list[str]:
    """Decoder rows (TTFT, TPOT, decode tokens/s; energy per inference is per generation)."""
    lines = [
        f"### {label} (decoder)",
        "",
        "| case | status | TTFT p50/p99 ms | TPOT p50/p99 ms | decode tok/s | device MiB "
        "| KV MiB | J/generation | next-token agreement | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"fp32": 0, "fp16": 1, "bf16": 2}
    for r in sorted(rows, key=lambda r: (order.get(r["variant"], 9), r["batch_size"])):
        lines.append(
            f"| {r['model']}/{r['variant']}/{r['backend']}/b{r['batch_size']} | {r['status']} "
            f"| {_f(r.get('ttft_ms_p50'), '.2f')} / {_f(r.get('ttft_ms_p99'), '.2f')} "
            f"| {_f(r.get('tpot_ms_p50'), '.3f')} / {_f(r.get('tpot_ms_p99'), '.3f')} "
            f"| {_f(r.get('decode_tokens_per_s'), '.0f')} | {_f(r.get('device_mem_mb'), '.0f')} "
            f"| {_f(r.get('kv_cache_mb'), '.1f')} | {_f(r.get('energy_j_per_inference'), '.3e')} "
            f"| {_f(r.get('fidelity'), '.4f')} | {(r.get('reason') or '')[:100]} |"
        )
    return [*lines, ""]


def _p50(rows: list[Row], variant: str, batch: int) -> float | None:
    for r in rows:
        if (r["backend"] == "torch-cuda" and r["variant"] == variant
                and r["batch_size"] == batch and r["status"] == "ok"):  # fmt: skip
            value: float | None = r.get("latency_ms_p50")
            return value
    return None


def ratio_lines(runs: dict[str, list[Row]]) -> list[str]:
    """Speedups (base p50 / other p50: > 1 is faster) that both runs measured."""
    base = runs.get("base", [])
    lines = ["| comparison | batch | speedup (p50 ratio) |", "|---|---|---|"]
    batches = sorted({r["batch_size"] for r in base})

    def add(what: str, batch: int, slow: float | None, fast: float | None) -> None:
        if slow is not None and fast is not None and fast > 0:
            lines.append(f"| {what} | {batch} | {slow / fast:.3f} |")

    for variant in ("fp16", "bf16"):
        for b in batches:
            add(f"{variant} vs fp32 (eager)", b, _p50(base, "fp32", b), _p50(base, variant, b))
    for variant in ("fp32", "fp16", "bf16"):
        for b in sorted({r["batch_size"] for r in runs.get("graphs", [])}):
            add(f"cuda graphs on vs off, {variant}", b, _p50(base, variant, b),
                _p50(runs["graphs"], variant, b))  # fmt: skip
    for label, rows in runs.items():
        if label.startswith("compile-"):
            for b in sorted({r["batch_size"] for r in rows}):
                add(f"torch.compile {label[8:]} vs eager, fp16", b, _p50(base, "fp16", b),
                    _p50(rows, "fp16", b))  # fmt: skip
    return [*lines, ""]


def decoder_ratio_lines(rows: list[Row]) -> list[str]:
    """fp16/bf16 vs fp32 on the decoder: TPOT ratio (fp32 / other: > 1 is faster) per batch."""
    lines = ["| decoder comparison | batch | TPOT p50 ratio | TTFT p50 ratio |"]
    lines.append("|---|---|---|---|")

    def p50(variant: str, batch: int, column: str) -> float | None:
        for r in rows:
            if r["variant"] == variant and r["batch_size"] == batch and r["status"] == "ok":
                value: float | None = r.get(column)
                return value
        return None

    for variant in ("fp16", "bf16"):
        for b in sorted({r["batch_size"] for r in rows}):
            ratios = []
            for column in ("tpot_ms_p50", "ttft_ms_p50"):
                slow, fast = p50("fp32", b, column), p50(variant, b, column)
                ratios.append(f"{slow / fast:.3f}" if slow and fast else "-")
            lines.append(f"| {variant} vs fp32 | {b} | {ratios[0]} | {ratios[1]} |")
    return [*lines, ""]


def main(argv: list[str]) -> int:
    if argv[:1] == ["env"]:
        try:
            env = json.loads(Path(argv[1]).read_text())
        except (OSError, ValueError) as exc:
            print(f"- env: unreadable ({exc})")
            return 0
        print("\n".join(env_lines(env)))
        return 0
    if argv[:1] != ["runs"] or len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    bare, files = Path(argv[1]), [Path(p) for p in argv[2:]]
    runs = {p.stem.removeprefix("run-"): json.loads(p.read_text()) for p in files}
    out = ["", "## runs", ""]
    decoders = {label: rows for label, rows in runs.items() if label == "llm"}
    for label, rows in runs.items():
        out += decoder_table(label, rows) if label in decoders else rows_table(label, rows)
    out += ["## ratios (one run each; p50 of the slower / p50 of the faster)", ""]
    out += ratio_lines({k: v for k, v in runs.items() if k not in decoders})
    for rows in decoders.values():
        out += decoder_ratio_lines(rows)
    out += ["## harness vs bare CUDA-event loop (same process, same module and inputs)", ""]
    out.append(bare.read_text() if bare.is_file() else "(not measured: see device-check.log)")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
