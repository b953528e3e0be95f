"""Energy probes, run around the sampling phase of a case.

Each probe tags its figure with a source: ``measured`` (RAPL through Linux powercap, NVIDIA NVML)
or ``estimated`` (worker CPU-seconds x watts per core, from ``harness/data/cpu_power.toml``).
``simulated`` figures come from simulator backends. A probe that cannot work here raises
``ProbeUnavailable`` with the reason; unknown energy is null, never 0.
"""

from __future__ import annotations

import re
import resource
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

from harness.errors import HarnessError

Source = Literal["measured", "estimated", "simulated"]
PROBES = ("auto", "rapl", "nvml", "estimate", "none")
POWERCAP_ROOT = Path("/sys/class/powercap")


class ProbeUnavailable(HarnessError):
    """This energy probe cannot measure here; the message says why."""


@dataclass(frozen=True)
class EnergyReading:
    """Joules used over ``seconds`` of wall time, and how that was known."""

    joules: float
    seconds: float
    source: Source
    probe: str


class EnergyProbe(Protocol):
    source: Source

    def describe(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> EnergyReading: ...


# -- RAPL (Intel and AMD) through the powercap sysfs ---------------------------------------------


@dataclass(frozen=True)
class RaplZone:
    name: str
    energy_file: Path
    max_range_uj: int


def rapl_zones(root: Path = POWERCAP_ROOT) -> list[RaplZone]:
    """Package zones and their DRAM sub-zones (core/uncore are parts of the package: skipped).

    Raises ProbeUnavailable when there are none or their counters cannot be read.
    """
    if not root.is_dir():
        raise ProbeUnavailable(f"no powercap interface at {root} (RAPL not exposed here)")
    zones = []
    for package in sorted(root.glob("intel-rapl:[0-9]*")):
        if package.name.count(":") != 1:
            continue
        candidates = [package, *sorted(package.glob(f"{package.name}:[0-9]*"))]
        for zone in candidates:
            name = _read_text(zone / "name")
            if zone is package or name == "dram":
                zones.append(
                    RaplZone(
                        f"{name}({zone.name})",
                        zone / "energy_uj",
                        int(_read_text(zone / "max_energy_range_uj")),
                    )
                )
    if not zones:
        raise ProbeUnavailable(f"no RAPL package zones under {root}")
    for found in zones:
        _read_uj(found)  # fail now, clearly, if the counters are root-only
    return zones


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError:
        raise ProbeUnavailable(
            f"RAPL counter {path} is not readable (permission denied; recent kernels make "
            "energy_uj root-only: run as root or grant read access)"
        ) from None
    except OSError as exc:
        raise ProbeUnavailable(f"cannot read {path}: {exc.strerror}") from None


def _read_uj(zone: RaplZone) -> int:
    return int(_read_text(zone.energy_file))


def counter_delta(start: int, end: int, max_range: int) -> int:
    """Microjoules between two readings of a counter that wraps to 0 after ``max_range``."""
    return end - start if end >= start else end + max_range - start


class RaplProbe:
    """Package + DRAM energy of every socket: the whole machine's CPU energy while the case ran."""

    source: Source = "measured"

    def __init__(
        self, root: Path = POWERCAP_ROOT, wall: Callable[[], float] = time.perf_counter
    ) -> None:
        self.zones = rapl_zones(root)
        self.wall = wall
        self._start: list[int] = []
        self._t0 = 0.0

    def describe(self) -> str:
        return "rapl: " + " + ".join(z.name for z in self.zones)

    def start(self) -> None:
        self._t0 = self.wall()
        self._start = [_read_uj(z) for z in self.zones]

    def stop(self) -> EnergyReading:
        end = [_read_uj(z) for z in self.zones]
        seconds = self.wall() - self._t0
        uj = sum(
            counter_delta(s, e, z.max_range_uj)
            for s, e, z in zip(self._start, end, self.zones, strict=True)
        )
        return EnergyReading(uj / 1e6, seconds, "measured", self.describe())


# -- NVIDIA NVML ---------------------------------------------------------------------------------


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise ProbeUnavailable(
            'nvidia-ml-py is not installed (pip install "infrabench[gpu]")'
        ) from None
    return pynvml


class NvmlProbe:
    """GPU energy: the total-energy counter (Volta and newer), else power sampled every 20 ms."""

    source: Source = "measured"
    interval_s = 0.02

    def __init__(
        self, index: int = 0, nvml: Any = None, wall: Callable[[], float] = time.perf_counter
    ) -> None:
        if nvml is None:
            nvml = _import_pynvml()
        self.nvml = nvml
        self.wall = wall
        try:
            nvml.nvmlInit()
            self.handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError as exc:
            raise ProbeUnavailable(f"NVML cannot open GPU {index}: {exc}") from None
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self.counter = True
        except nvml.NVMLError:
            self.counter = False
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._e0 = 0
        self._t0 = 0.0

    def describe(self) -> str:
        return "nvml: " + ("total energy counter" if self.counter else "power sampling")

    def _power_w(self) -> float:
        return float(self.nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._samples.append((self.wall(), self._power_w()))

    def start(self) -> None:
        self._t0 = self.wall()
        if self.counter:
            self._e0 = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            return
        self._samples = [(self._t0, self._power_w())]
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample_loop, daemon=True)
        self._thread.start()

    def stop(self) -> EnergyReading:
        if self.counter:
            mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self._e0
            return EnergyReading(mj / 1000.0, self.wall() - self._t0, "measured", self.describe())
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._samples.append((self.wall(), self._power_w()))
        joules = sum(
            (t1 - t0) * (p0 + p1) / 2
            for (t0, p0), (t1, p1) in zip(self._samples, self._samples[1:], strict=False)
        )
        return EnergyReading(joules, self._samples[-1][0] - self._t0, "measured", self.describe())


# -- Estimate from CPU time ----------------------------------------------------------------------


@dataclass(frozen=True)
class CpuPower:
    watts_per_core: float
    basis: str


def cpu_power(cpu_model: str, override_w: float | None = None) -> CpuPower:
    """Watts per core for this CPU model from the shipped table (or the user's override)."""
    if override_w is not None:
        return CpuPower(override_w, f"user override: {override_w:g} W per core")
    text = resources.files("harness").joinpath("data/cpu_power.toml").read_text("utf-8")
    table = tomllib.loads(text)
    for entry in table["cpu"]:
        if re.search(entry["match"], cpu_model):
            watts = entry["tdp_w"] / entry["cores"]
            return CpuPower(watts, f"{watts:.2f} W/core: {entry['source']}")
    watts = float(table["default_watts_per_core"])
    return CpuPower(watts, f"{watts:.2f} W/core: {table['default_source']}")


def process_cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (the runtimes' pools included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class EstimateProbe:
    """CPU-seconds of the worker x watts per core. Idle power of the machine is not charged."""

    source: Source = "estimated"

    def __init__(
        self,
        power: CpuPower,
        cpu_seconds: Callable[[], float] = process_cpu_seconds,
        wall: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.power = power
        self.cpu_seconds = cpu_seconds
        self.wall = wall
        self._c0 = self._t0 = 0.0

    def describe(self) -> str:
        return f"estimate: CPU-seconds x {self.power.basis}"

    def start(self) -> None:
        self._t0, self._c0 = self.wall(), self.cpu_seconds()

    def stop(self) -> EnergyReading:
        cpu = self.cpu_seconds() - self._c0
        return EnergyReading(
            cpu * self.power.watts_per_core, self.wall() - self._t0, "estimated", self.describe()
        )


# -- Choosing a probe ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EnergySettings:
    """``probe``: one of PROBES. ``auto`` measures where it can and estimates elsewhere."""

    probe: str = "auto"
    watts_per_core: float | None = None
    powercap_root: str = str(POWERCAP_ROOT)


def choose_probe(
    settings: EnergySettings, device: str, cpu_model: str
) -> tuple[EnergyProbe | None, str]:
    """The probe for a case on ``device``, and a note on why it (or none) was chosen."""
    if settings.probe == "none":
        return None, "energy not measured (probe = none)"
    gpu = device.startswith("cuda")
    wanted = settings.probe if settings.probe != "auto" else ("nvml" if gpu else "rapl")
    fallback_note = ""
    try:
        if wanted == "nvml":
            index = int(device.partition(":")[2] or 0)
            return NvmlProbe(index), ""
        if wanted == "rapl":
            return RaplProbe(Path(settings.powercap_root)), ""
    except ProbeUnavailable as exc:
        if settings.probe != "auto":
            return None, f"energy not measured: {exc}"
        fallback_note = f"{exc}; "
    if gpu:
        return None, f"{fallback_note}no CPU-time estimate applies to a GPU case"
    return EstimateProbe(cpu_power(cpu_model, settings.watts_per_core)), fallback_note
