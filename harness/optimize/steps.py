"""Every kind of variant step, registered once (:data:`STEPS`).

A step kind is a name pattern and everything that depends on it::

    pattern                       kind     what it changes
    fp16, bf16                    runtime  nothing on disk: the backend executes in that precision
    int8-dynamic, int8-static     onnx     the parent's ONNX file is rewritten
    pruned-unstructured-<pct>     torch    the parent's module is changed, its weights saved
    pruned-structured-<pct>                (safetensors) and exported again
    distilled-<n>l

For each kind: ``parse`` (name -> :class:`Step` with its params), ``apply`` (build the child
artifact's file from its parent), ``replay`` (rebuild the matching torch module from a lineage
link, for ``Artifact.torch_module``), ``revision`` (enters the cache key; bump it when the
recipe's output changes, so that old cache entries are not reused) and ``depends_on_bindings``
(the output depends on the case's shape bindings, which then enter the cache key).

The recipes (:mod:`harness.optimize.recipes`) import torch: this module loads them only inside
``apply`` and ``replay``, so parsing a variant stays cheap.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import BackendUnavailable, ConfigError
from harness.optimize.export import ONNX_FILE

if TYPE_CHECKING:
    import torch

StepKind = Literal["torch", "onnx", "weights", "runtime"]
Progress = Callable[[str], None]
Built = tuple[float, dict[str, Any]]  # (parameters in millions, facts for the lineage)
Link = dict[str, Any]  # one lineage link: step name, directory, params, info


@dataclass(frozen=True)
class Parent:
    """What a step builds from: the parent artifact's model (name or source spec), ONNX file,
    parameter count (millions) and its torch module, rebuilt on demand (ONNX steps never
    need it)."""

    model: str
    onnx_path: Path
    params_m: float
    torch_module: Callable[[], torch.nn.Module]


Apply = Callable[["Step", Parent, Path, tuple[str, ...], Progress], Built]
Replay = Callable[["torch.nn.Module", Link], "torch.nn.Module"]


@dataclass(frozen=True)
class StepSpec:
    """One kind of step. ``regex`` matches whole step names; ``parse`` turns a match into the
    Step (ConfigError for out-of-range numbers). ``apply`` None: the step writes no file
    (runtime precisions; decoders' weight-only steps, which each engine applies itself when it
    loads the fp32 weights); ``replay`` None: there is no torch module to rebuild."""

    pattern: str
    kind: StepKind
    description: str
    regex: str
    parse: Callable[[StepSpec, str, re.Match[str]], Step]
    apply: Apply | None = None
    replay: Replay | None = None
    precision: str | None = None
    revision: int = 0
    depends_on_bindings: bool = False


@dataclass(frozen=True)
class Step:
    """One parsed step of a variant: its name, kind and the parameters that enter the cache key;
    ``recipe`` is the description recorded in the lineage."""

    name: str
    spec: StepSpec = field(repr=False)
    params: dict[str, Any] = field(default_factory=dict)
    recipe: str = ""

    @property
    def kind(self) -> StepKind:
        return self.spec.kind

    @property
    def precision(self) -> str | None:
        """The precision the step asks for (int8, fp16, bf16), None when it keeps the parent's."""
        return self.spec.precision

    @property
    def revision(self) -> int:
        return self.spec.revision

    @property
    def depends_on_bindings(self) -> bool:
        return self.spec.depends_on_bindings

    def apply(
        self, parent: Parent, staging: Path, bindings: tuple[str, ...], progress: Progress
    ) -> Built:
        """Write ``staging/model.onnx`` (and any weights the replay needs) from ``parent``;
        return (parameters in millions, facts for the lineage). ``bindings`` fix a user model's
        dynamic axes where the step depends on them; ``progress`` receives one-line updates of
        long work (training). Recipe errors propagate (VariantNotApplicable: skipped)."""
        if self.spec.apply is None:
            raise ValueError(f"step {self.name!r} writes no file: its artifact is its parent's")
        return self.spec.apply(self, parent, staging, bindings, progress)


# --- parse ---------------------------------------------------------------------------------


def _named(spec: StepSpec, name: str, match: re.Match[str]) -> Step:
    return Step(name, spec, {}, spec.description)


def _percent(spec: StepSpec, name: str, match: re.Match[str]) -> Step:
    pct = int(match.group(1))
    if not 0 < pct < 100:
        raise ConfigError(f"variant {name!r}: the percentage must be 1..99")
    return Step(name, spec, {"amount": pct / 100}, spec.description.replace("<pct>", str(pct)))


def _weight_bits(spec: StepSpec, name: str, match: re.Match[str]) -> Step:
    return Step(name, spec, {"bits": int(match.group(1))}, spec.description)


def _layers(spec: StepSpec, name: str, match: re.Match[str]) -> Step:
    layers = int(match.group(1))
    if layers < 1:
        raise ConfigError(f"variant {name!r}: a student needs at least 1 layer")
    recipe = spec.description.replace("n layers", f"{layers} layers")
    return Step(name, spec, {"layers": layers}, recipe)


# --- apply ---------------------------------------------------------------------------------


def _int8_dynamic(
    step: Step, parent: Parent, staging: Path, bindings: tuple[str, ...], progress: Progress
) -> Built:
    from harness.optimize import recipes

    with _own_copy(parent.onnx_path, staging) as source:
        return parent.params_m, recipes.quantize_dynamic_onnx(source, staging / ONNX_FILE)


def _int8_static(
    step: Step, parent: Parent, staging: Path, bindings: tuple[str, ...], progress: Progress
) -> Built:
    from harness.optimize import recipes

    with _own_copy(parent.onnx_path, staging) as source:
        info = recipes.quantize_static_onnx(parent.model, source, staging / ONNX_FILE, bindings)
    return parent.params_m, info


@contextmanager
def _own_copy(source: Path, staging: Path) -> Iterator[Path]:
    """``source`` (a finished, shared artifact) copied with its external data into this
    build's staging folder: ONNX Runtime's quantizers write temporary files (``*-inferred.onnx``)
    next to their input, and no builder may write outside its own staging folder (two runs
    sharing one cache would otherwise race on those files)."""
    from harness.optimize.artifacts import copy_onnx

    folder = staging / ".input"  # removed before the artifact is described and moved
    folder.mkdir()
    try:
        copy_onnx(source, folder / source.name)
        yield folder / source.name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


Transform = Callable[
    [Step, "torch.nn.Module", str, Progress], tuple["torch.nn.Module", dict[str, Any]]
]


def _torch_step(transform: Transform) -> Apply:
    """A torch step: change the parent's module, save its weights for replay, export it."""

    def apply(
        step: Step, parent: Parent, staging: Path, bindings: tuple[str, ...], progress: Progress
    ) -> Built:
        from harness.optimize import recipes
        from harness.optimize.export import count_params_m, export_onnx

        module, info = transform(step, parent.torch_module(), parent.model, progress)
        recipes.save_state(module, staging)
        export_onnx(module, parent.model, staging / ONNX_FILE)
        return count_params_m(module), info

    return apply


def _prune_unstructured(
    step: Step, module: torch.nn.Module, model: str, progress: Progress
) -> tuple[torch.nn.Module, dict[str, Any]]:
    from harness.optimize import recipes

    return module, recipes.prune_unstructured(module, step.params["amount"])


def _prune_structured(
    step: Step, module: torch.nn.Module, model: str, progress: Progress
) -> tuple[torch.nn.Module, dict[str, Any]]:
    from harness.optimize import recipes

    return recipes.prune_structured(module, model, step.params["amount"], progress)


def _distil(
    step: Step, module: torch.nn.Module, model: str, progress: Progress
) -> tuple[torch.nn.Module, dict[str, Any]]:
    from harness.optimize import recipes

    return recipes.distil_layers(module, model, step.params["layers"], progress)


# --- replay (weights load from safetensors, never a pickle) ----------------------------------


def _replay_int8_dynamic(module: torch.nn.Module, link: Link) -> torch.nn.Module:
    from harness.optimize import recipes

    return recipes.quantize_dynamic_torch(module)


def _replay_int8_static(module: torch.nn.Module, link: Link) -> torch.nn.Module:
    raise BackendUnavailable(
        "PyTorch eager has no int8 path for a static QDQ graph; run int8-static on an "
        "ONNX backend (onnxruntime, openvino)"
    )


def _replay_weights(module: torch.nn.Module, link: Link) -> torch.nn.Module:
    from harness.optimize import recipes

    return recipes.load_state(module, Path(link["directory"]))


def _replay_structured(module: torch.nn.Module, link: Link) -> torch.nn.Module:
    from harness.optimize import recipes, transformer

    transformer.restructure(module, link["info"]["heads"], link["info"]["neurons"])
    return recipes.load_state(module, Path(link["directory"]))


def _replay_distilled(module: torch.nn.Module, link: Link) -> torch.nn.Module:
    from harness.optimize import recipes, transformer

    student = transformer.drop_layers(module, link["info"]["kept_layers"], link["step"])
    return recipes.load_state(student, Path(link["directory"]))


# --- the registry --------------------------------------------------------------------------

FP32_DESCRIPTION = "the model as trained, exported to ONNX in float32"

STEPS: tuple[StepSpec, ...] = (
    StepSpec(
        "fp16", "runtime",
        "executed in float16 where the backend and CPU support it natively (else skipped)",
        r"fp16", _named, precision="fp16",
    ),
    StepSpec(
        "bf16", "runtime",
        "executed in bfloat16 where the backend and CPU support it natively (else skipped)",
        r"bf16", _named, precision="bf16",
    ),
    StepSpec(
        "int8-dynamic", "onnx",
        "int8 weights, activations quantized at run time (ORT / PyTorch dynamic)",
        r"int8-dynamic", _named, _int8_dynamic, _replay_int8_dynamic, precision="int8",
    ),
    StepSpec(
        "int8-static", "onnx",
        "int8 QDQ graph calibrated on the calibration split (NNCF or ORT min-max)",
        r"int8-static", _named, _int8_static, _replay_int8_static, precision="int8",
        depends_on_bindings=True,  # calibration data is generated at the case's shapes
    ),
    StepSpec(
        "kv-int8", "runtime",
        "the KV cache held in int8 where the engine has it (else skipped)",
        r"kv-int8", _named,
    ),
    StepSpec(
        "int8-weight", "weights",
        "weight-only int8 (per channel), activations fp32: decoders, in each engine's format "
        "(NNCF compress_weights, MatMulNBits, PyTorch int8 weight-only)",
        r"int(8)-weight", _weight_bits, precision="int8",
    ),
    StepSpec(
        "int4-weight", "weights",
        "weight-only int4 (group size 64, symmetric), activations fp32: decoders, in each "
        "engine's format (NNCF compress_weights, MatMulNBits)",
        r"int(4)-weight", _weight_bits, precision="int4",
    ),
    StepSpec(
        "pruned-unstructured-<pct>", "torch",
        "magnitude pruning of Linear weights to <pct>% zeros",
        r"pruned-unstructured-(\d{1,2})", _percent, _torch_step(_prune_unstructured),
        _replay_weights,
        revision=2,  # 2: Conv layers are pruned too
    ),
    StepSpec(
        "pruned-structured-<pct>", "torch",
        "remove <pct>% of attention heads and FFN neurons by importance, then distil against "
        "the unpruned model",
        r"pruned-structured-(\d{1,2})", _percent, _torch_step(_prune_structured),
        _replay_structured,
    ),
    StepSpec(
        "distilled-<n>l", "torch",
        "a student with n layers initialised from the teacher's, distilled on the training split",
        r"distilled-(\d{1,2})l", _layers, _torch_step(_distil), _replay_distilled,
    ),
)  # fmt: skip

DESCRIPTIONS = {"fp32": FP32_DESCRIPTION, **{s.pattern: s.description for s in STEPS}}


def parse_step(name: str) -> Step:
    """The step called ``name``; ConfigError naming what is allowed."""
    for spec in STEPS:
        if match := re.fullmatch(spec.regex, name):
            return spec.parse(spec, name, match)
    raise ConfigError(f"unknown variant step {name!r}; allowed: {', '.join(DESCRIPTIONS)}")


def replay(module: torch.nn.Module, link: Link) -> torch.nn.Module:
    """Replay one lineage link on ``module``: the torch module that matches the link's file.
    BackendUnavailable where torch has no equivalent (a static QDQ graph)."""
    spec = parse_step(link["step"]).spec
    if spec.replay is None:
        raise ValueError(f"no torch rebuild for step {link['step']!r}")
    return spec.replay(module, link)
