"""``--executor local|ray|slurm``: the launcher a run uses, checked against the plan before
anything runs (a class no node offers is refused here, in one line)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from harness.case import Case
from harness.errors import ConfigError
from harness.launch import Launcher, launcher
from harness.launch.slurm import SlurmOptions

EXECUTORS = ("local", "ray", "slurm")


@dataclass(frozen=True)
class ExecutorChoice:
    """The command line's executor options. ``address``: Ray's (``auto``, ``ray://host:port``);
    ``slurm``: where and how Slurm jobs go (None unless ``--executor slurm``)."""

    executor: str = "local"
    inline: bool = False
    address: str | None = None
    slurm: SlurmOptions | None = None


def executor_launcher(choice: ExecutorChoice, cases: Sequence[Case]) -> Launcher:
    """The launcher for ``choice``; ConfigError when the plan cannot run there: a fleet
    executor with cases of no hardware class, a class no node offers, or (local) a class this
    machine's fingerprint contradicts."""
    classes = sorted({c.hardware for c in cases if c.hardware})
    if choice.executor != "ray" and choice.address:
        raise ConfigError("command line: --address is for --executor ray")
    if choice.executor == "local":
        _check_here(classes)
        return launcher(choice.inline)
    if choice.inline:
        raise ConfigError(
            f"command line: --inline runs here; not with --executor {choice.executor}"
        )
    if not classes or any(c.hardware is None for c in cases):
        raise ConfigError(
            f"--executor {choice.executor}: every case needs a hardware class to be placed by: "
            "the suite's hardware = [...] or --hardware CLASS"
        )
    if choice.executor == "ray":
        from harness.launch.ray import RayLauncher

        ray_launcher = RayLauncher(choice.address)
        ray_launcher.check(classes)
        return ray_launcher
    if choice.executor == "slurm" and choice.slurm is not None:
        from harness.launch.slurm import SlurmLauncher

        slurm_launcher = SlurmLauncher(choice.slurm)
        slurm_launcher.check(classes)
        return slurm_launcher
    raise ConfigError(f"command line: --executor: unknown value {choice.executor!r}; "
                      f"allowed: {', '.join(EXECUTORS)}")  # fmt: skip


def _check_here(classes: list[str]) -> None:
    """A local run of a class: this machine must be of it (as a fleet node checks itself)."""
    from harness.environment import CLASS_ENV, KNOWN_CLASSES, class_mismatch, fingerprint

    fp = fingerprint() if classes else {}
    advertised = os.environ.get(CLASS_ENV)
    for cls in classes:
        if cls not in KNOWN_CLASSES and advertised is None:
            raise ConfigError(
                f"--executor local: {cls!r} is not a class infrabench can check from the "
                f"fingerprint ({', '.join(KNOWN_CLASSES)}); on a machine of that class set "
                f"{CLASS_ENV}={cls}, or run it on a fleet executor"
            )
        mismatch = class_mismatch(fp, cls, advertised)
        if mismatch is not None:
            raise ConfigError(
                f"--executor local: this machine cannot run class {cls!r}: {mismatch}"
            )
