"""The harness's own overhead: its p50 against the runtimes' own timing, side by side.

* onnxruntime: a bare ``time.perf_counter`` loop around an identically configured session.
* openvino: OpenVINO's ``benchmark_app`` (f32, latency hint, same static shape and threads).

Rounds alternate harness / reference so that drift on a shared machine hits both alike; the
ratio of the medians over rounds must be within 3%.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from harness.case import Case, CaseSettings
from harness.environment import usable_cpus
from harness.measure.timing import TimingPolicy
from harness.models import get_model
from harness.optimize.artifacts import Artifact, build, cache_root
from harness.runner import measure_here

ROUNDS = 3
BATCH, SEQ = 1, 128
POLICY = TimingPolicy(min_samples=300, budget_s=8.0, warmup_max_s=5.0)


@pytest.fixture(scope="module")
def artifact() -> Artifact:
    return build("minilm-l6", "fp32", cache_root())


@pytest.fixture(autouse=True)
def _keep_affinity() -> Iterator[None]:
    allowed = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, allowed)


def harness_p50(artifact: Artifact, backend: str) -> float:
    case = Case("minilm-l6", "fp32", backend, BATCH, SEQ, threads=usable_cpus(),
                settings=CaseSettings(timing=POLICY))  # fmt: skip
    result, _ = measure_here("overhead", case, artifact)
    assert result.status == "ok", result.reason
    assert result.latency_ms_p50 is not None
    return result.latency_ms_p50


def bare_onnxruntime_p50(artifact: Artifact) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = usable_cpus()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        str(artifact.onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    feeds = get_model("minilm-l6").example_inputs(BATCH, SEQ)
    for _ in range(30):
        session.run(None, feeds)
    samples = []
    deadline = time.perf_counter() + POLICY.budget_s
    while time.perf_counter() < deadline and len(samples) < 400:
        start = time.perf_counter()
        session.run(None, feeds)
        samples.append(time.perf_counter() - start)
    return float(np.median(samples)) * 1000


def benchmark_app_p50(artifact: Artifact) -> float:
    exe = shutil.which("benchmark_app")
    if exe is None:
        pytest.skip("benchmark_app is not installed (it ships in the openvino wheel)")
    # benchmark_app is the one OpenVINO tool here that uses openvino_telemetry.
    subprocess.run(["opt_in_out", "--opt_out"], capture_output=True, check=False)
    out = subprocess.run(
        [exe, "-m", str(artifact.onnx_path), "-d", "CPU", "-hint", "latency",
         "-infer_precision", "f32", "-t", str(int(POLICY.budget_s)),
         "-shape", f"input_ids[{BATCH},{SEQ}],attention_mask[{BATCH},{SEQ}]"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    threads = re.search(r"INFERENCE_NUM_THREADS: (\d+)", out)
    assert threads and int(threads.group(1)) == usable_cpus(), "benchmark_app used other threads"
    median = re.search(r"Median:\s+([\d.]+) ms", out)
    assert median, out[-2000:]
    return float(median.group(1))


def side_by_side(ours: Callable[[], float], reference: Callable[[], float]) -> tuple[float, list]:
    rounds = [(ours(), reference()) for _ in range(ROUNDS)]
    ratio = statistics.median(o for o, _ in rounds) / statistics.median(r for _, r in rounds)
    return ratio, rounds


def _report(name: str, ratio: float, rounds: list, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        pairs = ", ".join(f"{o:.3f}/{r:.3f}" for o, r in rounds)
        print(f"\n{name}: harness/reference p50 ratio {ratio:.4f} (rounds, ms: {pairs})")


REFERENCES: dict[str, tuple[str, Callable[[Artifact], float]]] = {
    "onnxruntime": ("a bare perf_counter loop", bare_onnxruntime_p50),
    "openvino": ("benchmark_app", benchmark_app_p50),
}


@pytest.mark.parametrize("backend", list(REFERENCES))
def test_harness_p50_matches_the_runtimes_own_timing(
    backend: str, artifact: Artifact, capsys: pytest.CaptureFixture[str]
) -> None:
    name, reference = REFERENCES[backend]
    ratio, rounds = side_by_side(
        lambda: harness_p50(artifact, backend), lambda: reference(artifact)
    )
    _report(f"{backend} vs {name}", ratio, rounds, capsys)
    assert abs(ratio - 1) <= 0.03
