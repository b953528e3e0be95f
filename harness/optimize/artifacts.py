"""The content-addressed artifact cache: one ONNX file (and its lineage) per (model, variant).

Layout: ``<cache>/artifacts/<model>/<variant>/<key>/{model.onnx, meta.json}`` where ``key`` is
the sha256 of the recipe (model source digest, variant, exporter, opset, torch version). Every
ONNX-consuming backend runs the same file; torch backends rebuild the matching module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backend import staged
from harness.digest import file_sha256
from harness.environment import package_version
from harness.models import get_model, is_user_model
from harness.optimize.variants import Step, parse_variant

if TYPE_CHECKING:
    import torch

CACHE_ENV = "INFRABENCH_CACHE"
ARTIFACT_FORMAT = 3  # bump when a recipe changes what it writes: old cache entries are not reused
OPSET = 17


def cache_root(option: str | None = None) -> Path:
    """The option, else ``$INFRABENCH_CACHE``, else ``~/.cache/infrabench``."""
    chosen = option or os.environ.get(CACHE_ENV)
    return Path(chosen).expanduser() if chosen else Path.home() / ".cache" / "infrabench"


@dataclass(frozen=True)
class Artifact:
    """A built model variant on disk, with its identity and lineage."""

    model: str
    variant: str
    key: str
    directory: str
    sha256: str
    size_mb: float
    params_m: float
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def onnx_path(self) -> Path:
        return Path(self.directory) / "model.onnx"

    def torch_module(self) -> torch.nn.Module:
        """The torch module matching this artifact: the zoo model with the lineage replayed."""
        module = get_model(self.model).build_torch()
        if self.lineage.get("chain"):
            from harness.optimize.recipes import rebuild

            for link in self.lineage["chain"]:
                module = rebuild(module, link)
        return module

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        return cls(**data)


def base_recipe(model_name: str) -> dict[str, Any]:
    """Everything that determines the fp32 export's bytes; its hash is the cache key."""
    if getattr(get_model(model_name), "generative", False):
        return {"format": ARTIFACT_FORMAT, "model": model_name, "variant": "fp32",
                "source": get_model(model_name).source_fingerprint(), "exporter": "hf-dir",
                "transformers": package_version("transformers")}  # fmt: skip
    return {
        "format": ARTIFACT_FORMAT,
        "model": model_name,
        "source": get_model(model_name).source_fingerprint(),
        "variant": "fp32",
        "exporter": "torch.onnx.export(dynamo=False)",
        "opset": OPSET,
        "torch": package_version("torch"),
    }


def step_recipe(parent: Artifact, step: Step) -> dict[str, Any]:
    """A derived artifact's identity: its parent's key plus the step and the tools' versions."""
    data: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "parent": parent.key,
        "step": step.name,
        "params": step.params,
        "torch": package_version("torch"),
        "onnxruntime": package_version("onnxruntime"),
        "nncf": package_version("nncf"),
    }
    revision = _REVISIONS.get(step.name.rpartition("-")[0])
    if revision:  # a recipe changed without invalidating the others' cache entries
        data["revision"] = revision
    return data


_REVISIONS = {"pruned-unstructured": 2}  # 2: Conv layers are pruned too


def _recipe_key(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _slug(model_name: str) -> str:
    """A directory name for a model: zoo names as they are; source specs (paths) as their kind,
    file or directory stem and a digest of the whole spec."""
    if not is_user_model(model_name):
        return model_name
    kind, _, rest = model_name.partition(":")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(rest.split("#")[0].split(":")[0]).stem)[:40]
    return f"{kind}-{stem}-{hashlib.sha256(model_name.encode()).hexdigest()[:10]}"


def _directory(root: Path, model_name: str, variant_name: str, key: str) -> Path:
    return root / "artifacts" / _slug(model_name) / variant_name / key


def _load_meta(directory: Path) -> Artifact | None:
    meta = directory / "meta.json"
    if not meta.is_file():
        return None
    return Artifact.from_dict(json.loads(meta.read_text())["artifact"])


def export_onnx(module: torch.nn.Module, model_name: str, path: Path) -> None:
    """Export with the TorchScript exporter: dynamic batch (and sequence) axes, opset 17."""
    import torch

    model = get_model(model_name)
    example = model.example_inputs(2, 16 if model.uses_sequence else None)
    args = tuple(torch.from_numpy(example[name]) for name in model.input_names)
    with warnings.catch_warnings(), torch.inference_mode():
        # The tracer warns about every data-dependent Python branch in transformers; the
        # exported graph is checked against the torch outputs by the conformance tests.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(model.input_names),
            output_names=list(model.output_names),
            dynamic_axes=model.dynamic_axes(),
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _store(
    staging: Path, final: Path, model: str, variant: str, params_m: float, lineage: dict[str, Any]
) -> Artifact:
    """Describe ``staging/model.onnx`` (a decoder's ``model.safetensors``), to be moved to
    ``final``, and write its meta.json."""
    onnx_path = staging / "model.onnx"
    if not onnx_path.exists() and (staging / "model.safetensors").exists():
        onnx_path = staging / "model.safetensors"
    artifact = Artifact(
        model=model,
        variant=variant,
        key=final.name,
        directory=str(final),
        sha256=file_sha256(onnx_path),
        size_mb=onnx_path.stat().st_size / 2**20,
        params_m=params_m,
        lineage=lineage,
    )
    (staging / "meta.json").write_text(json.dumps({"artifact": artifact.to_dict()}, indent=2))
    return artifact


def _params_m(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def _build_once(
    root: Path,
    model_name: str,
    variant_name: str,
    recipe_data: dict[str, Any],
    make: Callable[[Path], tuple[float, dict[str, Any]]],
) -> Artifact:
    """The artifact cached under this recipe's key, or ``make(staging)`` it: ``make`` writes
    ``staging/model.onnx`` and returns (params_m, lineage facts)."""
    final = _directory(root, model_name, variant_name, _recipe_key(recipe_data))
    found = _load_meta(final)
    if found is not None:
        return found
    with staged(final, "meta.json") as staging:
        started = time.perf_counter()
        params_m, facts = make(staging)
        lineage = {"recipe": recipe_data, **facts, "build_s": time.perf_counter() - started}
        artifact = _store(staging, final, model_name, variant_name, params_m, lineage)
    return artifact


def _export_base(model_name: str, staging: Path) -> tuple[float, dict[str, Any]]:
    """The fp32 artifact: the torch module exported, or a user's ONNX file copied as it is
    (with its external data files)."""
    import onnx

    model = get_model(model_name)
    if getattr(model, "generative", False):  # a decoder's artifact is its fp32 HF directory
        return model.save_fp32(staging), {"parent": None, "chain": [], "format": "hf-dir"}  # type: ignore[attr-defined]
    source = getattr(model, "onnx_file", None)
    if source is not None:
        _copy_onnx(Path(source), staging / "model.onnx")
        onnx.checker.check_model(str(staging / "model.onnx"))
        return float(getattr(model, "params_m", 0.0)), {"parent": None, "chain": [],
                                                         "source_file": str(source)}  # fmt: skip
    module = model.build_torch()
    export_onnx(module, model_name, staging / "model.onnx")
    onnx.checker.check_model(str(staging / "model.onnx"))
    return _params_m(module), {"parent": None, "chain": []}


def _copy_onnx(source: Path, target: Path) -> None:
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    shutil.copyfile(source, target)
    model = onnx.load(str(source), load_external_data=False)
    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            location = ExternalDataInfo(tensor).location
            if not (target.parent / location).exists():
                shutil.copyfile(source.parent / location, target.parent / location)


def _apply_step(
    parent: Artifact, step: Step, staging: Path, bindings: tuple[str, ...]
) -> tuple[float, dict[str, Any]]:
    """Produce ``staging/model.onnx`` from ``parent`` by one step; return (params_m, info)."""
    from harness.optimize import recipes

    target = staging / "model.onnx"
    if step.kind == "onnx":
        if step.name == "int8-dynamic":
            info = recipes.quantize_dynamic_onnx(parent.onnx_path, target)
        else:
            info = recipes.quantize_static_onnx(parent, target, bindings)
        return parent.params_m, info
    module = parent.torch_module()
    if step.name.startswith("pruned-unstructured"):
        info = recipes.prune_unstructured(module, step.params["amount"])
    elif step.name.startswith("pruned-structured"):
        module, info = recipes.prune_structured(module, parent.model, step.params["amount"])
    else:
        module, info = recipes.distil_layers(module, parent.model, step.params["layers"])
    recipes.save_state(module, staging)
    export_onnx(module, parent.model, target)
    return _params_m(module), info


def build(
    model_name: str, variant_name: str, root: Path, bindings: tuple[str, ...] = ()
) -> Artifact:
    """The cached artifact of ``variant_name``, building it (and its parents) if missing.

    Runtime steps (fp16, bf16) do not change the file: their artifact is their parent's.
    ``bindings`` fix a user model's dynamic axes for static calibration (part of its key).
    """
    variant = parse_variant(variant_name)
    name = variant.artifact_name
    if name == "fp32":
        return _build_once(
            root, model_name, "fp32", base_recipe(model_name),
            lambda staging: _export_base(model_name, staging),
        )  # fmt: skip
    parent_name, _, last = name.rpartition("+")
    parent = build(model_name, parent_name or "fp32", root, bindings)
    step = next(s for s in variant.steps if s.name == last)
    data = step_recipe(parent, step)
    if step.name == "int8-static" and bindings:
        data["calibration_bindings"] = sorted(bindings)
    final = _directory(root, model_name, name, _recipe_key(data))

    def make(staging: Path) -> tuple[float, dict[str, Any]]:
        params_m, info = _apply_step(parent, step, staging, bindings)
        link = {"step": step.name, "directory": str(final), "params": step.params, "info": info}
        chain = [*parent.lineage.get("chain", []), link]
        return params_m, {"parent": parent.key, "parent_variant": parent.variant,
                          "step": step.recipe, "info": info, "chain": chain}  # fmt: skip

    return _build_once(root, model_name, name, data, make)


def build_artifact(
    model: str,
    variant: str,
    cache: Path,
    bindings: tuple[str, ...] = (),
    progress: Callable[[str], None] = lambda _: None,
) -> Artifact:
    """Build (or find) one artifact."""
    return build(model, variant, cache, bindings)
