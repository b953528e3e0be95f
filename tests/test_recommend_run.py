"""recommend --run: the search measures through the runner, each round a stored run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from harness.measure.timing import TimingPolicy
from harness.optimize.artifacts import cache_root
from harness.plan import plan
from harness.recommend import Constraints
from harness.recommend_run import search_suite, with_budget
from harness.runner import Runner
from harness.store import Store
from harness.suite import load_suite
from tests.fakes import FixedWatch, ScriptedLauncher

SUITE = """
    name = "search"
    models = ["tiny-mlp"]
    backends = ["fake"]
    batch_sizes = [1, 4, 16]
    threads = [1]
    [measure]
    budget_s = 0.9
    min_samples = 400
    [options.fake]
    latency_ms = 1.0
"""


def test_the_search_prunes_hopeless_cases_and_keeps_every_round(
    write_suite: Callable[..., Path], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.execute

    policies: list[TimingPolicy] = []
    timed = harness.execute.measure

    def recording(backend: object, clock: object, policy: TimingPolicy, *rest: object) -> object:
        policies.append(policy)
        return timed(backend, clock, policy, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(harness.execute, "measure", recording)
    planned = plan(load_suite(write_suite(SUITE)))
    runner = Runner(store, cache_root(), ScriptedLauncher(), watch=FixedWatch())
    result, run_ids = search_suite(planned, runner, "throughput", Constraints(max_p99_ms=5), 0.1)
    # every round warms up as the full measurement does (min(warm-up bound, the suite's 0.9 s)),
    # not for at most its own shorter budget
    assert {(round(p.budget_s, 6), p.warmup_max_s) for p in policies} == {
        (0.1, 0.9),
        (0.3, 0.9),
        (0.9, 0.9),
    }
    assert result.recommendation.winner is not None
    assert result.recommendation.winner.row.batch_size == 16
    # round 1 measures b16 first (the best at its optimistic end) and skips b1 and b4
    assert [len(r.measured) for r in result.rounds] == [3, 1, 1]
    assert {(p.case_id.split("/")[3], p.round) for p in result.pruned} == {("b1", 1), ("b4", 1)}
    assert [store.run(r)["suite"] for r in run_ids] == [
        "search (screening, 0.1 s)", "search (search, 0.3 s)", "search (search, 0.9 s)"
    ]  # fmt: skip
    assert [len(store.cases(r)) for r in run_ids] == [3, 1, 1]
    screened = store.cases(run_ids[0])
    assert all(r.fidelity is None and r.peak_rss_mb is None for r in screened)
    short = with_budget(planned.cases[0], 0.1, screening=True).settings
    assert short.timing.budget_s == 0.1 and short.keep_warmup and short.screening
    few = replace(planned.cases[0].settings.timing, min_samples=30)
    case = replace(planned.cases[0], settings=replace(planned.cases[0].settings, timing=few))
    assert with_budget(case, 0.3, for_p99=True).settings.timing.min_samples == 368
    assert with_budget(case, 0.3).settings.timing.min_samples == 30


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--run", "quick", "--what-if"], "--html and --what-if read stored runs"),
     (["--first-budget", "1"], "--first-budget applies to a --run SUITE search"),
     (["--run", "quick", "--first-budget", "99"],
      "--first-budget 99 s is above the suite's budget_s")],
)  # fmt: skip
def test_search_only_flags_and_stored_run_flags_are_not_mixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    store = tmp_path / "s.duckdb"
    assert main(["recommend", "--objective", "cost", "--store", str(store), *flags]) == 2
    assert message in capsys.readouterr().err and not store.exists()
