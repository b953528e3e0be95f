"""Process memory probes (Linux/macOS). Values in MiB."""

from __future__ import annotations

import resource
import sys

import psutil


def rss_mb() -> float:
    """Current resident set size of this process."""
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process since it started (the worker's whole life)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
