"""Content digests used for cache keys and artifact identity.

An ONNX model is its graph file plus every external data file the graph reads (ONNX's
``external_data`` ``location`` entries, relative to the graph's folder). :func:`onnx_digest`
covers all of them, so new weights under an unchanged graph are a new artifact.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from harness.errors import ConfigError


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_location(graph: Path, location: str) -> str:
    """``location`` normalised, checked to stay inside the graph's folder. ConfigError (one
    line, before anything touches the disk) for an absolute path or one that climbs out
    (``../``): a model file must not make the tool read or write elsewhere."""
    text = location.replace("\\", "/")
    pure = PurePosixPath(text)
    if not text or pure.is_absolute() or os.path.isabs(location) or ":" in pure.parts[0]:
        raise ConfigError(f"{graph}: external data location {location!r} is not a relative path")
    parts: list[str] = []
    for part in pure.parts:
        if part == "..":
            if not parts:
                raise ConfigError(
                    f"{graph}: external data location {location!r} leaves the model's folder"
                )
            parts.pop()
        elif part != ".":
            parts.append(part)
    if not parts:
        raise ConfigError(f"{graph}: external data location {location!r} names no file")
    return "/".join(parts)


def external_locations(graph: Path) -> tuple[str, ...]:
    """The external data files an ONNX graph reads (relative to its folder, normalised, each
    once, sorted), from every tensor: initializers, attributes and subgraphs. ConfigError for a
    location outside the graph's folder or a file that is not an ONNX model."""
    import onnx
    from onnx.external_data_helper import (
        ExternalDataInfo,
        _get_all_tensors,
        uses_external_data,
    )

    try:
        model = onnx.load(str(graph), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ConfigError(f"{graph}: not an ONNX model ({type(exc).__name__})") from None
    found = {
        safe_location(graph, ExternalDataInfo(t).location)
        for t in _get_all_tensors(model)
        if uses_external_data(t)
    }
    return tuple(sorted(found))


def onnx_digest(graph: Path) -> tuple[str, int]:
    """(sha256, total bytes) of an ONNX model: the graph file and every external data file.

    Without external data the sha256 is the graph file's own (earlier artifacts keep their
    identity); with it, the sha256 of the graph's digest followed by each ``location`` and its
    file's digest, in location order. ConfigError for a missing or unsafe external file."""
    locations = external_locations(graph)
    own = file_sha256(graph)
    size = graph.stat().st_size
    if not locations:
        return own, size
    digest = hashlib.sha256(own.encode())
    for location in locations:
        path = graph.parent / location
        if not path.is_file():
            raise ConfigError(f"{graph}: external data file {location} not found")
        digest.update(b"\0" + location.encode() + b"\0" + file_sha256(path).encode())
        size += path.stat().st_size
    return digest.hexdigest(), size
