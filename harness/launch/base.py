"""The launcher seam's types: Task, Outcome and the Launcher protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Progress = Callable[[str], None]
Keep = Callable[[T], None]  # sends a task's result-so-far to the parent: kept if the task dies
Status = Literal["ok", "skipped", "failed"]


def no_progress(text: str) -> None:
    """A progress sink that shows nothing."""


class Task(Protocol[T_co]):
    """One unit of work for a worker: building an artifact, or measuring a case.

    stage:     what the task is, as failures name it ("worker", "artifact build").
    timeout_s: wall-clock bound of the whole task, enforced by the launcher (seconds).
    env:       environment variables the worker needs before any library starts (thread
               pools, the artifact cache); applied only where a fresh process runs the task.
    """

    @property
    def stage(self) -> str: ...

    @property
    def timeout_s(self) -> float: ...

    def env(self) -> Mapping[str, str]: ...

    def run(self, progress: Progress) -> T_co:
        """Do the work in this process and return its result; raise to fail or skip."""
        ...


@runtime_checkable
class KeepsPartial(Protocol):
    """A task that can hand over a usable result before it ends (a measurement's samples before
    its untimed passes): ``keep(value)`` sends it; if the task then fails, times out or its
    worker crashes, the outcome is ``ok`` with the kept value and ``partial`` saying why."""

    def run_keeping(self, progress: Progress, keep: Keep[Any]) -> Any: ...


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What came of a task.

    status:     ``ok`` (``value`` holds the result), ``skipped`` (cannot run here or does not
                apply: ``reason`` says why) or ``failed``.
    reason:     one line for the row, prefixed with the task's stage where the failure is the
                harness's or the worker's rather than the runtime's own message.
    error_kind: the exception class name, ``crashed`` or ``timeout``.
    detail:     the worker's traceback or the tail of what it printed.
    stage:      the stage of the task that did not end ok ("worker", "artifact build").
    node:       the fleet node the task ran on; None for this machine.
    partial:    for an ``ok`` outcome whose value is what the task kept before it ended early
                (:class:`KeepsPartial`): why it ended (one line); None when it finished.
    """

    status: Status
    value: T | None = None
    reason: str | None = None
    error_kind: str | None = None
    detail: str = ""
    stage: str | None = None
    node: str | None = None
    partial: str | None = None

    @classmethod
    def ok(cls, value: T) -> Outcome[T]:
        return cls("ok", value)


class Launcher(Protocol):
    """Runs a task somewhere and returns its outcome; never raises for the task's failures."""

    def launch(self, task: Task[T], progress: Progress = no_progress) -> Outcome[T]: ...


@runtime_checkable
class ConcurrentLauncher(Launcher, Protocol):
    """A launcher that runs several tasks at once (a fleet: one per node).

    ``launch_many`` yields ``(index into tasks, outcome)`` as each task ends, in any order,
    exactly once per task; every wait inside is bounded by the tasks' own timeouts."""

    def launch_many(
        self, tasks: Sequence[Task[T]], progress: Progress = no_progress
    ) -> Iterator[tuple[int, Outcome[T]]]: ...
