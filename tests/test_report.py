"""Reports: chart geometry, a self-contained HTML file, and a real render in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness.compare import compare_runs
from harness.report.charts import latency_distributions, pareto_chart, pareto_front, speedup_heatmap
from harness.report.html import ReportRun, html_report
from harness.result import CaseResult

SCREENSHOT = Path(__file__).resolve().parent.parent / "results" / "report-screenshot.png"


def _rows(run_id: str = "r1") -> list[CaseResult]:
    rows = []
    for i, (variant, backend, p50, fid_ok) in enumerate([
        ("fp32", "torch-eager", 30.0, True), ("fp32", "onnxruntime", 20.0, True),
        ("int8-dynamic", "onnxruntime", 14.0, True), ("distilled-3l", "openvino", 10.0, False),
    ]):  # fmt: skip
        rows.append(CaseResult(
            run_id=run_id, case_id=f"c{i}", model="minilm-l6", variant=variant, backend=backend,
            shape="b1s128", status="ok", latency_ms_p50=p50, speedup_vs_baseline=30.0 / p50,
            fidelity_ratio=0.999 if fid_ok else 0.72, fidelity=0.999 if fid_ok else 0.72,
            fidelity_metric="cosine", fidelity_ok=fid_ok, cost_usd_per_million=p50 / 50,
            energy_source="estimated", energy_j_per_inference=0.1, artifact_sha256="a",
            versions="{}", threads=2,
        ))  # fmt: skip
    rows.append(CaseResult(run_id=run_id, case_id="c9", model="minilm-l6", variant="bf16",
                           backend="openvino", shape="b1s128", status="skipped",
                           reason="no native bf16"))  # fmt: skip
    return rows


def _samples(rows: list[CaseResult]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {r.case_id: rng.lognormal(np.log(r.latency_ms_p50), 0.05, 200)
            for r in rows if r.latency_ms_p50}  # fmt: skip


def test_pareto_front_minimises_latency_and_maximises_fidelity() -> None:
    points = [(10, 0.7), (14, 0.99), (20, 1.0), (30, 1.0), (15, 0.8)]
    assert pareto_front(points) == [0, 1, 2]


def test_heatmap_has_a_cell_per_backend_and_variant_and_crosses_fidelity_failures() -> None:
    svg = speedup_heatmap(_rows(), "t")
    assert svg.count('class="cell"') == 3 * 4  # 3 backends x 4 variants
    assert svg.count("<line") == 1  # distilled-3l fails the gate
    assert "3.00x" in svg and "skipped" in svg


def test_distributions_and_pareto_charts_draw_every_ok_case() -> None:
    rows = [r for r in _rows() if r.status == "ok"]
    assert latency_distributions(rows, _samples(rows), "t").count('class="box"') == 4
    assert pareto_chart(rows, "fidelity_ratio", "fid", True, "t").count('class="point"') == 4
    assert pareto_chart([], "fidelity_ratio", "fid", True, "t") == ""


def _report(tmp_path: Path) -> Path:
    base, cand = _rows("r1"), _rows("r2")
    run = {"run_id": "r1", "suite": "optimize", "cpu_model": "CPU", "logical_cpus": 2,
           "isa_flags": "avx2", "started_at": "2026-11-28", "versions": "{}"}  # fmt: skip
    samples_b, samples_c = _samples(base), _samples(cand)
    keyed = {("r1", k): v for k, v in samples_b.items()}
    keyed.update({("r2", k): v for k, v in samples_c.items()})
    comparison = compare_runs(base, cand, keyed, same_machine=True)
    html = html_report(
        [ReportRun(run, base, samples_b), ReportRun({**run, "run_id": "r2"}, cand, samples_c)],
        comparison,
    )
    path = tmp_path / "report.html"
    path.write_text(html)
    return path


def test_html_report_is_self_contained_with_every_section(tmp_path: Path) -> None:
    html = _report(tmp_path).read_text()
    assert "<script" not in html and not re.search(r'\s(src|href)="', html)
    assert html.count("<svg") == 2 * 4  # per run: heatmap, distributions, two Pareto charts
    assert "<h2>Comparison</h2>" in html
    assert 'class="fidelity-fail"' in html and 'class="est"' in html


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    path = _report(tmp_path)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
             "--log-level=0", "--window-size=1400,2400"]  # fmt: skip
    shot = subprocess.run(
        [chromium, *flags, f"--screenshot={SCREENSHOT}", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    console = [line for line in shot.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "rror" in line], console
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size > 10_000
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert dom.count("<svg") == 8 and "Comparison" in dom
