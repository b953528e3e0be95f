"""The shared-worker launcher of a search's screening round: tasks run one after another in
one spawned worker per environment (thread-pool sizes, cache), so a round of many short cases
pays for one process start and one import of each runtime instead of one per case.

Only for measurements whose figures do not need a fresh process: a screening round's timing,
whose rows keep no peak RSS (``CaseSettings.screening``). Every wait is bounded as in
:class:`~harness.launch.process.ProcessLauncher` (the same ``_wait``): a task that times out or
crashes its worker ends that worker's process group, and the next task starts a fresh one.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from harness.launch.base import Outcome, Progress, Task, no_progress
from harness.launch.process import ProcessLauncher, end_group

T = TypeVar("T")

# how _wait says the worker itself ended (not the task): that worker is not used again
_WORKER_ENDED = ("timeout", "crashed")


def _serve(conn: Connection, log_path: str, env: Mapping[str, str]) -> None:
    """The worker: runs each task it receives until it receives None."""
    os.setpgrp()
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)  # before numpy or a runtime starts its thread pool
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    from harness.worker import failed, run_task

    while (task := conn.recv()) is not None:
        os.ftruncate(log_fd, 0)  # a failure's log tail is its own task's
        try:
            outcome = run_task(
                task, lambda text: conn.send(("progress", text)), lambda v: conn.send(("kept", v))
            )
        except BaseException as exc:
            outcome = failed(task, exc)
        conn.send(("outcome", outcome))


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(f"worker ended by {signal.Signals(signum).name}")


class _Worker:
    def __init__(self, env: Mapping[str, str]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.folder = Path(tempfile.mkdtemp(prefix="infrabench-worker-"))
        self.log_path = self.folder / "worker.log"
        self.proc = ctx.Process(target=_serve, args=(child, str(self.log_path), dict(env)),
                                daemon=True)  # fmt: skip
        self.proc.start()
        child.close()

    def run(self, task: Task[T], progress: Progress) -> tuple[Outcome[T], bool]:
        """The task's outcome, and whether this worker can take another task."""
        try:
            self.conn.send(task)
            outcome = ProcessLauncher._wait(task, self.proc, self.conn, self.log_path, progress)
        except BaseException:  # an interrupt: the worker's group ends with it
            self.stop()
            raise
        if outcome.error_kind in _WORKER_ENDED or not self.proc.is_alive():
            self.stop()
            return outcome, False
        return outcome, True

    def stop(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.proc.join(1.0)
        end_group(self.proc, 0.0 if self.proc.exitcode is not None else 3.0)
        self.conn.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class PooledLauncher:
    """Runs tasks in long-lived spawned workers, one per distinct ``task.env()``; a context
    manager: leaving it stops every worker (their process groups)."""

    def __init__(self) -> None:
        self._workers: dict[tuple[tuple[str, str], ...], _Worker] = {}

    def launch(self, task: Task[T], progress: Progress = no_progress) -> Outcome[T]:
        env = dict(task.env())
        key = tuple(sorted(env.items()))
        worker = self._workers.pop(key, None)
        if worker is not None and not worker.proc.is_alive():
            worker.stop()  # it died between tasks: its folder goes, a fresh one starts
            worker = None
        worker = worker or _Worker(env)
        outcome, reusable = worker.run(task, progress)
        if reusable:
            self._workers[key] = worker
        return outcome

    def close(self) -> None:
        while self._workers:
            self._workers.popitem()[1].stop()

    def __enter__(self) -> PooledLauncher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
