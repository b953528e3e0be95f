"""The terminal table: default columns, fitting a width without wrapping, --columns / --wide,
and a real terminal (tmux) at 80 and 120 columns."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from result_rows import rows, samples, write_store

from harness.columns import DEFAULT_COLUMNS, WIDE, parse_columns
from harness.compare import compare_runs
from harness.errors import ConfigError
from harness.render import render_comparison, table

ROOT = Path(__file__).resolve().parent.parent


def _row_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("minilm-l6")]


def test_unlimited_width_shows_every_default_column_in_full() -> None:
    text = table(rows())
    header = text.splitlines()[0]
    for name in ("model", "variant", "backend", "shape", "status", "p50 ms ±CI", "p99 ms",
                 "items/s", "$/M est", "fidelity", "speedup"):  # fmt: skip
        assert name in header
    lines = _row_lines(text)
    assert len(lines) == len(rows())
    assert any("distilled-3l+int8-static" in line for line in lines)
    assert any("72.0% FAIL" in line for line in lines)
    assert "30.00 ±1.2%" in text  # p50 and the larger side of its interval
    assert "n<" in text and "too few samples for a p99" in text  # batch 8 has no p99
    assert "not shown" not in text


def test_the_default_view_of_the_quick_suite_fits_100_columns() -> None:
    quick = [r for r in rows() if r.variant == "fp32"]
    assert max(len(line) for line in table(quick).splitlines()[:12]) <= 100


@pytest.mark.parametrize("width", [60, 80, 100, 120])
def test_a_narrow_width_elides_then_drops_columns_and_says_which(width: int) -> None:
    text = table(rows(), "run r1 (suite quick)", width=width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), [x for x in lines if len(x) > width]
    assert len(_row_lines(text)) == len(rows())  # one line per row: nothing wrapped
    header = lines[1]
    for kept in ("model", "variant", "backend", "status", "p50"):
        assert kept in header
    if "not shown" in text:
        assert "--wide" in text and "--columns" in text
        hidden = text.split("not shown at")[1]
        assert "throughput" in hidden  # the first to go
    if width <= 80:
        assert "…" in text and "not shown" in text


def test_columns_picks_and_orders_and_rejects_unknown_names() -> None:
    keys = parse_columns("backend, p50,cv,latency_ms_p90")
    assert keys == ("backend", "p50", "cv", "latency_ms_p90")
    text = table(rows(), keys=keys)
    assert text.splitlines()[0].split() == ["backend", "p50", "ms", "±CI", "cv", "latency_ms_p90"]
    assert "33.00" in text  # p90 of the 30 ms row, raw field shown with 4 significant digits
    with pytest.raises(ConfigError, match="unknown column 'p42'; allowed: model, variant"):
        parse_columns("model,p42")


def test_wide_shows_every_named_column() -> None:
    header = table(rows(), keys=WIDE).splitlines()[0]
    for name in ("prec", "thr", "batch", "p90 ms", "cv", "peak MB", "J/inf est", "gCO2/M est",
                 "reason"):  # fmt: skip
        assert name in header
    assert set(DEFAULT_COLUMNS) <= set(WIDE)


def test_noisy_rows_are_marked_and_explained() -> None:
    results = rows()
    setattr(results[0], "noise", "other processes used 1.7 cores; cv 0.31 above 0.10")  # noqa: B010
    setattr(results[1], "noise", "other processes used 1.7 cores")  # noqa: B010
    text = table(results)
    marked = [line for line in _row_lines(text) if "ok noisy" in line]
    assert len(marked) == 2
    said = " ".join(text.split())
    assert "other processes used 1.7 cores (2 rows); cv 0.31 above 0.10 (1 row)" in said


def _tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], capture_output=True, text=True, timeout=30, check=True
    ).stdout


@pytest.mark.parametrize("width", [80, 120])
def test_show_in_a_real_terminal_never_wraps_a_row(tmp_path: Path, width: int) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux): no real terminal to test in")
    store = write_store(tmp_path / "s.duckdb")
    socket = str(tmp_path / "tmux.sock")  # a server of its own, gone with tmp_path
    command = (
        f"cd {ROOT} && env -u COLUMNS -u LINES {sys.executable} -c "
        f"'import sys; from harness.cli import main; sys.exit(main())' "
        f"show --store {store}; echo __done__ $?; sleep 60"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
    started = subprocess.run(
        ["tmux", "-S", socket, "-f", "/dev/null", "new-session", "-d", "-x", str(width),
         "-y", "60", command],
        check=False, timeout=30, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if started.returncode != 0:
        pytest.skip(f"tmux cannot open a terminal here: {started.stderr.strip()}")
    try:
        deadline = time.monotonic() + 60
        screen = ""
        while "__done__" not in screen and time.monotonic() < deadline:
            time.sleep(0.2)
            screen = _tmux("-S", socket, "capture-pane", "-p", "-J")
        assert "__done__ 0" in screen, screen
        size = _tmux("-S", socket, "display-message", "-p", "#{pane_width}").strip()
        assert size == str(width)
    finally:
        subprocess.run(["tmux", "-S", socket, "kill-server"], check=False, timeout=30)
    lines = screen.rstrip("\n").splitlines()
    # -J joins lines the terminal wrapped: a wrapped row would come back longer than the pane.
    assert all(len(line.rstrip()) <= width for line in lines), screen
    assert len([line for line in lines if line.startswith("minilm-l6")]) == len(rows()), screen
    assert "run r1 (suite quick)" in screen
    if width == 120:
        assert "not shown" not in screen and "items/s" in screen
    else:
        assert "not shown at 80 columns" in screen


def test_a_model_on_disk_shows_its_file_name_and_long_names_elide_in_the_middle() -> None:
    results = rows()
    for r in results:
        r.model = "onnx:/data/detectors/yolo-v8-nano-640-finetuned.onnx#inputs=/data/x.npz"
    text = table(results, width=200)
    assert "onnx:yolo-v8-nano-640-finetuned.onnx " in text and "/data" not in text
    narrow = table(results, width=70)
    assert "onnx:yo…ed.onnx " in narrow  # both ends kept
    assert all(len(line) <= 70 for line in narrow.splitlines())


@pytest.mark.parametrize("width", [80, 120, 200])
def test_a_comparison_fits_the_width_and_keeps_verdict_ratio_and_reason(width: int) -> None:
    base, cand = rows("r1"), rows("r2")
    keyed = {(r.run_id, r.case_id): np.asarray(samples(r, seed=i))
             for i, r in enumerate(base + cand)}  # fmt: skip
    comparison = compare_runs(base, cand, keyed, same_machine=True)
    text = render_comparison(comparison, "table", "r2 vs r1", width=width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    assert len([line for line in lines if line.startswith("minilm-l6")]) == len(comparison)
    for kept in ("verdict", "ratio [95% CI]", "reason"):
        assert kept in lines[1]
    assert ("not shown at" in text) == (width < 200)  # all 13 columns need 188


def test_rows_not_measured_say_why_under_the_default_table() -> None:
    results = rows()[:5]
    for r, (status, reason) in zip(results, [("skipped", "openvino is not installed")] * 4
                                   + [("failed", None)], strict=True):  # fmt: skip
        r.status, r.reason = status, reason
    text = table(results, width=200)
    (skipped,) = [line for line in text.splitlines() if line.startswith("note: skipped:")]
    assert skipped.startswith("note: skipped: openvino is not installed (minilm-l6/")
    assert skipped.endswith(" and 1 more)")
    assert "note: failed: no reason recorded (minilm-l6/" in text
