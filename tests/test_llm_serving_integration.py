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

REQUESTS, GAP_S, PROMPT, TOKENS = 12, 1.5, 128, 16  # one request at a time: low load


def _ttfts(backend: object, clock: PerfCounterClock) -> list[float]:
    planned = [PlannedRequest(i, i * GAP_S, PROMPT, TOKENS) for i in range(REQUESTS)]
    prompts = load_prompts(_model_dir(), planned, 0)
    warm = [PlannedRequest(i, 0.0, PROMPT, 4) for i in range(2)]
    run_load(backend, warm, prompts, clock, 60.0)  # type: ignore[arg-type]
    _, records = run_load(backend, planned, prompts, clock, 60.0)  # type: ignore[arg-type]
    assert all(r.ok for r in records), [r.error for r in records]
    return [r.ttft_ms() or 0.0 for r in records]


def test_http_ttft_agrees_with_the_same_engine_in_process_at_low_load() -> None:
    pin_cpus(1)
    clock = PerfCounterClock()
    engine = backend_class("openvino")()
    engine.check()
    from harness.optimize.artifacts import cache_root

    engine.load_server(_model_dir(), GenerationSettings(  # type: ignore[attr-defined]
        threads=1, batch_size=4, max_length=PROMPT + TOKENS, weight_bits=8,
        cache_dir=cache_root()))  # fmt: skip
    try:
        local = _ttfts(engine, clock)
    finally:
        engine.close()
    with llm_server("--threads", "1", "--max-num-seqs", "4") as url:
        remote = _ttfts(client(url), clock)
    ratio = float(np.median(remote) / np.median(local))
    report = os.environ.get("INFRABENCH_TTFT_REPORT")
    if report:
        Path(report).write_text(f"in-process {local}\nhttp {remote}\nratio {ratio}\n")
    print(f"TTFT p50 in process {np.median(local):.1f} ms, http {np.median(remote):.1f} ms, "
          f"ratio {ratio:.3f}")  # fmt: skip
    assert 0.95 <= ratio <= 1.05
