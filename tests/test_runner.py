"""Whole runs through real worker processes, with the fake backend failing on purpose."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.launch import InlineLauncher
from harness.optimize.artifacts import cache_root
from harness.plan import plan
from harness.runner import Runner
from harness.store import Store
from harness.suite import load_suite

Write = Callable[..., Path]

SUITE = """
    models = ["tiny-mlp"]
    backends = ["fake", "onnxruntime"]
    batch_sizes = {batches}
    threads = [1]
    baseline = "onnxruntime/fp32"
    [measure]
    budget_s = 0.3
    warmup_max_s = 0.2
    timeout_s = {timeout}
    [options.fake]
    latency_ms = 0.05
    fail = "{fail}"
"""


def _run(
    write_suite: Write, store: Store, fail: str, timeout: float = 60, batches: str = "[1, 4]"
) -> list:
    suite = load_suite(write_suite(SUITE.format(fail=fail, timeout=timeout, batches=batches)))
    run_id = Runner(store, cache_root()).run(plan(suite))
    return store.cases(run_id)


def test_a_clean_run_stores_every_case_with_samples(write_suite: Write, store: Store) -> None:
    rows = _run(write_suite, store, fail="")
    assert [(r.backend, r.batch_size, r.status) for r in rows] == [
        ("fake", 1, "ok"), ("fake", 4, "ok"), ("onnxruntime", 1, "ok"), ("onnxruntime", 4, "ok"),
    ]  # fmt: skip
    for r in rows:
        assert r.n_samples == len(store.samples(r.run_id, r.case_id)) > 0
        assert r.threads == 1 and r.affinity is not None
        assert r.load_s is not None and r.first_inference_ms is not None
        assert r.artifact_sha256 and r.params_m == pytest.approx((16 * 64 + 64 + 64 * 8 + 8) / 1e6)
    fake = rows[0]
    # The fake busy-waits 0.05 ms per run: the harness must see at least that.
    assert fake.latency_ms_p50 is not None and fake.latency_ms_p50 >= 0.05
    assert rows[2].speedup_vs_baseline == 1.0


@pytest.mark.parametrize(
    ("fail", "status", "reason"),
    [
        ("crash", "failed", "worker: worker killed by signal SIGABRT"),
        ("exception", "failed", "worker: ZeroDivisionError: fake: a bug in a backend"),
        ("run", "failed", "fake: run failed on purpose"),
        ("load", "failed", "fake: load failed on purpose"),
        ("unavailable", "skipped", "fake runtime asked to be unavailable"),
    ],
)
def test_a_broken_case_is_recorded_and_the_run_goes_on(
    write_suite: Write, store: Store, fail: str, status: str, reason: str
) -> None:
    rows = _run(write_suite, store, fail=fail)
    fake = [r for r in rows if r.backend == "fake"]
    others = [r for r in rows if r.backend == "onnxruntime"]
    assert {r.status for r in fake} == {status}
    assert all(r.reason == reason for r in fake)
    assert all(r.latency_ms_p50 is None and r.n_samples is None for r in fake)
    assert [r.status for r in others] == ["ok", "ok"]


@pytest.mark.slow
def test_a_hanging_case_is_killed_and_recorded(write_suite: Write, store: Store) -> None:
    # One batch size: each hanging case costs its whole timeout, and one shows the kill, the
    # row and the run going on to the next case.
    rows = _run(write_suite, store, fail="hang", timeout=8, batches="[1]")
    fake = [r for r in rows if r.backend == "fake"]
    timed_out = "worker: timed out after 8 s (last step: first inference)"  # hung, not slow
    assert [r.reason for r in fake] == [timed_out]
    assert json.loads(fake[0].details or "{}")["kind"] == "timeout"
    assert [r.status for r in rows if r.backend == "onnxruntime"] == ["ok"]


def test_artifacts_are_built_once_and_reused(write_suite: Write, store: Store) -> None:
    rows = _run(write_suite, store, fail="")
    again = _run(write_suite, store, fail="")
    assert {r.artifact_sha256 for r in rows} == {r.artifact_sha256 for r in again}
    built = list((cache_root() / "artifacts" / "tiny-mlp" / "fp32").iterdir())
    assert len(built) == 1


def test_inline_mode_records_a_broken_case_instead_of_stopping(
    write_suite: Write, store: Store
) -> None:
    allowed = os.sched_getaffinity(0)  # inline cases pin this process's CPUs
    try:
        text = SUITE.format(fail="exception", timeout=60, batches="[1, 4]")
        suite = load_suite(write_suite(text))
        rows = store.cases(Runner(store, cache_root(), InlineLauncher()).run(plan(suite)))
    finally:
        os.sched_setaffinity(0, allowed)
    fake = [r for r in rows if r.backend == "fake"]
    assert [r.reason for r in fake] == ["worker: ZeroDivisionError: fake: a bug in a backend"] * 2
    assert [r.status for r in rows if r.backend == "onnxruntime"] == ["ok", "ok"]
