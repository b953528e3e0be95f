"""The content-addressed artifact cache: one ONNX file (and its lineage) per (model, variant).

Layout: ``<cache>/artifacts/<model>/<variant>/<key>/{model.onnx, meta.json}`` where ``key`` is
the sha256 of the recipe (model source digest, variant, exporter, opset, torch version). Every
ONNX-consuming backend runs the same file; torch backends rebuild the matching module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.models import get_model
from harness.optimize.variants import get_variant

if TYPE_CHECKING:
    import torch

CACHE_ENV = "INFRABENCH_CACHE"
ARTIFACT_FORMAT = 1
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
        """The torch module this artifact was exported from (fp32: the zoo model itself)."""
        return get_model(self.model).build_torch()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        return cls(**data)


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def recipe(model_name: str, variant_name: str) -> dict[str, Any]:
    """Everything that determines the artifact's bytes; its hash is the cache key."""
    model = get_model(model_name)
    get_variant(variant_name)
    return {
        "format": ARTIFACT_FORMAT,
        "model": model_name,
        "source": model.source_fingerprint(),
        "variant": variant_name,
        "exporter": "torch.onnx.export(dynamo=False)",
        "opset": OPSET,
        "torch": _package_version("torch"),
    }


def _recipe_key(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached(model_name: str, variant_name: str, root: Path) -> Artifact | None:
    """The cached artifact for this recipe, or ``None`` if it has not been built."""
    data = recipe(model_name, variant_name)
    meta = root / "artifacts" / model_name / variant_name / _recipe_key(data) / "meta.json"
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


def build(model_name: str, variant_name: str, root: Path) -> Artifact:
    """Return the cached artifact, building and storing it atomically if missing."""
    found = cached(model_name, variant_name, root)
    if found is not None:
        return found
    data = recipe(model_name, variant_name)
    key = _recipe_key(data)
    final = root / "artifacts" / model_name / variant_name / key
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        started = time.perf_counter()
        module = get_model(model_name).build_torch()
        onnx_path = staging / "model.onnx"
        export_onnx(module, model_name, onnx_path)
        import onnx

        onnx.checker.check_model(str(onnx_path))
        artifact = Artifact(
            model=model_name,
            variant=variant_name,
            key=key,
            directory=str(final),
            sha256=_file_sha256(onnx_path),
            size_mb=onnx_path.stat().st_size / 2**20,
            params_m=sum(p.numel() for p in module.parameters()) / 1e6,
            lineage={"parent": None, "recipe": data, "build_s": time.perf_counter() - started},
        )
        (staging / "meta.json").write_text(json.dumps({"artifact": artifact.to_dict()}, indent=2))
        try:
            staging.rename(final)
        except OSError:
            if not (final / "meta.json").is_file():  # not a concurrent build of the same key
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return artifact


def build_in_worker(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: build (or find) one artifact and return it as a dict."""
    return build(payload["model"], payload["variant"], Path(payload["cache"])).to_dict()
