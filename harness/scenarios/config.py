"""The suite's ``[serving]`` table and the serving knobs one case carries.

Scenario names are MLPerf Inference's (LoadGen ``TestScenario``): ``single-stream`` (one query
of one sample at a time, the next when it completes), ``multi-stream`` (queries of
``samples_per_query`` samples, the next when it completes), ``offline`` (every sample in one
query; throughput) and ``server`` (single-sample queries arriving by a Poisson process at a
target QPS; the p99 latency must meet ``latency_bound_ms``). ``llm-server`` is not LoadGen's:
generation requests arriving by a Poisson or gamma process at one request rate per case,
served by an engine with continuous batching (or a server behind the ``http`` target); per
request TTFT, TPOT and end-to-end latency, and goodput under TTFT and TPOT objectives
(:mod:`harness.scenarios.llm_serve`).
"""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS = ("single-stream", "multi-stream", "offline", "server", "llm-server")
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
    mode:             ``full``: the mlperf.conf LoadGen embeds (600 s minimum duration, query
                      counts, seeds; the row may be VALID; the server search's probes stay short
                      and a full run confirms 90% of their best QPS; a miss is retried at a
                      rate fitted to it while ``timeout_s`` has room, at most 4 runs);
                      ``short``: ``short_duration_ms`` and ``short_query_count`` instead, and
                      the row says it is not MLPerf-compliant.
    latency_bound_ms: the server scenario's p99 bound (MLPerf's ``target_latency``).
    search_budget_s:  wall-clock bound of the server max-QPS search (its short probes; full
                      mode's confirming runs come after it).
    samples_per_query: multi-stream query size (MLPerf's default is 8).

    ``llm-server`` (generation requests; see :mod:`harness.scenarios.arrivals` and
    :mod:`harness.scenarios.goodput`):

    burstiness:       shape of the gamma inter-arrival gaps: 1 is a Poisson process, below 1
                      burstier (gaps' CV = 1 / sqrt(burstiness)); vLLM's ``--burstiness``.
    ttft_slo_ms, tpot_slo_ms: the per-request objectives goodput counts. Defaults: 1 s and
                      100 ms, the targets of issue 14 for a chat-like service (vLLM and
                      DistServe leave them to the user; MLPerf's Llama-2 server uses 2 s / 200 ms).
    rate_duration_s:  arrivals are generated for this long at each rate (at most
                      ``max_requests`` of them); the load then drains.
    request_timeout_s: a request not finished this long after its arrival fails (counted, with
                      the reason) and is cancelled: the load ends by
                      ``rate_duration_s + request_timeout_s`` whatever the engine does.
    length_range_ratio: prompt and output lengths uniform within +-ratio of the case's
                      prompt_len and gen_len (0: fixed); vLLM's ``--random-range-ratio``.
    seed:             the arrival and length generator's seed (the same load on every run).
    attainment_goal:  the knee is the highest swept rate where at least this share of requests
                      met both objectives (DistServe's 90%).
    """

    loadgen: bool = False
    mode: str = "short"
    latency_bound_ms: float = 50.0
    search_budget_s: float = 60.0
    samples_per_query: int = 8
    short_duration_ms: int = 1000
    short_query_count: int = 64
    burstiness: float = 1.0
    ttft_slo_ms: float = 1000.0
    tpot_slo_ms: float = 100.0
    rate_duration_s: float = 20.0
    max_requests: int = 64
    request_timeout_s: float = 60.0
    length_range_ratio: float = 0.0
    seed: int = 0
    attainment_goal: float = 0.9

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
    request_rate:       ``llm-server``: the offered load, requests per second; there
                        ``max_batch_size`` is the engine scheduler's ``max_num_seqs`` (in-process
                        engines; a server behind the ``http`` target schedules by its own).
    """

    instances: int = 1
    max_batch_size: int = 1
    max_queue_delay_ms: float = 0.0
    request_rate: float | None = None

    @property
    def label(self) -> str:
        """Short text for a case id and a chart legend, e.g. ``i2-mb8-d2ms``, ``mb8-r2rps``."""
        if self.request_rate is not None:
            return f"mb{self.max_batch_size}-r{self.request_rate:g}rps"
        delay = f"{self.max_queue_delay_ms:g}"
        return f"i{self.instances}-mb{self.max_batch_size}-d{delay}ms"
