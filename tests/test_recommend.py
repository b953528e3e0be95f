"""The recommendation over synthetic rows: front, confidence rule and every explanation line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.recommend import (
    OBJECTIVES,
    Constraints,
    command,
    dominates,
    labels,
    pareto_front,
    recommend,
    row_hardware_class,
    suite_snippet,
)
from harness.result import CaseResult
from harness.store import Store


def row(variant: str, backend: str = "onnxruntime", **kw: Any) -> CaseResult:
    values: dict[str, Any] = {
        "run_id": "r1",
        "case_id": f"m/{variant}/{backend}",
        "model": "m",
        "variant": variant,
        "backend": backend,
        "batch_size": 1,
        "threads": 2,
        "shape": "b1",
        "energy_source": "measured",
    }
    values.update(kw)
    return CaseResult(**values)


def ok(
    variant: str, cost: float, p99: float, high: float | None, fid: float, **kw: Any
) -> CaseResult:
    return row(
        variant,
        cost_usd_per_million=cost,
        latency_ms_p99=p99,
        latency_ms_p99_ci_low=p99 * 0.9,
        latency_ms_p99_ci_high=high,
        fidelity_ratio=fid,
        **kw,
    )


def grid() -> list[CaseResult]:
    return [
        ok("fp32", 2.0, 5.0, 6.0, 1.0),  # A: feasible, on the front by fidelity
        ok("int8-dynamic", 1.0, 4.0, 4.5, 0.995),  # B: the winner
        ok("int8-static", 0.5, 3.0, 3.5, 0.97),  # C: cheapest and fastest, fidelity too low
        ok("fp16", 3.0, 6.0, 7.0, 1.0, backend="torch-eager"),  # D: dominated by A
        ok("bf16", 0.8, 9.0, 12.0, 0.999),  # E: p99 within 10, its upper bound is not
        row("pruned-unstructured-50", cost_usd_per_million=0.1, fidelity_ratio=1.0),  # F: no p99
        ok("distilled-3l", 5.0, 8.0, None, 1.0),  # G: p99 without an interval
        row("pruned-structured-30", status="failed", reason="worker crashed"),  # H
        ok("int8-dynamic", 1.0, 4.0, 4.5, 0.995, backend="openvino"),  # I: ties B exactly
    ]


def test_the_recommendation_explains_every_row_exactly() -> None:
    rec = recommend(grid(), "cost", Constraints(max_p99_ms=10.0, min_fidelity=0.99))
    lines = [(v.label, v.role, v.on_front, v.why) for v in rec.verdicts]
    assert lines == [
        ("int8-dynamic/onnxruntime/b1/t2", "winner", True,
         "winner: lowest cost among 4 feasible (1 USD/M)"),
        ("int8-dynamic/openvino/b1/t2", "runner-up", True,
         "runner-up: cost 1 USD/M vs the winner's 1; "
         "ties the winner on every criterion; ranked after it by name"),
        ("fp32/onnxruntime/b1/t2", "feasible", True,
         "feasible; cost 2 USD/M vs the winner's 1; on the Pareto front (better fidelity)"),
        ("fp16/torch-eager/b1/t2", "feasible", False,
         "feasible; cost 3 USD/M vs the winner's 1; "
         "dominated by fp32/onnxruntime/b1/t2 on cost and latency"),
        ("int8-static/onnxruntime/b1/t2", "excluded", True, "fidelity 0.97 < 0.99"),
        ("bf16/onnxruntime/b1/t2", "excluded", True,
         "violates p99 by 2 ms (upper bound 12 > 10 ms)"),
        ("pruned-unstructured-50/onnxruntime/b1/t2", "excluded", False,
         "p99 interval unknown (too few samples)"),
        ("distilled-3l/onnxruntime/b1/t2", "excluded", False,
         "p99 interval unknown (too few samples)"),
        ("pruned-structured-30/onnxruntime/b1/t2", "excluded", False, "failed: worker crashed"),
    ]  # fmt: skip
    assert rec.winner is not None and rec.winner.row.backend == "onnxruntime"
    assert rec.runner_up is not None and rec.runner_up.row.backend == "openvino"
    assert rec.notes == [] and rec.energy_source == "measured"


def test_the_p99_bound_is_met_only_at_the_upper_end_of_its_interval() -> None:
    bound = Constraints(max_p99_ms=10.0)
    inside = ok("fp32", 1.0, 9.0, 10.0, 1.0)
    straddles = ok("fp32", 1.0, 9.0, 10.5, 1.0)
    assert recommend([inside], "cost", bound).verdicts[0].role == "winner"
    only = recommend([straddles], "cost", bound)
    assert only.winner is None
    assert only.verdicts[0].why == "violates p99 by 0.5 ms (upper bound 10.5 > 10 ms)"


def test_the_front_keeps_exact_ties_and_drops_the_dominated() -> None:
    cost = OBJECTIVES["cost"]
    a = ok("a", 1.0, 2.0, 3.0, 0.99)
    twin = ok("twin", 1.0, 2.0, 3.0, 0.99)
    same_but_slower = ok("slower", 1.0, 2.5, 3.0, 0.99)
    trade = ok("trade", 0.5, 4.0, 5.0, 0.99)
    assert not dominates(a, twin, cost) and not dominates(twin, a, cost)
    assert dominates(a, same_but_slower, cost)
    assert pareto_front([a, twin, same_but_slower, trade], cost) == [a, twin, trade]
    # fidelity counts only where both rows have it
    unscored = ok("unscored", 2.0, 3.0, 3.5, 1.0)
    unscored.fidelity_ratio = None
    assert dominates(a, unscored, cost)


def test_a_tie_on_the_objective_is_broken_by_the_p99_upper_bound() -> None:
    rows = [ok("slow", 1.0, 2.0, 3.0, 0.99), ok("fast", 1.0, 2.0, 2.5, 0.99)]
    rec = recommend(rows, "cost", Constraints())
    assert [v.label for v in rec.verdicts] == ["fast/onnxruntime/b1/t2", "slow/onnxruntime/b1/t2"]
    assert rec.verdicts[1].why == (
        "runner-up: cost 1 USD/M vs the winner's 1; ties the winner on every criterion; "
        "ranked after it by p99 upper bound"
    )


def test_energy_sources_are_ranked_apart_and_the_output_says_so() -> None:
    rows = [
        row("fp32", energy_j_per_inference=0.5, latency_ms_p99=3.0, latency_ms_p99_ci_high=3.2),
        row("int8-dynamic", energy_j_per_inference=0.2, latency_ms_p99=2.0,
            latency_ms_p99_ci_high=2.2, energy_source="estimated"),
    ]  # fmt: skip
    rec = recommend(rows, "energy", Constraints())
    assert rec.energy_source == "measured"
    assert [v.why for v in rec.verdicts] == [
        "winner: lowest energy among 1 feasible (0.5 J)",
        "energy estimated: not ranked against measured energy",
    ]
    assert rec.notes == [
        "rows mix energy sources (estimated 1, measured 1): ranked within measured only "
        "(--energy-source picks another, or any to rank across)"
    ]
    estimated = recommend(rows, "energy", Constraints(), energy_source="estimated")
    assert estimated.winner is not None and estimated.winner.row.variant == "int8-dynamic"
    mixed = recommend(rows, "energy", Constraints(), energy_source="any")
    assert mixed.winner is not None and mixed.winner.row.variant == "int8-dynamic"
    assert mixed.notes == ["ranking mixes energy sources (estimated, measured) as requested"]
    # latency needs no energy: every source is ranked together, silently and rightly
    assert recommend(rows, "latency", Constraints()).notes == []


def test_hardware_memory_and_fidelity_flag_constraints() -> None:
    gpu = ok("fp16", 5.0, 1.0, 1.1, 1.0, device="cuda:0", device_mem_mb=900.0, peak_rss_mb=300.0)
    cpu = ok("fp32", 1.0, 4.0, 4.4, 1.0, peak_rss_mb=200.0)
    failing = ok("int8-static", 0.5, 3.0, 3.3, 0.9, fidelity_ok=False, peak_rss_mb=100.0)
    unmeasured = ok("bf16", 0.7, 3.0, 3.3, 1.0)
    assert [row_hardware_class(r) for r in (gpu, cpu)] == ["gpu-datacenter", "cpu-vcpu"]
    rec = recommend([gpu, cpu, failing, unmeasured], "throughput", Constraints(
        max_memory_mb=500.0, hardware=("gpu-datacenter",)))  # fmt: skip
    assert [v.why for v in rec.verdicts] == [
        "memory 900 MB > 500 MB",
        "hardware cpu-vcpu not among gpu-datacenter",
        "hardware cpu-vcpu not among gpu-datacenter; fails its suite's fidelity threshold",
        "hardware cpu-vcpu not among gpu-datacenter; memory not measured",
    ]
    assert rec.winner is None


def test_throughput_is_maximised_and_labels_name_the_hardware_when_it_varies() -> None:
    slow = ok("fp32", 1.0, 4.0, 4.4, 1.0, throughput_per_s=100.0)
    fast = ok("fp32", 9.0, 1.0, 1.1, 1.0, throughput_per_s=900.0, device="cuda:0")
    rec = recommend([slow, fast], "throughput", Constraints())
    assert [v.why for v in rec.verdicts] == [
        "winner: highest throughput among 2 feasible (900 /s)",
        "runner-up: throughput 100 /s vs the winner's 900; "
        "dominated by fp32/onnxruntime/b1/t2 on gpu-datacenter on throughput and latency",
    ]


def test_labels_add_the_run_id_only_where_still_ambiguous() -> None:
    rows = [ok("fp32", 1.0, 1.0, 1.1, 1.0), ok("fp32", 1.0, 1.0, 1.1, 1.0, run_id="r2")]
    rows.append(ok("fp16", 1.0, 1.0, 1.1, 1.0))
    assert labels(rows) == [
        "fp32/onnxruntime/b1/t2 (r1)", "fp32/onnxruntime/b1/t2 (r2)", "fp16/onnxruntime/b1/t2"
    ]  # fmt: skip


def test_bad_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown objective 'speed'; allowed: cost, energy"):
        recommend(grid(), "speed", Constraints())
    with pytest.raises(ConfigError, match="no rows"):
        recommend([], "cost", Constraints())
    with pytest.raises(ConfigError, match=r"several models \(m, other\)"):
        recommend([*grid(), row("fp32", model="other")], "cost", Constraints())
    with pytest.raises(ConfigError, match="TTFT p99 bound applies to decoder"):
        recommend(grid(), "cost", Constraints(max_ttft_ms=50.0))
    decoders = [replace(r, gen_len=8, seq_len=32) for r in grid()]  # 5 generations: no p99
    with pytest.raises(ConfigError, match="TPOT p99 bound needs a p99 with its interval, which "
                                          "takes at least 368 generations"):  # fmt: skip
        recommend(decoders, "cost", Constraints(max_tpot_ms=50.0))
    with pytest.raises(ConfigError, match=r"p99 bound needs a p99 .* at least 368 samples"):
        recommend([replace(r, latency_ms_p99=None) for r in grid()], "cost",
                  Constraints(max_p99_ms=50.0))  # fmt: skip
    with pytest.raises(ConfigError, match="unknown energy source 'guessed'"):
        recommend(grid(), "cost", Constraints(), energy_source="guessed")


def test_the_winner_comes_with_its_command_and_suite_snippet() -> None:
    text = ok("int8-dynamic", 1.0, 4.0, 4.5, 1.0, seq_len=128, shape="b8s128", batch_size=8)
    assert command(text, "optimize") == (
        "infrabench run optimize --model m --variant int8-dynamic --backend onnxruntime "
        "--batch 8 --seq 128 --threads 2"
    )
    decoder = ok("int4-weight", 1.0, 4.0, 4.5, 1.0, model="smollm2-135m", seq_len=128,
                 prompt_len=128, gen_len=64, shape="b4p128g64", batch_size=4)  # fmt: skip
    assert command(decoder, "llm") == (
        "infrabench run llm --model smollm2-135m --variant int4-weight --backend onnxruntime "
        "--batch 4 --prompt-len 128 --gen-len 64 --threads 2"
    )
    assert "prompt_lens = [128]\ngen_lens = [64]\n" in suite_snippet(decoder, None)
    image = ok("fp32", 1.0, 4.0, 4.5, 1.0, model="onnx:/tmp/y v8.onnx",
               shape="b1-images=1x3x64x64-height=640")  # fmt: skip
    assert command(image, None) == (
        "infrabench run quick --model 'onnx:/tmp/y v8.onnx' --variant fp32 --backend onnxruntime "
        "--batch 1 --threads 2 --shape images=1x3x64x64 --dim height=640"
    )
    assert suite_snippet(image, 0.99) == (
        'name = "recommended"\n'
        'models = ["onnx:/tmp/y v8.onnx"]\n'
        'variants = ["fp32"]\n'
        'backends = ["onnxruntime"]\n'
        "batch_sizes = [1]\n"
        "threads = [2]\n"
        'shapes = ["images=1x3x64x64"]\n'
        "fidelity_min_ratio = 0.99\n"
        "\n"
        "[dims]\n"
        '"height" = [640]\n'
    )


FP = {"versions": {"infrabench": "0"}, "fingerprint_sha256": "f", "cpu_model": "cpu",
      "isa_flags": [], "physical_cores": 2, "logical_cpus": 2, "memory_gb": 8.0, "os": "linux",
      "python": "3.11"}  # fmt: skip


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    path = tmp_path / "store.duckdb"
    with Store(path) as store:
        store.start_run("20260101-a", "optimize", "suites/optimize.toml", FP)
        for r in grid():
            r.run_id = "20260101-a"
            store.add_case(r, [])
        store.start_run("20260102-b", "gpu", "suites/gpu.toml", FP)
        gpu = ok("fp16", 1.5, 1.0, 1.2, 0.999, run_id="20260102-b", device="cuda:0")
        store.add_case(gpu, [])
    return path


def test_cli_picks_the_winner_and_prints_how_to_reproduce_it(
    store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["recommend", "20260101", "--store", str(store_file), "--max-p99-ms", "10",
                 "--min-fidelity", "0.99", "--objective", "cost"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "winner: lowest cost among 4 feasible (1 USD/M)" in out
    assert "fidelity 0.97 < 0.99" in out
    assert ("reproduce: infrabench run optimize --model m --variant int8-dynamic "
            "--backend onnxruntime --batch 1 --threads 2") in out  # fmt: skip
    assert '  backends = ["onnxruntime"]' in out


def test_cli_combines_runs_and_writes_json(
    store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["recommend", "20260101", "20260102", "--store", str(store_file), "--objective",
                 "latency", "--max-p99-ms", "10", "--format", "json"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["winner"] == "fp16/onnxruntime/b1/t2 on gpu-datacenter"
    assert data["command"].startswith("infrabench run gpu --model m --variant fp16")
    assert len(data["verdicts"]) == 10
    assert data["verdicts"][0]["hardware_class"] == "gpu-datacenter"


def test_cli_exits_1_when_nothing_meets_the_constraints(
    store_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["recommend", "--store", str(store_file), "--objective", "cost",
                 "--max-p99-ms", "0.5", "--format", "markdown"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "No configuration meets the constraints." in out
    assert "violates p99 by 0.7 ms (upper bound 1.2 &gt; 0.5 ms)" in out  # markdown: escaped


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "speed"], "invalid choice: 'speed'"),
        (["--objective", "cost", "nope"], "no run matches 'nope'"),
        (["--objective", "cost", "--model", "x"], "recommend: no rows of model 'x' in run(s)"),
        (["--objective", "cost", "--min-fidelity", "1.5"], "must lie in (0, 1], got 1.5"),
        (["--objective", "cost", "--max-ttft-ms", "5"], "TTFT p99 bound applies to decoder"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    store_file: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", "--store", str(store_file), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_without_runs_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store(tmp_path / "empty.duckdb"):
        pass
    args = ["recommend", "--store", str(tmp_path / "empty.duckdb"), "--objective", "cost"]
    assert main(args) == 2
    assert "holds no runs yet" in capsys.readouterr().err


def test_the_report_section_marks_the_winner_and_the_front(
    store_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = tmp_path / "out" / "rec.html"
    code = main(["recommend", "20260101", "--store", str(store_file), "--max-p99-ms", "10",
                 "--min-fidelity", "0.99", "--objective", "cost", "--html", str(html)])  # fmt: skip
    assert code == 0
    text = html.read_text("utf-8")
    assert "<h2>Recommendation</h2>" in text
    assert "lowest cost: <b>int8-dynamic/onnxruntime/b1/t2</b>" in text
    assert text.count('class="point winner"') == 1 and ">winner</text>" in text
    rec = recommend(grid(), "cost", Constraints(max_p99_ms=10.0, min_fidelity=0.99))
    charted = [v for v in rec.verdicts if v.row.latency_ms_p99 is not None]
    assert text.count('stroke="#e6550d" stroke-width="2"') == sum(v.on_front for v in charted)
    assert text.count("<circle") == len(charted)
    assert "<h2>Run 20260101-a" in text  # the run's own section follows


def test_without_a_latency_bound_an_unknown_p99_is_ranked_but_not_placed_on_the_front() -> None:
    few = row("int8-dynamic", cost_usd_per_million=0.5, fidelity_ratio=1.0)  # no p99
    timed = ok("fp32", 1.0, 2.0, 2.2, 1.0)
    unknown_cost = row("fp16", latency_ms_p99=1.0, latency_ms_p99_ci_high=1.1, fidelity_ratio=1.0)
    rec = recommend([timed, few, unknown_cost], "cost", Constraints())
    assert [(v.label, v.on_front, v.why) for v in rec.verdicts] == [
        ("int8-dynamic/onnxruntime/b1/t2", False,
         "winner: lowest cost among 2 feasible (0.5 USD/M)"),
        ("fp32/onnxruntime/b1/t2", True,
         "runner-up: cost 1 USD/M vs the winner's 0.5; on the Pareto front"),
        ("fp16/onnxruntime/b1/t2", False, "cost unknown"),
    ]  # fmt: skip
    few.cost_usd_per_million = 2.0
    later = recommend([few, timed], "cost", Constraints())
    assert later.runner_up is not None
    assert later.runner_up.why == (
        "runner-up: cost 2 USD/M vs the winner's 1; "
        "p99 unknown (too few samples): not placed on the Pareto front"
    )
