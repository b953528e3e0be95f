"""Reports: chart geometry, a self-contained HTML file, and a real render in headless Chromium."""

from __future__ import annotations

import html
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness.compare import compare_runs
from harness.report.charts import (
    FIDELITY_RESOLUTION,
    latency_distributions,
    log_ticks,
    nice_ticks,
    pareto_chart,
    pareto_front,
    resolution_of,
    speedup_heatmap,
    value_axis,
)
from harness.report.html import ReportRun, html_report
from harness.result import CaseResult


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


def test_pareto_front_keeps_ties_and_drops_the_dominated() -> None:
    assert pareto_front([(10, 1.0), (10, 1.0), (12, 1.0)]) == [0, 1]  # equal: neither dominates
    assert pareto_front([(10, 0.9), (10, 1.0)]) == [1]  # same speed, better fidelity
    assert pareto_front([]) == []


def test_fidelity_that_differs_only_by_rounding_ties_on_the_front() -> None:
    rows = [r for r in _rows() if r.variant == "fp32"]
    for r, ratio in zip(rows, (1.0, 0.99999994), strict=True):
        r.fidelity_ratio = ratio
    svg = pareto_chart(rows, "fidelity_ratio", "fid", True, "t", resolution=FIDELITY_RESOLUTION)
    front = re.search(r'class="front" points="([^"]*)"', svg)
    assert front and len(front.group(1).split()) == 1  # only the faster fp32 point
    ticks = re.findall(r'text-anchor="end">([^<]*)<', svg)
    assert len(ticks) >= 3 and len(set(ticks)) == len(ticks)  # never all "1"
    assert all(len(t.split(".")[1]) == 3 for t in ticks)  # 0.001: the ratio's resolution


def test_value_axis_never_magnifies_below_the_resolution() -> None:
    low, high, ticks = value_axis([0.9999999, 1.0, 0.99999995], 0.001)
    assert high - low >= 0.01 and low <= 0.99 and high >= 1.0
    assert all(b - a >= 0.001 for a, b in itertools.pairwise(ticks))
    low, high, ticks = value_axis([0.2, 0.6], resolution_of([0.2, 0.6]))
    assert low < 0.2 and high > 0.6 and ticks[0] >= low and ticks[-1] <= high
    assert nice_ticks(0.0, 175.0, 4) == [0.0, 50.0, 100.0, 150.0, 200.0]  # covers the top
    assert log_ticks(9.0, 34.0) == [9.0, 10.0, 20.0, 30.0]


def test_every_point_is_numbered_and_listed_with_backend_and_variant() -> None:
    rows = [r for r in _rows() if r.status == "ok"]
    svg = pareto_chart(rows, "cost_usd_per_million", "USD", False, "t")
    assert re.findall(r'class="label"[^>]*>(\d+)<', svg) == ["1", "2", "3", "4"]
    legend = re.findall(r'class="legend"[^>]*>([^<]*)<', svg)
    assert [entry.split(":")[0] for entry in legend] == [
        f"{i}  {r.backend} / {r.variant} / {r.shape}" for i, r in enumerate(rows, start=1)
    ]
    assert legend[3].endswith("FAIL")  # distilled-3l fails fidelity


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
    assert html.count('<div class="scroll">') == 1 + 2 * 2  # comparison; per run: two tables
    assert html.count("<figcaption>") == 8
    assert "<h2>Comparison</h2>" in html
    assert 'class="fidelity-fail"' in html and 'class="est"' in html


# Run in the page by the screenshot test only (the report itself has no script): measures what
# a reader sees at 1280 px and writes it into the DOM, which --dump-dom returns.
LAYOUT_CHECK = """<script>
window.addEventListener("load", () => {
  const box = (e) => e.getBoundingClientRect();
  const inside = (a, b) => a.left >= b.left - 0.5 && a.right <= b.right + 0.5 &&
                           a.top >= b.top - 0.5 && a.bottom <= b.bottom + 0.5;
  const meet = (a, b) => a.left < b.right - 2 && b.left < a.right - 2 &&
                         a.top < b.bottom - 2 && b.top < a.bottom - 2;
  const out = {page: document.documentElement.scrollWidth, cut: [], outside: [], overlap: []};
  for (const e of document.querySelectorAll("figure, body > .scroll, h1, h2, h3, figcaption"))
    if (e.scrollWidth > e.clientWidth + 1 || box(e).right > 1280)
      out.cut.push(e.textContent.slice(0, 60));
  for (const svg of document.querySelectorAll("svg")) {
    const texts = [...svg.querySelectorAll("text")];
    texts.forEach((t, i) => {
      if (!inside(box(t), box(svg))) out.outside.push(t.textContent);
      if (t.hasAttribute("transform")) return;
      for (const u of texts.slice(i + 1))
        if (!u.hasAttribute("transform") && meet(box(t), box(u)))
          out.overlap.push(t.textContent + " / " + u.textContent);
    });
  }
  document.body.setAttribute("data-layout", JSON.stringify(out));
});
</script>"""


@pytest.mark.slow
def test_html_report_at_1280_px_shows_every_column_and_labelled_points(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): no browser to render in")
    path = _report(tmp_path)
    screenshot = tmp_path / "report-1280.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--log-level=0", "--window-size=1280,4000"]  # fmt: skip
    shot = subprocess.run(
        [chromium, *flags, f"--screenshot={screenshot}", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if shot.returncode != 0 and not screenshot.exists():
        pytest.skip(f"Chromium cannot run here: {shot.stderr.strip().splitlines()[-1:]}")
    console = [line for line in shot.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "rror" in line], console
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
    checked = tmp_path / "checked.html"
    checked.write_text(path.read_text().replace("</body>", LAYOUT_CHECK + "</body>"))
    dom = subprocess.run(
        [chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found, "the layout check did not run"
    layout = json.loads(html.unescape(found.group(1)))
    assert layout["page"] <= 1280  # nothing widens the page: wide tables scroll in their box
    assert layout["cut"] == []  # every run table, chart and title fits: every column is seen
    assert layout["outside"] == []  # no label drawn past its chart's edge
    assert layout["overlap"] == []  # no two labels on top of each other
    assert dom.count("<svg") == 8 and "Comparison" in dom
