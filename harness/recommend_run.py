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
from harness.errors import ConfigError
from harness.launch.base import Launcher, Outcome, Progress, Task, no_progress
from harness.launch.pooled import PooledLauncher
from harness.launch.process import ProcessLauncher
from harness.measure.stats import min_samples_for
from harness.plan import Plan
from harness.recommend import LATENCY_BOUNDS, Constraints
from harness.recommend_search import SearchResult, successive_halving
from harness.result import CaseResult
from harness.runner import Runner
from harness.worker import MeasureTask

T = TypeVar("T")


def with_budget(
    case: Case, budget_s: float, screening: bool = False, for_p99: bool = False
) -> Case:
    """``case`` sampled for ``budget_s`` seconds (``screening``: timing only, see
    ``CaseSettings.screening``; ``for_p99``: at least the samples a p99 interval needs, within
    the budget). Its warm-up keeps the full measurement's bound: a round whose warm-up is cut
    short times kernels still warming, a bias no interval shows (in one quiet run here, with
    the warm-up capped at a 0.67 s round, OpenVINO's int8 b8 case cost 15% more than in the
    full grid, and the grid's winner was pruned)."""
    suite = case.settings.timing
    warmup = min(suite.warmup_max_s, suite.budget_s)  # what the full measurement warms up for
    timing = replace(suite, budget_s=budget_s, warmup_max_s=warmup)
    if for_p99:
        least = min_samples_for(0.99, suite.confidence)
        timing = replace(timing, min_samples=max(timing.min_samples, least),
                         max_samples=max(timing.max_samples, least))  # fmt: skip
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
    # a p99 objective or bound: rounds after screening sample for a p99 interval at least (the
    # budget still bounds them; a case too slow for it keeps an unknown p99)
    tail = objective == "latency" or any(
        getattr(constraints, name) is not None for _, _, name in LATENCY_BOUNDS
    )

    def measure(cases: list[Case], budget_s: float, screening: bool) -> list[CaseResult]:
        kind = "screening" if screening else "search"
        name = f"{planned.suite.name} ({kind}, {budget_s:.3g} s)"
        rounds = replace(planned.suite, name=name)
        cases_now = tuple(with_budget(c, budget_s, screening, tail and not screening)
                          for c in cases)  # fmt: skip
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

    try:
        result = successive_halving(planned.cases, measure, objective, constraints,
                                    first_budget_s, full, eta, energy_source)  # fmt: skip
    except ConfigError as exc:
        if not runs:
            raise
        raise ConfigError(f"{exc} (the search's rows are stored as runs "
                          f"{', '.join(runs.values())})") from None  # fmt: skip
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
