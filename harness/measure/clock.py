"""The harness's clock. Passed in everywhere it is used, so tests can substitute a fake one."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock with nanosecond ticks."""

    def now_ns(self) -> int:
        """Nanoseconds from an arbitrary, fixed origin; never goes backwards."""
        ...


class PerfCounterClock:
    """``time.perf_counter_ns``: the highest-resolution monotonic clock Python offers."""

    def now_ns(self) -> int:
        return time.perf_counter_ns()
