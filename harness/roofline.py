"""What-if for hardware not measured here: a roofline latency per case from its ONNX graph.

For every node of the graph, FLOPs and bytes moved:

* MatMul / Gemm (and MatMulInteger, QLinearMatMul): 2 x M x K x N per GEMM (x the broadcast
  batch); Conv (and ConvInteger, QLinearConv): 2 x output elements x (C_in / groups) x kernel
  size. These run at the class's peak for their precision: int8 when the op is integer or both
  operands come from DequantizeLinear (a QDQ graph a runtime fuses), else the inputs' float type.
* Every other op: one operation per output element at the class's ``vector`` rate; shape-only
  ops (Reshape, Shape, Constant, ...) and weight-side (de)quantization cost nothing.
* Bytes: every input (weights included: nothing is assumed to stay in cache between ops) and
  every output, at its element size.

predicted latency = sum over ops of max(FLOPs / peak, bytes / bandwidth) for one batch. Shapes
come from ONNX shape inference with the case's input shapes; where that leaves a tensor's shape
unknown (the data-dependent reshapes of exported transformers), the graph is run once on ONNX
Runtime with zero inputs of those shapes and the shapes are observed. The hardware classes are
``harness/data/hardware.toml`` (each value with its source). A prediction is never a measured
row: it is reported beside the measured latency, with the error where both exist.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.backend import exposed_session
from harness.errors import ConfigError
from harness.recommend import row_hardware_class
from harness.result import CaseResult

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
GEMM_OPS = {"MatMul", "MatMulInteger", "QLinearMatMul", "Gemm", "Conv", "ConvInteger",
            "QLinearConv"}  # fmt: skip
INTEGER_OPS = {"MatMulInteger", "QLinearMatMul", "ConvInteger", "QLinearConv"}
FREE_OPS = {"Shape", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Constant",
            "ConstantOfShape", "Dropout"}  # fmt: skip
# ONNX TensorProto element types -> bytes (onnx.TensorProto: FLOAT=1, UINT8=2, INT8=3, UINT16=4,
# INT16=5, INT32=6, INT64=7, BOOL=9, FLOAT16=10, DOUBLE=11, UINT32=12, UINT64=13, BFLOAT16=16).
ELEMENT_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
FLOAT_PRECISION = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp32"}
TensorProtoFloat, TensorProtoFloat16 = 1, 10


@dataclass(frozen=True)
class OpCost:
    """One node's work for one batch: ``flops`` (a MAC counts 2) and ``bytes`` moved."""

    name: str
    op_type: str
    flops: float
    bytes: float
    precision: str  # a key of PRECISIONS, or "vector" for element-wise work


@dataclass(frozen=True)
class HardwareClass:
    """Peaks in FLOP/s (int8: op/s) per precision, bandwidth in GB/s, price in USD/hour."""

    name: str
    description: str
    unit: str
    peak_flops: Mapping[str, float]
    memory_gbps: float
    usd_per_hour: float
    sources: Mapping[str, str] = field(default_factory=dict)

    def peak(self, precision: str) -> float:
        """FLOP/s for ``precision``; element-wise work at ``vector`` (default: fp32)."""
        if precision == "vector":
            return self.peak_flops.get("vector", self.peak_flops["fp32"])
        return self.peak_flops[precision]


def load_hardware(path: Path | None = None) -> dict[str, HardwareClass]:
    """The shipped hardware classes, or a user's file of the same form. ConfigError if bad."""
    where = str(path) if path else "harness/data/hardware.toml"
    try:
        if path is None:
            text = resources.files("harness").joinpath("data/hardware.toml").read_text("utf-8")
        else:
            text = path.read_text("utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read hardware file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    classes = {}
    for name, table in data.get("class", {}).items():
        try:
            peaks = {k: float(v) for k, v in table["peak_flops"].items()}
            missing = [p for p in PRECISIONS if p not in peaks]
            if missing:
                raise ConfigError(f"{where}: class.{name}: peak_flops lacks {', '.join(missing)}")
            classes[name] = HardwareClass(
                name, str(table["description"]), str(table["unit"]), peaks,
                float(table["memory_gbps"]), float(table["usd_per_hour"]),
                dict(table.get("sources", {})),
            )  # fmt: skip
        except KeyError as exc:
            raise ConfigError(f"{where}: class.{name}: missing key {exc.args[0]!r}") from None
    if not classes:
        raise ConfigError(f"{where}: expected [class.NAME] tables")
    return classes


def _shape_of(value_info: Any) -> tuple[int, ...] | None:
    dims = value_info.type.tensor_type.shape.dim
    if not value_info.type.tensor_type.HasField("shape"):
        return None
    if any(not d.HasField("dim_value") for d in dims):
        return None
    return tuple(d.dim_value for d in dims)


def tensor_types(
    model: Any, input_shapes: Mapping[str, Sequence[int]]
) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """Shape and element type of every tensor of a loaded ONNX model for these input shapes."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for graph_input in fixed.graph.input:
        if graph_input.name in input_shapes:
            dims = graph_input.type.tensor_type.shape.dim
            del dims[:]
            for size in input_shapes[graph_input.name]:
                dims.add().dim_value = int(size)
    inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    infos = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    shapes = {t.name: tuple(t.dims) for t in inferred.graph.initializer}
    types = {t.name: t.data_type for t in inferred.graph.initializer}
    for info in infos:
        types[info.name] = info.type.tensor_type.elem_type
        shape = _shape_of(info)
        if shape is not None:
            shapes[info.name] = shape
    outputs = [o for node in fixed.graph.node for o in node.output if o]
    if any(o not in shapes or o not in types for o in outputs):
        observed = _observed(fixed)
        shapes.update({k: v[0] for k, v in observed.items()})
        types.update({k: v[1] for k, v in observed.items()})
    return shapes, types


_NUMPY_TO_ONNX = {"float32": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5, "int32": 6,
                  "int64": 7, "bool": 9, "float16": 10, "float64": 11}  # fmt: skip


def _observed(model: Any) -> dict[str, tuple[tuple[int, ...], int]]:
    """Run the graph once on ONNX Runtime (no graph optimization) with zero inputs of the fixed
    shapes; every node output's (shape, element type)."""
    import numpy as np
    from onnx import helper

    session = exposed_session(model)
    feeds = {}
    for graph_input in model.graph.input:
        shape = _shape_of(graph_input)
        if shape is None:
            raise ConfigError(f"roofline: input {graph_input.name!r} needs a fixed shape")
        dtype = helper.tensor_dtype_to_np_dtype(graph_input.type.tensor_type.elem_type)
        feeds[graph_input.name] = np.zeros(shape, dtype=dtype)
    feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    return {
        name: (tuple(np.shape(v)), _NUMPY_TO_ONNX.get(str(np.asarray(v).dtype), 1))
        for name, v in zip(names, session.run(names, feeds), strict=True)
    }


def _gemm_flops(node: Any, shapes: Mapping[str, tuple[int, ...]]) -> float:
    """2 x MACs of a MatMul / Gemm / Conv node from its input and output shapes."""
    op = node.op_type
    a_name, w_name = (node.input[0], node.input[3]) if op.startswith("QLinear") else node.input[:2]
    out, a, w = shapes[node.output[0]], shapes[a_name], shapes[w_name]
    if "Conv" in op:  # W is [C_out, C_in / groups, kernel...]: groups are already in it
        return 2.0 * math.prod(out) * math.prod(w[1:])
    if op == "Gemm":
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return 2.0 * math.prod(out) * (a[0] if trans_a else a[1])
    return 2.0 * math.prod(out) * a[-1]  # MatMul: broadcast batch x M x N outputs, K each


_THROUGH = ("DequantizeLinear", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _source(name: str, producers: Mapping[str, Any]) -> tuple[str, Any]:
    """Follow ``name`` back through dequantization and layout ops: the tensor reached and its
    producing node (None for a graph input or an initializer)."""
    node = producers.get(name)
    while node is not None and node.op_type in _THROUGH:
        name = node.input[0]
        node = producers.get(name)
    return name, node


def _dequantized(name: str, producers: Mapping[str, Any]) -> bool:
    node = producers.get(name)
    while node is not None and node.op_type in _THROUGH[1:]:
        node = producers.get(node.input[0])
    return node is not None and node.op_type == "DequantizeLinear"


def _size(name: str, shapes: Mapping[str, tuple[int, ...]], types: Mapping[str, int]) -> float:
    return float(math.prod(shapes.get(name, ()))) * ELEMENT_BYTES.get(types.get(name, 1), 4)


def op_costs(
    model: Any,
    input_shapes: Mapping[str, Sequence[int]],
    float_precision: str | None = None,
) -> list[OpCost]:
    """Every costed node of a loaded ONNX model, in graph order, for one batch of these input
    shapes. ``float_precision`` (fp16, bf16): a runtime that executes the float graph at that
    precision (the fp16/bf16 variants keep an fp32 file): fp32 tensors count 2 bytes. Raises
    ConfigError when an input's shape is not given."""
    shapes, types = tensor_types(model, input_shapes)
    if float_precision is not None:  # the runtime holds fp32 tensors at 16 bits
        types = {k: TensorProtoFloat16 if v == TensorProtoFloat else v for k, v in types.items()}
    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {t.name for t in model.graph.initializer}
    costs = []
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        if node.op_type in FREE_OPS:
            continue
        if node.op_type in ("DequantizeLinear", "QuantizeLinear", "Transpose") and (
            _source(node.input[0], producers)[0] in initializers
        ):
            continue  # weight-side: done once when the model is prepared, not per inference
        inputs = [i for i in node.input if i]
        outputs = [o for o in node.output if o]
        moved = sum(_size(o, shapes, types) for o in outputs)
        if node.op_type in GEMM_OPS:
            operands = (
                [node.input[0], node.input[3]] if node.op_type.startswith("QLinear") else inputs[:2]
            )
            int8 = node.op_type in INTEGER_OPS or all(_dequantized(o, producers) for o in operands)
            element = types.get(operands[0], 1)
            precision = "int8" if int8 else float_precision or FLOAT_PRECISION.get(element, "fp32")
            sizes = [_size(i, shapes, types) for i in inputs]
            if int8 and node.op_type not in INTEGER_OPS:  # QDQ: a fused kernel reads int8
                sizes[:2] = [
                    s / ELEMENT_BYTES.get(types.get(i, 1), 4)
                    for s, i in zip(sizes[:2], inputs[:2], strict=True)
                ]
            costs.append(
                OpCost(name, node.op_type, _gemm_flops(node, shapes), moved + sum(sizes), precision)
            )
            continue
        elements = sum(math.prod(shapes.get(o, ())) for o in outputs)
        if node.op_type in ("Gather", "GatherElements"):  # reads only the rows it gathers
            read = moved + sum(_size(i, shapes, types) for i in inputs[1:])
        else:
            read = sum(_size(i, shapes, types) for i in inputs)
        costs.append(OpCost(name, node.op_type, float(elements), moved + read, "vector"))
    return costs


def predict_ms(costs: Sequence[OpCost], hw: HardwareClass, units: int = 1) -> float:
    """Roofline latency of one batch (ms): sum over ops of max(FLOPs / peak, bytes / bandwidth);
    ``units`` scales a per-vCPU class (the row's threads)."""
    bandwidth = hw.memory_gbps * 1e9 * units
    seconds = sum(max(c.flops / (hw.peak(c.precision) * units), c.bytes / bandwidth) for c in costs)
    return seconds * 1e3


@dataclass(frozen=True)
class Prediction:
    """A roofline latency for one configuration on one hardware class; ``measured_ms`` (the
    p50 of the measured row of that configuration and class) and ``error`` (predicted /
    measured - 1) where a row exists."""

    model: str
    variant: str
    shape: str
    hardware_class: str
    units: int
    predicted_ms: float
    predicted_usd_per_million: float | None
    measured_ms: float | None = None
    measured_by: str | None = None  # backend of the measured row
    energy_source: str | None = None  # of the measured row: simulated rows are not measurements

    @property
    def error(self) -> float | None:
        if self.measured_ms is None or not self.measured_ms:
            return None
        return self.predicted_ms / self.measured_ms - 1


def _usd_per_million(ms: float, batch: int, hw: HardwareClass, units: int) -> float | None:
    if ms <= 0:
        return None
    per_second = batch / (ms / 1e3)
    return 1e6 / per_second / 3600 * hw.usd_per_hour * units


def what_if(
    rows: Sequence[CaseResult],
    costs: Callable[[CaseResult], list[OpCost]],
    hardware: Mapping[str, HardwareClass],
) -> list[Prediction]:
    """Predictions for every configuration of ``rows`` (CaseResult) on every hardware class.

    ``costs(row) -> list[OpCost]`` gives a row's graph costs (called once per model, variant
    and shape). A measured row yields a
    prediction for its own class and thread count, with the error; every class without a row
    of that configuration gets a prediction alone (a vCPU class at the most threads seen).
    """
    configs: dict[tuple[str, str, str], list[CaseResult]] = {}
    for row in rows:
        if row.status == "ok":
            configs.setdefault((row.model, row.variant, row.shape or ""), []).append(row)
    result = []
    for (model, variant, shape), measured in configs.items():
        graph = costs(measured[0])
        batch = measured[0].batch_size or 1
        threads = max((r.threads or 1) for r in measured)
        seen = set()
        for row in measured:
            cls = row_hardware_class(row)
            hw = hardware.get(cls)
            if hw is None:
                continue
            units = (row.threads or 1) if hw.unit == "vcpu" else 1
            ms = predict_ms(graph, hw, units)
            result.append(Prediction(model, variant, shape, cls, units, ms,
                                     _usd_per_million(ms, batch, hw, units), row.latency_ms_p50,
                                     row.backend, row.energy_source))  # fmt: skip
            seen.add(cls)
        for cls, hw in hardware.items():
            if cls not in seen:
                units = threads if hw.unit == "vcpu" else 1
                ms = predict_ms(graph, hw, units)
                usd = _usd_per_million(ms, batch, hw, units)
                result.append(Prediction(model, variant, shape, cls, units, ms, usd))
    return result


def row_costs(row: CaseResult, cache: Path) -> list[OpCost]:
    """The graph costs of a row's configuration: its artifact from the cache (built there if
    missing: this runs the model's export) and its model's example inputs at the row's shape."""
    import onnx

    from harness.models import get_model
    from harness.optimize.artifacts import build

    bindings = tuple(b for b in (row.shape or "").split("-")[1:] if "=" in b)
    artifact = build(row.model, row.variant, cache, bindings)
    inputs = get_model(row.model, bindings).example_inputs(row.batch_size or 1, row.seq_len)
    steps = row.variant.split("+")
    precision = "fp16" if "fp16" in steps else "bf16" if "bf16" in steps else None
    shapes = {name: tuple(a.shape) for name, a in inputs.items()}
    return op_costs(onnx.load(str(artifact.onnx_path)), shapes, precision)
