"""End-to-end load scenarios with real runtimes (``tox -e integration``; not in CI).

* the four scenarios on minilm-l6 with onnxruntime and openvino in short mode: every row ok
  and stored, in under 2 minutes for the suite (the issue's bound);
* the same in full mode (LoadGen's MLPerf durations: about 10 minutes a case): every row VALID.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.launch import ProcessLauncher
from harness.optimize.artifacts import cache_root
from harness.plan import plan
from harness.runner import Runner
from harness.store import Store
from harness.suite import load_suite

pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen not installed (infrabench[serving])")
pytestmark = pytest.mark.integration

SUITE = Path(__file__).resolve().parent.parent / "suites" / "serving.toml"


def _run(store: Store, tmp_path: Path, mode: str) -> list:
    body = SUITE.read_text().replace('mode = "short"', f'mode = "{mode}"')
    path = tmp_path / "serving.toml"
    path.write_text(body)
    run_id = Runner(store, cache_root(), ProcessLauncher()).run(plan(load_suite(path)))
    return store.cases(run_id)


def test_the_serving_suite_runs_in_short_mode_within_two_minutes(
    store: Store, tmp_path: Path, write_suite: Callable[..., Path]
) -> None:
    start = time.monotonic()
    rows = _run(store, tmp_path, "short")
    elapsed = time.monotonic() - start
    assert [r.status for r in rows] == ["ok"] * 8, [r.reason for r in rows]
    assert {(r.backend, r.scenario) for r in rows} == {
        (b, s) for b in ("onnxruntime", "openvino")
        for s in ("single-stream", "multi-stream", "offline", "server")
    }  # fmt: skip
    assert all(r.achieved_qps and r.valid is False for r in rows)
    assert elapsed < 120 + 30  # the suite's bound, plus exporting minilm-l6 once


def test_full_mode_is_valid_for_every_scenario(store: Store, tmp_path: Path) -> None:
    rows = _run(store, tmp_path, "full")
    for r in rows:
        reasons = json.loads(r.details or "{}").get("loadgen", {}).get("reasons")
        assert r.status == "ok" and r.valid, (r.case_id, r.reason, reasons)
