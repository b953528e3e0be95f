"""Output fidelity of a variant against the fp32 reference of the same model.

The reference is the fp32 ONNX artifact run by ONNX Runtime on the CPU over the held-out
evaluation set, cached next to the artifact. Metrics, by the model's task:

* embedding / regression: mean cosine similarity of each output row to its reference row
  (the fp32 metric is 1.0), plus top-1 nearest-neighbour agreement within the evaluation set;
* classifier: accuracy on the true labels, and top-1 agreement with the reference predictions;
  the fp32 metric is the reference's own accuracy.

A variant passes when it keeps at least ``min_ratio`` (default 0.99, MLPerf's "99%") of the
fp32 metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

DEFAULT_MIN_RATIO = 0.99


@dataclass(frozen=True)
class Fidelity:
    metric: str
    value: float
    reference: float
    agreement: float
    agreement_metric: str

    @property
    def ratio(self) -> float:
        return self.value / self.reference if self.reference else 0.0


def chunks(inputs: Mapping[str, np.ndarray], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Split evaluation rows into batches of exactly ``batch_size`` (static-shape backends);
    the last batch is filled up with rows from the start and the filler is dropped later."""
    rows = len(next(iter(inputs.values())))
    padded = -(-rows // batch_size) * batch_size
    index = np.arange(padded) % rows
    return [
        {
            name: np.ascontiguousarray(array[index[i : i + batch_size]])
            for name, array in inputs.items()
        }
        for i in range(0, padded, batch_size)
    ]


Outputs = dict[str, np.ndarray]


def run_batches(
    infer: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
    batches: list[dict[str, np.ndarray]],
    rows: int | None = None,
) -> Outputs:
    """Every output of ``infer`` over ``batches``, concatenated along axis 0 per output and cut
    to ``rows`` (the filler rows of :func:`chunks`) when given."""
    results = [infer(batch) for batch in batches]
    return {
        name: np.concatenate([np.asarray(r[name]) for r in results])[:rows] for name in results[0]
    }


def _normalise(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1).astype(np.float64)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def mean_cosine(outputs: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(np.sum(_normalise(outputs) * _normalise(reference), axis=1)))


def nearest_neighbour_agreement(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Share of rows whose nearest other row (by cosine) is the same under both outputs."""

    def neighbours(x: np.ndarray) -> np.ndarray:
        unit = _normalise(x)
        sims = unit @ unit.T
        np.fill_diagonal(sims, -np.inf)
        return np.argmax(sims, axis=1)

    return float(np.mean(neighbours(outputs) == neighbours(reference)))


def score(
    task: str, outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None
) -> Fidelity:
    """Fidelity of ``outputs`` against the fp32 ``reference`` on the evaluation rows.

    A classifier without true labels (a user's model) is scored by top-1 agreement with the
    reference; everything else by cosine."""
    if task == "classifier" and labels is not None:
        predicted, expected = outputs.argmax(axis=1), reference.argmax(axis=1)
        return Fidelity(
            metric="accuracy",
            value=float(np.mean(predicted == labels)),
            reference=float(np.mean(expected == labels)),
            agreement=float(np.mean(predicted == expected)),
            agreement_metric="top1_agreement",
        )
    if task == "classifier":
        agreement = float(np.mean(outputs.argmax(axis=1) == reference.argmax(axis=1)))
        return Fidelity("top1_agreement", agreement, 1.0, agreement, "top1_agreement")
    return Fidelity(
        metric="cosine",
        value=mean_cosine(outputs, reference),
        reference=1.0,
        agreement=nearest_neighbour_agreement(outputs, reference),
        agreement_metric="nn_agreement",
    )


def _matched(outputs: Outputs, reference: Outputs) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Output arrays paired with the reference's by name, else by position (runtimes may
    rename outputs)."""
    if set(outputs) >= set(reference):
        return [(name, outputs[name], ref) for name, ref in reference.items()]
    return [(n, o, r) for (n, r), o in zip(reference.items(), outputs.values(), strict=False)]


def score_outputs(
    task: str, outputs: Outputs, reference: Outputs, labels: np.ndarray | None
) -> tuple[Fidelity, dict[str, float]]:
    """The task's fidelity on the first output, and the cosine of every output to its
    reference. With several outputs the metric is the worst output's cosine: a model that keeps
    its first output but breaks another does not pass."""
    pairs = _matched(outputs, reference)
    per_output = {
        name: mean_cosine(out, ref) if out.shape == ref.shape else 0.0 for name, out, ref in pairs
    }
    name, first, first_ref = pairs[0]
    if first.shape != first_ref.shape:
        raise ValueError(f"output {name!r}: shape {first.shape}, reference {first_ref.shape}")
    fidelity = score(task, first, first_ref, labels)
    if fidelity.metric == "cosine" and len(pairs) > 1:
        fidelity = replace(fidelity, value=min(per_output.values()))
    return fidelity, per_output


def onnx_outputs(
    path: Path, batches: list[dict[str, np.ndarray]], rows: int | None = None
) -> Outputs:
    """Every output of an ONNX file on ONNX Runtime CPU over ``batches``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]

    def infer(batch: dict[str, np.ndarray]) -> Outputs:
        return dict(zip(outputs, session.run(None, {n: batch[n] for n in names}), strict=True))

    return run_batches(infer, batches, rows)


def reference_outputs(
    fp32_onnx: Path, batches: list[dict[str, np.ndarray]], rows: int | None, cache_file: Path
) -> Outputs:
    """The fp32 artifact's outputs on ONNX Runtime CPU, computed once and cached (.npz)."""
    if cache_file.is_file():
        with np.load(cache_file) as cached:  # keyed by position: names may hold any character
            return {str(n): cached[f"o{i}"] for i, n in enumerate(cached["names"])}
    result = onnx_outputs(fp32_onnx, batches, rows)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    staging = cache_file.with_suffix(f".{id(result)}.tmp.npz")
    arrays: dict[str, np.ndarray] = {f"o{i}": a for i, a in enumerate(result.values())}
    arrays["names"] = np.array(list(result))
    try:
        np.savez(staging, allow_pickle=False, **arrays)
        staging.replace(cache_file)
    finally:  # a full disk or an interrupt (SIGTERM unwinds the worker) leaves no partial file
        staging.unlink(missing_ok=True)
    return result
