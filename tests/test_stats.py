from __future__ import annotations

import numpy as np
import pytest

from harness.errors import MeasurementError
from harness.measure.stats import (
    LatencyStats,
    min_samples_for,
    quantile,
    quantile_ci_ranks,
    samples_to_ms,
)


def test_samples_are_normalised_to_ms_and_zero_is_refused() -> None:
    assert samples_to_ms([1_000_000, 2_500_000]).tolist() == [1.0, 2.5]
    with pytest.raises(MeasurementError, match="zero or negative"):
        samples_to_ms([1_000_000, 0])
    with pytest.raises(MeasurementError, match="no latency samples"):
        samples_to_ms([])


def test_median_ci_ranks_match_the_binomial_table() -> None:
    # Classic distribution-free 95% interval for the median of 100 samples: ranks 40 and 61.
    assert quantile_ci_ranks(100, 0.5, 0.95) == (40, 61)
    # Too few samples for any 95% interval of the median.
    assert quantile_ci_ranks(5, 0.5, 0.95) is None
    assert quantile_ci_ranks(6, 0.5, 0.95) == (1, 6)


def test_p99_needs_enough_samples() -> None:
    n = min_samples_for(0.99, 0.95)
    assert quantile_ci_ranks(n, 0.99, 0.95) is not None
    assert quantile_ci_ranks(n - 1, 0.99, 0.95) is None
    # 1 - 0.99**n >= 0.975 is the analytic bound for the upper rank to exist.
    assert 1 - 0.99**n >= 0.975 > 1 - 0.99 ** (n - 2)


def test_ci_coverage_is_at_least_nominal_on_seeded_data() -> None:
    rng = np.random.default_rng(7)
    true_median = np.exp(0.0)  # lognormal(0, 0.5) has median 1
    hits = 0
    trials = 400
    for _ in range(trials):
        q = quantile(np.sort(rng.lognormal(0.0, 0.5, 200)), 0.5, 0.95)
        assert q.ci_low is not None and q.ci_high is not None
        hits += q.ci_low <= true_median <= q.ci_high
    assert hits / trials >= 0.93


def test_insufficient_p99_is_none_not_invented() -> None:
    stats = LatencyStats.from_samples(np.linspace(1.0, 2.0, 50), batch_size=1)
    assert stats.p99.value is None and stats.p99.ci_low is None and stats.p99.ci_high is None
    assert stats.p50.value == pytest.approx(1.5)


def test_throughput_is_items_per_second_from_mean_latency() -> None:
    stats = LatencyStats.from_samples(np.array([2.0, 4.0, 6.0]), batch_size=8)
    assert stats.mean_ms == 4.0
    assert stats.throughput_per_s == pytest.approx(8 * 1000 / 4.0)
    assert stats.cv == pytest.approx(2.0 / 4.0)


def test_a_few_samples_still_give_a_median_without_an_interval() -> None:
    stats = LatencyStats.from_samples(np.array([2400.0, 2350.0, 2380.0, 2410.0]), 1, 0.95)
    assert stats.p50.value == pytest.approx(2390.0)
    assert stats.p50.ci_low is None and stats.p50.ci_high is None
    assert stats.p90.value is None and stats.p99.value is None
