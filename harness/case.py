"""One case: what is measured (model x variant x backend x shape x threads x scenario) and the
settings that travel with it into the worker (timing, energy, timeouts, fidelity threshold).

Cases are made by :func:`harness.plan.plan`, the one expander; nothing else builds them from a
suite.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.measure.energy import EnergySettings
from harness.measure.fidelity import DEFAULT_MIN_RATIO
from harness.measure.timing import TimingPolicy
from harness.scenarios.config import ServingKnobs, ServingSettings

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_BUILD_TIMEOUT_S = 1800.0


# the details key of a screening round's row (see ``CaseSettings.screening``)
SCREENING = "screening"


@dataclass(frozen=True)
class CaseSettings:
    """How one case is measured. Times in seconds.

    timing:             the adaptive timing loop's policy (warm-up, sampling, budget).
    energy:             which energy probe, and the CPU power override for the estimate.
    timeout_s:          wall-clock bound of the case's measuring worker.
    build_timeout_s:    wall-clock bound of building one artifact (export, quantize, distil).
    fidelity_min_ratio: share of the fp32 metric a variant must keep to pass the gate.
    retries:            fleet executors: how many more times a case whose node was lost (or
                        whose worker died with it) runs, on another node of its class.
    serving:            how load scenarios run (the suite's ``[serving]`` table).
    screening:          a short round of ``recommend --run``: timing only. The untimed passes
                        (fidelity, executed precision, backend facts) are left to the rounds
                        that measure the cases that can still win, and no peak RSS is kept
                        (the round's cases share one worker process).
    keep_warmup:        a search round's case: its warm-up keeps the bound the full
                        measurement has, min(warmup_max_s, the suite's budget_s), instead of
                        being capped at the round's shorter budget_s.
    """

    timing: TimingPolicy = field(default_factory=TimingPolicy)
    energy: EnergySettings = field(default_factory=EnergySettings)
    timeout_s: float = DEFAULT_TIMEOUT_S
    build_timeout_s: float = DEFAULT_BUILD_TIMEOUT_S
    fidelity_min_ratio: float = DEFAULT_MIN_RATIO
    retries: int = 0
    serving: ServingSettings = field(default_factory=ServingSettings)
    screening: bool = False
    keep_warmup: bool = False


@dataclass(frozen=True)
class Case:
    """One measurement. ``bindings`` are a user model's shape bindings, e.g. ("height=640",);
    ``device`` is the backend's first declared device; ``hardware`` is the fleet hardware
    class the case must run on (None: this machine); ``serving`` the instances and dynamic
    batcher of a load-scenario case. A decoder case has ``gen_len`` (tokens generated per row,
    EOS ignored) and its ``seq_len`` is the prompt length."""

    model: str
    variant: str
    backend: str
    batch_size: int
    seq_len: int | None
    threads: int
    scenario: str = "single-stream"
    device: str = "cpu"
    options: Mapping[str, Any] = field(default_factory=dict)
    bindings: tuple[str, ...] = ()
    settings: CaseSettings = field(default_factory=CaseSettings)
    hardware: str | None = None
    serving: ServingKnobs = field(default_factory=ServingKnobs)
    gen_len: int | None = None

    @property
    def load_driven(self) -> bool:
        """Measured by MLPerf LoadGen (every scenario but single-stream, and single-stream
        when the suite asks for LoadGen) rather than by the harness's timing loop."""
        return self.scenario != "single-stream" or self.settings.serving.loadgen

    @property
    def shape(self) -> str:
        if self.gen_len is not None:
            return f"b{self.batch_size}p{self.seq_len}g{self.gen_len}"
        text = f"b{self.batch_size}" + (f"s{self.seq_len}" if self.seq_len else "")
        return "-".join((text, *self.bindings))

    @property
    def case_id(self) -> str:
        parts = (
            self.model,
            self.variant,
            self.backend,
            self.shape,
            f"t{self.threads}",
            self.scenario,
        )
        text = "/".join((*parts, self.serving.label) if self.load_driven else parts)
        return text + (f"@{self.hardware}" if self.hardware else "")
