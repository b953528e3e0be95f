"""The process launcher: each task in a fresh spawned worker, with a timeout.

The worker sends progress text and then its ``Outcome`` back over a pipe. A crash (signal,
``os._exit``) or a hang past the task's timeout becomes a failed outcome carrying the reason and
the tail of what the worker printed; the caller goes on. The worker's C-level stdout/stderr go
to a log file so runtimes' chatter stays off the user's progress display.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, TypeVar

from harness.launch.base import Outcome, Progress, Task, no_progress

T = TypeVar("T")

JOIN_S = 5.0  # how long a finished or killed worker gets to exit
TERM_GRACE_S = 3.0  # how long a worker asked to stop gets to remove its partial files


def worker_setup(log_path: str, env: Mapping[str, str]) -> int:
    """What every worker process does first; returns the log's file descriptor (opened for
    appending, so a long-lived worker can truncate it between tasks)."""
    # Its own process group: a timeout or an interrupt ends the worker and every process it
    # started (a runtime's compiler, a user's subprocess) with one killpg.
    os.setpgrp()
    # SIGTERM (sent first on a timeout or an interrupt) unwinds, so staging folders and
    # temporary files are removed by their ``finally`` blocks before the group is killed.
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent; it ends us
    # Thread-pool sizes must be in the environment before numpy or a runtime is imported.
    os.environ.update(env)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    return log_fd


def _entry(task: Task[Any], conn: Connection, log_path: str, env: Mapping[str, str]) -> None:
    worker_setup(log_path, env)
    from harness.worker import failed, run_task

    try:
        outcome = run_task(
            task, lambda text: conn.send(("progress", text)), lambda v: conn.send(("kept", v))
        )
    except BaseException as exc:  # SystemExit from user code, an interrupt: still this case's
        outcome = failed(task, exc)
    try:
        conn.send(("outcome", outcome))
    finally:
        conn.close()


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"worker ended by {signal.Signals(signum).name}")


def end_group(proc: Any, grace_s: float = TERM_GRACE_S) -> None:
    """End worker ``proc`` and its process group: SIGTERM (its ``finally`` blocks remove
    partial files), then SIGKILL to whatever of the group is left after ``grace_s`` seconds."""
    pid = proc.pid
    if pid is None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, JOIN_S)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            # No group (yet): the worker has not reached setpgrp, or it is gone.
            if proc.is_alive():
                os.kill(pid, sig)
        proc.join(wait_s)
        if not proc.is_alive() and not _group_alive(pid):
            break
    proc.join(JOIN_S)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code} without sending a result"


class ProcessLauncher:
    """Runs each task in a fresh ``spawn``-ed process (no state inherited from this one)."""

    def launch(self, task: Task[T], progress: Progress = no_progress) -> Outcome[T]:
        ctx = multiprocessing.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=False)
        # One folder per worker, removed with everything in it when the task ends in any way
        # (an interrupt included): worker logs never pile up in the temporary folder.
        with tempfile.TemporaryDirectory(prefix="infrabench-worker-") as folder:
            log_path = Path(folder) / "worker.log"
            proc = ctx.Process(
                target=_entry,
                args=(task, child_conn, str(log_path), dict(task.env())),
                daemon=True,
            )
            proc.start()
            child_conn.close()
            try:
                return wait_for_outcome(task, proc, parent_conn, log_path, progress)
            finally:
                # Also on the way out of an interrupt: the worker's whole process group ends.
                end_group(proc, 0.0 if proc.exitcode is not None else TERM_GRACE_S)
                parent_conn.close()


def wait_for_outcome(
    task: Task[T],
    proc: Any,
    conn: Connection,
    log_path: Path,
    progress: Progress,
) -> Outcome[T]:
    """Relay the worker's progress and return its outcome for ``task``; a crash or a wait
    past ``task.timeout_s`` is a failed outcome (error kind ``crashed`` / ``timeout``) that
    keeps a measurement the worker sent before it ended."""
    from harness.worker import salvaged

    deadline = time.monotonic() + task.timeout_s
    kept: list[T] = []
    phase = ""

    def ended(reason: str, kind: str) -> Outcome[T]:
        """The worker ended without an outcome: a failure of its stage, or, when it kept
        a measurement before it ended, that measurement with the reason."""
        failed: Outcome[T] = Outcome("failed", reason=f"{task.stage}: {reason}",
                                     error_kind=kind, detail=_tail(log_path),
                                     stage=task.stage)  # fmt: skip
        return salvaged(kept[0], failed) if kept else failed

    while True:
        left = deadline - time.monotonic()
        if not wait([conn, proc.sentinel], timeout=max(left, 0)):
            where = f" (last step: {phase})" if phase else ""
            return ended(f"timed out after {task.timeout_s:g} s{where}", "timeout")
        try:
            message = conn.recv() if conn.poll() else None
        except EOFError:
            message = None
        if message is None:
            proc.join(JOIN_S)
            return ended(f"worker {_describe_exit(proc.exitcode)}", "crashed")
        if message[0] == "progress":
            phase = message[1]
            progress(message[1])
            continue
        if message[0] == "kept":
            kept[:] = [message[1]]
            continue
        outcome: Outcome[T] = message[1]
        if outcome.status == "failed" and not outcome.detail:
            return replace(outcome, detail=_tail(log_path))
        return outcome
