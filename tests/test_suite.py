from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.plan import Selection, Sweeps, plan
from harness.suite import find_suite, load_suite

Write = Callable[..., Path]

GOOD = """
    name = "t"
    models = ["tiny-mlp", "minilm-l6"]
    backends = ["fake", "onnxruntime"]
    batch_sizes = [1, 4]
    seq_lens = [16, 32]
    threads = [1, 2]
    [measure]
    budget_s = 0.5
    min_samples = 12
    timeout_s = 30
    [options.fake]
    latency_ms = 0.1
    fail = "run"
"""


def test_a_good_suite_expands_into_cases(write_suite: Write) -> None:
    suite = load_suite(write_suite(GOOD))
    assert suite.timing.budget_s == 0.5 and suite.timing.min_samples == 12
    assert suite.timeout_s == 30
    cases = plan(suite, auto_threads=2).cases
    # tiny-mlp has no sequence axis: 2 backends x 2 threads x 2 batches;
    # minilm-l6: 2 backends x 2 threads x 2 batches x 2 seq lens.
    assert len(cases) == 8 + 16
    assert {c.seq_len for c in cases if c.model == "tiny-mlp"} == {None}
    fake = next(c for c in cases if c.backend == "fake")
    assert fake.options == {"latency_ms": 0.1, "fail": "run"}
    assert fake.case_id == "tiny-mlp/fp32/fake/b1/t1/single-stream"


def test_auto_threads_resolve_to_the_usable_cpus(write_suite: Write) -> None:
    suite = load_suite(write_suite('models = ["tiny-mlp"]\nbackends = ["fake"]\n'))
    assert {c.threads for c in plan(suite, auto_threads=6).cases} == {6}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('models = ["tiny-mlp"]\nbackends = ["fake"]\nbogus = 1\n',
         "unknown key 'bogus'; allowed: name, description, models"),
        ('models = ["nope"]\nbackends = ["fake"]\n',
         "models: unknown value 'nope'; allowed: bert-base, digits-cnn, llama-1b, minilm-l6"),
        ('models = ["tiny-mlp"]\nbackends = ["cuda-magic"]\n',
         "backends: unknown value 'cuda-magic'; allowed: fake,"),
        ('models = ["tiny-mlp"]\nbackends = ["fake"]\nbatch_sizes = [1, "8"]\n',
         "batch_sizes must be a non-empty list of positive integers"),
        ('models = ["tiny-mlp"]\nbackends = ["fake"]\nvariants = ["fp64"]\n',
         "variants: unknown variant step 'fp64'; allowed: fp32, fp16, bf16, int8-dynamic"),
        ('models = ["tiny-mlp"]\nbackends = ["fake"]\nthreads = "many"\n',
         'threads must be "auto" or a list of positive integers'),
        ('models = ["tiny-mlp"]\nbackends = ["fake"]\n[measure]\nbudget = 3\n',
         "unknown key 'budget' in [measure]; allowed: warmup_min_iters"),
        ('models = ["tiny-mlp"]\nbackends = ["fake"]\n[measure]\nmin_samples = 2.5\n',
         "measure.min_samples must be a positive integer"),
        ('models = ["tiny-mlp"]\nbackends = ["fake"]\n'
         '[options.onnxruntime]\nexecution_provider = "npu"\n',
         "options.onnxruntime.execution_provider: unknown value 'npu'; allowed: cpu, cuda"),
        ('models = ["tiny-mlp"]\nbackends = ["fake"]\n[options.openvino]\nthreads = 2\n',
         "unknown key 'threads' in [options.openvino]; allowed: inference_precision"),
        ('models = ["tiny-mlp"]\nbackends = ["fake"]\nbaseline = "fake"\n',
         'baseline must be "BACKEND/VARIANT"'),
        ('backends = ["fake"]\n', "missing key 'models'"),
        ('models = ["tiny-mlp"\n', "invalid TOML"),
    ],
)  # fmt: skip
def test_bad_suites_name_file_key_and_choices(write_suite: Write, body: str, message: str) -> None:
    path = write_suite(body)
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    text = str(info.value)
    assert text.startswith(str(path))
    assert message in text
    assert "\n" not in text


def test_suites_are_found_by_name_or_path(write_suite: Write) -> None:
    assert find_suite("quick").name == "quick.toml"
    path = write_suite(GOOD, name="mine.toml")
    assert find_suite(str(path)) == path
    with pytest.raises(ConfigError, match=r"unknown suite 'nope'; allowed: .*quick"):
        find_suite("nope")
    with pytest.raises(ConfigError, match="suite file not found"):
        find_suite("missing.toml")


def test_cli_overrides_are_validated(write_suite: Write) -> None:
    suite = load_suite(write_suite(GOOD))
    assert {c.backend for c in plan(suite, Selection(backends=("fake",))).cases} == {"fake"}
    with pytest.raises(ConfigError, match="--backend: unknown value 'x'"):
        plan(suite, Selection(backends=("x",)))


def test_a_value_given_twice_is_one_case(write_suite: Write) -> None:
    suite = load_suite(write_suite(
        'models = ["tiny-mlp", "tiny-mlp"]\nbackends = ["fake", "fake"]\nbatch_sizes = [1, 1, 8]\n'
    ))  # fmt: skip
    cases = plan(suite, Selection(sweeps=Sweeps(batch_sizes=(8, 1, 8)))).cases
    assert [c.batch_size for c in cases] == [8, 1]
