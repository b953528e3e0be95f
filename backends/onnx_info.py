"""Facts read from an ONNX graph without running it (what precision an optimized graph runs)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# Compute ops that run integer kernels, and their float counterparts, as they appear in a graph
# after ONNX Runtime's optimizer has fused QDQ patterns.
INT8_COMPUTE_OPS = {
    "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm",
    "QLinearConv", "ConvInteger", "QAttention", "QOrderedMatMul",
}  # fmt: skip
FLOAT_COMPUTE_OPS = {
    "MatMul", "Gemm", "Conv", "FusedMatMul", "FusedGemm", "FusedConv", "Attention",
    "MultiHeadAttention",
}  # fmt: skip
_FLOAT_TYPES = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64"}


def compute_ops(path: Path) -> Counter[str]:
    """How many compute nodes of the graph are integer (``int8``) and float (``float``)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type in INT8_COMPUTE_OPS:
            counts["int8"] += 1
        elif node.op_type in FLOAT_COMPUTE_OPS:
            counts["float"] += 1
    return counts


def graph_precision(path: Path) -> str:
    """``int8`` when most compute nodes are integer kernels, else the weights' float type."""
    import onnx

    counts = compute_ops(path)
    if counts["int8"] and counts["int8"] >= counts["float"]:
        return "int8"
    model = onnx.load(str(path), load_external_data=False)
    kinds = Counter(
        _FLOAT_TYPES[t.data_type] for t in model.graph.initializer if t.data_type in _FLOAT_TYPES
    )
    return kinds.most_common(1)[0][0] if kinds else "fp32"
