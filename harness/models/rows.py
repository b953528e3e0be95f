"""Batches for models whose data splits are rows along axis 0 (every zoo model)."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from harness.measure.fidelity import chunks
from harness.models.base import BaseModel

Batches = list[dict[str, np.ndarray]]


class RowModel(BaseModel):
    """``batches`` from ``evaluation_inputs`` / ``calibration_inputs`` / ``training_inputs``:
    the split's rows cut into batches of exactly ``batch_size``, the last one filled up from
    the start; the second value is the real row count (filler dropped after inference)."""

    @abstractmethod
    def evaluation_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def calibration_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def training_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]: ...

    def batches(self, split: str, batch_size: int, seq_len: int | None) -> tuple[Batches, int]:
        rows = {
            "evaluation": self.evaluation_inputs,
            "calibration": self.calibration_inputs,
            "training": self.training_inputs,
        }[split](seq_len)
        return chunks(rows, batch_size), len(next(iter(rows.values())))
