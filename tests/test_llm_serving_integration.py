"""End to end on the real smollm2-135m (int8 weights) with openvino-genai's continuous batching:
the same low-load request sequence in process and through the OpenAI server over http, side by
side in one run; their TTFT medians must agree within 5% (issue 14). Integration-marked: it
needs quiet CPUs (``tox -e integration``), and prints both figures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from harness.backend import GenerationSettings, backend_class
from harness.execute import pin_cpus
from harness.measure.clock import PerfCounterClock
from harness.scenarios.arrivals import PlannedRequest
from harness.scenarios.llm_serve import load_prompts, run_load
from tests.test_llm_serving_http import _model_dir, client, llm_server

pytestmark = pytest.mark.integration

REQUESTS, WARMUP, PROMPT, TOKENS = 16, 2, 128, 16  # one request at a time: low load


def _one(backend: object, planned: PlannedRequest, prompts: list, clock: PerfCounterClock  # type: ignore[type-arg]
         ) -> float:  # fmt: skip
    (record,) = run_load(backend, [planned], prompts, clock, 60.0)[1]  # type: ignore[arg-type]
    assert record.ok, record.error
    return record.ttft_ms() or 0.0


def test_http_ttft_agrees_with_the_same_engine_in_process_at_low_load() -> None:
    """One request at a time, alternating in process and over http in ABBA order (the same
    prompt in a pair, a different one per pair), so both see the same machine load."""
    from harness.optimize.artifacts import cache_root

    pin_cpus(1)
    clock = PerfCounterClock()
    engine = backend_class("openvino")()
    engine.check()
    engine.load_server(_model_dir(), GenerationSettings(  # type: ignore[attr-defined]
        threads=1, batch_size=4, max_length=PROMPT + TOKENS, weight_bits=8,
        cache_dir=cache_root()))  # fmt: skip
    planned = [PlannedRequest(i, 0.0, PROMPT, TOKENS) for i in range(REQUESTS + WARMUP)]
    prompts = load_prompts(_model_dir(), planned, 0)
    local: list[float] = []
    remote: list[float] = []
    try:
        with llm_server("--threads", "1", "--max-num-seqs", "4") as url:
            http = client(url)
            try:
                for p in planned:  # ABBA order: neither side always goes first
                    if p.index % 2:
                        remote_first = _one(http, p, prompts, clock)
                        pair = (_one(engine, p, prompts, clock), remote_first)
                    else:
                        pair = (_one(engine, p, prompts, clock), _one(http, p, prompts, clock))
                    if p.index >= WARMUP:
                        local.append(pair[0])
                        remote.append(pair[1])
            finally:
                http.close()
    finally:
        engine.close()
    ratio = float(np.median(remote) / np.median(local))
    report = os.environ.get("INFRABENCH_TTFT_REPORT")
    if report:
        Path(report).write_text(f"in-process {local}\nhttp {remote}\nratio {ratio}\n")
    print(f"TTFT p50 in process {np.median(local):.1f} ms, http {np.median(remote):.1f} ms, "
          f"ratio {ratio:.3f}")  # fmt: skip
    assert 0.95 <= ratio <= 1.05
