"""The adaptive timing loop: warm up until steady, then sample until the p50 is known well enough.

The harness owns the clock. One timed iteration is ``backend.run()`` followed by
``backend.synchronize()``; a backend whose capabilities declare ``own_clock`` returns the elapsed
nanoseconds of its work from ``run()`` (CUDA events, simulated cycles) and that value is used
instead of the harness's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from harness.backend import Backend
from harness.measure.clock import Clock
from harness.measure.energy import EnergyProbe, EnergyReading
from harness.measure.stats import NS_PER_MS, p50_relative_ci_width

StopReason = Literal["ci", "budget", "max_samples"]


@dataclass(frozen=True)
class TimingPolicy:
    """When warm-up ends and when sampling stops. Times in seconds."""

    warmup_min_iters: int = 5
    warmup_window: int = 5
    warmup_tolerance: float = 0.05
    warmup_max_s: float = 10.0
    warmup_max_iters: int = 1000
    target_rel_ci: float = 0.02
    confidence: float = 0.95
    min_samples: int = 30
    max_samples: int = 100_000
    budget_s: float = 10.0


@dataclass
class TimingResult:
    """Raw samples of the measured phase plus what the warm-up did."""

    samples_ns: list[int] = field(default_factory=list)
    warmup_iters: int = 0
    warmup_s: float = 0.0
    steady: bool = False
    stop_reason: StopReason = "budget"
    rel_ci_width: float | None = None
    energy: EnergyReading | None = None


def time_once(backend: Backend, clock: Clock) -> int:
    """Nanoseconds of one ``run`` + ``synchronize``, from the backend's clock if it has one."""
    start = clock.now_ns()
    own = backend.run()
    backend.synchronize()
    end = clock.now_ns()
    if backend.capabilities.own_clock:
        if own is None:
            raise TypeError("a backend with own_clock must return elapsed ns from run()")
        return int(own)
    return end - start


def warm_up(backend: Backend, clock: Clock, policy: TimingPolicy, result: TimingResult) -> None:
    """Run until the median of the last window is within ``warmup_tolerance`` of the window
    before it (steady), or until the warm-up time or iteration bound is hit (not steady)."""
    start = clock.now_ns()
    durations: list[int] = []
    w = policy.warmup_window
    while True:
        durations.append(time_once(backend, clock))
        n = len(durations)
        if n >= max(policy.warmup_min_iters, 2 * w) and n % w == 0:
            last = float(np.median(durations[-w:]))
            prev = float(np.median(durations[-2 * w : -w]))
            if prev > 0 and abs(last - prev) / prev <= policy.warmup_tolerance:
                result.steady = True
                break
        if n >= policy.warmup_max_iters or clock.now_ns() - start >= policy.warmup_max_s * 1e9:
            break
    result.warmup_iters = len(durations)
    result.warmup_s = (clock.now_ns() - start) / 1e9
    # Run the statistics once here: their first call pays numpy's one-off set-up costs (ms),
    # which would otherwise land in the sampling phase and its energy window.
    p50_relative_ci_width(np.asarray(durations, dtype=np.float64), policy.confidence)


def sample(
    backend: Backend,
    clock: Clock,
    policy: TimingPolicy,
    result: TimingResult,
    probe: EnergyProbe | None = None,
) -> None:
    """Collect samples until the p50 interval is narrow enough, the budget ends, or the cap.
    ``probe`` (started here, stopped at the end) reads energy over the timed iterations only;
    the reading is ``result.energy``.

    The interval is re-checked at geometrically spaced counts so the check costs O(n log n)
    overall, and always outside the timed region.
    """
    start = clock.now_ns()
    readings: list[EnergyReading] = []
    if probe is not None:
        probe.start()
    try:
        _sample_loop(backend, clock, policy, result, probe, start, readings)
    finally:
        if probe is not None:
            readings.append(probe.stop())
            result.energy = combined(readings)
    result.rel_ci_width = p50_relative_ci_width(
        np.asarray(result.samples_ns, dtype=np.float64) / NS_PER_MS, policy.confidence
    )


def _sample_loop(
    backend: Backend,
    clock: Clock,
    policy: TimingPolicy,
    result: TimingResult,
    probe: EnergyProbe | None,
    start: int,
    readings: list[EnergyReading],
) -> None:
    samples = result.samples_ns
    next_check = policy.min_samples
    while True:
        samples.append(time_once(backend, clock))
        n = len(samples)
        if n >= next_check:
            if probe is not None:  # the energy window covers only the timed iterations
                readings.append(probe.stop())
            next_check = max(n + 10, int(n * 1.1))
            width = p50_relative_ci_width(
                np.asarray(samples, dtype=np.float64) / NS_PER_MS, policy.confidence
            )
            result.rel_ci_width = width
            if probe is not None:
                probe.start()
            if width is not None and width <= policy.target_rel_ci:
                result.stop_reason = "ci"
                return
        if n >= policy.max_samples:
            result.stop_reason = "max_samples"
            break
        if clock.now_ns() - start >= policy.budget_s * 1e9:
            result.stop_reason = "budget"
            break


def measure(
    backend: Backend, clock: Clock, policy: TimingPolicy, probe: EnergyProbe | None = None
) -> TimingResult:
    """Warm up, then sample with the energy probe (if any) running over the timed iterations
    only (it is paused around the interval checks). The first inference (cold start) is timed
    by the caller."""
    result = TimingResult()
    warm_up(backend, clock, policy, result)
    sample(backend, clock, policy, result, probe)
    return result


def combined(readings: list[EnergyReading]) -> EnergyReading | None:
    """Several readings of one probe as one: joules and seconds added."""
    if not readings:
        return None
    return replace(
        readings[0],
        joules=sum(r.joules for r in readings),
        seconds=sum(r.seconds for r in readings),
    )
