"""LLM serving metrics from per-request timestamps: TTFT, TPOT, end-to-end latency, achieved
request rate, goodput, SLO attainment, and the knee of a request-rate sweep.

Computed after the run from raw records (vLLM ``benchmark_serving``'s ``calculate_metrics``):

* TTFT = first output token - the request's scheduled arrival (queueing included), ms.
* TPOT = (last token - first token) / (output tokens - 1), ms; ``None`` for one token.
* e2e  = last token (or the failure) - arrival, ms.
* duration = the load's start (first arrival) to the last request's end, s.
* achieved rps = completed requests / duration;  goodput = requests that completed *and* met
  every objective (TTFT <= ``ttft_slo_ms`` and TPOT <= ``tpot_slo_ms``; a one-token request
  has no TPOT and meets it) / duration (vLLM's ``--goodput``, after DistServe, Zhong et al.,
  OSDI 2024). A failed request (error, timeout) is never good.
* SLO attainment = good requests / requests sent (DistServe's attainment).

The knee (:func:`knee`) follows DistServe's goodput definition, "the maximum request rate that
can be served adhering to the SLO attainment goal (e.g. 90%)": the highest swept rate such that
it and every lower swept rate reach the attainment goal (a fluke pass above a failing rate is
not the knee).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.measure.stats import NS_PER_MS, Quantile, quantile

DEFAULT_ATTAINMENT = 0.9  # DistServe's example SLO attainment goal


@dataclass(frozen=True)
class RequestRecord:
    """One request as the harness clock saw it (ns, one origin for a load).

    arrival_ns:    when it was due (the arrival process's time, not when it was sent).
    token_ns:      when output tokens arrived (a decode step, an SSE chunk), in order.
    token_counts:  how many tokens each of those carried (1 per step; a chunk may hold more).
    end_ns:        when it finished or failed.
    error:         why it failed (one line), else None.
    output_tokens: the output token count the engine or server reported (usage), else None
                   (then the sum of ``token_counts``).
    """

    index: int
    arrival_ns: int
    token_ns: tuple[int, ...]
    token_counts: tuple[int, ...]
    end_ns: int
    prompt_len: int
    output_len: int
    error: str | None = None
    output_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.token_ns)

    @property
    def n_output(self) -> int:
        return self.output_tokens if self.output_tokens is not None else sum(self.token_counts)

    def ttft_ms(self) -> float | None:
        return (self.token_ns[0] - self.arrival_ns) / NS_PER_MS if self.token_ns else None

    def tpot_ms(self) -> float | None:
        if not self.token_ns or self.n_output < 2:
            return None
        return (self.token_ns[-1] - self.token_ns[0]) / NS_PER_MS / (self.n_output - 1)

    def e2e_ms(self) -> float:
        return (self.end_ns - self.arrival_ns) / NS_PER_MS


@dataclass(frozen=True)
class Objectives:
    """Per-request service-level objectives, ms."""

    ttft_ms: float
    tpot_ms: float

    def met(self, record: RequestRecord) -> bool:
        ttft, tpot = record.ttft_ms(), record.tpot_ms()
        return (
            record.ok
            and ttft is not None
            and ttft <= self.ttft_ms
            and (tpot is None or tpot <= self.tpot_ms)
        )


@dataclass(frozen=True)
class RateSummary:
    """One rate point. Rates per second, times in ms; quantiles over completed requests."""

    offered_rps: float
    requests: int
    completed: int
    good: int
    duration_s: float
    achieved_rps: float
    goodput_rps: float
    attainment: float
    ttft: tuple[Quantile, Quantile, Quantile]
    tpot: tuple[Quantile, Quantile, Quantile]
    e2e: tuple[Quantile, Quantile, Quantile]
    errors: tuple[str, ...]

    @property
    def error_rate(self) -> float:
        return (self.requests - self.completed) / self.requests if self.requests else 0.0


def _three(values: list[float], confidence: float) -> tuple[Quantile, Quantile, Quantile]:
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    if ordered.size == 0:
        return (Quantile(0.5, None, None, None), Quantile(0.9, None, None, None),
                Quantile(0.99, None, None, None))  # fmt: skip
    return (quantile(ordered, 0.5, confidence), quantile(ordered, 0.9, confidence),
            quantile(ordered, 0.99, confidence))  # fmt: skip


def summarize(
    records: Sequence[RequestRecord],
    offered_rps: float,
    start_ns: int,
    objectives: Objectives,
    confidence: float = 0.95,
) -> RateSummary:
    """The rate point of ``records`` (a load that started at ``start_ns``); see the module
    docstring for every definition. ValueError for no records."""
    if not records:
        raise ValueError("a rate point needs at least one request")
    done = [r for r in records if r.ok]
    good = sum(objectives.met(r) for r in records)
    duration = max((max(r.end_ns for r in records) - start_ns) / 1e9, 1e-9)
    ttfts = [t for r in done if (t := r.ttft_ms()) is not None]
    tpots = [t for r in done if (t := r.tpot_ms()) is not None]
    errors = tuple(sorted({r.error or "no output token" for r in records if not r.ok}))
    return RateSummary(
        offered_rps=offered_rps,
        requests=len(records),
        completed=len(done),
        good=good,
        duration_s=duration,
        achieved_rps=len(done) / duration,
        goodput_rps=good / duration,
        attainment=good / len(records),
        ttft=_three(ttfts, confidence),
        tpot=_three(tpots, confidence),
        e2e=_three([r.e2e_ms() for r in done], confidence),
        errors=errors,
    )


@dataclass(frozen=True)
class RatePoint:
    """What the knee needs of one swept rate: offered rate (requests/s) and SLO attainment."""

    offered_rps: float
    attainment: float


def knee(points: Sequence[RatePoint], goal: float = DEFAULT_ATTAINMENT) -> float | None:
    """The highest offered rate that, with every lower swept rate, reaches ``goal`` SLO
    attainment (see the module docstring); None when even the lowest rate misses it."""
    best = None
    for point in sorted(points, key=lambda p: p.offered_rps):
        if point.attainment < goal:
            break
        best = point.offered_rps
    return best
