"""Benchmark suites: real runtimes and real timing. Run with ``tox -e bench``, not by ``pytest``."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
