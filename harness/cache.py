"""Where infrabench keeps what it builds: artifacts, trained zoo weights, compiled libraries."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "INFRABENCH_CACHE"


def cache_root(option: str | None = None) -> Path:
    """The option, else ``$INFRABENCH_CACHE``, else ``~/.cache/infrabench``."""
    chosen = option or os.environ.get(CACHE_ENV)
    return Path(chosen).expanduser() if chosen else Path.home() / ".cache" / "infrabench"
