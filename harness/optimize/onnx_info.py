"""Facts read from an ONNX graph without running it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

_QUANTIZED_OPS = {
    "QLinearMatMul", "QLinearConv", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear",
    "QuantizeLinear", "MatMulIntegerToFloat", "QGemm",
}  # fmt: skip
_FLOAT_TYPES = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64"}


def graph_precision(path: Path) -> str:
    """``int8`` when the graph holds quantized ops, else the dominant float type of its weights."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if any(node.op_type in _QUANTIZED_OPS for node in model.graph.node):
        return "int8"
    kinds = Counter(
        _FLOAT_TYPES[t.data_type] for t in model.graph.initializer if t.data_type in _FLOAT_TYPES
    )
    return kinds.most_common(1)[0][0] if kinds else "fp32"
