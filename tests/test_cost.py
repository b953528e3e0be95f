"""The cost model: figures recomputable by hand from the prices file and the row."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest

from harness.config import load_suite
from harness.cost import apply_cost, hardware_class, prices
from harness.errors import ConfigError
from harness.optimize.artifacts import cache_root
from harness.result import CaseResult
from harness.runner import Runner
from harness.store import Store

PRICES = tomllib.loads(resources.files("harness").joinpath("data/prices.toml").read_text())


def test_every_price_has_a_source() -> None:
    for name, region in PRICES["regions"].items():
        assert region["usd_source"] and region["gco2_source"], name
    for name, hw in PRICES["hardware"].items():
        assert hw["source"] and hw["unit"] in ("vcpu", "gpu", "card"), name


def test_a_stored_cost_can_be_recomputed_by_hand_from_throughput_and_power(
    write_suite: Callable[..., Path], store: Store
) -> None:
    suite = load_suite(write_suite("""
        models = ["tiny-mlp"]
        backends = ["fake"]
        threads = [2]
        [measure]
        min_samples = 200
        budget_s = 1.0
        [options.fake]
        latency_ms = 0.5
        [energy]
        probe = "estimate"
    """))  # fmt: skip
    (row,) = store.cases(Runner(store, cache_root()).run(suite))
    region = PRICES["regions"][PRICES["default_region"]]
    vcpu = PRICES["hardware"]["cpu-vcpu"]
    assert row.power_w and row.throughput_per_s and row.energy_source == "estimated"
    # J per inference = W / (inferences per second); the stored figure is the same energy
    # over the sampled runs, so the two agree up to the harness's time between samples.
    joules = row.power_w / row.throughput_per_s
    assert row.energy_j_per_inference == pytest.approx(joules, rel=0.05)
    kwh_per_million = joules * 1e6 / 3.6e6 * PRICES["pue"]
    energy_usd = kwh_per_million * region["usd_per_kwh"]
    machine_usd = 1e6 / row.throughput_per_s / 3600 * vcpu["usd_per_hour"] * 2  # 2 threads
    assert row.cost_usd_per_million_energy == pytest.approx(energy_usd, rel=0.05)
    assert row.cost_usd_per_million_machine == pytest.approx(machine_usd, rel=1e-9)
    assert row.cost_usd_per_million == pytest.approx(
        row.cost_usd_per_million_energy + row.cost_usd_per_million_machine, rel=1e-12
    )
    assert row.gco2_per_million == pytest.approx(kwh_per_million * region["gco2_per_kwh"], rel=0.05)


def _row(**kw: object) -> CaseResult:
    return CaseResult(run_id="r", case_id="c", model="m", variant="fp32", backend="b", **kw)  # type: ignore[arg-type]


def test_exact_formula_and_unknown_energy_stays_null() -> None:
    p = prices(region="eu", overrides={"usd_per_hour": {"cpu-vcpu": 0.10}, "pue": 1.5})
    row = _row(energy_j_per_inference=0.36, throughput_per_s=100.0, threads=4)
    apply_cost(row, p)
    # 0.36 J x 1e6 = 0.1 kWh, x PUE 1.5 = 0.15 kWh.
    assert row.cost_usd_per_million_energy == pytest.approx(0.15 * p.usd_per_kwh)
    assert row.gco2_per_million == pytest.approx(0.15 * PRICES["regions"]["eu"]["gco2_per_kwh"])
    # 1e6 / 100 per s = 10,000 s = 2.777 h of 4 vCPUs at 0.10 USD.
    assert row.cost_usd_per_million_machine == pytest.approx(1e4 / 3600 * 0.10 * 4)
    unknown = _row(throughput_per_s=100.0, threads=1)
    apply_cost(unknown, p)
    assert unknown.cost_usd_per_million_energy is None and unknown.gco2_per_million is None
    assert unknown.cost_usd_per_million is None  # a total without energy would understate it
    assert unknown.cost_usd_per_million_machine is not None


def test_hardware_class_comes_from_the_device() -> None:
    assert hardware_class("cpu") == "cpu-vcpu"
    assert hardware_class("cuda:0") == "gpu-datacenter"
    assert hardware_class("fpga") == "fpga-card"


def test_bad_prices_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown region 'mars'; allowed: us, eu"):
        prices(region="mars")
    with pytest.raises(ConfigError, match="unknown hardware class 'tpu'"):
        prices(overrides={"usd_per_hour": {"tpu": 1.0}})
    bad = tmp_path / "p.toml"
    bad.write_text("version = 1\n")
    with pytest.raises(ConfigError, match="missing key 'regions'"):
        prices(bad)
