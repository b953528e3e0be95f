"""One case, start to finish, inside a worker process: load -> prepare -> measure -> result.

What is timed: ``load_s`` is ``backend.load`` (runtime session creation and compilation);
``first_inference_ms`` is the first ``run`` + ``synchronize`` after ``prepare``; latency samples
are later iterations of the same, after a warm-up that ends when timing is steady.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from harness.backend import (
    Backend,
    BackendSettings,
    ReportsDetails,
    SimulatedDevice,
    backend_class,
)
from harness.config import Case, Suite
from harness.environment import cpu_model, isa_flags
from harness.errors import BackendError, BackendUnavailable
from harness.measure.clock import Clock, PerfCounterClock
from harness.measure.energy import EnergySettings, choose_probe
from harness.measure.fidelity import (
    DEFAULT_MIN_RATIO,
    Fidelity,
    reference_outputs,
    run_batches,
    score_outputs,
)
from harness.measure.memory import peak_rss_mb, rss_mb
from harness.measure.stats import LatencyStats, samples_to_ms
from harness.measure.timing import TimingPolicy, TimingResult, measure, time_once
from harness.models import get_model
from harness.optimize.artifacts import Artifact, cache_root
from harness.optimize.variants import parse_variant
from harness.result import CaseResult

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TVM_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """Variables that must be set before any math library starts its thread pool."""
    return dict.fromkeys(THREAD_ENV_VARS, str(threads))


def pin_cpus(threads: int) -> str:
    """Restrict this process to ``threads`` of the CPUs it may use; return them as text."""
    if not hasattr(os, "sched_setaffinity"):
        return "unpinned"
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[: max(1, min(threads, len(allowed)))]
    os.sched_setaffinity(0, chosen)
    return ",".join(str(c) for c in chosen)


def base_result(run_id: str, case: Case, artifact: Artifact | None) -> CaseResult:
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
        shape=case.shape,
        scenario=case.scenario,
        artifact_sha256=artifact.sha256 if artifact else None,
        artifact_mb=artifact.size_mb if artifact else None,
        params_m=artifact.params_m if artifact else None,
    )


def fidelity_of(
    backend: Backend, case: Case, reference: Artifact
) -> tuple[Fidelity, dict[str, float]]:
    """Run the evaluation set through the loaded backend (untimed) and score it against the
    fp32 reference, in batches of the case's shape; also every output's cosine."""
    model = get_model(case.model, case.bindings)
    batches, rows = model.batches("evaluation", case.batch_size, case.seq_len)
    digest = hashlib.sha256()
    for batch in batches:
        for name in sorted(batch):
            digest.update(name.encode() + str(batch[name].shape).encode() + batch[name].tobytes())
    cache = Path(reference.directory) / f"reference-{digest.hexdigest()[:16]}.npz"
    expected = reference_outputs(reference.onnx_path, batches, rows, cache)

    def infer(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        backend.prepare(batch)
        backend.run()
        backend.synchronize()
        return backend.outputs()

    outputs = run_batches(infer, batches, rows)
    return score_outputs(model.task, outputs, expected, model.evaluation_labels())


def execute(
    run_id: str,
    case: Case,
    artifact: Artifact,
    policy: TimingPolicy,
    clock: Clock,
    energy: EnergySettings | None = None,
    reference: Artifact | None = None,
    min_ratio: float = DEFAULT_MIN_RATIO,
) -> tuple[CaseResult, list[float]]:
    """Run one case in this process and return its row and raw samples (ms).

    ``reference`` is the model's fp32 artifact (default: ``artifact`` itself) for fidelity."""
    result = base_result(run_id, case, artifact)
    backend = backend_class(case.backend)()
    try:
        backend.check()
    except BackendUnavailable as exc:
        result.status, result.reason = "skipped", str(exc)
        return result, []
    result.affinity = pin_cpus(case.threads)
    model = get_model(case.model, case.bindings)
    inputs = model.example_inputs(case.batch_size, case.seq_len)
    settings = BackendSettings(
        threads=case.threads,
        device=case.device,
        options=case.options,
        input_shapes={name: tuple(array.shape) for name, array in inputs.items()},
        input_names=tuple(model.input_names),
        output_names=tuple(model.output_names),
        precision=parse_variant(case.variant).runtime_precision,
        isa_flags=tuple(isa_flags()),
        cache_dir=cache_root(),
    )
    simulated = backend.capabilities.energy == "simulated"
    probe, energy_note = (
        (None, "simulated by the backend; ")
        if simulated
        else choose_probe(energy or EnergySettings(), case.device, cpu_model())
    )
    try:
        before = rss_mb()
        start = clock.now_ns()
        result.compile_s = backend.load(artifact, settings)
        result.load_s = (clock.now_ns() - start) / 1e9
        result.model_mem_mb = max(rss_mb() - before, 0.0)
        backend.prepare(inputs)
        result.first_inference_ms = time_once(backend, clock) / 1e6
        timing = measure(backend, clock, policy, probe)
        fidelity, per_output = (
            fidelity_of(backend, case, reference or artifact)
            if backend.capabilities.computes_outputs
            else (None, {})
        )
        result.executed_precision = backend.executed_precision()
        result.versions = json.dumps(backend.versions(), sort_keys=True)
        if simulated:
            simulated_device(backend, result)
        backend_report = backend.report() if isinstance(backend, ReportsDetails) else {}
    except BackendUnavailable as exc:
        result.status, result.reason = "skipped", str(exc)
        return result, []
    except BackendError as exc:
        result.status, result.reason = "failed", str(exc)
        return result, []
    finally:
        backend.close()
    result.peak_rss_mb = peak_rss_mb()
    samples = samples_to_ms(timing.samples_ns)
    stats = LatencyStats.from_samples(samples, case.batch_size, policy.confidence)
    details: dict[str, Any] = {"energy": energy_note, **backend_report}
    if len(per_output) > 1:
        details["cosine_per_output"] = per_output
    fill_latency(result, stats, timing, details)
    fill_fidelity(result, fidelity, min_ratio, details)
    if timing.energy is not None:
        reading = timing.energy
        result.energy_j_per_inference = reading.joules / (stats.n * case.batch_size)
        result.power_w = reading.joules / reading.seconds if reading.seconds > 0 else None
        result.energy_source = reading.source
        details["energy"] = energy_note + reading.probe
    if simulated and result.energy_j_per_inference is not None and result.latency_ms_p50:
        result.power_w = (
            result.energy_j_per_inference * case.batch_size / (result.latency_ms_p50 / 1e3)
        )
    result.details = json.dumps(details)
    return result, samples.tolist()


def simulated_device(backend: Backend, result: CaseResult) -> None:
    """A simulated device's energy and device label, taken while the backend is still loaded;
    the energy is per inference of the prepared batch. BackendError if a backend declares
    simulated energy without being a ``SimulatedDevice``."""
    if not isinstance(backend, SimulatedDevice):
        raise BackendError(f"{backend.name} declares simulated energy but reports none")
    batch = result.batch_size or 1
    result.energy_j_per_inference = backend.energy_j() / batch
    result.energy_source = "simulated"
    result.device = backend.device_label


def fill_fidelity(
    result: CaseResult, fidelity: Fidelity | None, min_ratio: float, details: dict[str, Any]
) -> None:
    if fidelity is None:
        details["fidelity"] = "not scored: this backend computes no model outputs"
        return
    result.fidelity_metric = fidelity.metric
    result.fidelity = fidelity.value
    result.fidelity_ratio = fidelity.ratio
    result.fidelity_ok = fidelity.ratio >= min_ratio
    details[fidelity.agreement_metric] = fidelity.agreement
    details["fidelity_reference"] = fidelity.reference


def fill_latency(
    result: CaseResult, stats: LatencyStats, timing: TimingResult, details: dict[str, Any]
) -> None:
    """Copy statistics and how sampling went into the row (``None`` stays ``None``)."""
    for name, q in (("p50", stats.p50), ("p90", stats.p90), ("p99", stats.p99)):
        setattr(result, f"latency_ms_{name}", q.value)
        setattr(result, f"latency_ms_{name}_ci_low", q.ci_low)
        setattr(result, f"latency_ms_{name}_ci_high", q.ci_high)
    result.latency_ms_mean = stats.mean_ms
    result.n_samples = stats.n
    result.cv = stats.cv
    result.throughput_per_s = stats.throughput_per_s
    result.warmup_iters = timing.warmup_iters
    result.warmup_s = timing.warmup_s
    result.warmup_steady = timing.steady
    result.stop_reason = timing.stop_reason
    result.p50_rel_ci_width = timing.rel_ci_width
    if stats.p99.value is None:
        details["p99"] = f"insufficient samples ({stats.n})"


def run_case_in_worker(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: payload has run_id, case, artifact and policy as plain dicts."""
    case = Case.from_dict(payload["case"])
    result, samples = execute(
        payload["run_id"],
        case,
        Artifact.from_dict(payload["artifact"]),
        TimingPolicy(**payload["policy"]),
        PerfCounterClock(),
        EnergySettings(**payload["energy"]),
        Artifact.from_dict(payload["reference"]),
        payload["min_ratio"],
    )
    return {"result": result.to_dict(), "samples_ms": samples}


def case_payload(
    run_id: str,
    case: Case,
    artifact: Artifact,
    reference: Artifact,
    suite: Suite,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "case": {**asdict(case), "options": dict(case.options)},
        "artifact": artifact.to_dict(),
        "reference": reference.to_dict(),
        "min_ratio": suite.fidelity_min_ratio,
        "policy": asdict(suite.timing),
        "energy": asdict(suite.energy),
    }
