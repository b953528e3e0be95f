"""Variant names: what was done to the model before (or while) a backend runs it.

A variant is ``fp32`` or a ``+``-joined chain of steps, applied left to right::

    torch steps    pruned-unstructured-<pct>, pruned-structured-<pct>, distilled-<n>l
    ONNX steps     int8-dynamic, int8-static          (at most one)
    weight steps   int8-weight, int4-weight            (decoders; at most one)
    runtime steps  fp16, bf16, kv-int8                 (at most one, last)

Torch steps change the module (and so the exported graph); ONNX steps rewrite the exported file;
runtime steps leave the file alone and ask the backend to execute in that precision, which it
does only where the hardware supports it natively. Weight steps (generative decoders only) also
leave the fp32 directory alone: each engine compresses the weights in its own format when it
loads them (NNCF ``compress_weights`` for OpenVINO, ``MatMulNBits`` for onnxruntime-genai),
cached under the engine's own cache directory; ``kv-int8`` asks for an int8 KV cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.errors import ConfigError

StepKind = Literal["torch", "onnx", "weights", "runtime"]
_ORDER = {"torch": 0, "onnx": 1, "weights": 2, "runtime": 3}
GENERATIVE_STEPS = ("int8-weight", "int4-weight", "kv-int8")


@dataclass(frozen=True)
class Step:
    name: str
    kind: StepKind
    recipe: str
    params: dict[str, Any] = field(default_factory=dict)
    precision: str | None = None


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
    def description(self) -> str:
        return "; ".join(s.recipe for s in self.steps) or DESCRIPTIONS["fp32"]


DESCRIPTIONS = {
    "fp32": "the model as trained, exported to ONNX in float32",
    "fp16": "executed in float16 where the backend and CPU support it natively (else skipped)",
    "bf16": "executed in bfloat16 where the backend and CPU support it natively (else skipped)",
    "int8-dynamic": "int8 weights, activations quantized at run time (ORT / PyTorch dynamic)",
    "int8-static": "int8 QDQ graph calibrated on the calibration split (NNCF or ORT min-max)",
    "int8-weight": "weight-only int8 (per channel), activations fp32: decoders, in each "
    "engine's format (NNCF compress_weights, MatMulNBits, PyTorch int8 weight-only)",
    "int4-weight": "weight-only int4 (group size 64, symmetric), activations fp32: decoders, "
    "in each engine's format (NNCF compress_weights, MatMulNBits)",
    "kv-int8": "the KV cache held in int8 where the engine has it (else skipped)",
    "pruned-unstructured-<pct>": "magnitude pruning of Linear weights to <pct>% zeros",
    "pruned-structured-<pct>": "remove <pct>% of attention heads and FFN neurons by importance, "
    "then distil against the unpruned model",
    "distilled-<n>l": "a student with n layers initialised from the teacher's, distilled on the "
    "training split",
}


def _step(name: str) -> Step:
    if name in ("fp16", "bf16"):
        return Step(name, "runtime", DESCRIPTIONS[name], precision=name)
    if name in ("int8-weight", "int4-weight"):
        bits = int(name[3])
        return Step(name, "weights", DESCRIPTIONS[name], {"bits": bits}, precision=f"int{bits}")
    if name == "kv-int8":
        return Step(name, "runtime", DESCRIPTIONS[name])
    if name in ("int8-dynamic", "int8-static"):
        return Step(name, "onnx", DESCRIPTIONS[name], precision="int8")
    if match := re.fullmatch(r"pruned-(unstructured|structured)-(\d{1,2})", name):
        kind, pct = match.group(1), int(match.group(2))
        if not 0 < pct < 100:
            raise ConfigError(f"variant {name!r}: the percentage must be 1..99")
        recipe = DESCRIPTIONS[f"pruned-{kind}-<pct>"].replace("<pct>", str(pct))
        return Step(name, "torch", recipe, {"amount": pct / 100})
    if match := re.fullmatch(r"distilled-(\d{1,2})l", name):
        layers = int(match.group(1))
        if layers < 1:
            raise ConfigError(f"variant {name!r}: a student needs at least 1 layer")
        recipe = DESCRIPTIONS["distilled-<n>l"].replace("n layers", f"{layers} layers")
        return Step(name, "torch", recipe, {"layers": layers})
    raise ConfigError(f"unknown variant step {name!r}; allowed: {', '.join(DESCRIPTIONS)}")


def parse_variant(name: str) -> Variant:
    """The variant called ``name``; ConfigError saying what is wrong and what is allowed."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"unknown variant {name!r}; allowed: {', '.join(DESCRIPTIONS)}")
    if name == "fp32":
        return Variant("fp32")
    steps = tuple(_step(part) for part in name.split("+"))
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
