"""The LLM serving load's arrival process and lengths, and its metrics: TTFT, TPOT, goodput,
SLO attainment and the knee, exactly, from hand-made timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.scenarios.arrivals import arrival_offsets, lengths, plan_requests
from harness.scenarios.goodput import Objectives, RatePoint, RequestRecord, knee, summarize

MS = 1_000_000


def test_poisson_arrivals_have_the_rate_and_exponential_gaps() -> None:
    offsets = arrival_offsets(4.0, 20_000, 1.0, np.random.default_rng(1))
    gaps = np.diff(offsets)
    assert offsets[0] == 0.0 and np.all(gaps >= 0)
    assert gaps.mean() == pytest.approx(0.25, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)  # exponential: CV 1


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_arrivals_keep_the_rate_and_change_the_spread(burstiness: float) -> None:
    gaps = np.diff(arrival_offsets(2.0, 20_000, burstiness, np.random.default_rng(2)))
    assert gaps.mean() == pytest.approx(0.5, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1 / np.sqrt(burstiness), rel=0.05)


def test_the_same_seed_gives_the_same_load() -> None:
    a = plan_requests(3.0, 10.0, 64, 128, 32, burstiness=0.5, range_ratio=0.5, seed=7)
    b = plan_requests(3.0, 10.0, 64, 128, 32, burstiness=0.5, range_ratio=0.5, seed=7)
    assert a == b and a != plan_requests(3.0, 10.0, 64, 128, 32, 0.5, 0.5, seed=8)


def test_a_load_stops_at_its_duration_or_its_request_cap() -> None:
    load = plan_requests(2.0, 5.0, 1000, 16, 8)
    assert all(r.arrival_s < 5.0 for r in load) and 3 < len(load) < 25
    assert len(plan_requests(1000.0, 5.0, 12, 16, 8)) == 12
    assert len(plan_requests(0.001, 5.0, 12, 16, 8)) == 1  # the first arrives at 0


def test_lengths_are_fixed_or_uniform_within_the_range() -> None:
    rng = np.random.default_rng(0)
    assert list(lengths(64, 0.0, 3, rng)) == [64, 64, 64]
    spread = lengths(100, 0.25, 5000, rng)
    assert spread.min() == 75 and spread.max() == 125
    with pytest.raises(ConfigError, match="range ratio"):
        lengths(64, 1.0, 3, rng)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (1.0, -1.0), (float("nan"), 1.0)])
def test_a_bad_rate_or_burstiness_is_a_config_error(rate: float, burst: float) -> None:
    with pytest.raises(ConfigError, match="positive finite"):
        arrival_offsets(rate, 4, burst, np.random.default_rng(0))


def _record(index: int, arrival_ms: int, first_ms: int, step_ms: int, tokens: int,
            error: str | None = None) -> RequestRecord:  # fmt: skip
    stamps = tuple((first_ms + i * step_ms) * MS for i in range(tokens))
    end = stamps[-1] if stamps else (first_ms * MS)
    return RequestRecord(index, arrival_ms * MS, stamps, (1,) * tokens, end, 8, tokens, error)


def test_ttft_tpot_and_e2e_of_one_request() -> None:
    r = _record(0, 100, 350, 20, 5)
    assert (r.ttft_ms(), r.tpot_ms(), r.e2e_ms()) == (250.0, 20.0, 330.0)
    assert _record(1, 0, 10, 20, 1).tpot_ms() is None
    # usage's count wins over the chunks: 2 chunks carrying 9 tokens
    chunked = RequestRecord(2, 0, (10 * MS, 90 * MS), (1, 8), 90 * MS, 8, 9, None, 9)
    assert chunked.tpot_ms() == 10.0


def test_goodput_counts_requests_meeting_both_objectives_over_the_duration() -> None:
    records = [
        _record(0, 0, 100, 50, 5),  # good: TTFT 100, TPOT 50
        _record(1, 500, 1700, 50, 5),  # TTFT 1200 > 1000: not good
        _record(2, 1000, 1100, 150, 5),  # TPOT 150 > 100: not good
        _record(3, 1500, 1600, 10, 1),  # one token: no TPOT, good
        _record(4, 1800, 1900, 0, 0, error="HTTP 500"),  # failed
    ]
    s = summarize(records, 2.0, 0, Objectives(ttft_ms=1000, tpot_ms=100))
    assert s.duration_s == pytest.approx(1.9)  # to the last end: request 1's token at 1900 ms
    assert (s.requests, s.completed, s.good) == (5, 4, 2)
    assert s.achieved_rps == pytest.approx(4 / 1.9) and s.goodput_rps == pytest.approx(2 / 1.9)
    assert s.attainment == 0.4 and s.error_rate == 0.2 and s.errors == ("HTTP 500",)
    assert s.ttft[0].value == pytest.approx(np.median([100, 1200, 100, 100]))
    assert s.tpot[0].value == pytest.approx(50.0) and s.ttft[2].value is None  # too few


def test_the_knee_is_the_highest_rate_before_the_first_miss() -> None:
    points = [RatePoint(1, 1.0), RatePoint(2, 0.95), RatePoint(4, 0.7), RatePoint(8, 0.92)]
    assert knee(points) == 2  # 8 passes by a fluke above a failing 4: not the knee
    assert knee(points, goal=0.6) == 8
    assert knee(points, goal=0.93) == 2
    assert knee([RatePoint(1, 0.5)]) is None
    assert knee([]) is None
