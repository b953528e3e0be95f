"""The model zoo. Each model knows how to build its torch module, its inputs and its identity.

Modules here import torch and tokenizers only inside methods, so listing models stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

from harness.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import torch


class Model(Protocol):
    """A benchmarkable model: a torch module, named inputs and outputs, seeded inputs."""

    name: str
    description: str
    task: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    uses_sequence: bool

    def source_fingerprint(self) -> str:
        """A digest of what the weights come from; part of the artifact's cache key."""
        ...

    def build_torch(self) -> torch.nn.Module:
        """The fp32 module in eval mode, taking the inputs in ``input_names`` order."""
        ...

    def example_inputs(self, batch_size: int, seq_len: int | None) -> dict[str, np.ndarray]:
        """Deterministic real inputs for one batch (the same for every backend)."""
        ...

    def evaluation_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        """The held-out evaluation set (all rows), for fidelity against the fp32 reference."""
        ...

    def calibration_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        """Rows for quantization calibration (disjoint from the evaluation rows)."""
        ...

    def training_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        """Rows for distillation and recipe selection (disjoint from the evaluation rows)."""
        ...

    def evaluation_labels(self) -> np.ndarray | None:
        """True labels of the evaluation rows for classifiers; ``None`` for other tasks."""
        ...

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """ONNX dynamic axes for every input and output."""
        ...


_REGISTRY: dict[str, str] = {
    "bert-base": "harness.models.bert_base:BertBase",
    "digits-cnn": "harness.models.digits_cnn:DigitsCNN",
    "minilm-l6": "harness.models.minilm:MiniLM",
    "tiny-bert": "harness.models.tiny_bert:TinyBert",
    "tiny-mlp": "harness.models.tiny_mlp:TinyMLP",
}


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name: str) -> Model:
    """The model registered under ``name``; ConfigError naming the choices otherwise."""
    target = _REGISTRY.get(name)
    if target is None:
        raise ConfigError(f"unknown model {name!r}; allowed: {', '.join(model_names())}")
    module_name, _, attr = target.partition(":")
    model: Model = getattr(importlib.import_module(module_name), attr)()
    return model
