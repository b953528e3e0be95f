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
from dataclasses import dataclass
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


def run_batches(
    infer: Callable[[dict[str, np.ndarray]], np.ndarray],
    inputs: Mapping[str, np.ndarray],
    batch_size: int,
) -> np.ndarray:
    """The first output of ``infer`` over every evaluation row, filler rows removed."""
    rows = len(next(iter(inputs.values())))
    return np.concatenate([infer(batch) for batch in chunks(inputs, batch_size)])[:rows]


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
    """Fidelity of ``outputs`` against the fp32 ``reference`` on the evaluation rows."""
    if task == "classifier":
        if labels is None:
            raise ValueError("a classifier's fidelity needs the evaluation labels")
        predicted, expected = outputs.argmax(axis=1), reference.argmax(axis=1)
        return Fidelity(
            metric="accuracy",
            value=float(np.mean(predicted == labels)),
            reference=float(np.mean(expected == labels)),
            agreement=float(np.mean(predicted == expected)),
            agreement_metric="top1_agreement",
        )
    return Fidelity(
        metric="cosine",
        value=mean_cosine(outputs, reference),
        reference=1.0,
        agreement=nearest_neighbour_agreement(outputs, reference),
        agreement_metric="nn_agreement",
    )


def onnx_outputs(path: Path, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The first output of an ONNX file on ONNX Runtime CPU over every row of ``inputs``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return run_batches(lambda batch: session.run(None, {n: batch[n] for n in names})[0], inputs, 16)


def reference_outputs(
    fp32_onnx: Path, inputs: Mapping[str, np.ndarray], cache_file: Path
) -> np.ndarray:
    """The fp32 artifact's outputs on ONNX Runtime CPU, computed once and cached."""
    if cache_file.is_file():
        cached: np.ndarray = np.load(cache_file)
        return cached
    result = onnx_outputs(fp32_onnx, inputs)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    staging = cache_file.with_suffix(f".{id(result)}.tmp.npy")
    np.save(staging, result)
    staging.replace(cache_file)
    return result
