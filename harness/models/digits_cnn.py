"""digits-cnn: a small CNN trained on first use on scikit-learn's bundled digits data (8x8
grey-scale images of handwritten digits, 1,797 of them, real labels), cached.

A fixed seeded split: 60% training, 15% calibration, 25% held-out evaluation.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.models.rows import RowModel

if TYPE_CHECKING:
    import torch

SPLIT_SEED = 20261128
EPOCHS = 40


@functools.cache
def _data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    return images, digits.target.astype(np.int64)


@functools.cache
def _split(name: str) -> np.ndarray:
    rows = len(_data()[1])
    order = np.random.default_rng(SPLIT_SEED).permutation(rows)
    train, cal = int(rows * 0.60), int(rows * 0.15)
    return {
        "training": order[:train],
        "calibration": order[train : train + cal],
        "evaluation": order[train + cal :],
    }[name]


def _cache_dir() -> Path:
    from harness.cache import cache_root

    return cache_root() / "models" / "digits-cnn"


def _architecture() -> torch.nn.Module:
    import torch

    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 4 * 4, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )


def train() -> tuple[torch.nn.Module, dict[str, float]]:
    """Train from a fixed seed on the training split; deterministic on one machine."""
    import torch

    torch.manual_seed(0)
    module = _architecture()
    images, labels = _data()
    idx = _split("training")
    x, y = torch.from_numpy(images[idx]), torch.from_numpy(labels[idx])
    optimizer = torch.optim.Adam(module.parameters(), lr=2e-3)
    for epoch in range(EPOCHS):
        order = torch.from_numpy(np.random.default_rng(epoch).permutation(len(idx)))
        for start in range(0, len(idx), 64):
            batch = order[start : start + 64]
            loss = torch.nn.functional.cross_entropy(module(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    module.eval()
    with torch.inference_mode():
        ev = _split("evaluation")
        predicted = module(torch.from_numpy(images[ev])).argmax(dim=1).numpy()
    return module, {"eval_accuracy": float(np.mean(predicted == labels[ev]))}


class DigitsCNN(RowModel):
    name = "digits-cnn"
    description = "small CNN trained on scikit-learn's digits (8x8 images, 10 classes, real labels)"
    task = "classifier"
    input_names = ("image",)
    output_names = ("logits",)
    uses_sequence = False

    def source_fingerprint(self) -> str:
        images, labels = _data()
        digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
        return f"digits-cnn-v1:{digest[:16]}:seed0:epochs{EPOCHS}"

    def build_torch(self) -> torch.nn.Module:
        """The trained CNN: trained once, then loaded from the cache (safetensors)."""
        from safetensors.torch import load_model, save_model

        path = _cache_dir() / f"{self.source_fingerprint().replace(':', '-')}.safetensors"
        module = _architecture()
        if path.is_file():
            load_model(module, str(path))
            return module.eval()
        module, _ = train()
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".{os.getpid()}.tmp")
        save_model(module, str(staging))
        staging.replace(path)
        return module.eval()

    def example_inputs(self, batch_size: int, seq_len: int | None) -> dict[str, np.ndarray]:
        images = _data()[0]
        rows = np.arange(batch_size) % len(images)
        return {"image": np.ascontiguousarray(images[rows])}

    def _rows(self, split: str) -> dict[str, np.ndarray]:
        return {"image": np.ascontiguousarray(_data()[0][_split(split)])}

    def evaluation_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._rows("evaluation")

    def calibration_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._rows("calibration")

    def training_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._rows("training")

    def evaluation_labels(self) -> np.ndarray | None:
        return _data()[1][_split("evaluation")]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"image": {0: "batch"}, "logits": {0: "batch"}}
