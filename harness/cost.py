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
from harness.result import CaseResult

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
    """Which hourly price applies: the device the case ran on decides."""
    if device.startswith("cuda"):
        return "gpu-datacenter"
    if device.startswith("fpga:"):  # a simulated accelerator names its class: fpga:fpga-edge
        return device.removeprefix("fpga:")
    if device.startswith("fpga"):
        return "fpga-card"
    return "cpu-vcpu"


def apply_cost(result: CaseResult, p: Prices) -> None:
    """Fill the cost and carbon columns from the row's energy and throughput.

    Each part stays null when what it needs is unknown; the total needs both parts.
    """
    per_million_kwh = None
    if result.energy_j_per_inference is not None:
        per_million_kwh = result.energy_j_per_inference * 1e6 / J_PER_KWH * p.pue
        result.cost_usd_per_million_energy = per_million_kwh * p.usd_per_kwh
        result.gco2_per_million = per_million_kwh * p.gco2_per_kwh
    if result.throughput_per_s:
        hw = p.hardware.get(hardware_class(result.device))
        if hw is not None:  # an unknown class (a user preset's) leaves the machine part null
            units = (result.threads or 1) if hw["unit"] == "vcpu" else 1
            hours = 1e6 / result.throughput_per_s / 3600
            result.cost_usd_per_million_machine = hours * hw["usd_per_hour"] * units
    if (
        result.cost_usd_per_million_energy is not None
        and result.cost_usd_per_million_machine is not None
    ):
        result.cost_usd_per_million = (
            result.cost_usd_per_million_energy + result.cost_usd_per_million_machine
        )
