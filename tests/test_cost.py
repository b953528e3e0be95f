"""The cost model: figures recomputable by hand from the prices file and the row."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest

from harness.cost import cost_columns, hardware_class, prices
from harness.errors import ConfigError
from harness.optimize.artifacts import cache_root
from harness.plan import plan
from harness.runner import Runner
from harness.store import Store
from harness.suite import load_suite
from tests.test_energy import make_powercap

PRICES = tomllib.loads(resources.files("harness").joinpath("data/prices.toml").read_text())


def test_every_price_has_a_source() -> None:
    for name, region in PRICES["regions"].items():
        assert region["usd_source"] and region["gco2_source"], name
    for name, hw in PRICES["hardware"].items():
        assert hw["source"] and hw["unit"] in ("vcpu", "gpu", "card"), name


def test_a_stored_cost_can_be_recomputed_by_hand_from_energy_and_throughput(
    write_suite: Callable[..., Path], store: Store, tmp_path: Path
) -> None:
    """Exact figures, whatever the machine's speed: the fake's own clock gives 0.5 ms per run
    and its fake RAPL counter 5000 uJ per run, both through a real worker and the store."""
    root = tmp_path / "powercap"
    counter = make_powercap(root, packages=1)["package-0"]
    suite = load_suite(write_suite(f"""
        models = ["tiny-mlp"]
        backends = ["fake"]
        threads = [2]
        batch_sizes = [4]
        [options.fake]
        latency_ms = 0.5
        jitter = 0.0
        powercap_counter = "{counter}"
        uj_per_run = 5000
        [energy]
        powercap_root = "{root}"
    """))  # fmt: skip
    (row,) = store.cases(Runner(store, cache_root()).run(plan(suite)))
    region = PRICES["regions"][PRICES["default_region"]]
    vcpu = PRICES["hardware"]["cpu-vcpu"]
    assert (row.energy_source, row.hardware_class) == ("measured", "cpu-vcpu")
    assert row.latency_ms_p50 == 0.5 and row.throughput_per_s == pytest.approx(4 / 0.5e-3)
    assert row.energy_j_per_inference == pytest.approx(5000e-6 / 4, rel=1e-12)
    kwh_per_million = 5000e-6 / 4 * 1e6 / 3.6e6 * PRICES.get("pue", 1.0)
    machine_usd = 1e6 / (4 / 0.5e-3) / 3600 * vcpu["usd_per_hour"] * 2  # 2 threads
    assert row.cost_usd_per_million_energy == pytest.approx(kwh_per_million * region["usd_per_kwh"])
    assert row.cost_usd_per_million_machine == pytest.approx(machine_usd, rel=1e-9)
    assert row.cost_usd_per_million == pytest.approx(
        row.cost_usd_per_million_energy + row.cost_usd_per_million_machine, rel=1e-12
    )
    assert row.gco2_per_million == pytest.approx(kwh_per_million * region["gco2_per_kwh"])


def test_exact_formula_and_unknown_energy_stays_null() -> None:
    p = prices(region="eu", overrides={"usd_per_hour": {"cpu-vcpu": 0.10}, "pue": 1.5})
    costs = cost_columns(0.36, 100.0, 4, "cpu-vcpu", p)
    # 0.36 J x 1e6 = 0.1 kWh, x PUE 1.5 = 0.15 kWh.
    assert costs.usd_per_million_energy == pytest.approx(0.15 * p.usd_per_kwh)
    assert costs.gco2_per_million == pytest.approx(0.15 * PRICES["regions"]["eu"]["gco2_per_kwh"])
    # 1e6 / 100 per s = 10,000 s = 2.777 h of 4 vCPUs at 0.10 USD.
    assert costs.usd_per_million_machine == pytest.approx(1e4 / 3600 * 0.10 * 4)
    unknown = cost_columns(None, 100.0, 1, "cpu-vcpu", p)
    assert unknown.usd_per_million_energy is None and unknown.gco2_per_million is None
    assert unknown.usd_per_million is None  # a total without energy would understate it
    assert unknown.usd_per_million_machine is not None
    assert cost_columns(0.36, 100.0, 1, "a-user-preset", p).usd_per_million_machine is None


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
