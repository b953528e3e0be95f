"""The server scenario's figure of merit: the highest Poisson QPS whose p99 meets the bound.

:func:`max_qps` is a pure search over a ``probe(qps) -> Probe`` (one LoadGen server run at that
target QPS) and a clock, so it can be tested with a scripted probe and a fake clock. It grows
the target by ``growth`` from the calibrated start while probes pass (halves it while none has
passed), then bisects between the highest passing and the lowest failing target until they are
within ``precision`` (relative) or the time budget is spent. A probe passes when its p99 is
within the bound and no request failed (LoadGen's ``result_perf_constraints_met`` is the same
p99 test). Every probe is kept, for the report's latency-vs-load chart.
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
            qps = max(qps / 2, floor_qps)
            continue
        if fail_qps - best.target_qps <= precision * best.target_qps:
            return SearchResult(best, tuple(probes), "converged")
        qps = (best.target_qps + fail_qps) / 2


def retry_qps(
    qps: float,
    p99_ms: float | None,
    service_ms: float | None,
    busy: float | None,
    bound_ms: float,
    aim: float = 0.9,
    least: float = 0.5,
    most: float = 0.9,
) -> float | None:
    """The next target (QPS) after a server run at ``qps`` missed the p99 bound.

    The run's p99 less its median service time ``service_ms`` is taken as queueing delay,
    which in heavy traffic grows as rho / (1 - rho) at utilization rho (Kingman's formula: J. F.
    C. Kingman, "The single server queue in heavy traffic", Proc. Cambridge Phil. Soc. 57, 1961;
    the delay's percentiles scale with its mean when its distribution keeps its shape). Fitted
    to the missed run (``busy`` = its utilization), it gives the utilization whose p99 is
    ``aim`` x ``bound_ms``, and the target scales with it, within ``least``..``most`` x
    ``qps``. Without a usable fit (no p99, service time or utilization) the step is ``most``.
    None when the service time alone leaves no room under the aim: no lower rate can pass.
    """
    room = aim * bound_ms - (service_ms or 0.0)
    if room <= 0:
        return None
    if p99_ms is None or service_ms is None or busy is None or not 0.0 < busy < 1.0:
        return qps * most
    delay = p99_ms - service_ms
    if delay <= room:  # missed by noise at the margin: the least step
        return qps * most
    scale = delay * (1.0 - busy) / busy
    wanted = room / (room + scale)  # solves scale * r / (1 - r) = room
    return qps * min(most, max(least, wanted / busy))
