"""The runner with a fake launcher and a fixed noise watch: in process, exact, fast."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.launch import Outcome
from harness.optimize.artifacts import cache_root
from harness.plan import plan
from harness.progress import case_bound_s, time_left_s
from harness.runner import Runner
from harness.store import Store
from harness.suite import load_suite
from tests.fakes import FixedWatch, ScriptedLauncher

Write = Callable[..., Path]

SUITE = """
    models = ["tiny-mlp"]
    backends = ["fake"]
    batch_sizes = [1, 2, 4]
    threads = [1]
    baseline = "fake/fp32"
    [measure]
    budget_s = 2
    warmup_max_s = 1
    [options.fake]
    latency_ms = 2.0
    jitter = 0.0
"""


def _runner(store: Store, launcher: ScriptedLauncher, watch: FixedWatch | None = None) -> Runner:
    return Runner(store, cache_root(), launcher, watch=watch or FixedWatch())


def test_rows_are_exact_on_the_fakes_own_clock(write_suite: Write, store: Store) -> None:
    run_id = _runner(store, ScriptedLauncher()).run(plan(load_suite(write_suite(SUITE))))
    rows = store.cases(run_id)
    assert [(r.batch_size, r.latency_ms_p50, r.throughput_per_s) for r in rows] == [
        (1, 2.0, 500.0), (2, 2.0, 1000.0), (4, 2.0, 2000.0),
    ]  # fmt: skip
    assert all(r.noise is None and r.cv == 0.0 and r.speedup_vs_baseline == 1.0 for r in rows)


def test_a_crash_and_a_timeout_from_the_launcher_are_failed_rows(
    write_suite: Write, store: Store
) -> None:
    crash = Outcome("failed", reason="worker: worker killed by signal SIGKILL",
                    error_kind="crashed", stage="worker")  # fmt: skip
    hang = Outcome("failed", reason="worker: timed out after 8 s", error_kind="timeout",
                   stage="worker")  # fmt: skip
    script = {"tiny-mlp/fp32/fake/b1/t1/single-stream": crash,
              "tiny-mlp/fp32/fake/b2/t1/single-stream": hang}  # fmt: skip
    run_id = _runner(store, ScriptedLauncher(script)).run(plan(load_suite(write_suite(SUITE))))
    rows = store.cases(run_id)
    assert [(r.status, r.reason) for r in rows] == [
        ("failed", crash.reason), ("failed", hang.reason), ("ok", None),
    ]  # fmt: skip
    assert rows[0].artifact_sha256 == rows[2].artifact_sha256 is not None


def test_noise_flags_of_the_machine_and_of_the_samples_reach_the_row(
    write_suite: Write, store: Store
) -> None:
    noisy = SUITE.replace("jitter = 0.0", "jitter = 0.5")  # cv ~0.29: samples vary widely
    watch = FixedWatch(run_flags=["load average 3.0 on 2 CPUs"],
                       case_flags=lambda: ["other processes used 1.7 cores (yes 1.7)"])  # fmt: skip
    events: list[str] = []
    runner = _runner(store, ScriptedLauncher(), watch)
    runner.reporter.notice = events.append  # type: ignore[method-assign]
    rows = store.cases(runner.run(plan(load_suite(write_suite(noisy)))))
    assert events == ["noisy machine: load average 3.0 on 2 CPUs"]
    for r in rows:
        assert r.noise is not None
        flags = r.noise.split("; ")
        assert flags[0] == "other processes used 1.7 cores (yes 1.7)"
        assert any(f.startswith("cv 0.2") and "samples vary widely" in f for f in flags[1:])


def test_an_interrupted_run_keeps_its_rows_and_resumes(write_suite: Write, store: Store) -> None:
    planned = plan(load_suite(write_suite(SUITE)))
    runner = _runner(store, ScriptedLauncher(interrupt=2))
    with pytest.raises(KeyboardInterrupt):
        runner.run(planned)
    run_id = runner.run_id
    assert run_id is not None and runner.stored == 2
    assert [r.batch_size for r in store.cases(run_id)] == [1, 2]
    assert store.run(run_id)["finished_at"] is None
    again = ScriptedLauncher()
    assert _runner(store, again).run(planned, run_id, resume=True) == run_id
    assert [r.batch_size for r in store.cases(run_id)] == [1, 2, 4]
    assert store.run(run_id)["finished_at"] is not None
    measured = [t for t in again.launched if hasattr(t, "case")]
    assert [t.case.batch_size for t in measured] == [4]  # type: ignore[attr-defined]


def test_time_left_starts_from_budgets_then_follows_the_pace(write_suite: Write) -> None:
    cases = plan(load_suite(write_suite(SUITE))).cases
    assert case_bound_s(cases[0]) == 3.0
    assert time_left_s(cases, 0, 0.0, case_bound_s) == 9.0
    assert time_left_s(cases[1:], 1, 5.0, case_bound_s) == 10.0


def test_without_a_terminal_each_phase_is_a_line_and_no_stale_bar_is_left(
    write_suite: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    """stderr is captured here, so not a terminal: a 10-minute full-mode case must still show
    its phases in a log, and the live bar's last state must not be printed after the rows."""
    from harness.progress import ProgressReporter

    cases = plan(load_suite(write_suite(SUITE))).cases
    with ProgressReporter() as reporter:
        reporter.run_started("r", cases)
        reporter.case_started(0, 3, cases[0], "measuring: server at 61.0 QPS, full mode")
    err = capsys.readouterr().err
    assert err == f"  [1/3] {cases[0].case_id}: measuring: server at 61.0 QPS, full mode\n"


def test_an_interrupt_says_what_was_saved_and_how_to_resume(
    write_suite: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from harness import cli

    suite, db = write_suite(SUITE), tmp_path / "s.duckdb"
    monkeypatch.setattr(
        cli, "executor_launcher", lambda choice, cases: ScriptedLauncher(interrupt=1)
    )
    assert cli.main(["run", str(suite), "--store", str(db)]) == 130
    err = capsys.readouterr().err
    run_id = err.split(" of run ")[1].split()[0]
    assert f"1 finished case(s) of run {run_id} are saved in {db}" in err
    assert f"--resume {run_id}" in err and "Traceback" not in err
    monkeypatch.setattr(cli, "executor_launcher", lambda *_: ScriptedLauncher())
    assert cli.main(["run", str(suite), "--store", str(db), "--resume", run_id]) == 0
    with Store(db, read_only=True) as store:
        assert [r.batch_size for r in store.cases(run_id)] == [1, 2, 4]


def test_a_bad_import_file_creates_no_store(tmp_path: Path) -> None:
    from harness import cli

    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert cli.main(["import", str(bad), "--store", str(tmp_path / "s.duckdb")]) == 2
    assert not (tmp_path / "s.duckdb").exists()


def test_an_unreachable_ray_head_is_refused_at_once() -> None:
    from harness.errors import ConfigError
    from harness.launch.ray import _reachable

    with pytest.raises(ConfigError, match=r"--address 127\.0\.0\.1:1: no Ray head answers"):
        _reachable("127.0.0.1:1", timeout_s=2)
    _reachable("auto")  # left to Ray
