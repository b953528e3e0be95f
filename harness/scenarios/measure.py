"""A load-scenario case inside its worker: instances -> calibration -> LoadGen -> Measurement.

What is timed: ``load_s`` is the first instance's ``backend.load``; the calibration times
``infer`` on one sample and on a full batch (median of a few runs, the harness's clock) to give
LoadGen its expected latency / QPS; then LoadGen times every query sample. For ``server`` the
max-QPS search (:func:`harness.scenarios.search.max_qps`) runs LoadGen once per probe within
``search_budget_s``, and the row reports the highest passing probe; in full mode the probes
run in short mode and a full-mode run then confirms 90% of the highest passing target; a run
that misses the bound is retried at a rate fitted to it (:func:`_confirm_in_full_mode`), and
the last full run is the row. Every LoadGen run also times the runtime's share of each batch
(its service time under load, and the instances' utilization). Fidelity is not scored here
(the single-stream case of the same artifact scores it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.backend import Backend, BackendSettings, backend_class
from harness.case import Case
from harness.environment import isa_flags
from harness.errors import HarnessError
from harness.launch.base import Progress, no_progress
from harness.measure.clock import Clock
from harness.measure.memory import peak_rss_mb, rss_mb
from harness.measure.stats import min_samples_for
from harness.models import get_model
from harness.optimize.artifacts import Artifact, cache_root
from harness.optimize.variants import parse_variant
from harness.scenarios.batcher import Infer, stack
from harness.scenarios.config import ServingSettings
from harness.scenarios.loadgen import LoadRun, RunRecord, run_loadgen
from harness.scenarios.record import LoadMeasurement
from harness.scenarios.search import Probe, max_qps, retry_qps

SAMPLE_POOL = 64  # distinct query samples in the QSL (all resident: they are small)
CALIBRATION_RUNS = 7
OFFLINE_HEADROOM = 1.5
# Full mode confirms the short search's best server QPS with a margin: a 1 s probe sees few tail
# events. In one quiet run here the full run at the short search's best (OpenVINO, 61.0 QPS)
# missed the 50 ms bound with a p99 of 62.1 ms. The first try runs at FULL_STEP times that best;
# a miss is retried at a rate fitted to it (retry_qps), while the case's time allows another run
# as long as the last one (FULL_ROOM: with slack for closing) and for at most FULL_TRIES runs.
FULL_STEP = 0.9
FULL_TRIES = 4
FULL_ROOM = 1.2
FULL_RUN_S = 610.0  # mlperf.conf's 600 s minimum duration, and the queue's drain
# A row stores at most this many SUT-side latencies of its run (evenly spaced in completion
# order): a 600 s run of a fast model has tens of millions, which the store cannot take.
LOAD_SAMPLES_KEPT = 100_000
SLOWER_UNDER_LOAD = 1.5  # service time under load vs back to back worth a line in the row
# When a model runs in under OVERHEAD_MATTERS_MS, the harness's own per-request work (LoadGen's
# and Python's) can be the limit, so a short LoadGen offline run (SERVED_RUN_MS) measures the
# rate served: from the model's time alone, a 2 us fake model's capacity was 710k/s, its offline
# query 7x what a run could serve (about 100k/s), and the worker grew to 13.7 GB.
OVERHEAD_MATTERS_MS = 1.0
SERVED_RUN_MS = 300
# A server run that completed under this share of its target rate fell behind. Short probes
# that kept up completed 0.96-0.98 of their target here (OpenVINO bf16, 106-260 QPS); one
# that fell behind on a fast model, 0.83 (its queue grew to a p50 of 214 ms).
KEPT_UP = 0.9
START_SLACK_S = 60.0  # a worker's time before measure_load starts (process start, imports)


def samples_of(case: Case) -> list[dict[str, np.ndarray]]:
    """``SAMPLE_POOL`` query samples, each the case's batch of inputs (axis 0 = batch)."""
    model = get_model(case.model, case.bindings)
    pool = model.example_inputs(case.batch_size * SAMPLE_POOL, case.seq_len)
    b = case.batch_size
    return [{n: a[i * b : (i + 1) * b] for n, a in pool.items()} for i in range(SAMPLE_POOL)]


def load_instances(
    case: Case, artifact: Artifact, sample: Mapping[str, np.ndarray]
) -> tuple[list[Backend], float, float | None]:
    """One loaded backend per instance, and the first one's load time (s) and compile time.
    With batching the inputs' batch axis is left dynamic (``input_shapes`` empty)."""
    model = get_model(case.model, case.bindings)
    static = case.serving.max_batch_size == 1
    settings = BackendSettings(
        threads=case.threads,
        device=case.device,
        options=case.options,
        input_shapes={n: tuple(a.shape) for n, a in sample.items()} if static else {},
        input_names=tuple(model.input_names),
        output_names=tuple(model.output_names),
        precision=parse_variant(case.variant).runtime_precision,
        isa_flags=tuple(isa_flags()),
        cache_dir=cache_root(),
    )
    backends: list[Backend] = []
    load_s, compile_s = 0.0, None
    for i in range(case.serving.instances):
        backend = backend_class(case.backend)()
        backend.check()
        start = time.perf_counter()
        backends.append(backend)
        compiled = backend.load(artifact, settings)
        if i == 0:
            load_s, compile_s = time.perf_counter() - start, compiled
    return backends, load_s, compile_s


def infer_fn(backend: Backend) -> Infer:
    def infer(inputs: Mapping[str, np.ndarray]) -> None:
        backend.prepare(inputs)
        backend.run()
        backend.synchronize()

    return infer


def _median_ms(infer: Infer, inputs: Mapping[str, np.ndarray], clock: Clock) -> float:
    times = []
    for _ in range(CALIBRATION_RUNS):
        start = clock.now_ns()
        infer(inputs)
        times.append((clock.now_ns() - start) / 1e6)
    return float(np.median(times))


def calibrate(
    infer: Infer, samples: Sequence[Mapping[str, np.ndarray]], case: Case, clock: Clock
) -> dict[str, Any]:
    """Per-sample latency (ms), a full batch's latency and the capacity estimate (samples/s
    over all instances), from which LoadGen's expectations are set. When the first inference
    fails, only the error (``failed``)."""
    from harness.scenarios.batcher import Request

    try:
        one = _median_ms(infer, samples[0], clock)
    except HarnessError as exc:
        return {"failed": str(exc) or type(exc).__name__}
    knobs = case.serving
    batch = knobs.max_batch_size
    full = one
    if batch > 1:
        full = _median_ms(
            infer, stack([Request(i, s) for i, s in enumerate(samples[:batch])]), clock
        )
    per_instance = max(1e3 / max(one, 1e-3), batch * 1e3 / max(full, 1e-3))
    return {"sample_ms": one, "batch_ms": full, "capacity_qps": per_instance * knobs.instances}


def _served_qps(
    capacity: float,
    case: Case,
    instances: Sequence[Infer],
    samples: Sequence[Mapping[str, np.ndarray]],
    folder: Path,
) -> float | None:
    """The rate a short LoadGen offline run (``SERVED_RUN_MS``, its query sized from
    ``capacity``) of ``case`` completed through the whole harness: LoadGen, the batcher and
    the instances. None when a request failed."""
    short = replace(case.settings.serving, mode="short", short_duration_ms=SERVED_RUN_MS,
                    short_query_count=1)  # fmt: skip
    record = run_loadgen(LoadRun("offline", short, expected_qps=capacity), instances,
                         case.serving, samples, folder)  # fmt: skip
    return None if record.errors else record.summary.achieved_qps


def _probe_of(record: RunRecord, qps: float, bound_ms: float) -> Probe:
    """The run as a search probe. It passes when its p99 met the bound, no request failed, and
    it completed at least ``KEPT_UP`` x the target rate (an overloaded server under a loose
    bound must not report a rate it never served)."""
    s = record.summary
    p99 = s.percentiles.get(99.0)
    kept_up = s.achieved_qps is None or s.achieved_qps >= KEPT_UP * qps
    passed = bool(s.perf_constraints_met) and p99 is not None and p99 <= bound_ms and kept_up
    return Probe(qps, s.achieved_qps, s.percentiles.get(50.0), p99, passed and not record.errors,
                 record.error_rate)  # fmt: skip


def _log_root(case: Case) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", case.case_id)
    return cache_root() / "loadgen-logs" / safe / str(time.time_ns())


def run_scenario(
    case: Case,
    instances: Sequence[Infer],
    samples: Sequence[Mapping[str, np.ndarray]],
    clock: Clock,
    progress: Progress = no_progress,
    log_root: Path | None = None,
    deadline_ns: int | None = None,
) -> tuple[LoadMeasurement, list[int]]:
    """Calibrate on the first instance, then run the case's scenario under LoadGen (for
    ``server``: the max-QPS search). Logs under ``log_root`` (default: the cache's
    ``loadgen-logs/<case>/<time>``), one directory per LoadGen run. ``deadline_ns`` (on
    ``clock``): no full-mode confirming run starts that could not end before it. Also returns
    the SUT-side latency (ns, issue to completion) of the reported run's samples: at most
    ``LOAD_SAMPLES_KEPT``, evenly spaced (``calibration["samples_kept"]`` then says so)."""
    serving = case.settings.serving
    root = log_root or _log_root(case)
    progress("calibrating")
    cal = calibrate(instances[0], samples, case, clock)
    if "failed" in cal:
        # The target failed its first request (refused, an error status, a stall past its
        # timeout): a load run would only queue more failures, so none is started.
        return _unserved(case, cal["failed"]), []
    capacity = cal["capacity_qps"]
    if cal["sample_ms"] < OVERHEAD_MATTERS_MS:  # the harness's per-request work may limit
        progress("calibrating the served rate")
        served = _served_qps(capacity, case, instances, samples, root / "served")
        if served is not None and served < capacity:
            cal["served_qps"] = capacity = served
            cal["capacity_qps"] = capacity
    spq = serving.samples_per_query
    expected = {
        "single-stream": cal["sample_ms"],
        "multi-stream": spq * 1e3 / capacity,
    }.get(case.scenario, cal["sample_ms"])
    # Offline: LoadGen sizes its one query from the expected QPS; an estimate on the high side
    # keeps the run above its minimum duration (LoadGen's own advice when it is not).
    base = LoadRun(case.scenario, serving, expected_latency_ms=expected,
                   expected_qps=OFFLINE_HEADROOM * capacity)  # fmt: skip
    cal = {**cal, "expected_latency_ms": expected}
    probes: tuple[dict[str, Any], ...] = ()
    stop = None
    if case.scenario == "server":
        records: dict[float, RunRecord] = {}
        # The search's probes run in short mode even in full mode (a 600 s probe per step would
        # spend the search budget on one probe); full mode then confirms what they found, and
        # its probes ask for enough queries for a p99 at all (64 queries' p99 is their maximum:
        # here a 90% confirmation of such a search missed the bound, p99 65 ms vs 50).
        short = replace(serving, mode="short")
        if serving.compliant:
            least = min_samples_for(0.99, 0.95)
            short = replace(short, short_query_count=max(serving.short_query_count, least))

        def server_at(qps: float, settings: ServingSettings) -> tuple[RunRecord, Probe]:
            """One LoadGen server run at ``qps`` and whether it met the bound."""
            full = settings.compliant
            progress(f"server at {qps:.1f} QPS{', full mode' if full else ''}")
            run = LoadRun("server", settings, target_qps=qps, expected_qps=capacity)
            folder = root / f"{'full' if full else 'qps'}-{qps:.2f}"
            done = run_loadgen(run, instances, case.serving, samples, folder)
            return done, _probe_of(done, qps, serving.latency_bound_ms)

        def probe(qps: float) -> Probe:
            records[qps], passed = server_at(qps, short)
            return passed

        result = max_qps(probe, 0.5 * capacity, clock, serving.search_budget_s)
        probes = tuple(vars(p) for p in result.probes)
        stop = result.stop_reason
        chosen = result.best or min(result.probes, key=lambda p: p.target_qps)
        record = records[chosen.target_qps]
        target: float | None = chosen.target_qps if result.best else None
        if result.best is None:
            full = ""
            if serving.compliant:
                full = "; with nothing to confirm, no full-mode run was made"
            cal["no_passing_target"] = (
                f"no target QPS met the p99 bound of {serving.latency_bound_ms:g} ms (lowest "
                f"tried {chosen.target_qps:.2f} QPS: p99 {chosen.p99_ms} ms); its run is "
                f"shown{full}"
            )
            cal["short_probe_shown"] = True  # that run is a short probe, even in full mode
        elif serving.compliant:
            confirmed = _confirm_in_full_mode(
                lambda qps: server_at(qps, serving), chosen.target_qps, cal,
                serving.latency_bound_ms, case.serving.max_batch_size > 1, clock, deadline_ns,
            )  # fmt: skip
            if confirmed is not None:
                record, target = confirmed
    else:
        progress(f"{case.scenario} under LoadGen")
        record = run_loadgen(base, instances, case.serving, samples, root / case.scenario)
        target = base.expected_qps if case.scenario == "offline" else None
    latencies = record.latencies_ns
    step = -(-len(latencies) // LOAD_SAMPLES_KEPT)  # ceil: every step-th sample is kept
    if step > 1:
        cal["samples_kept"] = (
            f"1 in {step} of the run's {len(latencies)} SUT-side latencies is stored "
            "(LoadGen's percentiles are over all of them)"
        )
    return _measurement(case, record, target, probes, stop, cal), list(latencies[:: step or 1])


def _confirm_in_full_mode(
    full: Callable[[float], tuple[RunRecord, Probe]],
    best_qps: float,
    cal: dict[str, Any],
    bound_ms: float,
    batching: bool,
    clock: Clock,
    deadline_ns: int | None,
) -> tuple[RunRecord, float] | None:
    """Run the server in full mode at ``FULL_STEP`` times the short search's best QPS; while a
    run misses the bound, run again at the rate :func:`~harness.scenarios.search.retry_qps`
    fits to the missed run. A run starts only while ``clock`` has room before ``deadline_ns``
    for ``FULL_ROOM`` times the last run's duration (``FULL_RUN_S`` before the first), and at
    most ``FULL_TRIES`` runs. The last run is the row, and its target; None when not even the
    first fits. Each try is in ``cal["full_runs"]`` with its service time and utilization,
    why the tries ended in ``cal["full_stop"]``; when none passed, ``cal["no_passing_target"]``
    says so."""
    tried: list[dict[str, Any]] = []
    last: tuple[RunRecord, float] | None = None
    qps: float | None = best_qps * FULL_STEP
    took_s, why = FULL_RUN_S, ""
    while not why:
        left_s = None if deadline_ns is None else (deadline_ns - clock.now_ns()) / 1e9
        if qps is None:
            why = "the service time alone is over the p99 aim: no lower rate can pass"
        elif len(tried) >= FULL_TRIES:
            why = f"{FULL_TRIES} full-mode runs, the most tried"
        elif left_s is not None and left_s < FULL_ROOM * took_s:
            why = f"the case's timeout_s leaves {left_s:.0f} s, too little for a {took_s:.0f} s run"
        else:
            started = clock.now_ns()
            record, check = full(qps)
            took_s, last = (clock.now_ns() - started) / 1e9, (record, qps)
            tried.append({"target_qps": qps, "p99_ms": check.p99_ms, "passed": check.passed,
                          "service_ms_p50": record.service_ms_p50,
                          "busy": record.busy})  # fmt: skip
            if check.passed:
                why = "passed"
            else:
                qps = retry_qps(qps, check.p99_ms, record.service_ms_p50, record.busy,
                                bound_ms, batching)  # fmt: skip
    cal["full_runs"], cal["full_stop"] = tried, why
    if not tried:
        cal["no_passing_target"] = f"no full-mode run: {why}; the short-mode search's best is shown"
        cal["short_probe_shown"] = True
    elif not tried[-1]["passed"]:
        runs = "; ".join(f"{t['target_qps']:.2f} QPS: p99 {t['p99_ms']} ms" for t in tried)
        cal["no_passing_target"] = (
            f"no full-mode run met the p99 bound of {bound_ms:g} ms ({runs}; the short-mode "
            f"search's best was {best_qps:.2f} QPS; stopped: {why})"
        )
    return last


def _slower_under_load(record: RunRecord, cal: dict[str, Any], max_batch: int) -> str | None:
    """A line when the run's median batch took ``SLOWER_UNDER_LOAD`` times or more the
    calibration's back-to-back median of the same size (only when every batch of the run had
    one size the calibration timed: 1, or ``max_batch``)."""
    sizes = set(record.batch_sizes)
    timed = {1: cal.get("sample_ms"), max_batch: cal.get("batch_ms")}
    calibrated = timed.get(sizes.pop()) if len(sizes) == 1 else None
    served = record.service_ms_p50
    if served is None or not calibrated or served < SLOWER_UNDER_LOAD * calibrated:
        return None
    return (
        f"a batch took {served:.3g} ms under load, {served / calibrated:.2f}x its {calibrated:.3g}"
        " ms back to back: the CPU slows between requests (idle states and clock ramp-up, a"
        " virtual machine's vCPU descheduled, the load generator's threads on the same CPUs)"
    )


def _unserved(case: Case, error: str) -> LoadMeasurement:
    """The row of a case whose first (calibration) request failed: one request, one error."""
    serving = case.settings.serving
    return LoadMeasurement(
        scenario=case.scenario,
        compliant=serving.compliant,
        latency_bound_ms=serving.latency_bound_ms if case.scenario == "server" else None,
        target_qps=None,
        achieved_qps=None,
        valid=False,
        reasons=(f"1 of 1 requests failed: {error}", "calibration failed: LoadGen not run"),
        early_stop_p99_ms=None,
        early_stop={},
        percentiles={},
        mean_ms=None,
        query_count=None,
        goodput_rps=0.0,
        requests=1,
        errors=1,
        error_texts=(error,),
        knobs={**vars(case.serving)},
    )


def _measurement(
    case: Case,
    record: RunRecord,
    target: float | None,
    probes: tuple[dict[str, Any], ...],
    stop: str | None,
    cal: dict[str, Any],
) -> LoadMeasurement:
    serving = case.settings.serving
    s = record.summary
    reasons = list(s.reasons)
    if record.errors:
        reasons.insert(0, f"{record.errors} of {record.requests} requests failed: "
                          + "; ".join(record.error_texts))  # fmt: skip
    if "no_passing_target" in cal:
        reasons.insert(0, cal["no_passing_target"])
    slower = _slower_under_load(record, cal, case.serving.max_batch_size)
    if slower:
        cal["slower_under_load"] = slower
    compliant = serving.compliant and not cal.get("short_probe_shown")
    if not compliant:
        reasons.append("short mode: minimum duration and query count lowered, not MLPerf-compliant")
    bound = serving.latency_bound_ms if case.scenario == "server" else None
    within = len(record.latencies_ns)
    if bound is not None:
        within = int(np.count_nonzero(np.asarray(record.latencies_ns) <= bound * 1e6))
    share = within / record.requests if record.requests else None
    goodput = s.achieved_qps * share if s.achieved_qps is not None and share is not None else None
    batches = record.batch_sizes
    return LoadMeasurement(
        scenario=case.scenario,
        compliant=compliant,
        latency_bound_ms=bound,
        target_qps=target,
        achieved_qps=s.achieved_qps,
        valid=s.valid and compliant and not (record.errors or "no_passing_target" in cal),
        reasons=tuple(reasons),
        early_stop_p99_ms=s.early_stop_p99_ms,
        early_stop=s.early_stop,
        percentiles=s.percentiles,
        mean_ms=s.mean_ms,
        query_count=s.query_count,
        goodput_rps=goodput,
        requests=record.requests,
        errors=record.errors,
        error_texts=tuple(record.error_texts),
        knobs={**vars(case.serving)},
        mean_batch=sum(batches) / len(batches) if batches else None,
        service_ms_p50=record.service_ms_p50,
        busy=record.busy,
        probes=probes,
        search_stop=stop,
        calibration=cal,
        log_dir=str(record.log_dir),
    )


def measure_load(
    case: Case, artifact: Artifact, clock: Clock, progress: Progress = no_progress
) -> tuple[LoadMeasurement, list[int], dict[str, Any]]:
    """Load the case's instances, run its scenario, close them. Returns the load measurement,
    the SUT-side latencies run_scenario keeps of the reported run (ns) and the raw facts
    ``execute.measure_case`` puts in the Measurement (load time, memory, versions)."""
    # The worker's deadline, less what it may have spent before this (start, imports).
    deadline = clock.now_ns() + int((case.settings.timeout_s - START_SLACK_S) * 1e9)
    samples = samples_of(case)
    before = rss_mb()
    progress("loading instances")
    backends, load_s, compile_s = load_instances(case, artifact, samples[0])
    try:
        model_mem = max(rss_mb() - before, 0.0)
        start = clock.now_ns()
        infer_fn(backends[0])(samples[0])
        first_ms = (clock.now_ns() - start) / 1e6
        load, latencies = run_scenario(
            case, [infer_fn(b) for b in backends], samples, clock, progress, deadline_ns=deadline
        )
        facts = {
            "load_s": load_s,
            "compile_s": compile_s,
            "first_inference_ms": first_ms,
            "model_mem_mb": model_mem,
            "peak_rss_mb": peak_rss_mb(),
            "executed_precision": backends[0].executed_precision(),
            "versions": backends[0].versions(),
        }
    finally:
        for backend in backends:
            backend.close()
    return load, latencies, facts
