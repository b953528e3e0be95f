"""One case inside a worker: load -> prepare -> measure -> fidelity -> a raw ``Measurement``.

What is timed: ``load_s`` is ``backend.load`` (runtime session creation and compilation);
``first_inference_ms`` is the first ``run`` + ``synchronize`` after ``prepare``; latency samples
are later iterations of the same, after a warm-up that ends when timing is steady. Nothing here
computes a statistic, a price or a verdict: :func:`harness.finalize.finalize` does that in the
parent, from the raw values.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
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
from harness.case import Case
from harness.environment import cpu_model, isa_flags
from harness.generate.stats import GenerativeRaw
from harness.launch.base import Progress, no_progress
from harness.measure.clock import Clock
from harness.measure.energy import EnergyReading, choose_probe
from harness.measure.fidelity import Fidelity, reference_outputs, run_batches, score_outputs
from harness.measure.memory import peak_rss_mb, rss_mb
from harness.measure.timing import measure, time_once
from harness.models import get_model
from harness.optimize.artifacts import Artifact, cache_root
from harness.optimize.variants import parse_variant


@dataclass(frozen=True)
class SimulatedEnergy:
    """A simulated device's own energy model: joules of one run of the prepared batch, the
    device label for the row and the hardware class whose prices apply."""

    joules_per_batch: float
    device_label: str
    hardware_class: str


@dataclass(frozen=True)
class Measurement:
    """Everything a worker measured for one case, raw: no statistic, no price, no verdict.

    samples_ns: latency of each timed iteration (ns), in order. Times in s unless named.
    energy:     the host probe's reading over the sampling phase (None: not measured).
    simulated:  a simulated device's own energy model (then ``energy`` is None).
    fidelity:   the score against the fp32 reference (None: the backend computes no outputs);
                ``fidelity_per_output`` holds each output's cosine.
    details:    backend facts (a compiler's target, a simulator's per-layer model).
    generative: a decoder case's per-token timestamps and fidelity (then ``samples_ns`` are
                each generation's end-to-end time).
    """

    samples_ns: tuple[int, ...]
    warmup_iters: int
    warmup_s: float
    warmup_steady: bool
    stop_reason: str
    rel_ci_width: float | None
    load_s: float
    compile_s: float | None
    first_inference_ms: float
    model_mem_mb: float
    peak_rss_mb: float
    affinity: str
    executed_precision: str | None
    versions: dict[str, str]
    energy_note: str
    energy: EnergyReading | None = None
    simulated: SimulatedEnergy | None = None
    fidelity: Fidelity | None = None
    fidelity_per_output: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    generative: GenerativeRaw | None = None


def pin_cpus(threads: int) -> str:
    """Restrict this process to ``threads`` of the CPUs it may use; return them as text."""
    if not hasattr(os, "sched_setaffinity"):
        return "unpinned"
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[: max(1, min(threads, len(allowed)))]
    os.sched_setaffinity(0, chosen)
    return ",".join(str(c) for c in chosen)


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


def measure_case(
    case: Case,
    artifact: Artifact,
    reference: Artifact | None,
    clock: Clock,
    progress: Progress = no_progress,
) -> Measurement:
    """Measure ``case`` in this process. ``reference`` is the model's fp32 artifact (default:
    ``artifact`` itself), the fidelity reference.

    Raises ``BackendUnavailable`` (skip) when the runtime cannot run here or refuses the
    precision, ``BackendError`` (fail) when it fails; the caller classifies.
    """
    model = get_model(case.model, case.bindings)
    if getattr(model, "generative", False):
        from harness.generate.execute import measure_generation

        return measure_generation(case, artifact, reference, clock, progress)
    backend = backend_class(case.backend)()
    backend.check()
    affinity = pin_cpus(case.threads)
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
        else choose_probe(case.settings.energy, case.device, cpu_model())
    )
    try:
        progress("loading")
        before = rss_mb()
        start = clock.now_ns()
        compile_s = backend.load(artifact, settings)
        load_s = (clock.now_ns() - start) / 1e9
        model_mem_mb = max(rss_mb() - before, 0.0)
        backend.prepare(inputs)
        first_ns = time_once(backend, clock)
        progress("warm-up and sampling")
        timing = measure(backend, clock, case.settings.timing, probe)
        fidelity: Fidelity | None = None
        per_output: dict[str, float] = {}
        if backend.capabilities.computes_outputs:
            progress("fidelity")
            fidelity, per_output = fidelity_of(backend, case, reference or artifact)
        device = (
            SimulatedEnergy(backend.energy_j(), backend.device_label, backend.hardware_class)
            if isinstance(backend, SimulatedDevice)
            else None
        )
        details = backend.report() if isinstance(backend, ReportsDetails) else {}
        executed, versions = backend.executed_precision(), backend.versions()
    finally:
        backend.close()
    return Measurement(
        samples_ns=tuple(timing.samples_ns),
        warmup_iters=timing.warmup_iters,
        warmup_s=timing.warmup_s,
        warmup_steady=timing.steady,
        stop_reason=timing.stop_reason,
        rel_ci_width=timing.rel_ci_width,
        load_s=load_s,
        compile_s=compile_s,
        first_inference_ms=first_ns / 1e6,
        model_mem_mb=model_mem_mb,
        peak_rss_mb=peak_rss_mb(),
        affinity=affinity,
        executed_precision=executed,
        versions=versions,
        energy_note=energy_note,
        energy=timing.energy,
        simulated=device,
        fidelity=fidelity,
        fidelity_per_output=per_output,
        details=details,
    )
