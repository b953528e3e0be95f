"""The fp32 ONNX export of a torch module, shared by the base artifact and every torch step.
Imports torch only inside its functions."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from harness.models import get_model

if TYPE_CHECKING:
    import torch

OPSET = 17
ONNX_FILE = "model.onnx"  # the file name of every artifact's graph


def export_onnx(module: torch.nn.Module, model_name: str, path: Path) -> None:
    """Export with the TorchScript exporter: dynamic batch (and sequence) axes, opset 17."""
    import torch

    model = get_model(model_name)
    example = model.example_inputs(2, 16 if model.uses_sequence else None)
    args = tuple(torch.from_numpy(example[name]) for name in model.input_names)
    with warnings.catch_warnings(), torch.inference_mode():
        # The tracer warns about every data-dependent Python branch in transformers; the
        # exported graph is checked against the torch outputs by the conformance tests.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(model.input_names),
            output_names=list(model.output_names),
            dynamic_axes=model.dynamic_axes(),
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def count_params_m(module: torch.nn.Module) -> float:
    """The module's parameter count in millions."""
    return sum(p.numel() for p in module.parameters()) / 1e6
