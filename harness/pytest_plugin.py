"""pytest plugin (entry point ``pytest11: infrabench``).

The ``infrabench_case`` fixture runs one case through infrabench's engine (artifact cache,
fresh worker, adaptive timing, fidelity, energy and cost) and reports it to pytest-benchmark:
its statistics come from our raw samples, our columns travel in ``extra_info`` (with the raw
samples as ``samples_ms``), and the hardware fingerprint goes into the machine info. Use it
instead of pytest-benchmark's ``benchmark`` fixture (one or the other per test)::

    def test_minilm(infrabench_case):
        row = infrabench_case("minilm-l6", "int8-dynamic", "onnxruntime", batch_size=1)
        assert row.fidelity_ok

Then ``pytest suites --benchmark-only --benchmark-json=out.json`` and
``infrabench import out.json`` puts the rows in the store.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from harness.environment import fingerprint, usable_cpus
from harness.measure.timing import TimingPolicy
from harness.optimize.artifacts import cache_root
from harness.plan import check_threads, plan
from harness.result import CaseResult
from harness.runner import CaseRunner, new_run_id
from harness.suite import parse_suite


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("infrabench")
    group.addoption("--infrabench-budget", type=float, default=5.0, metavar="SECONDS",
                    help="sampling budget per infrabench case (default 5)")  # fmt: skip


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record infrabench's hardware fingerprint with every pytest-benchmark result."""
    machine_info["infrabench"] = fingerprint()


class CaseBench:
    """Callable handed to a test: runs one case and feeds pytest-benchmark's fixture."""

    def __init__(self, benchmark: Any, nodeid: str, budget_s: float) -> None:
        self.benchmark = benchmark
        self.nodeid = nodeid
        self.budget_s = budget_s
        self.used = False

    def __call__(
        self,
        model: str,
        variant: str = "fp32",
        backend: str = "onnxruntime",
        batch_size: int = 1,
        seq_len: int | None = 128,
        threads: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> CaseResult:
        """Measure the case; skip the test with the reason if it cannot run here, fail it if
        the case failed. Returns the row (every infrabench column)."""
        if self.used:
            raise RuntimeError("infrabench_case can measure one case per test")
        self.used = True
        self.benchmark._mode = "infrabench_case"  # the benchmark fixture is used, through us
        suite = replace(
            parse_suite(
                {"name": "pytest", "models": [model], "variants": [variant],
                 "backends": [backend], "batch_sizes": [batch_size],
                 "seq_lens": [seq_len or 128], "threads": [threads or usable_cpus()],
                 "options": {backend: dict(options or {})}},
                self.nodeid,
            ),
            timing=TimingPolicy(budget_s=self.budget_s),
        )  # fmt: skip
        planned = plan(suite)
        check_threads(planned, usable_cpus())  # a row never claims CPUs the case did not have
        (case,) = planned.cases
        result, samples = CaseRunner(cache_root()).run_case(new_run_id(), case, planned.prices)
        if result.status == "skipped":
            self.benchmark.skipped = True
            pytest.skip(f"{case.case_id}: {result.reason}")
        if result.status == "failed":
            self.benchmark.has_error = True
            pytest.fail(f"{case.case_id}: {result.reason}")
        if self.benchmark.enabled:
            stats = self.benchmark._make_stats(1)  # one inference per round: our samples
            for ms in samples:
                stats.update(ms / 1000.0)
        self.benchmark.extra_info.update(
            {k: v for k, v in result.to_dict().items() if v is not None}
        )
        self.benchmark.extra_info["samples_ms"] = samples
        return result


@pytest.fixture
def infrabench_case(benchmark: Any, request: pytest.FixtureRequest) -> CaseBench:
    """Measure one infrabench case and report it through pytest-benchmark."""
    return CaseBench(benchmark, request.node.nodeid, request.config.getoption("infrabench_budget"))
