"""Raw measurement -> the stored row, in the parent, as one pure function.

``finalize`` turns ``Case + Artifact + Measurement + Prices`` into a ``CaseResult``: latency
statistics (from the raw samples, in one place), throughput, energy per inference, cost and
carbon, and the fidelity verdict against the case's threshold. ``unmeasured`` gives the row of a
case that was skipped or failed. Nothing here reads a clock, a file or the environment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness import strict_json
from harness.case import SCREENING, Case
from harness.cost import Prices, cost_columns, hardware_class, phase_split
from harness.execute import Measurement
from harness.generate.stats import GenerativeRaw, generative_stats
from harness.launch.base import Outcome
from harness.measure import noise
from harness.measure.stats import LatencyStats, Quantile, min_samples_for, samples_to_ms
from harness.optimize.artifacts import Artifact
from harness.optimize.variants import parse_variant
from harness.result import CaseResult
from harness.scenarios.goodput import summarize
from harness.scenarios.record import LlmLoadRaw, LoadMeasurement

# LoadGen scenarios whose samples wait in a queue: a server's for random arrivals, a
# multi-stream query's samples behind each other, offline's one query's over the whole run
QUEUED = ("server", "multi-stream", "offline")


def identity(run_id: str, case: Case, artifact: Artifact | None) -> CaseResult:
    """The identifying columns of a case's row, before anything is measured."""
    return CaseResult(
        run_id=run_id,
        case_id=case.case_id,
        model=case.model,
        variant=case.variant,
        backend=case.backend,
        device=case.device,
        precision=parse_variant(case.variant).precision,
        threads=case.threads,
        batch_size=case.batch_size,
        seq_len=case.seq_len,
        prompt_len=case.seq_len if case.gen_len is not None else None,
        gen_len=case.gen_len,
        shape=case.shape,
        scenario=case.scenario,
        serving=case.serving.label if case.load_driven else None,
        latency_bound_ms={
            "server": case.settings.serving.latency_bound_ms,
            "llm-server": case.settings.serving.ttft_slo_ms,
        }.get(case.scenario),
        artifact_sha256=artifact.sha256 if artifact else None,
        artifact_mb=artifact.size_mb if artifact else None,
        params_m=artifact.params_m if artifact else None,
        hardware_class=case.hardware or hardware_class(case.device),
    )


def fed_shape_text(case: Case, fed: dict[str, tuple[int, ...]]) -> str:
    """The row's shape: the case's batch (and sequence) and, for a model with shape bindings,
    every input's shape as fed to the backend (``b4-points=4x64x3-queries=16x3``), so the row
    says what ran, whatever was asked for."""
    if not case.bindings or not fed:
        return case.shape
    head = f"b{case.batch_size}" + (f"s{case.seq_len}" if case.seq_len else "")
    return "-".join((head, *(f"{n}={'x'.join(map(str, s))}" for n, s in fed.items())))


def unmeasured(
    run_id: str, case: Case, artifact: Artifact | None, outcome: Outcome[Any]
) -> CaseResult:
    """The row of a case that was skipped, or failed before it sent a measurement."""
    row = identity(run_id, case, artifact)
    row.status = "skipped" if outcome.status == "skipped" else "failed"
    row.reason = outcome.reason
    if outcome.status == "failed":
        row.details = json.dumps(
            {"stage": outcome.stage, "kind": outcome.error_kind, "detail": outcome.detail}
        )
    return row


def finalize(
    run_id: str,
    case: Case,
    artifact: Artifact,
    m: Measurement,
    prices: Prices,
    machine_flags: Sequence[str] = (),
) -> tuple[CaseResult, list[float]]:
    """The case's row and its raw samples in ms. ``machine_flags`` are what the parent saw
    on the machine while the case ran (other busy processes...); the row's ``noise`` joins
    them with the flags its own samples raise (wide spread, an interval that did not settle)."""
    row = identity(run_id, case, artifact)
    row.shape = fed_shape_text(case, m.input_shapes)
    # a load whose every request failed has no latency, and still a row (its error rate)
    unserved = not m.samples_ns and (m.load is not None or m.llm_load is not None)
    samples = np.zeros(0) if unserved else samples_to_ms(list(m.samples_ns))
    stats = None if unserved else LatencyStats.from_samples(
        samples, case.batch_size, case.settings.timing.confidence
    )  # fmt: skip
    row.load_s, row.compile_s = m.load_s, m.compile_s
    row.first_inference_ms = m.first_inference_ms
    row.model_mem_mb, row.peak_rss_mb = m.model_mem_mb, m.peak_rss_mb
    row.device_mem_mb = m.device_mem_mb
    row.affinity, row.executed_precision = m.affinity, m.executed_precision
    row.versions = strict_json.dumps(m.versions, sort_keys=True)
    details: dict[str, Any] = {
        "energy": m.energy_note, **m.details, "confidence": case.settings.timing.confidence,
    }  # fmt: skip
    if len(m.fidelity_per_output) > 1:
        details["fidelity_per_output"] = m.fidelity_per_output
    if case.settings.screening:
        details[SCREENING] = (
            "a short round of recommend --run: timed only, in a worker shared with the round's "
            "earlier cases (no fidelity, executed precision or memory; load and first-inference "
            "times are from a process that had loaded the runtime before)"
        )
    _latency(row, stats, m, details, case.settings.timing.confidence)
    if m.load is not None:
        _load(row, m.load, details)
    if m.llm_load is not None:
        _llm_load(row, case, m.llm_load, details, case.settings.timing.confidence)
    _fidelity(row, m, case.settings.fidelity_min_ratio, details)
    if stats is not None:
        _energy(row, m, stats, case.batch_size, details)
    # a fleet class without a price of its own is billed as the device's class
    priced = row.hardware_class or ""
    priced = priced if priced in prices.hardware else hardware_class(case.device)
    costs = cost_columns(
        row.energy_j_per_inference, row.throughput_per_s, row.threads, priced, prices
    )
    row.cost_usd_per_million_energy = costs.usd_per_million_energy
    row.cost_usd_per_million_machine = costs.usd_per_million_machine
    row.cost_usd_per_million = costs.usd_per_million
    row.gco2_per_million = costs.gco2_per_million
    # an llm-server row's samples are requests of different lengths and queueing, a queued
    # LoadGen scenario's wait in its queue: their spread is the load's, not noise (only the
    # machine's flags apply)
    queued = m.llm_load is not None or (m.load is not None and m.load.scenario in QUEUED)
    spread = [] if queued else noise.case_flags(
        row.cv, row.p50_rel_ci_width, case.settings.timing.target_rel_ci
    )  # fmt: skip
    row.noise = noise.row_noise(list(machine_flags), spread)
    if m.generative is not None:
        _generative(row, case, m.generative, m, prices, details)
    short = _short_run(m, stats.n if stats else 0, case.settings.screening)
    if short:
        details["budget"] = short
    if m.incomplete:
        details["untimed"] = f"did not finish: {m.incomplete}; the samples above are kept"
    failed = details.get("llm_server", {}).get("failed")
    row.reason = (
        "; ".join(
            part for part in (failed, short, m.incomplete and f"untimed: {m.incomplete}") if part
        )
        or None
    )
    if _nothing_served(m, details):  # every request failed: a measurement of nothing
        row.status = "failed"
        if m.load is not None and not failed:
            row.reason = "; ".join(m.load.reasons) or f"all {m.load.requests} requests failed"
    row.details = strict_json.dumps(details)
    return row, samples.tolist()


def _token_quantiles(row: CaseResult, ttft: Sequence[Quantile], tpot: Sequence[Quantile]) -> None:
    """The row's ``ttft_ms_pNN`` and ``tpot_ms_pNN`` columns, with their intervals."""
    for metric, quantiles in (("ttft", ttft), ("tpot", tpot)):
        for q in quantiles:
            name = f"{metric}_ms_p{round(q.q * 100)}"
            setattr(row, name, q.value)
            setattr(row, f"{name}_ci_low", q.ci_low)
            setattr(row, f"{name}_ci_high", q.ci_high)


def _nothing_served(m: Measurement, details: dict[str, Any]) -> bool:
    """Whether a load sent requests and every one failed (a refused, erroring or stalled
    server): the row keeps its error rate and reason, and its status is ``failed``."""
    if m.llm_load is not None:
        llm = details["llm_server"]
        return bool(llm["requests"]) and llm["completed"] == 0
    if m.load is not None and m.load.requests:
        return m.load.errors >= m.load.requests
    return False


def _generative(
    row: CaseResult,
    case: Case,
    g: GenerativeRaw,
    m: Measurement,
    prices: Prices,
    details: dict[str, Any],
) -> None:
    """Decoder columns from the per-token timestamps; cost and carbon per million output
    tokens (energy over the sampling phase / output tokens made in it; machine time at the
    output tokens/s of whole generations, prefill included).

    ``details.generation.per_million_output_tokens`` splits energy, $ and gCO2 per million
    output tokens into prefill and decode by time: prefill's share is the timed generations'
    summed TTFT over their summed e2e, decode's the rest. That is exact for machine time and an
    estimate for energy (no probe reads the phases apart: power is taken as equal in both);
    the two parts add up to the row's totals."""
    stats = generative_stats(list(g.runs), case.batch_size, g.prompt_len,
                             case.settings.timing.confidence)  # fmt: skip
    row.prompt_len, row.gen_len = g.prompt_len, g.gen_len
    _token_quantiles(row, stats.ttft, stats.tpot)
    row.itl_ms_p99 = stats.itl_p99.value
    row.e2e_ms_p50 = stats.e2e_p50
    row.prefill_tokens_per_s = stats.prefill_tokens_per_s
    row.decode_tokens_per_s = stats.decode_tokens_per_s
    kv = g.kv_cache_bytes_engine if g.kv_cache_bytes_engine is not None else g.kv_cache_bytes
    row.kv_cache_mb = kv / 2**20 if kv is not None else None
    output_tokens = stats.n_requests * case.batch_size * g.gen_len
    j_per_token = m.energy.joules / output_tokens if m.energy is not None else None
    costs = cost_columns(j_per_token, stats.output_tokens_per_s, row.threads,
                         row.hardware_class or "", prices)  # fmt: skip
    row.cost_usd_per_million_output_tokens = costs.usd_per_million
    row.gco2_per_million_output_tokens = costs.gco2_per_million
    ttft_ns = sum(r.token_ns[0] - r.start_ns for r in g.runs)
    e2e_ns = sum(r.token_ns[-1] - r.start_ns for r in g.runs)
    prefill_share = ttft_ns / e2e_ns if e2e_ns > 0 else 1.0
    details["generation"] = {
        "output_tokens_per_s": stats.output_tokens_per_s,
        "cold_ttft_ms": g.cold_ttft_ms,
        "kv_cache_mb_config": g.kv_cache_bytes / 2**20 if g.kv_cache_bytes else None,
        "kv_cache_mb_engine": (
            g.kv_cache_bytes_engine / 2**20 if g.kv_cache_bytes_engine is not None else None
        ),
        "n_itl": stats.n_itl,
        "ttft_ms": [(r.token_ns[0] - r.start_ns) / 1e6 for r in g.runs],
        "matching_greedy_len": g.matching_greedy_len,
        "perplexity_ratio": g.perplexity_ratio,
        "next_token_agreement": g.next_token_agreement,
        "j_per_output_token": j_per_token,
        "per_million_output_tokens": {
            "split": "time-proportional: prefill = summed TTFT / summed e2e of the timed "
            "generations, decode = the rest; energy is an estimate (equal power assumed)",
            "prefill_time_share": prefill_share,
            "prefill": phase_split(costs, j_per_token, prefill_share),
            "decode": phase_split(costs, j_per_token, 1.0 - prefill_share),
        },
    }
    details.pop("fidelity", None)
    if g.perplexity_ratio is not None and g.next_token_agreement is not None:
        row.fidelity_metric = "next_token_agreement"
        row.fidelity = g.next_token_agreement
        row.fidelity_ratio = g.perplexity_ratio  # fp32 perplexity / this variant's
        row.fidelity_ok = g.perplexity_ratio >= case.settings.fidelity_min_ratio
        details["fidelity_reference"] = "fp32 PyTorch, teacher-forced on the evaluation split"
    else:
        details["fidelity"] = "teacher-forced scores not available: the engine returns no logits"


def _short_run(m: Measurement, n: int, screening: bool = False) -> str | None:
    """Why the row has fewer samples than asked for: the model is too slow for the budget (a
    screening round's own short budget, which the search chose, says so)."""
    if m.stop_reason != "budget" or not m.min_samples or n >= m.min_samples:
        return None
    per = sum(m.samples_ns) / n / 1e9 if n else float("inf")
    if screening:
        return (
            f"a screening round: {n} of {m.min_samples} samples in its {m.budget_s:.3g} s (the "
            "search's --first-budget; the cases that can still win are timed longer)"
        )
    return (
        f"too slow for this budget: {n} of {m.min_samples} samples in budget_s = "
        f"{m.budget_s:g} s (about {per:.2g} s each); raise budget_s for more"
    )


def _latency(
    row: CaseResult,
    stats: LatencyStats | None,
    m: Measurement,
    details: dict[str, Any],
    confidence: float,
) -> None:
    """Statistics and how sampling went (``None`` stays ``None``; no statistics at all for a
    load whose every request failed)."""
    row.warmup_iters = m.warmup_iters
    row.warmup_s = m.warmup_s
    row.warmup_steady = m.warmup_steady
    row.stop_reason = m.stop_reason
    row.p50_rel_ci_width = m.rel_ci_width
    if stats is None:
        row.n_samples = 0
        return
    for name, q in (("p50", stats.p50), ("p90", stats.p90), ("p99", stats.p99)):
        setattr(row, f"latency_ms_{name}", q.value)
        setattr(row, f"latency_ms_{name}_ci_low", q.ci_low)
        setattr(row, f"latency_ms_{name}_ci_high", q.ci_high)
    row.latency_ms_mean = stats.mean_ms
    row.n_samples = stats.n
    row.cv = stats.cv
    row.throughput_per_s = stats.throughput_per_s
    if stats.p99.value is None:
        details["p99"] = (
            f"insufficient samples ({stats.n} < {min_samples_for(0.99, confidence)} for a "
            f"{confidence:.0%} interval)"
        )


def _fidelity(row: CaseResult, m: Measurement, min_ratio: float, details: dict[str, Any]) -> None:
    fidelity = m.fidelity
    if m.fidelity_unscored:
        details["fidelity_not_scored"] = m.fidelity_unscored
    if fidelity is None:
        under_load = m.load is not None or m.llm_load is not None
        default = ("not scored under load (the single-stream case of the same artifact scores it)"
                   if under_load else "this backend computes no model outputs")  # fmt: skip
        why = "; ".join(m.fidelity_unscored.values()) or default
        details["fidelity"] = f"not scored: {why}"
        return
    row.fidelity_metric = fidelity.metric
    row.fidelity = fidelity.value
    row.fidelity_ratio = fidelity.ratio
    row.fidelity_ok = fidelity.ratio >= min_ratio
    details[fidelity.agreement_metric] = fidelity.agreement
    details["fidelity_reference"] = fidelity.reference


def _energy(
    row: CaseResult, m: Measurement, stats: LatencyStats, batch: int, details: dict[str, Any]
) -> None:
    """Joules per inference (one input item) from the host probe's reading over the sampling
    phase, or from a simulated device's own model; power over the same window."""
    if m.energy is not None:
        reading = m.energy
        row.energy_j_per_inference = reading.joules / (stats.n * batch)
        row.power_w = reading.joules / reading.seconds if reading.seconds > 0 else None
        row.energy_source = reading.source
        details["energy"] = m.energy_note + reading.probe
    if m.simulated is not None:
        row.energy_j_per_inference = m.simulated.joules_per_batch / batch
        row.energy_source = "simulated"
        row.device = m.simulated.device_label
        row.hardware_class = m.simulated.hardware_class
        if row.latency_ms_p50:
            row.power_w = m.simulated.joules_per_batch / (row.latency_ms_p50 / 1e3)


def _load(row: CaseResult, load: LoadMeasurement, details: dict[str, Any]) -> None:
    """LoadGen's figures replace the sample statistics: its percentiles (no intervals: LoadGen
    gives none; its early-stopping estimate is the bounded one), its achieved QPS as
    throughput, the scenario's columns, and the run's facts in details."""
    for name, q in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0)):
        setattr(row, f"latency_ms_{name}", load.percentiles.get(q))
        setattr(row, f"latency_ms_{name}_ci_low", None)
        setattr(row, f"latency_ms_{name}_ci_high", None)
    row.latency_ms_mean = load.mean_ms
    row.throughput_per_s = (
        load.achieved_qps * row.batch_size
        if load.achieved_qps and row.batch_size
        else load.achieved_qps
    )
    row.target_qps, row.achieved_qps = load.target_qps, load.achieved_qps
    row.latency_bound_ms = load.latency_bound_ms
    row.valid = load.valid
    row.early_stop_p99_ms = load.early_stop_p99_ms
    row.goodput_rps = load.goodput_rps
    row.error_rate = load.error_rate
    details.pop("p99", None)
    details["loadgen"] = {
        "validity": "VALID" if load.valid else "INVALID",
        "reasons": list(load.reasons),
        "compliant": load.compliant,
        "log_dir": load.log_dir,
        "queries": load.query_count,
        "early_stop_ms": {f"p{q:g}": ms for q, ms in load.early_stop.items()},
        "requests": load.requests,
        "errors": load.errors,
        "mean_batch": load.mean_batch,
        "service_ms_p50": load.service_ms_p50,
        "busy": load.busy,
        "calibration": load.calibration,
        "knobs": load.knobs,
    }
    if load.probes:
        details["loadgen"]["probes"] = list(load.probes)
        details["loadgen"]["search_stop"] = load.search_stop


def _llm_load(
    row: CaseResult, case: Case, raw: LlmLoadRaw, details: dict[str, Any], confidence: float
) -> None:
    """An ``llm-server`` rate point's columns from its per-request records
    (:func:`harness.scenarios.goodput.summarize`): offered and achieved requests/s, goodput,
    error rate, TTFT/TPOT quantiles; ``latency_bound_ms`` is the TTFT objective (the TPOT one
    is in details); ``valid`` means every request completed; throughput is requests/s."""
    s = summarize(raw.records, raw.offered_rps, raw.start_ns, raw.objectives, confidence)
    row.prompt_len, row.gen_len = case.seq_len, case.gen_len
    row.target_qps, row.achieved_qps = s.offered_rps, s.achieved_rps
    row.goodput_rps, row.error_rate = s.goodput_rps, s.error_rate
    row.valid = s.completed == s.requests
    row.throughput_per_s = s.achieved_rps
    _token_quantiles(row, s.ttft, s.tpot)
    row.e2e_ms_p50 = s.e2e[0].value
    output_tokens = sum(r.n_output for r in raw.records if r.ok)
    details["llm_server"] = {
        "offered_rps": s.offered_rps,
        "requests": s.requests,
        "completed": s.completed,
        "good": s.good,
        "attainment": s.attainment,
        "attainment_goal": raw.attainment_goal,
        "duration_s": s.duration_s,
        "ttft_slo_ms": raw.objectives.ttft_ms,
        "tpot_slo_ms": raw.objectives.tpot_ms,
        "output_tokens_per_s": output_tokens / s.duration_s,
        "e2e_ms_p99": s.e2e[2].value,
        "ttft_ms": [r.ttft_ms() for r in raw.records],
        "errors": list(s.errors),
        **raw.load,
    }
    if s.completed < s.requests:
        details["llm_server"]["failed"] = (
            f"{s.requests - s.completed} of {s.requests} requests failed: " + "; ".join(s.errors)
        )
