"""A deterministic backend and a fake clock: the test seam of the harness.

The fake has its own clock (``capabilities.own_clock``): each ``run`` returns a simulated
elapsed time instead of doing work, so a verdict on its figures never depends on how fast or
how busy the machine is. Durations are ``latency_ms`` with a seeded jitter of +-``jitter`` (a
fraction; default 1%), or, in unit tests, the scripted ``durations(i)``, by which a
``FakeClock`` (the harness's clock in those tests) is also advanced, so budgets and warm-up
bounds can be asserted exactly with no sleeps. Suite options make it fail on purpose, to test
that a broken case becomes a failed row and the run goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np

from harness.backend import Artifact, BackendSettings, Capabilities
from harness.errors import BackendError, BackendUnavailable

FAILURES = ("", "unavailable", "load", "run", "exception", "crash", "hang")


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start_ns: int = 0) -> None:
        self.ns = start_ns

    def now_ns(self) -> int:
        return self.ns

    def advance(self, ns: int) -> None:
        self.ns += ns


class FakeBackend:
    """Does no real inference. ``durations(i)`` gives the ns of the i-th run (0-based)."""

    name: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        consumes="onnx",
        computes_outputs=False,
        own_clock=True,
        options={
            "latency_ms": float,
            "jitter": float,
            "seed": int,
            "fail": FAILURES,
            "powercap_counter": str,
            "uj_per_run": int,
            "sleep_ms": float,
        },
    )

    def __init__(
        self, clock: FakeClock | None = None, durations: Callable[[int], int] | None = None
    ) -> None:
        self.clock = clock
        self.durations = durations
        self.calls = 0
        self.latency_ms = 0.2
        self.fail = ""
        self.threads: int | None = None
        self.counter: Path | None = None
        self.uj_per_run = 0
        self.jitter = 0.01
        self.sleep_s = 0.0
        self.rng = np.random.default_rng(0)
        self._inputs: Mapping[str, np.ndarray] = {}

    def check(self) -> None:
        return None

    def versions(self) -> dict[str, str]:
        return {"fake": "1"}

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        self.threads = settings.threads
        self.latency_ms = float(settings.options.get("latency_ms", self.latency_ms))
        self.fail = str(settings.options.get("fail", ""))
        # A fake RAPL counter this backend advances on every run, to test measured energy.
        counter = settings.options.get("powercap_counter")
        self.counter = Path(counter) if counter else None
        self.uj_per_run = int(settings.options.get("uj_per_run", 0))
        self.jitter = float(settings.options.get("jitter", self.jitter))
        # Real time per run, for LoadGen scenarios: LoadGen's clock is the wall clock.
        self.sleep_s = float(settings.options.get("sleep_ms", 0.0)) / 1e3
        self.rng = np.random.default_rng(int(settings.options.get("seed", 0)))
        if self.fail == "unavailable":
            raise BackendUnavailable("fake runtime asked to be unavailable")
        if self.fail == "load":
            raise BackendError("fake: load failed on purpose")
        return None

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        self._inputs = inputs

    def run(self) -> int | None:
        index = self.calls
        self.calls += 1
        if self.fail == "run":
            raise BackendError("fake: run failed on purpose")
        if self.fail == "exception":
            raise ZeroDivisionError("fake: a bug in a backend")
        if self.fail == "crash":
            os.abort()
        if self.fail == "hang":
            while True:
                time.sleep(1)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if self.counter is not None:
            self.counter.write_text(str(int(self.counter.read_text()) + self.uj_per_run))
        if self.durations is not None:
            elapsed = self.durations(index)
        else:
            spread = self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
            elapsed = max(1, round(self.latency_ms * 1e6 * (1 + spread)))
        if self.clock is not None:
            self.clock.advance(elapsed)
        return elapsed

    def synchronize(self) -> None:
        return None

    def outputs(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(v, dtype=np.float32) for name, v in self._inputs.items()}

    def executed_precision(self) -> str | None:
        return "fp32"

    def close(self) -> None:
        return None
