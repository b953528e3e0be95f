"""The Ray executor: each case on a Ray node of its hardware class, one case per node.

A node advertises its class as the custom resource ``hw:<class>`` with capacity 1 (``ray start
--resources='{"hw:cpu-avx512": 1}'``); a case asks for one unit of it, so Ray places it on a node
of that class and never runs two cases on one node. Everything else is Ray's: placement, the
object store (artifacts are packed once on the driver, ``ray.put`` once each, checked by sha256
on the node: :mod:`harness.launch.ship`), fresh worker processes (``max_calls=1``, the case's
thread variables set through ``runtime_env`` before the process starts), cancelling a task past
its deadline, and telling us a node died. How many tasks are in flight and for how long is
:func:`harness.launch.fleet.dispatch`'s.

On the node, before measuring, the worker checks the node's fingerprint against the class it
was asked for (:func:`harness.environment.class_mismatch`) and refuses a mismatch (a failed row
with the reason). Building artifacts (``BuildTask``) stays on the driver, through ``local``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import ConfigError
from harness.launch.base import Launcher, Outcome, Progress, Task, no_progress
from harness.launch.fleet import (
    START_S,
    FleetLauncher,
    NodeLost,
    NodeResult,
    Placement,
    dispatch,
    run_on_node,
)
from harness.launch.ship import Packed, pack

T = TypeVar("T")
RESOURCE_PREFIX = "hw:"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'infrabench[ray]'") from None
    return ray


def node_classes(ray: Any) -> dict[str, list[str]]:
    """Alive node ids per advertised hardware class (``hw:<class>`` resources)."""
    out: dict[str, list[str]] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        for key, amount in node.get("Resources", {}).items():
            if key.startswith(RESOURCE_PREFIX) and amount > 0:
                out.setdefault(key.removeprefix(RESOURCE_PREFIX), []).append(node["NodeID"])
    return out


def _on_node(task: Any, hardware: str, artifact: Packed, reference: Packed) -> NodeResult:
    """Runs in a fresh Ray worker on the chosen node."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    mine = [c for c, ids in node_classes(ray).items() if node in ids]
    advertised = hardware if hardware in mine else (mine[0] if mine else None)
    return run_on_node(task, hardware, artifact, reference, node, advertised)


class _RayFleet:
    """``FleetBackend`` over Ray object refs."""

    def __init__(self, ray: Any, tasks: Sequence[Any], packed: dict[str, Any]) -> None:
        self.ray, self.tasks, self.packed = ray, tasks, packed
        self.remote = ray.remote(max_calls=1, max_retries=0, num_cpus=0)(_on_node)
        self._classes = node_classes(ray)
        self._at_submit: dict[Hashable, tuple[str, list[str]]] = {}
        # A task can report its node dead before the cluster's list of nodes does: until the
        # list shows the death, the class counts at most this many nodes.
        self._cap: dict[str, int] = {}

    def refresh(self) -> None:
        self._classes = node_classes(self.ray)
        for cls, cap in list(self._cap.items()):
            if len(self._classes.get(cls, [])) <= cap:
                del self._cap[cls]

    def capacity(self, hardware: str) -> int:
        alive = len(self._classes.get(hardware, []))
        return min(alive, self._cap.get(hardware, alive))

    def _lost(self, hardware: str, before: list[str]) -> None:
        self._cap[hardware] = min(self.capacity(hardware), len(before)) - 1

    def submit(self, index: int, hardware: str) -> Hashable:
        task = self.tasks[index]
        env = {k: str(v) for k, v in task.env().items()}
        env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
        ref = self.remote.options(
            resources={f"{RESOURCE_PREFIX}{hardware}": 1}, runtime_env={"env_vars": env}
        ).remote(
            task, hardware, self.packed[task.artifact.directory],
            self.packed[task.reference.directory],
        )  # fmt: skip
        self._at_submit[ref] = (hardware, list(self._classes.get(hardware, [])))
        return ref

    def wait(self, handles: list[Hashable], timeout_s: float) -> list[Hashable]:
        done, _ = self.ray.wait(handles, num_returns=1, timeout=timeout_s)
        self.refresh()
        return list(done)

    def result(self, handle: Hashable) -> NodeResult:
        exc_mod = self.ray.exceptions
        hardware, before = self._at_submit.pop(handle, ("", []))
        try:
            got: NodeResult = self.ray.get(handle, timeout=60)
            return got
        except (exc_mod.NodeDiedError, exc_mod.ObjectLostError) as exc:
            self._lost(hardware, before)
            raise NodeLost(_first_line(exc)) from None
        except exc_mod.WorkerCrashedError as exc:
            alive = {n for ids in node_classes(self.ray).values() for n in ids}
            gone = [n[:12] for n in before if n not in alive]
            if gone:
                self._lost(hardware, before)
                raise NodeLost(f"node {', '.join(gone)} died") from None
            outcome: Outcome[Any] = Outcome(
                "failed", reason=f"worker crashed: {_first_line(exc)}", error_kind="crashed",
                stage="worker",
            )  # fmt: skip
            return NodeResult(outcome, "", 0.0, 0.0)
        except exc_mod.RayError as exc:
            outcome = Outcome(
                "failed", reason=f"ray: {_first_line(exc)}", error_kind=type(exc).__name__,
                stage="fleet",
            )  # fmt: skip
            return NodeResult(outcome, "", 0.0, 0.0)

    def cancel(self, handle: Hashable) -> None:
        self._at_submit.pop(handle, None)
        self.ray.cancel(handle, force=True)

    def lost(self, handle: Hashable) -> str | None:
        hardware, before = self._at_submit.get(handle, ("", []))
        alive = set(self._classes.get(hardware, []))
        gone = [n[:12] for n in before if n not in alive]
        return f"node {', '.join(gone)} of class {hardware!r} died" if gone else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class RayLauncher(FleetLauncher):
    """Measures cases on a Ray cluster (``address``: ``auto``, ``ray://host:10001``, or None to
    join the cluster this process already initialised); builds run through ``local``.

    ``placements`` records, for every case that ran, its node and start/end times (Unix s).
    """

    def __init__(
        self, address: str | None = None, local: Launcher | None = None, start_s: float = START_S
    ) -> None:
        from harness.launch.process import ProcessLauncher

        self.address = address
        self.local = local or ProcessLauncher()
        self.start_s = start_s
        self.placements: list[Placement] = []
        self._packed: dict[str, tuple[str, Any]] = {}  # artifact directory -> (sha256, ref)

    def connect(self) -> Any:
        """Join the cluster (once); ConfigError when it cannot be reached."""
        ray = _ray()
        if not ray.is_initialized():
            _reachable(self.address)
            try:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"--address {self.address}: cannot join the Ray cluster: {_first_line(exc)}"
                ) from None
        return ray

    def check(self, classes: Sequence[str]) -> None:
        """ConfigError, before anything runs, naming each class no alive node advertises."""
        have = node_classes(self.connect())
        missing = sorted({c for c in classes if c not in have})
        if missing:
            raise ConfigError(
                f"--executor ray: no node advertises hardware class "
                f"{', '.join(repr(m) for m in missing)} (resource {RESOURCE_PREFIX}<class>); "
                f"classes in the cluster: {', '.join(sorted(have)) or '(none)'}"
            )

    def launch_many(
        self, tasks: Sequence[Task[T]], progress: Progress = no_progress
    ) -> Iterator[tuple[int, Outcome[T]]]:
        """Measure tasks (``MeasureTask`` with ``case.hardware`` set) concurrently, one per
        node of their class; yield ``(index, outcome)`` as each ends."""
        ray = self.connect()
        cases = [getattr(t, "case", None) for t in tasks]
        if any(c is None or c.hardware is None for c in cases):
            raise ConfigError("--executor ray: every case needs a hardware class")
        packed = {}
        for task in tasks:
            for artifact in (task.artifact, task.reference):  # type: ignore[attr-defined]
                packed[artifact.directory] = self._put(ray, artifact)
        fleet = _RayFleet(ray, tasks, packed)
        yield from dispatch(
            fleet,
            [c.hardware for c in cases],  # type: ignore[union-attr]
            [c.settings.timeout_s for c in cases],  # type: ignore[union-attr]
            [c.settings.retries for c in cases],  # type: ignore[union-attr]
            self.placements,
            self.start_s,
        )

    def _put(self, ray: Any, artifact: Any) -> Any:
        """The artifact's packed bytes in the object store, put once per directory."""
        if artifact.directory not in self._packed:
            packed = pack(artifact)
            self._packed[artifact.directory] = (packed.sha256, ray.put(packed))
        return self._packed[artifact.directory][1]


CONNECT_S = 5.0  # how long a cluster's head address gets to answer before it is refused


def _reachable(address: str | None, timeout_s: float = CONNECT_S) -> None:
    """ConfigError unless ``address`` (``host:port``; ``auto``, ``ray://`` and None are left to
    Ray) accepts a TCP connection within ``timeout_s``: ``ray.init`` itself keeps retrying an
    unreachable head for minutes."""
    import socket

    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--address {address}: no Ray head answers there within {timeout_s:g} s ({exc})"
        ) from None
