"""What a load scenario measured, raw, as it travels from the worker to ``finalize``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.scenarios.goodput import Objectives, RequestRecord


@dataclass(frozen=True)
class LoadMeasurement:
    """One case's load scenario. Latencies in ms, rates per second.

    percentiles:  LoadGen's latency percentiles of the reported run (percentile -> ms).
    target_qps:   the server's target (the highest passing one after a search), offline's
                  expected QPS; None for single/multi-stream.
    valid:        LoadGen's VALID; ``reasons`` why not (and short mode's non-compliance).
    goodput_rps:  completed requests per second that met the latency bound (server) or
                  completed without error (other scenarios).
    requests, errors: requests the SUT served in the reported run, and how many failed.
    early_stop:   every early-stopping estimate LoadGen gave, percentile -> ms (single-stream's
                  is the p90, as MLPerf asks).
    service_ms_p50: the median time a batch spent in the runtime during the reported run (its
                  service time under this load; calibration's ``sample_ms`` is back to back).
    busy:         the instances' utilization in that run (service time / wall time, 0-1).
    probes:       the server search's runs (target, achieved, p50, p99, passed, error rate).
    calibration:  what the calibration measured and the expectations LoadGen was given.
    """

    scenario: str
    compliant: bool
    latency_bound_ms: float | None
    target_qps: float | None
    achieved_qps: float | None
    valid: bool
    reasons: tuple[str, ...]
    early_stop_p99_ms: float | None
    early_stop: dict[float, float]
    percentiles: dict[float, float]
    mean_ms: float | None
    query_count: int | None
    goodput_rps: float | None
    requests: int
    errors: int
    error_texts: tuple[str, ...] = ()
    knobs: dict[str, Any] = field(default_factory=dict)
    mean_batch: float | None = None
    service_ms_p50: float | None = None
    busy: float | None = None
    probes: tuple[dict[str, Any], ...] = ()
    search_stop: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    log_dir: str = ""

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class LlmLoadRaw:
    """One ``llm-server`` rate point, raw: every request as the harness clock saw it.

    offered_rps:  the arrival process's mean rate; ``start_ns``: the load's origin (the first
                  arrival) on the same clock as the records.
    records:      every request sent, in arrival order (failed ones with their reason).
    objectives:   the TTFT and TPOT objectives goodput counts (ms).
    load:         how the load was made (burstiness, duration, request cap, timeout, seed,
                  length ratio) and what the engine was told (max_num_seqs), for the details.
    """

    offered_rps: float
    start_ns: int
    records: tuple[RequestRecord, ...]
    objectives: Objectives
    attainment_goal: float
    load: dict[str, Any] = field(default_factory=dict)
