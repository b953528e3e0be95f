"""Is this machine quiet enough to measure on, and was this case's measurement stable?

Two checks, after pyperf's ``system show`` (the machine) and ``check`` (a result):

* ``read_system()`` takes readings (load average, CPU used by *other* processes over a short
  window, hypervisor steal, memory headroom and pressure, frequency governor and boost) and
  ``system_flags(readings)`` turns them into flags such as
  ``"other processes used 1.7 cores (yes 1.0, python3 0.7)"``. ``system_advice`` lists settings
  that make results drift between runs (governor, boost) without making this run noisy.
* ``case_flags(cv, rel_ci_width)`` flags a case whose samples varied widely or whose median
  interval stayed wide; ``window_flags(before, after)`` checks the machine over one case
  (``cpu_snapshot()`` when it starts and ends); ``row_noise`` joins flags into a row's value.

The functions that decide are pure (readings in, flags out); only ``read_system`` and
``cpu_snapshot`` look at the machine. A flag is a short sentence with no "noisy:" prefix; the
views add that.

Thresholds (module constants, each with where it comes from):

* ``MAX_OTHER_CORES = 0.5``: other processes using half a core or more. A busy loop is one
  core; idle daemons stay well under a tenth of one.
* ``MAX_LOAD_PER_CPU = 1.0``: a 1-minute load average above the number of CPUs means runnable
  threads waited for a CPU (the kernel's definition of load).
* ``MAX_STEAL_CORES = 0.1``: the hypervisor gave a tenth of a core to other guests.
* ``MIN_MEM_AVAILABLE = 0.10``: less than 10% of memory available: reclaim and swapping start.
* ``MAX_MEM_PRESSURE = 10.0``: /proc/pressure/memory "some avg10" of 10%: some task stalled on
  memory a tenth of the last 10 s (kernel PSI documentation).
* ``MAX_CV = 0.10``: pyperf's ``check`` warns when the standard deviation exceeds 10% of the mean.
* ``CI_SLACK = 2.0``: a p50 interval more than twice the target width (default target 2%, the
  timing policy's ``target_rel_ci``): the time budget ran out long before the median settled.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

MAX_OTHER_CORES = 0.5
MAX_LOAD_PER_CPU = 1.0
MAX_STEAL_CORES = 0.1
MIN_MEM_AVAILABLE = 0.10
MAX_MEM_PRESSURE = 10.0
MAX_CV = 0.10
CI_SLACK = 2.0
DEFAULT_TARGET_REL_CI = 0.02  # the timing policy's default p50 interval width
WINDOW_S = 0.5  # how long read_system watches other processes


@dataclass(frozen=True)
class SystemReadings:
    """What the machine looked like. ``None``: could not be read here (not zero).

    ``other_cores`` and ``steal_cores`` are CPU-seconds per second over ``window_s`` (1.0 = one
    core busy all the time); ``busiest`` names the other processes that used the most, in cores.
    ``mem_pressure_avg10`` is a percentage of time (PSI); ``mem_available`` a fraction of total.
    """

    cpus: int
    load_avg_1m: float | None = None
    other_cores: float | None = None
    steal_cores: float | None = None
    busiest: tuple[tuple[str, float], ...] = ()
    mem_available: float | None = None
    mem_pressure_avg10: float | None = None
    governors: tuple[str, ...] = ()
    boost: bool | None = None
    window_s: float = WINDOW_S


def system_flags(readings: SystemReadings) -> list[str]:
    """Conditions that disturb a measurement taken now, as short sentences (empty: quiet)."""
    r = readings
    flags = []
    if r.other_cores is not None and r.other_cores >= MAX_OTHER_CORES:
        top = ", ".join(f"{name} {cores:.1f}" for name, cores in r.busiest[:3])
        flags.append(
            f"other processes used {r.other_cores:.1f} cores" + (f" ({top})" if top else "")
        )
    if r.load_avg_1m is not None and r.load_avg_1m > MAX_LOAD_PER_CPU * r.cpus:
        flags.append(f"load average {r.load_avg_1m:.1f} on {r.cpus} CPUs")
    if r.steal_cores is not None and r.steal_cores >= MAX_STEAL_CORES:
        flags.append(f"the hypervisor took {r.steal_cores:.1f} cores (steal)")
    if r.mem_available is not None and r.mem_available < MIN_MEM_AVAILABLE:
        flags.append(f"only {r.mem_available:.0%} of memory available")
    if r.mem_pressure_avg10 is not None and r.mem_pressure_avg10 >= MAX_MEM_PRESSURE:
        flags.append(f"memory pressure: tasks stalled {r.mem_pressure_avg10:.0f}% of the last 10 s")
    return flags


def system_advice(readings: SystemReadings) -> list[str]:
    """Settings that let results drift between runs (not noise in this run), as pyperf's
    ``system show`` reports them; ``pyperf system tune`` or the BIOS changes them."""
    advice = []
    slow = sorted(set(readings.governors) - {"performance"})
    if slow:
        advice.append(
            f"CPU frequency governor {'/'.join(slow)} (not performance): the clock ramps with load"
        )
    if readings.boost:
        advice.append("turbo boost is on: the clock depends on temperature and other cores' load")
    return advice


def case_flags(
    cv: float | None,
    rel_ci_width: float | None,
    target_rel_ci: float = DEFAULT_TARGET_REL_CI,
    max_cv: float = MAX_CV,
    ci_slack: float = CI_SLACK,
) -> list[str]:
    """Flags for one case from its coefficient of variation (std / mean of the samples) and
    its p50 interval width relative to the p50 ((high - low) / p50, as the sampling loop
    computes it). ``None`` inputs (too few samples) raise no flag."""
    flags = []
    if cv is not None and cv > max_cv:
        flags.append(f"cv {cv:.2f} above {max_cv:.2f}: samples vary widely")
    if rel_ci_width is not None and rel_ci_width > ci_slack * target_rel_ci:
        flags.append(
            f"p50 interval {rel_ci_width:.1%} wide, target {target_rel_ci:.0%}: "
            "the median did not settle"
        )
    return flags


CASE_FLAG_STARTS = ("cv ", "p50 interval ")  # case_flags' sentences; the rest: the machine's


def machine_flags_of(noise: str | None) -> list[str]:
    """The machine's flags (``system_flags``, and a fleet node's) in a row's ``noise`` field,
    leaving out the flags of the samples themselves (``case_flags``)."""
    flags = noise.split("; ") if noise else []
    return [f for f in flags if not f.startswith(CASE_FLAG_STARTS)]


def row_noise(system: list[str], case: list[str]) -> str | None:
    """The value of a result row's ``noise`` field: the flags joined by "; ", ``None`` when
    there are none (the views split it on "; ")."""
    flags = [*system, *case]
    return "; ".join(flags) if flags else None


# -- reading the machine -------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU-seconds at one instant: the whole machine (busy, steal), this process
    tree (itself, its reaped children, its live descendants) and every other process by pid."""

    t_s: float
    busy_s: float
    steal_s: float
    own_s: float
    others: dict[int, tuple[str, float]]


def _own_tree() -> tuple[float, set[int]]:
    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    pids = {me.pid}
    for child in me.children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:
            continue  # exited between listing and reading: its time lands in children_*
        total += t.user + t.system
        pids.add(child.pid)
    return total, pids


def cpu_snapshot() -> CpuSnapshot:
    """Read the counters ``other_cpu`` subtracts; take one before and one after a window."""
    sys_times = psutil.cpu_times()
    busy = sum(getattr(sys_times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))
    own, pids = _own_tree()
    others = {}
    for proc in psutil.process_iter(["pid", "name", "cpu_times"]):
        info = proc.info
        if info["pid"] in pids or info["cpu_times"] is None:
            continue
        others[info["pid"]] = (
            info["name"] or "?",
            info["cpu_times"].user + info["cpu_times"].system,
        )
    return CpuSnapshot(time.monotonic(), busy, getattr(sys_times, "steal", 0.0), own, others)


def other_cpu(
    before: CpuSnapshot, after: CpuSnapshot
) -> tuple[float, float, tuple[tuple[str, float], ...]]:
    """(other processes' cores, steal cores, busiest others) between two snapshots. The total
    comes from the machine's counters minus this tree (it catches short-lived processes);
    the names (summed over processes of the same name) from processes alive at both ends."""
    dt = max(after.t_s - before.t_s, 1e-9)
    other = max((after.busy_s - before.busy_s) - (after.own_s - before.own_s), 0.0) / dt
    steal = max(after.steal_s - before.steal_s, 0.0) / dt
    by_name: dict[str, float] = {}
    for pid, (name, cpu) in after.others.items():
        if pid in before.others:
            by_name[name] = by_name.get(name, 0.0) + (cpu - before.others[pid][1]) / dt
    busiest = tuple(sorted(((n, c) for n, c in by_name.items() if c >= 0.05), key=lambda x: -x[1]))
    return other, steal, busiest


def window_flags(before: CpuSnapshot, after: CpuSnapshot) -> list[str]:
    """System flags for the time between two snapshots, e.g. one case's: other processes' CPU
    and steal over that window, load average and memory now. Take ``before`` when the case's
    worker starts and ``after`` when it ends; the worker, a child, counts as this tree."""
    other, steal, busiest = other_cpu(before, after)
    mem = psutil.virtual_memory()
    readings = SystemReadings(
        cpus=os.cpu_count() or 1, load_avg_1m=_load(), other_cores=other, steal_cores=steal,
        busiest=busiest, mem_available=mem.available / mem.total if mem.total else None,
        mem_pressure_avg10=_mem_pressure(), window_s=after.t_s - before.t_s,
    )  # fmt: skip
    return system_flags(readings)


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _boost() -> bool | None:
    no_turbo = _read("/sys/devices/system/cpu/intel_pstate/no_turbo")
    if no_turbo is not None:
        return no_turbo == "0"
    boost = _read("/sys/devices/system/cpu/cpufreq/boost")
    return None if boost is None else boost == "1"


def _mem_pressure() -> float | None:
    text = _read("/proc/pressure/memory")
    for line in (text or "").splitlines():
        if line.startswith("some "):
            fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
            return float(fields["avg10"]) if "avg10" in fields else None
    return None


def read_system(window_s: float = WINDOW_S) -> SystemReadings:
    """Watch the machine for ``window_s`` seconds (sleeping) and return the readings. Sources:
    os.getloadavg, psutil (CPU times per process and of the machine, memory), /proc/pressure,
    /sys cpufreq governors and intel_pstate / cpufreq boost; unreadable ones are ``None``."""
    before = cpu_snapshot()
    time.sleep(window_s)
    after = cpu_snapshot()
    other, steal, busiest = other_cpu(before, after)
    mem = psutil.virtual_memory()
    paths = glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")
    governors = tuple(sorted({g for g in map(_read, paths) if g}))
    return SystemReadings(
        cpus=os.cpu_count() or 1, load_avg_1m=_load(), other_cores=other, steal_cores=steal,
        busiest=busiest, mem_available=mem.available / mem.total if mem.total else None,
        mem_pressure_avg10=_mem_pressure(), governors=governors, boost=_boost(),
        window_s=after.t_s - before.t_s,
    )  # fmt: skip


def describe(readings: SystemReadings) -> list[tuple[str, str]]:
    """(label, value) lines for ``infrabench env``, as pyperf's ``system show`` prints them."""
    r = readings

    def known(value: object, text: str) -> str:
        return "not readable here" if value is None else text

    busiest = ", ".join(f"{n} {c:.2f}" for n, c in r.busiest[:3])
    return [
        ("load average", known(r.load_avg_1m, f"{r.load_avg_1m or 0:.2f} on {r.cpus} CPUs")),
        ("other processes", known(r.other_cores, f"{r.other_cores or 0:.2f} cores over "
                                  f"{r.window_s:.1f} s" + (f" ({busiest})" if busiest else ""))),
        ("steal", known(r.steal_cores, f"{r.steal_cores or 0:.2f} cores")),
        ("memory", known(r.mem_available, f"{r.mem_available or 0:.0%} available")
         + ("" if r.mem_pressure_avg10 is None else f", pressure {r.mem_pressure_avg10:.1f}%")),
        ("governor", "/".join(r.governors) or "not readable here"),
        ("boost", known(r.boost, "on" if r.boost else "off")),
    ]  # fmt: skip
