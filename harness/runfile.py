"""A run as one versioned JSON file: its machine, its rows and its raw samples.

Used for CI baselines (``infrabench ci --baseline``) and for moving results between stores.
The file carries its own format version. Older versions are brought up to date on read by the
``update_to_N`` functions, applied in order (``UPDATES``); a newer version is refused in one line
naming both versions. Versions:

1. ``run``, ``cases`` (``CaseResult`` dicts, speedups as the store had them), ``samples``.
2. adds ``history``: per case, the p50s of later runs on the same machine that passed the gate,
   from which compare estimates between-run drift.
3. cases carry ``hardware_class`` and ``noise``; ``run`` carries the suite's speedup baseline
   (``baseline_backend``, ``baseline_variant``). Readers need to know a v2 file has none of
   these (null, not "unknown key"), hence the bump.
4. cases carry ``node``, the fleet node a case ran on (null: the machine that wrote the run),
   the load-scenario columns (``serving``, ``target_qps``, ``achieved_qps``,
   ``latency_bound_ms``, ``valid``, ``early_stop_p99_ms``, ``goodput_rps``, ``error_rate``)
   and the decoder columns (``prompt_len``, ``gen_len``, ``ttft_ms_*``, ``tpot_ms_*``,
   ``itl_ms_p99``, ``e2e_ms_p50``, token rates, ``kv_cache_mb``, per-output-token cost and
   carbon); all null in older files.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness import strict_json
from harness.compare import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_EFFECT,
    CaseComparison,
    compare_runs,
    history_key,
)
from harness.errors import ConfigError, HarnessError
from harness.result import CaseResult
from harness.store import Store
from harness.store_schema import ADDED_COLUMNS, derive_baseline, legacy_hardware_class

FORMAT = "infrabench-run"
VERSION = 4  # what ``write`` writes and the newest ``read`` reads
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
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(strict_json.dumps(data))
        Path(staging).replace(path)
    except OSError as exc:  # a full disk: no half-written or empty file stays behind
        raise HarnessError(f"{path}: run file not written: {exc.strerror or exc}") from None
    finally:
        Path(staging).unlink(missing_ok=True)


def load_json(path: Path) -> Any:
    """A user's JSON file; ConfigError (one line) if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON file: {exc}") from None


def update_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: a v1 file kept no history."""
    return {**data, "version": 2, "history": {}}


def update_to_3(data: dict[str, Any]) -> dict[str, Any]:
    """v2 -> v3: cases get ``hardware_class`` and ``noise`` (null: not recorded); the run gets
    the baseline its stored speedups were computed from, where ``derive_baseline`` can tell it
    for certain, else null (the speedups are kept as written either way)."""
    cases = [
        {"hardware_class": legacy_hardware_class(c.get("device")), "noise": None, **c}
        for c in data["cases"]
    ]
    rows = [CaseResult.from_dict(c).to_dict() for c in cases]
    backend, variant = derive_baseline(rows) or (None, None)
    run = {"baseline_backend": backend, "baseline_variant": variant, **data["run"]}
    return {**data, "version": 3, "run": run, "cases": cases}


def update_to_4(data: dict[str, Any]) -> dict[str, Any]:
    """v3 -> v4: cases get ``node`` (a v3 run ran on one machine), the load-scenario columns
    (older rows were measured by the single-stream loop) and the decoder columns (no v3 row
    measured a decoder): all null (store schema v3's added columns)."""
    added = dict.fromkeys(ADDED_COLUMNS[3]["cases"])
    return {**data, "version": 4, "cases": [{**added, **c} for c in data["cases"]]}


# UPDATES[n] turns a version n - 1 file into version n.
UPDATES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    2: update_to_2,
    3: update_to_3,
    4: update_to_4,
}

_CASE_KEYS = ("run_id", "case_id", "model", "variant", "backend")


def _check(data: dict[str, Any], version: int) -> str | None:
    """What makes ``data``, a run file of ``version``, malformed, or ``None``."""
    run, cases = data.get("run"), data.get("cases")
    if not isinstance(run, dict) or not all(
        isinstance(run.get(k), str) for k in ("run_id", "fingerprint_sha256")
    ):
        return "'run' must be an object with 'run_id' and 'fingerprint_sha256' strings"
    if not isinstance(cases, list):
        return "'cases' must be a list of case objects"
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or not all(isinstance(case.get(k), str) for k in _CASE_KEYS):
            return f"cases[{i}] must be an object with {', '.join(_CASE_KEYS)} (strings)"
        if case.get("status", "ok") not in ("ok", "failed", "skipped"):
            return f"cases[{i}]: status must be ok, failed or skipped, got {case['status']!r}"
    for key in ("samples", "history") if version >= 2 else ("samples",):
        table = data.get(key)
        if not isinstance(table, dict) or not all(
            isinstance(v, list) and all(isinstance(x, int | float) for x in v)
            for v in table.values()
        ):
            return f"'{key}' must be an object of lists of numbers"
        if not all(math.isfinite(x) for v in table.values() for x in v):
            return f"'{key}' holds a non-finite number (NaN or Infinity)"
    seen: set[str] = set()
    for case in cases:
        if case["case_id"] in seen:
            return f"case {case['case_id']} appears twice"
        seen.add(case["case_id"])
    return None


def read(path: Path) -> RunFile:
    """Read a run file of any version up to ``VERSION``, updated to ``VERSION``.

    Raises ConfigError (one line naming the file) if it is missing, not a run file, of a newer
    version than this code reads, or malformed (``run``, ``cases``, ``samples``, ``history``).
    """
    data = load_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not an infrabench run file (format must be {FORMAT!r})")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{path}: run file version must be a positive integer, got {version!r}")
    if version > VERSION:
        raise ConfigError(
            f"{path}: run file has version {version}; this infrabench reads up to {VERSION}: "
            "upgrade infrabench"
        )
    problem = _check(data, version)
    if problem is not None:
        raise ConfigError(f"{path}: not a valid run file: {problem}")
    for target in range(version + 1, VERSION + 1):
        data = UPDATES[target](data)
    cases = [CaseResult.from_dict(c) for c in data["cases"]]
    return RunFile(data["run"], cases, data["samples"], data["history"])
