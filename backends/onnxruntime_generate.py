"""onnxruntime's generative capability: onnxruntime-genai on a model built by its model builder.

The builder (``python -m onnxruntime_genai.models.builder``, run in a subprocess; it needs
``onnx`` and ``onnx-ir``, which it does not declare) writes ``model.onnx`` with
GroupQueryAttention and, for int8/int4, MatMulNBits weight-only blocks (int4: block size 64).
Builds are cached under ``<cache>/onnxruntime-genai/<key>``. The search's ``max_length`` is set
to prompt + output for every call (else the KV cache is allocated for the model's whole context)
and ``min_length`` to the same, so EOS never ends a generation early.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.backend import GenerationSettings, staged
from harness.errors import BackendError, BackendUnavailable

BUILD_FORMAT = 1
INT4_BLOCK_SIZE = 64


def build(model_dir: Path, target: Path, weight_bits: int | None, cache: Path) -> dict[str, Any]:
    """Run the model builder into ``target``; facts for the row's details."""
    precision = {None: "fp32", 8: "int8", 4: "int4"}[weight_bits]
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", str(model_dir),
               "-i", str(model_dir), "-o", str(target), "-p", precision, "-e", "cpu",
               "-c", str(cache)]  # fmt: skip
    if weight_bits == 4:
        command += ["--extra_options", f"int4_block_size={INT4_BLOCK_SIZE}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise BackendError(f"onnxruntime-genai model builder failed: {tail[0]}")
    facts = {"weights": precision if weight_bits is None else
             f"{precision} MatMulNBits (onnxruntime-genai model builder"
             + (f", block size {INT4_BLOCK_SIZE})" if weight_bits == 4 else ")")}  # fmt: skip
    (target / "facts.json").write_text(json.dumps(facts))
    return facts


class OnnxRuntimeGenerator:
    """Mixed into ``OnnxRuntimeBackend``: implements ``harness.backend.Generates``."""

    _og: Any = None
    _og_model: Any = None
    _og_facts: dict[str, Any] | None = None
    _og_batch: int = 1

    def load_generator(self, model_dir: Path, settings: GenerationSettings) -> float | None:
        try:
            import onnxruntime_genai as og
        except ImportError as exc:
            raise BackendUnavailable(
                f'onnxruntime-genai is not installed ({exc}); pip install "infrabench[llm]"'
            ) from None
        if settings.precision != "fp32":
            raise BackendUnavailable(f"onnxruntime-genai {settings.precision}: CPU builds are fp32")
        if settings.kv_cache_int8:
            raise BackendUnavailable("onnxruntime-genai has no int8 KV cache on the CPU")
        import time

        root = settings.cache_dir or Path(os.environ.get("TMPDIR", "/tmp")) / "infrabench"
        recipe = [BUILD_FORMAT, str(model_dir.resolve()), settings.weight_bits, og.__version__]
        key = hashlib.sha256(json.dumps(recipe).encode())
        final = root / "onnxruntime-genai" / key.hexdigest()[:20]
        started = time.perf_counter()
        built = None
        if not (final / "facts.json").is_file():
            with staged(final, "facts.json") as staging:
                build(model_dir, staging, settings.weight_bits, root / "onnxruntime-genai-tmp")
            built = time.perf_counter() - started
        self._og_facts = json.loads((final / "facts.json").read_text())
        config = og.Config(str(final))
        config.clear_providers()
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": settings.threads, "inter_op_num_threads": 1}}}}))  # fmt: skip
        self._og = og
        self._og_model = og.Model(config)
        self._og_batch = settings.batch_size
        return built

    def _generator(self, batch: int, max_length: int) -> Any:
        params = self._og.GeneratorParams(self._og_model)
        params.set_search_options(max_length=max_length, min_length=max_length, do_sample=False,
                                  batch_size=batch)  # fmt: skip
        return self._og.Generator(self._og_model, params)

    def generate(
        self, prompt_ids: np.ndarray, gen_len: int, on_token: Callable[[], None]
    ) -> np.ndarray:
        batch, length = prompt_ids.shape
        generator = self._generator(batch, length + gen_len)
        generator.append_tokens(np.ascontiguousarray(prompt_ids, dtype=np.int32))
        while not generator.is_done():
            generator.generate_next_token()
            on_token()
        return np.stack([np.asarray(generator.get_sequence(i))[length:] for i in range(batch)])

    def next_token_logits(self, ids: np.ndarray) -> np.ndarray | None:
        batch, length = ids.shape
        generator = self._generator(batch, length + 1)
        generator.append_tokens(np.ascontiguousarray(ids, dtype=np.int32))
        logits: np.ndarray = np.asarray(generator.get_output("logits"), dtype=np.float32)
        return logits

    def kv_cache_bytes(self) -> int | None:
        return None
