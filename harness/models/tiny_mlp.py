"""tiny-mlp: a two-layer perceptron with seeded weights, small enough for every test."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from harness.models.rows import RowModel

if TYPE_CHECKING:
    import torch

IN_FEATURES, HIDDEN, OUT_FEATURES = 16, 64, 8


class TinyMLP(RowModel):
    name = "tiny-mlp"
    description = "16 -> 64 -> 8 perceptron with seeded weights (for tests)"
    task = "regression"
    input_names = ("x",)
    output_names = ("y",)
    uses_sequence = False

    def source_fingerprint(self) -> str:
        return f"tiny-mlp-v1:{IN_FEATURES}x{HIDDEN}x{OUT_FEATURES}:seed0"

    def build_torch(self) -> torch.nn.Module:
        import torch

        generator = torch.Generator().manual_seed(0)
        module = torch.nn.Sequential(
            torch.nn.Linear(IN_FEATURES, HIDDEN),
            torch.nn.GELU(),
            torch.nn.Linear(HIDDEN, OUT_FEATURES),
        )
        with torch.no_grad():
            for param in module.parameters():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
        return module.eval()

    def example_inputs(self, batch_size: int, seq_len: int | None) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        return {"x": rng.standard_normal((batch_size, IN_FEATURES), dtype=np.float32)}

    def evaluation_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._rows(seed=1, count=64)  # seeds differ from the timing inputs (0)

    def calibration_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._rows(seed=2, count=32)

    def training_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._rows(seed=3, count=256)

    @staticmethod
    def _rows(seed: int, count: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {"x": rng.standard_normal((count, IN_FEATURES), dtype=np.float32)}

    def evaluation_labels(self) -> np.ndarray | None:
        return None

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"x": {0: "batch"}, "y": {0: "batch"}}
