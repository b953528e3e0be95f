"""What a run tells the person watching it: the case, its phase, and how long is left.

``ProgressReporter`` draws one rich progress line on stderr (case, phase, done/total, elapsed,
estimated time left) and prints one line per finished case; when stderr is not a terminal it
prints each phase as a line instead. The estimate starts from the cases' own bounds (warm-up
bound + sampling budget, the most a case's timing loop may take) and, once cases have
finished, follows the pace actually seen (mean wall time of a finished case); builds and
fidelity passes make the first estimate low, which the pace corrects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.case import Case
from harness.result import CaseResult


def case_bound_s(case: Case) -> float:
    """The longest the timing loop of ``case`` may run: its warm-up bound plus its budget (s)."""
    return case.settings.timing.warmup_max_s + case.settings.timing.budget_s


def time_left_s(
    remaining: Sequence[Case], finished: int, elapsed_s: float, bound: Callable[[Case], float]
) -> float:
    """Seconds left for ``remaining`` cases: their bounds before any case finished, then the
    mean wall time per finished case so far times how many remain."""
    if finished == 0:
        return sum(bound(c) for c in remaining)
    return elapsed_s / finished * len(remaining)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class ProgressReporter:
    """A progress line on stderr; one line per finished case. ``clock`` is for tests."""

    def __init__(self, quiet: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[left]}"))  # fmt: skip
        console = Console(stderr=True)
        # Not a terminal (a log file, CI): no live line, whose last state would be printed
        # stale at the end; each phase is a plain line instead, so a long case shows progress.
        self.plain = not quiet and not console.is_terminal
        self.progress = Progress(*columns, console=console, disable=quiet or self.plain)
        self.task = self.progress.add_task("starting", total=None, left="")
        self.clock = clock
        self.cases: Sequence[Case] = ()
        self.started = clock()
        self.finished = 0

    def __enter__(self) -> ProgressReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def run_started(self, run_id: str, cases: Sequence[Case]) -> None:
        self.cases, self.started, self.finished = cases, self.clock(), 0
        self.progress.update(self.task, total=len(cases), left=self._left())

    def notice(self, text: str) -> None:
        self.progress.console.print(f"  note: {text}", markup=False, highlight=False)

    def case_started(self, index: int, total: int, case: Case, activity: str) -> None:
        if self.plain:
            self.progress.console.print(f"  [{index + 1}/{total}] {case.case_id}: {activity}",
                                        markup=False, highlight=False, soft_wrap=True)  # fmt: skip
        self.progress.update(
            self.task, total=total, description=f"{case.case_id}: {activity}", left=self._left()
        )

    def case_done(self, index: int, total: int, result: CaseResult) -> None:
        self.finished = index + 1
        p50 = f"p50 {result.latency_ms_p50:.3f} ms" if result.latency_ms_p50 else result.reason
        noisy = f"  (noisy: {result.noise})" if result.noise else ""
        self.progress.console.print(
            f"  {result.status:7} {result.case_id}  {p50}{noisy}", markup=False, highlight=False
        )
        self.progress.update(self.task, completed=self.finished, left=self._left())

    def _left(self) -> str:
        remaining = self.cases[self.finished :]
        if not remaining:
            return ""
        left = time_left_s(remaining, self.finished, self.clock() - self.started, case_bound_s)
        basis = "from budgets" if self.finished == 0 else "at this pace"
        return f"~{_duration(left)} left ({basis})"
