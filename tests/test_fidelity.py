from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.measure.fidelity import (
    chunks,
    join,
    mean_cosine,
    nearest_neighbour_agreement,
    reference_outputs,
    run_batches,
    score,
    score_outputs,
)
from harness.models.corpus import DOMAINS, sentences
from harness.optimize.artifacts import build, cache_root


def test_corpus_splits_are_disjoint_fixed_and_cover_every_domain() -> None:
    cal, train, ev = (set(sentences(s)) for s in ("calibration", "training", "evaluation"))
    assert not (cal & train or cal & ev or train & ev)
    assert len(cal) + len(train) + len(ev) == len(sentences("all")) >= 290
    assert len(ev) == 20 * len(DOMAINS) and len(cal) == 16 * len(DOMAINS)
    assert sentences("evaluation")[0] == sentences("evaluation")[0]  # cached, deterministic


def test_chunks_have_the_static_batch_shape_and_filler_is_dropped() -> None:
    inputs = {"x": np.arange(10, dtype=np.float32).reshape(5, 2)}
    batches = chunks(inputs, 2)
    assert [b["x"].shape for b in batches] == [(2, 2)] * 3
    out = join(run_batches(lambda b: {"y": b["x"] * 2, "z": b["x"][:, :1]}, batches), 5)
    np.testing.assert_array_equal(out["y"], inputs["x"] * 2)
    np.testing.assert_array_equal(out["z"], inputs["x"][:, :1])


def test_embedding_fidelity() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((40, 16))
    assert mean_cosine(ref * 3.0, ref) == pytest.approx(1.0)  # scale does not matter
    assert nearest_neighbour_agreement(ref, ref) == 1.0
    noisy = ref + rng.standard_normal(ref.shape) * 0.5
    result = score("embedding", noisy, ref, None)
    assert result.metric == "cosine" and result.reference == 1.0
    assert 0.8 < result.value < 0.95 and result.ratio == result.value
    assert 0.0 <= result.agreement <= 1.0


def test_classifier_fidelity_is_relative_to_the_reference_accuracy() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    ref = np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1, 2, 1]]  # 9 of 10 right
    out = np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1, 0, 1]]  # 8 of 10 right
    result = score("classifier", out, ref, labels)
    assert (result.metric, result.value, result.reference) == ("accuracy", 0.8, 0.9)
    assert result.ratio == pytest.approx(0.8 / 0.9)
    assert result.agreement == 0.9


def test_reference_outputs_are_cached(tmp_path: Path) -> None:
    artifact = build("tiny-mlp", "fp32", cache_root())
    inputs = {"x": np.random.default_rng(3).standard_normal((7, 16)).astype(np.float32)}
    cache = tmp_path / "ref.npz"
    first = reference_outputs(artifact.onnx_path, chunks(inputs, 4), cache)
    assert [list(b) for b in first.batches] == [["y"], ["y"]] and cache.is_file()
    assert join(first.batches, 7)["y"].shape == (7, 8) and first.unstable == {}
    again = reference_outputs(Path("/nonexistent.onnx"), chunks(inputs, 4), cache)
    np.testing.assert_array_equal(join(again.batches)["y"], join(first.batches)["y"])


def test_several_outputs_score_as_the_worst_one() -> None:
    rng = np.random.default_rng(1)
    ref = {"a": rng.standard_normal((20, 8)), "b": rng.standard_normal((20, 4))}
    out = {"a": ref["a"].copy(), "b": -ref["b"]}  # the second output is broken
    scores = score_outputs("generic", [out], [ref], None)
    per_output, fidelity = scores.per_output, scores.fidelity
    assert per_output["a"] == pytest.approx(1.0) and per_output["b"] == pytest.approx(-1.0)
    assert fidelity is not None and fidelity.value == pytest.approx(-1.0)
    assert fidelity.agreement == 1.0
    renamed = {"x": out["a"], "y": out["b"]}  # runtimes may rename outputs: matched by position
    assert score_outputs("generic", [renamed], [ref], None).per_output == per_output


def test_a_classifier_without_labels_is_scored_by_agreement() -> None:
    ref = np.eye(3)[[0, 1, 2, 0]]
    out = np.eye(3)[[0, 1, 2, 1]]
    result = score("classifier", out, ref, None)
    assert (result.metric, result.value, result.reference) == ("top1_agreement", 0.75, 1.0)


def test_integer_and_boolean_outputs_score_by_exact_agreement() -> None:
    ref = {"cls": np.array([0, 0, 1, 2]), "flag": np.zeros((4, 8), dtype=bool)}
    same = score_outputs("generic", [ref], [ref], None)
    assert same.fidelity is not None and same.fidelity.value == 1.0
    assert same.fidelity.metric == "exact_agreement"
    out = {"cls": np.array([0, 0, 1, 1]), "flag": ref["flag"].copy()}
    out["flag"][0, :2] = True
    scores = score_outputs("generic", [out], [ref], None)
    assert scores.per_output == {"cls": 0.75, "flag": pytest.approx(1 - 2 / 32)}
    assert scores.fidelity is not None and scores.fidelity.value == 0.75


def test_two_zero_vectors_agree_and_zero_against_nonzero_does_not() -> None:
    zero = np.zeros((3, 4), dtype=np.float32)
    assert mean_cosine(zero, zero) == 1.0
    assert mean_cosine(zero, np.ones((3, 4))) == 0.0


def test_variable_length_outputs_are_compared_per_batch() -> None:
    ref = [{"idx": np.zeros((2, 3), np.int64)}, {"idx": np.ones((2, 5), np.int64)}]
    scores = score_outputs("generic", ref, ref, None)
    assert scores.fidelity is not None and scores.fidelity.value == 1.0
    shorter = [ref[0], {"idx": np.ones((2, 4), np.int64)}]  # a different length: no match there
    assert score_outputs("generic", shorter, ref, None).per_output["idx"] == 0.5


def test_nan_in_the_reference_is_not_scored_with_the_reason() -> None:
    ref = {"y": np.array([[np.nan, 1.0], [2.0, 3.0]]), "z": np.ones((2, 2))}
    scores = score_outputs("generic", [ref], [ref], None)
    assert scores.unscored == {"y": "the reference output 'y' has NaN"}
    assert scores.fidelity is not None and scores.fidelity.value == 1.0
    alone = score_outputs("generic", [{"y": ref["y"]}], [{"y": ref["y"]}], None)
    assert alone.fidelity is None and alone.note == "the reference output 'y' has NaN"
    inf = {"y": np.array([np.inf, 1.0])}
    assert "Inf" in score_outputs("generic", [inf], [inf], None).note


def test_a_nan_in_the_candidate_only_scores_that_item_zero() -> None:
    ref = {"y": np.ones((4, 3))}
    out = {"y": ref["y"].copy()}
    out["y"][0, 0] = np.nan
    assert score_outputs("generic", [out], [ref], None).per_output["y"] == 0.75


def test_an_output_the_reference_cannot_reproduce_is_not_scored() -> None:
    ref = {"noise": np.ones((2, 3)), "y": np.ones((2, 3))}
    unstable = {"noise": "the reference output 'noise' differs between two runs of one batch"}
    scores = score_outputs("generic", [ref], [ref], None, unstable=unstable)
    assert scores.unscored == unstable and list(scores.per_output) == ["y"]
