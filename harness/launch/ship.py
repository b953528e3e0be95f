"""Artifacts travel to fleet nodes as bytes, built once on the driver, checked on arrival.

``pack`` turns an artifact's directory into one deterministic tar (sorted names, zeroed times
and owners) and its sha256; the executor carries the bytes (Ray's object store, a shared path).
``unpack`` on the node checks the tar's sha256, extracts it under the node's own directory and
checks the model file against the artifact's recorded sha256 before anything is measured. A
mismatch raises ``ShippingError`` (that case's failed row); nothing is rebuilt on a node.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

from harness.digest import file_sha256
from harness.errors import HarnessError
from harness.optimize.artifacts import Artifact


class ShippingError(HarnessError):
    """An artifact's bytes did not arrive intact on a node."""


@dataclass(frozen=True)
class Packed:
    """An artifact's directory as tar bytes, with the tar's sha256 (hex)."""

    artifact: Artifact
    data: bytes
    sha256: str


def _normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack(artifact: Artifact) -> Packed:
    """The artifact directory's files as one tar (same bytes for the same files)."""
    root = Path(artifact.directory)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            tar.add(path, arcname=str(path.relative_to(root)), filter=_normalize)
    data = buffer.getvalue()
    return Packed(artifact, data, hashlib.sha256(data).hexdigest())


def unpack(packed: Packed, into: Path) -> Artifact:
    """Check and extract ``packed`` under ``into``/<artifact key>; the artifact, pointing there.

    Raises ShippingError when the tar's sha256 or the model file's sha256 differs from what the
    driver recorded."""
    got = hashlib.sha256(packed.data).hexdigest()
    if got != packed.sha256:
        raise ShippingError(
            f"artifact {packed.artifact.key}: shipped bytes have sha256 {got[:12]}, "
            f"driver sent {packed.sha256[:12]}"
        )
    target = into / f"{packed.artifact.key}-{packed.sha256[:12]}"
    if not target.is_dir():
        staging = target.with_name(f"{target.name}.{os.getpid()}.part")
        staging.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(packed.data), mode="r") as tar:
            tar.extractall(staging, filter="data")
        try:
            staging.rename(target)
        except OSError:  # another worker on this host extracted the same bytes first
            if not target.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    artifact = replace(packed.artifact, directory=str(target))
    model = artifact.onnx_path
    if model.exists() and file_sha256(model) != artifact.sha256:
        raise ShippingError(
            f"artifact {artifact.key}: model.onnx on this node does not match sha256 "
            f"{artifact.sha256[:12]} recorded at build"
        )
    return artifact
