"""LLM serving load: when requests arrive and how long their prompts and outputs are.

A request generator in the style of vLLM's ``benchmark_serving`` (``get_request`` and its
``RandomDataset``), as a plain list of :class:`PlannedRequest` made from a seeded numpy
generator, so the same seed gives the same load on every machine:

* Inter-arrival gaps are gamma-distributed with shape ``burstiness`` and mean ``1 / rate``
  (scale ``1 / (rate * burstiness)``, vLLM's parametrisation). ``burstiness = 1`` is the
  exponential distribution, i.e. a Poisson process; below 1 arrivals are burstier (the gaps'
  coefficient of variation is ``1 / sqrt(burstiness)``), above 1 more regular. The first
  request arrives at 0 s.
* Lengths are ``mean`` when ``range_ratio`` is 0, else uniform integers in
  ``[floor(mean * (1 - range_ratio)), floor(mean * (1 + range_ratio))]`` (vLLM's
  ``--random-range-ratio``), at least 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError


@dataclass(frozen=True)
class PlannedRequest:
    """One request of a load: its index (the request id), arrival offset from the load's
    start (s), prompt length and tokens to generate (EOS ignored)."""

    index: int
    arrival_s: float
    prompt_len: int
    output_len: int


def arrival_offsets(rate_rps: float, count: int, burstiness: float, rng: np.random.Generator
                    ) -> np.ndarray:  # fmt: skip
    """``count`` arrival offsets (s, non-decreasing, the first 0) of a gamma renewal process
    of mean rate ``rate_rps`` requests/s (see the module docstring). ConfigError for a rate or
    burstiness that is not a positive finite number."""
    for name, value in (("request rate", rate_rps), ("burstiness", burstiness)):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
    if count < 1:
        return np.zeros(0)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate_rps * burstiness), size=count - 1)
    return np.concatenate(([0.0], np.cumsum(gaps)))


def lengths(mean: int, range_ratio: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` lengths (int64) around ``mean`` (see the module docstring); ConfigError for a
    ratio outside [0, 1)."""
    if not 0 <= range_ratio < 1:
        raise ConfigError(f"length range ratio must lie in [0, 1), got {range_ratio!r}")
    if range_ratio == 0:
        return np.full(count, mean, dtype=np.int64)
    low = max(1, int(mean * (1 - range_ratio)))
    high = max(low, int(mean * (1 + range_ratio)))
    return rng.integers(low, high + 1, size=count, dtype=np.int64)


def plan_requests(
    rate_rps: float,
    duration_s: float,
    max_requests: int,
    prompt_len: int,
    output_len: int,
    burstiness: float = 1.0,
    range_ratio: float = 0.0,
    seed: int = 0,
) -> list[PlannedRequest]:
    """The requests of one rate point: arrivals of the process above that fall within
    ``duration_s`` (at least one, at most ``max_requests``), each with its lengths. One seeded
    generator draws the arrivals first, then prompt and output lengths."""
    rng = np.random.default_rng(seed)
    offsets = arrival_offsets(rate_rps, max_requests, burstiness, rng)
    count = max(1, int(np.searchsorted(offsets, duration_s, side="left")))
    prompts = lengths(prompt_len, range_ratio, max_requests, rng)
    outputs = lengths(output_len, range_ratio, max_requests, rng)
    return [
        PlannedRequest(i, float(offsets[i]), int(prompts[i]), int(outputs[i])) for i in range(count)
    ]
