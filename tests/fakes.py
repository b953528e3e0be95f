"""Test doubles for the runner's seams: a launcher that runs tasks here or answers from a
script, and a noise watch with fixed flags (so no verdict depends on the machine's load)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.launch import InlineLauncher, Outcome, Progress, Task, no_progress
from harness.worker import MeasureTask


@dataclass
class ScriptedLauncher:
    """Runs tasks in this process, except that a measuring task whose case id is in
    ``script`` gets that outcome instead (a crash, a timeout) without running; ``interrupt``
    raises KeyboardInterrupt before the n-th measuring task (0-based)."""

    script: dict[str, Outcome[Any]] = field(default_factory=dict)
    interrupt: int | None = None
    launched: list[Task[Any]] = field(default_factory=list)

    def launch(self, task: Task[Any], progress: Progress = no_progress) -> Outcome[Any]:
        if isinstance(task, MeasureTask):
            measured = sum(isinstance(t, MeasureTask) for t in self.launched)
            if measured == self.interrupt:
                raise KeyboardInterrupt
            self.launched.append(task)
            if task.case.case_id in self.script:
                return self.script[task.case.case_id]
        else:
            self.launched.append(task)
        return InlineLauncher().launch(task, progress)


@dataclass
class FixedWatch:
    """A noise watch that reports the same flags for every case (none by default)."""

    run_flags: list[str] = field(default_factory=list)
    case_flags: Callable[[], list[str]] = list

    def before_run(self) -> list[str]:
        return list(self.run_flags)

    def start(self) -> object:
        return None

    def stop(self, token: object) -> list[str]:
        return self.case_flags()


class CudaEvent:
    """A CUDA event stand-in: ``elapsed_time`` is the ms between two records, scripted."""

    def __init__(self, enable_timing: bool = False) -> None:
        self.records = 0

    def record(self, stream: object = None) -> None:
        self.records += 1

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: CudaEvent) -> float:
        return 0.25


def use_stand_in_cuda(monkeypatch: Any) -> None:
    """torch.cuda answering as a GPU would (an sm_90 card, 3 MiB allocator peak, events 0.25 ms
    apart), with torch-cuda's tensors on the CPU (``DEVICE = "cpu"``)."""
    import torch

    import backends.torch_cuda as tc

    monkeypatch.setattr(tc, "DEVICE", "cpu")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    answers = {
        "is_available": lambda: True,
        "synchronize": lambda: None, "reset_peak_memory_stats": lambda: None,
        "current_stream": lambda: "stream", "Event": CudaEvent, "empty_cache": lambda: None,
        "max_memory_allocated": lambda: 3 * 2**20, "max_memory_reserved": lambda: 4 * 2**20,
        "current_device": lambda: 0, "get_device_capability": lambda: (9, 0),
        "get_device_name": lambda: "Stand-in GPU",
    }  # fmt: skip
    for name, value in answers.items():
        monkeypatch.setattr(torch.cuda, name, value, raising=False)
