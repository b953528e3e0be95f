"""GPU backends on a machine without a GPU: what can be checked with no CUDA, no TensorRT and no
onnxruntime-gpu (skip reasons, option validation, TensorRT's cache keys and precision rules, ONNX
Runtime's I/O binding on the CPU device, device memory reaching the row)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from backends.onnxruntime import OnnxRuntimeBackend, bind, missing_provider, provider_options
from backends.tensorrt import (
    UNVERIFIED,
    build_precision,
    engine_cache_key,
    quantization,
)
from backends.torch_cuda import TorchCudaBackend
from harness.backend import BackendSettings, ReportsDeviceMemory, availability
from harness.case import Case
from harness.cost import prices as default_prices
from harness.errors import BackendUnavailable, ConfigError
from harness.execute import Measurement
from harness.finalize import finalize
from harness.result import CaseResult
from harness.suite import load_suite
from tests.fakes import use_stand_in_cuda

SUITES = Path(__file__).resolve().parent.parent / "suites"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


needs_no_cuda = pytest.mark.skipif("_cuda()", reason="this machine has CUDA: see test_gpu_cuda.py")


@needs_no_cuda
def test_torch_cuda_is_a_skip_with_the_reason_here() -> None:
    reason = availability("torch-cuda")
    assert reason is not None
    assert "CPU-only build" in reason or "sees no CUDA device" in reason
    with pytest.raises(BackendUnavailable):
        TorchCudaBackend().check()


def test_tensorrt_missing_says_it_is_unverified() -> None:
    reason = availability("tensorrt")
    assert reason is not None and "tensorrt" in reason and UNVERIFIED in reason


def test_the_gpu_suite_validates_and_plans_on_cuda() -> None:
    from harness.plan import plan

    cases = plan(load_suite(SUITES / "gpu.toml"), auto_threads=2).cases
    assert {c.variant for c in cases} == {"fp32", "fp16", "bf16"}
    assert {c.batch_size for c in cases} == {1, 8, 64}
    assert {(c.backend, c.device) for c in cases} == {("torch-cuda", "cuda"), ("tensorrt", "cuda")}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[options.torch-cuda]\ncompile = "fast"', "options.torch-cuda.compile"),
        ('[options.torch-cuda]\ncuda_graphs = "yes"', "must be bool"),
        ('[options.torch-cuda]\ncuda_graphs = true\ncompile = "reduce-overhead"',
         "captures CUDA graphs itself"),
        ('[options.torch-cuda]\ncuda_graphs = true\ncompile = "max-autotune"',
         "captures CUDA graphs itself"),
        ("[options.tensorrt]\noptimization_level = 7", "0 to 5"),
        ("[options.tensorrt]\nworkspace_mb = 0", "must be positive"),
    ],
)  # fmt: skip
def test_bad_gpu_options_are_one_line_config_errors(
    write_suite: Any, table: str, message: str
) -> None:
    body = (
        'models = ["tiny-mlp"]\nbackends = ["torch-cuda", "tensorrt"]\n'
        'baseline = "torch-cuda/fp32"\n' + table
    )
    with pytest.raises(ConfigError, match=message) as caught:
        load_suite(write_suite(body))
    assert "\n" not in str(caught.value)


def test_graphs_with_the_default_compile_mode_are_accepted(write_suite: Any) -> None:
    body = """
        models = ["tiny-mlp"]
        backends = ["torch-cuda"]
        [options.torch-cuda]
        cuda_graphs = true
        compile = "default"
    """
    assert load_suite(write_suite(body)).options["torch-cuda"] == {
        "cuda_graphs": True, "compile": "default"
    }  # fmt: skip


# -- TensorRT: cache keys, precision rules, the graph's quantization -----------------------------

KEY = {
    "artifact_sha256": "a" * 64,
    "input_shapes": {"input_ids": (1, 128), "attention_mask": (1, 128)},
    "precision": "fp16",
    "gpu_model": "NVIDIA H200",
    "trt_version": "10.13.0",
}


def test_engine_cache_key_is_stable_and_order_free() -> None:
    again = {**KEY, "input_shapes": {"attention_mask": (1, 128), "input_ids": (1, 128)}}
    assert engine_cache_key(**KEY) == engine_cache_key(**again)
    assert len(engine_cache_key(**KEY)) == 64


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("artifact_sha256", "b" * 64),
        ("input_shapes", {"input_ids": (8, 128), "attention_mask": (8, 128)}),
        ("precision", "int8"),
        ("gpu_model", "NVIDIA H100 80GB HBM3"),
        ("trt_version", "10.14.1"),
    ],
)
def test_engine_cache_key_changes_with_what_the_engine_depends_on(field: str, value: Any) -> None:
    assert engine_cache_key(**{**KEY, field: value}) != engine_cache_key(**KEY)
    assert engine_cache_key(**KEY, options={"workspace_mb": 1024}) != engine_cache_key(**KEY)


def _graph(path: Path, ops: list[str]) -> Path:
    """A chain of single-input nodes (never run: only its op types are read)."""
    nodes, prev = [], "x"
    for i, op in enumerate(ops):
        nodes.append(helper.make_node(op, [prev], [f"t{i}"]))
        prev = f"t{i}"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 4])
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), str(path))
    return path


def test_quantization_is_read_from_the_graph(tmp_path: Path) -> None:
    assert quantization(_graph(tmp_path / "f.onnx", ["Relu"])) is None
    qdq = _graph(tmp_path / "q.onnx", ["QuantizeLinear", "DequantizeLinear", "Relu"])
    assert quantization(qdq) == "qdq"
    dynamic = _graph(tmp_path / "d.onnx", ["DynamicQuantizeLinear", "MatMulInteger"])
    assert quantization(dynamic) == "dynamic"


def test_build_precision_follows_tensorrts_rules() -> None:
    assert build_precision("fp16", None) == "fp16"
    assert build_precision("fp32", "qdq") == "int8"  # explicit quantization: no calibrator
    with pytest.raises(BackendUnavailable, match="explicit quantization"):
        build_precision("fp32", "dynamic")
    with pytest.raises(BackendUnavailable, match="QDQ"):
        build_precision("fp16", "qdq")


# -- ONNX Runtime: GPU providers and I/O binding --------------------------------------------------


def test_a_missing_gpu_provider_names_onnxruntime_gpu() -> None:
    reason = missing_provider("cuda", ["CPUExecutionProvider"])
    assert reason is not None and "CUDAExecutionProvider" in reason and "onnxruntime-gpu" in reason
    assert missing_provider("cpu", ["CPUExecutionProvider"]) is None


def test_tensorrt_provider_options_enable_fp16_and_the_engine_cache(tmp_path: Path) -> None:
    options = provider_options("tensorrt", "fp16", tmp_path)
    assert options["trt_fp16_enable"] == "True"
    assert Path(options["trt_engine_cache_path"]) == tmp_path / "onnxruntime-trt"
    assert provider_options("cuda", "fp32", tmp_path) == {"device_id": "0"}
    assert provider_options("cpu", "fp32", None) == {}


def _mlp(path: Path) -> Path:
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.arange(12, dtype=np.float32))
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [w],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_io_binding_gives_the_same_outputs_as_run(tmp_path: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(_mlp(tmp_path / "m.onnx")),
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)}
    binding = bind(session, feeds, "cpu")
    session.run_with_iobinding(binding)
    np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], session.run(None, feeds)[0])


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_onnxruntime_gpu_providers_skip_without_onnxruntime_gpu(
    tmp_path: Path, provider: str
) -> None:
    import onnxruntime as ort

    if f"{'CUDA' if provider == 'cuda' else 'Tensorrt'}ExecutionProvider" in (
        ort.get_available_providers()
    ):
        pytest.skip(f"this onnxruntime has the {provider} provider")
    artifact = SimpleNamespace(onnx_path=_mlp(tmp_path / "m.onnx"), sha256="0" * 64)
    settings = BackendSettings(threads=1, options={"execution_provider": provider})
    backend = OnnxRuntimeBackend()
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        backend.load(artifact, settings)  # type: ignore[arg-type]


def test_the_cpu_provider_reports_no_binding(tmp_path: Path) -> None:
    artifact = SimpleNamespace(onnx_path=_mlp(tmp_path / "m.onnx"), sha256="0" * 64)
    backend = OnnxRuntimeBackend()
    backend.load(artifact, BackendSettings(threads=1))  # type: ignore[arg-type]
    backend.prepare({"x": np.ones((1, 4), np.float32)})
    backend.run()
    assert backend.report() == {
        "execution_provider": "CPUExecutionProvider",
        "io_binding": False,
        "host_device_copies_timed": None,
    }


# -- Device memory reaches the row -----------------------------------------------------------------


def test_gpu_backends_report_device_memory() -> None:
    from backends.tensorrt import TensorRtBackend

    assert isinstance(TorchCudaBackend(), ReportsDeviceMemory)
    assert isinstance(TensorRtBackend(), ReportsDeviceMemory)
    assert TorchCudaBackend().device_mem_mb() is None  # nothing loaded: nothing to say


def test_device_memory_and_compile_time_reach_the_row() -> None:
    case = Case(model="tiny-mlp", variant="fp16", backend="torch-cuda", batch_size=2,
                seq_len=None, threads=1, device="cuda")  # fmt: skip
    artifact = SimpleNamespace(sha256="0" * 64, size_mb=1.0, params_m=0.1)
    m = Measurement(
        samples_ns=(1_000_000,) * 40, warmup_iters=5, warmup_s=0.1, warmup_steady=True,
        stop_reason="ci", rel_ci_width=0.0, load_s=2.0, compile_s=1.5, first_inference_ms=3.0,
        model_mem_mb=10.0, peak_rss_mb=500.0, affinity="0", executed_precision="fp16",
        versions={"torch": "2.11.0"}, energy_note="",
        details={"cuda_graphs": True, "compile": "default"}, device_mem_mb=42.5,
    )  # fmt: skip
    row, _ = finalize("r", case, artifact, m, default_prices())  # type: ignore[arg-type]
    assert row.device_mem_mb == 42.5 and row.compile_s == 1.5
    assert row.hardware_class == "gpu-datacenter"
    assert json.loads(row.details or "{}")["cuda_graphs"] is True


# -- torch-cuda's own logic on a stand-in device -------------------------------------------------


@pytest.fixture
def stand_in_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    use_stand_in_cuda(monkeypatch)


@pytest.mark.usefixtures("stand_in_cuda")
@pytest.mark.parametrize("variant", ["fp32", "bf16"])
def test_torch_cuda_eager_path_times_with_events(variant: str) -> None:
    import torch

    from harness.models import get_model
    from harness.optimize.artifacts import build, cache_root

    model = get_model("tiny-mlp")
    inputs = model.example_inputs(4, None)
    backend = TorchCudaBackend()
    backend.check()
    settings = BackendSettings(
        threads=1,
        device="cuda",
        precision=variant,
        input_names=tuple(model.input_names),
        output_names=tuple(model.output_names),
        example_inputs=inputs,
    )
    assert backend.load(build("tiny-mlp", "fp32", cache_root()), settings) is None  # no compile
    backend.prepare(inputs)
    assert backend.run() == 250_000  # 0.25 ms between the events, in ns
    backend.synchronize()
    with torch.inference_mode():
        expected = model.build_torch()(torch.from_numpy(inputs["x"])).numpy()
    out = backend.outputs()["y"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=0.05 if variant == "bf16" else 1e-5, atol=0.05)
    assert backend.executed_precision() == variant
    assert backend.device_mem_mb() == 3.0
    facts = backend.report()
    assert facts["gpu"] == "Stand-in GPU (sm_90)" and facts["device_mem_reserved_mb"] == 4.0
    assert facts["host_device_copies_timed"] is False
    backend.close()


@pytest.mark.usefixtures("stand_in_cuda")
def test_torch_cuda_refuses_what_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    artifact = SimpleNamespace(torch_module=lambda: torch.nn.Linear(2, 2))
    names = {"input_names": ("x",), "output_names": ("y",)}
    with pytest.raises(BackendUnavailable, match="not 'cpu'"):
        TorchCudaBackend().load(artifact, BackendSettings(threads=1, **names))  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable, match="fp32, fp16 or bf16"):
        TorchCudaBackend().load(artifact, BackendSettings(  # type: ignore[arg-type]
            threads=1, device="cuda", precision="int8", **names))  # fmt: skip
    # an sm_75 card
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda: (7, 5))
    with pytest.raises(BackendUnavailable, match=r"compute capability 7\.5"):
        TorchCudaBackend().load(artifact, BackendSettings(  # type: ignore[arg-type]
            threads=1, device="cuda", precision="bf16", **names))  # fmt: skip


def test_onnxruntime_gpu_providers_plan_cases_on_the_gpu(write_suite: Any) -> None:
    from harness.plan import plan

    body = """
        models = ["tiny-mlp"]
        backends = ["onnxruntime", "torch-eager"]
        [options.onnxruntime]
        execution_provider = "{ep}"
    """
    devices = {
        ep: {c.backend: c.device for c in plan(load_suite(write_suite(body.format(ep=ep)))).cases}
        for ep in ("cpu", "cuda", "tensorrt")
    }
    assert devices["cpu"] == {"onnxruntime": "cpu", "torch-eager": "cpu"}
    assert devices["cuda"] == devices["tensorrt"] == {"onnxruntime": "cuda", "torch-eager": "cpu"}


@pytest.mark.usefixtures("stand_in_cuda")
def test_a_torch_cuda_case_goes_through_the_harness_on_the_stand_in() -> None:
    """execute -> finalize: the events' time is every sample, device memory reaches the row."""

    from harness.case import CaseSettings
    from harness.measure.timing import TimingPolicy
    from harness.optimize.artifacts import build, cache_root
    from harness.runner import measure_here

    artifact = build("tiny-mlp", "fp32", cache_root())
    case = Case(model="tiny-mlp", variant="fp32", backend="torch-cuda", batch_size=2,
                seq_len=None, threads=1, device="cuda",
                settings=CaseSettings(timing=TimingPolicy(budget_s=0.1, warmup_max_s=0.1,
                                                          min_samples=10)))  # fmt: skip
    row, samples = measure_here("r", case, artifact, artifact)  # conftest restores the affinity
    assert row.status == "ok", row.reason
    assert set(samples) == {0.25} and row.latency_ms_p50 == 0.25
    assert row.device_mem_mb == 3.0 and row.compile_s is None
    assert row.fidelity_ok and row.executed_precision == "fp32"
    assert row.hardware_class == "gpu-datacenter"
    details = json.loads(row.details or "{}")
    assert details["compile"] == "off" and details["timer"].startswith("cuda events")


def test_a_cpu_only_torch_or_a_missing_driver_skips_before_any_build(tmp_path: Path) -> None:
    """The runner asks this before building artifacts: a CPU-only torch is read from its
    version.py, a driver from its files, without importing torch."""
    from backends.torch_cuda import cpu_only_torch, no_nvidia_driver

    cpu, gpu = tmp_path / "cpu.py", tmp_path / "gpu.py"
    cpu.write_text("__version__ = '2.13.0+cpu'\ncuda: Optional[str] = None\n")
    gpu.write_text("__version__ = '2.11.0+cu130'\ncuda: Optional[str] = '13.0'\n")
    assert cpu_only_torch(cpu) == (
        "torch 2.13.0+cpu is a CPU-only build (torch.version.cuda is None)"
    )
    assert cpu_only_torch(gpu) is None and cpu_only_torch(None) is None
    (tmp_path / "nvidiactl").touch()
    assert no_nvidia_driver((tmp_path / "version", tmp_path / "nvidiactl")) is None
    assert "none of" in (no_nvidia_driver((tmp_path / "version",)) or "")


def test_the_runner_skips_an_unusable_gpu_backend_without_building(tmp_path: Path) -> None:
    from harness.backend import quick_unavailable_reason
    from harness.runner import CaseRunner
    from tests.fakes import ScriptedLauncher

    reason = quick_unavailable_reason("torch-cuda")
    if reason is None:
        pytest.skip("torch-cuda could be usable here")
    launcher = ScriptedLauncher()
    case = Case(model="llama-1b", variant="fp32", backend="torch-cuda", batch_size=1,
                seq_len=16, gen_len=4, threads=1, device="cuda")  # fmt: skip
    row = CaseRunner(tmp_path, launcher).prepare("r", case)
    assert isinstance(row, CaseResult) and row.status == "skipped" and row.reason == reason
    assert launcher.launched == [] and not any(tmp_path.iterdir())  # nothing built
