"""Variant names: what was done to the model before (or while) a backend runs it.

A variant is ``fp32`` or a ``+``-joined chain of steps (:mod:`harness.optimize.steps`), applied
left to right: torch steps first (pruned-*, distilled-*), then at most one ONNX step
(int8-dynamic, int8-static), at most one weight step (int8-weight, int4-weight: decoders), then
at most one runtime step (fp16, bf16, kv-int8).

Torch steps change the module (and so the exported graph); ONNX steps rewrite the exported file;
runtime steps leave the file alone and ask the backend to execute in that precision, which it
does only where the hardware supports it natively. Weight steps (generative decoders only) also
leave the fp32 directory alone: each engine compresses the weights in its own format when it
loads them (NNCF ``compress_weights`` for OpenVINO, ``MatMulNBits`` for onnxruntime-genai),
cached under the engine's own cache directory; ``kv-int8`` asks for an int8 KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import ConfigError
from harness.optimize.steps import DESCRIPTIONS, Step, StepKind, parse_step

__all__ = ["DESCRIPTIONS", "Step", "StepKind", "Variant", "parse_variant"]

_ORDER = {"torch": 0, "onnx": 1, "weights": 2, "runtime": 3}
GENERATIVE_STEPS = ("int8-weight", "int4-weight", "kv-int8")  # apply to decoders only


@dataclass(frozen=True)
class Variant:
    name: str
    steps: tuple[Step, ...] = ()

    @property
    def precision(self) -> str:
        """The precision the variant asks for: the last step that sets one, else fp32."""
        chosen = [s.precision for s in self.steps if s.precision]
        return chosen[-1] if chosen else "fp32"

    @property
    def runtime_precision(self) -> str:
        """fp16/bf16 when the backend must execute in that precision, else fp32."""
        runtime = [s.precision for s in self.steps if s.kind == "runtime" and s.precision]
        return runtime[-1] if runtime else "fp32"

    @property
    def weight_bits(self) -> int | None:
        """8 or 4 for a weight-only step, else None (weights as the artifact holds them)."""
        bits = [s.params["bits"] for s in self.steps if s.kind == "weights"]
        return bits[-1] if bits else None

    @property
    def kv_cache_int8(self) -> bool:
        return any(s.name == "kv-int8" for s in self.steps)

    @property
    def generative_only(self) -> bool:
        """Whether a step applies only to decoders."""
        return any(s.name in GENERATIVE_STEPS for s in self.steps)

    @property
    def artifact_name(self) -> str:
        """The variant whose file the backend loads: runtime steps do not change the file."""
        kept = [s.name for s in self.steps if s.kind not in ("runtime", "weights")]
        return "+".join(kept) if kept else "fp32"

    @property
    def depends_on_bindings(self) -> bool:
        """Whether the artifact depends on the case's shape bindings (static calibration runs
        at the case's shapes): then they are part of its cache key, and a build per binding
        set is needed."""
        return any(s.depends_on_bindings for s in self.steps)

    @property
    def description(self) -> str:
        return "; ".join(s.recipe for s in self.steps) or DESCRIPTIONS["fp32"]


def parse_variant(name: str) -> Variant:
    """The variant called ``name``; ConfigError saying what is wrong and what is allowed."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"unknown variant {name!r}; allowed: {', '.join(DESCRIPTIONS)}")
    if name == "fp32":
        return Variant("fp32")
    steps = tuple(parse_step(part) for part in name.split("+"))
    kinds = [_ORDER[s.kind] for s in steps]
    if kinds != sorted(kinds):
        raise ConfigError(
            f"variant {name!r}: steps must go torch steps (pruned-*, distilled-*), then one "
            "quantization (int8-dynamic/static or int8/int4-weight), then one runtime step "
            "(fp16, bf16, kv-int8)"
        )
    for kind in ("onnx", "weights", "runtime"):
        if sum(s.kind == kind for s in steps) > 1:
            raise ConfigError(f"variant {name!r}: at most one {kind} step may be composed")
    if len({s.name for s in steps}) != len(steps):
        raise ConfigError(f"variant {name!r}: a step appears twice")
    return Variant(name, steps)
