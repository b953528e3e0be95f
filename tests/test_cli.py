"""The ``infrabench`` command end to end, as a user runs it."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import runfile
from harness.cli import main
from harness.result import COLUMNS

Write = Callable[..., Path]

TINY = """
    name = "tiny"
    models = ["tiny-mlp"]
    backends = ["torch-eager", "onnxruntime", "openvino", "fake"]
    batch_sizes = [1, 8]
    threads = [1]
    [measure]
    budget_s = 0.3
    warmup_max_s = 0.2
    timeout_s = 120
"""


def infrabench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())", *args],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    base = tmp_path_factory.mktemp("e2e")
    suite = base / "tiny.toml"
    suite.write_text(TINY)
    store = base / "store.duckdb"
    return store, infrabench("run", str(suite), "--store", str(store))


def test_run_prints_a_table_with_one_row_per_backend_and_batch(tiny_run: tuple) -> None:
    _, proc = tiny_run
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "tiny-mlp" in line]
    assert len(lines) == 8
    assert all(" ok " in line or " skipped " in line for line in lines)
    assert "suite tiny" in proc.stdout


def test_show_json_has_the_design_columns(tiny_run: tuple) -> None:
    store, _ = tiny_run
    proc = infrabench("show", "latest", "--format", "json", "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 8
    for row in rows:
        assert list(row) == list(COLUMNS)
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["backend"] for r in ok} >= {"fake", "onnxruntime"}
    assert all(r["latency_ms_p50"] > 0 and r["throughput_per_s"] > 0 for r in ok)
    for r in ok:  # fp32 on every real backend reproduces the fp32 reference
        if r["backend"] == "fake":
            assert r["fidelity"] is None and r["fidelity_ok"] is None  # computes no outputs
        else:
            assert r["fidelity_metric"] == "cosine" and r["fidelity"] > 0.99999
            assert r["fidelity_ok"] is True
    for r in ok:  # every ok row has energy, cost and carbon, each with its source
        assert r["energy_source"] in ("measured", "estimated")
        assert r["energy_j_per_inference"] > 0 and r["power_w"] > 0
        assert r["cost_usd_per_million"] > 0 and r["gco2_per_million"] > 0
    skipped = [r for r in rows if r["status"] != "ok"]
    assert all(r["energy_source"] is None and r["cost_usd_per_million"] is None for r in skipped)


def test_show_csv_and_markdown(tiny_run: tuple) -> None:
    store, _ = tiny_run
    out = infrabench("show", "--format", "csv", "--store", str(store)).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 8
    assert all(r["reason"] == "" for r in rows if r["status"] == "ok")  # null is empty, not 0
    md = infrabench("show", "--format", "markdown", "--store", str(store)).stdout
    assert md.count("| tiny-mlp |") == 8 and "|---|" in md


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope"], "unknown suite 'nope'; allowed:"),
        (["run", "quick", "--backend", "warp-drive"], "--backend: unknown value 'warp-drive'"),
        (["show", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["list", "gpus"], "argument what: invalid choice: 'gpus'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_bad_suite_file_is_exit_2(write_suite: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_suite('models = ["tiny-mlp"]\nbackends = ["fake"]\nbatch_sizes = "8"\n')
    assert main(["run", str(path), "--store", str(path.with_suffix(".duckdb"))]) == 2
    err = capsys.readouterr().err
    assert f"{path}: batch_sizes must be a non-empty list of positive integers" in err
    assert not path.with_suffix(".duckdb").exists()  # nothing was started


def test_show_without_a_store_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "--store", str(tmp_path / "none.duckdb")]) == 2
    assert "no results store here" in capsys.readouterr().err


def test_env_json_says_which_backends_are_usable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu_model"] and isinstance(data["isa_flags"], list)
    assert data["backends"]["fake"] == {"usable": True, "reason": None}
    assert data["versions"]["numpy"]


@pytest.mark.parametrize("what", ["backends", "models", "variants", "suites"])
def test_list(what: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", what]) == 0
    expected = {"backends": "onnxruntime", "models": "minilm-l6", "variants": "fp32",
                "suites": "quick"}[what]  # fmt: skip
    assert expected in capsys.readouterr().out


def test_failed_cases_make_run_exit_1(write_suite: Write, tmp_path: Path) -> None:
    path = write_suite(
        'models = ["tiny-mlp"]\nbackends = ["fake"]\n[measure]\nbudget_s = 0.2\n'
        '[options.fake]\nfail = "run"\n'
    )
    assert main(["run", str(path), "--store", str(tmp_path / "s.duckdb")]) == 1


CI_SUITE = """
    name = "gate"
    models = ["tiny-mlp"]
    backends = ["fake"]
    threads = [1]
    [measure]
    budget_s = 0.5
    warmup_max_s = 0.2
    [options.fake]
    latency_ms = {latency}
"""


def test_ci_gates_on_an_injected_slowdown(
    write_suite: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    store, baseline = str(tmp_path / "s.duckdb"), tmp_path / "baselines" / "gate.json"
    normal = write_suite(CI_SUITE.format(latency=2.0), name="gate.toml")
    slow = write_suite(CI_SUITE.format(latency=3.0), name="gate-slow.toml")
    report = tmp_path / "ci.html"
    common = ["--baseline", str(baseline), "--store", store, "--min-effect", "0.2",
              "--report", str(report)]  # fmt: skip
    assert main(["ci", str(normal), *common]) == 2
    assert "no baseline here; create it with --update-baseline" in capsys.readouterr().err
    assert main(["ci", str(normal), *common, "--update-baseline"]) == 0
    assert json.loads(baseline.read_text())["format"] == "infrabench-run"
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert main(["ci", str(normal), *common]) == 0
    assert re.search(r"\| unchanged( \(noisy\))? \|", summary.read_text())  # noisy: load
    history = json.loads(baseline.read_text())["history"]  # a passing run teaches the drift
    assert [len(v) for v in history.values()] == [1]
    assert main(["ci", str(slow), *common]) == 1  # 2 ms -> 3 ms in the fake backend
    assert re.search(r"\| slower( \(noisy\))? \|", summary.read_text())
    assert "<h2>Comparison</h2>" in report.read_text()
    baseline.write_text("{}")
    assert main(["ci", str(normal), *common]) == 2
    assert "not an infrabench run file" in capsys.readouterr().err


def test_export_writes_a_run_file(tiny_run: tuple, tmp_path: Path) -> None:
    store, _ = tiny_run
    out = tmp_path / "run.json"
    proc = infrabench("export", "latest", "-o", str(out), "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["version"] == runfile.VERSION and len(data["cases"]) == 8 and data["history"] == {}
    ok = [c for c in data["cases"] if c["status"] == "ok"]
    assert all(len(data["samples"][c["case_id"]]) == c["n_samples"] for c in ok)


def test_a_repeated_baseline_seeds_the_drift_history(
    write_suite: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, baseline = str(tmp_path / "s.duckdb"), tmp_path / "gate.json"
    normal = write_suite(CI_SUITE.format(latency=2.0), name="gate.toml")
    slow = write_suite(CI_SUITE.format(latency=3.0), name="gate-slow.toml")
    common = ["--baseline", str(baseline), "--store", store, "--report", str(tmp_path / "r.html")]
    assert main(["ci", str(normal), *common, "--repeat", "2"]) == 2  # needs --update-baseline
    assert "only with --update-baseline" in capsys.readouterr().err
    assert main(["ci", str(normal), *common, "--update-baseline", "--repeat", "3"]) == 0
    history = json.loads(baseline.read_text())["history"]
    assert history and all(len(v) == 2 for v in history.values())
    capsys.readouterr()
    assert main(["ci", str(normal), *common]) == 0  # at the default 5%, with a floor shown
    out = capsys.readouterr().out
    assert "noise floor" in out and "unchanged" in out
    assert main(["ci", str(slow), *common]) == 1  # the fake clock does not drift: still caught


@pytest.mark.parametrize(
    ("command", "flag", "name"),
    [("report", "-o", "x.pdf"), ("ci", "--report", "r.txt"), ("recommend", "--html", "rec.md")],
)
def test_an_output_name_that_promises_another_format_is_refused_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, flag: str, name: str
) -> None:
    store = tmp_path / "s.duckdb"
    extra = {"ci": ["--model", "tiny-mlp", "--backend", "fake", "--inline", "--baseline",
                    str(tmp_path / "b.json"), "--update-baseline"],
             "recommend": ["--objective", "cost"], "report": []}[command]  # fmt: skip
    assert main([command, *extra, flag, str(tmp_path / name), "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "name the file with one of: .html" in err
    assert not store.exists() and not (tmp_path / name).exists()
