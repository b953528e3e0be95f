"""Each variant's recipe on tiny models: the structure really changes, zeros are really there,
lineage is recorded and the cache is reused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from backends.onnx_info import compute_ops
from harness.errors import ConfigError, VariantNotApplicable
from harness.optimize.artifacts import build, cache_root
from harness.optimize.variants import parse_variant


def test_variant_names_parse_and_compose() -> None:
    v = parse_variant("distilled-3l+int8-static+bf16")
    assert [s.kind for s in v.steps] == ["torch", "onnx", "runtime"]
    assert v.precision == "bf16" and v.runtime_precision == "bf16"
    assert v.artifact_name == "distilled-3l+int8-static"
    assert parse_variant("pruned-structured-30+int8-dynamic").precision == "int8"
    assert parse_variant("fp32").steps == ()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("int8-static+distilled-3l", "steps must go torch steps"),
        ("int8-static+int8-dynamic", "at most one onnx step"),
        ("fp16+bf16", "at most one runtime step"),
        ("pruned-structured-0", "percentage must be 1..99"),
        ("distilled-0l", "at least 1 layer"),
        ("int4", "unknown variant step 'int4'; allowed: fp32, fp16"),
    ],
)
def test_bad_variants_say_what_is_allowed(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_variant(name)


def test_int8_dynamic_quantizes_the_graph_and_records_lineage() -> None:
    fp32 = build("tiny-mlp", "fp32", cache_root())
    artifact = build("tiny-mlp", "int8-dynamic", cache_root())
    assert compute_ops(artifact.onnx_path)["int8"] == 2  # both Gemm/MatMul layers
    assert artifact.lineage["parent"] == fp32.key
    assert [link["step"] for link in artifact.lineage["chain"]] == ["int8-dynamic"]
    assert artifact.sha256 != fp32.sha256
    assert build("tiny-mlp", "int8-dynamic", cache_root()) == artifact  # cached


def test_int8_static_is_qdq_chosen_by_measured_fidelity() -> None:
    artifact = build("tiny-mlp", "int8-static", cache_root())
    ops = {n.op_type for n in onnx.load(str(artifact.onnx_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    info = artifact.lineage["info"]
    assert info["chosen"] in info["scores"] and info["selection_split"] == "training"
    assert info["scores"][info["chosen"]] == max(info["scores"].values())


def test_unstructured_pruning_really_zeroes_half_the_weights() -> None:
    artifact = build("tiny-mlp", "pruned-unstructured-50", cache_root())
    assert artifact.lineage["info"]["weight_sparsity"] == pytest.approx(0.5, abs=0.01)
    weights = [
        onnx.numpy_helper.to_array(t)
        for t in onnx.load(str(artifact.onnx_path)).graph.initializer
        if t.dims and len(t.dims) == 2
    ]
    assert all(np.mean(w == 0) == pytest.approx(0.5, abs=0.01) for w in weights)
    module = artifact.torch_module()  # the torch side loads the same pruned weights
    assert float((module[0].weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)


def test_unstructured_pruning_covers_conv_layers() -> None:
    artifact = build("digits-cnn", "pruned-unstructured-30", cache_root())
    info = artifact.lineage["info"]
    assert info["conv_layers"] == 2 and info["pruned_layers"] == 4
    convs = [
        onnx.numpy_helper.to_array(t)
        for t in onnx.load(str(artifact.onnx_path)).graph.initializer
        if len(t.dims) == 4
    ]
    assert len(convs) == 2 and all(np.mean(w == 0) == pytest.approx(0.3, abs=0.02) for w in convs)


def test_runtime_precisions_share_the_parent_file() -> None:
    assert build("tiny-mlp", "bf16", cache_root()) == build("tiny-mlp", "fp32", cache_root())


@pytest.mark.slow
def test_structured_pruning_makes_the_graph_smaller_and_distils() -> None:
    fp32 = build("tiny-bert", "fp32", cache_root())
    artifact = build("tiny-bert", "pruned-structured-50", cache_root())
    info = artifact.lineage["info"]
    assert all(len(heads) == 2 for heads in info["heads"])  # 4 heads -> 2 per layer
    assert all(len(neurons) == 64 for neurons in info["neurons"])  # 128 -> 64
    assert artifact.params_m < fp32.params_m and artifact.size_mb < fp32.size_mb
    assert info["epochs"] > 0 and np.isfinite(info["final_loss"])
    module = artifact.torch_module()  # rebuilt with the recorded structure, same weights
    layer = module.encoder.encoder.layer[0]
    assert layer.attention.self.query.out_features == 32
    assert layer.intermediate.dense.out_features == 64


@pytest.mark.slow
def test_distillation_keeps_every_other_layer() -> None:
    artifact = build("tiny-bert", "distilled-2l", cache_root())
    assert artifact.lineage["info"]["kept_layers"] == [0, 2]
    assert len(artifact.torch_module().encoder.encoder.layer) == 2
    with pytest.raises(VariantNotApplicable, match="teacher has 4 layers"):
        build("tiny-bert", "distilled-4l", cache_root())
    with pytest.raises(VariantNotApplicable, match="applies to transformer encoders"):
        build("tiny-mlp", "distilled-2l", cache_root())
