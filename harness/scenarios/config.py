"""The suite's ``[serving]`` table and the serving knobs one case carries.

Scenario names are MLPerf Inference's (LoadGen ``TestScenario``): ``single-stream`` (one query
of one sample at a time, the next when it completes), ``multi-stream`` (queries of
``samples_per_query`` samples, the next when it completes), ``offline`` (every sample in one
query; throughput) and ``server`` (single-sample queries arriving by a Poisson process at a
target QPS; the p99 latency must meet ``latency_bound_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS = ("single-stream", "multi-stream", "offline", "server")
LOADGEN_SCENARIOS = {
    "single-stream": "SingleStream",
    "multi-stream": "MultiStream",
    "offline": "Offline",
    "server": "Server",
}
MODES = ("short", "full")


@dataclass(frozen=True)
class ServingSettings:
    """How load scenarios run (the suite's ``[serving]`` table). Times in ms unless named.

    loadgen:          drive ``single-stream`` through LoadGen too (the other scenarios always
                      are); false keeps the harness's own adaptive timing loop for it.
    mode:             ``full``: MLPerf's 600 s minimum duration and LoadGen's query counts
                      (the row may be VALID); ``short``: ``short_duration_ms`` and
                      ``short_query_count`` instead, and the row says it is not MLPerf-compliant.
    latency_bound_ms: the server scenario's p99 bound (MLPerf's ``target_latency``).
    search_budget_s:  wall-clock bound of the server max-QPS search (all its LoadGen runs).
    samples_per_query: multi-stream query size (MLPerf's default is 8).
    """

    loadgen: bool = False
    mode: str = "short"
    latency_bound_ms: float = 50.0
    search_budget_s: float = 60.0
    samples_per_query: int = 8
    short_duration_ms: int = 1000
    short_query_count: int = 64

    @property
    def compliant(self) -> bool:
        return self.mode == "full"


@dataclass(frozen=True)
class ServingKnobs:
    """Resource scheduling for one case on one machine.

    instances:          model instances (each its own backend: an ORT session, an OpenVINO
                        compiled model, an HTTP connection to a target), each with the case's
                        ``threads`` (threads per instance).
    max_batch_size:     the dynamic batcher's largest batch (1: no batching).
    max_queue_delay_ms: how long the batcher holds the first queued request waiting for more.
    """

    instances: int = 1
    max_batch_size: int = 1
    max_queue_delay_ms: float = 0.0

    @property
    def label(self) -> str:
        """Short text for a case id and a chart legend, e.g. ``i2-mb8-d2ms``."""
        delay = f"{self.max_queue_delay_ms:g}"
        return f"i{self.instances}-mb{self.max_batch_size}-d{delay}ms"
