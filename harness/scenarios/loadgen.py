"""One MLPerf LoadGen run over instances behind a dynamic batcher, with its own log directory.

LoadGen (``mlcommons-loadgen``, ``import mlperf_loadgen``) owns the schedule and the clock of
the run: it issues query samples to the system under test (SUT) and times each from its
scheduled issue to ``QuerySamplesComplete``. Here the SUT queues every sample on a
:class:`~harness.scenarios.batcher.DynamicBatcher`; a failed batch still completes its samples
(LoadGen has no notion of failure) and is counted, so a row can say how many requests failed.
LoadGen pre-generates its queries from the expected latency (single/multi-stream), the expected
QPS (offline) or the target QPS (server): :class:`LoadRun` carries the calibrated values.
"""

from __future__ import annotations

import importlib
import threading
import time
from array import array
from collections.abc import Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import BackendUnavailable, MeasurementError
from harness.scenarios.batcher import DynamicBatcher, Infer, Request
from harness.scenarios.config import LOADGEN_SCENARIOS, ServingKnobs, ServingSettings
from harness.scenarios.logparse import LoadgenSummary, parse_detail, summarize

INSTALL_HINT = "pip install 'infrabench[serving]' (mlcommons-loadgen)"
CONF_MODEL = "infrabench"  # the model name mlperf.conf is read for: only its ``*`` lines apply
SHORT_MAX_DURATION_FACTOR = 10  # short mode: LoadGen stops issuing at 10x the minimum duration


def loadgen() -> Any:
    """The ``mlperf_loadgen`` module; BackendUnavailable (skip, with the install hint) when it
    is not installed."""
    try:
        return importlib.import_module("mlperf_loadgen")
    except ImportError:
        raise BackendUnavailable(f"MLPerf LoadGen is not installed: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class LoadRun:
    """What one LoadGen run is told. ``expected_latency_ms``: a single-stream sample's or a
    multi-stream query's calibrated latency; ``expected_qps``: offline throughput;
    ``target_qps``: the server's Poisson arrival rate."""

    scenario: str
    serving: ServingSettings
    expected_latency_ms: float = 1.0
    expected_qps: float = 1.0
    target_qps: float = 1.0
    seed: int = 0


@dataclass
class RunRecord:
    """A finished run: LoadGen's summary, the SUT's own per-sample latencies (ns, issue to
    completion; successful ones only), failed requests and a few distinct error texts, the
    batch sizes run, each batch's service time (ns in ``infer``; successful and failed ones
    apart), the run's wall time (s) and how many instances served it. The per-sample and
    per-batch figures are compact ``array("q")`` in a real run: a 600 s run at 40k QPS has 24M
    of each (a list of ints would take GBs)."""

    summary: LoadgenSummary
    log_dir: Path
    latencies_ns: MutableSequence[int] = field(default_factory=lambda: array("q"))
    requests: int = 0
    errors: int = 0
    error_texts: list[str] = field(default_factory=list)
    batch_sizes: MutableSequence[int] = field(default_factory=lambda: array("q"))
    service_ns: Sequence[int] = field(default_factory=lambda: array("q"))
    failed_ns: Sequence[int] = field(default_factory=lambda: array("q"))
    wall_s: float = 0.0
    instances: int = 1

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @cached_property
    def service_ms_p50(self) -> float | None:
        """Median service time of a successful batch under this load (ms; an HTTP target's
        includes the network); None when none succeeded. Computed once, after the run (a long
        run has millions of batches)."""
        return float(np.median(self.service_ns)) / 1e6 if self.service_ns else None

    @cached_property
    def busy(self) -> float | None:
        """The share of the instances' time spent serving (utilization, 0-1): the summed
        service time of every batch, failed ones included, over wall time x instances. None
        without a wall time."""
        if self.wall_s <= 0:
            return None
        served = sum(self.service_ns) + sum(self.failed_ns)
        return min(1.0, served / 1e9 / (self.wall_s * self.instances))


def test_settings(lg: Any, run: LoadRun) -> Any:
    """LoadGen ``TestSettings`` for ``run``: the scenario, performance mode, the calibrated
    expectations and the latency bound at the 99th percentile.

    Full mode starts from the ``mlperf.conf`` that LoadGen embeds (``FromConfig`` with
    ``conf_type=0``: the 600 s minimum duration of every scenario, multi-stream's 662 queries,
    the official RNG seeds, the target percentiles): its ``*`` entries only, read for a model name
    no MLPerf benchmark uses (an MLPerf model's own entries, e.g. resnet50's sample count, do
    not fit the harness's query sample library); only the calibrated
    expectations and the suite's latency bound (a per-model choice, MLPerf's ``user.conf``
    part) are set over it. Short mode lowers the minimum duration and query count, bounds the
    duration, and uses ``run.seed``.
    """
    s = lg.TestSettings()
    name = LOADGEN_SCENARIOS[run.scenario]
    s.scenario = getattr(lg.TestScenario, name)
    if run.serving.compliant and s.FromConfig("", CONF_MODEL, name, 0) != 0:
        raise MeasurementError(f"LoadGen could not read its embedded mlperf.conf for {name}")
    s.mode = lg.TestMode.PerformanceOnly
    ns = lambda ms: max(1, int(ms * 1e6))  # noqa: E731
    s.single_stream_expected_latency_ns = ns(run.expected_latency_ms)
    # Target percentiles stay MLPerf's: 90th for single-stream (its early-stopping estimate is
    # a p90, kept in the row's details), 99th for multi-stream and server.
    s.multi_stream_expected_latency_ns = ns(run.expected_latency_ms)
    s.multi_stream_samples_per_query = run.serving.samples_per_query
    s.offline_expected_qps = max(run.expected_qps, 1.0)
    s.server_target_qps = run.target_qps
    s.server_target_latency_ns = ns(run.serving.latency_bound_ms)
    s.server_target_latency_percentile = 0.99
    if not run.serving.compliant:
        s.schedule_rng_seed = s.sample_index_rng_seed = s.qsl_rng_seed = run.seed
        s.min_duration_ms = run.serving.short_duration_ms
        s.max_duration_ms = run.serving.short_duration_ms * SHORT_MAX_DURATION_FACTOR
        if run.scenario == "server":  # room for the query count at the target rate, twice over
            needed = 2000.0 * run.serving.short_query_count / max(run.target_qps, 0.1)
            s.max_duration_ms = max(s.max_duration_ms, int(needed))
        s.min_query_count = run.serving.short_query_count
    return s


def run_loadgen(
    run: LoadRun,
    instances: Sequence[Infer],
    knobs: ServingKnobs,
    samples: Sequence[Mapping[str, np.ndarray]],
    log_dir: Path,
) -> RunRecord:
    """Run LoadGen once over ``instances`` behind a batcher of ``knobs``; ``samples`` is the
    query sample library (all of it is the performance set). The logs go to ``log_dir``.

    Blocks until LoadGen has every issued sample back; each instance's own bounds (a request
    timeout, the case's worker timeout) bound that. Raises MeasurementError when LoadGen
    writes no result.
    """
    lg = loadgen()
    log_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(None, log_dir, instances=len(instances))  # type: ignore[arg-type]
    issued: dict[int, int] = {}
    lock = threading.Lock()

    def done(requests: Sequence[Request], error: str | None) -> None:
        now = time.monotonic_ns()
        with lock:
            for r in requests:
                start = issued.pop(r.tag, now)
                if error is None:
                    record.latencies_ns.append(now - start)
            record.requests += len(requests)
            record.batch_sizes.append(len(requests))
            if error is not None:
                record.errors += len(requests)
                if error not in record.error_texts and len(record.error_texts) < 3:
                    record.error_texts.append(error)
        lg.QuerySamplesComplete([lg.QuerySampleResponse(r.tag, 0, 0) for r in requests])

    batcher = DynamicBatcher(instances, knobs, done)

    def issue(query_samples: Any) -> None:
        now = time.monotonic_ns()
        with lock:
            for q in query_samples:
                issued[q.id] = now
        batcher.submit([Request(q.id, samples[q.index], now) for q in query_samples])

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(len(samples), len(samples), lambda _: None, lambda _: None)
    out = lg.LogOutputSettings()
    out.outdir = str(log_dir)
    out.copy_summary_to_stdout = False
    log = lg.LogSettings()
    log.log_output = out
    log.enable_trace = False
    start = time.monotonic()
    try:
        lg.StartTestWithLogSettings(sut, qsl, test_settings(lg, run), log)
    finally:
        batcher.stop()
        record.wall_s = time.monotonic() - start
        # copies: an instance still busy after stop() may append to the batcher's arrays
        record.service_ns = array("q", batcher.service_ns)
        record.failed_ns = array("q", batcher.failed_ns)
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    detail = log_dir / "mlperf_log_detail.txt"
    if not detail.is_file():
        raise MeasurementError(f"LoadGen wrote no detail log in {log_dir}")
    record.summary = summarize(parse_detail(detail.read_text(encoding="utf-8")))
    return record
