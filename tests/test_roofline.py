"""Roofline what-if: FLOPs and bytes per op from small ONNX graphs, exact; the data file agrees
with the prices and the fpga-sim presets; predictions and their errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from backends.fpga_sim.systolic import load_presets
from harness.cost import load_price_table
from harness.errors import ConfigError
from harness.result import CaseResult
from harness.roofline import (
    HardwareClass,
    OpCost,
    load_hardware,
    op_costs,
    predict_ms,
    tensor_types,
    what_if,
)


def graph(nodes: list[Any], inputs: list[Any], output: str, inits: dict[str, np.ndarray]) -> Any:
    out = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
    initializers = [numpy_helper.from_array(v, k) for k, v in inits.items()]
    g = helper.make_graph(nodes, "g", inputs, [out], initializers)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def x_input(name: str = "x", elem: int = TensorProto.FLOAT) -> Any:
    return helper.make_tensor_value_info(name, elem, ["batch", "n"])


def test_matmul_add_relu_costs_are_exact() -> None:
    w = np.ones((8, 4), np.float32)
    b = np.ones(4, np.float32)
    model = graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
            helper.make_node("Add", ["h", "b"], ["a"], name="add"),
            helper.make_node("Relu", ["a"], ["r"], name="relu"),
            helper.make_node("Flatten", ["r"], ["y"], name="flat"),
        ],
        [x_input()],
        "y",
        {"w": w, "b": b},
    )
    costs = op_costs(model, {"x": (2, 8)})
    assert costs == [
        OpCost("mm", "MatMul", 2 * 2 * 8 * 4, 2 * 4 * 4 + 2 * 8 * 4 + 8 * 4 * 4, "fp32"),
        OpCost("add", "Add", 8, 2 * 4 * 4 + 2 * 4 * 4 + 4 * 4, "vector"),
        OpCost("relu", "Relu", 8, 2 * 4 * 4 * 2, "vector"),
    ]  # Flatten moves nothing
    half = op_costs(model, {"x": (2, 8)}, float_precision="fp16")
    assert half[0].precision == "fp16" and half[1].precision == "vector"
    assert [c.bytes for c in half] == [c.bytes / 2 for c in costs]  # fp32 tensors held at 16 bits


def test_conv_and_gemm_flops_follow_their_shapes() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    model = graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
            helper.make_node("Conv", ["x", "g"], ["d"], pads=[1, 1, 1, 1], group=3, name="dw"),
            helper.make_node("Concat", ["c", "d"], ["y"], axis=1, name="cat"),
        ],
        [x],
        "y",
        {"w": np.ones((4, 3, 3, 3), np.float32), "g": np.ones((6, 1, 3, 3), np.float32)},
    )
    flops = {c.name: c.flops for c in op_costs(model, {})}
    assert flops == {"conv": 2 * (4 * 8 * 8) * 27, "dw": 2 * (6 * 8 * 8) * 9, "cat": 10 * 64}
    gemm = graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transA=1, name="gemm")],
        [x_input()],
        "y",
        {"w": np.ones((5, 3), np.float32)},
    )
    assert op_costs(gemm, {"x": (5, 2)})[0].flops == 2 * 2 * 3 * 5  # A is [K=5, M=2]


def test_integer_and_qdq_gemms_run_at_the_int8_peak() -> None:
    scale, zero = np.array(0.1, np.float32), np.array(0, np.int8)
    qdq = graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
            helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
            helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"], name="wdq"),
            helper.make_node("MatMul", ["xd", "wd"], ["y"], name="mm"),
        ],
        [x_input()],
        "y",
        {"s": scale, "z": zero, "wq": np.ones((8, 4), np.int8)},
    )
    costs = {c.name: c for c in op_costs(qdq, {"x": (2, 8)})}
    assert "wdq" not in costs  # weight-side dequantization is done once, offline
    assert costs["mm"] == OpCost("mm", "MatMul", 128, 2 * 4 * 4 + 2 * 8 + 8 * 4, "int8")
    integer = graph(
        [helper.make_node("MatMulInteger", ["x", "w"], ["i"], name="mmi"),
         helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT, name="cast")],
        [x_input(elem=TensorProto.UINT8)],
        "y",
        {"w": np.ones((8, 4), np.int8)},
    )  # fmt: skip
    assert op_costs(integer, {"x": (2, 8)})[0] == OpCost(
        "mmi", "MatMulInteger", 128, 2 * 4 * 4 + 2 * 8 + 8 * 4, "int8"
    )


def test_shapes_inference_cannot_reach_are_observed_by_running_the_graph() -> None:
    model = graph(
        [helper.make_node("NonZero", ["x"], ["nz"], name="nz"),
         helper.make_node("Cast", ["nz"], ["y"], to=TensorProto.FLOAT, name="cast")],
        [x_input()],
        "y",
        {},
    )  # fmt: skip
    shapes, types = tensor_types(model, {"x": (2, 3)})
    assert shapes["nz"] == (2, 0) and types["nz"] == TensorProto.INT64  # zero inputs: no hits


def test_prediction_is_the_sum_of_each_ops_bound() -> None:
    hw = HardwareClass("h", "test", "card", {"fp32": 1e9, "fp16": 2e9, "bf16": 2e9,
                                             "int8": 4e9, "vector": 1e8}, 1.0, 3.6)  # fmt: skip
    costs = [OpCost("a", "MatMul", 2e6, 1e5, "fp32"), OpCost("b", "Add", 1e3, 1e6, "vector")]
    # a: compute 2 ms > memory 0.1 ms; b: memory 1 ms > compute 0.01 ms
    assert predict_ms(costs, hw) == pytest.approx(3.0)
    assert predict_ms(costs, hw, units=2) == pytest.approx(1.5)


def test_the_data_file_agrees_with_the_prices_and_the_presets() -> None:
    classes = load_hardware()
    prices = load_price_table()["hardware"]
    for name, hw in classes.items():
        assert hw.sources.keys() >= {"peak_flops", "memory_gbps", "usd_per_hour"}
        assert hw.usd_per_hour == pytest.approx(prices[name]["usd_per_hour"])
        assert hw.unit == prices[name]["unit"]
    simulated = {p.hardware_class: p for p in load_presets().values()}
    assert {"fpga-edge", "fpga-card", "tpu-v4"} <= set(simulated)
    for name, preset in simulated.items():
        hw = classes[name]
        int8 = preset.rows * preset.cols * 2 * preset.clock_hz
        assert hw.peak("int8") == pytest.approx(int8)
        assert hw.peak("fp16") == pytest.approx(int8 / preset.wide_mac_slots)
        assert hw.peak("vector") == pytest.approx(preset.vector_lanes * preset.clock_hz)
        assert hw.memory_gbps == preset.dram_gbps


def test_a_bad_hardware_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "hw.toml"
    path.write_text('[class.x]\ndescription = "x"\nunit = "gpu"\nmemory_gbps = 1.0\n'
                    "usd_per_hour = 1.0\n[class.x.peak_flops]\nfp32 = 1.0\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"class\.x: peak_flops lacks fp16, bf16, int8"):
        load_hardware(path)
    path.write_text("[class.x]\nunit = 1\n")
    with pytest.raises(ConfigError, match=r"class\.x: missing key 'peak_flops'"):
        load_hardware(path)


def test_what_if_predicts_every_class_and_the_error_where_a_row_exists() -> None:
    peaks = {"fp32": 1e9, "fp16": 1e9, "bf16": 1e9, "int8": 1e9}
    hardware = {
        "cpu-vcpu": HardwareClass("cpu-vcpu", "", "vcpu", peaks, 1.0, 0.36),
        "fpga-edge": HardwareClass("fpga-edge", "", "card", {**peaks, "fp32": 4e9}, 1.0, 3.6),
    }
    common: dict[str, Any] = {"run_id": "r", "model": "m", "variant": "fp32", "shape": "b2",
                              "batch_size": 2}  # fmt: skip
    rows = [
        CaseResult(case_id="c", backend="onnxruntime", threads=2, latency_ms_p50=4.0,
                   energy_source="measured", **common),
        CaseResult(case_id="f", backend="fpga-sim", device="fpga:fpga-edge",
                   hardware_class="fpga-edge", threads=1,
                   latency_ms_p50=0.5, energy_source="simulated", **common),
    ]  # fmt: skip
    calls = []

    def costs(row: CaseResult) -> list[OpCost]:
        calls.append(row.case_id)
        return [OpCost("mm", "MatMul", 8e6, 1e3, "fp32")]

    predictions = what_if(rows, costs, hardware)
    assert calls == ["c"]  # once per configuration
    cpu, fpga = predictions
    assert (cpu.hardware_class, cpu.units, cpu.predicted_ms, cpu.measured_ms) == (
        "cpu-vcpu", 2, pytest.approx(4.0), 4.0)  # fmt: skip
    assert cpu.error == pytest.approx(0.0)
    assert cpu.predicted_usd_per_million == pytest.approx(1e6 / 500 / 3600 * 0.36 * 2)
    assert (fpga.predicted_ms, fpga.measured_ms, fpga.energy_source) == (
        pytest.approx(2.0), 0.5, "simulated")  # fmt: skip
    assert fpga.error == pytest.approx(3.0)
    alone = what_if(rows[:1], costs, hardware)[1]
    assert (alone.hardware_class, alone.measured_ms, alone.error) == ("fpga-edge", None, None)


def test_recommend_what_if_predicts_from_the_cached_artifact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tiny-mlp (16 -> 64 -> 8) at batch 4: the two GEMMs are 2 x 4 x (16 x 64 + 64 x 8) FLOPs."""
    from harness.cli import main
    from harness.store import Store

    fp = {"versions": {}, "fingerprint_sha256": "f", "cpu_model": "c", "isa_flags": [],
          "physical_cores": 2, "logical_cpus": 2, "memory_gb": 1.0, "os": "l",
          "python": "3"}  # fmt: skip
    common: dict[str, Any] = {"run_id": "r1", "model": "tiny-mlp", "variant": "fp32",
                              "batch_size": 4, "shape": "b4", "threads": 2,
                              "latency_ms_p99": 1.0, "latency_ms_p99_ci_high": 1.1,
                              "cost_usd_per_million": 1.0, "fidelity_ratio": 1.0}  # fmt: skip
    with Store(tmp_path / "s.duckdb") as store:
        store.start_run("r1", "quick", "quick.toml", fp)
        store.add_case(CaseResult(case_id="a", backend="onnxruntime", latency_ms_p50=0.5,
                                  energy_source="measured", **common), [])  # fmt: skip
        sim = CaseResult(case_id="b", backend="fpga-sim", device="fpga:fpga-edge",
                   hardware_class="fpga-edge",
                         latency_ms_p50=0.01, energy_source="simulated", **common)  # fmt: skip
        store.add_case(sim, [])
    args = ["recommend", "--store", str(tmp_path / "s.duckdb"), "--objective", "latency",
            "--what-if", "--format", "json", "--cache", str(tmp_path / "cache")]  # fmt: skip
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    by_class = {p["hardware_class"]: p for p in data["predicted"]}
    assert set(by_class) == set(load_hardware())
    assert by_class["cpu-vcpu"]["measured_ms"] == 0.5 and by_class["cpu-vcpu"]["units"] == 2
    assert by_class["fpga-edge"]["measured_by"] == "fpga-sim"
    assert by_class["gpu-datacenter"]["measured_ms"] is None
    gemm_flops = 2 * 4 * (16 * 64 + 64 * 8)
    edge = load_hardware()["fpga-edge"]
    assert by_class["fpga-edge"]["predicted_ms"] >= gemm_flops / edge.peak("fp32") * 1e3
    assert by_class["fpga-edge"]["error"] == pytest.approx(
        by_class["fpga-edge"]["predicted_ms"] / 0.01 - 1
    )
    costs = op_costs_for_tiny_mlp(tmp_path / "cache")
    assert sum(c.flops for c in costs if c.precision == "fp32") == gemm_flops


def op_costs_for_tiny_mlp(cache: Path) -> list[OpCost]:
    from harness.roofline import row_costs

    row = CaseResult(run_id="r", case_id="a", model="tiny-mlp", variant="fp32", backend="x",
                     batch_size=4, shape="b4")  # fmt: skip
    return row_costs(row, cache)
