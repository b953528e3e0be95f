"""The pytest plugin end to end: an inner pytest session with pytest-benchmark, then import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.store import Store

pytest_plugins = ["pytester"]

INNER = """
import pytest

@pytest.mark.parametrize("backend", ["fake", "onnxruntime", "warp-drive-missing"])
def test_tiny(infrabench_case, backend):
    row = infrabench_case("tiny-mlp", "fp32", backend, batch_size=4)
    assert row.status == "ok"
"""


@pytest.mark.slow
def test_fixture_reports_to_pytest_benchmark_and_imports(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(test_inner=INNER)
    out = tmp_path / "bench.json"
    result = pytester.runpytest_subprocess(
        "--benchmark-only", f"--benchmark-json={out}", "--infrabench-budget=0.3",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    result.assert_outcomes(passed=2, failed=1)  # an unknown backend is a ConfigError
    result.stdout.fnmatch_lines(["*ConfigError*backends: unknown value 'warp-drive-missing'*"])
    data = json.loads(out.read_text())
    assert data["machine_info"]["infrabench"]["cpu_model"]
    by_backend = {b["extra_info"]["backend"]: b for b in data["benchmarks"]}
    ort = by_backend["onnxruntime"]
    info = ort["extra_info"]
    assert (
        info["case_id"]
        == "tiny-mlp/fp32/onnxruntime/b4/t" + str(info["threads"]) + "/single-stream"
    )
    assert ort["stats"]["rounds"] == info["n_samples"] == len(info["samples_ms"])
    assert ort["stats"]["median"] * 1000 == pytest.approx(info["latency_ms_p50"], rel=1e-9)
    assert info["fidelity_ok"] is True and info["energy_source"] in ("measured", "estimated")

    store_path = tmp_path / "s.duckdb"
    assert main(["import", str(out), "--store", str(store_path)]) == 0
    with Store(store_path, read_only=True) as store:
        run_id = store.resolve_run("latest")
        rows = store.cases(run_id)
        assert {r.backend for r in rows} == {"fake", "onnxruntime"}
        assert all(len(store.samples(run_id, r.case_id)) == r.n_samples for r in rows)


def test_import_refuses_foreign_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"benchmarks": []}))
    assert main(["import", str(path), "--store", str(tmp_path / "s.duckdb")]) == 2
    assert "no infrabench cases in it" in capsys.readouterr().err
