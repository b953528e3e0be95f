"""Rows of different hardware classes are a hardware comparison, never a regression."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from result_rows import FINGERPRINT

from harness.compare import compare_runs, hardware_speedups
from harness.report.html import ReportRun, html_report
from harness.result import CaseResult
from harness.store import Store


def _row(run: str, cls: str | None, p50: float, fidelity_ok: bool = True) -> CaseResult:
    case_id = "tiny-mlp/fp32/fake/b1/t1/single-stream" + (f"@{cls}" if cls else "")
    return CaseResult(run_id=run, case_id=case_id, model="tiny-mlp", variant="fp32",
                      backend="fake", shape="b1", threads=1, latency_ms_p50=p50,
                      fidelity_ok=fidelity_ok, hardware_class=cls)  # fmt: skip


def _samples(*rows: CaseResult) -> dict[tuple[str, str], np.ndarray]:
    rng = np.random.default_rng(0)
    return {(r.run_id, r.case_id): r.latency_ms_p50 * (1 + 0.01 * rng.standard_normal(200))
            for r in rows}  # fmt: skip


def test_a_case_moved_to_a_slower_class_is_not_a_regression() -> None:
    base, cand = _row("a", "cpu-amx", 1.0), _row("b", "cpu-avx2", 3.0, fidelity_ok=False)
    (row,) = compare_runs([base], [cand], _samples(base, cand), same_machine=False)
    assert row.verdict == "not comparable" and not row.regression
    assert row.reason == "hardware class differs: a hardware comparison, not a regression"
    assert row.hardware_class == "cpu-amx -> cpu-avx2" and row.ratio == pytest.approx(3.0)


def test_fleet_runs_pair_rows_class_by_class() -> None:
    base = [_row("a", "cpu-amx", 1.0), _row("a", "cpu-avx2", 2.0)]
    cand = [_row("b", "cpu-amx", 1.0), _row("b", "cpu-avx2", 4.0)]
    rows = compare_runs(base, cand, _samples(*base, *cand), same_machine=True)
    verdicts = {r.hardware_class: r.verdict for r in rows}
    assert verdicts == {"cpu-amx": "unchanged", "cpu-avx2": "slower"}


def test_speedups_per_class_side_by_side() -> None:
    rows = [_row("a", "cpu-amx", 1.0), _row("a", "cpu-avx2", 2.5), _row("a", "gpu", 0.5)]
    table = hardware_speedups(rows)
    assert [(t["hardware_class"], t["speedup_vs_slowest_class"]) for t in table] == [
        ("gpu", 5.0), ("cpu-amx", 2.5), ("cpu-avx2", 1.0)
    ]  # fmt: skip
    assert hardware_speedups([_row("a", None, 1.0), _row("a", "gpu", 0.5)]) == []


def test_speedup_vs_baseline_is_computed_within_each_class(tmp_path: Path) -> None:
    rows = []
    for cls, base_p50, cand_p50 in (("cpu-amx", 2.0, 1.0), ("cpu-avx2", 6.0, 2.0)):
        for backend, p50 in (("torch-eager", base_p50), ("onnxruntime", cand_p50)):
            r = _row("r", cls, p50)
            r.backend, r.status = backend, "ok"
            r.case_id = r.case_id.replace("/fake/", f"/{backend}/")
            rows.append(r)
    with Store(tmp_path / "s.duckdb") as store:
        store.start_run("r", "s", "s.toml", FINGERPRINT, ("torch-eager", "fp32"))
        for r in rows:
            store.add_case(r, [])
        got = {(r.backend, r.hardware_class): r.speedup_vs_baseline for r in store.cases("r")}
    assert got[("onnxruntime", "cpu-amx")] == pytest.approx(2.0)
    assert got[("onnxruntime", "cpu-avx2")] == pytest.approx(3.0)
    assert got[("torch-eager", "cpu-avx2")] == pytest.approx(1.0)


def test_the_html_report_puts_classes_side_by_side() -> None:
    rows = [_row("r", "cpu-amx", 1.0), _row("r", "cpu-avx2", 2.5)]
    for r in rows:
        r.status = "ok"
    run = {"run_id": "r", "suite": "s", "started_at": "-", **FINGERPRINT}
    page = html_report([ReportRun(run, rows, {})], None)
    assert "<h3>Across hardware classes</h3>" in page
    assert "cpu-amx</td><td>1</td><td>2.5</td>" in page
