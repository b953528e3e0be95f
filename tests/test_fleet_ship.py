"""Artifacts packed once on the driver and checked by sha256 where they are unpacked."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.digest import file_sha256
from harness.launch.ship import ShippingError, pack, unpack
from harness.optimize.artifacts import Artifact


def _artifact(tmp_path: Path) -> Artifact:
    directory = tmp_path / "built"
    (directory / "sub").mkdir(parents=True)
    (directory / "model.onnx").write_bytes(b"graph bytes")
    (directory / "sub" / "weights.bin").write_bytes(b"\x00\x01" * 100)
    sha = file_sha256(directory / "model.onnx")
    return Artifact("tiny-mlp", "fp32", "k1", str(directory), sha, 0.0, 0.0)


def test_a_packed_artifact_unpacks_elsewhere_with_the_same_bytes(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    packed = pack(artifact)
    assert pack(artifact).data == packed.data  # deterministic: same files, same tar
    shipped = unpack(packed, tmp_path / "node")
    assert Path(shipped.directory).parent == tmp_path / "node"
    assert (Path(shipped.directory) / "sub" / "weights.bin").read_bytes() == b"\x00\x01" * 100
    assert shipped.sha256 == artifact.sha256 and unpack(packed, tmp_path / "node") == shipped


def test_bytes_changed_on_the_way_are_refused(tmp_path: Path) -> None:
    packed = pack(_artifact(tmp_path))
    broken = replace(packed, data=packed.data.replace(b"graph bytes", b"graph BYTES"))
    with pytest.raises(ShippingError, match="shipped bytes have sha256"):
        unpack(broken, tmp_path / "node")


def test_a_model_file_that_differs_from_the_build_is_refused(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path)
    packed = pack(replace(artifact, sha256="0" * 64))
    with pytest.raises(ShippingError, match="does not match sha256 000000000000"):
        unpack(packed, tmp_path / "node")
