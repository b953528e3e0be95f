"""torch-eager: the PyTorch module run eagerly on the CPU, under ``inference_mode``."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from backends.torch_generate import TorchGenerator
from harness.backend import Artifact, BackendSettings, Capabilities, native_precision_missing
from harness.errors import BackendError, BackendUnavailable

_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "qint8": "int8"}


class TorchEagerBackend(TorchGenerator):
    name: ClassVar[str] = "torch-eager"
    capabilities: ClassVar[Capabilities] = Capabilities(
        consumes="torch",
        generates=True,
        runtime_modules=("torch",),
        install_hint="pip install torch==2.13.0",
    )

    def __init__(self) -> None:
        self._module: Any = None
        self._args: tuple[Any, ...] = ()
        self._out: Any = None
        self._input_names: tuple[str, ...] = ()
        self._output_names: tuple[str, ...] = ()
        self._torch: Any = None
        self._autocast: Any = None

    def check(self) -> None:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(f"torch cannot be imported: {exc}") from None

    def versions(self) -> dict[str, str]:
        import torch

        return {"torch": torch.__version__}

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        import torch

        if settings.device != "cpu":
            raise BackendUnavailable(f"torch-eager runs on the CPU only, not {settings.device!r}")
        missing = native_precision_missing(settings.precision, settings.isa_flags)
        if missing:
            raise BackendUnavailable(f"torch-eager {settings.precision}: {missing}")
        if not settings.input_names or not settings.output_names:
            raise BackendError(
                "torch-eager needs the model's input and output names (BackendSettings)"
            )
        self._autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.precision)
        self._torch = torch
        torch.set_num_threads(settings.threads)
        if torch.get_num_interop_threads() != 1:
            # Only settable before parallel work starts (an issue in inline mode only).
            with contextlib.suppress(RuntimeError):
                torch.set_num_interop_threads(1)
        self._input_names, self._output_names = settings.input_names, settings.output_names
        self._module = artifact.torch_module().eval()
        return None

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        self._args = tuple(
            self._torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self._input_names
        )

    def run(self) -> int | None:
        with self._torch.inference_mode():
            if self._autocast is None:
                self._out = self._module(*self._args)
            else:
                with self._torch.autocast("cpu", dtype=self._autocast):
                    self._out = self._module(*self._args)
        return None

    def synchronize(self) -> None:
        return None

    def outputs(self) -> dict[str, np.ndarray]:
        outs = self._out if isinstance(self._out, tuple | list) else (self._out,)
        return {
            name: (out.float() if out.is_floating_point() else out).numpy()
            for name, out in zip(self._output_names, outs, strict=False)
        }

    def executed_precision(self) -> str | None:
        if self._lm is not None:
            return self._lm_dtype
        if self._autocast is not None:
            return "bf16" if self._autocast == self._torch.bfloat16 else "fp16"
        if any("quantized" in type(m).__module__ for m in self._module.modules()):
            return "int8"
        param = next(iter(self._module.parameters()), None)
        if param is None:
            return None
        return _DTYPES.get(str(param.dtype).removeprefix("torch."), str(param.dtype))

    def close(self) -> None:
        self._module = None
        self._lm = None
