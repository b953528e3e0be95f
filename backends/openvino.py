"""openvino: the ONNX artifact compiled by OpenVINO for the CPU device.

By default the model is reshaped to the case's static input shapes before compiling, as a
deployment with known shapes would (and as OpenVINO's benchmark_app does); ``static_shapes =
false`` keeps the dynamic graph.

Inference precision defaults to f32: on CPUs with AVX512-BF16 or AMX, OpenVINO would otherwise
silently run bf16, which is a different variant, not a faster fp32.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from backends.openvino_generate import OpenVinoGenerator
from backends.openvino_serve import OpenVinoServer
from harness.backend import Artifact, BackendSettings, Capabilities, native_precision_missing
from harness.errors import BackendError, BackendUnavailable

PRECISIONS = ("f32", "bf16", "f16")
HINTS = ("LATENCY", "THROUGHPUT")
_RUNTIME_PRECISION = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8"}
_COMPUTE_LAYERS = {"FullyConnected", "MatMul", "Convolution", "Deconvolution"}


class OpenVinoBackend(OpenVinoGenerator, OpenVinoServer):
    name: ClassVar[str] = "openvino"
    capabilities: ClassVar[Capabilities] = Capabilities(
        consumes="onnx",
        generates=True,
        serves=True,
        options={
            "inference_precision": PRECISIONS,
            "performance_hint": HINTS,
            "num_streams": int,
            "static_shapes": bool,
        },
        runtime_modules=("openvino",),
        install_hint='pip install "infrabench[openvino]"',
    )

    def __init__(self) -> None:
        self._compiled: Any = None
        self._request: Any = None

    def check(self) -> None:
        try:
            _import_openvino()
        except ImportError as exc:
            raise BackendUnavailable(f"openvino cannot be imported: {exc}") from None

    def versions(self) -> dict[str, str]:
        _import_openvino()  # telemetry declined first
        import openvino as ov

        if self._pipe is not None or self._cb is not None:
            return {"openvino": ov.get_version(), "openvino-genai": self._genai.__version__}
        return {"openvino": ov.get_version()}

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        _import_openvino()  # telemetry declined first
        import openvino as ov

        if settings.device != "cpu":
            raise BackendUnavailable(
                f"openvino backend runs on CPU only here, not {settings.device}"
            )
        missing = native_precision_missing(settings.precision, settings.isa_flags)
        if missing:
            raise BackendUnavailable(f"openvino {settings.precision}: {missing}")
        hint = {"bf16": "bf16", "fp16": "f16"}.get(settings.precision)
        config = {
            "INFERENCE_NUM_THREADS": settings.threads,
            "INFERENCE_PRECISION_HINT": hint or settings.options.get("inference_precision", "f32"),
            "PERFORMANCE_HINT": settings.options.get("performance_hint", "LATENCY"),
            "NUM_STREAMS": settings.options.get("num_streams", 1),
        }
        core = ov.Core()
        try:
            model = core.read_model(str(artifact.onnx_path))
            if settings.options.get("static_shapes", True) and settings.input_shapes:
                model.reshape({name: list(shape) for name, shape in settings.input_shapes.items()})
            start = time.perf_counter()
            self._compiled = core.compile_model(model, "CPU", config)
            compile_s = time.perf_counter() - start
        except RuntimeError as exc:
            raise BackendError(f"openvino could not compile the model: {exc}") from None
        self._request = self._compiled.create_infer_request()
        return compile_s

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        for port in self._compiled.inputs:
            name = port.get_any_name()
            self._request.set_tensor(name, self._ov_tensor(np.ascontiguousarray(inputs[name])))

    @staticmethod
    def _ov_tensor(array: np.ndarray) -> Any:
        _import_openvino()  # telemetry declined first
        import openvino as ov

        return ov.Tensor(array, shared_memory=True)

    def run(self) -> int | None:
        self._request.infer()
        return None

    def synchronize(self) -> None:
        return None  # infer() is synchronous

    def outputs(self) -> dict[str, np.ndarray]:
        arrays = {
            port.get_any_name(): np.array(self._request.get_tensor(port).data)
            for port in self._compiled.outputs
        }  # floats as float32; integers and booleans keep their dtype (exact comparison)
        return {n: a.astype(np.float32) if a.dtype.kind == "f" else a for n, a in arrays.items()}

    def executed_precision(self) -> str | None:
        """The runtime precision most compute layers (FC, MatMul, Conv) really executed in; when
        the CPU plugin fused every one of them into snippet subgraphs (a small MLP with static
        shapes does), the precision most of those subgraphs executed in."""
        if self._pipe is not None or self._cb is not None:
            return self._gen_precision  # the GenAI pipelines expose no runtime model
        layers: dict[str, Counter[str]] = {"compute": Counter(), "Subgraph": Counter()}
        for op in self._compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            kind = info["layerType"].astype(str) if "layerType" in info else ""
            group = "compute" if kind in _COMPUTE_LAYERS else kind
            if group in layers:
                precision = info["runtimePrecision"].astype(str)
                layers[group][_RUNTIME_PRECISION.get(precision, precision)] += 1
        counts = layers["compute"] or layers["Subgraph"]
        return counts.most_common(1)[0][0] if counts else None

    def close(self) -> None:
        self._request = None
        self._compiled = None
        self._pipe = None
        self._cb = None


def _import_openvino() -> None:
    """Import OpenVINO with its telemetry declined. ``import openvino`` imports its converter
    (``openvino.tools.ovc``), which starts ``openvino_telemetry``: with no consent file it
    writes a client id and a usage counter under ``~/intel``. The converter declines telemetry
    in CI (``disable_in_ci``, the ``CI=true`` variable), the only opt-out that needs no file in
    the user's home: ``CI`` is set for the import only. What remains: an existing consent file
    of the user's choosing (``opt_in_out --opt_in``) is not overridden by this."""
    import os
    import sys

    if "openvino" in sys.modules:
        return
    before = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        import openvino  # noqa: F401
    finally:
        if before is None:
            del os.environ["CI"]
        else:
            os.environ["CI"] = before
