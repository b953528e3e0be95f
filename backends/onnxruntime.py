"""onnxruntime: the ONNX artifact in an ONNX Runtime session (CPU execution provider by default).

Option ``execution_provider``: ``cpu``, or ``cuda`` / ``tensorrt``, which need the
``onnxruntime-gpu`` distribution (the ``onnxruntime`` wheel has the CPU provider only); without
them the case is skipped with that reason. On ``cuda`` and ``tensorrt`` inputs and outputs go
through I/O binding: ``prepare`` copies the inputs to the GPU and binds device buffers for the
outputs, so one timed ``run`` is ``run_with_iobinding`` alone (it returns when the GPU work has
finished: ORT synchronises the provider's stream at the end of a run) and no host-device copy is
timed; ``outputs`` copies back, untimed. The row's details say so (``host_device_copies_timed``).
``tensorrt`` runs the fp32 graph in fp16 for the ``fp16`` variant (``trt_fp16_enable``) and keeps
its engines under the cache directory (``trt_engine_cache_path``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from backends.onnx_info import graph_precision
from backends.onnxruntime_generate import OnnxRuntimeGenerator
from harness.backend import Artifact, BackendSettings, Capabilities
from harness.errors import BackendError, BackendUnavailable

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")


class OnnxRuntimeBackend(OnnxRuntimeGenerator):
    name: ClassVar[str] = "onnxruntime"
    capabilities: ClassVar[Capabilities] = Capabilities(
        consumes="onnx",
        generates=True,
        devices=("cpu", "cuda"),
        options={"execution_provider": tuple(PROVIDERS), "graph_optimization": OPTIMIZATION_LEVELS},
        runtime_modules=("onnxruntime",),
        install_hint="pip install onnxruntime",
    )

    def __init__(self) -> None:
        self._session: Any = None
        self._feeds: dict[str, np.ndarray] = {}
        self._out: list[Any] = []
        self._path: Path | None = None
        self._opts: Any = None
        self._provider = PROVIDERS["cpu"]
        self._provider_options: dict[str, str] = {}
        self._binding: Any = None

    @classmethod
    def device_for(cls, options: Mapping[str, Any]) -> str:
        """``cuda`` for the GPU providers (NVML energy, GPU prices), else ``cpu``."""
        return "cpu" if options.get("execution_provider", "cpu") == "cpu" else "cuda"

    def check(self) -> None:
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime cannot be imported: {exc}") from None
        ort.disable_telemetry_events()

    def versions(self) -> dict[str, str]:
        import onnxruntime as ort

        if self._og_model is not None:
            return {"onnxruntime": ort.__version__, "onnxruntime-genai": self._og.__version__}
        return {"onnxruntime": ort.__version__}

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        import onnxruntime as ort

        ep = str(settings.options.get("execution_provider", "cpu"))
        level = str(settings.options.get("graph_optimization", "all"))
        if settings.precision != "fp32" and not (ep == "tensorrt" and settings.precision == "fp16"):
            raise BackendUnavailable(
                f"onnxruntime {settings.precision}: needs an {settings.precision} graph, which "
                "infrabench does not produce; only the tensorrt provider runs fp16 from the fp32 "
                "graph"
            )
        missing = missing_provider(ep, ort.get_available_providers())
        if missing:
            raise BackendUnavailable(missing)
        self._provider_options = provider_options(ep, settings.precision, settings.cache_dir)
        self._opts = opts = ort.SessionOptions()
        opts.intra_op_num_threads = settings.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        try:
            self._session = ort.InferenceSession(
                str(artifact.onnx_path),
                sess_options=opts,
                providers=[(PROVIDERS[ep], self._provider_options)],
            )
        except Exception as exc:  # ORT raises its own untyped errors for bad graphs
            raise BackendError(f"onnxruntime could not load the model: {exc}") from None
        self._path, self._provider = artifact.onnx_path, PROVIDERS[ep]
        return None

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        names = [i.name for i in self._session.get_inputs()]
        self._feeds = {n: np.ascontiguousarray(inputs[n]) for n in names}
        if self._provider != PROVIDERS["cpu"]:
            self._binding = bind(self._session, self._feeds, "cuda")

    def run(self) -> int | None:
        if self._binding is not None:
            self._session.run_with_iobinding(self._binding)
        else:
            self._out = self._session.run(None, self._feeds)
        return None

    def synchronize(self) -> None:
        return None

    def outputs(self) -> dict[str, np.ndarray]:
        names = [o.name for o in self._session.get_outputs()]
        out = self._binding.copy_outputs_to_cpu() if self._binding is not None else self._out
        # floats as float32 (fp16 outputs compare with the reference); integers and booleans
        # keep their dtype (exact comparison; int64 ids do not round through float32)
        arrays = (np.asarray(v) for v in out)
        return {
            n: a.astype(np.float32) if a.dtype.kind == "f" else a
            for n, a in zip(names, arrays, strict=True)
        }

    def report(self) -> dict[str, Any]:
        bound = self._binding is not None
        return {
            "execution_provider": self._provider,
            "io_binding": bound,
            "host_device_copies_timed": False if bound else None,
            **({"provider_options": self._provider_options} if self._provider_options else {}),
        }

    def executed_precision(self) -> str | None:
        """What the optimized graph really runs: ORT fuses QDQ into int8 kernels only where it
        has them, so the file being int8 is not enough. Saves the optimized graph (untimed)."""
        if self._og_model is not None:
            return "fp32"  # activations; weight-only int8/int4 is the row's variant
        import onnxruntime as ort

        if self._path is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            self._opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            self._opts.log_severity_level = 3  # not the "hardware-specific graph" warning
            ort.InferenceSession(str(self._path), sess_options=self._opts,
                                 providers=[(self._provider, self._provider_options)])  # fmt: skip
            return graph_precision(Path(self._opts.optimized_model_filepath))

    def close(self) -> None:
        self._session = self._binding = None
        self._og_model = None


def missing_provider(ep: str, available: list[str]) -> str | None:
    """Why the execution provider ``ep`` (a key of PROVIDERS) cannot run here, or ``None``."""
    if PROVIDERS[ep] in available:
        return None
    hint = " (install onnxruntime-gpu instead of onnxruntime)" if ep != "cpu" else ""
    return f"ONNX Runtime here has no {PROVIDERS[ep]}{hint}; available: {', '.join(available)}"


def provider_options(ep: str, precision: str, cache_dir: Path | None) -> dict[str, str]:
    """ONNX Runtime provider options for ``ep``: device 0; for ``tensorrt`` fp16 when asked and
    the engine cache under ``cache_dir/onnxruntime-trt`` (ORT keys its files by graph and GPU).
    Option names from onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html."""
    if ep == "cpu":
        return {}
    options = {"device_id": "0"}
    if ep == "tensorrt":
        options["trt_fp16_enable"] = "True" if precision == "fp16" else "False"
        if cache_dir is not None:
            path = cache_dir / "onnxruntime-trt"
            path.mkdir(parents=True, exist_ok=True)
            options["trt_engine_cache_enable"] = "True"
            options["trt_engine_cache_path"] = str(path)
    return options


def bind(session: Any, feeds: Mapping[str, np.ndarray], device: str) -> Any:
    """An ``IOBinding`` with ``feeds`` copied to ``device`` (``cuda`` or ``cpu``) now, and every
    output bound to a buffer on that device that ORT allocates in the first run."""
    import onnxruntime as ort

    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, device, 0))
    for out in session.get_outputs():
        binding.bind_output(out.name, device, 0)
    binding.synchronize_inputs()
    return binding
