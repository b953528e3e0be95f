"""One result row per case. Field names are the column names on every surface (DESIGN.md).

A value not measured is ``None`` (null in the store and in JSON), never 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Status = Literal["ok", "failed", "skipped"]


@dataclass
class CaseResult:
    run_id: str
    case_id: str
    model: str
    variant: str
    backend: str
    device: str = "cpu"
    precision: str | None = None
    executed_precision: str | None = None
    threads: int | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    shape: str | None = None
    scenario: str = "single-stream"
    status: Status = "ok"
    reason: str | None = None
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    latency_ms_p99: float | None = None
    latency_ms_p50_ci_low: float | None = None
    latency_ms_p50_ci_high: float | None = None
    latency_ms_p90_ci_low: float | None = None
    latency_ms_p90_ci_high: float | None = None
    latency_ms_p99_ci_low: float | None = None
    latency_ms_p99_ci_high: float | None = None
    latency_ms_mean: float | None = None
    n_samples: int | None = None
    cv: float | None = None
    throughput_per_s: float | None = None
    load_s: float | None = None
    compile_s: float | None = None
    first_inference_ms: float | None = None
    peak_rss_mb: float | None = None
    model_mem_mb: float | None = None
    device_mem_mb: float | None = None
    energy_j_per_inference: float | None = None
    energy_source: str | None = None
    power_w: float | None = None
    cost_usd_per_million: float | None = None
    cost_usd_per_million_energy: float | None = None
    cost_usd_per_million_machine: float | None = None
    gco2_per_million: float | None = None
    fidelity_metric: str | None = None
    fidelity: float | None = None
    fidelity_ratio: float | None = None
    fidelity_ok: bool | None = None
    artifact_sha256: str | None = None
    artifact_mb: float | None = None
    params_m: float | None = None
    speedup_vs_baseline: float | None = None
    warmup_iters: int | None = None
    warmup_s: float | None = None
    warmup_steady: bool | None = None
    stop_reason: str | None = None
    p50_rel_ci_width: float | None = None
    affinity: str | None = None
    versions: str | None = None  # JSON object: runtime libraries the worker really loaded
    details: str | None = None  # JSON object: backend notes, worker traceback on failure
    hardware_class: str | None = None  # price/hardware class, e.g. cpu-vcpu, gpu-datacenter
    noise: str | None = None  # noise flags seen while measuring, as text; None = none
    node: str | None = None  # fleet node the case ran on (Ray node id, host); None = this machine
    # Load scenarios (harness.scenarios; null for the harness's single-stream timing loop):
    serving: str | None = None  # instances, max batch and queue delay, e.g. i2-mb8-d2ms
    target_qps: float | None = None  # server: highest passing Poisson QPS; offline: expected
    achieved_qps: float | None = None  # samples/s LoadGen saw completed
    latency_bound_ms: float | None = None  # server's p99 bound
    valid: bool | None = None  # LoadGen VALID, no failed request, full (compliant) mode
    early_stop_p99_ms: float | None = None  # LoadGen's early-stopping p99 estimate
    goodput_rps: float | None = None  # completed requests/s within the bound, without error
    error_rate: float | None = None  # failed requests / requests
    # decoders (null for encoders): per-token latency from the harness's streamer clock
    prompt_len: int | None = None
    gen_len: int | None = None
    ttft_ms_p50: float | None = None
    ttft_ms_p90: float | None = None
    ttft_ms_p99: float | None = None
    ttft_ms_p50_ci_low: float | None = None
    ttft_ms_p50_ci_high: float | None = None
    ttft_ms_p90_ci_low: float | None = None
    ttft_ms_p90_ci_high: float | None = None
    ttft_ms_p99_ci_low: float | None = None
    ttft_ms_p99_ci_high: float | None = None
    tpot_ms_p50: float | None = None
    tpot_ms_p90: float | None = None
    tpot_ms_p99: float | None = None
    tpot_ms_p50_ci_low: float | None = None
    tpot_ms_p50_ci_high: float | None = None
    tpot_ms_p90_ci_low: float | None = None
    tpot_ms_p90_ci_high: float | None = None
    tpot_ms_p99_ci_low: float | None = None
    tpot_ms_p99_ci_high: float | None = None
    itl_ms_p99: float | None = None
    e2e_ms_p50: float | None = None
    prefill_tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None
    kv_cache_mb: float | None = None
    cost_usd_per_million_output_tokens: float | None = None
    gco2_per_million_output_tokens: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CaseResult))
