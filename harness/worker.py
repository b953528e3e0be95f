"""What runs inside a worker: the two tasks (build an artifact, measure a case) and
:func:`run_task`, which turns a task's result or exception into an ``Outcome``.

Skip versus fail is decided here, once, from the exception's type: ``BackendUnavailable`` and
``VariantNotApplicable`` mean *cannot run here / does not apply* (skipped); a ``BackendError`` is
the runtime's own failure, reported in its words; anything else is a failure of the harness or
of user code, reported with its type and the worker's traceback.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from harness.case import Case
from harness.errors import (
    BackendError,
    BackendUnavailable,
    HarnessError,
    VariantNotApplicable,
    informative_line,
)
from harness.launch.base import Keep, KeepsPartial, Outcome, Progress, Task
from harness.optimize.artifacts import CACHE_ENV

if TYPE_CHECKING:
    from harness.execute import Measurement
    from harness.optimize.artifacts import Artifact

T = TypeVar("T")

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TVM_NUM_THREADS")
_SKIPS = (BackendUnavailable, VariantNotApplicable)


def _one_line(text: str, limit: int = 300) -> str:
    """The informative line of a message (a runtime's multi-line error names a source file
    and line first: those lines are skipped)."""
    return informative_line(text, limit)


def run_task(task: Task[T], progress: Progress, keep: Keep[T] | None = None) -> Outcome[T]:
    """Run ``task`` here and classify how it ended. Raises only what is not an ``Exception``
    (``KeyboardInterrupt``, ``SystemExit``): a worker process reports those itself.

    A :class:`KeepsPartial` task's kept value is passed to ``keep`` (the process launcher sends
    it to the parent) and, if the task then raises, becomes an ``ok`` outcome with ``partial``
    set to the failure's one-line reason."""
    kept: list[T] = []

    def keeping(value: T) -> None:
        kept[:] = [value]
        if keep is not None:
            keep(value)

    try:
        if isinstance(task, KeepsPartial):
            return Outcome.ok(task.run_keeping(progress, keeping))
        return Outcome.ok(task.run(progress))
    except _SKIPS as exc:
        outcome: Outcome[T] = Outcome(
            "skipped", None, _one_line(str(exc)), type(exc).__name__, "", task.stage
        )
    except BackendError as exc:
        outcome = Outcome("failed", None, _one_line(str(exc)), type(exc).__name__, "", task.stage)
    except Exception as exc:  # any other failure of the task becomes its reason
        outcome = failed(task, exc)
    if kept and outcome.status == "failed":
        return salvaged(kept[0], outcome)
    return outcome


def salvaged(value: T, outcome: Outcome[Any]) -> Outcome[T]:
    """The ``ok`` outcome of a task that kept ``value`` and then ended as ``outcome``."""
    return Outcome(
        "ok", value, outcome.reason, outcome.error_kind, outcome.detail, outcome.stage,
        partial=outcome.reason,
    )  # fmt: skip


def failed(task: Task[Any], exc: BaseException) -> Outcome[Any]:
    """A failure of the harness or of user code: its type, message and traceback."""
    kind = type(exc).__name__
    trace = "" if isinstance(exc, HarnessError) else traceback.format_exc(limit=8)
    reason = _one_line(f"{task.stage}: {kind}: {_one_line(str(exc))}")
    return Outcome("failed", None, reason, kind, trace, task.stage)


def thread_env(threads: int) -> dict[str, str]:
    """Variables that must be set before any math library starts its thread pool."""
    return dict.fromkeys(THREAD_ENV_VARS, str(threads))


@dataclass(frozen=True)
class BuildTask:
    """Build (or find in the cache) the artifact of ``model`` x ``variant``. ``bindings`` are
    the case's shape bindings when the variant's output depends on them (static calibration)."""

    model: str
    variant: str
    cache: str
    bindings: tuple[str, ...] = ()
    timeout_s: float = 1800.0
    stage: str = "artifact build"

    def env(self) -> Mapping[str, str]:
        return {CACHE_ENV: self.cache}  # models that train on first use cache here

    def run(self, progress: Progress) -> Artifact:
        from harness.optimize.artifacts import build_artifact

        return build_artifact(self.model, self.variant, Path(self.cache), self.bindings, progress)


@dataclass(frozen=True)
class MeasureTask:
    """Measure ``case`` on ``artifact``; ``reference`` is the model's fp32 artifact, the
    fidelity reference. Timed with the harness's performance counter."""

    case: Case
    artifact: Artifact
    reference: Artifact
    cache: str
    stage: str = "worker"

    @property
    def timeout_s(self) -> float:
        return self.case.settings.timeout_s

    def env(self) -> Mapping[str, str]:
        return {**thread_env(self.case.threads), CACHE_ENV: self.cache}

    def run(self, progress: Progress) -> Measurement:
        return self.run_keeping(progress, lambda value: None)

    def run_keeping(self, progress: Progress, keep: Keep[Measurement]) -> Measurement:
        """Measure; ``keep`` receives the timed measurement as soon as sampling ends, before
        the untimed passes (fidelity, executed precision), so they cannot lose it."""
        from harness.execute import measure_case
        from harness.measure.clock import PerfCounterClock

        return measure_case(
            self.case, self.artifact, self.reference, PerfCounterClock(), progress, keep
        )


@dataclass(frozen=True)
class ModelProbe:
    """What planning needs to know of a model, learnt in a worker (user code runs there).

    error: a ConfigError's message (bad file, factory, config or shape binding), else None.
    """

    accepts_bindings: bool = False
    uses_sequence: bool = False
    error: str | None = None
    binding_sets: tuple[tuple[str, ...], ...] = ()  # the sets as they apply to this model
    generative: bool = False  # a decoder: its cases generate tokens
    max_positions: int | None = None  # a decoder's context length, where known


@dataclass(frozen=True)
class ProbeModelTask:
    """Load model ``model`` (a user's ``onnx:``, ``hf:`` or ``torch:`` source: its factory, its
    config parsing) and check every shape it will be asked for: each of ``binding_sets`` with
    each of ``batch_sizes`` and ``seq_lens`` (``seq_lens`` only if it uses a sequence axis).
    ``own_only``: the suite has several models that take bindings, and a binding names one
    model's axis or input: each model keeps only the bindings it knows (each set once).
    Bounded by ``timeout_s`` (the suite's ``[measure] build_timeout_s``)."""

    model: str
    binding_sets: tuple[tuple[str, ...], ...]
    batch_sizes: tuple[int, ...]
    seq_lens: tuple[int, ...]
    cache: str
    timeout_s: float = 1800.0
    stage: str = "model check"
    own_only: bool = False

    def env(self) -> Mapping[str, str]:
        return {CACHE_ENV: self.cache}

    def run(self, progress: Progress) -> ModelProbe:
        from harness.errors import ConfigError
        from harness.models import get_model

        try:
            model = get_model(self.model)
            seqs: tuple[int | None, ...] = self.seq_lens if model.uses_sequence else (None,)
            own = list(self.binding_sets)
            if model.accepts_bindings and self.own_only:
                known = model.binding_names()
                own = []
                for bindings in self.binding_sets:
                    kept = tuple(b for b in bindings if b.split("=", 1)[0] in known)
                    if kept not in own:
                        own.append(kept)
            if model.accepts_bindings:
                for bindings in own:
                    for batch in self.batch_sizes:
                        for seq in seqs:
                            # a static batch's VariantNotApplicable: the case is skipped
                            with contextlib.suppress(VariantNotApplicable):
                                get_model(self.model, bindings).shapes(batch, seq)
            from harness.models.causal_lm import CausalLMModel

            limit = model.max_positions if isinstance(model, CausalLMModel) else None
            return ModelProbe(model.accepts_bindings, model.uses_sequence, None, tuple(own),
                              model.generative, limit)  # fmt: skip
        except ConfigError as exc:
            return ModelProbe(error=str(exc))
