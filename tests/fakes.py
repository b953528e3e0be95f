"""Test doubles for the runner's seams: a launcher that runs tasks here or answers from a
script, and a noise watch with fixed flags (so no verdict depends on the machine's load)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.launch import InlineLauncher, Outcome, Progress, Task, no_progress
from harness.worker import MeasureTask


@dataclass
class ScriptedLauncher:
    """Runs tasks in this process, except that a measuring task whose case id is in
    ``script`` gets that outcome instead (a crash, a timeout) without running; ``interrupt``
    raises KeyboardInterrupt before the n-th measuring task (0-based)."""

    script: dict[str, Outcome[Any]] = field(default_factory=dict)
    interrupt: int | None = None
    launched: list[Task[Any]] = field(default_factory=list)

    def launch(self, task: Task[Any], progress: Progress = no_progress) -> Outcome[Any]:
        if isinstance(task, MeasureTask):
            measured = sum(isinstance(t, MeasureTask) for t in self.launched)
            if measured == self.interrupt:
                raise KeyboardInterrupt
            self.launched.append(task)
            if task.case.case_id in self.script:
                return self.script[task.case.case_id]
        else:
            self.launched.append(task)
        return InlineLauncher().launch(task, progress)


@dataclass
class FixedWatch:
    """A noise watch that reports the same flags for every case (none by default)."""

    run_flags: list[str] = field(default_factory=list)
    case_flags: Callable[[], list[str]] = list

    def before_run(self) -> list[str]:
        return list(self.run_flags)

    def start(self) -> object:
        return None

    def stop(self, token: object) -> list[str]:
        return self.case_flags()
