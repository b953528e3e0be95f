"""The recipes behind each variant step. Imports torch: load this module lazily (workers only).

Torch recipes take the parent's module and return the changed one plus facts for the lineage;
ONNX recipes rewrite the parent's file. Which recipe serves which step, and how a step is
replayed on the torch side, is registered in :mod:`harness.optimize.steps`. Long recipes
(training) report one-line progress through the ``progress`` callback they are given.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import VariantNotApplicable
from harness.optimize import transformer

STATE_FILE = "torch_state.safetensors"


def _linears(module: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]


_PRUNABLE = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


def prune_unstructured(module: torch.nn.Module, amount: float) -> dict[str, Any]:
    """Zero the ``amount`` smallest-magnitude weights of every Linear and Conv layer (per
    layer)."""
    layers = [m for m in module.modules() if isinstance(m, _PRUNABLE)]
    if not layers:
        raise VariantNotApplicable("unstructured pruning needs Linear or Conv layers; none found")
    zeros = total = 0
    with torch.no_grad():
        for layer in layers:
            weight = layer.weight
            k = round(amount * weight.numel())
            if k == 0:
                continue
            threshold = weight.abs().flatten().kthvalue(k).values
            weight.masked_fill_(weight.abs() <= threshold, 0.0)
            zeros += int((weight == 0).sum())
            total += weight.numel()
    return {
        "weight_sparsity": zeros / total if total else 0.0,
        "pruned_layers": len(layers),
        "conv_layers": sum(not isinstance(m, torch.nn.Linear) for m in layers),
    }


def quantize_dynamic_onnx(source: Path, target: Path) -> dict[str, Any]:
    """ONNX Runtime dynamic quantization: int8 weights of MatMul/Gemm, activations at run time.

    Per-channel weight scales: on minilm-l6 per-tensor scales kept 0.963 mean cosine on the
    training split, per-channel 0.992, at the same speed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(
            source, target, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
            weight_type=QuantType.QInt8,
        )  # fmt: skip
    return {
        "quantizer": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "QInt8",
        "per_channel": True,
    }


def quantize_dynamic_torch(module: torch.nn.Module) -> torch.nn.Module:
    """PyTorch dynamic quantization of every Linear layer, per-channel weight scales like the
    ONNX side: the torch side of int8-dynamic."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        quantized: torch.nn.Module = torch.ao.quantization.quantize_dynamic(
            module, {torch.nn.Linear: qconfig}, dtype=torch.qint8
        )
    return quantized


def save_state(module: torch.nn.Module, directory: Path) -> None:
    from safetensors.torch import save_model

    save_model(module, str(directory / STATE_FILE))


def load_state(module: torch.nn.Module, directory: Path) -> torch.nn.Module:
    from safetensors.torch import load_model

    load_model(module, str(directory / STATE_FILE))
    return module


# Short distillation budgets: minutes on 2 CPU cores for minilm-l6, on the training split.
DISTIL_EPOCHS, DISTIL_LR = 30, 1e-4
RECOVER_EPOCHS, RECOVER_LR = 10, 5e-5


def prune_structured(
    module: torch.nn.Module, model_name: str, amount: float, progress: Callable[[str], None]
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Remove ``amount`` of the heads and FFN neurons of every layer, least important first,
    then recover fidelity by distilling against the unpruned module."""
    from harness.models import get_model

    teacher = copy.deepcopy(module)
    inputs = get_model(model_name).training_inputs(128)
    heads, neurons = transformer.choose_structure(transformer.importance(module, inputs), amount)
    before = sum(p.numel() for p in module.parameters())
    transformer.restructure(module, heads, neurons)
    same_depth = list(range(len(heads)))
    info = transformer.distil(
        module, teacher, inputs, same_depth, RECOVER_EPOCHS, RECOVER_LR, progress
    )
    after = sum(p.numel() for p in module.parameters())
    return module, {
        **info,
        "heads": heads,
        "neurons": neurons,
        "params_removed": 1 - after / before,
    }


def distil_layers(
    teacher: torch.nn.Module, model_name: str, layers: int, progress: Callable[[str], None]
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A student with ``layers`` of the teacher's layers, distilled on the training split."""
    from harness.models import get_model

    depth = len(transformer.encoder_layers(teacher, f"distilled-{layers}l"))
    if layers >= depth:
        raise VariantNotApplicable(
            f"distilled-{layers}l: the teacher has {depth} layers; a student needs fewer"
        )
    keep = transformer.student_layer_indices(depth, layers)
    student = transformer.drop_layers(teacher, keep, f"distilled-{layers}l")
    inputs = get_model(model_name).training_inputs(128)
    # Student layer k stands for the teacher's layers up to the next kept one.
    layer_map = [*(i - 1 for i in keep[1:]), depth - 1]
    info = transformer.distil(
        student, teacher, inputs, layer_map, DISTIL_EPOCHS, DISTIL_LR, progress
    )
    return student, {**info, "kept_layers": keep, "teacher_layers": depth}


Batches = list[dict[str, np.ndarray]]


def _nncf_qdq(source: Path, target: Path, calibration: Batches, task: str) -> None:
    """NNCF post-training quantization of the ONNX graph to QDQ (transformer-aware for text)."""
    import nncf
    import onnx

    model_type = nncf.ModelType.TRANSFORMER if task == "embedding" else None
    quantized = nncf.quantize(
        onnx.load(str(source)), nncf.Dataset(calibration), model_type=model_type,
        subset_size=len(calibration),
    )  # fmt: skip
    onnx.save(quantized, str(target))


def _ort_minmax_qdq(source: Path, target: Path, calibration: Batches) -> None:
    """ONNX Runtime static quantization: min-max calibration, per-channel int8 weights, QDQ."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.rows, None)

    quantize_static(
        source, target, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm", "Conv"],
    )  # fmt: skip


def quantize_static_onnx(
    model_name: str, source: Path, target: Path, bindings: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Static int8 QDQ of ``source`` (the parent's file, a graph of model ``model_name``)
    calibrated on the calibration split (one row per batch); of the candidate recipes (NNCF,
    ONNX Runtime min-max) keep the one whose outputs stay closest to the parent's on the
    training split (never the held-out evaluation split). ``bindings`` fix a user model's
    dynamic axes for calibration."""
    import shutil
    import tempfile

    from harness.measure.fidelity import onnx_outputs, score_outputs
    from harness.models import get_model

    model = get_model(model_name, bindings)
    seq = 128 if model.uses_sequence else None
    calibration, _ = model.batches("calibration", 1, seq)
    selection, rows = model.batches("training", 16, seq)
    expected = onnx_outputs(source, selection)
    candidates = {
        "nncf": lambda out: _nncf_qdq(source, out, calibration, model.task),
        "onnxruntime-minmax": lambda out: _ort_minmax_qdq(source, out, calibration),
    }
    scores: dict[str, float] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, quantize in candidates.items():
            out = Path(tmp) / f"{name}.onnx"
            try:
                quantize(out)
            except Exception as exc:  # a recipe that cannot handle this graph is just not chosen
                errors[name] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            # Scored against the parent's own predictions: for a classifier, top-1 agreement.
            got = onnx_outputs(out, selection)
            scored = score_outputs(model.task, got, expected, None, rows).fidelity
            scores[name] = scored.value if scored is not None else float("-inf")
        if not scores:
            raise RuntimeError(f"no int8-static recipe worked: {errors}")
        best = max(scores, key=lambda n: scores[n])
        shutil.copyfile(Path(tmp) / f"{best}.onnx", target)
    return {
        "chosen": best,
        "selection_split": "training",
        "selection_metric": "top1_agreement" if model.task == "classifier" else "cosine",
        "scores": scores,
        "errors": errors,
        "calibration_rows": len(calibration),
    }
