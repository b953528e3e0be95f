"""How fast the simulated accelerator's model runs: fpga-sim must simulate minilm-l6 (int8,
batch 1, sequence 128) in under 2 seconds, loading the graph and shape discovery included.
pytest-benchmark times it; the check is on the benchmark's median."""

from __future__ import annotations

from typing import Any

from backends.fpga_sim.onnx_graph import graph_layers
from backends.fpga_sim.systolic import Simulation, load_presets
from harness.models import get_model
from harness.optimize.artifacts import build, cache_root

LIMIT_S = 2.0


def test_fpga_sim_simulates_minilm_in_under_two_seconds(benchmark: Any) -> None:
    import onnx

    path = str(build("minilm-l6", "int8-static", cache_root()).onnx_path)
    inputs = get_model("minilm-l6").example_inputs(1, 128)
    preset = load_presets()["edge"]

    def once() -> int:
        layers = graph_layers(onnx.load(path), inputs, preset, "ws")
        return Simulation(preset, "ws", layers).cycles

    cycles = benchmark.pedantic(once, rounds=5, iterations=1, warmup_rounds=1)
    assert cycles > 0
    median = benchmark.stats.stats.median
    print(f"\nfpga-sim minilm-l6 b1 s128: median {median:.3f} s over 5 rounds, {cycles} cycles")
    assert median < LIMIT_S
