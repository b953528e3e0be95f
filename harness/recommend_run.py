"""``infrabench recommend --run SUITE``: the successive-halving search of
:mod:`harness.recommend_search` measuring real cases through the runner.

Each round is one stored run (suite name plus the round's kind and budget), so every
measurement the search takes is kept and can be shown or compared like any other run; the last
round measures the surviving cases at the suite's own budget.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from harness.case import Case
from harness.launch.base import Launcher, Outcome, Progress, Task, no_progress
from harness.launch.pooled import PooledLauncher
from harness.launch.process import ProcessLauncher
from harness.plan import Plan
from harness.recommend import Constraints
from harness.recommend_search import SearchResult, successive_halving
from harness.result import CaseResult
from harness.runner import Runner
from harness.worker import MeasureTask

T = TypeVar("T")


def with_budget(case: Case, budget_s: float, screening: bool = False) -> Case:
    """``case`` sampled for ``budget_s`` seconds (``screening``: timing only, see
    ``CaseSettings.screening``). Its warm-up keeps the suite's bound: a round whose warm-up is
    cut short times kernels still warming, a bias no interval shows (in one quiet run here,
    with the warm-up capped at a 0.67 s round, OpenVINO's int8 b8 case cost 15% more than in the
    full grid, and the grid's winner was pruned)."""
    suite = case.settings.timing
    warmup = min(suite.warmup_max_s, suite.budget_s)  # what the full measurement warms up for
    timing = replace(suite, budget_s=budget_s, warmup_max_s=warmup)
    screenable = not case.load_driven and case.gen_len is None  # the encoder timing path
    settings = replace(case.settings, timing=timing, screening=screening and screenable,
                       keep_warmup=True)  # fmt: skip
    return replace(case, settings=settings)


def search_suite(
    planned: Plan,
    runner: Runner,
    objective: str,
    constraints: Constraints,
    first_budget_s: float,
    energy_source: str | None = None,
    eta: float = 3.0,
) -> tuple[SearchResult, list[str]]:
    """Search ``planned``'s cases, the full budget being the suite's ``budget_s``; return the
    result and the ids of the runs the rounds were stored as. The screening round's cases
    share one worker (:class:`~harness.launch.pooled.PooledLauncher`); every later round's
    cases each run in their own, as ``infrabench run`` runs them. Raises ConfigError as
    ``successive_halving`` does (e.g. a first budget above the suite's)."""
    full = planned.suite.timing.budget_s
    runs: dict[float, str] = {}  # budget -> the run its round is stored as

    def measure(cases: list[Case], budget_s: float, screening: bool) -> list[CaseResult]:
        kind = "screening" if screening else "search"
        name = f"{planned.suite.name} ({kind}, {budget_s:.3g} s)"
        rounds = replace(planned.suite, name=name)
        cases_now = tuple(with_budget(c, budget_s, screening) for c in cases)
        if budget_s not in runs:
            what = "timing only, one shared worker" if screening else "one case at a time"
            runner.reporter.notice(f"round {len(runs)}: {name}: {what}")
        own = runner.cases.launcher
        # only a local run's screening shares a worker (not a fleet's, a test's fake, --inline)
        shared = screening and isinstance(own, ProcessLauncher)
        with PooledLauncher() as pool:
            if shared:
                runner.cases.launcher = _ScreeningLauncher(own, pool)
            try:
                # a later round measures one case at a time: each lands in its round's run
                run_id = runner.run(replace(planned, suite=rounds, cases=cases_now),
                                    runs.get(budget_s), resume=budget_s in runs)  # fmt: skip
            finally:
                runner.cases.launcher = own
        runs[budget_s] = run_id
        wanted = {c.case_id for c in cases}
        return [r for r in runner.store.cases(run_id) if r.case_id in wanted]

    result = successive_halving(planned.cases, measure, objective, constraints,
                                first_budget_s, full, eta, energy_source)  # fmt: skip
    return result, list(runs.values())


class _ScreeningLauncher:
    """A screening round's measure tasks to the shared worker; everything else (artifact
    builds: quantisation, distillation) to ``own``, a fresh process each."""

    def __init__(self, own: Launcher, pool: PooledLauncher) -> None:
        self.own, self.pool = own, pool

    def launch(self, task: Task[T], progress: Progress = no_progress) -> Outcome[T]:
        if isinstance(task, MeasureTask) and task.case.settings.screening:
            return self.pool.launch(task, progress)
        return self.own.launch(task, progress)
