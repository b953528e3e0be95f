"""fpga-sim: a simulated int8 systolic-array accelerator (FPGA presets), on the same ONNX file.

Functional: the int8 QDQ artifact runs on ONNX Runtime's CPU integer kernels, so outputs and
fidelity are real. Timing: the analytical model of :mod:`backends.fpga_sim.systolic` over the
graph (:mod:`backends.fpga_sim.onnx_graph`) gives cycles at the preset's clock; ``run`` returns
that latency (``own_clock``), so samples are simulated, deterministic and say so. Energy is
simulated from counted MACs and bytes (``energy_source = simulated``); the device and its price
class are the preset's (``SimulatedDevice``).

Options (``[options.fpga-sim]``): ``preset`` (edge, datacenter or a user preset),
``presets_file`` (a user TOML of presets), ``dataflow`` (os, ws, is; default the preset's).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from backends.fpga_sim.systolic import DATAFLOWS, Simulation, load_presets
from harness.backend import INFRABENCH_VERSION, Artifact, BackendSettings, Capabilities
from harness.errors import BackendError, BackendUnavailable, ConfigError

DEFAULT_PRESET = "edge"


class FpgaSimBackend:
    name: ClassVar[str] = "fpga-sim"
    capabilities: ClassVar[Capabilities] = Capabilities(
        consumes="onnx",
        devices=("fpga",),
        own_clock=True,
        options={"preset": str, "presets_file": str, "dataflow": DATAFLOWS},
        runtime_modules=("onnxruntime",),
        install_hint="pip install onnxruntime",
        energy="simulated",
    )

    def __init__(self) -> None:
        self._session: Any = None
        self._feeds: dict[str, np.ndarray] = {}
        self._outputs: dict[str, np.ndarray] | None = None
        self._simulation: Simulation | None = None
        self._model: Any = None  # the loaded ONNX graph the simulation walks
        self._simulated: dict[tuple[tuple[str, tuple[int, ...]], ...], Simulation] = {}
        self.simulate_s = 0.0
        # SimulatedDevice: the modelled device, known once load() has chosen the preset.
        self.hardware_class = ""
        self.device_label = "fpga"

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        """ConfigError for an unknown preset or a bad presets file (before anything runs)."""
        path = options.get("presets_file")
        presets = load_presets(Path(path) if path else None)
        preset = options.get("preset", DEFAULT_PRESET)
        if preset not in presets:
            raise ConfigError(
                f"{where}: options.fpga-sim.preset: unknown preset {preset!r}; allowed: "
                f"{', '.join(presets)}"
            )

    def check(self) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(
                f"onnxruntime (the functional model) is missing: {exc}"
            ) from None

    def versions(self) -> dict[str, str]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "fpga-sim": INFRABENCH_VERSION}

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        import onnxruntime as ort

        if settings.precision != "fp32":
            raise BackendUnavailable(
                f"fpga-sim {settings.precision}: the simulated array computes int8; run an "
                "int8-static variant"
            )
        import onnx

        self._model = onnx.load(str(artifact.onnx_path))
        if not _is_int8(self._model):
            raise BackendUnavailable(
                "fpga-sim models an int8 systolic array: give it an int8 QDQ graph (variant "
                "int8-static, e.g. --variant int8-static)"
            )
        options = settings.options
        path = options.get("presets_file")
        presets = load_presets(Path(path) if path else None)
        self._preset = presets[options.get("preset", DEFAULT_PRESET)]
        self._dataflow = str(options.get("dataflow", self._preset.dataflow))
        self.hardware_class = self._preset.hardware_class
        self.device_label = f"fpga:{self.hardware_class}"  # the row's device
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = settings.threads
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(artifact.onnx_path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT's own error types
            raise BackendError(f"fpga-sim: the functional model could not load: {exc}") from None
        return None

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        from backends.fpga_sim.onnx_graph import graph_layers

        names = [i.name for i in self._session.get_inputs()]
        self._feeds = {n: np.ascontiguousarray(inputs[n]) for n in names}
        self._outputs = None
        key = tuple(sorted((n, a.shape) for n, a in self._feeds.items()))
        if key not in self._simulated:  # one simulation per input shape
            started = time.perf_counter()
            layers = graph_layers(self._model, self._feeds, self._preset, self._dataflow)
            self._simulated[key] = Simulation(self._preset, self._dataflow, layers)
            self.simulate_s = time.perf_counter() - started
        self._simulation = self._simulated[key]

    def run(self) -> int | None:
        assert self._simulation is not None
        self._outputs = None  # computed on demand: timing needs only the simulated latency
        return round(self._simulation.latency_s * 1e9)

    def synchronize(self) -> None:
        return None

    def outputs(self) -> dict[str, np.ndarray]:
        if self._outputs is None:
            names = [o.name for o in self._session.get_outputs()]
            values = self._session.run(names, self._feeds)
            self._outputs = {
                n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values, strict=True)
            }
        return self._outputs

    def energy_j(self) -> float:
        """Simulated joules of one inference (the whole batch) at the prepared shape."""
        assert self._simulation is not None
        return self._simulation.energy_j()

    def report(self) -> dict[str, Any]:
        """Per-layer cycles, utilisation and bound, stored with the case."""
        assert self._simulation is not None
        return {"simulation": {**self._simulation.summary(), "simulate_s": self.simulate_s}}

    def executed_precision(self) -> str | None:
        """int8 when every GEMM ran int8; int8+int16 when the QDQ graph left some in float."""
        if self._simulation is None:
            return None
        kinds = {layer.precision for layer in self._simulation.layers if layer.macs}
        return "+".join(sorted(kinds)) or None

    def close(self) -> None:
        self._session = None
        self._model = None


def _is_int8(model: Any) -> bool:
    ops = {n.op_type for n in model.graph.node}
    return bool(ops & {"QuantizeLinear", "DequantizeLinear", "MatMulInteger", "QLinearMatMul",
                       "ConvInteger", "QLinearConv"})  # fmt: skip
