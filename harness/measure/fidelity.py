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
PerBatch = list[Outputs]  # every output of every batch, as the runtime returned it

# Relative-to-1 tolerance of the reference's self-check: a second fp32 run on the same batch
# must agree to this cosine (float outputs; integers and booleans must be equal).
REPRODUCIBLE_COSINE = 1 - 1e-6


def run_batches(
    infer: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
    batches: list[dict[str, np.ndarray]],
) -> PerBatch:
    """Every output of ``infer`` on each of ``batches``, kept per batch (never concatenated:
    an output whose length depends on the data has no common axis across batches)."""
    return [{name: np.asarray(a) for name, a in infer(batch).items()} for batch in batches]


def join(per_batch: PerBatch, rows: int | None = None) -> Outputs:
    """Outputs concatenated along axis 0 and cut to ``rows`` (the filler rows of
    :func:`chunks`), for outputs whose shape beyond axis 0 is the same in every batch."""
    return {
        name: np.concatenate([np.asarray(b[name]) for b in per_batch])[:rows]
        for name in per_batch[0]
    }


def _row_cosines(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine of each row (axis 0) of ``outputs`` to the same row of ``reference``, in float64.
    Identical rows and two all-zero rows agree (1.0); a zero row against a non-zero one does
    not (0.0); a row with NaN/Inf in ``outputs`` scores 0.0."""
    a = outputs.reshape(len(outputs), -1).astype(np.float64)
    b = reference.reshape(len(reference), -1).astype(np.float64)
    finite = np.isfinite(a).all(axis=1)
    a = np.where(np.isfinite(a), a, 0.0)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(a * b, axis=1) / (na * nb)
    cos = np.where(both_zero, 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
    cos = np.where((a == b).all(axis=1), 1.0, cos)  # identical rows: exactly 1, not 1 - 2e-16
    return np.where(finite, np.clip(cos, -1.0, 1.0), 0.0)


def _normalise(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1).astype(np.float64)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def mean_cosine(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Mean over rows (axis 0) of each row's cosine to its reference row (zero-vs-zero: 1)."""
    return float(np.mean(_row_cosines(outputs, reference)))


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


def output_kind(array: np.ndarray) -> str:
    """How an output is compared: ``float`` (cosine per item) or ``exact`` (integers, booleans,
    strings: share of equal elements)."""
    return "float" if array.dtype.kind in "fc" else "exact"


def _matched(outputs: Outputs, reference: Outputs) -> list[tuple[str, str]]:
    """(reference name, output name) pairs: by name, else by position (runtimes may rename
    outputs)."""
    if set(outputs) >= set(reference):
        return [(name, name) for name in reference]
    return list(zip(reference, outputs, strict=False))


def _batched(name: str, outputs: PerBatch, reference: PerBatch) -> bool:
    """Every batch's output has the reference's shape and the same shape beyond axis 0: the
    rows can be joined across batches."""
    shapes = {ref[name].shape[1:] for ref in reference}
    return (
        all(
            ref[name].ndim >= 1 and ref[name].shape == out[name].shape
            for ref, out in zip(reference, outputs, strict=True)
        )
        and len(shapes) == 1
    )


def _item_scores(kind: str, out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """One score per item (row along axis 0; a 0-d array is one item) in [-1, 1]: cosine for
    float outputs, the share of equal elements for exact ones; a shape mismatch scores 0."""
    if out.shape != ref.shape:
        return np.zeros(max(len(ref) if ref.ndim else 1, 1))
    if ref.ndim == 0 or len(ref) == 0:
        out, ref = out.reshape(1, -1), ref.reshape(1, -1)
    if kind == "float":
        return _row_cosines(out, ref)
    equal = out.reshape(len(out), -1) == ref.reshape(len(ref), -1)
    return equal.mean(axis=1) if equal.shape[1] else np.ones(len(equal))


def unscorable(name: str, reference: PerBatch) -> str | None:
    """Why an output cannot be scored against this reference (NaN or Inf in it), else None."""
    for batch in reference:
        ref = batch[name]
        if output_kind(ref) == "float" and not np.isfinite(ref).all():
            what = "NaN" if np.isnan(ref).any() else "Inf"
            return f"the reference output {name!r} has {what}"
    return None


@dataclass(frozen=True)
class Scores:
    """The fidelity of a run against its reference.

    fidelity:   the overall score (None: no output could be scored, ``unscored`` says why);
    per_output: each scored output's mean item score (cosine, or share of equal elements);
    unscored:   output name -> why it is not scored;
    coverage:   empty, or which part of the evaluation set was scored and why."""

    fidelity: Fidelity | None
    per_output: dict[str, float]
    unscored: dict[str, str]
    coverage: str = ""  # set when only part of the evaluation set was scored, and why

    @property
    def note(self) -> str:
        return "; ".join(self.unscored.values())


def score_outputs(
    task: str,
    outputs: PerBatch,
    reference: PerBatch,
    labels: np.ndarray | None,
    rows: int | None = None,
    unstable: Mapping[str, str] | None = None,
) -> Scores:
    """Score every output of every batch against the reference's same batch.

    By output kind: float outputs by cosine per item (row along axis 0; two zero vectors agree),
    integer and boolean outputs by exact agreement; an output whose shape differs from the
    reference's in a batch scores 0 there; variable-length outputs are compared batch by batch.
    Outputs with NaN/Inf in the reference, or listed in ``unstable`` (the reference does not
    reproduce itself), are not scored. ``rows`` drops the filler rows of :func:`chunks` from
    batched outputs. The overall value is the worst scored output's; a classifier's first
    output keeps its task metric (accuracy with labels, else top-1 agreement)."""
    pairs = _matched(outputs[0], reference[0])
    renamed = [{r: b[o] for r, o in pairs} for b in outputs]
    unscored: dict[str, str] = {}
    per_output: dict[str, float] = {}
    kinds: dict[str, str] = {}
    for name, _ in pairs:
        reason = (unstable or {}).get(name) or unscorable(name, reference)
        if reason:
            unscored[name] = reason
            continue
        kinds[name] = kind = output_kind(reference[0][name])
        if _batched(name, renamed, reference) and rows is not None:
            joined = join([{name: b[name]} for b in renamed], rows)[name]
            joined_ref = join([{name: b[name]} for b in reference], rows)[name]
            items = _item_scores(kind, joined, joined_ref)
        else:
            items = np.concatenate(
                [_item_scores(kind, o[name], r[name]) for o, r in zip(renamed, reference,
                                                                      strict=True)]
            )  # fmt: skip
        per_output[name] = float(np.mean(items))
    if not per_output:
        return Scores(None, per_output, unscored)
    first = next(iter(per_output))
    value = min(per_output.values())
    metric = {frozenset({"float"}): "cosine", frozenset({"exact"}): "exact_agreement"}.get(
        frozenset(kinds.values()), "worst_output"
    )
    fidelity = Fidelity(metric, value, 1.0, value, metric)
    if kinds[first] == "float" and _batched(first, renamed, reference):
        joined = join([{first: b[first]} for b in renamed], rows)[first]
        joined_ref = join([{first: b[first]} for b in reference], rows)[first]
        if joined_ref.ndim >= 2 and (task == "classifier" or len(joined_ref) > 1):
            task_score = score(task, joined, joined_ref, labels)
            if task_score.metric != "cosine":
                fidelity = task_score
            else:
                fidelity = replace(fidelity, agreement=task_score.agreement,
                                   agreement_metric=task_score.agreement_metric)  # fmt: skip
    return Scores(fidelity, per_output, unscored)


def onnx_outputs(path: Path, batches: list[dict[str, np.ndarray]]) -> PerBatch:
    """Every output of an ONNX file on ONNX Runtime CPU, per batch of ``batches``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]

    def infer(batch: dict[str, np.ndarray]) -> Outputs:
        return dict(zip(outputs, session.run(None, {n: batch[n] for n in names}), strict=True))

    return run_batches(infer, batches)


@dataclass(frozen=True)
class Reference:
    """The fp32 reference: outputs per batch, and the outputs it does not reproduce itself
    (name -> reason; they are not scored)."""

    batches: PerBatch
    unstable: dict[str, str]


def _unstable(first: Outputs, again: Outputs) -> dict[str, str]:
    """Outputs of a second reference run on the same batch that differ from the first: beyond
    :data:`REPRODUCIBLE_COSINE` for float outputs, any element for the others."""
    found = {}
    for name, ref in first.items():
        if unscorable(name, [first]) is not None:
            continue  # NaN/Inf: reported as such
        items = _item_scores(output_kind(ref), np.asarray(again[name]), ref)
        limit = REPRODUCIBLE_COSINE if output_kind(ref) == "float" else 1.0
        if items.size and float(items.min()) < limit:
            found[name] = f"the reference output {name!r} differs between two runs of one batch"
    return found


def reference_outputs(
    fp32_onnx: Path, batches: list[dict[str, np.ndarray]], cache_file: Path
) -> Reference:
    """The fp32 artifact's outputs on ONNX Runtime CPU per batch, computed once and cached
    (.npz); the first batch is run twice to find outputs the reference cannot reproduce
    (random ops, uninitialised memory)."""
    if cache_file.is_file():
        with np.load(cache_file) as cached:  # keyed by position: names may hold any character
            names = [str(n) for n in cached["names"]]
            count = int(cached["batches"])
            per_batch = [
                {n: cached[f"b{j}o{i}"] for i, n in enumerate(names)} for j in range(count)
            ]
            unstable = {str(n): str(r) for n, r in zip(cached["unstable"], cached["reasons"],
                                                       strict=True)}  # fmt: skip
        return Reference(per_batch, unstable)
    per_batch = onnx_outputs(fp32_onnx, batches)
    unstable = _unstable(per_batch[0], onnx_outputs(fp32_onnx, batches[:1])[0])
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    staging = cache_file.with_suffix(f".{id(per_batch)}.tmp.npz")
    names = list(per_batch[0])
    arrays: dict[str, np.ndarray] = {
        f"b{j}o{i}": batch[n] for j, batch in enumerate(per_batch) for i, n in enumerate(names)
    }
    arrays["names"] = np.array(names)
    arrays["batches"] = np.array(len(per_batch))
    arrays["unstable"] = np.array(list(unstable), dtype=str)
    arrays["reasons"] = np.array(list(unstable.values()), dtype=str)
    try:
        np.savez(staging, allow_pickle=False, **arrays)
        staging.replace(cache_file)
    finally:  # a full disk or an interrupt (SIGTERM unwinds the worker) leaves no partial file
        staging.unlink(missing_ok=True)
    return Reference(per_batch, unstable)
