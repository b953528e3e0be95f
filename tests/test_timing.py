"""The timing loop, driven by the fake backend and fake clock: exact, and with no sleeps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from backends.fake import FakeBackend, FakeClock
from harness.measure.timing import TimingPolicy, TimingResult, measure, sample, time_once, warm_up

MS = 1_000_000
Factory = Callable[[Callable[[int], int]], FakeBackend]


def test_time_once_uses_the_harness_clock(fake_backend: Factory) -> None:
    backend = fake_backend(lambda i: 3 * MS)
    assert time_once(backend, backend.clock) == 3 * MS  # type: ignore[arg-type]


def test_warm_up_runs_until_steady(fake_backend: Factory, fake_clock: FakeClock) -> None:
    # Cold caches: latency decays from 10 ms towards 1 ms by 30% per run.
    backend = fake_backend(lambda i: int(MS * (1 + 9 * 0.7**i)))
    result = TimingResult()
    warm_up(backend, fake_clock, TimingPolicy(warmup_window=5, warmup_tolerance=0.05), result)
    assert result.steady
    # Window medians (runs 2, 7, 12, ...) first differ by <= 5% between runs 15-19 and 20-24
    # (9.2% between 10-14 and 15-19 is not yet steady).
    assert result.warmup_iters == 25
    assert result.warmup_s == pytest.approx(
        sum(int(MS * (1 + 9 * 0.7**i)) for i in range(25)) / 1e9
    )


def test_warm_up_is_bounded_when_never_steady(fake_backend: Factory, fake_clock: FakeClock) -> None:
    # Latency keeps drifting upwards by 20% per window: never steady.
    backend = fake_backend(lambda i: int(MS * 1.2 ** (i // 5)))
    result = TimingResult()
    policy = TimingPolicy(warmup_max_iters=40, warmup_max_s=100.0)
    warm_up(backend, fake_clock, policy, result)
    assert not result.steady
    assert result.warmup_iters == 40


def test_sampling_stops_when_p50_ci_is_narrow(fake_backend: Factory, fake_clock: FakeClock) -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(1.0, 0.01, 10_000)
    backend = fake_backend(lambda i: int(MS * noise[i]))
    result = TimingResult()
    sample(backend, fake_clock, TimingPolicy(min_samples=30, target_rel_ci=0.02), result)
    assert result.stop_reason == "ci"
    assert len(result.samples_ns) == 30
    assert result.rel_ci_width is not None and result.rel_ci_width <= 0.02


def test_sampling_stops_on_budget_with_noisy_timing(
    fake_backend: Factory, fake_clock: FakeClock
) -> None:
    rng = np.random.default_rng(2)
    noise = rng.lognormal(0.0, 1.0, 10_000)
    backend = fake_backend(lambda i: int(10 * MS * noise[i]))
    result = TimingResult()
    policy = TimingPolicy(min_samples=10, target_rel_ci=0.001, budget_s=1.0)
    sample(backend, fake_clock, policy, result)
    assert result.stop_reason == "budget"
    assert sum(result.samples_ns[:-1]) < 1e9 <= sum(result.samples_ns)


def test_sampling_respects_max_samples(fake_backend: Factory, fake_clock: FakeClock) -> None:
    rng = np.random.default_rng(3)
    noise = rng.lognormal(0.0, 1.0, 10_000)
    backend = fake_backend(lambda i: int(MS * noise[i]))
    result = TimingResult()
    sample(backend, fake_clock, TimingPolicy(target_rel_ci=1e-6, max_samples=77), result)
    assert result.stop_reason == "max_samples"
    assert len(result.samples_ns) == 77


def test_measure_keeps_warm_up_out_of_the_samples(
    fake_backend: Factory, fake_clock: FakeClock
) -> None:
    backend = fake_backend(lambda i: 50 * MS if i < 10 else 2 * MS)  # slow, then a step down
    result = measure(backend, fake_clock, TimingPolicy(min_samples=30))
    assert result.steady
    assert set(result.samples_ns) == {2 * MS}
    assert backend.calls == result.warmup_iters + len(result.samples_ns)


class _OwnClockBackend(FakeBackend):
    """A backend with a better clock: reports 1 ms of device time whatever the host saw."""

    capabilities = FakeBackend.capabilities.__class__(consumes="onnx", own_clock=True)

    def run(self) -> int | None:
        super().run()
        return MS


def test_own_clock_backends_report_their_elapsed_time(fake_clock: FakeClock) -> None:
    backend = _OwnClockBackend(clock=fake_clock, durations=lambda i: 7 * MS)
    assert time_once(backend, fake_clock) == MS
