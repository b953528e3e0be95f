"""The shared-worker launcher of a search's screening round: tasks run one after another in
one spawned worker per environment (thread-pool sizes, cache), so a round of many short cases
pays for one process start and one import of each runtime instead of one per case.

Only for measurements whose figures do not need a fresh process: a screening round's timing,
whose rows keep no memory figures (``CaseSettings.screening``); ``recommend --run`` sends only
those here. Every wait is bounded as in :class:`~harness.launch.process.ProcessLauncher` (the
same ``wait_for_outcome``): a task that times out or crashes its worker, or leaves processes
behind, ends that worker's process group, and the next task starts a fresh one.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import psutil

from harness.launch.base import Outcome, Progress, Task, no_progress
from harness.launch.process import TERM_GRACE_S, end_group, wait_for_outcome, worker_setup

T = TypeVar("T")

# how wait_for_outcome says the worker itself ended (not the task): it is not used again
_WORKER_ENDED = ("timeout", "crashed")


def _serve(conn: Connection, log_path: str, env: Mapping[str, str]) -> None:
    """The worker: runs each task it receives until it receives None. Before each task the
    CPU affinity is reset to the worker's own (a case pins it to its thread count)."""
    log_fd = worker_setup(log_path, env)
    cpus = os.sched_getaffinity(0)
    from harness.worker import failed, run_task

    while (task := conn.recv()) is not None:
        os.ftruncate(log_fd, 0)  # a failure's log tail is its own task's
        os.sched_setaffinity(0, cpus)
        try:
            outcome = run_task(
                task, lambda text: conn.send(("progress", text)), lambda v: conn.send(("kept", v))
            )
        except BaseException as exc:
            outcome = failed(task, exc)
        conn.send(("outcome", outcome))


class _Gone(Exception):
    """The worker ended between two tasks: the task was not sent."""


class _Worker:
    def __init__(self, env: Mapping[str, str]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.folder = Path(tempfile.mkdtemp(prefix="infrabench-worker-"))
        self.log_path = self.folder / "worker.log"
        self.proc = ctx.Process(target=_serve, args=(child, str(self.log_path), dict(env)),
                                daemon=True)  # fmt: skip
        try:
            self.proc.start()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        finally:
            child.close()

    def run(self, task: Task[T], progress: Progress) -> tuple[Outcome[T], bool]:
        """The task's outcome, and whether this worker can take another task: not when it
        ended, timed out, or left processes behind (they would run into the next case's
        timing). Raises _Gone when the task could not be sent."""
        try:
            self.conn.send(task)
        except OSError:
            self.stop()
            raise _Gone() from None
        try:
            outcome = wait_for_outcome(task, self.proc, self.conn, self.log_path, progress)
        except BaseException:  # an interrupt: the worker's group ends with it
            self.stop()
            raise
        if outcome.error_kind in _WORKER_ENDED or not self.proc.is_alive() or self._children():
            self.stop()
            return outcome, False
        return outcome, True

    def _children(self) -> bool:
        try:
            return bool(psutil.Process(self.proc.pid).children(recursive=True))
        except psutil.Error:
            return False

    def stop(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.proc.join(1.0)
        end_group(self.proc, 0.0 if self.proc.exitcode is not None else TERM_GRACE_S)
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
        try:
            outcome, reusable = worker.run(task, progress)
        except _Gone:  # it died after the check above: once more, in a fresh one
            worker = _Worker(env)
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
