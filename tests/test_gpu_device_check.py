"""scripts/device-check.sh and its helpers, on the CPU: the shell is valid, a dry run validates
the suite files it derives and writes a summary, and the summary's ratios and the bare-loop
table are computed right from given rows."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["device-check.sh", "fetch-device-wheels.sh"])
def test_the_scripts_are_valid_bash(name: str) -> None:
    subprocess.run(["bash", "-n", str(SCRIPTS / name)], check=True, timeout=30)


@pytest.mark.slow
def test_a_dry_run_checks_every_suite_it_would_run(tmp_path: Path) -> None:
    env = {**os.environ, "WHEELHOUSE": str(tmp_path / "none"), "PYTHON": sys.executable,
           "INFRABENCH_CACHE": str(tmp_path / "cache")}  # fmt: skip
    out = tmp_path / "out"
    subprocess.run(["bash", str(SCRIPTS / "device-check.sh"), "--dry-run", str(out)], env=env,
                   check=True, timeout=300, capture_output=True)  # fmt: skip
    summary = (out / "summary.md").read_text()
    assert "DRY RUN" in summary and "- env: exit 0" in summary
    for label in ("base", "graphs", "compile-default", "compile-reduce-overhead",
                  "compile-max-autotune", "llm"):  # fmt: skip
        assert f"- run {label}: dry run, not executed" in summary
    assert "gpu-graphs.toml: valid, 18 cases" in summary
    assert "suites/gpu-llm.toml: valid, 9 cases" in summary
    assert "{'torch-cuda': {'compile': 'max-autotune'}}" in summary
    assert "invalid" not in summary
    assert (
        "bare loop (dry run): bert-base seq 128, 4 pairs" in (out / "device-check.log").read_text()
    )
    assert json.loads((out / "env.json").read_text())["backends"]["torch-cuda"]["usable"] in (
        True, False
    )  # fmt: skip


def _row(variant: str, batch: int, p50: float, backend: str = "torch-cuda") -> dict[str, object]:
    return {"model": "bert-base", "variant": variant, "backend": backend, "batch_size": batch,
            "status": "ok", "latency_ms_p50": p50}  # fmt: skip


def test_the_summary_ratios_are_slower_over_faster() -> None:
    summary = _script("device_summary")
    runs = {
        "base": [_row("fp32", 1, 4.0), _row("fp16", 1, 2.0), _row("bf16", 1, 2.5),
                 {**_row("fp32", 8, 1.0, "tensorrt"), "status": "skipped"}],
        "graphs": [_row("fp32", 1, 3.2)],
        "compile-default": [_row("fp16", 1, 1.6)],
    }  # fmt: skip
    lines = summary.ratio_lines(runs)
    assert "| fp16 vs fp32 (eager) | 1 | 2.000 |" in lines
    assert "| bf16 vs fp32 (eager) | 1 | 1.600 |" in lines
    assert "| cuda graphs on vs off, fp32 | 1 | 1.250 |" in lines
    assert "| torch.compile default vs eager, fp16 | 1 | 1.250 |" in lines
    assert not [line for line in lines if "| 8 |" in line]  # the skipped row has no ratio


def test_the_bare_loop_pair_compares_with_the_mean_of_both_bare_runs() -> None:
    bare = _script("bare_loop")
    inside = bare.Pair("fp32", 1, 2.0, 2.2, 2.15, "ok")
    outside = bare.Pair("fp16", 8, 1.0, 1.0, 1.05, "ok")
    failed = bare.Pair("bf16", 1, 1.0, 1.0, None, "failed")
    assert inside.ratio == pytest.approx(2.15 / 2.1) and inside.within is True
    assert outside.within is False and failed.within is None
    text = bare.table([inside, outside, failed])
    assert "| fp32 | 1 | 2.0000 / 2.2000 | 2.1500 | 1.0238 | yes |" in text
    assert "| NO |" in text and "| failed |" in text
    assert inside.record()["within_3pct"] is True


def test_the_decoder_summary_gives_tpot_and_ttft_ratios() -> None:
    summary = _script("device_summary")
    rows = [
        {
            "model": "llama-1b",
            "variant": v,
            "backend": "torch-cuda",
            "batch_size": 8,
            "status": "ok",
            "tpot_ms_p50": tpot,
            "ttft_ms_p50": ttft,
            "fidelity": 0.9,
        }
        for v, tpot, ttft in (("fp32", 12.0, 30.0), ("fp16", 6.0, 10.0), ("bf16", 8.0, 12.0))
    ]
    assert "| fp16 vs fp32 | 8 | 2.000 | 3.000 |" in summary.decoder_ratio_lines(rows)
    assert "| bf16 vs fp32 | 8 | 1.500 | 2.500 |" in summary.decoder_ratio_lines(rows)
    table = "\n".join(summary.decoder_table("llm", rows))
    assert "| llama-1b/fp16/torch-cuda/b8 | ok | 10.00 / - | 6.000 / - |" in table
