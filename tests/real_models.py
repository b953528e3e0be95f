"""Small ONNX models shaped like the ones users report trouble with (onnx.helper only): external
weights at any location, a non-batch leading axis, data-dependent and integer/boolean outputs,
NaN and all-zero outputs. Tests build them into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


def _model(nodes: list, inputs: list, outputs: list, inits: tuple = ()) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return m


def _vi(name: str, elem: int, shape: list) -> onnx.ValueInfoProto:
    return h.make_tensor_value_info(name, elem, shape)


def external(out: Path, seed: int, location: str, name: str = "ext.onnx") -> Path:
    """y = x [batch, 64] @ W [64, 64], W stored as external data at ``location``."""
    rng = np.random.default_rng(seed)
    w = nh.from_array(rng.standard_normal((64, 64)).astype(np.float32), "W")
    m = _model([h.make_node("MatMul", ["x", "W"], ["y"])], [_vi("x", T.FLOAT, ["batch", 64])],
               [_vi("y", T.FLOAT, ["batch", 64])], (w,))  # fmt: skip
    (out / location).parent.mkdir(parents=True, exist_ok=True)
    (out / location).unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save_model(m, str(out / name), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)  # fmt: skip
    return out / name


def nonbatch_axis0(out: Path) -> Path:
    """points [batch, n_points, 3] scored against queries [n_queries, 3] (no batch axis)."""
    m = _model(
        [h.make_node("Transpose", ["queries"], ["qt"], perm=[1, 0]),
         h.make_node("MatMul", ["points", "qt"], ["scores"])],
        [_vi("points", T.FLOAT, ["batch", "n_points", 3]),
         _vi("queries", T.FLOAT, ["n_queries", 3])],
        [_vi("scores", T.FLOAT, ["batch", "n_points", "n_queries"])],
    )  # fmt: skip
    onnx.save(m, out / "pq.onnx")
    return out / "pq.onnx"


def dynamic_output(out: Path) -> Path:
    """A detections-like output whose length depends on the data: NonZero(x > 0.5)."""
    half = nh.from_array(np.array(0.5, dtype=np.float32), "half")
    m = _model(
        [h.make_node("Greater", ["x", "half"], ["mask"]), h.make_node("NonZero", ["mask"], ["idx"]),
         h.make_node("Relu", ["x"], ["y"])],
        [_vi("x", T.FLOAT, ["batch", 32])],
        [_vi("y", T.FLOAT, ["batch", 32]), _vi("idx", T.INT64, [2, "n_found"])],
        (half,),
    )  # fmt: skip
    onnx.save(m, out / "dynout.onnx")
    return out / "dynout.onnx"


def fp16_multi(out: Path) -> Path:
    """fp16 input; fp16 activations, an int64 class index and a bool flag out."""
    two = nh.from_array(np.array(2.0, dtype=np.float16), "two")
    w = nh.from_array(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float16), "w")
    m = _model(
        [h.make_node("MatMul", ["x", "w"], ["mm"]), h.make_node("Relu", ["mm"], ["y"]),
         h.make_node("ArgMax", ["x"], ["cls"], axis=1, keepdims=0),
         h.make_node("Greater", ["x", "two"], ["flag"])],
        [_vi("x", T.FLOAT16, ["batch", 8])],
        [_vi("y", T.FLOAT16, ["batch", 8]), _vi("cls", T.INT64, ["batch"]),
         _vi("flag", T.BOOL, ["batch", 8])],
        (two, w),
    )  # fmt: skip
    onnx.save(m, out / "fp16multi.onnx")
    return out / "fp16multi.onnx"


def nan_out(out: Path) -> tuple[Path, Path]:
    """``nan.onnx``: y = Log(x - 0.5), NaN for about half the inputs; ``zero.onnx``: y = Relu(x)
    and z = x * 0 (an all-zero output)."""
    half = nh.from_array(np.array(0.5, dtype=np.float32), "half")
    zero = nh.from_array(np.array(0.0, dtype=np.float32), "zero")
    m = _model(
        [h.make_node("Sub", ["x", "half"], ["s"]), h.make_node("Log", ["s"], ["y"])],
        [_vi("x", T.FLOAT, ["batch", 16])],
        [_vi("y", T.FLOAT, ["batch", 16])],
        (half,),
    )
    onnx.save(m, out / "nan.onnx")
    m2 = _model(
        [h.make_node("Relu", ["x"], ["y"]), h.make_node("Mul", ["x", "zero"], ["z"])],
        [_vi("x", T.FLOAT, ["batch", 16])],
        [_vi("y", T.FLOAT, ["batch", 16]), _vi("z", T.FLOAT, ["batch", 16])],
        (zero,),
    )
    onnx.save(m2, out / "zero.onnx")  # fmt: skip
    return out / "nan.onnx", out / "zero.onnx"
