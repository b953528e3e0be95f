"""A run as one versioned JSON file: its machine, its rows and its raw samples.

Used for CI baselines (``infrabench ci --baseline``) and for moving results between stores.
The file carries its own format version; older versions are migrated on read, newer ones are
refused with a clear error. Version 2 adds ``history``: per case, the p50s of later runs on the
same machine that passed the gate, from which compare estimates between-run drift.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.compare import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_EFFECT,
    CaseComparison,
    compare_runs,
    history_key,
)
from harness.errors import ConfigError
from harness.result import CaseResult
from harness.store import Store

FORMAT = "infrabench-run"
VERSION = 2
HISTORY_MAX = 10  # earlier medians kept per case


@dataclass
class RunFile:
    run: dict[str, Any]
    cases: list[CaseResult]
    samples: dict[str, list[float]]  # case_id -> latencies in ms
    history: dict[str, list[float]] = field(default_factory=dict)  # history_key -> p50s

    @property
    def run_id(self) -> str:
        return str(self.run["run_id"])

    def sample_arrays(self) -> dict[tuple[str, str], np.ndarray]:
        """Samples keyed as ``compare_runs`` wants them: (run_id, case_id)."""
        return {(self.run_id, k): np.asarray(v, dtype=np.float64) for k, v in self.samples.items()}


def compare(
    base: RunFile,
    candidate: RunFile,
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
) -> list[CaseComparison]:
    """``compare_runs`` on two whole runs; comparable only on the same machine fingerprint."""
    return compare_runs(
        base.cases,
        candidate.cases,
        {**base.sample_arrays(), **candidate.sample_arrays()},
        same_machine(base, candidate),
        alpha,
        min_effect,
        base.history,
    )


def same_machine(a: RunFile, b: RunFile) -> bool:
    return bool(a.run["fingerprint_sha256"] == b.run["fingerprint_sha256"])


def with_history(baseline: RunFile, current: RunFile) -> RunFile:
    """The baseline, unchanged, with the current run's p50s added to its history (the last
    ``HISTORY_MAX`` per case); only a run on the same machine counts."""
    if not same_machine(baseline, current):
        return baseline
    history = {k: list(v) for k, v in baseline.history.items()}
    for case in current.cases:
        if case.status == "ok" and case.latency_ms_p50:
            kept = history.setdefault(history_key(case), [])
            kept.append(case.latency_ms_p50)
            del kept[:-HISTORY_MAX]
    return replace(baseline, history=history)


def export_run(store: Store, run_id: str) -> RunFile:
    cases = store.cases(run_id)
    samples = {c.case_id: store.samples(run_id, c.case_id).tolist() for c in cases}
    return RunFile(store.run(run_id), cases, {k: v for k, v in samples.items() if v})


def write(runfile: RunFile, path: Path) -> None:
    """Write atomically: a crash never leaves a half-written baseline."""
    data = {
        "format": FORMAT,
        "version": VERSION,
        "run": {k: v.isoformat() if isinstance(v, datetime) else v for k, v in runfile.run.items()},
        "cases": [c.to_dict() for c in runfile.cases],
        "samples": runfile.samples,
        "history": runfile.history,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=".run-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    Path(staging).replace(path)


def load_json(path: Path) -> Any:
    """A user's JSON file; ConfigError (one line) if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON file: {exc}") from None


def read(path: Path) -> RunFile:
    """Read a run file; ConfigError (one line) if it is missing, not one, or too new."""
    data = load_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not an infrabench run file (format must be {FORMAT!r})")
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ConfigError(
            f"{path}: run file version {version!r}; this infrabench reads up to {VERSION}"
        )
    cases = [CaseResult.from_dict(c) for c in data["cases"]]
    return RunFile(data["run"], cases, data["samples"], data.get("history", {}))  # v1: none
