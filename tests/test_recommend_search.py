"""Successive halving with a fake measure: rounds, budgets, the pruning rule, the same pick."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.recommend import Constraints, recommend, violations
from harness.recommend_search import hopeless, successive_halving
from harness.result import CaseResult


@dataclass(frozen=True)
class FakeCase:
    case_id: str


# name -> (cost USD/M at p50, p50 ms, fidelity ratio, status)
TRUTH: dict[str, tuple[float, float, float, str]] = {
    "a": (1.0, 2.0, 1.0, "ok"),  # cheapest that surely meets the bound early on
    "b": (1.1, 2.2, 1.0, "ok"),  # close to a: survives until the full measurement
    "c": (3.0, 1.0, 1.0, "ok"),  # hopelessly costly
    "d": (0.2, 1.0, 0.9, "ok"),  # fidelity too low
    "e": (0.3, 20.0, 1.0, "ok"),  # p99 certainly over the bound
    "f": (0.1, 1.0, 1.0, "failed"),
    "g": (0.5, 8.0, 1.0, "ok"),  # p99 near the bound: only a long measurement shows it meets it
}


def fake_row(name: str, budget_s: float, screening: bool = False) -> CaseResult:
    """Intervals of relative half-width 0.2 / budget around the truth (p99 = 1.2 x p50); a
    screening round's row has no fidelity."""
    cost, p50, fidelity, status = TRUTH[name]
    rel = 0.2 / budget_s
    p99 = 1.2 * p50
    values: dict[str, Any] = {"run_id": "r", "case_id": name, "model": "m", "variant": name,
                              "backend": "onnxruntime", "shape": "b1", "threads": 2,
                              "status": status, "energy_source": "measured"}  # fmt: skip
    if status == "ok":
        values.update(
            latency_ms_p50=p50, latency_ms_p50_ci_low=p50 * (1 - rel),
            latency_ms_p50_ci_high=p50 * (1 + rel), latency_ms_p99=p99,
            latency_ms_p99_ci_low=p99 * (1 - rel), latency_ms_p99_ci_high=p99 * (1 + rel),
            cost_usd_per_million=cost, fidelity_ratio=None if screening else fidelity,
        )  # fmt: skip
    else:
        values["reason"] = "worker crashed"
    return CaseResult(**values)


def test_hopeless_cases_are_pruned_and_the_pick_matches_the_full_grid() -> None:
    calls: list[tuple[list[str], float, bool]] = []

    def measure(cases: list[FakeCase], budget_s: float, screening: bool) -> list[CaseResult]:
        calls.append(([c.case_id for c in cases], budget_s, screening))
        return [fake_row(c.case_id, budget_s, screening) for c in cases]

    bound = Constraints(max_p99_ms=10.0, min_fidelity=0.99)
    result = successive_halving([FakeCase(n) for n in TRUTH], measure, "cost", bound, 1.0, 9.0)
    # round 0 screens every case (no fidelity yet); later rounds measure one case at a time,
    # cheapest at its optimistic end first, and skip a case that cannot beat the round's leader
    assert calls == [
        (list(TRUTH), 1.0, True),
        (["d"], 3.0, False), (["g"], 3.0, False), (["a"], 3.0, False), (["b"], 3.0, False),
        (["g"], 9.0, False),
    ]  # fmt: skip
    assert [(p.case_id, p.round, p.why) for p in result.pruned] == [
        ("e", 0, "p99 lower bound 19.2 > 10 ms"),
        ("f", 0, "failed: worker crashed"),
        ("d", 1, "fidelity 0.9 < 0.99"),
        ("c", 1, "cannot beat a/onnxruntime/b1/t2: cost 2.4 USD/M at best vs 1.067 at worst"),
        ("a", 2, "cannot beat g/onnxruntime/b1/t2: cost 0.9333 USD/M at best vs 0.5111 at worst"),
        ("b", 2, "cannot beat g/onnxruntime/b1/t2: cost 1.027 USD/M at best vs 0.5111 at worst"),
    ]
    assert (result.planned_s, result.full_grid_s) == (7 * 1 + 4 * 3 + 1 * 9, 63.0)
    rec = result.recommendation
    full = recommend([fake_row(n, 9.0) for n in TRUTH], "cost", bound)
    assert rec.winner is not None and full.winner is not None
    assert rec.winner.row.case_id == full.winner.row.case_id == "g"
    assert [v.why for v in rec.verdicts][-6:] == [
        f"pruned after round {p.round}: {p.why}" for p in result.pruned
    ]


def test_a_screening_row_is_never_pruned_for_what_it_did_not_measure() -> None:
    row = fake_row("a", 1.0, screening=True)
    bound = Constraints(min_fidelity=0.99, max_memory_mb=100.0)
    assert hopeless(row, bound, screening=True) is None
    assert hopeless(row, bound) == "fidelity not scored; memory not measured"
    row.details = '{"screening": "a short round of recommend --run"}'
    assert violations(row, Constraints()) == [
        "a search's screening row: timed only (no fidelity or memory)"
    ]  # never recommended from a stored run, whatever the constraints
    assert hopeless(row, bound, screening=True) is None


def test_a_lone_survivor_goes_straight_to_its_full_measurement() -> None:
    budgets: list[float] = []

    def measure(cases: list[FakeCase], budget_s: float, screening: bool) -> list[CaseResult]:
        budgets.append(budget_s)
        return [fake_row(c.case_id, budget_s, screening) for c in cases]

    result = successive_halving([FakeCase("a"), FakeCase("c")], measure, "cost", Constraints(),
                                0.5, 40.0, eta=2)  # fmt: skip
    # the screening round prunes nothing on cost (no fidelity yet); round 1 measures a, skips c
    assert budgets == [0.5, 1.0, 40.0]
    assert [r.measured for r in result.rounds] == [("a", "c"), ("a",), ("a",)]


def test_throughput_prunes_on_the_inverted_interval() -> None:
    def measure(cases: list[FakeCase], budget_s: float, screening: bool) -> list[CaseResult]:
        rows = [fake_row(c.case_id, budget_s, screening) for c in cases]
        for r in rows:
            r.throughput_per_s = 1000.0 / (r.latency_ms_p50 or 1.0)
        return rows

    result = successive_halving([FakeCase("a"), FakeCase("e")], measure, "throughput",
                                Constraints(), 1.0, 1.0)  # fmt: skip
    assert result.pruned == []  # one round at the full budget: nothing left to prune
    staged = successive_halving([FakeCase("a"), FakeCase("e")], measure, "throughput",
                                Constraints(), 1.0, 3.0)  # fmt: skip
    assert [p.why for p in staged.pruned] == [
        "cannot beat a/onnxruntime/b1/t2: throughput 62.5 /s at best vs 468.8 at worst"
    ]
    assert staged.pruned[0].round == 1


def test_bad_search_settings_are_config_errors() -> None:
    def measure(cases: list[FakeCase], budget_s: float, screening: bool) -> list[CaseResult]:
        return []

    with pytest.raises(ConfigError, match="eta"):
        successive_halving([FakeCase("a")], measure, "cost", Constraints(), 2.0, 1.0)
    with pytest.raises(ConfigError, match="no cases"):
        successive_halving([], measure, "cost", Constraints(), 1.0, 2.0)
    with pytest.raises(ConfigError, match="measure returned no row for a"):
        successive_halving([FakeCase("a")], measure, "cost", Constraints(), 1.0, 2.0)


def test_when_every_case_is_pruned_there_is_no_winner_and_each_says_why() -> None:
    def measure(cases: list[FakeCase], budget_s: float, screening: bool) -> list[CaseResult]:
        return [fake_row(c.case_id, budget_s, screening) for c in cases]

    bound = Constraints(max_p99_ms=1.0)
    result = successive_halving([FakeCase("e"), FakeCase("f")], measure, "cost", bound, 1.0, 9.0)
    assert result.recommendation.winner is None and len(result.rounds) == 1
    assert [v.why for v in result.recommendation.verdicts] == [
        "pruned after round 0: p99 lower bound 19.2 > 1 ms",
        "pruned after round 0: failed: worker crashed",
    ]


@pytest.mark.parametrize("spoiled", ["noisy", "unsteady warm-up", "no interval"])
def test_a_row_whose_interval_cannot_say_is_timed_again_rather_than_pruned(spoiled: str) -> None:
    """Round 0 timed c at 3x its quiet cost while other work ran (flagged noisy), before its
    warm-up settled, or without an interval: it cannot be ruled out, so it survives to the next
    round, where it wins."""
    truth = {"a": 1.0, "c": 0.8}

    def measure(cases: list[FakeCase], budget_s: float, screening: bool) -> list[CaseResult]:
        rows = []
        for case in cases:
            TRUTH[case.case_id] = (truth[case.case_id], 2.0, 1.0, "ok")
            row = fake_row(case.case_id, budget_s, screening)
            if case.case_id == "c" and budget_s == 1.0:
                row.cost_usd_per_million = 2.4
                if spoiled == "noisy":
                    row.noise = (
                        "p50 interval 9.0% wide, target 2%: the median did not settle; "
                        "load average 4.2 on 2 CPUs"
                    )
                elif spoiled == "unsteady warm-up":
                    row.warmup_steady = False
                else:
                    row.latency_ms_p50_ci_low = row.latency_ms_p50_ci_high = None
            rows.append(row)
        return rows

    saved = dict(TRUTH)
    try:
        result = successive_halving([FakeCase("a"), FakeCase("c")], measure, "cost",
                                    Constraints(min_fidelity=0.99), 1.0, 9.0)  # fmt: skip
    finally:
        TRUTH.clear()
        TRUTH.update(saved)
    assert result.pruned == [] or all(p.case_id != "c" for p in result.pruned)
    assert result.recommendation.winner is not None
    assert result.recommendation.winner.row.case_id == "c"


def test_only_the_machine_flags_keep_a_row_from_being_pruned() -> None:
    from harness.measure.noise import machine_flags_of

    text = ("other processes used 1.2 cores (python 1.0); cv 0.37 above 0.10: samples vary "
            "widely; p50 interval 7.8% wide, target 2%: the median did not settle")  # fmt: skip
    assert machine_flags_of(text) == ["other processes used 1.2 cores (python 1.0)"]
    assert machine_flags_of("cv 0.37 above 0.10: samples vary widely") == []
    assert machine_flags_of(None) == []


def test_cases_a_leader_beat_are_measured_in_full_when_its_full_measurement_misses() -> None:
    """a leads round 1 (its p99 meets the bound) and b is pruned as unable to beat it; a's
    full measurement then misses the bound (a noisy tail), so b is measured in full after all,
    and wins."""
    calls: list[tuple[list[str], float]] = []

    def measure(cases: list[FakeCase], budget_s: float, screening: bool) -> list[CaseResult]:
        calls.append(([c.case_id for c in cases], budget_s))
        rows = [fake_row(c.case_id, budget_s, screening) for c in cases]
        for row in rows:
            if row.case_id == "b":
                row.cost_usd_per_million = 1.5
            if row.case_id == "a" and budget_s == 9.0:
                row.latency_ms_p99_ci_high = 20.0
        return rows

    bound = Constraints(max_p99_ms=10.0)
    result = successive_halving([FakeCase("a"), FakeCase("b")], measure, "cost", bound, 1.0, 9.0)
    assert calls == [(["a", "b"], 1.0), (["a"], 3.0), (["a"], 9.0), (["b"], 9.0)]
    assert [(r.index, r.budget_s, r.measured) for r in result.rounds][-1] == (3, 9.0, ("b",))
    assert result.pruned == []  # b's pruning by a was undone
    assert result.recommendation.winner is not None
    assert result.recommendation.winner.row.case_id == "b"
