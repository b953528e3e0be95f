"""``infrabench import``: pytest-benchmark JSON written through the ``infrabench_case`` fixture
-> one run in the store (rows, raw samples and the machine's fingerprint)."""

from __future__ import annotations

from pathlib import Path

from harness.errors import ConfigError
from harness.result import CaseResult
from harness.runfile import load_json
from harness.runner import new_run_id
from harness.store import Store

_CASE_KEYS = ("case_id", "model", "variant", "backend")  # run_id is this import's


def import_pytest_benchmark(path: Path, store: Store) -> tuple[str, int]:
    """Store the infrabench cases of a pytest-benchmark JSON file; return (run id, count)."""
    data = load_json(path)
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ConfigError(f"{path}: not pytest-benchmark JSON (no 'benchmarks' list)")
    fp = data.get("machine_info", {}).get("infrabench")
    ours = [b for b in data["benchmarks"] if "case_id" in b.get("extra_info", {})]
    if fp is None or not ours:
        raise ConfigError(
            f"{path}: no infrabench cases in it (write it with the infrabench_case fixture "
            "and pytest --benchmark-json)"
        )
    for bench in ours:
        missing = [k for k in _CASE_KEYS if not isinstance(bench["extra_info"].get(k), str)]
        if missing:
            raise ConfigError(
                f"{path}: benchmark {bench.get('name', '?')!r} lacks {', '.join(missing)} in "
                "extra_info (write it with the infrabench_case fixture)"
            )
    run_id = new_run_id()
    store.start_run(run_id, "pytest", str(path), fp)
    for bench in ours:
        info = dict(bench["extra_info"])
        samples = info.pop("samples_ms", [])
        store.add_case(CaseResult.from_dict({**info, "run_id": run_id}), samples)
    store.finish_run(run_id)
    return run_id, len(ours)
