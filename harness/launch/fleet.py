"""Dispatching measure tasks over a fleet of nodes, one case per node, by hardware class.

The scheduling is the cluster's (a Ray custom resource ``hw:<class>`` of capacity 1 per node,
a Slurm ``--constraint`` with ``--exclusive``); what is ours is only how many tasks are handed to
it at once and how long each may take, so that every wait is bounded:

* a class with no node fails its tasks at once ("no node of class X"), never pending forever;
* per class at most as many tasks are in flight as the class has nodes, so a submitted task
  starts at once and its deadline (its case's ``timeout_s`` plus ``start_s`` for shipping the
  artifact and starting a worker) is a real bound; past it the task is cancelled (failed row);
* a node lost mid-case fails that case with the reason, or runs it again on another node of the
  class while the case's ``settings.retries`` allows; the other cases go on.

``FleetBackend`` is the seam to an engine (``harness.launch.ray``); tests drive the dispatcher
with an in-memory backend.
"""

from __future__ import annotations

import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from harness.launch.base import Launcher, Outcome, Progress, Task, no_progress
from harness.launch.ship import Packed, ShippingError, unpack

START_S = 120.0  # shipping an artifact and starting a fresh worker on a node, seconds


class NodeLost(Exception):
    """The node (or its worker process) running a task went away; ``str`` is the reason."""


@dataclass(frozen=True)
class Placement:
    """Where and when a task ran: node id, and wall-clock start/end (Unix seconds) on the
    node."""

    index: int
    hardware: str
    node: str
    start: float
    end: float


@dataclass(frozen=True)
class NodeResult:
    """What a node sends back: the task's outcome and its placement."""

    outcome: Outcome[Any]
    node: str
    start: float
    end: float


class FleetBackend(Protocol):
    """An engine's side of the dispatcher. ``submit`` returns a hashable handle."""

    def capacity(self, hardware: str) -> int:
        """Nodes of ``hardware`` alive now (each runs one case at a time)."""
        ...

    def submit(self, index: int, hardware: str) -> Hashable: ...

    def wait(self, handles: list[Hashable], timeout_s: float) -> list[Hashable]:
        """The handles among ``handles`` that ended, waiting at most ``timeout_s``."""
        ...

    def result(self, handle: Hashable) -> NodeResult:
        """The ended task's result; raises NodeLost when its node or worker died."""
        ...

    def cancel(self, handle: Hashable) -> None: ...

    def lost(self, handle: Hashable) -> str | None:
        """At a task's deadline: why its node may have died since it was submitted (a node of
        its class is gone), else None. The engine may not report every death on the task."""
        ...


@dataclass
class _Flight:
    index: int
    hardware: str
    attempt: int
    deadline: float
    lost: list[str] = field(default_factory=list)


def _failed(reason: str, kind: str, node: str | None = None) -> Outcome[Any]:
    return Outcome("failed", reason=reason, error_kind=kind, stage="fleet", node=node)


def dispatch(
    backend: FleetBackend,
    hardware: Sequence[str],
    timeouts_s: Sequence[float],
    retries: Sequence[int],
    placements: list[Placement],
    start_s: float = START_S,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[int, Outcome[Any]]]:
    """Run task ``i`` on a node of class ``hardware[i]``; yield ``(i, outcome)`` as each ends.

    ``timeouts_s[i]`` bounds the task's run on its node, ``retries[i]`` how many more times it
    runs after its node was lost. Each task that ran is appended to ``placements``. Yields every
    index exactly once; cancels what is still in flight if the caller stops early."""
    queues: dict[str, deque[tuple[int, int, list[str]]]] = {}
    for i, cls in enumerate(hardware):
        queues.setdefault(cls, deque()).append((i, 0, []))
    flights: dict[Hashable, _Flight] = {}

    def retry(flight: _Flight, why: str) -> Outcome[Any] | None:
        """Queue a lost task again while its retries last (None), else its failed outcome."""
        lost = [*flight.lost, why]
        if flight.attempt < retries[flight.index]:
            queues.setdefault(flight.hardware, deque()).append(
                (flight.index, flight.attempt + 1, lost)
            )
            return None
        return _failed("; ".join(lost), "node lost")

    try:
        while queues or flights:
            for cls in list(queues):
                queue = queues[cls]
                room = backend.capacity(cls) - sum(f.hardware == cls for f in flights.values())
                if backend.capacity(cls) == 0 and not any(
                    f.hardware == cls for f in flights.values()
                ):
                    while queue:
                        i, _, lost = queue.popleft()
                        why = "; ".join([*lost, f"no node of hardware class {cls!r} is alive"])
                        yield i, _failed(why, "no node")
                while queue and room > 0:
                    i, attempt, lost = queue.popleft()
                    handle = backend.submit(i, cls)
                    deadline = clock() + timeouts_s[i] + start_s
                    flights[handle] = _Flight(i, cls, attempt, deadline, lost)
                    room -= 1
                if not queue:
                    del queues[cls]
            if not flights:
                continue
            nearest = min(f.deadline for f in flights.values())
            done = backend.wait(list(flights), max(0.0, min(nearest - clock(), 1.0)))
            for handle in done:
                flight = flights.pop(handle)
                try:
                    got = backend.result(handle)
                except NodeLost as exc:
                    failed = retry(flight, f"node lost mid-case: {exc}")
                    if failed is not None:
                        yield flight.index, failed
                    continue
                placements.append(
                    Placement(flight.index, flight.hardware, got.node, got.start, got.end)
                )
                yield flight.index, _with_node(got, flight.lost)
            now = clock()
            for handle, flight in list(flights.items()):
                if now >= flight.deadline:
                    gone = backend.lost(handle)
                    backend.cancel(handle)
                    del flights[handle]
                    bound = timeouts_s[flight.index] + start_s
                    if gone is None:
                        why = f"fleet: timed out after {bound:g} s"
                        yield flight.index, _failed(why, "timeout")
                        continue
                    failed = retry(flight, f"node lost mid-case: no result in {bound:g} s; {gone}")
                    if failed is not None:
                        yield flight.index, failed
    finally:
        for handle in flights:
            backend.cancel(handle)


def _with_node(got: NodeResult, lost: list[str]) -> Outcome[Any]:
    outcome = got.outcome
    reason = outcome.reason
    if lost and outcome.status != "ok":
        reason = "; ".join([*lost, reason or ""])
    return Outcome(
        outcome.status,
        outcome.value,
        reason,
        outcome.error_kind,
        outcome.detail,
        outcome.stage,
        got.node or None,
    )


def run_on_node(
    task: Any, hardware: str, artifact: Packed, reference: Packed, node: str,
    advertised: str | None,
) -> NodeResult:  # fmt: skip
    """The node's side, in a fresh worker process of the node: check the node against the
    class (``advertised``: the class the node was started with, else ``$INFRABENCH_HARDWARE_
    CLASS``), unpack the shipped artifacts (sha256 checked) and measure ``task`` on them."""
    from dataclasses import replace

    from harness.environment import CLASS_ENV, class_mismatch, fingerprint
    from harness.worker import run_task

    start = time.time()
    mismatch = class_mismatch(fingerprint(), hardware, advertised or os.environ.get(CLASS_ENV))
    if mismatch is not None:
        outcome: Outcome[Any] = Outcome(
            "failed", reason=f"hardware class check: {mismatch}", error_kind="class mismatch",
            stage="hardware class check",
        )  # fmt: skip
        return NodeResult(outcome, node, start, time.time())
    root = Path(tempfile.gettempdir()) / "infrabench-fleet" / node.replace("/", "_")[:40]
    try:
        shipped = unpack(artifact, root)
        ref = shipped if reference.sha256 == artifact.sha256 else unpack(reference, root)
    except ShippingError as exc:
        outcome = Outcome("failed", reason=str(exc), error_kind="ShippingError", stage="shipping")
        return NodeResult(outcome, node, start, time.time())
    outcome = run_task(replace(task, artifact=shipped, reference=ref), no_progress)
    return NodeResult(outcome, node, start, time.time())


T = TypeVar("T")


class FleetLauncher(ABC):
    """What the Ray and Slurm launchers share: a task with no hardware class (an artifact
    build, a case for this machine) runs on the ``local`` launcher; a measure task of a class
    goes to the fleet, alone, through ``launch_many``."""

    local: Launcher

    def launch(self, task: Task[T], progress: Progress = no_progress) -> Outcome[T]:
        from harness.worker import MeasureTask

        if not isinstance(task, MeasureTask) or task.case.hardware is None:
            return self.local.launch(task, progress)
        return next(iter(self.launch_many([task], progress)))[1]

    @abstractmethod
    def launch_many(
        self, tasks: Sequence[Task[T]], progress: Progress = no_progress
    ) -> Iterator[tuple[int, Outcome[T]]]:
        """Run ``tasks`` on the fleet concurrently; yield ``(index, outcome)`` as each ends."""
