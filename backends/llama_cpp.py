"""llama.cpp: llama-cpp-python on the model's GGUF file (an optional extra, generation only).

No binary wheel of llama-cpp-python runs on our CI machines (one prebuilt binding needs glibc
2.38; Debian 12 has 2.36) and a source build takes ~9 minutes on 2 cores, so it is not in the
default install: ``pip install "infrabench[llamacpp]"`` builds it. Where it is missing, every
case is skipped with that reason.

Weights are the GGUF file the model came from (``source.json`` beside its fp32 directory): the
``int4-weight`` variant runs a 4-bit GGUF as it is (smollm2-135m ships Q4_1: blocks of 32 with a
scale and a minimum), ``fp32`` and ``int8-weight`` need an F32 / Q8_0 GGUF, which only
llama.cpp's own converter writes, so they are skipped where the source is not one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.backend import Artifact, BackendSettings, Capabilities, GenerationSettings
from harness.errors import BackendUnavailable

INSTALL = 'pip install "infrabench[llamacpp]" (builds llama-cpp-python from source, ~9 min)'
# GGUF file types (llama.cpp's enum llama_ftype) by the weight bits they hold
_FILE_TYPES = {0: 32, 1: 16, 2: 4, 3: 4, 7: 8}  # F32, F16, Q4_0, Q4_1, Q8_0


def gguf_source(model_dir: Path) -> Path:
    """The GGUF a decoder's fp32 directory was made from; BackendUnavailable if none."""
    meta = model_dir / "source.json"
    source = json.loads(meta.read_text()).get("gguf") if meta.is_file() else None
    if not source or not Path(source).is_file():
        raise BackendUnavailable("llama.cpp runs GGUF files; this model was not loaded from one")
    return Path(source)


def gguf_weight_bits(path: Path) -> int | None:
    """The weight bits of a GGUF file's ``general.file_type`` (None: unknown type)."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("general.file_type")
    if field is None:
        return None
    return _FILE_TYPES.get(int(field.parts[field.data[0]][0]))


class LlamaCppBackend:
    name: ClassVar[str] = "llama.cpp"
    capabilities: ClassVar[Capabilities] = Capabilities(
        consumes="torch",
        generates=True,
        runtime_modules=("llama_cpp",),
        install_hint=INSTALL,
    )

    def __init__(self) -> None:
        self._llm: Any = None
        self._bits: int | None = None

    def check(self) -> None:
        try:
            import llama_cpp  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(
                f"llama-cpp-python cannot be imported ({exc}); {INSTALL}"
            ) from None

    def versions(self) -> dict[str, str]:
        import llama_cpp

        return {"llama-cpp-python": llama_cpp.__version__}

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        raise BackendUnavailable("llama.cpp runs decoders only (text generation)")

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        raise BackendUnavailable("llama.cpp runs decoders only (text generation)")

    def run(self) -> int | None:
        raise BackendUnavailable("llama.cpp runs decoders only (text generation)")

    def synchronize(self) -> None:
        return None

    def outputs(self) -> dict[str, np.ndarray]:
        return {}

    def load_generator(self, model_dir: Path, settings: GenerationSettings) -> float | None:
        from llama_cpp import Llama

        source = gguf_source(model_dir)
        bits = gguf_weight_bits(source)
        wanted = settings.weight_bits or 32
        if bits != wanted:
            raise BackendUnavailable(
                f"llama.cpp runs the GGUF as it is ({source.name}: {bits}-bit weights); "
                f"this variant needs {wanted}-bit weights"
            )
        if settings.precision != "fp32":
            raise BackendUnavailable(f"llama.cpp {settings.precision}: not offered here")
        kv = {"type_k": 8, "type_v": 8} if settings.kv_cache_int8 else {}  # GGML_TYPE_Q8_0
        self._llm = Llama(model_path=str(source), n_ctx=settings.max_length,
                          n_threads=settings.threads, n_threads_batch=settings.threads,
                          n_batch=settings.max_length, logits_all=True, verbose=False,
                          flash_attn=bool(kv), **kv)  # fmt: skip
        self._bits = bits
        return None

    def generate(
        self, prompt_ids: np.ndarray, gen_len: int, on_token: Callable[[], None]
    ) -> np.ndarray:
        if prompt_ids.shape[0] != 1:
            raise BackendUnavailable("llama-cpp-python generates one sequence at a time")
        out: list[int] = []
        tokens = [int(t) for t in prompt_ids[0]]
        # greedy: top_k=1; llama.cpp's generate() never stops on EOS itself, so gen_len is exact
        for token in self._llm.generate(tokens, top_k=1, top_p=1.0, temp=0.0,
                                        repeat_penalty=1.0, reset=True):  # fmt: skip
            on_token()
            out.append(int(token))
            if len(out) == gen_len:
                break
        return np.array([out], dtype=np.int64)

    def next_token_logits(self, ids: np.ndarray) -> np.ndarray | None:
        rows = []
        for row in ids:
            self._llm.reset()
            self._llm.eval([int(t) for t in row])
            rows.append(np.array(self._llm.scores[: row.size], dtype=np.float32))
        return np.stack(rows)

    def kv_cache_bytes(self) -> int | None:
        return None

    def executed_precision(self) -> str | None:
        return f"int{self._bits}" if self._bits and self._bits < 16 else "fp32"

    def close(self) -> None:
        self._llm = None
