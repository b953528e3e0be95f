"""Energy probes against a fake powercap tree, a fake NVML and injected CPU clocks."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.measure.energy import (
    CpuPower,
    EnergySettings,
    EstimateProbe,
    NvmlProbe,
    ProbeUnavailable,
    RaplProbe,
    choose_probe,
    counter_delta,
    cpu_power,
)
from harness.optimize.artifacts import cache_root
from harness.plan import plan
from harness.runner import Runner
from harness.store import Store
from harness.suite import load_suite

MAX_UJ = 262_143_328_850


def make_powercap(root: Path, packages: int = 2) -> dict[str, Path]:
    """A powercap tree like Linux's: packages with core and dram sub-zones."""

    def zone(path: Path, name: str, uj: int) -> Path:
        path.mkdir(parents=True)
        (path / "name").write_text(name + "\n")
        (path / "energy_uj").write_text(f"{uj}\n")
        (path / "max_energy_range_uj").write_text(f"{MAX_UJ}\n")
        return path / "energy_uj"

    counters = {}
    for p in range(packages):
        pkg = root / f"intel-rapl:{p}"
        counters[f"package-{p}"] = zone(pkg, f"package-{p}", 1_000_000 * (p + 1))
        zone(pkg / f"intel-rapl:{p}:0", "core", 5)
        counters[f"dram-{p}"] = zone(pkg / f"intel-rapl:{p}:1", "dram", 7)
    (root / "intel-rapl-mmio:0").mkdir()  # other zone types are ignored
    return counters


def bump(path: Path, uj: int) -> None:
    path.write_text(str((int(path.read_text()) + uj) % MAX_UJ))


def test_rapl_sums_packages_and_dram_but_not_core(tmp_path: Path) -> None:
    counters = make_powercap(tmp_path)
    probe = RaplProbe(tmp_path, wall=iter([10.0, 12.5]).__next__)
    assert probe.describe() == (
        "rapl: package-0(intel-rapl:0) + dram(intel-rapl:0:1) + "
        "package-1(intel-rapl:1) + dram(intel-rapl:1:1)"
    )
    probe.start()
    bump(counters["package-0"], 3_000_000)
    bump(counters["package-1"], 2_000_000)
    bump(counters["dram-0"], 500_000)
    bump(counters["dram-1"], 250_000)
    bump(tmp_path / "intel-rapl:0" / "intel-rapl:0:0" / "energy_uj", 9_999_999)  # core: inside pkg
    reading = probe.stop()
    assert reading.joules == 5.75
    assert reading.seconds == 2.5
    assert reading.source == "measured"


def test_rapl_counter_wrap_around(tmp_path: Path) -> None:
    counters = make_powercap(tmp_path, packages=1)
    counters["package-0"].write_text(str(MAX_UJ - 1_000))
    probe = RaplProbe(tmp_path)
    probe.start()
    bump(counters["package-0"], 4_000)  # wraps past max_energy_range_uj
    assert probe.stop().joules == pytest.approx(0.004, abs=1e-12)
    assert counter_delta(MAX_UJ - 10, 5, MAX_UJ) == 15
    assert counter_delta(100, 250, MAX_UJ) == 150


def test_rapl_permission_error_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_powercap(tmp_path, packages=1)
    real = pathlib.Path.read_text

    def root_only(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pathlib.Path, "read_text", root_only)
    with pytest.raises(ProbeUnavailable, match="not readable \\(permission denied"):
        RaplProbe(tmp_path)
    probe, note = choose_probe(EnergySettings(powercap_root=str(tmp_path)), "cpu", "AMD EPYC")
    assert isinstance(probe, EstimateProbe) and "permission denied" in note
    probe, note = choose_probe(
        EnergySettings(probe="rapl", powercap_root=str(tmp_path)), "cpu", "AMD EPYC"
    )
    assert probe is None and note.startswith("energy not measured: RAPL counter")


def test_without_rapl_auto_estimates_and_says_why(tmp_path: Path) -> None:
    probe, note = choose_probe(EnergySettings(powercap_root=str(tmp_path / "none")), "cpu", "X")
    assert isinstance(probe, EstimateProbe) and probe.source == "estimated"
    assert "no powercap interface" in note
    assert choose_probe(EnergySettings(probe="none"), "cpu", "X")[0] is None


def test_estimate_is_cpu_seconds_times_watts_per_core() -> None:
    cpu = iter([100.0, 103.0])
    wall = iter([50.0, 51.5])
    probe = EstimateProbe(CpuPower(4.5, "test"), cpu_seconds=cpu.__next__, wall=wall.__next__)
    probe.start()
    reading = probe.stop()
    assert (reading.joules, reading.seconds, reading.source) == (13.5, 1.5, "estimated")


@pytest.mark.parametrize(
    ("model", "watts", "basis"),
    [
        ("AMD EPYC 7763 64-Core Processor", 280 / 64, "AMD EPYC 7763"),
        ("AMD EPYC", 360 / 96, "family estimate"),
        ("Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", 270 / 40, "Xeon Platinum 8380"),
        ("Some Future CPU", 10.0, "conservative default"),
    ],
)
def test_cpu_power_table(model: str, watts: float, basis: str) -> None:
    power = cpu_power(model)
    assert power.watts_per_core == pytest.approx(watts)
    assert basis in power.basis
    assert cpu_power(model, override_w=3.0).watts_per_core == 3.0


class FakeNvml(SimpleNamespace):
    """The slice of pynvml the probe uses; energy in mJ, power in mW."""

    class NVMLError(Exception):
        pass

    def __init__(self, counter: bool) -> None:
        super().__init__(energy_mj=1_000_000, power_mw=150_000, counter=counter)

    def nvmlInit(self) -> None:
        return None

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if index != 0:
            raise self.NVMLError("Invalid Argument")
        return "gpu0"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.counter:
            raise self.NVMLError("Not Supported")
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return self.power_mw


def test_nvml_total_energy_counter() -> None:
    nvml = FakeNvml(counter=True)
    probe = NvmlProbe(0, nvml=nvml)
    assert probe.describe() == "nvml: total energy counter"
    probe.start()
    nvml.energy_mj += 42_500
    assert probe.stop().joules == 42.5


def test_nvml_power_sampling_integrates_power_over_time() -> None:
    probe = NvmlProbe(0, nvml=FakeNvml(counter=False))
    assert probe.describe() == "nvml: power sampling"
    probe.start()
    reading = probe.stop()
    assert reading.joules == pytest.approx(150.0 * reading.seconds)
    with pytest.raises(ProbeUnavailable, match="NVML cannot open GPU 3"):
        NvmlProbe(3, nvml=FakeNvml(counter=True))


SUITE = """
    models = ["tiny-mlp"]
    backends = ["fake"]
    batch_sizes = [1, 4]
    threads = [1]
    [measure]
    budget_s = 0.3
    warmup_max_s = 0.2
    [options.fake]
    latency_ms = 0.05
    powercap_counter = "{counter}"
    uj_per_run = 2500
    [energy]
    probe = "{probe}"
    powercap_root = "{root}"
"""


@pytest.mark.parametrize("probe", ["auto", "estimate"])
def test_rows_say_measured_with_rapl_and_estimated_without(
    tmp_path: Path, write_suite: Callable[..., Path], store: Store, probe: str
) -> None:
    root = tmp_path / "powercap"
    counters = make_powercap(root, packages=1)
    suite = load_suite(
        write_suite(SUITE.format(counter=counters["package-0"], root=root, probe=probe))
    )
    rows = store.cases(Runner(store, cache_root()).run(plan(suite)))
    assert [r.status for r in rows] == ["ok", "ok"]
    for r in rows:
        if probe == "auto":
            # Each run adds 2500 uJ to the fake package counter; only sampled runs are counted.
            assert r.energy_source == "measured"
            assert r.energy_j_per_inference == pytest.approx(2500e-6 / r.batch_size, rel=1e-12)
        else:
            assert r.energy_source == "estimated"
        assert r.power_w and r.cost_usd_per_million and r.gco2_per_million
