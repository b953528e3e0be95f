"""Trustworthy figures on real models (issue 12): artifact identity over external data, fed
shapes, fidelity by output kind, kept samples, gate coverage, strict files. Every model is built
here (tests/real_models.py)."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from backends.fake import FakeBackend, FakeClock
from harness.case import Case, CaseSettings
from harness.cost import prices as default_prices
from harness.errors import ConfigError, informative_line
from harness.execute import Measurement
from harness.finalize import finalize
from harness.measure.energy import EnergyReading
from harness.measure.timing import TimingPolicy, measure
from harness.models import get_model
from harness.optimize.artifacts import Artifact, build
from harness.result import CaseResult
from harness.runner import measure_here
from harness.store import Store
from tests import real_models

ARTIFACT = Artifact("m", "fp32", "k", "/nonexistent", "0" * 64, 1.0, 0.1)


def test_external_data_in_a_sub_folder_is_copied_and_hashed(tmp_path: Path) -> None:
    graph = real_models.external(tmp_path, 0, "weights/w.bin")
    artifact = build(f"onnx:{graph}", "fp32", tmp_path / "cache")
    copied = Path(artifact.directory) / "weights" / "w.bin"
    assert copied.read_bytes() == (tmp_path / "weights" / "w.bin").read_bytes()
    assert artifact.size_mb * 2**20 == graph.stat().st_size + copied.stat().st_size
    onnx.load(str(artifact.onnx_path))  # loads its external data from the copy


def test_new_weights_under_the_same_graph_are_a_new_artifact(tmp_path: Path) -> None:
    graph = real_models.external(tmp_path, 0, "w.bin")
    graph_bytes = graph.read_bytes()
    first = build(f"onnx:{graph}", "fp32", tmp_path / "cache")
    real_models.external(tmp_path, 1, "w.bin")
    graph.write_bytes(graph_bytes)  # the very same graph file: only the weights changed
    second = build(f"onnx:{graph}", "fp32", tmp_path / "cache")
    assert (first.sha256, first.key) != (second.sha256, second.key)
    weights = onnx.load(str(second.onnx_path)).graph.initializer[0]
    expected = onnx.load(str(graph)).graph.initializer[0]
    assert (numpy_helper.to_array(weights) == numpy_helper.to_array(expected)).all()


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "a/../../x.bin"])
def test_an_external_location_outside_the_model_folder_is_refused(
    tmp_path: Path, location: str
) -> None:
    graph = real_models.external(tmp_path / "m", 0, "w.bin")
    model = onnx.load(str(graph), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(graph))
    with pytest.raises(ConfigError, match="external data location") as info:
        get_model(f"onnx:{graph}")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists()


# --- what ran is what the row says ---------------------------------------------------------


def test_a_named_axis_0_that_is_not_the_batch_is_bound_not_batched(tmp_path: Path) -> None:
    graph = f"onnx:{real_models.nonbatch_axis0(tmp_path)}"
    bound = get_model(graph, ("n_queries=16", "n_points=64"))
    assert bound.shapes(4, None) == {"points": (4, 64, 3), "queries": (16, 3)}
    arrays = bound.example_inputs(4, None)
    assert {n: a.shape for n, a in arrays.items()} == {"points": (4, 64, 3), "queries": (16, 3)}
    whole = get_model(graph, ("queries=16x3", "n_points=64"))
    assert whole.shapes(4, None)["queries"] == (16, 3)  # not 4x3
    for batches in (bound.batches("evaluation", 4, None)[0],):
        assert {b["queries"].shape for b in batches} == {(16, 3)}
    with pytest.raises(ConfigError, match="--dim n_queries="):
        get_model(graph, ("n_points=64",)).shapes(4, None)


def test_the_row_shape_is_built_from_the_fed_arrays() -> None:
    from harness.case import Case
    from harness.finalize import fed_shape_text

    case = Case("onnx:pq.onnx", "fp32", "onnxruntime", 4, None, 1, bindings=("queries=16x3",))
    fed = {"points": (4, 64, 3), "queries": (16, 3)}
    assert fed_shape_text(case, fed) == "b4-points=4x64x3-queries=16x3"
    zoo = Case("minilm-l6", "fp32", "onnxruntime", 8, 128, 1)
    assert fed_shape_text(zoo, {"input_ids": (8, 128)}) == zoo.shape == "b8s128"


# --- untimed work never destroys timed work --------------------------------------------------

FAST = TimingPolicy(warmup_max_s=0.05, min_samples=5, budget_s=0.1)


def test_an_error_in_the_fidelity_pass_is_recorded_next_to_the_kept_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.execute

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("all the input array dimensions except for the concatenation axis")

    monkeypatch.setattr(harness.execute, "fidelity_of", broken)
    graph = real_models.external(tmp_path, 0, "w.bin")
    artifact = build(f"onnx:{graph}", "fp32", tmp_path / "cache")
    case = Case(f"onnx:{graph}", "fp32", "onnxruntime", 2, None, 1,
                settings=CaseSettings(timing=FAST))  # fmt: skip
    row, samples = measure_here("r", case, artifact)
    assert row.status == "ok" and row.n_samples == len(samples) >= 5
    assert row.latency_ms_p50 is not None and row.fidelity is None
    assert row.reason == "untimed: fidelity not scored: ValueError: all the input array " \
        "dimensions except for the concatenation axis"  # fmt: skip


def _measurement(n: int, stop: str, **kw: object) -> Measurement:
    return Measurement(
        samples_ns=(900_000_000,) * n, warmup_iters=1, warmup_s=0.9, warmup_steady=False,
        stop_reason=stop, rel_ci_width=None, load_s=0.1, compile_s=None, first_inference_ms=900.0,
        model_mem_mb=1.0, peak_rss_mb=1.0, affinity="0", executed_precision=None, versions={},
        energy_note="", min_samples=30, budget_s=3.0, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_model_slower_than_its_budget_gets_its_samples_and_says_so() -> None:
    case = Case("onnx:slow.onnx", "fp32", "onnxruntime", 1, None, 1)
    row, samples = finalize("r", case, ARTIFACT, _measurement(4, "budget"), default_prices())
    assert row.status == "ok" and len(samples) == 4 and row.latency_ms_p50 == 900.0
    assert row.reason is not None and row.reason.startswith("too slow for this budget: 4 of 30")
    timed_out = _measurement(4, "budget", incomplete="worker: timed out after 30 s")
    row, _ = finalize("r", case, ARTIFACT, timed_out, default_prices())
    assert "untimed: worker: timed out after 30 s" in (row.reason or "")
    assert "hung" not in (row.reason or "")
    enough, _ = finalize("r", case, ARTIFACT, _measurement(30, "budget"), default_prices())
    assert enough.reason is None


def test_a_runtime_error_reason_is_its_informative_line() -> None:
    text = ("Exception from src/inference/src/cpp/core.cpp:121:\n"
            "Check 'false' failed at src/frontends/onnx/frontend/src/frontend.cpp:124:\n"
            "FrontEnd API failed with GeneralFailure:\n"
            "Errors during ONNX translation: unsupported op NonMaxSuppressionX\n")  # fmt: skip
    assert informative_line(text) == (
        "Errors during ONNX translation: unsupported op NonMaxSuppressionX"
    )
    assert informative_line("plain message") == "plain message"


# --- the regression gate checks coverage -----------------------------------------------------

GATE = """
    name = "gate"
    models = ["tiny-mlp"]
    backends = ["fake"]
    batch_sizes = {batches}
    threads = [1]
    [measure]
    budget_s = 0.1
    warmup_max_s = 0.05
    min_samples = 10
    [options.fake]
    latency_ms = 2.0
    {extra}
"""


def test_the_gate_fails_on_a_baseline_case_the_candidate_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main as cli_main

    def main(argv: list[str]) -> int:
        allowed = os.sched_getaffinity(0)  # inline cases pin this process: the fingerprint
        try:  # of the next run must see the same machine
            return cli_main(argv)
        finally:
            os.sched_setaffinity(0, allowed)

    def suite(name: str, batches: str, extra: str = "") -> str:
        path = tmp_path / f"{name}.toml"
        path.write_text(textwrap.dedent(GATE.format(batches=batches, extra=extra)))
        return str(path)

    baseline = tmp_path / "gate.json"
    common = ["--baseline", str(baseline), "--store", str(tmp_path / "s.duckdb"),
              "--report", str(tmp_path / "r.html"), "--min-effect", "0.5", "--inline"]  # fmt: skip
    assert main(["ci", suite("both", "[1, 2]"), *common, "--update-baseline"]) == 0
    capsys.readouterr()
    assert main(["ci", suite("one", "[1]"), *common]) == 1
    out = capsys.readouterr().out
    assert "not covered: tiny-mlp/fp32/fake/b2/single-stream: missing in the candidate" in out
    assert json.loads(baseline.read_text())["history"] == {}  # a failing run teaches nothing
    allowed = ["--allow-missing", "tiny-mlp/fp32/fake/b2/t1/single-stream"]
    assert main(["ci", suite("one", "[1]"), *common, *allowed]) == 0
    assert main(["ci", suite("other", "[4]"), *common]) == 2
    assert "no case in common" in capsys.readouterr().err
    skipped = suite("skip", "[1, 2]", 'fail = "unavailable"')
    assert main(["ci", skipped, *common]) == 1
    assert "status ok -> skipped" in capsys.readouterr().out


# --- files read back are validated, all or nothing; JSON out is strict -----------------------

DATA = Path(__file__).parent / "data"


def _runs(path: Path) -> list:
    if not path.exists():
        return []
    with Store(path, read_only=True) as store:
        return store.runs()


def test_an_older_writers_file_is_imported_and_a_duplicate_is_refused_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    store = tmp_path / "s.duckdb"
    older = DATA / "pytest-benchmark-older-fingerprint.json"
    assert main(["import", str(older), "--store", str(store)]) == 0
    with Store(store, read_only=True) as s:
        (run,) = s.runs()
        (row,) = s.cases(run["run_id"])
        assert row.latency_ms_p50 == 0.004327 and len(s.samples(run["run_id"], row.case_id)) == 339
        assert run["physical_cores"] is None and len(run["fingerprint_sha256"]) == 64
    duplicate = DATA / "pytest-benchmark-duplicate-case.json"
    assert main(["import", str(duplicate), "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(duplicate) in err and "appears twice" in err
    assert len(_runs(store)) == 1  # nothing of the refused file


def _damaged(tmp_path: Path, how: str) -> Path:
    data = json.loads((DATA / "pytest-benchmark-older-fingerprint.json").read_text())
    info = data["benchmarks"][0]["extra_info"]
    if how == "partial-samples":
        info["samples_ms"] = info["samples_ms"][:10]
    elif how == "nan-sample":
        info["samples_ms"][3] = float("nan")
    elif how == "bad-type":
        info["latency_ms_p50"] = "fast"
    elif how == "bad-status":
        info["status"] = "great"
    elif how == "no-fingerprint-cpu":
        del data["machine_info"]["infrabench"]["cpu_model"]
    elif how == "foreign":
        data = {"benchmarks": [{"name": "test_x", "stats": {}}], "machine_info": {}}
    path = tmp_path / f"{how}.json"
    text = json.dumps(data)
    path.write_text(text[: len(text) // 2] if how == "truncated" else text)
    return path


@pytest.mark.parametrize(
    ("how", "says"),
    [("truncated", "not a readable JSON file"), ("partial-samples", "10 samples for n_samples"),
     ("nan-sample", "samples_ms is not a list of finite numbers"),
     ("bad-type", "latency_ms_p50 = 'fast' is not a valid value"),
     ("bad-status", "status 'great'"), ("no-fingerprint-cpu", "cpu_model is missing"),
     ("foreign", "no infrabench cases")],
)  # fmt: skip
def test_a_damaged_file_is_one_line_exit_2_and_nothing_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, says: str
) -> None:
    from harness.cli import main

    path, store = _damaged(tmp_path, how), tmp_path / "s.duckdb"
    assert main(["import", str(path), "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and says in err
    assert _runs(store) == []


def test_json_out_is_strict_json() -> None:
    from harness import strict_json
    from harness.render import render

    row = CaseResult("r", "c", "m", "fp32", "onnxruntime", fidelity=float("nan"), cv=float("inf"))
    text = render([row], "json", "t")
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))
    assert parsed[0]["fidelity"] is None and parsed[0]["cv"] is None
    assert strict_json.dumps({"a": [1.0, float("-inf")]}) == '{"a": [1.0, null]}'


# --- every label matches what was computed ---------------------------------------------------


def test_the_energy_window_covers_only_the_timed_iterations(
    fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.measure.timing as timing

    work = {"runs": 0, "checks": 0}
    real_width = timing.p50_relative_ci_width

    def counted_width(*args: object) -> float | None:
        work["checks"] += 1
        return real_width(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(timing, "p50_relative_ci_width", counted_width)

    class Counting:
        """1 J per backend run and 1000 J per interval check while the probe runs."""

        source = "measured"

        def describe(self) -> str:
            return "counting"

        def start(self) -> None:
            self.at = work["runs"] + 1000 * work["checks"]

        def stop(self) -> EnergyReading:
            joules = work["runs"] + 1000 * work["checks"] - self.at
            return EnergyReading(joules, 1.0, "measured", "counting")

    def duration(i: int) -> int:
        work["runs"] += 1
        return 1_000_000 + (i % 7) * 100_000  # spread: several interval checks

    backend = FakeBackend(clock=fake_clock, durations=duration)
    policy = TimingPolicy(warmup_max_iters=5, min_samples=20, max_samples=200, budget_s=100)
    result = measure(backend, fake_clock, policy, Counting())  # type: ignore[arg-type]
    assert work["checks"] > 2 and result.energy is not None
    assert result.energy.joules == len(result.samples_ns)  # no check, no warm-up run


def test_interval_labels_follow_the_configured_confidence() -> None:
    from harness.columns import display_rows, notes
    from harness.measure.stats import min_samples_for

    rows = [
        CaseResult("r", "c", "m", "fp32", "onnxruntime", latency_ms_p50=1.0, n_samples=100,
                   latency_ms_p50_ci_low=0.9, latency_ms_p50_ci_high=1.1,
                   details=json.dumps({"confidence": 0.9}))
    ]  # fmt: skip
    headers, cells = display_rows(rows, ("p50_ci", "p99"))
    assert headers[0] == "p50 90% CI" and cells[0][1] == f"n<{min_samples_for(0.99, 0.9)}"
    assert min_samples_for(0.99, 0.9) != min_samples_for(0.99, 0.95)
    assert any("with a 90% interval" in line for line in notes(rows))
    case = Case("tiny-mlp", "fp32", "onnxruntime", 1, None, 1,
                settings=CaseSettings(timing=TimingPolicy(confidence=0.9)))  # fmt: skip
    row, _ = finalize("r", case, ARTIFACT, _measurement(30, "budget"), default_prices())
    details = json.loads(row.details or "{}")
    assert details["confidence"] == 0.9
    assert details["p99"] == f"insufficient samples (30 < {min_samples_for(0.99, 0.9)} for a " \
        "90% interval)"  # fmt: skip


# --- done when: one suite of awkward real models, one ok row per backend ----------------------


@pytest.mark.slow
def test_a_suite_of_awkward_models_stores_one_honest_ok_row_per_backend(tmp_path: Path) -> None:
    """A data-dependent output, a non-batch leading axis, external weights in a sub-folder,
    integer/boolean outputs and a NaN output, on onnxruntime and openvino: exit 0, every row
    ok with figures, fidelity scored where it can be and 'not scored: why' where it cannot."""
    import subprocess
    import sys

    models = tmp_path / "models"
    models.mkdir()
    real_models.dynamic_output(models)
    real_models.nonbatch_axis0(models)
    real_models.external(models, 0, "weights/w.bin")
    real_models.fp16_multi(models)
    real_models.nan_out(models)
    suite = tmp_path / "awkward.toml"
    suite.write_text(
        textwrap.dedent("""
        name = "awkward"
        models = ["onnx:models/dynout.onnx", "onnx:models/pq.onnx", "onnx:models/ext.onnx",
                  "onnx:models/fp16multi.onnx", "onnx:models/nan.onnx", "onnx:models/zero.onnx"]
        variants = ["fp32"]
        backends = ["onnxruntime", "openvino"]
        batch_sizes = [2]
        threads = [1]
        shapes = ["n_queries=16", "n_points=8"]
        [measure]
        budget_s = 0.2
        warmup_max_s = 0.1
        min_samples = 10
        timeout_s = 300
    """)
    )
    store = tmp_path / "s.duckdb"
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
         "run", str(suite), "--store", str(store), "--json"],
        capture_output=True, text=True, timeout=900, check=False, env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)  # strict JSON
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"}
    by = {(Path(r["model"].split(":", 1)[1]).name, r["backend"]): r for r in rows}
    for (name, _backend), row in by.items():
        assert row["latency_ms_p50"] > 0 and row["n_samples"] >= 10
        details = json.loads(row["details"])
        if name == "nan.onnx":
            assert row["fidelity"] is None
            assert details["fidelity"] == "not scored: the reference output 'y' has NaN"
        else:
            assert row["fidelity_ok"] is True and row["fidelity"] >= 0.99, (name, details)
    assert by[("pq.onnx", "openvino")]["shape"] == "b2-points=2x8x3-queries=16x3"
    assert json.loads(by[("fp16multi.onnx", "onnxruntime")]["details"])[
        "fidelity_per_output"] == {"y": 1.0, "cls": 1.0, "flag": 1.0}  # fmt: skip
    assert by[("ext.onnx", "onnxruntime")]["artifact_mb"] * 2**20 == pytest.approx(
        (models / "ext.onnx").stat().st_size + (models / "weights" / "w.bin").stat().st_size
    )


def test_an_unscored_fidelity_reads_not_scored_in_the_table() -> None:
    from harness.columns import display_rows

    why = {"fidelity": "not scored: the reference output 'y' has NaN"}
    row = CaseResult("r", "c", "m", "fp32", "onnxruntime", details=json.dumps(why))
    assert display_rows([row], ("fidelity",))[1] == [["not scored"]]
    plain = CaseResult("r", "c", "m", "fp32", "fake", details="{}")
    assert display_rows([plain], ("fidelity",))[1] == [["-"]]


def test_the_fidelity_pass_scores_only_the_batches_its_bound_allows(tmp_path: Path) -> None:
    from harness.backend import BackendSettings, backend_class
    from harness.execute import fidelity_of

    graph = real_models.external(tmp_path, 0, "w.bin")
    artifact = build(f"onnx:{graph}", "fp32", tmp_path / "cache")
    case = Case(f"onnx:{graph}", "fp32", "onnxruntime", 2, None, 1)
    backend = backend_class("onnxruntime")()
    backend.load(artifact, BackendSettings(threads=1, input_names=("x",), output_names=("y",)))
    try:
        bounded = fidelity_of(backend, case, artifact, max_batches=1)
        whole = fidelity_of(backend, case, artifact)
    finally:
        backend.close()
    assert bounded.coverage == "on 1 of 8 evaluation batches (the rest do not fit budget_s)"
    assert whole.coverage == "" and whole.fidelity is not None and whole.fidelity.value == 1.0


def test_a_zoo_artifact_keeps_its_sha256(tmp_path: Path) -> None:
    from harness.digest import file_sha256, onnx_digest

    artifact = build("tiny-mlp", "fp32", tmp_path / "cache")  # no external data
    assert artifact.sha256 == file_sha256(artifact.onnx_path) == onnx_digest(artifact.onnx_path)[0]


def test_compare_of_runs_with_no_case_in_common_is_an_error() -> None:
    from harness.compare import check_common, compare_runs, uncovered

    base = [CaseResult("a", "c1", "m", "fp32", "onnxruntime", shape="b1", status="ok")]
    other = [CaseResult("b", "c2", "m", "fp32", "openvino", shape="b1", status="ok")]
    rows = compare_runs(base, other, {}, True)
    with pytest.raises(ConfigError, match="no case in common"):
        check_common(rows, "run a", "run b")
    assert uncovered(rows, base) == [
        "m/fp32/onnxruntime/b1/single-stream: missing in the candidate"
    ]
    assert uncovered(rows, base, ("m/fp32/onnxruntime/*",)) == []


def test_exporter_placeholder_names_on_axis_0_stay_batched() -> None:
    from harness.models.inputs import TensorSpec, resolve_shapes

    ids = TensorSpec("input_ids", "int64", ("unk__0", "unk__1"), vocab=100)
    mask = TensorSpec("attention_mask", "int64", ("unk__2", "unk__3"))
    shapes = resolve_shapes([ids, mask], 4, 16, ["unk__1=16", "unk__3=16"], "m")
    assert shapes == {"input_ids": (4, 16), "attention_mask": (4, 16)}


def test_a_baseline_with_a_duplicate_case_or_nan_samples_is_refused(tmp_path: Path) -> None:
    from harness import runfile

    case = {"case_id": "c", "model": "m", "variant": "fp32", "backend": "onnxruntime",
            "run_id": "r", "status": "ok"}  # fmt: skip
    data = {"format": runfile.FORMAT, "version": runfile.VERSION, "history": {},
            "run": {"run_id": "r", "fingerprint_sha256": "f"}, "cases": [case, case],
            "samples": {"c": [1.0, 2.0]}}  # fmt: skip
    path = tmp_path / "base.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="case c appears twice"):
        runfile.read(path)
    data["cases"] = [case]
    data["samples"] = {"c": [1.0, float("nan")]}
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="non-finite"):
        runfile.read(path)
