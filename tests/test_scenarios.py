"""Load scenarios: LoadGen's log parsed, the max-QPS search, the dynamic batcher, the suite's
[serving] table and plan axes, and whole short-mode runs of the four scenarios on the fake
backend (LoadGen's clock is the wall clock: assertions are on structure, never on speed)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from backends.fake import FakeClock
from harness.errors import BackendError, ConfigError, MeasurementError
from harness.launch import InlineLauncher
from harness.optimize.artifacts import cache_root
from harness.plan import Selection, plan
from harness.runner import Runner
from harness.scenarios.batcher import DynamicBatcher, Request
from harness.scenarios.config import ServingKnobs, ServingSettings
from harness.scenarios.loadgen import LoadRun, RunRecord, loadgen
from harness.scenarios.loadgen import test_settings as settings_of
from harness.scenarios.logparse import parse_detail, summarize
from harness.scenarios.measure import run_scenario
from harness.scenarios.search import Probe, max_qps
from harness.store import Store
from harness.suite import load_suite

pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen not installed (infrabench[serving])")

Write = Callable[..., Path]


def _log(**values: object) -> str:
    lines = ["garbage line", ":::MLLOG {not json"]
    lines += [":::MLLOG " + json.dumps({"key": k, "value": v}) for k, v in values.items()]
    return "\n".join(lines)


def test_a_detail_log_gives_validity_reasons_percentiles_and_the_early_stop_estimate() -> None:
    text = _log(
        effective_scenario="SingleStream",
        effective_target_latency_percentile=0.99,
        result_validity="INVALID",
        result_min_duration_met=True,
        result_min_queries_met=False,
        early_stopping_met=True,
        result_invalid_reason="Reduce expected latency",
        early_stopping_result=" * Early stopping 99.0th percentile estimate: 2500000",
        early_stopping_latency_ss=2500000,
        result_query_count=700,
        result_qps_with_loadgen_overhead=400.0,
        **{"result_50.00_percentile_latency_ns": 2000000,
           "result_99.00_percentile_latency_ns": 2400000},
        result_mean_latency_ns=2100000,
    )  # fmt: skip
    s = summarize(parse_detail(text))
    assert not s.valid
    assert s.reasons == ("minimum query count not met", "Reduce expected latency")
    assert s.percentiles == {50.0: 2.0, 99.0: 2.4}
    assert s.early_stop_p99_ms == 2.5 and s.achieved_qps == 400.0 and s.query_count == 700
    assert s.mean_ms == 2.1 and s.target_qps is None


def test_multi_stream_throughput_is_samples_per_query_over_the_mean_query_latency() -> None:
    text = _log(
        effective_scenario="MultiStream", effective_samples_per_query=8, result_validity="VALID",
        result_mean_query_latency_ns=4_000_000,
        **{"result_99.00_percentile_per_query_latency_ns": 5_000_000,
           "result_99.00_percentile_latency_ns": 1_000_000},
    )  # fmt: skip
    s = summarize(parse_detail(text))
    assert s.valid and s.reasons == ()
    assert s.achieved_qps == pytest.approx(2000.0)
    assert s.percentiles == {99.0: 5.0}  # the bound is per query


def test_a_log_without_a_result_is_a_measurement_error() -> None:
    with pytest.raises(MeasurementError, match="no :::MLLOG"):
        parse_detail("nothing here")
    with pytest.raises(MeasurementError, match="did not finish"):
        summarize(parse_detail(_log(effective_scenario="Server")))


def _scripted(limit: float, clock: FakeClock, seconds: float = 1.0) -> Callable[[float], Probe]:
    """A server whose p99 meets the bound up to ``limit`` QPS; each probe takes ``seconds``."""

    def probe(qps: float) -> Probe:
        clock.advance(int(seconds * 1e9))
        return Probe(qps, qps, 1.0, 10.0 if qps <= limit else 90.0, qps <= limit)

    return probe


def test_the_search_finds_the_highest_passing_qps_within_its_precision() -> None:
    clock = FakeClock()
    result = max_qps(_scripted(137.0, clock), 20.0, clock, budget_s=100, precision=0.02)
    assert result.stop_reason == "converged" and result.best is not None
    assert 137.0 * 0.98 <= result.best.target_qps <= 137.0
    failing = min(p.target_qps for p in result.probes if not p.passed)
    assert failing - result.best.target_qps <= 0.02 * result.best.target_qps


def test_an_overloaded_first_probe_drops_the_search_to_the_rate_it_served() -> None:
    """A start far above capacity: the server completed 1000 QPS of the 100000 asked, so the
    next target is 1000 (not 50000), then the search goes on from there."""
    clock = FakeClock()
    asked: list[float] = []

    def probe(qps: float) -> Probe:
        asked.append(qps)
        served = min(qps, 1000.0)
        return Probe(qps, served, 1.0, 10.0 if qps <= 600 else 900.0, qps <= 600)

    result = max_qps(probe, 100_000.0, clock, budget_s=100, precision=0.05)
    assert asked[:3] == [100_000.0, 1000.0, 500.0] and result.best is not None
    assert 0.95 * 600 <= result.best.target_qps <= 600


def test_a_server_that_did_not_keep_up_fails_its_probe_whatever_the_bound(
    tmp_path: Path,
) -> None:
    from harness.scenarios.measure import _probe_of

    def run(target: float, achieved: float) -> Probe:
        text = _log(effective_scenario="Server", result_validity="VALID",
                    result_perf_constraints_met=True, result_completed_samples_per_sec=achieved,
                    **{"result_99.00_percentile_latency_ns": 3_700_000_000})  # fmt: skip
        return _probe_of(RunRecord(summarize(parse_detail(text)), tmp_path), target, 1e9)

    assert not run(242_170.0, 51_139.0).passed  # p99 3.7 s is within a 1e9 ms bound, but
    assert run(62.6, 61.1).passed  # a short probe that kept up completes within a few %


def test_the_search_stops_at_its_budget_and_at_its_floor() -> None:
    clock = FakeClock()
    result = max_qps(_scripted(1e9, clock, seconds=2.0), 10.0, clock, budget_s=5)
    assert result.stop_reason == "budget" and len(result.probes) == 3
    clock = FakeClock()
    result = max_qps(_scripted(0.0, clock), 10.0, clock, budget_s=100, floor_qps=1.0)
    assert result.stop_reason == "floor" and result.best is None
    assert result.probes[-1].target_qps == 1.0


def _batches(knobs: ServingKnobs, count: int, fail: bool = False) -> tuple[list[int], list]:
    sizes: list[int] = []
    finished: list[tuple[int, str | None]] = []
    all_done = threading.Event()

    def infer(inputs: Mapping[str, np.ndarray]) -> None:
        sizes.append(len(inputs["x"]))
        if fail:
            raise BackendError("server said 500")

    def done(requests: list[Request], error: str | None) -> None:
        finished.extend((r.tag, error) for r in requests)
        if len(finished) == count:
            all_done.set()

    batcher = DynamicBatcher([infer], knobs, done)
    batcher.submit([Request(i, {"x": np.full((1, 3), i)}) for i in range(count)])
    assert all_done.wait(10)
    assert batcher.stop()
    return sizes, finished


def test_the_batcher_fills_batches_up_to_its_maximum_and_reports_every_request() -> None:
    sizes, finished = _batches(ServingKnobs(1, 4, 1000.0), 8)
    assert sizes == [4, 4]
    assert sorted(t for t, _ in finished) == list(range(8))
    sizes, _ = _batches(ServingKnobs(1, 1, 0.0), 3)
    assert sizes == [1, 1, 1]


def test_a_failed_batch_reports_its_requests_failed_and_the_batcher_goes_on() -> None:
    sizes, finished = _batches(ServingKnobs(1, 2, 0.0), 4, fail=True)
    assert sizes == [2, 2]
    assert {e for _, e in finished} == {"server said 500"}


SUITE = """
    models = ["tiny-mlp"]
    backends = ["fake"]
    threads = [1]
    scenario = {scenarios}
    baseline = "fake/fp32"
    [options.fake]
    sleep_ms = 2.0
    [serving]
    loadgen = {loadgen}
    short_duration_ms = 100
    short_query_count = 16
    search_budget_s = 1
    latency_bound_ms = 50
    max_batch_size = [1, 4]
    max_queue_delay_ms = [1, 2]
"""


def test_the_plan_sweeps_serving_axes_for_load_scenarios_only(write_suite: Write) -> None:
    body = SUITE.format(scenarios='["single-stream", "server"]', loadgen="false")
    cases = plan(load_suite(write_suite(body))).cases
    assert [(c.scenario, c.serving.label) for c in cases] == [
        ("single-stream", "i1-mb1-d0ms"),
        ("server", "i1-mb1-d0ms"), ("server", "i1-mb4-d1ms"), ("server", "i1-mb4-d2ms"),
    ]  # fmt: skip
    assert cases[0].case_id.endswith("/single-stream")  # the timing loop's id is unchanged
    assert cases[1].case_id.endswith("/server/i1-mb1-d0ms")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('scenario = "batch"', "scenario: unknown value 'batch'"),
        ("[serving]\nmode = 'fast'", "serving.mode: unknown value 'fast'"),
        ("[serving]\ninstances = [0]", "serving.instances"),
        ("[serving]\nmax_queue_delay_ms = [-1]", "serving.max_queue_delay_ms"),
        ("[serving]\nbound = 3", r"unknown key 'bound' in \[serving\]"),
        (
            "[serving]\nmode = 'full'",
            r"timeout_s = 600 s \(the default\) is too short for \[serving\] mode = "
            r'"full" \(a full-mode case runs 10-45 minutes\); allowed: '
            r"at least 1560 s",
        ),
        (  # the least allowed is rounded up, never down to the value refused
            "[measure]\ntimeout_s = 1500\n[serving]\nmode = 'full'\nsearch_budget_s = 0.001",
            r"timeout_s = 1500 s is too short .* allowed: at least 1501 s",
        ),
    ],
)
def test_bad_serving_input_is_one_config_error(write_suite: Write, body: str, message: str) -> None:
    path = write_suite(f'models = ["tiny-mlp"]\nbackends = ["fake"]\n{body}\n')
    with pytest.raises(ConfigError, match=message):
        load_suite(path)


def test_the_four_scenarios_run_in_short_mode_and_are_stored(
    write_suite: Write, store: Store
) -> None:
    body = SUITE.format(
        scenarios='["single-stream", "multi-stream", "offline", "server"]', loadgen="true"
    ).replace("max_queue_delay_ms = [1, 2]", "max_queue_delay_ms = [1]")
    run_id = Runner(store, cache_root(), InlineLauncher()).run(plan(load_suite(write_suite(body))))
    rows = store.cases(run_id)
    assert len(rows) == 8 and {r.status for r in rows} == {"ok"}, [r.reason for r in rows]
    for r in rows:
        details = json.loads(r.details or "{}")["loadgen"]
        assert r.valid is False  # short mode is never MLPerf-compliant
        assert any("not MLPerf-compliant" in why for why in details["reasons"])
        assert (Path(details["log_dir"]) / "mlperf_log_detail.txt").is_file()
        assert r.achieved_qps and r.achieved_qps > 0 and r.error_rate == 0.0
        assert r.latency_ms_p50 is not None and r.latency_ms_p99 is not None
        assert r.n_samples == len(store.samples(run_id, r.case_id)) > 0
        assert r.serving in ("i1-mb1-d0ms", "i1-mb4-d1ms")
        assert details["service_ms_p50"] > 0 and 0 < details["busy"] <= 1  # under load
        if r.scenario != "single-stream":  # queued samples: their spread is the load's, not noise
            assert "samples vary widely" not in (r.noise or "")
    server = [r for r in rows if r.scenario == "server"]
    for r in server:
        assert r.latency_bound_ms == 50 and r.target_qps is not None
        assert json.loads(r.details or "{}")["loadgen"]["probes"]
    batched = next(r for r in server if r.serving == "i1-mb4-d1ms")
    assert json.loads(batched.details or "{}")["loadgen"]["mean_batch"] >= 1
    offline = next(r for r in rows if r.scenario == "offline")
    assert offline.target_qps is not None and offline.goodput_rps == offline.achieved_qps


def test_full_mode_starts_from_loadgens_mlperf_conf_and_short_mode_lowers_it() -> None:
    lg = loadgen()
    full = ServingSettings(mode="full", latency_bound_ms=40)
    short = ServingSettings(short_duration_ms=100, short_query_count=16)
    multi = settings_of(lg, LoadRun("multi-stream", full, seed=3))
    assert multi.min_duration_ms == 600_000 and multi.min_query_count == 662
    assert multi.qsl_rng_seed == 2085463073848966840  # mlperf.conf's, not the run's seed
    server = settings_of(lg, LoadRun("server", full, target_qps=20.0))
    assert server.min_duration_ms == 600_000 and server.server_target_qps == 20.0
    assert server.server_target_latency_ns == 40_000_000  # the suite's bound, not the conf's
    lowered = settings_of(lg, LoadRun("multi-stream", short, seed=3))
    assert (lowered.min_duration_ms, lowered.max_duration_ms) == (100, 1000)
    probe = settings_of(lg, LoadRun("server", replace(short, short_query_count=368),
                                    target_qps=20.0))  # fmt: skip
    assert probe.max_duration_ms == 36_800  # time for its 368 queries at 20 QPS, twice over
    assert lowered.min_query_count == 16 and lowered.qsl_rng_seed == 3


def _queue_p99(qps: float, service_ms: float = 10.0, spread_ms: float = 30.0) -> float:
    """A full run's p99 on a server whose p99 grows as 1 / (1 - rho) (rho = qps x service
    time): the service time plus ``spread_ms`` / (1 - rho)."""
    return service_ms + spread_ms / (1 - qps * service_ms / 1e3)


@pytest.mark.parametrize("world", ["queue", "never", "never-deadline", "no-room", "no-probe"])
def test_full_mode_server_searches_in_short_mode_then_confirms_with_a_margin(
    monkeypatch: pytest.MonkeyPatch, write_suite: Write, tmp_path: Path, world: str
) -> None:
    """Short probes meet the 50 ms bound up to 30 QPS (and take no time on the fake clock).
    Full runs (610 s each) have a p99 that grows as 1 / (1 - rho) (``queue``: the first, at 90%
    of the search's best, misses; the retry fitted to it lands at the aim and passes), or never
    pass: then the retries go on for ``FULL_TRIES`` runs, or while the deadline has room for
    1.2 x the last run (``never-deadline``: 700 s are left after two). ``no-room``: the
    deadline leaves no room for even one full run; ``no-probe``: no short probe passes. In
    both the row is a short probe, and says so."""
    from harness.scenarios.measure import FULL_STEP, FULL_TRIES
    from harness.scenarios.search import retry_qps

    body = (
        SUITE.format(scenarios='["server"]', loadgen="true")
        .replace("max_batch_size = [1, 4]\n    max_queue_delay_ms = [1, 2]", 'mode = "full"')
        .replace("[serving]", "[measure]\n    timeout_s = 2400\n    [serving]")
    )
    case = plan(load_suite(write_suite(body))).cases[0]
    clock = FakeClock()
    runs: list[tuple[str, float, int]] = []

    def scripted(run: LoadRun, *_: object) -> RunRecord:
        full = run.serving.mode == "full"
        runs.append((run.serving.mode, run.target_qps, run.serving.short_query_count))
        clock.advance(int(610e9) if full else 0)  # the short search's budget is never spent
        if not full:
            p99 = 10.0 if run.target_qps <= (0.0 if world == "no-probe" else 30.0) else 90.0
        else:
            p99 = _queue_p99(run.target_qps) if world == "queue" else 90.0
        text = _log(effective_scenario="Server", result_validity="VALID" if p99 <= 50 else
                    "INVALID", result_perf_constraints_met=p99 <= 50,
                    result_completed_samples_per_sec=run.target_qps,
                    **{"result_99.00_percentile_latency_ns": int(p99 * 1e6)})  # fmt: skip
        # ten 10 ms services at utilization qps x 10 ms
        wall = 0.1 / (run.target_qps * 0.01)
        return RunRecord(summarize(parse_detail(text)), tmp_path, [1], requests=1,
                         service_ns=[10_000_000] * 10, wall_s=wall)  # fmt: skip

    monkeypatch.setattr("harness.scenarios.measure.run_loadgen", scripted)
    monkeypatch.setattr("harness.scenarios.measure.calibrate",
                        lambda *_: {"sample_ms": 10.0, "capacity_qps": 40.0})  # fmt: skip
    deadline = {"never-deadline": int(1920e9), "no-room": int(700e9)}.get(world)
    m, _ = run_scenario(case, [lambda _: None], [], clock, log_root=tmp_path, deadline_ns=deadline)
    if world in ("no-probe", "no-room"):
        assert {mode for mode, _, _ in runs} == {"short"} and not m.compliant and not m.valid
        assert any("not MLPerf-compliant" in why for why in m.reasons)
        if world == "no-probe":
            assert m.reasons[0].endswith("; with nothing to confirm, no full-mode run was made")
        if world == "no-room":
            assert m.reasons[0] == ("no full-mode run: the case's timeout_s leaves 700 s, too "
                                    "little for a 610 s run; the short-mode search's best is "
                                    "shown")  # fmt: skip
            assert m.target_qps == 30.0 and m.calibration["full_runs"] == []
        return
    assert {n for mode, _, n in runs if mode == "short"} == {368}  # enough for a p99
    best = max(q for mode, q, _ in runs if mode == "short" and q <= 30)
    full = [q for mode, q, _ in runs if mode == "full"]
    tried = m.calibration["full_runs"]
    assert full[0] == pytest.approx(FULL_STEP * best) and runs[-1][0] == "full"
    for before, after, t in zip(full, full[1:], tried, strict=False):  # each retry is fitted
        assert after == pytest.approx(retry_qps(before, t["p99_ms"], 10.0, t["busy"], 50.0))
        assert t["service_ms_p50"] == 10.0 and t["busy"] == pytest.approx(before / 100)
    assert m.target_qps == pytest.approx(full[-1]) and m.compliant
    if world == "queue":
        assert [t["passed"] for t in tried] == [False, True] and m.valid
        assert _queue_p99(full[1]) == pytest.approx(0.9 * 50)  # the fit hits its aim exactly
        return
    # never-deadline: 700 s are left after two 610 s runs, under 1.2 x 610 s: no third
    assert len(full) == (2 if world == "never-deadline" else FULL_TRIES) and not m.valid
    assert not any(t["passed"] for t in tried)
    assert m.reasons[0].startswith("no full-mode run met the p99 bound of 50 ms (")
    stop = ("the case's timeout_s leaves 700 s, too little for a 610 s run"
            if world == "never-deadline" else "4 full-mode runs, the most tried")  # fmt: skip
    assert m.calibration["full_stop"] == stop


def test_utilization_counts_failed_batches_and_a_slow_service_under_load_is_said(
    tmp_path: Path,
) -> None:
    from harness.scenarios.measure import _slower_under_load

    ms = 1_000_000
    record = RunRecord(None, tmp_path, batch_sizes=[1, 1, 1], service_ns=[20 * ms, 30 * ms],  # type: ignore[arg-type]
                       failed_ns=[50 * ms], wall_s=0.5, instances=2)  # fmt: skip
    assert record.service_ms_p50 == 25.0 and record.busy == pytest.approx(0.1 / 1.0)
    line = _slower_under_load(record, {"sample_ms": 10.0, "batch_ms": 30.0}, 4)
    assert line is not None and line.startswith("a batch took 25 ms under load, 2.50x its 10 ms")
    assert _slower_under_load(record, {"sample_ms": 20.0}, 4) is None  # 1.25x: not worth a line
    record.batch_sizes = [4, 4]  # full batches: compared with the calibrated full batch
    assert _slower_under_load(record, {"sample_ms": 1.0, "batch_ms": 30.0}, 4) is None
    record.batch_sizes = [1, 4]  # mixed sizes: nothing to compare with
    assert _slower_under_load(record, {"sample_ms": 1.0, "batch_ms": 1.0}, 4) is None


def test_a_long_fast_run_keeps_an_even_subsample_of_its_latencies(
    monkeypatch: pytest.MonkeyPatch, write_suite: Write, tmp_path: Path
) -> None:
    """250,001 SUT-side latencies (a fast model's 600 s run has millions): the row keeps every
    3rd, in order, and says so; goodput still counts all of them."""
    from array import array

    from harness.scenarios.measure import LOAD_SAMPLES_KEPT

    case = plan(load_suite(write_suite(SUITE.format(scenarios='["offline"]',
                                                    loadgen="true")))).cases[0]  # fmt: skip
    n = 250_001

    def scripted(*_: object) -> RunRecord:
        text = _log(effective_scenario="Offline", result_validity="VALID",
                    result_samples_per_second=100.0)  # fmt: skip
        return RunRecord(summarize(parse_detail(text)), tmp_path, array("q", range(n)),
                         requests=n)  # fmt: skip

    monkeypatch.setattr("harness.scenarios.measure.run_loadgen", scripted)
    monkeypatch.setattr("harness.scenarios.measure.calibrate",
                        lambda *_: {"sample_ms": 10.0, "capacity_qps": 40.0})  # fmt: skip
    m, kept = run_scenario(case, [lambda _: None], [], FakeClock(), log_root=tmp_path)
    assert kept == list(range(0, n, 3)) and len(kept) <= LOAD_SAMPLES_KEPT
    assert m.calibration["samples_kept"].startswith("1 in 3 of the run's 250001 SUT-side")
    assert m.goodput_rps == pytest.approx(100.0)  # every request completed: all counted


@pytest.mark.parametrize("sample_ms", [0.001, 2.0])
def test_a_fast_model_is_calibrated_by_what_the_harness_serves_not_by_the_model_alone(
    monkeypatch: pytest.MonkeyPatch, write_suite: Write, tmp_path: Path, sample_ms: float
) -> None:
    """A 1 us model (capacity 1M/s from its own time) whose short LoadGen offline run through
    the harness completes 100k/s: the offline query is sized from 100k/s (from 1M/s it was 7x
    what a run could serve). A 2 ms model gets no such run."""
    from harness.scenarios.measure import OFFLINE_HEADROOM, SERVED_RUN_MS

    case = plan(load_suite(write_suite(SUITE.format(scenarios='["offline"]',
                                                    loadgen="true")))).cases[0]  # fmt: skip
    runs: list[LoadRun] = []

    def scripted(run: LoadRun, *_: object) -> RunRecord:
        runs.append(run)
        text = _log(effective_scenario="Offline", result_validity="VALID",
                    result_samples_per_second=1e5)  # fmt: skip
        return RunRecord(summarize(parse_detail(text)), tmp_path, [1], requests=1)

    monkeypatch.setattr("harness.scenarios.measure.run_loadgen", scripted)
    cal = {"sample_ms": sample_ms, "capacity_qps": 1e3 / sample_ms}
    monkeypatch.setattr("harness.scenarios.measure.calibrate", lambda *_: dict(cal))
    m, _ = run_scenario(case, [lambda _: None], [], FakeClock(), log_root=tmp_path)
    if sample_ms >= 1:
        assert len(runs) == 1 and "served_qps" not in m.calibration
        assert runs[0].expected_qps == pytest.approx(OFFLINE_HEADROOM * 500)
        return
    served, offline = runs
    assert served.serving.short_duration_ms == SERVED_RUN_MS and served.expected_qps == 1e6
    assert m.calibration["served_qps"] == m.calibration["capacity_qps"] == 1e5
    assert offline.expected_qps == pytest.approx(OFFLINE_HEADROOM * 1e5)


def test_a_retry_target_is_fitted_to_the_missed_run_and_bounded() -> None:
    from harness.scenarios.search import retry_qps

    # p99 60 ms, service 10 ms at rho 0.5: spread 25 ms x (1 - 0.5); the aim (45 ms) is met at
    # 1 - 25 / 35 = 0.2857, so the target scales by that / 0.5
    assert retry_qps(50.0, 60.0, 10.0, 0.5, 50.0) == pytest.approx(50.0 * (1 - 25 / 35) / 0.5)
    assert retry_qps(50.0, 46.0, 10.0, 0.5, 50.0) == pytest.approx(45.0)  # at most 0.9
    assert retry_qps(50.0, 5000.0, 10.0, 0.5, 50.0) == pytest.approx(25.0)  # at least 0.5
    assert retry_qps(50.0, 60.0, 10.0, 0.995, 50.0) == pytest.approx(25.0)  # overloaded
    assert retry_qps(50.0, 60.0, None, None, 50.0) == pytest.approx(45.0)  # nothing to fit
    assert retry_qps(50.0, 60.0, 10.0, 0.0, 50.0) == pytest.approx(45.0)
    assert retry_qps(50.0, 60.0, 10.0, 0.5, 50.0, batching=True) == pytest.approx(45.0)
    assert retry_qps(50.0, 40.0, 10.0, 0.5, 50.0) == pytest.approx(45.0)  # failed on errors
    assert retry_qps(50.0, 90.0, 46.0, 0.5, 50.0) is None  # the service alone is over the aim


def test_the_command_line_replaces_scenarios_and_refuses_a_bad_target(write_suite: Write) -> None:
    path = write_suite(SUITE.format(scenarios='["single-stream"]', loadgen="false"))
    cases = plan(load_suite(path), Selection(scenarios=("offline",))).cases
    assert {c.scenario for c in cases} == {"offline"}
    for bad in ("localhost", "http://127.0.0.1:99999", "http://127.0.0.1:0"):
        with pytest.raises(ConfigError, match=rf"--target must be http://HOST:PORT \(port "
                                              rf"1-65535\), got '{re.escape(bad)}'"):  # fmt: skip
            plan(load_suite(path), Selection(target=bad))
    with pytest.raises(ConfigError, match="--scenario: unknown value 'batch'"):
        plan(load_suite(path), Selection(scenarios=("batch",)))


def test_the_report_draws_latency_against_load_from_the_server_probes() -> None:
    from harness.report.load_chart import latency_vs_load
    from harness.result import CaseResult

    probes = [
        {"target_qps": t, "achieved_qps": t * 0.95, "p50_ms": 5.0, "p99_ms": p99, "passed": ok}
        for t, p99, ok in ((10.0, 20.0, True), (20.0, 40.0, True), (30.0, 90.0, False))
    ]
    row = CaseResult("r", "c", "m", "fp32", "onnxruntime", scenario="server",
                     serving="i1-mb8-d5ms", latency_bound_ms=50.0,
                     details=json.dumps({"loadgen": {"probes": probes}}))  # fmt: skip
    svg = latency_vs_load([row], "t")
    assert svg.count("<polyline") == 2  # p99 and p50
    assert svg.count("<circle") == 3 and svg.count('fill="#fff"') == 1  # one over the bound
    assert "p99 bound 50 ms" in svg and "onnxruntime i1-mb8-d5ms" in svg
    single = CaseResult("r", "d", "m", "fp32", "onnxruntime", scenario="single-stream")
    assert latency_vs_load([single], "t") == ""


def test_compare_keeps_rows_apart_that_differ_only_in_their_serving_configuration() -> None:
    from harness.compare import compare_runs
    from harness.result import CaseResult

    def row(run: str, serving: str | None) -> CaseResult:
        return CaseResult(run, f"c-{serving}", "m", "fp32", "onnxruntime", scenario="server",
                          serving=serving, status="failed")  # fmt: skip

    base = [row("a", "i1-mb1-d0ms"), row("a", "i1-mb8-d5ms")]
    cand = [row("b", "i1-mb1-d0ms"), row("b", "i1-mb8-d5ms")]
    out = compare_runs(base, cand, {}, same_machine=True)
    assert sorted(c.scenario for c in out) == ["server/i1-mb1-d0ms", "server/i1-mb8-d5ms"]


def test_a_target_failing_mid_run_is_counted_and_the_circuit_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.case import Case, CaseSettings
    from harness.measure.clock import PerfCounterClock
    from harness.scenarios.batcher import MAX_CONSECUTIVE_FAILURES
    from harness.scenarios.config import ServingSettings
    from harness.scenarios.measure import CALIBRATION_RUNS, run_scenario, samples_of

    calls = 0

    def infer(inputs: Mapping[str, np.ndarray]) -> None:
        nonlocal calls
        calls += 1
        if calls > CALIBRATION_RUNS + 2:  # calibration and two served requests succeed
            raise BackendError("HTTP 500: model crashed")

    serving = ServingSettings(loadgen=True, short_duration_ms=50, short_query_count=20)
    case = Case("tiny-mlp", "fp32", "fake", 1, None, 1, settings=CaseSettings(serving=serving))
    monkeypatch.setattr("harness.scenarios.measure.OVERHEAD_MATTERS_MS", 0.0)  # calls counted
    load, latencies = run_scenario(
        case, [infer], samples_of(case), PerfCounterClock(), log_root=tmp_path
    )
    assert len(latencies) == 2 and load.errors == load.requests - 2 >= 18
    assert calls == CALIBRATION_RUNS + 2 + MAX_CONSECUTIVE_FAILURES  # then nothing is sent
    assert load.reasons[0].startswith(f"{load.errors} of {load.requests} requests failed: ")
    assert "HTTP 500: model crashed" in load.reasons[0] and "circuit open" in load.reasons[0]
    assert not load.valid and load.error_rate == load.errors / load.requests
