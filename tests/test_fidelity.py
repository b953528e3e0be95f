from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.measure.fidelity import (
    chunks,
    mean_cosine,
    nearest_neighbour_agreement,
    reference_outputs,
    run_batches,
    score,
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
    out = run_batches(lambda b: b["x"] * 2, inputs, 2)
    np.testing.assert_array_equal(out, inputs["x"] * 2)


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
    first = reference_outputs(artifact.onnx_path, inputs, tmp_path / "ref.npy")
    assert first.shape == (7, 8) and (tmp_path / "ref.npy").is_file()
    np.testing.assert_array_equal(
        reference_outputs(Path("/nonexistent.onnx"), inputs, tmp_path / "ref.npy"), first
    )
