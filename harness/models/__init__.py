"""The model zoo, and the user's own models. Each model knows how to build its torch module, its
inputs and its identity.

A model is named by a zoo name (``minilm-l6``) or a source spec for a model on disk::

    onnx:PATH[#inputs=FILE.npz]      any ONNX file (harness.models.onnx_file)
    hf:DIR[#text=FILE]               a local Hugging Face directory (harness.models.hf_dir; a
                                     ``*ForCausalLM`` config: harness.models.causal_lm)
    gguf:PATH                        a GGUF decoder (harness.models.causal_lm)
    torch:MODULE:FACTORY             a PyTorch factory imported by path (.torch_factory)

Modules here import torch and tokenizers only inside methods, so listing models stays cheap.
Every model class derives from :class:`harness.models.base.BaseModel`, which gives the members
that only some models change (shape bindings, a user's ONNX file) their usual values.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self, cast

from harness.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import torch


class Model(Protocol):
    """A benchmarkable model: a torch module, named inputs and outputs, seeded inputs.

    ``accepts_bindings``: whether shape bindings (``--shape``, ``--dim``, ``--image-size``)
    apply to it (its inputs have dynamic axes other than batch and sequence: ONNX files).
    ``onnx_file``: a user's ONNX file, copied as the fp32 artifact; None when the artifact is
    exported from ``build_torch()``. ``params_m``: parameters in millions when known without
    building the module (an ONNX file's initializers), else None (counted at export).
    """

    name: str
    description: str
    task: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    uses_sequence: bool
    accepts_bindings: bool
    generative: bool  # a decoder (harness.models.causal_lm): its cases generate tokens
    onnx_file: Path | None
    params_m: float | None

    def binding_names(self) -> set[str]:
        """What a shape binding may name for this model: inputs and named dynamic axes (an
        ONNX file's); empty for a model that takes no bindings."""
        ...

    def bind(self, bindings: tuple[str, ...]) -> Self:
        """This model bound to one case's shape bindings (``name=640``, ``x=1x3x64x64``); a
        model that does not accept bindings returns itself."""
        ...

    def shapes(self, batch_size: int, seq_len: int | None) -> dict[str, tuple[int, ...]]:
        """Every generated input's shape for one case. For a model that accepts bindings:
        ConfigError for an unbound or unknown axis, VariantNotApplicable when ``batch_size``
        contradicts a static batch axis."""
        ...

    def source_fingerprint(self) -> str:
        """A digest of what the weights come from; part of the artifact's cache key."""
        ...

    def build_torch(self) -> torch.nn.Module:
        """The fp32 module in eval mode, taking the inputs in ``input_names`` order."""
        ...

    def example_inputs(self, batch_size: int, seq_len: int | None) -> dict[str, np.ndarray]:
        """Deterministic real inputs for one batch (the same for every backend)."""
        ...

    def evaluation_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        """The held-out evaluation set (all rows), for fidelity against the fp32 reference."""
        ...

    def calibration_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        """Rows for quantization calibration (disjoint from the evaluation rows)."""
        ...

    def batches(
        self, split: str, batch_size: int, seq_len: int | None
    ) -> tuple[list[dict[str, np.ndarray]], int | None]:
        """A split (evaluation, calibration, training) as batches of ``batch_size``, and the
        number of real rows when the last batch was filled up (None: every row is real)."""
        ...

    def training_inputs(self, seq_len: int | None) -> dict[str, np.ndarray]:
        """Rows for distillation and recipe selection (disjoint from the evaluation rows)."""
        ...

    def evaluation_labels(self) -> np.ndarray | None:
        """True labels of the evaluation rows for classifiers; ``None`` for other tasks."""
        ...

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """ONNX dynamic axes for every input and output."""
        ...


_REGISTRY: dict[str, str] = {
    "bert-base": "harness.models.bert_base:BertBase",
    "digits-cnn": "harness.models.digits_cnn:DigitsCNN",
    "llama-1b": "harness.models.seeded_lm:SeededLlama",
    "minilm-l6": "harness.models.minilm:MiniLM",
    "smollm2-135m": "harness.models.causal_lm:SmolLM2",
    "tiny-bert": "harness.models.tiny_bert:TinyBert",
    "tiny-mlp": "harness.models.tiny_mlp:TinyMLP",
}


SOURCES = ("onnx:PATH", "hf:DIR", "gguf:PATH", "torch:MODULE:FACTORY")


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def is_user_model(name: str) -> bool:
    return name.startswith(("onnx:", "hf:", "gguf:", "torch:"))


def _options(spec: str, allowed: str) -> tuple[str, dict[str, str]]:
    """``PATH#key=value#...`` -> (PATH, {key: value}); only ``allowed`` keys."""
    target, *parts = spec.split("#")
    options = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or key != allowed or not value:
            raise ConfigError(f"model {spec!r}: unknown option {part!r}; allowed: {allowed}=FILE")
        options[key] = value
    return target, options


def user_model(spec: str) -> Model:
    """The model a source spec names; ConfigError when the file, directory or factory is wrong."""
    kind, _, rest = spec.partition(":")
    if not rest:
        raise ConfigError(f"model {spec!r}: empty {kind}: source; e.g. {kind}:model.onnx")
    if kind == "onnx":
        from harness.models.onnx_file import OnnxFileModel

        path, options = _options(rest, "inputs")
        inputs = options.get("inputs")
        return OnnxFileModel(spec, Path(path), Path(inputs) if inputs else None)
    if kind == "gguf":
        from harness.models.causal_lm import CausalLMModel

        if not Path(rest).is_file():
            raise ConfigError(f"model {spec!r}: {rest} is not a file")
        # decoders are routed by their ``generative`` flag before any encoder-only method is used
        return cast("Model", CausalLMModel(spec, gguf=Path(rest)))
    if kind == "hf":
        from harness.models.causal_lm import CausalLMModel, is_causal_lm_dir
        from harness.models.hf_dir import HFTextModel

        if is_causal_lm_dir(Path(rest)):
            return cast("Model", CausalLMModel(spec, directory=Path(rest)))
        path, options = _options(rest, "text")
        text = options.get("text")
        return HFTextModel(spec, Path(path), Path(text) if text else None)
    from harness.models.torch_factory import TorchFactoryModel

    return TorchFactoryModel(spec, rest)


@functools.cache
def _user_model(spec: str) -> Model:
    return user_model(spec)


def get_model(name: str, bindings: tuple[str, ...] = ()) -> Model:
    """The model named ``name`` (zoo name or source spec), bound to ``bindings`` when it takes
    shape bindings; ConfigError naming the choices otherwise."""
    if is_user_model(name):
        model = _user_model(name)
        return model.bind(bindings) if bindings else model
    target = _REGISTRY.get(name)
    if target is None:
        raise ConfigError(
            f"unknown model {name!r}; allowed: {', '.join(model_names())}, or a model on disk: "
            f"{', '.join(SOURCES)}"
        )
    module_name, _, attr = target.partition(":")
    zoo: Model = getattr(importlib.import_module(module_name), attr)()
    return zoo
