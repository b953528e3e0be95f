"""The generative capability of torch-eager and torch-cuda: a transformers causal LM with a
static KV cache, greedy decoding, EOS ignored, and a streamer that reports each decode step to
the harness."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.backend import GenerationSettings, native_precision_missing
from harness.errors import BackendUnavailable


class _StepStreamer:
    """transformers' streamer protocol (``put``/``end``): the first ``put`` is the prompt, each
    later one a decode step's tokens, reported at once."""

    def __init__(self, on_token: Callable[[], None]) -> None:
        self.on_token = on_token
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if self.prompt_seen:
            self.on_token()
        self.prompt_seen = True

    def end(self) -> None:
        return None


class TorchGenerator:
    """Mixed into ``TorchEagerBackend`` (CPU) and ``TorchCudaBackend`` (``generation_device``
    says where): implements ``harness.backend.Generates``.

    On a GPU the streamer still stamps each step when it exists on the host: transformers hands
    the streamer ``next_tokens.cpu()``, a copy that waits for the step's kernels.
    """

    _lm: Any = None
    _lm_torch: Any = None
    _lm_dtype: str = "fp32"
    _lm_device: str = "cpu"
    name: ClassVar[str]

    def generation_device(self, settings: GenerationSettings) -> str:
        """Where the decoder runs; BackendUnavailable when ``settings.precision`` is not native
        there. The CPU: native bf16/fp16 only with the ISA flags for it."""
        missing = native_precision_missing(settings.precision, settings.isa_flags)
        if missing:
            raise BackendUnavailable(f"{self.name} {settings.precision}: {missing}")
        return "cpu"

    def load_generator(self, model_dir: Path, settings: GenerationSettings) -> float | None:
        import torch

        os.environ["HF_HUB_OFFLINE"] = "1"
        if settings.weight_bits is not None:
            raise BackendUnavailable(
                f"{self.name} has no weight-only int{settings.weight_bits} kernels in this "
                "environment (torch.ao's dynamic quantization also quantizes activations)"
            )
        if settings.kv_cache_int8:
            raise BackendUnavailable(
                f"{self.name}: transformers' quantized KV cache needs optimum-quanto or hqq"
            )
        device = self.generation_device(settings)
        from transformers import AutoModelForCausalLM

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.precision,
                                                                     torch.float32)  # fmt: skip
        torch.set_num_threads(settings.threads)
        lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
        self._lm = lm.to(device) if device != "cpu" else lm
        self._lm_torch, self._lm_dtype, self._lm_device = torch, settings.precision, device
        self.generator_loaded()
        return None

    def generator_loaded(self) -> None:
        """Called once the decoder is on its device (a GPU backend resets its peak counters)."""

    def generate(
        self, prompt_ids: np.ndarray, gen_len: int, on_token: Callable[[], None]
    ) -> np.ndarray:
        torch = self._lm_torch
        ids = torch.from_numpy(np.ascontiguousarray(prompt_ids, dtype=np.int64))
        ids = ids.to(self._lm_device)
        with torch.inference_mode():
            out = self._lm.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=gen_len,
                min_new_tokens=gen_len,  # EOS ignored: every run makes gen_len tokens
                do_sample=False,
                cache_implementation="static",
                disable_compile=True,  # transformers would torch.compile a static cache: eager
                pad_token_id=self._lm.config.eos_token_id,
                streamer=_StepStreamer(on_token),
            )
        result: np.ndarray = out[:, ids.shape[1] :].cpu().numpy()
        return result

    def next_token_logits(self, ids: np.ndarray) -> np.ndarray | None:
        torch = self._lm_torch
        with torch.inference_mode():
            logits = self._lm(torch.from_numpy(ids).to(self._lm_device)).logits
        result: np.ndarray = logits.float().cpu().numpy()
        return result

    def kv_cache_bytes(self) -> int | None:
        return None  # the static cache lives inside generate(); computed from the config
