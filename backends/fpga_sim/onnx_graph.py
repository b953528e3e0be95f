"""Walk an ONNX graph into accelerator layers: MatMul / Gemm / Conv (and their integer and QDQ
forms) become GEMMs on the systolic array, everything else element-wise work on the vector unit.

Tensor shapes are observed, not inferred: the graph runs once on ONNX Runtime (no graph
optimizations, every intermediate tensor exposed) with the case's inputs, so the dynamic
reshapes of exported transformers resolve exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from backends.fpga_sim.systolic import FREE, Gemm, LayerTiming, Preset, gemm_timing, vector_timing
from harness.backend import exposed_session

# An int8 accelerator scales and rounds activations as they enter and leave the array (a
# multiplier per lane in the load/store path): the graph's Q/DQ pairs cost no extra pass.
FUSED = {"QuantizeLinear", "DequantizeLinear"}
VECTOR_BYTES = 2  # the vector unit works in 16-bit (softmax, normalisation, activations)
GEMM_OPS = {"MatMul", "MatMulInteger", "QLinearMatMul", "Gemm", "Conv", "ConvInteger",
            "QLinearConv"}  # fmt: skip


def observed_shapes(model: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape (graph inputs, initializers, node outputs) of a loaded ONNX model
    for these inputs."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    shapes.update({n: tuple(a.shape) for n, a in inputs.items()})
    session = exposed_session(model)  # the caller's model stays as it is
    names = [o.name for o in session.get_outputs()]
    feeds = {i.name: inputs[i.name] for i in session.get_inputs()}
    for name, value in zip(names, session.run(names, feeds), strict=True):
        shapes[name] = tuple(np.shape(value))
    return shapes


def _producers(graph: Any) -> dict[str, Any]:
    return {out: node for node in graph.node for out in node.output}


_INT8_PRESERVING = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "MaxPool")
_WEIGHT_PATH = ("DequantizeLinear", "Transpose", "Reshape")


def _source(name: str, producers: Mapping[str, Any], through: tuple[str, ...]) -> tuple[str, Any]:
    """Follow ``name`` back through first inputs of ``through`` ops: the tensor reached and the
    node producing it (None for a graph input or an initializer)."""
    node = producers.get(name)
    while node is not None and node.op_type in through:
        name = node.input[0]
        node = producers.get(name)
    return name, node


def _is_quantized(name: str, producers: Mapping[str, Any]) -> bool:
    """Fed by a DequantizeLinear (QDQ), possibly through layout ops or a max pool (which keep
    values on the int8 grid)."""
    node = _source(name, producers, _INT8_PRESERVING)[1]
    return node is not None and node.op_type == "DequantizeLinear"


def _from_initializer(name: str, producers: Mapping[str, Any], initializers: set[str]) -> bool:
    """A weight: an initializer, possibly dequantized, transposed or reshaped."""
    return _source(name, producers, _WEIGHT_PATH)[0] in initializers


def _gemm(node: Any, shapes: Mapping[str, tuple[int, ...]], producers: Mapping[str, Any],
          initializers: set[str]) -> Gemm:  # fmt: skip
    """The GEMM a MatMul / Gemm / Conv node performs, from its observed shapes."""
    op = node.op_type
    integer = op in ("MatMulInteger", "QLinearMatMul", "ConvInteger", "QLinearConv")
    if op.startswith("QLinear"):
        a_name, w_name = node.input[0], node.input[3]
    else:
        a_name, w_name = node.input[0], node.input[1]
    quantized = integer or (_is_quantized(a_name, producers) and _is_quantized(w_name, producers))
    operand_bytes = 1 if quantized else 2
    a, w = shapes[a_name], shapes[w_name]
    if "Conv" in op:
        out = shapes[node.output[0]]
        groups = next((attr.i for attr in node.attribute if attr.name == "group"), 1)
        m = out[0] * math.prod(out[2:])
        k = w[1] * math.prod(w[2:])
        return Gemm(m, k, w[0] // groups, groups, operand_bytes)
    if op == "Gemm":
        trans = {attr.name: attr.i for attr in node.attribute}
        m, k = (a[1], a[0]) if trans.get("transA") else (a[0], a[1])
        n = w[0] if trans.get("transB") else w[1]
        return Gemm(m, k, n, 1, operand_bytes)
    weights = _from_initializer(w_name, producers, initializers)
    if len(w) <= 2 and weights:  # activations x a weight matrix: flatten the leading dims
        return Gemm(math.prod(a[:-1]), a[-1], w[-1], 1, operand_bytes)
    batch = np.broadcast_shapes(tuple(a[:-2]), tuple(w[:-2])) if len(a) > 2 or len(w) > 2 else ()
    m = a[-2] if len(a) >= 2 else 1
    return Gemm(m, a[-1], w[-1], math.prod(batch), operand_bytes, weights_shared=False)


def graph_layers(
    model: Any, inputs: Mapping[str, np.ndarray], preset: Preset, dataflow: str
) -> list[LayerTiming]:
    """Every node of a loaded ONNX model as a timed layer, in graph order."""
    shapes = observed_shapes(model, inputs)
    producers = _producers(model.graph)
    initializers = {t.name for t in model.graph.initializer}
    layers = []
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        if node.op_type in GEMM_OPS:
            gemm = _gemm(node, shapes, producers, initializers)
            layers.append(gemm_timing(name, node.op_type, gemm, preset, dataflow))
            continue
        if node.op_type in FREE or node.op_type in FUSED:
            continue  # metadata, or (re)quantization done on the array's input/output path
        if _weight_side(node, initializers, producers):
            continue  # folded into the int8 weights stored in DRAM
        elements = sum(math.prod(shapes.get(out, ())) for out in node.output if out)
        activations = [
            i for i in node.input
            if i and not _from_initializer(i, producers, initializers)
        ]  # fmt: skip
        moved = elements + sum(math.prod(shapes.get(i, ())) for i in activations)
        layers.append(vector_timing(name, node.op_type, elements, moved * VECTOR_BYTES, preset))
    return layers


def _weight_side(node: Any, initializers: set[str], producers: Mapping[str, Any]) -> bool:
    """Q/DQ and transposes of weights: done once offline, not per inference."""
    if node.op_type not in ("DequantizeLinear", "QuantizeLinear", "Transpose"):
        return False
    return _from_initializer(node.input[0], producers, initializers)
