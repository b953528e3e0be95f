"""The content-addressed artifact cache: one ONNX file (and its lineage) per (model, variant).

Layout: ``<cache>/artifacts/<model>/<variant>/<key>/{model.onnx, meta.json}`` where ``key`` is
the sha256 of the recipe (model source digest, variant, exporter, opset, torch version). Every
ONNX-consuming backend runs the same file; torch backends rebuild the matching module. What
each variant step does, and how it enters the key, is registered in :mod:`.steps`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backend import staged
from harness.cache import CACHE_ENV as CACHE_ENV  # re-exported: callers find the cache here
from harness.cache import cache_root as cache_root
from harness.digest import external_locations, file_sha256, onnx_digest
from harness.environment import package_version
from harness.errors import ConfigError
from harness.models import get_model, is_user_model
from harness.optimize.export import ONNX_FILE, OPSET, count_params_m, export_onnx
from harness.optimize.steps import Parent, Step, parse_step, replay
from harness.optimize.variants import parse_variant

if TYPE_CHECKING:
    import torch

ARTIFACT_FORMAT = 3  # bump when a recipe changes what it writes: old cache entries are not reused


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
        return Path(self.directory) / ONNX_FILE

    def torch_module(self) -> torch.nn.Module:
        """The torch module matching this artifact: the zoo model with the lineage replayed.
        VariantNotApplicable for a model without a torch module (an ONNX file);
        BackendUnavailable for a step torch cannot replay (int8-static)."""
        module = get_model(self.model).build_torch()
        for link in self.lineage.get("chain", []):
            module = replay(module, link)
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


def step_recipe(parent_key: str, step: Step, bindings: tuple[str, ...] = ()) -> dict[str, Any]:
    """A derived artifact's identity: its parent's key plus the step, the tools' versions, the
    step's revision (when it has one) and, for a step whose output depends on them, the shape
    bindings."""
    data: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "parent": parent_key,
        "step": step.name,
        "params": step.params,
        "torch": package_version("torch"),
        "onnxruntime": package_version("onnxruntime"),
        "nncf": package_version("nncf"),
    }
    if step.revision:  # a recipe changed without invalidating the others' cache entries
        data["revision"] = step.revision
    if step.depends_on_bindings and bindings:
        data["calibration_bindings"] = sorted(bindings)
    return data


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


def _store(
    staging: Path, final: Path, model: str, variant: str, params_m: float, lineage: dict[str, Any]
) -> Artifact:
    """Describe ``staging/model.onnx`` (a decoder's ``model.safetensors``), to be moved to
    ``final``, and write its meta.json. The sha256 and size cover the graph and every external
    data file it reads (a decoder: its weights file)."""
    weights = staging / "model.safetensors"
    if not (staging / ONNX_FILE).exists() and weights.exists():
        sha256, size = file_sha256(weights), weights.stat().st_size
    else:
        sha256, size = onnx_digest(staging / ONNX_FILE)
    artifact = Artifact(
        model=model,
        variant=variant,
        key=final.name,
        directory=str(final),
        sha256=sha256,
        size_mb=size / 2**20,
        params_m=params_m,
        lineage=lineage,
    )
    (staging / "meta.json").write_text(json.dumps({"artifact": artifact.to_dict()}, indent=2))
    return artifact


def _build_once(
    root: Path,
    model_name: str,
    variant_name: str,
    recipe_data: dict[str, Any],
    make: Callable[[Path], tuple[float, dict[str, Any]]],
) -> Artifact:
    """The artifact cached under this recipe's key, or ``make(staging)`` it: ``make`` writes
    ``staging/model.onnx`` and returns (parameters in millions, lineage facts)."""
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
    from harness.models.causal_lm import CausalLMModel

    if isinstance(model, CausalLMModel):  # a decoder's artifact is its fp32 HF directory
        return model.save_fp32(staging), {"parent": None, "chain": [], "format": "hf-dir"}
    target = staging / ONNX_FILE
    if model.onnx_file is not None:
        copy_onnx(model.onnx_file, target)
        onnx.checker.check_model(str(target))
        facts: dict[str, Any] = {"parent": None, "chain": [], "source_file": str(model.onnx_file)}
        return model.params_m or 0.0, facts
    module = model.build_torch()
    export_onnx(module, model_name, target)
    onnx.checker.check_model(str(target))
    return count_params_m(module), {"parent": None, "chain": []}


def copy_onnx(source: Path, target: Path) -> None:
    """Copy an ONNX graph and every external data file it reads, keeping their layout
    (sub-folders included). Unsafe locations (absolute, ``../``) are refused (ConfigError)
    before anything is copied."""
    locations = external_locations(source)
    missing = [loc for loc in locations if not (source.parent / loc).is_file()]
    if missing:
        raise ConfigError(f"{source}: external data file {missing[0]} not found")
    shutil.copyfile(source, target)
    for location in locations:
        (target.parent / location).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.parent / location, target.parent / location)


def _no_progress(text: str) -> None:
    pass


def build_artifact(
    model: str,
    variant: str,
    cache: Path,
    bindings: tuple[str, ...] = (),
    progress: Callable[[str], None] = _no_progress,
) -> Artifact:
    """The cached artifact of ``variant`` of ``model`` under ``cache``, building it (and its
    parents) if missing. Runs user code and recipes: call it in a worker process.

    Runtime steps (fp16, bf16) do not change the file: their artifact is their parent's.
    ``bindings`` fix a user model's dynamic axes for the steps whose output depends on them
    (static calibration; part of their key); other steps ignore them. ``progress`` receives
    one-line updates of long work (distillation epochs). ConfigError for a bad name,
    VariantNotApplicable when the step cannot apply to this model (the case is skipped).
    """
    name = parse_variant(variant).artifact_name
    if name == "fp32":
        return _build_once(
            cache, model, "fp32", base_recipe(model),
            lambda staging: _export_base(model, staging),
        )  # fmt: skip
    parent_name, _, last = name.rpartition("+")
    parent = build_artifact(model, parent_name or "fp32", cache, bindings, progress)
    step = parse_step(last)
    data = step_recipe(parent.key, step, bindings)
    final = _directory(cache, model, name, _recipe_key(data))
    source = Parent(parent.model, parent.onnx_path, parent.params_m, parent.torch_module)

    def make(staging: Path) -> tuple[float, dict[str, Any]]:
        built_params_m, info = step.apply(source, staging, bindings, progress)
        link = {"step": step.name, "directory": str(final), "params": step.params, "info": info}
        chain = [*parent.lineage.get("chain", []), link]
        return built_params_m, {"parent": parent.key, "parent_variant": parent.variant,
                                 "step": step.recipe, "info": info, "chain": chain}  # fmt: skip

    return _build_once(cache, model, name, data, make)


build = build_artifact  # the short name the tests and pytest suites use
