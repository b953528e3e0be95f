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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.backend import (
    Backend,
    BackendSettings,
    ReportsDetails,
    ReportsDeviceMemory,
    SimulatedDevice,
    backend_class,
)
from harness.case import Case
from harness.environment import cpu_model, isa_flags
from harness.generate.stats import GenerativeRaw
from harness.launch.base import Progress, no_progress
from harness.measure.clock import Clock
from harness.measure.energy import EnergyReading, choose_probe
from harness.measure.fidelity import Fidelity, Scores, reference_outputs, run_batches, score_outputs
from harness.measure.memory import peak_rss_mb, rss_mb
from harness.measure.timing import measure, time_once
from harness.models import get_model
from harness.optimize.artifacts import Artifact, cache_root
from harness.optimize.variants import parse_variant
from harness.scenarios.record import LlmLoadRaw, LoadMeasurement

# The fidelity pass may take max(budget_s, this) seconds: a model whose evaluation set fits in it
# is scored on the whole set on any machine (the figure does not depend on the machine's speed);
# a slower one on the batches that fit.
FIDELITY_FLOOR_S = 10.0
SCREENING_DEFERRED = "left to the search's later rounds (a short screening round times only)"


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
    fidelity:   the score against the fp32 reference (None: not scored: the backend computes
                no outputs, or ``fidelity_unscored`` says why); ``fidelity_per_output`` holds
                each scored output's score; ``fidelity_unscored`` output name -> why it is not
                scored (NaN in the reference, not reproducible).
    details:    backend facts (a compiler's target, a simulator's per-layer model).
    device_mem_mb: peak accelerator memory (MiB) a ``ReportsDeviceMemory`` backend reported.
    load:       a load scenario's LoadGen results (None: the harness's timing loop measured).
    input_shapes: the shape of every array fed to the backend for the timed runs, by input.
    min_samples, budget_s: what the timing policy asked for (a short run is said to be one).
    incomplete: why an untimed pass after sampling did not finish (one line), else None; the
                samples are kept either way.
    generative: a decoder case's per-token timestamps and fidelity (then ``samples_ns`` are
                each generation's end-to-end time).
    llm_load:   an ``llm-server`` rate point's per-request timestamps (then ``samples_ns`` are
                the completed requests' end-to-end times, arrival to last token).
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
    model_mem_mb: float | None
    peak_rss_mb: float | None
    affinity: str
    executed_precision: str | None
    versions: dict[str, str]
    energy_note: str
    energy: EnergyReading | None = None
    simulated: SimulatedEnergy | None = None
    fidelity: Fidelity | None = None
    fidelity_per_output: dict[str, float] = field(default_factory=dict)
    fidelity_unscored: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    device_mem_mb: float | None = None
    load: LoadMeasurement | None = None
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    min_samples: int = 0
    budget_s: float = 0.0
    incomplete: str | None = None
    generative: GenerativeRaw | None = None
    llm_load: LlmLoadRaw | None = None


def timed_load(load: Callable[[], float | None], clock: Clock) -> tuple[float | None, float, float]:
    """Run ``load`` (a backend's load, its compile time or None) and return (compile_s,
    load_s: its wall time on ``clock``, model_mem_mb: the resident memory it added)."""
    before = rss_mb()
    start = clock.now_ns()
    compile_s = load()
    load_s = (clock.now_ns() - start) / 1e9
    return compile_s, load_s, max(rss_mb() - before, 0.0)


def pin_cpus(threads: int) -> str:
    """Restrict this process to ``threads`` of the CPUs it may use; return them as text."""
    if not hasattr(os, "sched_setaffinity"):
        return "unpinned"
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[: max(1, min(threads, len(allowed)))]
    os.sched_setaffinity(0, chosen)
    return ",".join(str(c) for c in chosen)


def fidelity_of(
    backend: Backend, case: Case, reference: Artifact, max_batches: int | None = None
) -> Scores:
    """Run the evaluation set through the loaded backend (untimed) and score it against the
    fp32 reference, batch by batch in the case's shape (see
    :func:`harness.measure.fidelity.score_outputs`)."""
    model = get_model(case.model, case.bindings)
    batches, rows = model.batches("evaluation", case.batch_size, case.seq_len)
    total = len(batches)
    if max_batches is not None and max_batches < total:
        batches, rows = batches[:max_batches], None  # filler rows are in the last batch only
    digest = hashlib.sha256()
    for batch in batches:
        for name in sorted(batch):
            digest.update(name.encode() + str(batch[name].shape).encode() + batch[name].tobytes())
    cache = Path(reference.directory) / f"reference-v2-{digest.hexdigest()[:16]}.npz"
    expected = reference_outputs(reference.onnx_path, batches, cache)

    def infer(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        backend.prepare(batch)
        backend.run()
        backend.synchronize()
        return backend.outputs()

    outputs = run_batches(infer, batches)
    scores = score_outputs(
        model.task, outputs, expected.batches, model.evaluation_labels(), rows, expected.unstable
    )
    if len(batches) < total:
        note = f"on {len(batches)} of {total} evaluation batches (the rest do not fit budget_s)"
        scores = replace(scores, coverage=note)
    return scores


def measure_case(
    case: Case,
    artifact: Artifact,
    reference: Artifact | None,
    clock: Clock,
    progress: Progress = no_progress,
    keep: Callable[[Measurement], None] = lambda measurement: None,
) -> Measurement:
    """Measure ``case`` in this process. ``reference`` is the model's fp32 artifact (default:
    ``artifact`` itself), the fidelity reference.

    Raises ``BackendUnavailable`` (skip) when the runtime cannot run here or refuses the
    precision, ``BackendError`` (fail) when it fails; the caller classifies. ``keep`` receives
    the timed measurement as soon as sampling ends; errors of the untimed passes after it are
    recorded in the result's ``incomplete``, never raised.
    """
    if case.scenario == "llm-server":
        from harness.scenarios.llm_serve import measure_llm_serving

        return measure_llm_serving(case, artifact, clock, progress)
    if case.load_driven:
        return _measure_load(case, artifact, clock, progress)
    model = get_model(case.model, case.bindings)
    if model.generative:
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
        example_inputs=inputs,
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
    policy = case.settings.timing
    # budget_s bounds the whole measurement: warm-up, sampling and the untimed passes each
    # get at most that long (the samples are kept whatever happens after them). A search
    # round's warm-up was bounded by the full budget already (``keep_warmup``).
    if not case.settings.keep_warmup:
        policy = replace(policy, warmup_max_s=min(policy.warmup_max_s, policy.budget_s))
    untimed_errors: list[str] = []
    try:
        progress("loading")
        compile_s, load_s, model_mem_mb = timed_load(
            lambda: backend.load(artifact, settings), clock
        )
        backend.prepare(inputs)
        progress("first inference")
        first_ns = time_once(backend, clock)
        progress("warm-up and sampling")
        timing = measure(backend, clock, policy, probe)
        device = (
            SimulatedEnergy(backend.energy_j(), backend.device_label, backend.hardware_class)
            if isinstance(backend, SimulatedDevice)
            else None
        )
        timed = Measurement(
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
            executed_precision=None,
            versions=backend.versions(),
            energy_note=energy_note,
            energy=timing.energy,
            simulated=device,
            device_mem_mb=(
                backend.device_mem_mb() if isinstance(backend, ReportsDeviceMemory) else None
            ),
            input_shapes=dict(settings.input_shapes),
            min_samples=policy.min_samples,
            budget_s=policy.budget_s,
        )
        if case.settings.screening:
            # its worker also ran the round's earlier cases: no memory figure is its own
            timed = replace(timed, peak_rss_mb=None, model_mem_mb=None, device_mem_mb=None)
        keep(timed)  # from here on, nothing can lose the samples
        if case.settings.screening:
            result = replace(timed, fidelity_unscored={"outputs": SCREENING_DEFERRED})
        else:
            result = _untimed(backend, case, reference or artifact, timed, progress,
                              untimed_errors)  # fmt: skip
    finally:
        backend.close()
    if untimed_errors:
        return replace(result, incomplete="; ".join(untimed_errors))
    return result


def _measure_load(case: Case, artifact: Artifact, clock: Clock, progress: Progress) -> Measurement:
    """A load scenario (``harness.scenarios``): LoadGen's results in ``load``, the SUT-side
    per-sample latencies as samples; no warm-up loop, energy or fidelity."""
    from harness.scenarios.measure import measure_load

    affinity = pin_cpus(case.threads * case.serving.instances)
    load, latencies_ns, facts = measure_load(case, artifact, clock, progress)
    return Measurement(
        samples_ns=tuple(latencies_ns),
        warmup_iters=0,
        warmup_s=0.0,
        warmup_steady=True,
        stop_reason=f"loadgen {case.scenario}"
        + (f", search {load.search_stop}" if load.search_stop else ""),
        rel_ci_width=None,
        affinity=affinity,
        energy_note="not measured in load scenarios; ",
        load=load,
        **facts,
    )


def _untimed(
    backend: Backend,
    case: Case,
    reference: Artifact,
    timed: Measurement,
    progress: Progress,
    errors: list[str],
) -> Measurement:
    """The untimed passes after sampling (fidelity, backend facts, executed precision), each
    on its own: an error in one is added to ``errors`` (one line) and the others still run.
    The fidelity pass scores at most as many evaluation batches as fit in
    max(``budget_s``, :data:`FIDELITY_FLOOR_S`) at the measured median latency (candidate,
    reference and its self-check: 3 runs per batch)."""
    fidelity: Fidelity | None = None
    per_output: dict[str, float] = {}
    unscored: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if backend.capabilities.computes_outputs:
        progress("scoring fidelity (untimed)")
        median_s = float(np.median(timed.samples_ns)) / 1e9 if timed.samples_ns else 0.0
        bound_s = max(timed.budget_s, FIDELITY_FLOOR_S)
        fit = int(bound_s / (3 * median_s)) if median_s > 0 else None
        try:
            scores = fidelity_of(backend, case, reference, max(fit, 1) if fit is not None else None)
            fidelity, per_output, unscored = scores.fidelity, scores.per_output, scores.unscored
            if scores.coverage:
                extra["fidelity_batches"] = scores.coverage
        except Exception as exc:
            errors.append(f"fidelity not scored: {_error_line(exc)}")
    details: dict[str, Any] = {}
    try:
        details = backend.report() if isinstance(backend, ReportsDetails) else {}
    except Exception as exc:
        errors.append(f"backend details: {_error_line(exc)}")
    executed = None
    progress("checking the executed precision (untimed)")
    try:
        executed = backend.executed_precision()
    except Exception as exc:
        errors.append(f"executed precision: {_error_line(exc)}")
    return replace(
        timed,
        executed_precision=executed,
        fidelity=fidelity,
        fidelity_per_output=per_output,
        fidelity_unscored=unscored,
        details={**details, **extra},
    )


def _error_line(exc: BaseException) -> str:
    """``Type: the informative line`` of an exception whose message may span many lines."""
    from harness.errors import informative_line

    return f"{type(exc).__name__}: {informative_line(str(exc))}"
