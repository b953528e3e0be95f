"""onnxruntime: the ONNX artifact in an ONNX Runtime session (CPU execution provider by default)."""

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

        if settings.precision != "fp32":
            raise BackendUnavailable(
                f"onnxruntime {settings.precision}: needs an {settings.precision} graph, which "
                "infrabench does not produce; the CPU provider would cast back to fp32"
            )
        ep = str(settings.options.get("execution_provider", "cpu"))
        level = str(settings.options.get("graph_optimization", "all"))
        if PROVIDERS[ep] not in ort.get_available_providers():
            raise BackendUnavailable(
                f"ONNX Runtime here has no {PROVIDERS[ep]} (available: "
                f"{', '.join(ort.get_available_providers())})"
            )
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
                str(artifact.onnx_path), sess_options=opts, providers=[PROVIDERS[ep]]
            )
        except Exception as exc:  # ORT raises its own untyped errors for bad graphs
            raise BackendError(f"onnxruntime could not load the model: {exc}") from None
        self._path, self._provider = artifact.onnx_path, PROVIDERS[ep]
        return None

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        names = [i.name for i in self._session.get_inputs()]
        self._feeds = {n: np.ascontiguousarray(inputs[n]) for n in names}

    def run(self) -> int | None:
        self._out = self._session.run(None, self._feeds)
        return None

    def synchronize(self) -> None:
        return None

    def outputs(self) -> dict[str, np.ndarray]:
        names = [o.name for o in self._session.get_outputs()]
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, self._out, strict=True)}

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
                                 providers=[self._provider])  # fmt: skip
            return graph_precision(Path(self._opts.optimized_model_filepath))

    def close(self) -> None:
        self._session = None
        self._og_model = None
