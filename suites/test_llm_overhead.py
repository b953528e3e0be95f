"""The harness's TTFT and TPOT against a bare loop around the same engine call, side by side.

Engine: openvino (OpenVINO GenAI ``LLMPipeline``, f32, the same converted IR and threads).
The bare loop calls ``pipe.generate`` with the same token-id prompts and a streamer that only
reads ``time.perf_counter_ns``; the harness runs the case through ``measure_here``. Rounds
alternate harness / bare so drift on a shared machine hits both alike; the ratio of the medians
over rounds must be within 3%. The engine's own ``perf_metrics`` are reported beside both, and the
harness's per-token cost (one clock read and a list append) must be under 1% of TPOT.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pytest

from harness.backend import GenerationSettings
from harness.case import Case, CaseSettings
from harness.environment import usable_cpus
from harness.generate.stats import TokenTimes, generative_stats
from harness.measure.clock import PerfCounterClock
from harness.measure.timing import TimingPolicy
from harness.models.causal_lm import prompts
from harness.optimize.artifacts import build, cache_root
from harness.runner import measure_here

pytestmark = pytest.mark.integration
ROUNDS = 3
PROMPT, GEN, GENERATIONS = 128, 32, 6
# One thread: on a 2-core machine shared with other work, a 2-thread pool waits at every barrier
# for a descheduled thread, which swamps what is being compared.
THREADS = 1


def bare_loop(model_dir: Path, threads: int) -> tuple[float, float, float, float]:
    """(TTFT p50, TPOT p50, engine TTFT, engine TPOT) in ms from a loop of pipe.generate."""
    from backends.openvino import OpenVinoBackend

    backend = OpenVinoBackend()
    backend.load_generator(model_dir, GenerationSettings(threads, 1, PROMPT + GEN,
                                                         cache_dir=cache_root()))  # fmt: skip
    batches = prompts(model_dir, "training", PROMPT, 1, GENERATIONS + 2)
    runs, engine_ttft, engine_tpot = [], [], []
    for index, prompt in enumerate(batches):
        stamps: list[int] = []
        start = time.perf_counter_ns()
        backend.generate(prompt, GEN, lambda s=stamps: s.append(time.perf_counter_ns()))
        if index >= 2:  # the harness's two warm-up generations
            runs.append(TokenTimes(start, tuple(stamps)))
            engine_ttft.append(backend.last_metrics.get_ttft().mean)
            engine_tpot.append(backend.last_metrics.get_tpot().mean)
    backend.close()
    stats = generative_stats(runs, 1, PROMPT)
    ttft, tpot = stats.ttft[0].value, stats.tpot[0].value
    assert ttft is not None and tpot is not None
    return ttft, tpot, statistics.median(engine_ttft), statistics.median(engine_tpot)


def per_token_cost_ns(n: int = 100_000) -> float:
    """ns of the harness's streamer work per token: one clock read and a list append."""
    clock, stamps = PerfCounterClock(), []
    start = time.perf_counter_ns()
    for _ in range(n):
        stamps.append(clock.now_ns())
    return (time.perf_counter_ns() - start) / n


def test_harness_matches_a_bare_loop_on_openvino_genai(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openvino_genai", reason='pip install "infrabench[llm]"')
    artifact = build("smollm2-135m", "fp32", cache_root())
    threads = min(THREADS, usable_cpus())
    policy = TimingPolicy(min_samples=GENERATIONS, budget_s=1e9)
    case = Case("smollm2-135m", "fp32", "openvino", 1, PROMPT, threads, gen_len=GEN,
                settings=CaseSettings(timing=policy))  # fmt: skip
    harness, bare = [], []
    for _ in range(ROUNDS):
        row, _ = measure_here("overhead", case, artifact)
        assert row.status == "ok", row.reason
        harness.append((row.ttft_ms_p50, row.tpot_ms_p50))
        bare.append(bare_loop(Path(artifact.directory), threads))
    h_ttft = statistics.median(h[0] for h in harness)
    h_tpot = statistics.median(h[1] for h in harness)
    b_ttft = statistics.median(b[0] for b in bare)
    b_tpot = statistics.median(b[1] for b in bare)
    e_ttft = statistics.median(b[2] for b in bare)
    e_tpot = statistics.median(b[3] for b in bare)
    cost_ms = per_token_cost_ns() / 1e6
    with capsys.disabled():
        print(f"\nopenvino-genai smollm2-135m fp32 p{PROMPT} g{GEN}, {ROUNDS} rounds:")
        print(f"  TTFT ms  harness {h_ttft:.2f}  bare {b_ttft:.2f}  engine {e_ttft:.2f}  "
              f"harness/bare {h_ttft / b_ttft:.3f}")  # fmt: skip
        print(f"  TPOT ms  harness {h_tpot:.2f}  bare {b_tpot:.2f}  engine {e_tpot:.2f}  "
              f"harness/bare {h_tpot / b_tpot:.3f}")  # fmt: skip
        print(f"  harness per-token cost {cost_ms * 1e3:.3f} us = {cost_ms / h_tpot:.5%} of TPOT")
    assert np.isclose(h_ttft, b_ttft, rtol=0.03)
    assert np.isclose(h_tpot, b_tpot, rtol=0.03)
    assert cost_ms < 0.01 * h_tpot
