"""The members every model has, with the values of a model that takes no shape bindings and is
not an ONNX file (the zoo, torch factories, Hugging Face directories)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Self

import numpy as np


class ModelDefaults:
    """Defaults of the :class:`harness.models.Model` members that only some models change."""

    accepts_bindings: bool = False
    generative: bool = False
    onnx_file: Path | None = None
    params_m: float | None = None

    def binding_names(self) -> set[str]:
        """What a shape binding may name for this model (inputs, named axes); none here."""
        return set()

    def bind(self, bindings: tuple[str, ...]) -> Self:
        """This model bound to one case's shape bindings; a model that takes none ignores them."""
        return self


class BaseModel(ModelDefaults, ABC):
    """A model whose shapes are those of its example inputs (encoders, classifiers)."""

    @abstractmethod
    def example_inputs(self, batch_size: int, seq_len: int | None) -> dict[str, np.ndarray]: ...

    def shapes(self, batch_size: int, seq_len: int | None) -> dict[str, tuple[int, ...]]:
        """Every input's shape for one case: those of its example inputs."""
        inputs = self.example_inputs(batch_size, seq_len)
        return {name: tuple(array.shape) for name, array in inputs.items()}
