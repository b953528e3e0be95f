"""Search instead of the full grid: successive halving of measurement budgets, pruning every
case that cannot win (``infrabench recommend --run SUITE``).

Round 0, when shorter than the full budget, is a **screening** round: every case is timed
briefly (``first_budget_s``) and nothing else (no fidelity, no memory: see
``CaseSettings.screening``). Each later round multiplies the budget by ``eta`` up to
``full_budget_s`` (the last round) and measures the cases still alive **one at a time, most
promising first** (the optimistic end of the objective in the last round), each in full. A case
is **pruned** when, even at the optimistic end of its intervals, it cannot win:

* it failed or was skipped;
* a constraint fails for certain: the p99's *lower* interval bound above the bound (the upper
  bound decides "met"; the lower one decides "hopeless"), the fidelity ratio below its minimum,
  memory over its bound, a hardware class not allowed (fidelity and memory do not depend on how
  long a case is timed; a screening row has neither, and unknown is not a failure);
* its objective at its optimistic end is worse than the pessimistic end of the round's
  **leader**, the best case measured so far in the round that meets every constraint with
  confidence (energy-derived objectives: the best of the same energy source). A screening row
  never leads. In a later round this is checked *before* a case is measured, against its last
  row, so a case that cannot beat the leader is not measured again. Not for a row whose
  interval cannot say: a point estimate, an unsettled warm-up, or one the machine watch flagged
  (an interval from samples taken while other work ran does not cover the drift between
  rounds): such a row is measured again (on a busy machine the search then saves less). The
  objective's interval is the p99's for latency; for cost, energy and CO2 (which scale with the
  time per inference) the p50's relative interval, inverted for throughput.

A p99 interval needs enough samples (``harness.measure.stats.min_samples_for``): under a latency
bound, a case too slow for that many samples in the full budget never meets the bound with
confidence. The runner-up of a search may have been measured only in a shorter round.

The caller supplies ``measure(cases, budget_s, screening) -> rows`` (one ``CaseResult`` per
case, matched by ``case_id``); nothing here knows how cases are run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from harness.errors import ConfigError
from harness.measure.noise import machine_flags_of
from harness.recommend import (
    LATENCY_BOUNDS,
    OBJECTIVES,
    Constraints,
    Objective,
    Recommendation,
    Verdict,
    labels,
    recommend,
    violations,
)
from harness.result import CaseResult


class HasCaseId(Protocol):
    @property
    def case_id(self) -> str: ...


C = TypeVar("C", bound=HasCaseId)


@dataclass(frozen=True)
class Pruned:
    """A case dropped after ``round`` and why (one line)."""

    case_id: str
    round: int
    why: str


@dataclass(frozen=True)
class Round:
    index: int
    budget_s: float
    measured: tuple[str, ...]  # case ids
    pruned: tuple[Pruned, ...]


@dataclass(frozen=True)
class SearchResult:
    """``rows``: each case's last measurement; ``planned_s``: sum of the budgets handed out
    (the full grid would have been ``full_grid_s``)."""

    rows: list[CaseResult]
    rounds: list[Round]
    recommendation: Recommendation
    planned_s: float
    full_grid_s: float

    @property
    def pruned(self) -> list[Pruned]:
        return [p for r in self.rounds for p in r.pruned]


def _num(value: float) -> str:
    return f"{value:.4g}"


def _interval(row: CaseResult, obj: Objective) -> tuple[float | None, float | None]:
    """The interval (low, high, ms) that backs ``obj``'s: the p99's for latency, else the
    p50's, whose relative width cost, energy and CO2 share; (None, None) for a point
    estimate."""
    column = "latency_ms_p99" if obj.name == "latency" else "latency_ms_p50"
    return getattr(row, f"{column}_ci_low"), getattr(row, f"{column}_ci_high")


def objective_interval(row: CaseResult, obj: Objective) -> tuple[float, float] | None:
    """(optimistic, pessimistic) ends of the row's objective, oriented so lower is better
    (throughput negated); None when the objective is unknown."""
    value: float | None = getattr(row, obj.column)
    if value is None:
        return None
    low, high = _interval(row, obj)
    if obj.name == "latency":
        return (low if low is not None else value), (high if high is not None else value)
    p50 = row.latency_ms_p50
    low_ratio = high_ratio = 1.0
    if p50 and low is not None and high is not None:
        low_ratio, high_ratio = low / p50, high / p50
    if obj.maximize:  # throughput: faster (low latency) is the optimistic end
        return -value / low_ratio, -value / high_ratio
    return value * low_ratio, value * high_ratio


def hopeless(row: CaseResult, c: Constraints, screening: bool = False) -> str | None:
    """Why a constraint fails whatever longer timing shows; None when it still may hold.
    ``screening``: the row is a screening round's, which leaves fidelity and memory unmeasured
    (unknown there is not a failure)."""
    if row.status != "ok":
        return f"{row.status}: {row.reason or 'no reason recorded'}"
    certain = violations(row, c, timed=False, known_only=screening)
    for what, column, name in LATENCY_BOUNDS:
        bound, low = getattr(c, name), getattr(row, f"{column}_ci_low", None)
        if bound is not None and low is not None and low > bound:
            certain.insert(0, f"{what} lower bound {_num(low)} > {_num(bound)} ms")
    return "; ".join(certain) or None


Leaders = dict[str | None, tuple[float, CaseResult]]


def _lead(leaders: Leaders, row: CaseResult, obj: Objective, c: Constraints) -> None:
    """Make ``row`` the leader of its energy source when it meets every constraint with
    confidence and its pessimistic objective is the best so far."""
    ends = objective_interval(row, obj)
    if ends is None or hopeless(row, c) or violations(row, c):
        return
    key = row.energy_source if obj.energy_based else None
    if key not in leaders or ends[1] < leaders[key][0]:
        leaders[key] = (ends[1], row)


def _beaten(
    row: CaseResult, leaders: Leaders, obj: Objective, names: dict[str, str]
) -> tuple[str, str] | None:
    """Why ``row`` cannot beat its energy source's leader even at its optimistic end, and that
    leader's case id; None when it still may, or when its interval cannot say: it has none (a
    point estimate), its warm-up did not settle, or the machine watch flagged it (an interval
    from samples taken while other work ran does not cover the machine's drift). Such a row is
    timed again, longer, not pruned."""
    ends = objective_interval(row, obj)
    key = row.energy_source if obj.energy_based else None
    if ends is None or key not in leaders or _interval(row, obj)[0] is None:
        return None
    if row.warmup_steady is False or machine_flags_of(row.noise):
        return None
    bound, leader = leaders[key]
    if leader.case_id == row.case_id or ends[0] <= bound:
        return None
    sign = -1 if obj.maximize else 1
    why = (
        f"cannot beat {names[leader.case_id]}: {obj.name} {_num(sign * ends[0])} "
        f"{obj.unit} at best vs {_num(sign * bound)} at worst"
    )
    return why, leader.case_id


def _prune(
    rows: Sequence[CaseResult],
    obj: Objective,
    c: Constraints,
    names: dict[str, str],
    screening: bool = False,
    beaten_by: dict[str, str] | None = None,
) -> dict[str, str]:
    """case_id -> why, for the rows of one round that cannot win; ``beaten_by`` gets the
    leader of each one pruned on the objective. A screening round's rows never lead (their
    fidelity and memory are not known), so they are pruned only when hopeless."""
    why = {r.case_id: w for r in rows if (w := hopeless(r, c, screening))}
    leaders: Leaders = {}
    for r in rows if not screening else ():
        _lead(leaders, r, obj, c)
    for r in rows:
        if r.case_id not in why and (beaten := _beaten(r, leaders, obj, names)):
            why[r.case_id] = beaten[0]
            if beaten_by is not None:
                beaten_by[r.case_id] = beaten[1]
    return why


def _optimistic(row: CaseResult | None, obj: Objective) -> float:
    ends = objective_interval(row, obj) if row is not None else None
    return ends[0] if ends is not None else float("inf")


def successive_halving(
    cases: Sequence[C],
    measure: Callable[[list[C], float, bool], list[CaseResult]],
    objective: str,
    constraints: Constraints,
    first_budget_s: float,
    full_budget_s: float,
    eta: float = 3.0,
    energy_source: str | None = None,
) -> SearchResult:
    """Measure ``cases`` in rounds of growing budget (seconds per case), pruning hopeless ones.

    ``measure(cases, budget_s, screening)`` returns one row per case. Round 0, when shorter
    than the full budget, is a screening round (``screening=True``: timing only, no fidelity
    or memory). Every later round measures its cases one at a time, most promising first
    (optimistic objective of the last round), and prunes, before measuring it, a case that
    cannot beat the best case of this round that meets every constraint.

    Raises ConfigError for an unknown objective, no cases, non-positive budgets or eta <= 1.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    if not cases:
        raise ConfigError("search: no cases to measure")
    if not 0 < first_budget_s <= full_budget_s or eta <= 1:
        raise ConfigError(
            f"search: need 0 < first budget ({first_budget_s}) <= full budget "
            f"({full_budget_s}) and eta ({eta}) > 1"
        )
    obj = OBJECTIVES[objective]
    alive = list(cases)
    latest: dict[str, CaseResult] = {}
    rounds: list[Round] = []
    budget, planned = first_budget_s, 0.0

    def names() -> dict[str, str]:
        return dict(zip(latest, labels(list(latest.values())), strict=True))

    def measured(chosen: list[C], rows: list[CaseResult]) -> dict[str, CaseResult]:
        by_id = {r.case_id: r for r in rows}
        missing = [c.case_id for c in chosen if c.case_id not in by_id]
        if missing:
            raise ConfigError(f"search: measure returned no row for {', '.join(missing)}")
        latest.update(by_id)
        return by_id

    beaten_by: dict[str, str] = {}  # a case pruned on the objective -> the leader that beat it

    def walk(
        chosen: list[C], budget: float, leaders: Leaders
    ) -> tuple[dict[str, CaseResult], dict[str, str]]:
        """Measure ``chosen`` one at a time, most promising first; skip (prune) a case that
        cannot beat the leader so far."""
        by_id: dict[str, CaseResult] = {}
        skipped: dict[str, str] = {}
        for case in sorted(chosen, key=lambda k: _optimistic(latest.get(k.case_id), obj)):
            if beaten := _beaten(latest[case.case_id], leaders, obj, names()):
                skipped[case.case_id], beaten_by[case.case_id] = beaten
                continue
            row = measured([case], measure([case], budget, False))[case.case_id]
            by_id[case.case_id] = row
            _lead(leaders, row, obj, constraints)
        return by_id, skipped

    while True:
        final = budget >= full_budget_s
        skipped: dict[str, str] = {}
        if not rounds:
            screening = not final
            by_id = measured(alive, measure(alive, budget, screening))
        else:
            screening = False
            by_id, skipped = walk(alive, budget, {})
        planned += budget * len(by_id)
        rows = [by_id[c.case_id] for c in alive if c.case_id in by_id]
        why = {} if final else _prune(rows, obj, constraints, names(), screening, beaten_by)
        why.update(skipped)
        pruned = tuple(Pruned(k, len(rounds), w) for k, w in why.items())
        rounds.append(Round(len(rounds), budget, tuple(by_id), pruned))
        alive = [c for c in alive if c.case_id not in why]
        if final or not alive:
            break
        # one case left: no need for intermediate rounds, it only needs its full measurement
        budget = full_budget_s if len(alive) == 1 else min(full_budget_s, budget * eta)
    # A leader's full measurement may miss a constraint its shorter one met (a p99 upper
    # bound just over the bound): the cases it beat are measured in full after all.
    while revived := [c for c in cases if c.case_id in beaten_by
                      and violations(latest[beaten_by[c.case_id]], constraints)]:  # fmt: skip
        for c in revived:
            del beaten_by[c.case_id]
        again = {c.case_id for c in revived}
        rounds = [replace(r, pruned=tuple(p for p in r.pruned if p.case_id not in again))
                  for r in rounds]  # fmt: skip
        leaders: Leaders = {}
        for full_id in {k for r in rounds if r.budget_s >= full_budget_s for k in r.measured}:
            _lead(leaders, latest[full_id], obj, constraints)
        by_id, skipped = walk(revived, full_budget_s, leaders)
        planned += full_budget_s * len(by_id)
        pruned = tuple(Pruned(k, len(rounds), w) for k, w in skipped.items())
        rounds.append(Round(len(rounds), full_budget_s, tuple(by_id), pruned))
    return SearchResult(
        list(latest.values()),
        rounds,
        _recommendation(latest, rounds, objective, constraints, energy_source),
        planned,
        full_budget_s * len(cases),
    )


def _recommendation(
    latest: dict[str, CaseResult],
    rounds: list[Round],
    objective: str,
    constraints: Constraints,
    energy_source: str | None,
) -> Recommendation:
    """The recommendation over the fully measured cases; each pruned case is an excluded line
    saying in which round and why."""
    pruned = {p.case_id: p for r in rounds for p in r.pruned}
    names = dict(zip(latest, labels(list(latest.values())), strict=True))
    survivors = [r for k, r in latest.items() if k not in pruned]
    extra = [
        Verdict(latest[k], names[k], "excluded", False, f"pruned after round {p.round}: {p.why}")
        for k, p in pruned.items()
    ]
    if not survivors:
        return Recommendation(OBJECTIVES[objective], constraints, None, extra)
    rec = recommend(survivors, objective, constraints, energy_source)
    relabelled = [replace(v, label=names[v.row.case_id]) for v in rec.verdicts]
    return replace(rec, verdicts=relabelled + extra)
