"""``torch:MODULE:FACTORY``: a user's PyTorch module, from a factory function imported by path.

``MODULE`` is a dotted module name (importable from the working directory) or a ``.py`` file;
``FACTORY()`` returns ``(module, example_inputs)`` where the inputs are a tensor, a tuple of
tensors or a dict of named tensors, batch along axis 0. The module is exported to ONNX with a
dynamic batch axis like the zoo models; other axes keep the example's sizes. Data for every
batch size is generated like the example (same dtypes; integers within the example's range,
masks of ones) with fixed seeds. Weights come from the user's own code: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import ConfigError
from harness.models.inputs import TensorSpec, generate
from harness.models.rows import RowModel

if TYPE_CHECKING:
    import torch

ROWS = {"evaluation": (1, 64), "calibration": (2, 32), "training": (3, 256)}  # seed, rows


def _import(target: str, where: str) -> Any:
    module_part, _, attr = target.rpartition(":")
    if not module_part or not attr:
        raise ConfigError(f"{where}: expected torch:MODULE:FACTORY (e.g. torch:mypkg.models:build)")
    try:
        if module_part.endswith(".py"):
            path = Path(module_part).resolve()
            if not path.is_file():
                raise ConfigError(f"{where}: file {module_part} not found")
            spec = importlib.util.spec_from_file_location(f"_infrabench_user_{path.stem}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_part)
    except ConfigError:
        raise
    except Exception as exc:  # the user's module may raise anything while importing
        raise ConfigError(
            f"{where}: cannot import {module_part!r}: {type(exc).__name__}: {exc}"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"{where}: {module_part!r} has no callable {attr!r}")
    return factory


class TorchFactoryModel(RowModel):
    def __init__(self, spec: str, target: str) -> None:
        import torch

        self.name = spec
        self._factory = _import(target, spec)
        module, example = self._call()
        self.examples = {k: v.detach().cpu().numpy() for k, v in example.items()}
        self.input_names = tuple(example)
        with torch.inference_mode():
            outputs = _as_tuple(module(*example.values()))
        self.output_names = tuple(
            f"output{i}" if len(outputs) > 1 else "output" for i in range(len(outputs))
        )
        self.specs = tuple(
            TensorSpec(n, a.dtype.name, ("batch", *a.shape[1:]), _int_bound(a))
            for n, a in self.examples.items()
        )
        self.uses_sequence = False
        self.task = "generic"
        self.description = f"PyTorch module from {target}"
        self._digest = _digest(module)

    def _call(self) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
        import torch

        try:
            result = self._factory()
            module, example = result
        except Exception as exc:
            raise ConfigError(
                f"{self.name}: the factory failed: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"{self.name}: the factory must return (torch.nn.Module, inputs)")
        if isinstance(example, torch.Tensor):
            example = {"input": example}
        elif isinstance(example, tuple | list):
            example = {f"input{i}": t for i, t in enumerate(example)}
        if not isinstance(example, dict) or not all(
            isinstance(t, torch.Tensor) and t.dim() >= 1 for t in example.values()
        ):
            raise ConfigError(
                f"{self.name}: example inputs must be a tensor, a tuple or a dict of tensors "
                "with a batch axis"
            )
        return module, dict(example)

    def source_fingerprint(self) -> str:
        return f"{self.name}:{self._digest}"

    def build_torch(self) -> torch.nn.Module:
        from harness.models.pooling import TupleOutputs

        module, _ = self._call()
        return TupleOutputs(module).eval()

    def example_inputs(self, batch_size: int, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._rows(0, batch_size)

    def _rows(self, seed: int, count: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {s.name: generate(s, (count, *s.dims[1:]), rng) for s in self.specs}  # type: ignore[arg-type]

    def evaluation_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._rows(*ROWS["evaluation"])

    def calibration_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._rows(*ROWS["calibration"])

    def training_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._rows(*ROWS["training"])

    def evaluation_labels(self) -> np.ndarray | None:
        return None

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {name: {0: "batch"} for name in (*self.input_names, *self.output_names)}


def _as_tuple(out: Any) -> tuple[Any, ...]:
    if isinstance(out, dict):
        return tuple(out.values())
    return tuple(out) if isinstance(out, tuple | list) else (out,)


def _int_bound(array: np.ndarray) -> int | None:
    """Integer examples bound generated ids: below the example's largest value + 1."""
    if array.dtype.kind in "iu" and array.size:
        return int(array.max()) + 1
    return None


def _digest(module: torch.nn.Module) -> str:
    """A digest of the module's class and every parameter and buffer."""
    sha = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in sorted(module.state_dict().items()):
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()[:32]
