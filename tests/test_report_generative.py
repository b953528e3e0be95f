"""Decoder rows in the table and the HTML report: TTFT beside TPOT, decode tokens/s against
batch size. Checks read the numbers the SVG carries (data-* attributes), not pixels."""

from __future__ import annotations

import re
from html import unescape

import numpy as np

from harness.columns import (
    GENERATIVE_COLUMNS,
    LLM_LOAD_COLUMNS,
    LOAD_COLUMNS,
    MIXED_COLUMNS,
    default_view,
)
from harness.render import markdown, table
from harness.report.generative_charts import decode_series, decode_vs_batch, ttft_tpot_chart
from harness.report.html import ReportRun, html_report
from harness.result import CaseResult

# (backend, variant, batch, prompt_len) -> (ttft p50, ttft p99, tpot p50, tpot p99, decode tok/s)
MEASURED = {
    ("torch-eager", "fp32", 1, 128): (120.0, 150.0, 20.0, 24.0, 50.0),
    ("torch-eager", "fp32", 4, 128): (400.0, None, 25.0, None, 160.0),
    ("torch-eager", "fp32", 1, 512): (480.0, 520.0, 22.0, 23.5, 45.45),
    ("openvino", "int4-weight", 1, 128): (60.0, 61.0, 8.0, 8.5, 125.0),
    ("openvino", "int4-weight", 4, 128): (210.0, 230.0, 10.0, 11.0, 400.0),
}


def _rows() -> list[CaseResult]:
    rows = []
    for i, ((backend, variant, batch, prompt), values) in enumerate(MEASURED.items()):
        ttft, ttft99, tpot, tpot99, tps = values
        rows.append(CaseResult(
            run_id="r1", case_id=f"g{i}", model="smollm2-135m", variant=variant, backend=backend,
            batch_size=batch, seq_len=prompt, prompt_len=prompt, gen_len=64, threads=2,
            shape=f"b{batch}p{prompt}g64", status="ok", latency_ms_p50=ttft + 63 * tpot,
            ttft_ms_p50=ttft, ttft_ms_p99=ttft99, tpot_ms_p50=tpot, tpot_ms_p99=tpot99,
            decode_tokens_per_s=tps, n_samples=5, versions="{}",
        ))  # fmt: skip
    rows.append(CaseResult(run_id="r1", case_id="s", model="smollm2-135m", variant="fp32",
                           backend="openvino", batch_size=4, seq_len=512, prompt_len=512,
                           gen_len=64, shape="b4p512g64", status="skipped",
                           reason="no streamer"))  # fmt: skip
    return rows


def _attrs(svg: str, cls: str) -> list[dict[str, str]]:
    found = re.findall(rf'<\w+ class="{cls}"([^>]*)>', svg)
    return [{k: unescape(v) for k, v in re.findall(r'(data-[\w-]+)="([^"]*)"', a)} for a in found]


def test_decoder_rows_get_ttft_beside_tpot_in_the_default_table() -> None:
    rows = _rows()
    assert default_view(rows)[0] == GENERATIVE_COLUMNS
    header = table(rows).splitlines()[0]
    names = ["TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms", "decode tok/s"]
    positions = [header.index(n) for n in names]
    assert positions == sorted(positions)  # side by side, in this order
    assert "p50 ms ±CI" not in header and "items/s" not in header
    line = next(x for x in table(rows).splitlines() if "b4p128g64" in x and "torch" in x)
    assert "400.0" in line and "25.00" in line and "n<" in line  # p99s with 5 requests
    md = markdown(rows)
    assert "| TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | TPOT p99 ms | decode tok/s |" in md


def test_encoder_and_decoder_rows_together_show_both_latencies() -> None:
    encoder = CaseResult(run_id="r1", case_id="e", model="minilm-l6", variant="fp32",
                         backend="onnxruntime", shape="b1s128", latency_ms_p50=3.0)  # fmt: skip
    keys, _ = default_view([encoder, *_rows()])
    assert keys == MIXED_COLUMNS and keys.index("ttft") == keys.index("p99") + 1


def test_rows_under_load_show_their_offered_and_achieved_rate_goodput_and_validity() -> None:
    def rate(r: float, achieved: float, goodput: float) -> CaseResult:
        return CaseResult(run_id="r1", case_id=f"l{r}", model="smollm2-135m",
                          variant="int8-weight", backend="openvino", scenario="llm-server",
                          serving=f"mb8-r{r:g}rps", status="ok", target_qps=r,
                          achieved_qps=achieved, goodput_rps=goodput, error_rate=0.25,
                          valid=False, ttft_ms_p50=110.0, tpot_ms_p50=18.0)  # fmt: skip

    rows = [rate(2, 1.66, 1.66), rate(8, 4.85, 2.02)]
    assert default_view(rows)[0] == LLM_LOAD_COLUMNS
    lines = table(rows).splitlines()
    assert "target/s" in lines[0] and "goodput/s" in lines[0] and "errors" in lines[0]
    line = next(x for x in lines if "mb8-r8rps" in x)
    assert "8.000" in line and "4.850" in line and "2.020" in line and "25%" in line
    server = CaseResult(run_id="r1", case_id="s", model="minilm-l6", variant="fp32",
                        backend="onnxruntime", scenario="server", serving="i1-mb1-d0ms",
                        status="ok", target_qps=27.9, achieved_qps=27.0, valid=True)  # fmt: skip
    assert default_view([server])[0] == LOAD_COLUMNS
    assert " VALID " in next(x for x in table([server]).splitlines() if "i1-mb1-d0ms" in x)
    assert default_view([server, *rows])[0] == LOAD_COLUMNS


def test_ttft_tpot_chart_draws_p50_bars_and_p99_ticks_per_configuration() -> None:
    ok = [r for r in _rows() if r.status == "ok" and r.batch_size == 4]
    svg = ttft_tpot_chart(ok, "t")
    bars = _attrs(svg, "bar ttft"), _attrs(svg, "bar tpot")
    assert [b["data-label"] for b in bars[0]] == ["torch-eager / fp32", "openvino / int4-weight"]
    assert [(b["data-p50"], b.get("data-p99")) for b in bars[0]] == [
        ("400.0", None), ("210.0", "230.0")]  # fmt: skip
    assert [(b["data-p50"], b.get("data-p99")) for b in bars[1]] == [
        ("25.0", None), ("10.0", "11.0")]  # fmt: skip
    assert svg.count('class="p99 ttft"') == 1 and svg.count('class="p99 tpot"') == 1
    assert "too few generations" in svg  # the missing p99 says why
    assert ttft_tpot_chart([], "t") == ""


def test_decode_chart_has_one_line_per_engine_variant_and_prompt_len() -> None:
    series = decode_series(_rows())
    assert [(s.label, s.points) for s in series] == [
        ("torch-eager / fp32 / prompt 128", ((1, 50.0), (4, 160.0))),
        ("torch-eager / fp32 / prompt 512", ((1, 45.45),)),
        ("openvino / int4-weight / prompt 128", ((1, 125.0), (4, 400.0))),
    ]
    lines = _attrs(decode_vs_batch(_rows(), "t"), "series")
    assert [(x["data-series"], x["data-points"]) for x in lines] == [
        ("torch-eager / fp32 / prompt 128", "1:50.0 4:160.0"),
        ("torch-eager / fp32 / prompt 512", "1:45.45"),
        ("openvino / int4-weight / prompt 128", "1:125.0 4:400.0"),
    ]
    assert decode_vs_batch([], "t") == ""


def test_decode_series_name_gen_len_and_threads_only_where_they_vary() -> None:
    rows = [r for r in _rows() if r.status == "ok"][:2]
    rows[1].gen_len, rows[1].threads = 32, 1
    assert [s.label for s in decode_series(rows)] == [
        "torch-eager / fp32 / prompt 128 gen 64 t2",
        "torch-eager / fp32 / prompt 128 gen 32 t1",
    ]


def test_html_report_of_decoder_rows_has_both_charts_with_the_right_series() -> None:
    rows = _rows()
    run = {"run_id": "r1", "suite": "llm", "cpu_model": "CPU", "logical_cpus": 2,
           "isa_flags": "avx2", "started_at": "2026-11-28", "versions": "{}"}  # fmt: skip
    samples = {r.case_id: np.full(5, r.latency_ms_p50) for r in rows if r.latency_ms_p50}
    page = html_report([ReportRun(run, rows, samples)], None)
    # one TTFT/TPOT figure per shape with ok rows, one decode-vs-batch figure for the model
    assert page.count("TTFT and TPOT (bar p50, tick p99)</figcaption>") == 3
    assert page.count("<h3>smollm2-135m: decoding</h3>") == 1
    labels = [x["data-series"] for x in _attrs(page, "series")]
    assert labels == [s.label for s in decode_series(rows)]
    assert "<th>TTFT p50 ms</th><th>TTFT p99 ms</th><th>TPOT p50 ms</th>" in page
