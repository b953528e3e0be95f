"""Energy and time -> US dollars and grams of CO2 per million inferences.

An inference is one input item: a batch of 8 is 8 inferences. The formulas are in
``harness/data/prices.toml``, next to the prices and their sources.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Prices:
    """The prices a run uses: one region's electricity and carbon, and one hardware class."""

    region: str
    usd_per_kwh: float
    gco2_per_kwh: float
    pue: float
    hardware: dict[str, dict[str, Any]]
    source: str


def load_price_table(path: Path | None = None) -> dict[str, Any]:
    """The shipped prices file, or a user's file of the same shape."""
    try:
        if path is None:
            text = resources.files("harness").joinpath("data/prices.toml").read_text("utf-8")
        else:
            text = path.read_text("utf-8")
        table = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read prices file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    for key in ("regions", "hardware", "default_region"):
        if key not in table:
            raise ConfigError(f"{path or 'prices.toml'}: missing key {key!r}")
    return table


def prices(
    path: Path | None = None,
    region: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Prices:
    """Prices for ``region`` (default: the file's), with per-suite ``overrides`` applied.

    ``overrides`` keys: usd_per_kwh, gco2_per_kwh, pue, and usd_per_hour.<class>.
    """
    table = load_price_table(path)
    name = region or table["default_region"]
    if name not in table["regions"]:
        raise ConfigError(
            f"{path or 'prices.toml'}: unknown region {name!r}; "
            f"allowed: {', '.join(table['regions'])}"
        )
    chosen = table["regions"][name]
    hardware = {k: dict(v) for k, v in table["hardware"].items()}
    extra = dict(overrides or {})
    for cls, price in extra.pop("usd_per_hour", {}).items():
        if cls not in hardware:
            raise ConfigError(
                f"cost.usd_per_hour: unknown hardware class {cls!r}; allowed: {', '.join(hardware)}"
            )
        hardware[cls]["usd_per_hour"] = float(price)
        hardware[cls]["source"] = "suite override"
    return Prices(
        region=name,
        usd_per_kwh=float(extra.get("usd_per_kwh", chosen["usd_per_kwh"])),
        gco2_per_kwh=float(extra.get("gco2_per_kwh", chosen["gco2_per_kwh"])),
        pue=float(extra.get("pue", table.get("pue", 1.0))),
        hardware=hardware,
        source=str(path) if path else "harness/data/prices.toml",
    )


def hardware_class(device: str) -> str:
    """The hardware class (a key of prices.toml's ``hardware`` table) of a device the host
    runs on; a simulated device states its own class."""
    if device.startswith("cuda"):
        return "gpu-datacenter"
    if device.startswith("fpga"):
        return "fpga-card"
    return "cpu-vcpu"


@dataclass(frozen=True)
class CostColumns:
    """US dollars and grams of CO2 per million inferences; a part is None when what it needs
    is unknown, and the total needs both parts."""

    usd_per_million_energy: float | None = None
    usd_per_million_machine: float | None = None
    gco2_per_million: float | None = None

    @property
    def usd_per_million(self) -> float | None:
        if self.usd_per_million_energy is None or self.usd_per_million_machine is None:
            return None
        return self.usd_per_million_energy + self.usd_per_million_machine


def cost_columns(
    energy_j_per_inference: float | None,
    throughput_per_s: float | None,
    threads: int | None,
    hw_class: str,
    p: Prices,
) -> CostColumns:
    """Energy part: J per inference x 1e6 / 3.6e6 J/kWh x PUE x price per kWh (and x grid
    gCO2 per kWh for carbon). Machine part: hours per million inferences at ``throughput_per_s``
    x the class's hourly price (x ``threads`` for a per-vCPU price). An unknown class (a user
    preset's) leaves the machine part null."""
    energy_usd = gco2 = machine_usd = None
    if energy_j_per_inference is not None:
        per_million_kwh = energy_j_per_inference * 1e6 / J_PER_KWH * p.pue
        energy_usd = per_million_kwh * p.usd_per_kwh
        gco2 = per_million_kwh * p.gco2_per_kwh
    hw = p.hardware.get(hw_class)
    if throughput_per_s and hw is not None:
        units = (threads or 1) if hw["unit"] == "vcpu" else 1
        machine_usd = 1e6 / throughput_per_s / 3600 * hw["usd_per_hour"] * units
    return CostColumns(energy_usd, machine_usd, gco2)


def phase_split(costs: CostColumns, j_per_unit: float | None, share: float) -> dict[str, Any]:
    """The part of ``costs`` (and of ``j_per_unit``, J per output token) that falls to a phase
    taking ``share`` of the time, per million units: every figure is scaled by the time share
    (machine time exactly; energy as an estimate, power assumed the same in both phases).
    Unknown figures stay None."""

    def part(value: float | None, scale: float = 1.0) -> float | None:
        return None if value is None else value * scale * share

    return {
        "energy_j_per_million": part(j_per_unit, 1e6),
        "usd_per_million": part(costs.usd_per_million),
        "usd_per_million_energy": part(costs.usd_per_million_energy),
        "usd_per_million_machine": part(costs.usd_per_million_machine),
        "gco2_per_million": part(costs.gco2_per_million),
    }
