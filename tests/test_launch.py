"""Launchers: outcomes come back from a fresh process; crashes, hangs and exceptions become
failed outcomes, skips are decided from the exception's type where it is raised."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest

from harness.errors import BackendError, BackendUnavailable, ConfigError, VariantNotApplicable
from harness.launch import InlineLauncher, Outcome, ProcessLauncher, Progress


@dataclass(frozen=True)
class Job:
    """A task whose behaviour is chosen by ``what``."""

    what: str = "echo"
    timeout_s: float = 60.0
    stage: str = "worker"
    threads: str = "3"

    def env(self) -> Mapping[str, str]:
        return {"OMP_NUM_THREADS": self.threads}

    def run(self, progress: Progress) -> dict[str, object]:
        progress("started")
        if self.what == "crash":
            print("about to crash", flush=True)
            os.abort()
        if self.what == "hang":
            time.sleep(60)
        if self.what == "bug":
            return {"x": 1 / 0}
        if self.what == "exit":
            raise SystemExit(0)
        errors = {"config": ConfigError("bad option"), "runtime": BackendError("ort: no kernel"),
                  "unavailable": BackendUnavailable("no runtime here"),
                  "not-applicable": VariantNotApplicable("no torch module")}  # fmt: skip
        if self.what in errors:
            raise errors[self.what]
        if self.what == "child":  # leaves a process behind
            import subprocess

            subprocess.Popen(["sleep", "30"])
        if self.what == "pin":
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        return {"pid": os.getpid(), "threads": os.environ.get("OMP_NUM_THREADS"),
                "cpus": len(os.sched_getaffinity(0))}  # fmt: skip


def _launch(job: Job) -> tuple[Outcome[dict[str, object]], list[str]]:
    seen: list[str] = []
    return ProcessLauncher().launch(job, seen.append), seen


def test_the_value_and_progress_come_back_from_a_fresh_process() -> None:
    outcome, seen = _launch(Job())
    assert outcome.status == "ok" and outcome.value is not None
    assert outcome.value["pid"] != os.getpid() and outcome.value["threads"] == "3"
    assert seen == ["started"]


def test_the_inline_launcher_runs_here_and_applies_no_env() -> None:
    outcome = InlineLauncher().launch(Job(threads="99"))
    assert outcome.value is not None and outcome.value["pid"] == os.getpid()
    assert outcome.value["threads"] != "99"


def test_a_crash_is_reported_with_the_signal_and_output() -> None:
    outcome, _ = _launch(Job("crash"))
    assert (outcome.status, outcome.error_kind) == ("failed", "crashed")
    assert outcome.reason == "worker: worker killed by signal SIGABRT"
    assert "about to crash" in outcome.detail


def test_a_hang_is_killed_at_the_timeout_and_names_the_stage() -> None:
    outcome, _ = _launch(Job("hang", timeout_s=1.5, stage="artifact build"))
    assert outcome.reason == "artifact build: timed out after 1.5 s (last step: started)"
    assert (outcome.error_kind, outcome.stage) == ("timeout", "artifact build")


def test_system_exit_in_user_code_is_a_failure_not_a_success() -> None:
    outcome, _ = _launch(Job("exit"))
    assert outcome.status == "failed" and outcome.reason == "worker: SystemExit: 0"


@pytest.mark.parametrize(
    "launcher", [InlineLauncher(), ProcessLauncher()], ids=["inline", "process"]
)
@pytest.mark.parametrize(
    ("what", "status", "reason", "traceback"),
    [
        ("bug", "failed", "worker: ZeroDivisionError: division by zero", True),
        ("config", "failed", "worker: ConfigError: bad option", False),
        ("runtime", "failed", "ort: no kernel", False),
        ("unavailable", "skipped", "no runtime here", False),
        ("not-applicable", "skipped", "no torch module", False),
    ],
)
def test_skip_and_fail_are_decided_from_the_exception_type(
    launcher: InlineLauncher | ProcessLauncher, what: str, status: str, reason: str, traceback: bool
) -> None:
    outcome = launcher.launch(Job(what))
    assert (outcome.status, outcome.reason, outcome.value) == (status, reason, None)
    assert ("Traceback" in outcome.detail) is traceback


@dataclass(frozen=True)
class KeepingJob(Job):
    """Keeps a partial result, then does ``what``."""

    def run_keeping(self, progress: Progress, keep: Callable[[object], None]) -> object:
        keep({"kept": True})
        return self.run(progress)


@pytest.mark.parametrize("what", ["hang", "crash", "bug"])
def test_a_kept_result_survives_a_later_hang_crash_or_error(what: str) -> None:
    outcome, _ = _launch(KeepingJob(what, timeout_s=3.0))
    assert (outcome.status, outcome.value) == ("ok", {"kept": True})
    expected = {"hang": "timed out after 3 s", "crash": "killed by signal SIGABRT",
                "bug": "ZeroDivisionError"}[what]  # fmt: skip
    assert outcome.partial is not None and expected in outcome.partial
    inline = InlineLauncher().launch(KeepingJob("bug"))
    assert inline.value == {"kept": True} and "ZeroDivisionError" in (inline.partial or "")


def test_the_pooled_launcher_reuses_one_worker_per_env_and_replaces_a_dead_one() -> None:
    from harness.launch.pooled import PooledLauncher

    with PooledLauncher() as pool:
        first, second = pool.launch(Job()), pool.launch(Job())
        other = pool.launch(Job(threads="5"))
        assert first.value is not None and second.value is not None and other.value is not None
        assert first.value["pid"] == second.value["pid"] != os.getpid()
        assert other.value["pid"] != first.value["pid"] and other.value["threads"] == "5"
        crashed = pool.launch(Job("crash"))
        assert (crashed.error_kind, crashed.detail) == ("crashed", "about to crash")
        hung = pool.launch(Job("hang", timeout_s=1.0))
        assert hung.error_kind == "timeout"
        failing = pool.launch(Job("runtime"))  # the task's own failure: the worker goes on
        after = pool.launch(Job())
        assert failing.reason == "ort: no kernel"
        assert after.value is not None and after.value["pid"] not in (first.value["pid"],)
        again = pool.launch(Job())
        assert again.value is not None and again.value["pid"] == after.value["pid"]
        pinned, unpinned = pool.launch(Job("pin")), pool.launch(Job())
        assert pinned.value is not None and unpinned.value is not None
        assert unpinned.value["pid"] == pinned.value["pid"]
        assert unpinned.value["cpus"] == len(os.sched_getaffinity(0))  # reset between tasks
        left, fresh = pool.launch(Job("child")), pool.launch(Job())
        assert left.value is not None and fresh.value is not None
        assert fresh.value["pid"] != left.value["pid"]  # a worker with a child is retired
        workers = [w.proc for w in pool._workers.values()]
    assert workers and not any(p.is_alive() for p in workers)
