"""Variant names: what was done to the model before it reaches a backend."""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import ConfigError


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str
    description: str


_VARIANTS = {
    "fp32": Variant("fp32", "fp32", "the model as trained, exported to ONNX in float32"),
}


def variant_names() -> list[str]:
    return list(_VARIANTS)


def get_variant(name: str) -> Variant:
    """The variant called ``name``; ConfigError naming the choices otherwise."""
    try:
        return _VARIANTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown variant {name!r}; allowed: {', '.join(variant_names())}"
        ) from None
