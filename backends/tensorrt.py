"""tensorrt: an engine built by the TensorRT Python API from the same ONNX artifact.

UNVERIFIED: TensorRT cannot be installed on any machine this project was built on, so this
backend is written to the documented TensorRT 10 Python API (docs.nvidia.com/deeplearning/
tensorrt/latest/_static/python-api/) and has not been run; every row it produces says so in its
details, and its skip reason says so where TensorRT is missing. The pure parts (cache keys,
option and precision checks, reading the quantization of a graph) are tested.

Build: ``OnnxParser`` on the artifact's file into an explicit-batch network, one optimization
profile fixed at the case's shapes (min = opt = max), ``BuilderFlag.FP16`` / ``BF16`` for the
fp16 / bf16 variants, and for a QDQ graph (the ``int8-static`` artifact) ``BuilderFlag.INT8``:
explicit quantization, TensorRT takes the scales from the Q/DQ nodes and needs no calibrator.
A dynamically quantized graph (``int8-dynamic``: ``DynamicQuantizeLinear``) is refused.
Serialized engines are cached under ``cache_dir/tensorrt/<key>/engine.plan``, keyed by the
artifact's sha256, the input shapes, the build precision, the GPU model and the TensorRT version
(an engine is specific to all of these). ``compile_s`` is the build, or the engine file's
deserialization when it came from the cache (the details say which).

Run: device buffers are torch CUDA tensors bound with ``set_tensor_address``; ``prepare``
copies inputs in (untimed); ``run`` is ``execute_async_v3`` on a dedicated stream between two
CUDA events, waits on the end event and returns the elapsed ns (own clock).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.backend import Artifact, BackendSettings, Capabilities, staged
from harness.errors import BackendError, BackendUnavailable, ConfigError

UNVERIFIED = "unverified: written to the TensorRT 10 Python API, not run on any machine here"
PRECISIONS = ("fp32", "fp16", "bf16")
DEFAULT_WORKSPACE_MB = 4096
OPTIMIZATION_LEVELS = range(6)  # IBuilderConfig.builder_optimization_level: 0..5, default 3
ENGINE_FILE = "engine.plan"
_MIB = 2**20


def engine_cache_key(
    artifact_sha256: str,
    input_shapes: Mapping[str, tuple[int, ...]],
    precision: str,
    gpu_model: str,
    trt_version: str,
    options: Mapping[str, Any] | None = None,
) -> str:
    """The engine cache key: sha256 (hex) of everything an engine depends on. ``precision`` is
    the build precision (``fp32``, ``fp16``, ``bf16``, ``int8``); ``options`` the build options
    that change the engine (workspace, optimization level)."""
    parts = {
        "artifact": artifact_sha256,
        "shapes": {name: list(shape) for name, shape in sorted(input_shapes.items())},
        "precision": precision,
        "gpu": gpu_model,
        "tensorrt": trt_version,
        "options": dict(sorted((options or {}).items())),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def quantization(path: Path) -> str | None:
    """``qdq`` for an explicitly quantized graph (QuantizeLinear/DequantizeLinear pairs),
    ``dynamic`` for dynamic quantization (``DynamicQuantizeLinear``, integer MatMuls), else
    ``None``."""
    import onnx

    ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
    if ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}:
        return "dynamic"
    if {"QuantizeLinear", "DequantizeLinear"} <= ops:
        return "qdq"
    return None


def build_precision(runtime_precision: str, quant: str | None) -> str:
    """The precision the engine is built in; ``BackendUnavailable`` for what TensorRT cannot
    build from this graph."""
    if quant == "dynamic":
        raise BackendUnavailable(
            "tensorrt runs int8 only as explicit quantization (a QDQ graph: int8-static); "
            "this graph is dynamically quantized (DynamicQuantizeLinear)"
        )
    if quant == "qdq":
        if runtime_precision != "fp32":
            raise BackendUnavailable(
                f"tensorrt: {runtime_precision} on top of a QDQ int8 graph is not built here"
            )
        return "int8"
    if runtime_precision not in PRECISIONS:
        raise BackendUnavailable(
            f"tensorrt builds fp32, fp16, bf16 or int8, not {runtime_precision}"
        )
    return runtime_precision


def check_options(options: Mapping[str, Any], where: str) -> None:
    """One-line ``ConfigError`` for an out-of-range workspace or optimization level."""
    workspace = options.get("workspace_mb", DEFAULT_WORKSPACE_MB)
    if workspace <= 0:
        raise ConfigError(
            f"{where}: options.tensorrt.workspace_mb must be positive, got {workspace}"
        )
    level = options.get("optimization_level", 3)
    if level not in OPTIMIZATION_LEVELS:
        raise ConfigError(
            f"{where}: options.tensorrt.optimization_level must be 0 to 5 "
            f"(IBuilderConfig.builder_optimization_level), got {level}"
        )


class TensorRtBackend:
    name: ClassVar[str] = "tensorrt"
    capabilities: ClassVar[Capabilities] = Capabilities(
        consumes="onnx",
        devices=("cuda",),
        own_clock=True,
        options={"workspace_mb": int, "optimization_level": int},
        runtime_modules=("tensorrt", "torch"),
        install_hint=f"pip install tensorrt and a CUDA build of torch; {UNVERIFIED}",
    )

    def __init__(self) -> None:
        self._trt: Any = None
        self._torch: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._start: Any = None
        self._end: Any = None
        self._inputs: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}
        self._output_names: tuple[str, ...] = ()
        self._precision = "fp32"
        self._facts: dict[str, Any] = {"verification": UNVERIFIED}

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        check_options(options, where)

    def check(self) -> None:
        try:
            import tensorrt  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(f"tensorrt cannot be imported ({exc}); {UNVERIFIED}") from None
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable(f"torch (the buffers' allocator) is missing: {exc}") from None
        if not torch.cuda.is_available():
            raise BackendUnavailable(f"torch {torch.__version__} sees no CUDA device; {UNVERIFIED}")

    def versions(self) -> dict[str, str]:
        import tensorrt as trt
        import torch

        return {"tensorrt": trt.__version__, "torch": torch.__version__,
                "cuda": str(torch.version.cuda)}  # fmt: skip

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        import tensorrt as trt
        import torch

        if not settings.device.startswith("cuda"):
            raise BackendUnavailable(f"tensorrt runs on a CUDA device, not {settings.device!r}")
        check_options(settings.options, "tensorrt")
        self._trt, self._torch = trt, torch
        self._precision = build_precision(settings.precision, quantization(artifact.onnx_path))
        gpu = torch.cuda.get_device_name()
        build_options = {
            "workspace_mb": int(settings.options.get("workspace_mb", DEFAULT_WORKSPACE_MB)),
            "optimization_level": int(settings.options.get("optimization_level", 3)),
        }
        key = engine_cache_key(artifact.sha256, settings.input_shapes, self._precision, gpu,
                               trt.__version__, build_options)  # fmt: skip
        logger = trt.Logger(trt.Logger.WARNING)
        started = time.perf_counter()
        cached = settings.cache_dir / "tensorrt" / key if settings.cache_dir else None
        if cached is not None and (cached / ENGINE_FILE).is_file():
            plan, self._facts["engine_cache"] = (cached / ENGINE_FILE).read_bytes(), "hit"
        else:
            plan = self._build(trt, logger, artifact.onnx_path, settings, build_options)
            self._facts["engine_cache"] = "built" if cached is None else "built and stored"
            if cached is not None:
                with staged(cached, ENGINE_FILE) as stage:
                    (stage / ENGINE_FILE).write_bytes(plan)
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if self._engine is None:
            raise BackendError("TensorRT could not deserialize the engine (see its log)")
        compile_s = time.perf_counter() - started
        self._facts.update(engine_key=key, engine_mb=len(plan) / _MIB, precision=self._precision)
        self._bind(settings)
        return compile_s

    def _build(self, trt: Any, logger: Any, path: Path, settings: BackendSettings,
               options: Mapping[str, int]) -> bytes:  # fmt: skip
        """A serialized engine for ``path`` at the case's shapes and precision."""
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT's ONNX parser refused the graph: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options["workspace_mb"] * _MIB)
        config.builder_optimization_level = options["optimization_level"]
        flag = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8"}.get(self._precision)
        if flag is not None:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            name = network.get_input(i).name
            shape = tuple(settings.input_shapes[name])
            profile.set_shape(name, shape, shape, shape)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError("TensorRT could not build an engine from the graph (see its log)")
        return bytes(serialized)

    def _bind(self, settings: BackendSettings) -> None:
        """Device buffers for every I/O tensor at the case's shapes, bound to the context."""
        trt, torch = self._trt, self._torch
        self._context = context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for name in inputs:
            context.set_input_shape(name, tuple(settings.input_shapes[name]))
        for name in names:
            dtype = _torch_dtype(torch, trt, self._engine.get_tensor_dtype(name))
            shape = tuple(context.get_tensor_shape(name))
            buffer = torch.empty(shape, dtype=dtype, device="cuda")
            context.set_tensor_address(name, buffer.data_ptr())
            (self._inputs if name in inputs else self._outputs)[name] = buffer
        self._output_names = settings.output_names or tuple(self._outputs)
        self._stream = torch.cuda.Stream()
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        torch = self._torch
        for name, buffer in self._inputs.items():
            array = np.ascontiguousarray(inputs[name])
            if tuple(array.shape) != tuple(buffer.shape):
                raise BackendError(
                    f"tensorrt engine is built for {name} {tuple(buffer.shape)}, got {array.shape}"
                )
            buffer.copy_(torch.from_numpy(array).to(buffer.dtype))
        torch.cuda.synchronize()

    def run(self) -> int | None:
        """``execute_async_v3`` between two CUDA events on the engine's stream; waits for the
        end event and returns the elapsed ns between them."""
        self._start.record(self._stream)
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise BackendError("TensorRT execute_async_v3 reported a failure")
        self._end.record(self._stream)
        self._end.synchronize()
        return round(self._start.elapsed_time(self._end) * 1e6)

    def synchronize(self) -> None:
        self._end.synchronize()

    def outputs(self) -> dict[str, np.ndarray]:
        engine_names = list(self._outputs)
        return {
            name: self._outputs[engine].float().cpu().numpy()
            for name, engine in zip(self._output_names, engine_names, strict=False)
        }

    def executed_precision(self) -> str | None:
        return self._precision

    def device_mem_mb(self) -> float | None:
        """Engine's device memory (``device_memory_size_v2``, TensorRT 10) plus the I/O
        buffers, in MiB."""
        if self._engine is None:
            return None
        buffers = sum(b.numel() * b.element_size() for b in (*self._inputs.values(),
                                                             *self._outputs.values()))  # fmt: skip
        return (self._engine.device_memory_size_v2 + buffers) / _MIB

    def report(self) -> dict[str, Any]:
        return {**self._facts, "timer": "cuda events around execute_async_v3",
                "host_device_copies_timed": False}  # fmt: skip

    def close(self) -> None:
        self._context = self._engine = None
        self._inputs, self._outputs = {}, {}


def _torch_dtype(torch: Any, trt: Any, dtype: Any) -> Any:
    """The torch dtype of a TensorRT ``DataType`` (names as in ``tensorrt.DataType``)."""
    table = {
        "FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16,
        "INT8": torch.int8, "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool,
        "UINT8": torch.uint8,
    }  # fmt: skip
    name = getattr(dtype, "name", str(dtype).rpartition(".")[2])
    if name not in table:
        raise BackendError(f"tensorrt I/O tensor of type {name} is not supported here")
    return table[name]
