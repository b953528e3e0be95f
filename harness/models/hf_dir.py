"""``hf:DIR``: a local Hugging Face model directory (config.json, model.safetensors,
tokenizer.json), exported like minilm-l6.

The head comes from the config: ``*ForSequenceClassification`` architectures are classifiers
(logits; scored by top-1 agreement with the fp32 reference, there being no labels), anything
else is an encoder benchmarked as a sentence embedder (mean pooling over real tokens, L2
normalisation). Text comes from the project's corpus splits, or from a user text file (one
sentence per line, split with the corpus's fixed seed): ``hf:DIR#text=FILE``. Weights load from
safetensors only; nothing is unpickled.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.digest import file_sha256
from harness.errors import ConfigError
from harness.models.corpus import MIN_USER_LINES, Split, sentences, split_lines
from harness.models.rows import RowModel

if TYPE_CHECKING:
    import torch

REQUIRED = ("config.json", "tokenizer.json")
_file_sha256 = functools.cache(file_sha256)  # weights are large: hash once per process


def tokenize(directory: Path, texts: list[str], length: int) -> dict[str, np.ndarray]:
    """WordPiece (or any tokenizer.json) ids and attention masks, padded to ``length``."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(length=length, pad_id=0, pad_token="[PAD]")
    encoded = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
    }


class HFTextModel(RowModel):
    """A Hugging Face text encoder or sequence classifier from a directory."""

    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    uses_sequence = True
    task: str
    output_names: tuple[str, ...]

    def __init__(self, name: str, directory: Path | None = None, text_file: Path | None = None):
        """``directory`` None: a subclass supplies ``directory``, ``task`` and ``output_names``."""
        self.name = name
        self._directory = directory
        self.text_file = text_file
        self.description = f"Hugging Face model directory {directory}"
        if directory is not None:
            self.check()
            config = json.loads((directory / "config.json").read_text())
            archs = config.get("architectures") or []
            classifier = any("SequenceClassification" in a for a in archs)
            self.task = "classifier" if classifier else "embedding"
            self.output_names = ("logits",) if classifier else ("embedding",)

    @property
    def directory(self) -> Path:
        assert self._directory is not None
        return self._directory

    def check(self) -> None:
        """ConfigError unless the directory has what a local export needs (no pickles)."""
        where = f"hf:{self.directory}"
        if not self.directory.is_dir():
            raise ConfigError(f"{where}: directory not found")
        missing = [
            n for n in (*REQUIRED, "model.safetensors") if not (self.directory / n).is_file()
        ]
        if missing:
            pickled = (self.directory / "pytorch_model.bin").is_file()
            extra = "; pytorch_model.bin is a pickle and is never loaded" if pickled else ""
            raise ConfigError(
                f"{where}: missing {', '.join(missing)} (needs config.json, model.safetensors "
                f"and tokenizer.json){extra}"
            )
        if self.text_file is not None:
            if not self.text_file.is_file():
                raise ConfigError(f"{where}: text file {self.text_file} not found")
            lines = [s for s in self.text_file.read_text("utf-8").splitlines() if s.strip()]
            if len(lines) < MIN_USER_LINES:
                raise ConfigError(
                    f"{where}: text file {self.text_file} has {len(lines)} non-empty lines; "
                    f"at least {MIN_USER_LINES} are needed (calibration, training, evaluation)"
                )

    def source_fingerprint(self) -> str:
        names = (*REQUIRED, "model.safetensors")
        parts = [_file_sha256(self.directory / n) for n in names]
        if self.text_file is not None:
            parts.append(_file_sha256(self.text_file))
        return f"hf:{self.task}:" + ":".join(parts)

    def build_torch(self) -> torch.nn.Module:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers

        from harness.models.pooling import LogitsOnly, SentenceEmbedding

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        path = str(self.directory)
        if self.task == "classifier":
            classifier = transformers.AutoModelForSequenceClassification.from_pretrained(
                path, use_safetensors=True
            )
            return LogitsOnly(classifier).eval()
        encoder = transformers.AutoModel.from_pretrained(path, use_safetensors=True)
        return SentenceEmbedding(encoder).eval()

    def _sentences(self, split: Split) -> list[str]:
        if self.text_file is None:
            return list(sentences(split))
        lines = [s.strip() for s in self.text_file.read_text("utf-8").splitlines() if s.strip()]
        return list(split_lines(lines, split))

    def _tokens(self, split: Split, seq_len: int | None) -> dict[str, np.ndarray]:
        return tokenize(self.directory, self._sentences(split), seq_len or 128)

    def example_inputs(self, batch_size: int, seq_len: int | None) -> dict[str, np.ndarray]:
        corpus = self._sentences("all")
        texts = [corpus[i % len(corpus)] for i in range(batch_size)]
        return tokenize(self.directory, texts, seq_len or 128)

    def evaluation_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._tokens("evaluation", seq_len)

    def calibration_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._tokens("calibration", seq_len)

    def training_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        return self._tokens("training", seq_len)

    def evaluation_labels(self) -> np.ndarray | None:
        return None

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        text_axes = {0: "batch", 1: "sequence"}
        return {"input_ids": text_axes, "attention_mask": text_axes,
                self.output_names[0]: {0: "batch"}}  # fmt: skip
