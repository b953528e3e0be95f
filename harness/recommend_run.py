"""``infrabench recommend --run SUITE``: the successive-halving search of
:mod:`harness.recommend_search` measuring real cases through the runner.

Each round is one stored run (suite name plus the round's budget), so every measurement the
search takes is kept and can be shown or compared like any other run; the last round measures
the surviving cases at the suite's own budget.
"""

from __future__ import annotations

from dataclasses import replace

from harness.case import Case
from harness.plan import Plan
from harness.recommend import Constraints
from harness.recommend_search import SearchResult, successive_halving
from harness.result import CaseResult
from harness.runner import Runner


def with_budget(case: Case, budget_s: float) -> Case:
    """``case`` sampled for ``budget_s`` seconds. Its warm-up keeps the suite's bound: a round
    whose warm-up is cut short times kernels still warming, a bias no interval shows (in one
    quiet run here, with the warm-up capped at a 0.67 s round, OpenVINO's int8 b8 case cost 15%
    more than in the full grid, and the grid's winner was pruned)."""
    timing = replace(case.settings.timing, budget_s=budget_s)
    return replace(case, settings=replace(case.settings, timing=timing))


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
    result and the ids of the runs the rounds were stored as. Raises ConfigError as
    ``successive_halving`` does (e.g. a first budget above the suite's)."""
    full = planned.suite.timing.budget_s
    run_ids: list[str] = []

    def measure(cases: list[Case], budget_s: float) -> list[CaseResult]:
        rounds = replace(planned.suite, name=f"{planned.suite.name} (search, {budget_s:g} s)")
        cases_now = tuple(with_budget(c, budget_s) for c in cases)
        run_id = runner.run(replace(planned, suite=rounds, cases=cases_now))
        run_ids.append(run_id)
        return runner.store.cases(run_id)

    result = successive_halving(
        planned.cases, measure, objective, constraints, first_budget_s, full, eta, energy_source
    )
    return result, run_ids
