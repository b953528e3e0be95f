"""Noise checks: flags from injected readings and from a case's spread, exactly."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.measure.noise import (
    CpuSnapshot,
    SystemReadings,
    case_flags,
    cpu_snapshot,
    describe,
    other_cpu,
    read_system,
    row_noise,
    system_advice,
    system_flags,
    window_flags,
)

QUIET = SystemReadings(
    cpus=2, load_avg_1m=0.3, other_cores=0.05, steal_cores=0.0, mem_available=0.6,
    mem_pressure_avg10=0.0, governors=("performance",), boost=False,
)  # fmt: skip


def test_a_quiet_machine_raises_no_flag_and_no_advice() -> None:
    assert system_flags(QUIET) == []
    assert system_advice(QUIET) == []


def test_two_busy_loops_are_named_with_the_cores_they_used() -> None:
    busy = SystemReadings(
        cpus=2, load_avg_1m=2.4, other_cores=1.74, busiest=(("yes", 1.0), ("python3", 0.74))
    )
    assert system_flags(busy) == [
        "other processes used 1.7 cores (yes 1.0, python3 0.7)",
        "load average 2.4 on 2 CPUs",
    ]


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"other_cores": 0.5}, "other processes used 0.5 cores"),
        ({"load_avg_1m": 2.01}, "load average 2.0 on 2 CPUs"),
        ({"steal_cores": 0.1}, "the hypervisor took 0.1 cores (steal)"),
        ({"mem_available": 0.05}, "only 5% of memory available"),
        ({"mem_pressure_avg10": 12.0}, "memory pressure: tasks stalled 12% of the last 10 s"),
    ],
)
def test_each_threshold_flags_at_its_documented_value(change: dict, flag: str) -> None:
    assert system_flags(SystemReadings(**{**QUIET.__dict__, **change})) == [flag]


def test_just_below_the_thresholds_is_quiet() -> None:
    edge = SystemReadings(
        cpus=2, load_avg_1m=2.0, other_cores=0.49, steal_cores=0.09, mem_available=0.1,
        mem_pressure_avg10=9.9,
    )  # fmt: skip
    assert system_flags(edge) == []


def test_unreadable_readings_raise_no_flag() -> None:
    assert system_flags(SystemReadings(cpus=4)) == []
    assert ("governor", "not readable here") in describe(SystemReadings(cpus=4))


def test_governor_and_boost_are_advice_not_noise() -> None:
    tuned_badly = SystemReadings(**{**QUIET.__dict__, "governors": ("powersave",), "boost": True})
    assert system_flags(tuned_badly) == []
    assert system_advice(tuned_badly) == [
        "CPU frequency governor powersave (not performance): the clock ramps with load",
        "turbo boost is on: the clock depends on temperature and other cores' load",
    ]


def test_case_flags_from_cv_and_interval_width() -> None:
    assert case_flags(0.03, 0.015) == []
    assert case_flags(None, None) == []  # too few samples to judge: no flag, no guess
    assert case_flags(0.31, 0.015) == ["cv 0.31 above 0.10: samples vary widely"]
    assert case_flags(0.03, 0.061) == [
        "p50 interval 6.1% wide, target 2%: the median did not settle"
    ]
    assert case_flags(0.03, 0.061, target_rel_ci=0.05) == []
    assert len(case_flags(0.2, 0.2)) == 2


def test_other_cpu_subtracts_this_process_tree_and_names_the_busiest() -> None:
    seen = {1: ("yes", 3.0), 2: ("python3", 1.0), 3: ("sshd", 0.5)}
    before = CpuSnapshot(t_s=10.0, busy_s=100.0, steal_s=5.0, own_s=20.0, others=seen)
    after = CpuSnapshot(t_s=12.0, busy_s=106.0, steal_s=5.4, own_s=22.0,
                        others={1: ("yes", 5.0), 2: ("python3", 2.5), 3: ("sshd", 0.51),
                                4: ("new", 9.0)})  # fmt: skip
    cores, steal, busiest = other_cpu(before, after)
    # machine 6 CPU-s in 2 s, of which this tree used 2: other processes 2 cores
    assert cores == pytest.approx(2.0) and steal == pytest.approx(0.2)
    assert busiest == (("yes", 1.0), ("python3", 0.75))  # sshd under 0.05; "new" not seen twice


def test_read_system_returns_readings_in_range() -> None:
    r = read_system(window_s=0.05)
    assert r.cpus >= 1 and r.window_s >= 0.05
    assert r.other_cores is not None and r.other_cores >= 0.0
    assert r.mem_available is None or 0.0 < r.mem_available <= 1.0
    assert all(isinstance(flag, str) for flag in system_flags(r))


def test_env_shows_the_noise_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "noise check" in out and "other processes" in out and "load average" in out
    assert main(["env", "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["noise"]
    assert {"flags", "advice", "other_cores", "load_avg_1m"} <= set(check)


def test_row_noise_joins_system_and_case_flags() -> None:
    assert row_noise([], []) is None
    assert row_noise(
        ["load average 2.4 on 2 CPUs"], ["cv 0.31 above 0.10: samples vary widely"]
    ) == ("load average 2.4 on 2 CPUs; cv 0.31 above 0.10: samples vary widely")


def test_window_flags_judge_the_cpu_of_one_window() -> None:
    before = CpuSnapshot(t_s=0.0, busy_s=10.0, steal_s=0.0, own_s=1.0, others={7: ("yes", 1.0)})
    after = CpuSnapshot(t_s=2.0, busy_s=16.0, steal_s=0.0, own_s=3.0, others={7: ("yes", 4.4)})
    flags = window_flags(before, after)  # 6 CPU-s in 2 s, 2 of them this tree's: 2 cores
    assert flags[0] == "other processes used 2.0 cores (yes 1.7)"
    assert window_flags(cpu_snapshot(), cpu_snapshot()) is not None  # reads this machine
