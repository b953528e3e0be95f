"""torch-cuda on a real NVIDIA GPU (tiny-mlp: the smallest model that exercises the path).

Every test here carries the ``gpu`` marker and is skipped, with the reason, where torch sees no
CUDA device (CI, the CPU development machines).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from harness.backend import BackendSettings, availability
from harness.case import Case, CaseSettings
from harness.measure.timing import TimingPolicy
from harness.models import get_model
from harness.optimize.artifacts import Artifact, build, cache_root
from harness.runner import measure_here

REASON = availability("torch-cuda")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"{REASON}")]
POLICY = TimingPolicy(budget_s=0.3, warmup_max_s=0.3, min_samples=20)


@pytest.fixture(scope="module")
def artifact() -> Artifact:
    return build("tiny-mlp", "fp32", cache_root())


def _measure(artifact: Artifact, variant: str, **options: Any) -> Any:
    case = Case(model="tiny-mlp", variant=variant, backend="torch-cuda", batch_size=4,
                seq_len=None, threads=1, device="cuda", options=options,
                settings=CaseSettings(timing=POLICY))  # fmt: skip
    row, samples = measure_here("r", case, artifact, artifact)
    assert row.status == "ok", row.reason
    assert row.n_samples == len(samples) >= POLICY.min_samples
    return row


@pytest.mark.parametrize("variant", ["fp32", "fp16", "bf16"])
def test_precisions_run_and_keep_fidelity(artifact: Artifact, variant: str) -> None:
    row = _measure(artifact, variant)
    assert row.executed_precision == variant
    assert row.fidelity_ok, row.fidelity_ratio
    assert row.device_mem_mb is not None and row.device_mem_mb > 0
    assert row.latency_ms_p50 is not None and row.latency_ms_p50 > 0
    details = json.loads(row.details)
    assert details["host_device_copies_timed"] is False and details["cuda_graphs"] is False


def test_cuda_graphs_replay_with_the_same_outputs(artifact: Artifact) -> None:
    row = _measure(artifact, "fp32", cuda_graphs=True)
    assert json.loads(row.details)["cuda_graphs"] is True
    assert row.compile_s is not None and row.compile_s > 0  # the capture
    assert row.fidelity_ok and row.fidelity_ratio == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compile_modes_report_compile_time(artifact: Artifact, mode: str) -> None:
    row = _measure(artifact, "fp16", compile=mode)
    assert row.compile_s is not None and row.compile_s > 0
    assert json.loads(row.details)["compile"] == mode and row.fidelity_ok


def test_event_time_lies_within_the_host_time_of_the_same_run(artifact: Artifact) -> None:
    from backends.torch_cuda import TorchCudaBackend

    model = get_model("tiny-mlp")
    inputs = model.example_inputs(4, None)
    backend = TorchCudaBackend()
    backend.check()
    backend.load(artifact, BackendSettings(
        threads=1, device="cuda", input_names=tuple(model.input_names),
        output_names=tuple(model.output_names), example_inputs=inputs,
    ))  # fmt: skip
    backend.prepare(inputs)
    for _ in range(20):
        start = time.perf_counter_ns()
        own = backend.run()
        backend.synchronize()
        host = time.perf_counter_ns() - start
        assert own is not None and 0 < own <= host
    backend.close()
