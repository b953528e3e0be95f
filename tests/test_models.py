"""The zoo's real model: minilm-l6 is the genuine all-MiniLM-L6-v2, and its ONNX export agrees;
every model declares whether it takes shape bindings, is a user's ONNX file, knows its size."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from harness.errors import ConfigError
from harness.models import get_model
from harness.models.corpus import sentences
from harness.models.minilm import model_dir
from harness.optimize.artifacts import build, cache_root


def test_zoo_models_take_no_bindings_and_are_exported_from_torch() -> None:
    model = get_model("tiny-mlp")
    assert not model.accepts_bindings and model.onnx_file is None and model.params_m is None
    assert model.bind(("height=32",)) is model
    assert get_model("tiny-mlp", ("height=32",)).shapes(4, None) == {"x": (4, 16)}


def _onnx_file(path: Path) -> Path:
    """y = relu(x) * s: input x[n, k] with two dynamic axes, one parameter (the scale s)."""
    scale = helper.make_tensor("s", TensorProto.FLOAT, (), [0.5])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "s"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ("n", "k"))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ("n", "k"))],
        [scale],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_an_onnx_file_takes_bindings_and_is_its_own_artifact(tmp_path: Path) -> None:
    path = _onnx_file(tmp_path / "m.onnx")
    model = get_model(f"onnx:{path}")
    assert model.accepts_bindings and model.onnx_file == path
    assert model.params_m == pytest.approx(1e-6)
    with pytest.raises(ConfigError, match="axis 1 \\('k'\\) is dynamic and has no binding"):
        model.shapes(5, None)
    bound = get_model(f"onnx:{path}", ("k=7",))
    assert bound is not model and not model.bindings  # a bound copy; the cached model unchanged
    assert bound.shapes(5, None) == {"x": (5, 7)}  # the batch axis is the case's


@pytest.fixture(scope="module")
def minilm_embeddings() -> tuple[np.ndarray, np.ndarray]:
    import torch

    model = get_model("minilm-l6")
    inputs = model.example_inputs(4, 128)
    with torch.inference_mode():
        ours = model.build_torch()(*(torch.from_numpy(inputs[n]) for n in model.input_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sentence-transformers' own deprecation notices
        from sentence_transformers import SentenceTransformer

        reference = SentenceTransformer(str(model_dir()), device="cpu").encode(
            list(sentences()[:4])
        )
    return ours.numpy(), np.asarray(reference)


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm_embeddings: tuple) -> None:
    ours, reference = minilm_embeddings
    assert ours.shape == (4, 384)
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_minilm_inputs_are_real_padded_sentences() -> None:
    inputs = get_model("minilm-l6").example_inputs(8, 128)
    assert inputs["input_ids"].shape == (8, 128) and inputs["input_ids"].dtype == np.int64
    lengths = inputs["attention_mask"].sum(axis=1)
    assert (lengths > 5).all() and (lengths < 128).all()
    assert (inputs["input_ids"][:, 0] == 101).all()  # [CLS]


@pytest.mark.slow
def test_minilm_onnx_export_agrees_with_torch(minilm_embeddings: tuple) -> None:
    import onnxruntime as ort

    artifact = build("minilm-l6", "fp32", cache_root())
    assert artifact.params_m == pytest.approx(22.71, abs=0.01)
    assert artifact.size_mb > 80 and len(artifact.sha256) == 64
    session = ort.InferenceSession(str(artifact.onnx_path), providers=["CPUExecutionProvider"])
    inputs = get_model("minilm-l6").example_inputs(4, 128)
    (onnx_out,) = session.run(None, inputs)
    np.testing.assert_allclose(onnx_out, minilm_embeddings[0], atol=1e-5)
    # Dynamic axes: another batch and sequence length run on the same file.
    (other,) = session.run(None, get_model("minilm-l6").example_inputs(3, 64))
    assert other.shape == (3, 384)
    assert build("minilm-l6", "fp32", cache_root()) == artifact  # cached, not rebuilt


@pytest.mark.slow
def test_digits_cnn_is_trained_on_real_labels_and_cached() -> None:
    from harness.models.digits_cnn import _split

    model = get_model("digits-cnn")
    splits = [set(_split(s).tolist()) for s in ("training", "calibration", "evaluation")]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    import torch

    module = model.build_torch()
    with torch.inference_mode():
        logits = module(torch.from_numpy(model.evaluation_inputs(None)["image"])).numpy()
    labels = model.evaluation_labels()
    assert labels is not None and logits.shape == (len(labels), 10)
    assert np.mean(logits.argmax(axis=1) == labels) > 0.95
    again = model.build_torch()  # loaded from the cache: identical weights
    assert all(
        torch.equal(a, b)
        for a, b in zip(module.state_dict().values(), again.state_dict().values(), strict=True)
    )


@pytest.mark.slow
def test_bert_base_has_the_bert_base_architecture() -> None:
    module = get_model("bert-base").build_torch()
    assert len(module.encoder.encoder.layer) == 12
    assert sum(p.numel() for p in module.parameters()) / 1e6 == pytest.approx(108.9, abs=0.5)
