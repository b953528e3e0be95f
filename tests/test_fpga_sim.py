"""fpga-sim: the analytical systolic-array model against SCALE-Sim, presets, the graph mapping and
the backend through the harness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import onnx
import pytest

from backends.fpga_sim import FpgaSimBackend
from backends.fpga_sim.onnx_graph import graph_layers
from backends.fpga_sim.systolic import Gemm, compute_cycles, gemm_timing, load_presets
from harness.case import Case, CaseSettings
from harness.errors import ConfigError
from harness.measure.timing import TimingPolicy
from harness.optimize.artifacts import build, cache_root
from harness.runner import measure_here
from harness.suite import parse_suite

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "scalesim_reference.json"


def test_cycles_agree_with_scalesim_within_10_percent() -> None:
    """The fixture holds SCALE-Sim's own cycle counts (tools/scalesim_reference.py)."""
    fixture = json.loads(FIXTURE.read_text())
    assert fixture["fixture_version"] == 1 and fixture["scalesim"]
    results = fixture["results"]
    assert {r["dataflow"] for r in results} == {"os", "ws", "is"}
    assert len({(r["m"], r["k"], r["n"]) for r in results}) >= 5
    assert any(r["shape"].startswith("bert") for r in results)
    for r in results:
        assert r["stall_cycles"] == 0  # compute only: buffers and bandwidth were ample
        ours = compute_cycles(r["dataflow"], r["rows"], r["cols"], r["m"], r["k"], r["n"])
        assert abs(ours - r["cycles"]) / r["cycles"] <= 0.10, r


@pytest.mark.slow
def test_scalesim_reproduces_the_fixture(tmp_path: Path) -> None:
    """Reruns SCALE-Sim on one shape; it needs numpy < 2.4, so it lives in its own venv:
    INFRABENCH_SCALESIM_PYTHON=/path/to/venv/bin/python (see tools/scalesim_reference.py)."""
    python = os.environ.get("INFRABENCH_SCALESIM_PYTHON")
    if not python:
        pytest.skip("set INFRABENCH_SCALESIM_PYTHON to a python with scalesim and numpy<2.4")
    out = tmp_path / "ref.json"
    subprocess.run(
        [python, str(ROOT / "tools" / "scalesim_reference.py"), "--only", "odd-shape", "-o",
         str(out)], check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    fresh = {
        (r["rows"], r["dataflow"]): r["cycles"] for r in json.loads(out.read_text())["results"]
    }
    kept = {
        (r["rows"], r["dataflow"]): r["cycles"]
        for r in json.loads(FIXTURE.read_text())["results"]
        if r["shape"] == "odd-shape"
    }
    assert fresh == kept


def test_folds_fill_and_drain_by_dataflow() -> None:
    # One fold of an 8x8 array: os streams K; ws/is first preload R rows.
    assert compute_cycles("os", 8, 8, 8, 16, 8) == 16 + 8 + 8 - 2
    assert compute_cycles("ws", 8, 8, 16, 8, 8) == 16 + 2 * 8 + 8 - 2
    assert compute_cycles("os", 8, 8, 16, 16, 16) == 4 * (16 + 8 + 8 - 2)  # 2 x 2 folds


def test_the_roofline_names_the_bound() -> None:
    edge = load_presets()["edge"]
    # The edge array is balanced for streaming weights (C bytes/cycle of 64 B/cycle of DRAM):
    # a GEMV turns memory-bound once the DRAM is slower.
    slow = replace(edge, dram_gbps=4.0)
    gemv = gemm_timing("fc", "MatMul", Gemm(1, 4096, 4096), slow, "os")
    assert gemv.bound == "memory" and gemv.memory_cycles > gemv.compute_cycles
    assert gemv.cycles == gemv.memory_cycles and gemv.dram_bytes >= 4096 * 4096
    assert gemm_timing("fc", "MatMul", Gemm(1, 4096, 4096), edge, "os").bound == "compute"
    square = gemm_timing("qkv", "MatMul", Gemm(512, 384, 384), edge, "ws")
    assert square.bound == "compute" and 0 < square.utilisation <= 1
    wide = gemm_timing("qkv", "MatMul", Gemm(512, 384, 384, operand_bytes=2), edge, "ws")
    assert wide.compute_cycles == square.compute_cycles * edge.wide_mac_slots
    assert wide.precision == "int16"


def test_presets_ship_with_sources_and_users_can_add_their_own(tmp_path: Path) -> None:
    presets = load_presets()
    assert {"edge", "datacenter"} <= set(presets)
    for preset in presets.values():
        assert preset.sources and preset.rows * preset.cols >= 1024
    user = tmp_path / "mine.toml"
    user.write_text('[preset.big-edge]\nbased_on = "edge"\nrows = 64\ncols = 64\n')
    mine = load_presets(user)["big-edge"]
    assert (mine.rows, mine.cols, mine.clock_mhz) == (64, 64, presets["edge"].clock_mhz)
    bad = {
        '[preset.x]\nbased_on = "edge"\ndataflow = "rs"\n': "dataflow must be one of",
        '[preset.x]\nbased_on = "edge"\nrows = 0\n': "rows must be a positive number",
        "[preset.x]\nrows = 8\n": "missing",
        '[preset.x]\nbased_on = "edge"\nvolts = 1\n': "unknown key 'volts'",
    }
    for body, message in bad.items():
        user.write_text(body)
        with pytest.raises(ConfigError, match=message):
            load_presets(user)


def test_a_suite_with_an_unknown_preset_is_refused() -> None:
    data = {"models": ["tiny-mlp"], "backends": ["fpga-sim"],
            "options": {"fpga-sim": {"preset": "asic"}}}  # fmt: skip
    with pytest.raises(ConfigError, match="unknown preset 'asic'; allowed: edge, datacenter"):
        parse_suite(data, "s.toml")
    data["options"] = {"fpga-sim": {"dataflow": "rs"}}
    with pytest.raises(ConfigError, match="allowed: os, ws, is"):
        parse_suite(data, "s.toml")


@pytest.mark.slow
def test_the_graph_maps_convs_and_matmuls_to_gemms() -> None:
    artifact = build("digits-cnn", "int8-static", cache_root())
    from harness.models import get_model

    inputs = get_model("digits-cnn").example_inputs(4, None)
    layers = graph_layers(onnx.load(str(artifact.onnx_path)), inputs, load_presets()["edge"], "os")
    gemms = {layer.shape: layer for layer in layers if layer.macs}
    # conv1 1->16 3x3 on 8x8, conv2 16->32 3x3, fc 512->64, fc 64->10 (batch 4)
    assert set(gemms) == {"256x9x16", "256x144x32", "4x512x64", "4x64x10"}
    assert all(g.precision == "int8" for g in gemms.values())
    assert gemms["256x144x32"].macs == 256 * 144 * 32


def _run(variant: str, options: dict[str, object]) -> tuple:
    policy = TimingPolicy(budget_s=0.5, warmup_max_s=0.1, min_samples=20)
    case = Case("tiny-mlp", variant, "fpga-sim", 4, None, 1, device="fpga", options=options,
                settings=CaseSettings(timing=policy))  # fmt: skip
    artifact = build("tiny-mlp", variant, cache_root())
    reference = build("tiny-mlp", "fp32", cache_root())
    return measure_here("r1", case, artifact, reference)


def test_the_backend_runs_int8_with_simulated_time_and_energy() -> None:
    result, samples = _run("int8-static", {"preset": "datacenter"})
    assert result.status == "ok", result.reason
    details = json.loads(result.details)
    sim = details["simulation"]
    assert sim["preset"] == "datacenter" and sim["dataflow"] == "os"
    latency_ms = sim["cycles"] / (250e6) * 1e3
    assert samples and all(s == pytest.approx(latency_ms, rel=1e-6) for s in samples)
    assert result.energy_source == "simulated" and result.energy_j_per_inference > 0
    assert result.energy_j_per_inference == pytest.approx(sim["energy_j"] / 4)
    assert result.device == "fpga:fpga-card" and result.executed_precision == "int8"
    assert result.fidelity is not None and result.fidelity > 0.95  # real int8 outputs
    assert {layer["bound"] for layer in sim["layers"]} <= {"compute", "memory"}
    assert all(0 < layer["utilisation"] <= 1 for layer in sim["layers"])


def test_the_loaded_preset_names_the_simulated_device() -> None:
    from harness.backend import BackendSettings, SimulatedDevice

    backend = FpgaSimBackend()
    settings = BackendSettings(threads=1, device="fpga", options={"preset": "edge"})
    backend.load(build("tiny-mlp", "int8-static", cache_root()), settings)
    assert isinstance(backend, SimulatedDevice)
    assert backend.hardware_class == load_presets()["edge"].hardware_class == "fpga-edge"
    assert backend.device_label == "fpga:fpga-edge"
    backend.close()


def test_a_float_graph_is_skipped_with_the_reason() -> None:
    result, _ = _run("fp32", {})
    assert result.status == "skipped" and "int8-static" in result.reason


def test_dataflow_option_changes_the_timing() -> None:
    ws = json.loads(_run("int8-static", {"dataflow": "ws"})[0].details)["simulation"]
    os_ = json.loads(_run("int8-static", {"dataflow": "os"})[0].details)["simulation"]
    assert ws["dataflow"] == "ws" and os_["dataflow"] == "os" and ws["cycles"] != os_["cycles"]


def test_env_reports_fpga_sim_usable() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
         "env", "--json"], capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    backends = json.loads(proc.stdout)["backends"]
    assert backends["fpga-sim"] == {"usable": True, "reason": None}
    assert FpgaSimBackend.capabilities.energy == "simulated"
