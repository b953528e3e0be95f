"""An analytical timing and energy model of an int8 systolic-array accelerator (fpga-sim).

GEMM timing follows the SCALE-Sim model (Samajdar et al., "A Systematic Methodology for
Characterizing Scalability of DNN Accelerators using SCALE-Sim", ISPASS 2020). For an array of
R rows x C columns and a GEMM A[M,K] x W[K,N], each dataflow maps two dimensions onto the array
(spatial Sr x Sc) and streams the third (temporal T):

    dataflow  Sr  Sc  T     cycles per fold              what stays in the PEs
    os        M   N   K     T + R + C - 2                outputs (accumulate in place)
    ws        K   N   M     T + 2R + C - 2               weights (R cycles to preload)
    is        K   M   N     T + 2R + C - 2               inputs (R cycles to preload)

    folds = ceil(Sr / R) * ceil(Sc / C)      compute cycles = folds * cycles per fold

(fill and drain are the R + C - 2 cycles; tools/scalesim_reference.py checks these against the
simulator itself). Each layer is then bounded by its DRAM traffic over the memory bandwidth (a
roofline with double buffering: cycles = max(compute, memory)); an operand that does not fit in
its third of the on-chip buffer is re-streamed once per fold of the other operand. Non-GEMM
operators run on a vector unit of ``vector_lanes`` lanes at a per-element cost by operator type.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

DATAFLOWS = ("os", "ws", "is")
PRESETS_FILE = "presets.toml"  # shipped beside this module (package data)


@dataclass(frozen=True)
class Preset:
    """One accelerator configuration (see backends/fpga_sim/presets.toml for the sources)."""

    name: str
    description: str
    rows: int
    cols: int
    clock_mhz: float
    buffer_kb: int
    dram_gbps: float
    dataflow: str
    vector_lanes: int
    mac_pj: float  # one int8 multiply-accumulate
    sram_pj_per_byte: float
    dram_pj_per_byte: float
    vector_pj_per_op: float
    static_w: float
    hardware_class: str
    wide_mac_slots: int = 4  # a GEMM left in float runs as 16-bit on this many int8 MAC slots
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram_gbps * 1e9 / self.clock_hz


_REQUIRED = [
    f.name for f in fields(Preset)
    if f.name != "name" and f.default is MISSING and f.default_factory is MISSING
]  # fmt: skip
_NUMBERS = {f.name for f in fields(Preset)} - {"name", "description", "dataflow",
                                              "hardware_class", "sources"}  # fmt: skip


def load_presets(path: Path | None = None) -> dict[str, Preset]:
    """The shipped presets, plus (overriding by name) those of a user TOML file."""
    text = resources.files("backends.fpga_sim").joinpath(PRESETS_FILE).read_text("utf-8")
    presets = _parse(tomllib.loads(text), f"backends/fpga_sim/{PRESETS_FILE}")
    if path is not None:
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: presets file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        presets.update(_parse(data, str(path), base=presets))
    return presets


def _parse(
    data: dict[str, Any], where: str, base: Mapping[str, Preset] | None = None
) -> dict[str, Preset]:
    """``[preset.NAME]`` tables; a user preset may say ``based_on = "edge"`` and change fields."""
    tables = data.get("preset")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{where}: expected [preset.NAME] tables")
    result: dict[str, Preset] = {}
    allowed = [f.name for f in fields(Preset) if f.name != "name"] + ["based_on"]
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: preset.{name} must be a table")
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{where}: preset.{name}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}"
            )
        values: dict[str, Any] = {}
        if "based_on" in table:
            parent = (base or {}).get(table["based_on"]) or result.get(table["based_on"])
            if parent is None:
                raise ConfigError(f"{where}: preset.{name}: based_on {table['based_on']!r} unknown")
            values = {k: v for k, v in asdict(parent).items() if k != "name"}
        values.update({k: v for k, v in table.items() if k != "based_on"})
        missing = [name for name in _REQUIRED if name not in values]
        if missing:
            raise ConfigError(f"{where}: preset.{name}: missing {', '.join(missing)}")
        for key in _NUMBERS:
            value = values.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or value <= 0):  # fmt: skip
                raise ConfigError(f"{where}: preset.{name}.{key} must be a positive number")
        if values["dataflow"] not in DATAFLOWS:
            raise ConfigError(
                f"{where}: preset.{name}.dataflow must be one of {', '.join(DATAFLOWS)}, "
                f"got {values['dataflow']!r}"
            )
        result[name] = Preset(name=name, **values)
    return result


@dataclass(frozen=True)
class Gemm:
    """``count`` independent GEMMs A[m,k] x W[k,n] (e.g. one per attention head)."""

    m: int
    k: int
    n: int
    count: int = 1
    operand_bytes: int = 1  # 1: int8 operands; 2: a GEMM left in float, run 16-bit
    weights_shared: bool = True  # W is the same for every one of ``count`` (a weight matrix)

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.count


def spatio_temporal(dataflow: str, m: int, k: int, n: int) -> tuple[int, int, int]:
    """(Sr, Sc, T) of a GEMM under a dataflow (the SCALE-Sim mapping)."""
    return {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[dataflow]


def compute_cycles(dataflow: str, rows: int, cols: int, m: int, k: int, n: int) -> int:
    """Cycles of one GEMM on the array, fill and drain included (no memory stalls)."""
    s_row, s_col, t = spatio_temporal(dataflow, m, k, n)
    folds = math.ceil(s_row / rows) * math.ceil(s_col / cols)
    preload = 0 if dataflow == "os" else rows
    return folds * (t + preload + rows + cols - 2)


@dataclass
class LayerTiming:
    name: str
    op: str
    cycles: int
    compute_cycles: int
    memory_cycles: int
    macs: int = 0
    utilisation: float = 0.0
    dram_bytes: int = 0
    sram_bytes: int = 0
    vector_ops: int = 0
    shape: str = ""
    precision: str = ""  # GEMMs: int8, or int16 for a GEMM the QDQ graph left in float

    @property
    def bound(self) -> str:
        return "memory" if self.memory_cycles > self.compute_cycles else "compute"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bound": self.bound}


def gemm_timing(name: str, op: str, gemm: Gemm, preset: Preset, dataflow: str) -> LayerTiming:
    """One GEMM layer: compute cycles on the array, DRAM traffic and the roofline bound."""
    r, c = preset.rows, preset.cols
    one = compute_cycles(dataflow, r, c, gemm.m, gemm.k, gemm.n)
    slots = preset.wide_mac_slots if gemm.operand_bytes > 1 else 1
    compute = one * gemm.count * slots
    b = gemm.operand_bytes
    a_bytes, w_bytes, o_bytes = gemm.m * gemm.k * b, gemm.k * gemm.n * b, gemm.m * gemm.n * b
    third = preset.buffer_kb * 1024 / 3
    s_row, s_col, _ = spatio_temporal(dataflow, gemm.m, gemm.k, gemm.n)
    row_folds, col_folds = math.ceil(s_row / r), math.ceil(s_col / c)
    # The stationary operand is read once; the other re-streams once per fold of the stationary
    # one's columns when it does not fit in its third of the buffer (os: both move).
    a_reads, w_reads = {"os": (col_folds, row_folds), "ws": (col_folds, 1), "is": (1, col_folds)}[
        dataflow
    ]
    a_reads = a_reads if a_bytes > third else 1
    w_reads = w_reads if w_bytes > third else 1
    weights = w_bytes * w_reads * (1 if gemm.weights_shared else gemm.count)
    # Activations stay on chip between layers when they fit; weights always come from DRAM.
    spill = lambda size: size if size > third else 0  # noqa: E731
    dram = weights + (spill(a_bytes) * a_reads + spill(o_bytes)) * gemm.count
    sram = (a_bytes * col_folds + w_bytes * row_folds + o_bytes) * gemm.count
    memory = math.ceil(dram / preset.dram_bytes_per_cycle)
    cycles = max(compute, memory)
    utilisation = gemm.macs * slots / (cycles * r * c) if cycles else 0.0
    shape = f"{gemm.m}x{gemm.k}x{gemm.n}" + (f" x{gemm.count}" if gemm.count > 1 else "")
    precision = "int8" if gemm.operand_bytes == 1 else "int16"
    return LayerTiming(name, op, cycles, compute, memory, gemm.macs, utilisation, dram, sram,
                       shape=shape, precision=precision)  # fmt: skip


# Element-wise cost on the vector unit, in lane-cycles per output element (any other op: 1).
VECTOR_COST = {
    "Softmax": 5, "LayerNormalization": 8, "Erf": 4, "Tanh": 4, "Sigmoid": 4, "Exp": 4,
    "Sqrt": 4, "Div": 4, "Pow": 4, "Gelu": 6,
}  # fmt: skip
FREE = {
    "Shape", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Constant",
    "ConstantOfShape", "Range", "Expand",
}  # fmt: skip


def vector_timing(
    name: str, op: str, elements: int, bytes_moved: int, preset: Preset
) -> LayerTiming:
    ops = elements * VECTOR_COST.get(op, 1)
    compute = math.ceil(ops / preset.vector_lanes)
    third = preset.buffer_kb * 1024 / 3
    dram = bytes_moved if bytes_moved > third else 0
    memory = math.ceil(dram / preset.dram_bytes_per_cycle)
    return LayerTiming(name, op, max(compute, memory), compute, memory, dram_bytes=dram,
                       vector_ops=ops, shape=str(elements))  # fmt: skip


@dataclass
class Simulation:
    preset: Preset
    dataflow: str
    layers: list[LayerTiming]

    @property
    def cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers)

    @property
    def latency_s(self) -> float:
        return self.cycles / self.preset.clock_hz

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def energy_j(self) -> float:
        """Dynamic energy from counted events plus static power over the latency."""
        p = self.preset
        pj = sum(
            layer.macs * p.mac_pj
            + layer.sram_bytes * p.sram_pj_per_byte
            + layer.dram_bytes * p.dram_pj_per_byte
            + layer.vector_ops * p.vector_pj_per_op
            for layer in self.layers
        )
        return pj * 1e-12 + p.static_w * self.latency_s

    def summary(self, top: int = 12) -> dict[str, Any]:
        """What is stored with the case: totals, every GEMM layer, vector ops by type."""
        gemms = [layer for layer in self.layers if layer.macs]
        vector: dict[str, dict[str, int]] = {}
        for layer in self.layers:
            if not layer.macs:
                entry = vector.setdefault(layer.op, {"layers": 0, "cycles": 0, "ops": 0})
                entry["layers"] += 1
                entry["cycles"] += layer.cycles
                entry["ops"] += layer.vector_ops
        peak = self.cycles * self.preset.rows * self.preset.cols
        return {
            "preset": self.preset.name,
            "dataflow": self.dataflow,
            "array": f"{self.preset.rows}x{self.preset.cols}",
            "clock_mhz": self.preset.clock_mhz,
            "cycles": self.cycles,
            "gemm_cycles": sum(g.cycles for g in gemms),
            "memory_bound_gemms": sum(g.bound == "memory" for g in gemms),
            "utilisation": self.macs / peak if peak else 0.0,
            "energy_j": self.energy_j(),
            "layers": [g.to_dict() for g in gemms],
            "vector_ops": vector,
            "slowest": [g.name for g in sorted(gemms, key=lambda g: -g.cycles)[:top]],
        }
