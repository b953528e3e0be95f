"""Trustworthy figures on real models (issue 12): artifact identity over external data, fed
shapes, fidelity by output kind, kept samples, gate coverage, strict files. Every model is built
here (tests/real_models.py)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from harness.errors import ConfigError
from harness.models import get_model
from harness.optimize.artifacts import build
from tests import real_models


def test_external_data_in_a_sub_folder_is_copied_and_hashed(tmp_path: Path) -> None:
    graph = real_models.external(tmp_path, 0, "weights/w.bin")
    artifact = build(f"onnx:{graph}", "fp32", tmp_path / "cache")
    copied = Path(artifact.directory) / "weights" / "w.bin"
    assert copied.read_bytes() == (tmp_path / "weights" / "w.bin").read_bytes()
    assert artifact.size_mb * 2**20 == graph.stat().st_size + copied.stat().st_size
    onnx.load(str(artifact.onnx_path))  # loads its external data from the copy


def test_new_weights_under_the_same_graph_are_a_new_artifact(tmp_path: Path) -> None:
    graph = real_models.external(tmp_path, 0, "w.bin")
    graph_bytes = graph.read_bytes()
    first = build(f"onnx:{graph}", "fp32", tmp_path / "cache")
    real_models.external(tmp_path, 1, "w.bin")
    graph.write_bytes(graph_bytes)  # the very same graph file: only the weights changed
    second = build(f"onnx:{graph}", "fp32", tmp_path / "cache")
    assert (first.sha256, first.key) != (second.sha256, second.key)
    weights = onnx.load(str(second.onnx_path)).graph.initializer[0]
    expected = onnx.load(str(graph)).graph.initializer[0]
    assert (numpy_helper.to_array(weights) == numpy_helper.to_array(expected)).all()


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "a/../../x.bin"])
def test_an_external_location_outside_the_model_folder_is_refused(
    tmp_path: Path, location: str
) -> None:
    graph = real_models.external(tmp_path / "m", 0, "w.bin")
    model = onnx.load(str(graph), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(graph))
    with pytest.raises(ConfigError, match="external data location") as info:
        get_model(f"onnx:{graph}")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists()


# --- what ran is what the row says ---------------------------------------------------------


def test_a_named_axis_0_that_is_not_the_batch_is_bound_not_batched(tmp_path: Path) -> None:
    graph = f"onnx:{real_models.nonbatch_axis0(tmp_path)}"
    bound = get_model(graph, ("n_queries=16", "n_points=64"))
    assert bound.shapes(4, None) == {"points": (4, 64, 3), "queries": (16, 3)}
    arrays = bound.example_inputs(4, None)
    assert {n: a.shape for n, a in arrays.items()} == {"points": (4, 64, 3), "queries": (16, 3)}
    whole = get_model(graph, ("queries=16x3", "n_points=64"))
    assert whole.shapes(4, None)["queries"] == (16, 3)  # not 4x3
    for batches in (bound.batches("evaluation", 4, None)[0],):
        assert {b["queries"].shape for b in batches} == {(16, 3)}
    with pytest.raises(ConfigError, match="--dim n_queries="):
        get_model(graph, ("n_points=64",)).shapes(4, None)


def test_the_row_shape_is_built_from_the_fed_arrays() -> None:
    from harness.case import Case
    from harness.finalize import fed_shape_text

    case = Case("onnx:pq.onnx", "fp32", "onnxruntime", 4, None, 1, bindings=("queries=16x3",))
    fed = {"points": (4, 64, 3), "queries": (16, 3)}
    assert fed_shape_text(case, fed) == "b4-points=4x64x3-queries=16x3"
    zoo = Case("minilm-l6", "fp32", "onnxruntime", 8, 128, 1)
    assert fed_shape_text(zoo, {"input_ids": (8, 128)}) == zoo.shape == "b8s128"
