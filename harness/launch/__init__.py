"""Launchers: where a task runs. A typed ``Task`` goes in, a typed ``Outcome`` comes out.

``inline`` runs the task in this process (debugging, tests); ``process`` in a fresh spawned
worker with a timeout; ``pooled`` one task after another in a long-lived worker (the short
screening round of ``recommend --run``). Skip versus fail is decided once, in the worker, from
the exception's type (:func:`harness.worker.run_task`); a crash or a timeout is decided by the
launcher that saw it. Progress text travels as an argument, never through a global.
"""

from __future__ import annotations

from harness.launch.base import Launcher, Outcome, Progress, Task, no_progress
from harness.launch.inline import InlineLauncher
from harness.launch.process import ProcessLauncher

__all__ = [
    "InlineLauncher",
    "Launcher",
    "Outcome",
    "ProcessLauncher",
    "Progress",
    "Task",
    "launcher",
    "no_progress",
]


def launcher(inline: bool = False) -> Launcher:
    """The launcher for a local run: a fresh worker per task, or this process (``inline``)."""
    return InlineLauncher() if inline else ProcessLauncher()
