"""Generative statistics on synthetic timestamps: exact values, no clock."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import MeasurementError
from harness.generate.fidelity import (
    matching_prefix_len,
    next_token_agreement,
    perplexity,
    target_logprobs,
)
from harness.generate.stats import TokenTimes, generative_stats, kv_cache_bytes, per_request

MS = 1_000_000


def run(start_ms: float, ttft_ms: float, gaps_ms: list[float]) -> TokenTimes:
    tokens = [start_ms + ttft_ms]
    for gap in gaps_ms:
        tokens.append(tokens[-1] + gap)
    return TokenTimes(int(start_ms * MS), tuple(int(t * MS) for t in tokens))


def test_one_request_ttft_tpot_itl_e2e() -> None:
    ttft, tpot, gaps, e2e = per_request(run(100, 50, [10, 20, 30]))
    assert ttft == 50
    assert tpot == 20
    assert gaps.tolist() == [10, 20, 30]
    assert e2e == 110


def test_stats_over_requests_and_token_rates() -> None:
    runs = [run(0, 100 + i, [10.0] * 7) for i in range(5)]
    stats = generative_stats(runs, batch_size=2, prompt_len=64)
    assert stats.n_requests == 5 and stats.n_itl == 35
    assert stats.ttft[0].value == 102
    assert stats.tpot[0].value == pytest.approx(10)
    assert stats.decode_tokens_per_s == pytest.approx(200)  # 2 rows / 10 ms
    assert stats.prefill_tokens_per_s == pytest.approx(2 * 64 * 1000 / 102)
    assert stats.e2e_p50 == pytest.approx(172)
    assert stats.output_tokens_per_s == pytest.approx(2 * 8 * 1000 / 172)
    assert stats.ttft[2].value is None  # 5 samples: no p99 is invented
    assert stats.itl_p99.value is None


def test_itl_tail_sees_a_stall_the_mean_hides() -> None:
    runs = [run(0, 50, [10.0] * 99 + ([200.0] if i == 0 else [10.0])) for i in range(5)]
    stats = generative_stats(runs, batch_size=1, prompt_len=8)
    assert stats.itl_p99.value is not None and stats.itl_p99.value >= 10
    assert stats.itl_p99.ci_high == 200
    assert stats.tpot[0].value == pytest.approx(10)


def test_single_token_has_no_tpot() -> None:
    stats = generative_stats([run(0, 40, [])] * 3, batch_size=1, prompt_len=4)
    assert stats.tpot[0].value is None and stats.decode_tokens_per_s is None
    assert stats.ttft[0].value == 40


def test_refuses_bad_timestamps() -> None:
    with pytest.raises(MeasurementError, match="no generations"):
        generative_stats([], 1, 1)
    with pytest.raises(MeasurementError, match="different numbers"):
        generative_stats([run(0, 1, [1]), run(0, 1, [])], 1, 1)
    with pytest.raises(MeasurementError, match="backwards"):
        generative_stats([TokenTimes(10, (5,))], 1, 1)
    with pytest.raises(MeasurementError, match="no token"):
        generative_stats([TokenTimes(10, ())], 1, 1)


def test_kv_cache_bytes_smollm2_shape() -> None:
    # SmolLM2-135M: 30 layers, 3 KV heads of 64; 192 tokens, batch 1, fp32
    assert kv_cache_bytes(30, 3, 64, 192, 1, 4) == 2 * 30 * 3 * 64 * 192 * 4
    assert kv_cache_bytes(30, 3, 64, 192, 4, 1) == kv_cache_bytes(30, 3, 64, 192, 1, 4)
    with pytest.raises(ValueError, match="positive"):
        kv_cache_bytes(0, 3, 64, 1, 1, 4)


def test_fidelity_functions() -> None:
    assert next_token_agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError, match="shapes differ"):
        next_token_agreement(np.array([1]), np.array([1, 2]))
    uniform = np.zeros((3, 4))
    lp = target_logprobs(uniform, np.array([0, 1, 3]))
    assert np.allclose(lp, np.log(0.25))
    assert perplexity(lp) == pytest.approx(4.0)
    sure = np.array([[0.0, 100.0]])
    assert perplexity(target_logprobs(sure, np.array([1]))) == pytest.approx(1.0)
    assert matching_prefix_len(np.array([5, 6, 7]), np.array([5, 6, 8])) == 2
    assert matching_prefix_len(np.array([5, 6]), np.array([5, 6, 7])) == 2
