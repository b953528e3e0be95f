"""The Slurm executor through submitit's local executor (jobs as local processes), and the
sbatch script Slurm itself would get."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.environment import KNOWN_CLASSES, class_mismatch, fingerprint
from harness.launch.slurm import SlurmLauncher, SlurmOptions, sbatch_script
from harness.optimize.artifacts import cache_root
from harness.plan import plan
from harness.runner import Runner
from harness.store import Store
from harness.suite import load_suite

pytest.importorskip("submitit")

SUITE = """
    models = ["tiny-mlp"]
    backends = ["fake"]
    batch_sizes = [1, 2]
    threads = [1]
    baseline = "fake/fp32"
    hardware = ["{hardware}"]
    [measure]
    budget_s = 0.2
    warmup_max_s = 0.1
    timeout_s = 60
    [options.fake]
    latency_ms = 0.05
"""


def _run(write_suite: Callable[..., Path], store: Store, tmp_path: Path, hardware: str) -> list:
    suite = load_suite(write_suite(SUITE.format(hardware=hardware)))
    options = SlurmOptions(folder=str(tmp_path / "jobs"), cluster="local", queue_s=60)
    run_id = Runner(store, cache_root(), SlurmLauncher(options)).run(plan(suite))
    return store.cases(run_id)


def test_each_case_is_a_job_and_its_row_names_the_node(
    write_suite: Callable[..., Path], store: Store, tmp_path: Path
) -> None:
    rows = _run(write_suite, store, tmp_path, "rack-a")  # an operator's class: no ISA needs
    assert [r.status for r in rows] == ["ok", "ok"], [r.reason for r in rows]
    assert {r.node for r in rows} == {socket.gethostname()}
    assert {r.hardware_class for r in rows} == {"rack-a"}
    assert [r.case_id.endswith("@rack-a") for r in rows] == [True, True]
    assert len(list((tmp_path / "jobs").glob("*_submitted.pkl"))) == 2  # one job per case


def test_a_node_without_the_class_refuses_the_case(
    write_suite: Callable[..., Path], store: Store, tmp_path: Path
) -> None:
    fp = fingerprint()
    lacking = [c for c in KNOWN_CLASSES if class_mismatch(fp, c) is not None]
    if not lacking:
        pytest.skip("this machine satisfies every known class")
    rows = _run(write_suite, store, tmp_path, lacking[0])
    assert {r.status for r in rows} == {"failed"}
    assert all("hardware class check" in (r.reason or "") for r in rows), [r.reason for r in rows]


def test_the_sbatch_script_asks_for_an_exclusive_node_of_the_class(tmp_path: Path) -> None:
    options = SlurmOptions(folder=str(tmp_path), partition="bench", account="perf")
    script = sbatch_script(options, "cpu-avx512", 600, {"OMP_NUM_THREADS": "4"})
    lines = script.splitlines()
    expected = [
        "#SBATCH --exclusive",
        "#SBATCH --constraint=cpu-avx512",
        "#SBATCH --partition=bench",
        "#SBATCH --account=perf",
        "#SBATCH --time=11",  # 600 s + a minute to start, in minutes
        "#SBATCH --nodes=1",
        "export OMP_NUM_THREADS=4",
    ]
    assert [line for line in expected if line not in lines] == [], script
