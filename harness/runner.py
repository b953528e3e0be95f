"""Expands a suite into cases, runs each in a fresh worker, and stores each result as it lands.

An artifact is built (in a worker too) the first time a case needs it. A case whose backend
runtime is missing is stored as skipped without starting a worker. A crash, hang or exception in
a worker becomes that case's failed row; the run goes on and earlier rows are already stored.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from harness import worker
from harness.backend import quick_unavailable_reason
from harness.config import Case, Suite
from harness.cost import Prices, apply_cost, prices
from harness.environment import fingerprint, usable_cpus
from harness.errors import WorkerError
from harness.execute import base_result, case_payload, thread_env
from harness.optimize.artifacts import CACHE_ENV, Artifact, build_artifact
from harness.optimize.variants import parse_variant
from harness.result import CaseResult
from harness.store import Store

BUILD_TIMEOUT_S = 1800.0


def build_in_worker(payload: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: build (or find) one artifact and return it as a dict."""
    artifact = build_artifact(
        payload["model"], payload["variant"], Path(payload["cache"]),
        tuple(payload.get("bindings", ())), progress=worker.report_progress,
    )  # fmt: skip
    return artifact.to_dict()


class Reporter(Protocol):
    """Progress callbacks; the CLI draws a progress bar, tests record events."""

    def case_started(self, index: int, total: int, case: Case, activity: str) -> None: ...

    def case_done(self, index: int, total: int, result: CaseResult) -> None: ...


class SilentReporter:
    def case_started(self, index: int, total: int, case: Case, activity: str) -> None:
        return None

    def case_done(self, index: int, total: int, result: CaseResult) -> None:
        return None


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _one_line(text: str, limit: int = 300) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "no message"
    return first if len(first) <= limit else first[: limit - 3] + "..."


# Errors that mean "cannot run here / does not apply": the case is skipped, not failed.
_SKIP_KINDS = ("BackendUnavailable", "VariantNotApplicable")


def _failed(result: CaseResult, exc: WorkerError, stage: str) -> CaseResult:
    if exc.kind in _SKIP_KINDS:
        result.status = "skipped"
        result.reason = _one_line(str(exc).removeprefix(f"{exc.kind}: "))
        return result
    result.status = "failed"
    result.reason = _one_line(f"{stage}: {exc}")
    result.details = json.dumps({"stage": stage, "kind": exc.kind, "detail": exc.detail})
    return result


def suite_prices(suite: Suite) -> Prices:
    """The prices a suite asks for; ConfigError on a bad prices file or region."""
    pricing = suite.pricing
    path = Path(pricing.prices_file) if pricing.prices_file else None
    return prices(path, pricing.region, dict(pricing.overrides))


class Runner:
    """Runs one suite into one store. ``inline`` runs cases in this process (debugging only)."""

    def __init__(
        self,
        store: Store,
        cache: Path,
        inline: bool = False,
        reporter: Reporter | None = None,
    ) -> None:
        self.store = store
        self.reporter = reporter or SilentReporter()
        self.cases = CaseRunner(cache, inline, self.reporter)

    def run(self, suite: Suite, run_id: str | None = None) -> str:
        """Run every case of ``suite``; return the run id. Results are stored case by case."""
        run_id = run_id or new_run_id()
        run_prices = suite_prices(suite)  # bad prices are bad input: refused before running
        cases = list(suite.cases(usable_cpus()))  # so are unbound shapes
        self.store.start_run(run_id, suite.name, suite.path, fingerprint())
        for index, case in enumerate(cases):
            result, samples = self.cases.run_case(
                run_id, suite, case, run_prices, index, len(cases)
            )
            self.store.add_case(result, samples)
            self.store.update_speedups(run_id, *suite.baseline)
            self.reporter.case_done(index, len(cases), result)
        self.store.finish_run(run_id)
        return run_id


class CaseRunner:
    """Builds artifacts (once each) and runs single cases in workers; stores nothing."""

    def __init__(self, cache: Path, inline: bool = False, reporter: Reporter | None = None):
        self.cache = cache
        self.inline = inline
        self.reporter = reporter or SilentReporter()
        self._artifacts: dict[tuple[str, str, tuple[str, ...]], Artifact | WorkerError] = {}

    def run_case(
        self,
        run_id: str,
        suite: Suite,
        case: Case,
        run_prices: Prices,
        index: int = 0,
        total: int = 1,
    ) -> tuple[CaseResult, list[float]]:
        """One case's row (with cost) and raw samples; failures and skips are rows too."""
        result, samples = self._run_case(run_id, suite, case, index, total)
        apply_cost(result, run_prices)
        return result, samples

    def _artifact(
        self,
        model: str,
        variant: str,
        progress: Callable[[str], None],
        bindings: tuple[str, ...] = (),
    ) -> Artifact | WorkerError:
        """The artifact, built once per run; only static calibration depends on ``bindings``."""
        bindings = bindings if parse_variant(variant).depends_on_bindings else ()
        key = (model, variant, bindings)
        if key not in self._artifacts:
            payload = {"model": model, "variant": variant, "cache": str(self.cache),
                       "bindings": list(bindings)}  # fmt: skip
            try:
                data = worker.call(
                    "harness.runner:build_in_worker",
                    payload,
                    timeout_s=BUILD_TIMEOUT_S,
                    inline=self.inline,
                    env={CACHE_ENV: str(self.cache)},  # models that train on first use cache here
                    on_progress=progress,
                )
                self._artifacts[key] = Artifact.from_dict(data)
            except WorkerError as exc:
                self._artifacts[key] = exc
        return self._artifacts[key]

    def _run_case(
        self, run_id: str, suite: Suite, case: Case, index: int, total: int
    ) -> tuple[CaseResult, list[float]]:
        result = base_result(run_id, case, None)
        reason = quick_unavailable_reason(case.backend)
        if reason is not None:
            result.status, result.reason = "skipped", reason
            return result, []
        what = f"building {case.model}/{case.variant}"
        self.reporter.case_started(index, total, case, what)

        def progress(text: str) -> None:
            self.reporter.case_started(index, total, case, f"{what}: {text}")

        artifact = self._artifact(case.model, case.variant, progress, case.bindings)
        if isinstance(artifact, WorkerError):
            return _failed(result, artifact, "artifact build"), []
        reference = self._artifact(case.model, "fp32", progress)
        if isinstance(reference, WorkerError):
            return _failed(result, reference, "fp32 reference build"), []
        self.reporter.case_started(index, total, case, "measuring")
        try:
            data = worker.call(
                "harness.execute:run_case_in_worker",
                case_payload(run_id, case, artifact, reference, suite),
                timeout_s=suite.timeout_s,
                inline=self.inline,
                env={**thread_env(case.threads), CACHE_ENV: str(self.cache)},
            )
        except WorkerError as exc:
            return _failed(base_result(run_id, case, artifact), exc, "worker"), []
        return CaseResult.from_dict(data["result"]), data["samples_ms"]
