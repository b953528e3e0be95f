"""Result rows and a store written from them, shared by the render, API and report tests.

The numbers are made up but consistent (throughput = batch / p50, CI around p50), and the rows
carry what makes tables wide: a long composed variant, a fidelity failure, a skipped case with
a long reason, a user model's shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.result import CaseResult
from harness.store import Store

FINGERPRINT: dict[str, Any] = {
    "versions": {"infrabench": "0.1.0"}, "git_sha": None, "fingerprint_sha256": "f" * 64,
    "cpu_model": "Test CPU", "isa_flags": ["avx2"], "physical_cores": 2, "logical_cpus": 2,
    "memory_gb": 8.0, "os": "Linux", "python": "3.11",
}  # fmt: skip

# (variant, backend, batch, p50 ms, fidelity ratio)
CASES = [
    ("fp32", "torch-eager", 1, 30.0, 1.0),
    ("fp32", "onnxruntime", 1, 20.0, 1.0),
    ("fp32", "openvino", 1, 19.0, 1.0),
    ("int8-dynamic", "onnxruntime", 1, 14.0, 0.9991),
    ("distilled-3l+int8-static", "openvino", 1, 10.0, 0.72),
    ("fp32", "torch-eager", 8, 160.0, 1.0),
    ("fp32", "onnxruntime", 8, 120.0, 1.0),
]


def rows(run_id: str = "r1") -> list[CaseResult]:
    out = []
    for i, (variant, backend, batch, p50, ratio) in enumerate(CASES):
        out.append(CaseResult(
            run_id=run_id, case_id=f"c{i}", model="minilm-l6", variant=variant, backend=backend,
            threads=2, batch_size=batch, seq_len=128, shape=f"b{batch}s128", status="ok",
            latency_ms_p50=p50, latency_ms_p50_ci_low=0.99 * p50, latency_ms_p50_ci_high=1.012*p50,
            latency_ms_p90=p50 * 1.1, latency_ms_p99=p50 * 1.3 if batch == 1 else None,
            n_samples=400, cv=0.02 + i / 100, throughput_per_s=batch * 1000 / p50,
            cost_usd_per_million=p50 / 50, energy_j_per_inference=p50 / 100,
            energy_source="estimated", power_w=30.0, gco2_per_million=p50 * 3,
            fidelity_metric="cosine", fidelity=ratio, fidelity_ratio=ratio,
            fidelity_ok=ratio >= 0.99, speedup_vs_baseline=(30.0 if batch == 1 else 160.0) / p50,
            artifact_sha256="a" * 64, versions="{}",
        ))  # fmt: skip
    out.append(CaseResult(
        run_id=run_id, case_id="c9", model="minilm-l6", variant="bf16", backend="openvino",
        threads=2, batch_size=1, seq_len=128, shape="b1s128", status="skipped",
        reason="no native bf16 on this CPU: needs avx512_bf16 or amx_bf16 (found avx2 only)",
    ))  # fmt: skip
    return out


def samples(row: CaseResult, seed: int = 0) -> list[float]:
    """Raw latencies (ms) around the row's p50; none for a row without one."""
    if row.latency_ms_p50 is None:
        return []
    rng = np.random.default_rng(seed)
    return rng.lognormal(np.log(row.latency_ms_p50), 0.05, 50).tolist()


def write_store(path: Path, run_ids: tuple[str, ...] = ("r1",)) -> Path:
    """A store holding ``rows()`` and ``samples()`` under each run id, in order."""
    with Store(path) as store:
        for k, run_id in enumerate(run_ids):
            store.start_run(run_id, "quick", "suites/quick.toml", FINGERPRINT)
            for i, row in enumerate(rows(run_id)):
                store.add_case(row, samples(row, seed=k * 100 + i))
            store.finish_run(run_id)
    return path
