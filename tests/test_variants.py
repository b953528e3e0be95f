"""Each variant's recipe on tiny models: the structure really changes, zeros are really there,
lineage is recorded and the cache is reused."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

import harness
from backends.onnx_info import compute_ops
from harness.errors import ConfigError, VariantNotApplicable
from harness.optimize import artifacts, recipes
from harness.optimize.artifacts import base_recipe, build, build_artifact, cache_root, step_recipe
from harness.optimize.steps import DESCRIPTIONS, STEPS, parse_step
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


CONV_NET = """
import torch

def make():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 8, 3), torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 10),
    )
    return net, torch.rand(1, 1, 8, 8)
"""


def test_unstructured_pruning_covers_conv_layers(tmp_path: Path) -> None:
    (tmp_path / "convnet.py").write_text(CONV_NET)
    model = f"torch:{tmp_path / 'convnet.py'}:make"
    artifact = build_artifact(model, "pruned-unstructured-30", tmp_path / "cache")
    info = artifact.lineage["info"]
    assert info["conv_layers"] == 2 and info["pruned_layers"] == 3
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
def test_distillation_keeps_every_other_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two epochs: the structure, the lineage and the progress lines are what is checked here,
    # not how well 30 epochs train (a cache of its own, so no other test sees this artifact).
    monkeypatch.setattr(recipes, "DISTIL_EPOCHS", 2)
    progress: list[str] = []
    artifact = build_artifact("tiny-bert", "distilled-2l", tmp_path, progress=progress.append)
    assert artifact.lineage["info"]["kept_layers"] == [0, 2]
    epochs = artifact.lineage["info"]["epochs"]
    assert epochs == 2
    assert progress and progress[-1].startswith(f"distilling: epoch {epochs}/")
    assert len(artifact.torch_module().encoder.encoder.layer) == 2
    with pytest.raises(VariantNotApplicable, match="teacher has 4 layers"):
        build("tiny-bert", "distilled-4l", cache_root())
    with pytest.raises(VariantNotApplicable, match="applies to transformer encoders"):
        build("tiny-mlp", "distilled-2l", cache_root())


# --- one registry of steps; cache keys as the previous release computed them ---------------


def test_every_step_name_matches_exactly_one_registered_kind() -> None:
    examples = ["fp16", "bf16", "int8-dynamic", "int8-static", "kv-int8", "int8-weight",
                "int4-weight", "pruned-unstructured-50", "pruned-structured-30",
                "distilled-3l"]  # fmt: skip
    for name in examples:
        matching = [s.pattern for s in STEPS if re.fullmatch(s.regex, name)]
        assert len(matching) == 1 and parse_step(name).spec.pattern == matching[0]
    assert list(DESCRIPTIONS) == ["fp32", *(s.pattern for s in STEPS)]
    for spec in STEPS:  # runtime and weight-only steps write no file (the engine compresses
        # weights itself); every other step can be replayed
        no_file = spec.kind in ("runtime", "weights")
        assert (spec.apply is None) == no_file == (spec.replay is None)


def test_only_static_calibration_depends_on_the_case_bindings() -> None:
    assert parse_variant("int8-static").depends_on_bindings
    assert parse_variant("distilled-3l+int8-static+bf16").depends_on_bindings
    assert not parse_variant("pruned-unstructured-50+int8-dynamic+fp16").depends_on_bindings
    assert not parse_variant("fp32").depends_on_bindings
    assert "calibration_bindings" not in step_recipe("K", parse_step("int8-dynamic"), ("a=1",))


@pytest.fixture
def placeholder_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tool versions as placeholders, so that keys do not depend on what is installed."""
    monkeypatch.setattr(artifacts, "package_version", lambda name: f"<{name}>")


def _key(model: str, variant: str, bindings: tuple[str, ...] = ()) -> str:
    """The cache key ``build`` gives ``variant``, computed without building."""
    name = parse_variant(variant).artifact_name
    if name == "fp32":
        return artifacts._recipe_key(base_recipe(model))
    parent, _, last = name.rpartition("+")
    data = step_recipe(_key(model, parent or "fp32", bindings), parse_step(last), bindings)
    return artifacts._recipe_key(data)


# Computed once with commit 833ef1e's code (tool versions replaced by "<name>"): a changed
# recipe dict or key means every cached artifact is rebuilt and stored figures lose their
# artifact identity.
OLD_KEYS = {
    ("tiny-mlp", "fp32", ()): "6db041b750e7c03fa0c187bc1fe41b1edb9ef79d7151d3f82b13c00370d3f869",
    ("minilm-l6", "fp32", ()): "6c3f6d7255269cf4d8b4872b0bb5fb401f6d3b40210b761f27d78035df4e96e8",
    ("minilm-l6", "int8-dynamic+fp16", ()):
        "8dd9b3c6eee38eebb58384c7d93ec1facdfe5373a5c7cb22f1f10e7954817c45",
    ("tiny-mlp", "pruned-unstructured-50+int8-static", ()):
        "590cf45106754c3249a307059a9d19a3ce952cf5d97741fc505561ff4eac9fd4",
    ("tiny-mlp", "pruned-unstructured-50+int8-static", ("height=32", "batch=1")):
        "1aebec24192d1ad25c22f0c20c8157729752ffee348647650d1809e2b4d4a1c8",
    ("tiny-bert", "distilled-2l+int8-dynamic+bf16", ()):
        "188a163797dae084bb38676e94e007b89d47374c6914e0d0b5894cc6d359b204",
    ("minilm-l6", "distilled-3l+int8-static+bf16", ("seq=64", "batch=2")):
        "46ea7f8fa3e81f71d4f3ae4a0c5b90d96f2449592a9f2076b28dcfc2c31a10e9",
}  # fmt: skip


@pytest.mark.usefixtures("placeholder_versions")
def test_recipes_and_keys_are_those_of_the_previous_release() -> None:
    assert base_recipe("tiny-mlp") == {
        "exporter": "torch.onnx.export(dynamo=False)", "format": 3, "model": "tiny-mlp",
        "opset": 17, "source": "tiny-mlp-v1:16x64x8:seed0", "torch": "<torch>",
        "variant": "fp32",
    }  # fmt: skip
    assert base_recipe("minilm-l6")["source"] == (
        "minilm-l6:953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
        ":53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    )
    tools = {"format": 3, "nncf": "<nncf>", "onnxruntime": "<onnxruntime>", "torch": "<torch>"}
    assert step_recipe("PARENTKEY", parse_step("pruned-unstructured-50")) == {
        **tools, "params": {"amount": 0.5}, "parent": "PARENTKEY", "revision": 2,
        "step": "pruned-unstructured-50",
    }  # fmt: skip
    assert step_recipe("PARENTKEY", parse_step("distilled-2l")) == {
        **tools, "params": {"layers": 2}, "parent": "PARENTKEY", "step": "distilled-2l",
    }  # fmt: skip
    assert step_recipe("P", parse_step("int8-static"), ("b=2", "a=1")) == {
        **tools, "params": {}, "parent": "P", "step": "int8-static",
        "calibration_bindings": ["a=1", "b=2"],
    }  # fmt: skip
    for (model, variant, bindings), key in OLD_KEYS.items():
        assert _key(model, variant, bindings) == key, (model, variant, bindings)


@pytest.mark.usefixtures("placeholder_versions")
def test_a_composed_build_has_the_previous_release_keys(tmp_path: Path) -> None:
    artifact = build_artifact("tiny-mlp", "pruned-unstructured-50+int8-dynamic+fp16", tmp_path)
    assert artifact.key == "9d653cfee1a490d364ef02ca7a20b37211c46f3c065f07674be1b14f1760aed3"
    assert artifact.lineage["parent"] == _key("tiny-mlp", "pruned-unstructured-50")
    fp32 = build_artifact("tiny-mlp", "fp32", tmp_path)
    assert fp32.key == OLD_KEYS[("tiny-mlp", "fp32", ())]
    assert [link["step"] for link in artifact.lineage["chain"]] == [
        "pruned-unstructured-50", "int8-dynamic",
    ]  # fmt: skip


def _imports(path: Path) -> set[str]:
    """Every module a source file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_recipes_cache_and_models_import_in_one_direction() -> None:
    root = Path(harness.__file__).parent
    assert not {"harness.optimize.artifacts", "harness.optimize.steps"} & _imports(
        root / "optimize" / "recipes.py"
    )
    assert "harness.optimize.recipes" not in _imports(root / "optimize" / "artifacts.py")
    for path in [*(root / "optimize").glob("*.py"), *(root / "models").glob("*.py")]:
        assert not any(n.startswith("harness.worker") for n in _imports(path)), path
    for path in (root / "models").glob("*.py"):
        assert not any(n.startswith("harness.optimize") for n in _imports(path)), path
