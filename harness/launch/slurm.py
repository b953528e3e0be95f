"""The Slurm executor, through submitit: one job per case, ``--exclusive`` (the node runs
nothing else) and ``--constraint=<class>`` (Slurm node features name the hardware classes).

submitit pickles each job's function and arguments into ``folder``, which must be on a file
system the nodes share: that is how the artifact's bytes travel (packed once on the driver,
checked by sha256 on the node, :mod:`harness.launch.ship`). Jobs are polled, never waited on
without a bound: a job's deadline is its case's ``timeout_s`` plus ``queue_s`` (time allowed in
the queue and to start). A job that ends in ``NODE_FAIL`` is a lost node (retried per the case's
``retries``). Builds stay on the driver, through ``local``.

``cluster="local"`` runs jobs as local processes (submitit's ``LocalExecutor``) for tests; it
ignores the Slurm parameters, which :func:`sbatch_script` shows as Slurm would receive them.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import ConfigError
from harness.launch.base import Launcher, Outcome, Progress, Task, no_progress
from harness.launch.fleet import (
    FleetLauncher,
    NodeLost,
    NodeResult,
    Placement,
    dispatch,
    run_on_node,
)
from harness.launch.ship import Packed, pack

T = TypeVar("T")
QUEUE_S = 3600.0  # default bound on a job's time in the queue, seconds
POLL_S = 0.5  # how often job states are read (submitit caches sacct for a few seconds)


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "--executor slurm needs submitit: pip install 'infrabench[slurm]'"
        ) from None
    return submitit


@dataclass(frozen=True)
class SlurmOptions:
    """Where jobs go. ``folder``: shared directory for submitit's job files and logs;
    ``partition``/``account``: sbatch's; ``cluster``: None (Slurm) or ``local``/``debug``
    (submitit's local executors, for tests); ``slots_per_class``: jobs in flight per class
    (default: every case at once, Slurm queues them); ``queue_s``: bound on queueing."""

    folder: str
    partition: str | None = None
    account: str | None = None
    cluster: str | None = None
    slots_per_class: int | None = None
    queue_s: float = QUEUE_S


def _on_slurm_node(task: Any, hardware: str, artifact: Packed, reference: Packed) -> NodeResult:
    """Runs in the job on its node; the constraint put it on a node of ``hardware``."""
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    os.environ.update({k: str(v) for k, v in task.env().items()})
    return run_on_node(task, hardware, artifact, reference, node, hardware)


def parameters(
    options: SlurmOptions, hardware: str, timeout_s: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The sbatch parameters of one case's job (submitit ``slurm_*`` names); ``env`` is
    exported in the job script, before Python starts (thread-pool sizes)."""
    params: dict[str, Any] = {
        "slurm_setup": [f"export {k}={v}" for k, v in sorted((env or {}).items())],
        "slurm_exclusive": True,
        "slurm_constraint": hardware,
        "slurm_job_name": f"infrabench-{hardware}",
        "timeout_min": max(1, int(-(-(timeout_s + 60) // 60))),  # ceil, with a minute to start
        "nodes": 1,
        "tasks_per_node": 1,
    }
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.account:
        params["slurm_account"] = options.account
    return params


def sbatch_script(
    options: SlurmOptions, hardware: str, timeout_s: float, env: dict[str, str] | None = None
) -> str:
    """The sbatch script Slurm would get for one case of ``hardware`` (for review and tests)."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = parameters(options, hardware, timeout_s, env)
    return str(
        _make_sbatch_string(
            command="python -u -m submitit.core._submit '%j'",
            folder=options.folder,
            job_name=params["slurm_job_name"],
            partition=params.get("slurm_partition"),
            account=params.get("slurm_account"),
            time=params["timeout_min"],
            nodes=1,
            ntasks_per_node=1,
            constraint=hardware,
            exclusive=True,
            setup=params["slurm_setup"],
        )
    )


class _SlurmFleet:
    """``FleetBackend`` over submitit jobs."""

    def __init__(self, options: SlurmOptions, tasks: Sequence[Any], packed: dict[str, Packed]):
        self.submitit = _submitit()
        self.options, self.tasks, self.packed = options, tasks, packed
        self.jobs: dict[str, Any] = {}
        self.slots = options.slots_per_class or len(tasks)

    def capacity(self, hardware: str) -> int:
        return self.slots

    def submit(self, index: int, hardware: str) -> Hashable:
        task = self.tasks[index]
        executor = self.submitit.AutoExecutor(self.options.folder, cluster=self.options.cluster)
        env = {k: str(v) for k, v in task.env().items()}
        params = parameters(self.options, hardware, task.timeout_s, env)
        executor.update_parameters(**_for(executor, params))
        job = executor.submit(
            _on_slurm_node, task, hardware, self.packed[task.artifact.directory],
            self.packed[task.reference.directory],
        )  # fmt: skip
        self.jobs[job.job_id] = job
        return str(job.job_id)

    def wait(self, handles: list[Hashable], timeout_s: float) -> list[Hashable]:
        deadline = time.monotonic() + timeout_s
        while True:
            done = [h for h in handles if self.jobs[str(h)].done()]
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))

    def result(self, handle: Hashable) -> NodeResult:
        job = self.jobs.pop(str(handle))
        utils = self.submitit.core.utils
        try:
            got: NodeResult = job.result()
            return got
        except (utils.FailedJobError, utils.UncompletedJobError) as exc:
            if job.state.upper().startswith("NODE_FAIL"):
                raise NodeLost(f"Slurm job {job.job_id} on a node that failed") from None
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "no output"
            outcome: Outcome[Any] = Outcome(
                "failed", reason=f"slurm job {job.job_id}: {reason}", error_kind="crashed",
                stage="worker",
            )  # fmt: skip
            return NodeResult(outcome, "", 0.0, 0.0)

    def lost(self, handle: Hashable) -> str | None:
        return None  # Slurm reports NODE_FAIL on the job itself

    def cancel(self, handle: Hashable) -> None:
        job = self.jobs.pop(str(handle), None)
        if job is not None:
            job.cancel(check=False)


def _for(executor: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters ``executor`` accepts: a local executor ignores the ``slurm_*`` ones."""
    if executor.cluster == "slurm":
        return params
    return {k: v for k, v in params.items() if not k.startswith("slurm_")}


class SlurmLauncher(FleetLauncher):
    """Measures cases as Slurm jobs (one per case); builds run through ``local``."""

    def __init__(self, options: SlurmOptions, local: Launcher | None = None) -> None:
        from harness.launch.process import ProcessLauncher

        self.options = options
        self.local = local or ProcessLauncher()
        self.placements: list[Placement] = []
        self._packed: dict[str, Packed] = {}

    def check(self, classes: Sequence[str]) -> None:
        """ConfigError naming each class that no Slurm node has as a feature (``sinfo``);
        nothing to check for a local executor."""
        _submitit()
        if self.options.cluster not in (None, "slurm"):
            return
        import shutil
        import subprocess

        exe = shutil.which("sinfo")
        if exe is None:
            raise ConfigError("--executor slurm: sinfo not found; is this a Slurm login node?")
        out = subprocess.run([exe, "-h", "-o", "%f"], capture_output=True, text=True,
                             timeout=30, check=False).stdout  # fmt: skip
        features = {f for line in out.splitlines() for f in line.strip().split(",") if f}
        missing = sorted(set(classes) - features)
        if missing:
            raise ConfigError(
                f"--executor slurm: no node has feature {', '.join(repr(m) for m in missing)}; "
                f"features in the cluster: {', '.join(sorted(features)) or '(none)'}"
            )

    def launch_many(
        self, tasks: Sequence[Task[T]], progress: Progress = no_progress
    ) -> Iterator[tuple[int, Outcome[T]]]:
        """Submit every measure task as its own job; yield ``(index, outcome)`` as each ends."""
        cases = [getattr(t, "case", None) for t in tasks]
        if any(c is None or c.hardware is None for c in cases):
            raise ConfigError("--executor slurm: every case needs a hardware class")
        Path(self.options.folder).mkdir(parents=True, exist_ok=True)
        for task in tasks:
            for artifact in (task.artifact, task.reference):  # type: ignore[attr-defined]
                if artifact.directory not in self._packed:
                    self._packed[artifact.directory] = pack(artifact)
        fleet = _SlurmFleet(self.options, tasks, self._packed)
        yield from dispatch(
            fleet,
            [c.hardware for c in cases],  # type: ignore[union-attr]
            [c.settings.timeout_s for c in cases],  # type: ignore[union-attr]
            [c.settings.retries for c in cases],  # type: ignore[union-attr]
            self.placements,
            self.options.queue_s,
        )
