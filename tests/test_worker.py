"""Workers: results come back over the pipe; crashes, hangs and exceptions become errors."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from harness import worker
from harness.errors import ConfigError, WorkerError


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"pid": os.getpid(), "threads": os.environ.get("OMP_NUM_THREADS"), **payload}


def crash(payload: dict[str, Any]) -> dict[str, Any]:
    print("about to crash", flush=True)
    os.abort()


def hang(payload: dict[str, Any]) -> dict[str, Any]:
    time.sleep(60)
    return {}


def bug(payload: dict[str, Any]) -> dict[str, Any]:
    return {"x": 1 / 0}


def bad_input(payload: dict[str, Any]) -> dict[str, Any]:
    raise ConfigError("bad option")


def test_result_comes_back_from_a_fresh_process() -> None:
    out = worker.call(
        "tests.test_worker:echo", {"a": 1}, timeout_s=60, env={"OMP_NUM_THREADS": "3"}
    )
    assert out["a"] == 1 and out["pid"] != os.getpid() and out["threads"] == "3"


def test_inline_mode_runs_here() -> None:
    assert worker.call("tests.test_worker:echo", {}, timeout_s=1, inline=True)["pid"] == os.getpid()


def test_a_crash_is_reported_with_the_signal_and_output() -> None:
    with pytest.raises(WorkerError) as info:
        worker.call("tests.test_worker:crash", {}, timeout_s=60)
    assert info.value.kind == "crashed"
    assert "SIGABRT" in str(info.value)
    assert "about to crash" in info.value.detail


def test_a_hang_is_killed_at_the_timeout() -> None:
    with pytest.raises(WorkerError, match=r"timed out after 1\.5 s") as info:
        worker.call("tests.test_worker:hang", {}, timeout_s=1.5)
    assert info.value.kind == "timeout"


def test_an_exception_carries_its_type_and_traceback() -> None:
    with pytest.raises(WorkerError, match="ZeroDivisionError: division by zero") as info:
        worker.call("tests.test_worker:bug", {}, timeout_s=60)
    assert "Traceback" in info.value.detail
    with pytest.raises(WorkerError, match="ConfigError: bad option"):
        worker.call("tests.test_worker:bad_input", {}, timeout_s=60)


def test_inline_failures_are_worker_errors_too() -> None:
    with pytest.raises(WorkerError, match="ZeroDivisionError: division by zero") as info:
        worker.call("tests.test_worker:bug", {}, timeout_s=1, inline=True)
    assert info.value.kind == "ZeroDivisionError" and "Traceback" in info.value.detail
    with pytest.raises(WorkerError, match="ConfigError: bad option") as info:
        worker.call("tests.test_worker:bad_input", {}, timeout_s=1, inline=True)
    assert info.value.kind == "ConfigError" and info.value.detail == ""
