"""``infrabench import``: pytest-benchmark JSON written through the ``infrabench_case`` fixture
-> one run in the store (rows, raw samples and the machine's fingerprint).

The whole file is validated before anything is written, and the run is stored in one
transaction: a malformed, partial, duplicate, other-version or foreign file is one line naming
the file and what is wrong (ConfigError, exit 2) and leaves nothing in the store. A fingerprint
of an older writer (no ``fingerprint_sha256`` or ``physical_cores``) is read: the hash is
computed from what it carries, the core count is left unknown.
"""

from __future__ import annotations

import hashlib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.result import CaseResult
from harness.runfile import load_json
from harness.runner import new_run_id
from harness.store import Store

_CASE_KEYS = ("case_id", "model", "variant", "backend")  # run_id is this import's
_FINGERPRINT_KEYS: dict[str, Any] = {"cpu_model": str, "isa_flags": list, "logical_cpus": int,
                     "memory_gb": (int, float), "os": str, "python": str,
                     "versions": dict}  # fmt: skip
_STATUSES = ("ok", "skipped", "failed")


def import_pytest_benchmark(path: Path, store: Store) -> tuple[str, int]:
    """Store the infrabench cases of a pytest-benchmark JSON file; return (run id, count).
    ConfigError (nothing stored) for any file that is not a complete, consistent one."""
    return store_import(path, store, read_pytest_benchmark(path))


Imported = tuple[str, dict[str, Any], list[tuple[CaseResult, list[float]]]]


def read_pytest_benchmark(path: Path) -> Imported:
    """Read and check the whole file before any store is opened: (run id, fingerprint, rows
    with their samples). ConfigError naming the file and what is wrong."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ConfigError(f"{path}: not pytest-benchmark JSON (no 'benchmarks' list)")
    machine = data.get("machine_info")
    fp = machine.get("infrabench") if isinstance(machine, dict) else None
    ours = [
        b for b in data["benchmarks"]
        if isinstance(b, dict) and isinstance(b.get("extra_info"), dict)
        and "case_id" in b["extra_info"]
    ]  # fmt: skip
    if fp is None or not ours:
        raise ConfigError(
            f"{path}: no infrabench cases in it (write it with the infrabench_case fixture "
            "and pytest --benchmark-json)"
        )
    fingerprint = _fingerprint(path, fp)
    run_id = new_run_id()
    rows = [_case(path, bench, run_id) for bench in ours]
    seen: set[str] = set()
    for row, _ in rows:
        if row.case_id in seen:
            raise ConfigError(f"{path}: case {row.case_id} appears twice; one run has each once")
        seen.add(row.case_id)
    return run_id, fingerprint, rows


def store_import(path: Path, store: Store, read: Imported) -> tuple[str, int]:
    """Store what :func:`read_pytest_benchmark` read, in one transaction: all or nothing."""
    run_id, fingerprint, rows = read
    try:
        with store.transaction():
            store.start_run(run_id, "pytest", str(path), fingerprint)
            for row, samples in rows:
                store.add_case(row, samples)
            store.finish_run(run_id)
    except Exception as exc:  # the store refused a value: nothing of this run was kept
        raise ConfigError(f"{path}: not imported ({type(exc).__name__}: {exc})") from None
    return run_id, len(rows)


def _fingerprint(path: Path, fp: Any) -> dict[str, Any]:
    """The machine's fingerprint, checked; an older writer's completed where it can be."""
    if not isinstance(fp, dict):
        raise ConfigError(f"{path}: machine_info.infrabench is not a fingerprint object")
    for key, kind in _FINGERPRINT_KEYS.items():
        if not isinstance(fp.get(key), kind) or isinstance(fp.get(key), bool):
            raise ConfigError(
                f"{path}: machine_info.infrabench.{key} is missing or not a "
                f"{getattr(kind, '__name__', 'number')}"
            )
    out = dict(fp)
    out.setdefault("physical_cores", None)  # an older writer did not record it
    if not isinstance(out.get("fingerprint_sha256"), str):
        hashed = {k: v for k, v in out.items() if k not in ("git_sha", "fingerprint_sha256")}
        out["fingerprint_sha256"] = hashlib.sha256(
            json.dumps(hashed, sort_keys=True).encode()
        ).hexdigest()
    return out


def _case(path: Path, bench: dict[str, Any], run_id: str) -> tuple[CaseResult, list[float]]:
    """One benchmark's row and samples, every value checked against the row's column types."""
    info = dict(bench["extra_info"])
    name = info.get("case_id") if isinstance(info.get("case_id"), str) else bench.get("name", "?")
    missing = [k for k in _CASE_KEYS if not isinstance(info.get(k), str)]
    if missing:
        raise ConfigError(
            f"{path}: benchmark {bench.get('name', '?')!r} lacks {', '.join(missing)} in "
            "extra_info (write it "
            "with the infrabench_case fixture)"
        )
    samples = info.pop("samples_ms", [])
    if not isinstance(samples, list) or not all(_finite_number(s) for s in samples):
        raise ConfigError(f"{path}: case {name}: samples_ms is not a list of finite numbers")
    status = info.get("status", "ok")
    if status not in _STATUSES:
        raise ConfigError(f"{path}: case {name}: status {status!r} is not one of {_STATUSES}")
    hints = typing.get_type_hints(CaseResult)
    for key, value in info.items():
        if key in hints and not _fits(value, hints[key]):
            raise ConfigError(f"{path}: case {name}: {key} = {value!r} is not a valid value")
    row = CaseResult.from_dict({**info, "run_id": run_id})
    if status == "ok" and (not samples or row.n_samples != len(samples)):
        raise ConfigError(
            f"{path}: case {name}: {len(samples)} samples for n_samples = {row.n_samples} "
            "(a partial file?)"
        )
    return row, [float(s) for s in samples]


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fits(value: Any, hint: Any) -> bool:
    """``value`` (from JSON) fits a column annotated ``hint`` (str, int, float, bool, a
    Literal, or any of those or None)."""
    if value is None:
        return type(None) in typing.get_args(hint) or hint is type(None)
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(
        hint) is typing.Union else (hint,)  # fmt: skip
    for option in options:
        if typing.get_origin(option) is typing.Literal:
            if value in typing.get_args(option):
                return True
        elif (
            (option is float and _finite_number(value))
            or (option is int and isinstance(value, int) and not isinstance(value, bool))
            or (option in (str, bool) and isinstance(value, option))
        ):
            return True
    return False
