"""Plan -> artifacts -> launcher -> finalize -> store, one case at a time.

An artifact is built (by the launcher, in a worker) the first time a case needs it. A case whose
backend runtime is missing is stored as skipped without starting a worker. A crash, hang or
exception in a worker is that case's failed row; the run goes on and earlier rows are already
stored. The raw measurement becomes a row in this process (:func:`harness.finalize.finalize`).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

from harness.backend import quick_unavailable_reason
from harness.case import Case
from harness.cost import Prices
from harness.cost import prices as default_prices
from harness.environment import fingerprint
from harness.finalize import finalize, unmeasured
from harness.launch import InlineLauncher, Launcher, Outcome, ProcessLauncher
from harness.launch.base import ConcurrentLauncher
from harness.measure import noise
from harness.optimize.artifacts import Artifact, cache_root
from harness.optimize.variants import parse_variant
from harness.plan import Plan
from harness.result import CaseResult
from harness.store import Store
from harness.worker import BuildTask, MeasureTask


class Reporter(Protocol):
    """Progress callbacks; the CLI draws a progress bar, tests record events."""

    def run_started(self, run_id: str, cases: Sequence[Case]) -> None: ...

    def notice(self, text: str) -> None: ...

    def case_started(self, index: int, total: int, case: Case, activity: str) -> None: ...

    def case_done(self, index: int, total: int, result: CaseResult) -> None: ...


class SilentReporter:
    def run_started(self, run_id: str, cases: Sequence[Case]) -> None:
        return None

    def notice(self, text: str) -> None:
        return None

    def case_started(self, index: int, total: int, case: Case, activity: str) -> None:
        return None

    def case_done(self, index: int, total: int, result: CaseResult) -> None:
        return None


class NoiseWatch(Protocol):
    """Watches the machine while a case is measured: ``start`` when its worker starts,
    ``stop`` with what ``start`` returned when it ends, giving the flags for that window."""

    def before_run(self) -> list[str]: ...

    def start(self) -> object: ...

    def stop(self, token: object) -> list[str]: ...


class MachineWatch:
    """The real machine, through :mod:`harness.measure.noise` (other processes' CPU, steal,
    load, memory)."""

    def before_run(self) -> list[str]:
        return noise.system_flags(noise.read_system())

    def start(self) -> object:
        return noise.cpu_snapshot()

    def stop(self, token: object) -> list[str]:
        return noise.window_flags(cast(noise.CpuSnapshot, token), noise.cpu_snapshot())


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


class Runner:
    """Runs one plan into one store."""

    def __init__(
        self,
        store: Store,
        cache: Path,
        launcher: Launcher | None = None,
        reporter: Reporter | None = None,
        watch: NoiseWatch | None = None,
    ) -> None:
        self.store = store
        self.reporter = reporter or SilentReporter()
        self.watch = watch or MachineWatch()
        self.cases = CaseRunner(cache, launcher, self.reporter, self.watch)
        self.run_id: str | None = None  # the run being written, for an interrupt's message
        self.stored = 0

    def run(self, plan: Plan, run_id: str | None = None, resume: bool = False) -> str:
        """Run every case of ``plan``; return the run id. Each row is stored as it lands.

        ``resume``: ``run_id`` names an earlier, interrupted run of the same plan; its stored
        cases are kept and only the others run. Raises ConfigError if there is no such run."""
        run_id = run_id or new_run_id()
        self.run_id, self.stored = run_id, 0
        suite = plan.suite
        done: set[str] = set()
        if resume:
            self.store.run(run_id)  # ConfigError when it does not exist
            done = {r.case_id for r in self.store.cases(run_id)}
        else:
            self.store.start_run(run_id, suite.name, suite.path, fingerprint(), suite.baseline)
        self.store.release()  # readers (show, export, report) may open it between cases
        todo = [c for c in plan.cases if c.case_id not in done]
        self.reporter.run_started(run_id, todo)
        for flag in self.watch.before_run():
            self.reporter.notice(f"noisy machine: {flag}")
        if isinstance(self.cases.launcher, ConcurrentLauncher):
            self._run_concurrently(run_id, todo, plan.prices)
        else:
            for index, case in enumerate(todo):
                result, samples = self.cases.run_case(run_id, case, plan.prices, index, len(todo))
                self._store(index, len(todo), result, samples)
        self.store.finish_run(run_id)
        self.store.release()
        return run_id

    def _store(self, index: int, total: int, result: CaseResult, samples: list[float]) -> None:
        """One row, in its own transaction; the store is then let go so that readers (show,
        export, report) can open it while the run goes on."""
        self.store.add_case(result, samples)
        self.store.release()
        self.stored += 1
        self.reporter.case_done(index, total, result)

    def _run_concurrently(self, run_id: str, cases: Sequence[Case], prices: Prices) -> None:
        """Build every case's artifacts (here), then hand all measure tasks to the fleet at
        once and store each row as its case ends. The machine watch does not apply: the cases
        run on other nodes."""
        launcher = cast(ConcurrentLauncher, self.cases.launcher)  # checked by the caller
        total = len(cases)
        ready: list[tuple[int, MeasureTask]] = []
        for index, case in enumerate(cases):
            prepared = self.cases.prepare(run_id, case, index, total)
            if isinstance(prepared, MeasureTask):
                self.reporter.case_started(index, total, case, "queued for a node")
                ready.append((index, prepared))
            else:
                self._store(index, total, prepared, [])
        outcomes = launcher.launch_many([task for _, task in ready])
        for position, measured in outcomes:
            index, task = ready[position]
            result, samples = self.cases.finish(run_id, task, measured, prices)
            self._store(index, total, result, samples)


class CaseRunner:
    """Builds artifacts (once each) and measures single cases through a launcher; stores
    nothing."""

    def __init__(
        self,
        cache: Path,
        launcher: Launcher | None = None,
        reporter: Reporter | None = None,
        watch: NoiseWatch | None = None,
    ) -> None:
        self.cache = cache
        self.launcher = launcher or ProcessLauncher()
        self.reporter = reporter or SilentReporter()
        self.watch = watch or MachineWatch()
        self._artifacts: dict[tuple[str, str, tuple[str, ...]], Outcome[Artifact]] = {}

    def run_case(
        self, run_id: str, case: Case, prices: Prices, index: int = 0, total: int = 1
    ) -> tuple[CaseResult, list[float]]:
        """One case's row and raw samples (ms); skips and failures are rows too."""
        prepared = self.prepare(run_id, case, index, total)
        if not isinstance(prepared, MeasureTask):
            return prepared, []

        def measuring(text: str) -> None:
            self.reporter.case_started(index, total, case, f"measuring: {text}")

        self.reporter.case_started(index, total, case, "measuring")
        token = self.watch.start()
        measured = self.launcher.launch(prepared, measuring)
        machine = self.watch.stop(token)
        return self.finish(run_id, prepared, measured, prices, machine)

    def finish(
        self,
        run_id: str,
        task: MeasureTask,
        measured: Outcome[Any],
        prices: Prices,
        machine_flags: Sequence[str] = (),
    ) -> tuple[CaseResult, list[float]]:
        """The row and raw samples (ms) of a measure task's outcome, with the node it ran on
        and what the machine watch saw meanwhile."""
        if measured.value is None:
            result = unmeasured(run_id, task.case, task.artifact, measured)
            result.node = measured.node
            return result, []
        value = measured.value
        if measured.partial:  # the worker died after sampling: its samples were kept
            value = replace(value, incomplete=measured.partial)
        result, samples = finalize(run_id, task.case, task.artifact, value, prices, machine_flags)
        result.node = measured.node
        return result, samples

    def prepare(
        self, run_id: str, case: Case, index: int = 0, total: int = 1
    ) -> MeasureTask | CaseResult:
        """The case's measure task, its artifacts built; or its row when it is skipped or a
        build failed."""
        reason = quick_unavailable_reason(case.backend)
        if reason is not None:
            return unmeasured(run_id, case, None, Outcome("skipped", reason=reason))
        what = f"building {case.model}/{case.variant}"
        self.reporter.case_started(index, total, case, what)

        def progress(text: str) -> None:
            self.reporter.case_started(index, total, case, f"{what}: {text}")

        artifact = self._artifact(case, case.variant, progress, "artifact build")
        if artifact.value is None:
            return unmeasured(run_id, case, None, artifact)
        reference = self._artifact(case, "fp32", progress, "fp32 reference build")
        if reference.value is None:
            return unmeasured(run_id, case, None, reference)
        return MeasureTask(case, artifact.value, reference.value, str(self.cache))

    def _artifact(self, case: Case, variant: str, progress: Any, stage: str) -> Outcome[Artifact]:
        """The artifact, built once per run; only a variant whose output depends on the case's
        shape (static calibration) is built per binding set."""
        bindings = case.bindings if parse_variant(variant).depends_on_bindings else ()
        key = (case.model, variant, bindings)
        if key not in self._artifacts:
            task = BuildTask(case.model, variant, str(self.cache), bindings,
                             case.settings.build_timeout_s, stage)  # fmt: skip
            self._artifacts[key] = self.launcher.launch(task, progress)
        return self._artifacts[key]


def measure_here(
    run_id: str,
    case: Case,
    artifact: Artifact,
    reference: Artifact | None = None,
    prices: Prices | None = None,
) -> tuple[CaseResult, list[float]]:
    """Measure ``case`` on a built artifact in this process (the inline launcher) and make its
    row, at the shipped prices by default: for benchmarks of the harness itself and for tests.
    A skip or a failure is a row, as in a run."""
    task = MeasureTask(case, artifact, reference or artifact, str(cache_root()))
    outcome = InlineLauncher().launch(task)
    if outcome.value is None:
        return unmeasured(run_id, case, artifact, outcome), []
    value = outcome.value
    if outcome.partial:
        value = replace(value, incomplete=outcome.partial)
    return finalize(run_id, case, artifact, value, prices or default_prices())
