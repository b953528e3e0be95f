"""The inline launcher: the task runs in this process, with no isolation (debugging, tests).

A failure is classified exactly as a worker would classify it; a crash or a hang takes this
process with it, which is why real runs use the process launcher.
"""

from __future__ import annotations

from typing import TypeVar

from harness.launch.base import Outcome, Progress, Task, no_progress

T = TypeVar("T")


class InlineLauncher:
    def launch(self, task: Task[T], progress: Progress = no_progress) -> Outcome[T]:
        from harness.worker import run_task

        return run_task(task, progress)
