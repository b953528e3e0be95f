"""The Backend protocol, its capability flags and the lazy entry-point registry.

A backend only does the work (``run``) and waits for it (``synchronize``); the harness owns the
clock. Importing a backend module must not import its runtime: ``check`` does, and raises
``BackendUnavailable`` with the reason when the runtime is missing or unusable here.

Call order in a worker: ``check -> load -> prepare -> run/synchronize (timed) -> outputs -> close``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from harness.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

    from harness.optimize.artifacts import Artifact

ENTRY_POINT_GROUP = "infrabench.backends"


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared without importing its runtime.

    consumes:    the artifact form it runs: the ONNX file, or the matching torch module.
    devices:     devices it can run on.
    own_clock:   ``run()`` returns elapsed ns measured by a better clock than the harness's.
    options:     suite options it accepts (``[options.NAME]`` table): name -> a type, or the
                 tuple of allowed strings.
    runtime_modules: modules that must be importable; checked cheaply before a worker starts.
    install_hint: what to install when those are missing.
    computes_outputs: ``outputs()`` are the model's real outputs (false only for test doubles),
                 so fidelity can be scored.
    energy:      ``host``: the harness's probe measures (or estimates) the machine running the
                 backend; ``simulated``: the backend models a device and reports joules itself
                 (``energy_j()``, per inference of the prepared batch) and its
                 ``device_label`` (the row's device).

    Any backend may also define ``report() -> dict``: facts merged into the case's details
    (a compiler's target and cache state, a simulator's per-layer model).
    """

    consumes: Literal["onnx", "torch"]
    devices: tuple[str, ...] = ("cpu",)
    own_clock: bool = False
    options: Mapping[str, type | tuple[str, ...]] = field(default_factory=dict)
    runtime_modules: tuple[str, ...] = ()
    install_hint: str = ""
    computes_outputs: bool = True
    energy: Literal["host", "simulated"] = "host"


@dataclass(frozen=True)
class BackendSettings:
    """How a case asks a backend to run: explicit threads, device, backend options, the shapes
    of the inputs it will be given (for runtimes that compile for static shapes) and the
    precision to execute in (a runtime variant step)."""

    threads: int
    device: str = "cpu"
    options: Mapping[str, Any] = field(default_factory=dict)
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    precision: str = "fp32"  # fp16/bf16: execute in that precision, or raise BackendUnavailable


class Backend(Protocol):
    """One inference runtime. Instances live in a single worker process for one case."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def check(self) -> None:
        """Import the runtime; raise ``BackendUnavailable`` saying why it cannot run here."""
        ...

    def versions(self) -> dict[str, str]:
        """Versions of the runtime libraries actually loaded, recorded with the result."""
        ...

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        """Load (and compile) the artifact with the given threads; timed as ``load_s``.
        Returns the seconds spent compiling (``compile_s``) when that is a separate step."""
        ...

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Bind inputs outside the timed region (host-to-device copies belong here)."""
        ...

    def run(self) -> int | None:
        """Do one inference on the prepared inputs; may return immediately (async devices).
        Returns elapsed ns only when ``capabilities.own_clock`` is set, else ``None``."""
        ...

    def synchronize(self) -> None:
        """Block until the work started by ``run`` has finished."""
        ...

    def outputs(self) -> dict[str, np.ndarray]:
        """The outputs of the last ``run``, as host float arrays, for fidelity checks."""
        ...

    def executed_precision(self) -> str | None:
        """The precision the runtime really executed in (e.g. ``fp32``, ``bf16``)."""
        ...

    def close(self) -> None:
        """Release the runtime's resources."""
        ...


def backend_names() -> list[str]:
    """Registered backend names, without importing any backend module."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``; importing it imports no runtime."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        raise ConfigError(f"unknown backend {name!r}; allowed: {', '.join(backend_names())}")
    cls: type[Backend] = matches[0].load()
    return cls


def quick_unavailable_reason(name: str) -> str | None:
    """Why ``name`` certainly cannot run here (a runtime module is missing), or ``None``.

    Cheap: looks modules up without importing them. ``check`` in the worker has the last word.
    """
    caps = backend_class(name).capabilities
    missing = [m for m in caps.runtime_modules if importlib.util.find_spec(m) is None]
    if missing:
        hint = f" ({caps.install_hint})" if caps.install_hint else ""
        return f"{', '.join(missing)} is not installed{hint}"
    return None


def availability(name: str) -> str | None:
    """Import the backend's runtime here and return why it is unusable, or ``None`` if usable."""
    reason = quick_unavailable_reason(name)
    if reason is not None:
        return reason
    try:
        backend_class(name)().check()
    except BackendUnavailable as exc:
        return str(exc)
    return None


# -- small optional protocols: what some backends can do beyond the required methods ---------


@runtime_checkable
class ReportsDetails(Protocol):
    """A backend with facts for the case's details (a compiler's target and cache state, a
    simulator's per-layer model), read while it is still loaded."""

    def report(self) -> dict[str, Any]: ...


@runtime_checkable
class SimulatedDevice(Protocol):
    """A backend that models a device instead of running on the host: it reports the joules
    of one inference of the prepared batch, the device label for the row, and the hardware
    class whose hourly price applies (a key of prices.toml's ``hardware`` table)."""

    device_label: str
    hardware_class: str

    def energy_j(self) -> float: ...


@runtime_checkable
class ChecksOptions(Protocol):
    """A backend class that judges option values only it knows (e.g. a preset name); raises
    ``ConfigError`` naming ``where``."""

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None: ...
