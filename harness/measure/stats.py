"""Statistics derived from raw latency samples.

Quantile confidence intervals are distribution-free: the interval between two order statistics
whose ranks come from the binomial distribution of "samples below the true quantile". Latency
distributions are skewed and multi-modal, so no normality is assumed. When there are too few
samples for an interval at the requested confidence (p99 needs 367 samples at 95%), the quantile
is reported as insufficient (``None``) instead of an invented number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.errors import MeasurementError

NS_PER_MS = 1_000_000


def samples_to_ms(samples_ns: list[int] | np.ndarray) -> np.ndarray:
    """Normalise raw clock ticks to milliseconds; refuses empty, zero or negative durations."""
    values = np.asarray(samples_ns, dtype=np.float64)
    if values.size == 0:
        raise MeasurementError("no latency samples were recorded")
    if np.any(values <= 0):
        raise MeasurementError(
            f"{int(np.sum(values <= 0))} latency samples were zero or negative: "
            "the clock is too coarse for this work or the backend's own clock is wrong"
        )
    return values / NS_PER_MS


def _binomial_cdf(n: int, p: float) -> np.ndarray:
    """P(B <= k) for k = 0..n, B ~ Binomial(n, p), computed in log space."""
    k = np.arange(n + 1, dtype=np.float64)
    log_choose = (
        math.lgamma(n + 1)
        - np.array([math.lgamma(x + 1) for x in k])
        - np.array([math.lgamma(n - x + 1) for x in k])
    )
    log_pmf = log_choose + k * math.log(p) + (n - k) * math.log1p(-p)
    return np.minimum(np.cumsum(np.exp(log_pmf - log_pmf.max())) * math.exp(log_pmf.max()), 1.0)


def quantile_ci_ranks(n: int, q: float, confidence: float) -> tuple[int, int] | None:
    """1-based ranks (lo, hi) so that [x_(lo), x_(hi)] covers the q-quantile with at least
    ``confidence`` probability; ``None`` when n samples cannot give such an interval."""
    if not 0.0 < q < 1.0 or not 0.0 < confidence < 1.0:
        raise ValueError(f"q and confidence must lie in (0, 1), got {q} and {confidence}")
    if n < 2:
        return None
    alpha = 1.0 - confidence
    cdf = _binomial_cdf(n, q)
    below = np.nonzero(cdf <= alpha / 2)[0]
    above = np.nonzero(cdf >= 1.0 - alpha / 2)[0]
    if below.size == 0 or above.size == 0:
        return None
    lo, hi = int(below[-1]) + 1, int(above[0]) + 1
    if hi > n:
        return None
    return lo, hi


def min_samples_for(q: float, confidence: float) -> int:
    """The smallest n for which ``quantile_ci_ranks`` gives an interval."""
    n = 2
    while quantile_ci_ranks(n, q, confidence) is None:
        n = n * 2 if n < 64 else n + max(1, n // 16)
    while n > 2 and quantile_ci_ranks(n - 1, q, confidence) is not None:
        n -= 1
    return n


@dataclass(frozen=True)
class Quantile:
    """A quantile estimate with its confidence interval; all ``None`` when insufficient."""

    q: float
    value: float | None
    ci_low: float | None
    ci_high: float | None


def quantile(sorted_ms: np.ndarray, q: float, confidence: float) -> Quantile:
    """The q-quantile of sorted samples, or an insufficient Quantile if n is too small. The
    median of a few samples (a slow backend within its budget) is still reported, without an
    interval; tail quantiles are not invented."""
    ranks = quantile_ci_ranks(sorted_ms.size, q, confidence)
    if ranks is None:
        median = float(np.median(sorted_ms)) if q == 0.5 and sorted_ms.size else None
        return Quantile(q, median, None, None)
    lo, hi = ranks
    value = float(np.quantile(sorted_ms, q))
    return Quantile(q, value, float(sorted_ms[lo - 1]), float(sorted_ms[hi - 1]))


def p50_relative_ci_width(samples_ms: np.ndarray, confidence: float) -> float | None:
    """(ci_high - ci_low) / p50, the stopping criterion of the sampling loop."""
    med = quantile(np.sort(samples_ms), 0.5, confidence)
    if med.value is None or med.ci_low is None or med.ci_high is None or med.value <= 0:
        return None
    return (med.ci_high - med.ci_low) / med.value


@dataclass(frozen=True)
class LatencyStats:
    """Everything reported about a sample set; throughput is derived from latency."""

    n: int
    mean_ms: float
    std_ms: float
    cv: float
    p50: Quantile
    p90: Quantile
    p99: Quantile
    throughput_per_s: float

    @classmethod
    def from_samples(
        cls, samples_ms: np.ndarray, batch_size: int, confidence: float = 0.95
    ) -> LatencyStats:
        """Single-stream statistics: one sample = one batch; throughput = items per second."""
        if samples_ms.size == 0:
            raise MeasurementError("no latency samples were recorded")
        ordered = np.sort(samples_ms)
        mean = float(ordered.mean())
        std = float(ordered.std(ddof=1)) if ordered.size > 1 else 0.0
        return cls(
            n=int(ordered.size),
            mean_ms=mean,
            std_ms=std,
            cv=std / mean,
            p50=quantile(ordered, 0.50, confidence),
            p90=quantile(ordered, 0.90, confidence),
            p99=quantile(ordered, 0.99, confidence),
            throughput_per_s=batch_size * 1000.0 / mean,
        )
