"""The server scenario's figure of merit: the highest Poisson QPS whose p99 meets the bound.

:func:`max_qps` is a pure search over a ``probe(qps) -> Probe`` (one LoadGen server run at that
target QPS) and a clock, so it can be tested with a scripted probe and a fake clock. It grows
the target by ``growth`` from the calibrated start while probes pass (while none has passed,
halves it, or drops it to the rate a failed probe completed if that is lower), then bisects
between the highest passing and the lowest failing target until they are within
``precision`` (relative) or the time budget is spent. A probe passes when its p99 is within
the bound, no request failed (LoadGen's ``result_perf_constraints_met`` is the same p99 test)
and the server kept up with the rate. Every probe is kept, for the report's latency-vs-load
chart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.measure.clock import Clock


@dataclass(frozen=True)
class Probe:
    """One server run: the target QPS asked, the QPS achieved, its p50/p99 (ms), whether it met
    the bound, and its failed-request share."""

    target_qps: float
    achieved_qps: float | None
    p50_ms: float | None
    p99_ms: float | None
    passed: bool
    error_rate: float = 0.0


@dataclass(frozen=True)
class SearchResult:
    """``best``: the highest passing probe (None: even the lowest target failed); ``probes`` in
    the order run; ``stop_reason``: ``converged``, ``budget`` or ``floor``."""

    best: Probe | None
    probes: tuple[Probe, ...]
    stop_reason: str


def max_qps(
    probe: Callable[[float], Probe],
    start_qps: float,
    clock: Clock,
    budget_s: float,
    precision: float = 0.05,
    growth: float = 1.5,
    floor_qps: float = 0.5,
) -> SearchResult:
    """Search the highest passing target QPS (see module docstring). The budget is checked
    before each probe, so the search ends within one probe's duration past ``budget_s``."""
    end = clock.now_ns() + int(budget_s * 1e9)
    probes: list[Probe] = []
    best: Probe | None = None
    fail_qps: float | None = None
    qps = max(start_qps, floor_qps)
    while True:
        if probes and clock.now_ns() >= end:
            return SearchResult(best, tuple(probes), "budget")
        result = probe(qps)
        probes.append(result)
        if result.passed:
            best = result if best is None or qps > best.target_qps else best
        else:
            fail_qps = qps if fail_qps is None else min(fail_qps, qps)
        if fail_qps is None:
            qps *= growth
            continue
        if best is None:
            if qps <= floor_qps:
                return SearchResult(None, tuple(probes), "floor")
            # an overloaded server completed at about its capacity: no higher rate can pass
            served = result.achieved_qps or qps
            qps = max(min(qps / 2, served), floor_qps)
            continue
        if fail_qps - best.target_qps <= precision * best.target_qps:
            return SearchResult(best, tuple(probes), "converged")
        qps = (best.target_qps + fail_qps) / 2


# A full-mode retry aims its p99 at RETRY_AIM x the bound (a 600 s run's p99 still varies), and
# steps to between RETRY_LEAST and RETRY_MOST times the missed rate.
RETRY_AIM = 0.9
RETRY_LEAST = 0.5
RETRY_MOST = 0.9
OVERLOADED = 0.99  # a run this busy had a growing queue: its p99 says nothing of a lower rate


def retry_qps(
    qps: float,
    p99_ms: float | None,
    service_ms: float | None,
    busy: float | None,
    bound_ms: float,
    batching: bool = False,
) -> float | None:
    """The next target (QPS) after a server run at ``qps`` missed its p99 bound ``bound_ms``.

    A heuristic fitted to the missed run: its p99 is taken as the median service time
    ``service_ms`` plus a spread that grows as 1 / (1 - rho) with the utilization rho
    (``busy``), the growth of a single-server queue's latency percentiles (exact for M/M/1,
    whose sojourn time's p-quantile is ln(1 / (1 - p)) E[S] / (1 - rho); Kingman's
    heavy-traffic formula gives the same pole for G/G/1: J. F. C. Kingman, "The single server
    queue in heavy traffic", Proc. Cambridge Phil. Soc. 57, 1961). The retry takes the
    utilization at which that p99 is ``RETRY_AIM`` x the bound, and scales the rate with it,
    within ``RETRY_LEAST``..``RETRY_MOST`` x ``qps``.

    The least step when the run was overloaded (``busy`` >= ``OVERLOADED``) or when even an
    idle server's p99 would miss the aim; the most step when there is nothing to fit (no p99,
    service time or utilization, a batcher, whose queue delay does not shrink with the rate)
    or the run failed on errors, not latency. None when the service time alone is over the aim:
    no lower rate can pass.
    """
    aim = RETRY_AIM * bound_ms
    if service_ms is not None and service_ms >= aim:
        return None
    if busy is not None and busy >= OVERLOADED:
        return qps * RETRY_LEAST
    if p99_ms is None or service_ms is None or not busy or batching or p99_ms <= aim:
        return qps * RETRY_MOST
    spread = (p99_ms - service_ms) * (1.0 - busy)  # p99 = service + spread / (1 - rho)
    wanted = 1.0 - spread / (aim - service_ms)  # the rho at which p99 = aim
    return qps * min(RETRY_MOST, max(RETRY_LEAST, wanted / busy))
