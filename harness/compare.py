"""Statistical comparison of two runs: per case a ratio of medians with a confidence interval,
a significance test controlled across all cases, a minimum effect size, and a verdict.

* Cases are matched on (model, variant, backend, shape, scenario) and, for fleet rows, their
  hardware class (the ``@class`` of the case id). A case that ran on one class in the base and
  on another in the candidate is paired as a hardware comparison: its p50 ratio is reported,
  the verdict is "not comparable" and it is never a regression (latency or fidelity).
* Not comparable (never a regression): different hardware/software fingerprint, different
  runtime versions, different artifact, different threads, or a case that did not run ok.
* Ratio = candidate / base latency as a Hodges-Lehmann estimate on log latencies, with the
  distribution-free interval from the Mann-Whitney statistic; p-values from the two-sided
  Mann-Whitney U test, adjusted with Holm's method across the comparable cases (family-wise
  error control).
* ``slower`` needs both a significant adjusted p-value and the whole interval beyond
  ``1 + min_effect`` (``faster``: below ``1 / (1 + min_effect)``); otherwise ``unchanged``.
* Between-run drift: on a shared machine two runs of an unchanged tree differ by more than
  either run's interval says (neighbours, frequency). When the base carries a history of earlier
  runs' medians, each case gets a noise floor, the spread of those medians
  (``exp(z * sd(log p50) * sqrt(2)) - 1``, z for ``alpha``), and its effective minimum effect is
  the larger of the floor and ``min_effect``.
* A variant that passed the fidelity gate in the base and fails it in the candidate is a
  fidelity regression. Cost ratios are reported alongside.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from harness.errors import ConfigError
from harness.result import CaseResult
from harness.store_schema import fleet_class as case_fleet_class

Verdict = Literal[
    "faster", "slower", "unchanged", "not comparable", "only in base", "only in candidate"
]
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_EFFECT = 0.05
MAX_PAIRS_SIDE = 2000  # Hodges-Lehmann uses n1 x n2 differences: subsample beyond this
MIN_HISTORY = 3  # medians of earlier runs needed before a case's noise floor is estimated


@dataclass(frozen=True)
class Shift:
    """candidate / base latency ratio with its interval, and the test's p-value."""

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float


def latency_shift(base_ms: np.ndarray, cand_ms: np.ndarray, confidence: float = 0.95) -> Shift:
    """Hodges-Lehmann ratio of two latency samples (log scale) and the Mann-Whitney p-value."""
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)
    x = np.log(base_ms if len(base_ms) <= MAX_PAIRS_SIDE else rng.choice(base_ms, MAX_PAIRS_SIDE))
    y = np.log(cand_ms if len(cand_ms) <= MAX_PAIRS_SIDE else rng.choice(cand_ms, MAX_PAIRS_SIDE))
    diffs = np.sort((y[:, None] - x[None, :]).ravel())
    n1, n2 = len(x), len(y)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    k = math.floor(n1 * n2 / 2 - z * math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12))
    k = min(max(k, 0), len(diffs) - 1)
    p_value = float(mannwhitneyu(cand_ms, base_ms, alternative="two-sided").pvalue)
    return Shift(
        ratio=float(np.exp(np.median(diffs))),
        ci_low=float(np.exp(diffs[k])),
        ci_high=float(np.exp(diffs[len(diffs) - 1 - k])),
        p_value=p_value,
    )


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def noise_floor(medians: list[float], alpha: float = DEFAULT_ALPHA) -> float | None:
    """The relative change two runs of an unchanged tree still show, at level ``alpha``, from
    the medians of earlier runs (None with fewer than ``MIN_HISTORY``). The difference of two
    runs has sqrt(2) times one run's spread."""
    values = [m for m in medians if m and m > 0]
    if len(values) < MIN_HISTORY:
        return None
    sd = float(np.std(np.log(values), ddof=1))
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return math.exp(z * sd * math.sqrt(2)) - 1


def decide(shift: Shift, p_adjusted: float, alpha: float, min_effect: float) -> Verdict:
    """slower / faster only when significant *and* the whole interval is beyond the effect."""
    if p_adjusted >= alpha:
        return "unchanged"
    if shift.ci_low > 1 + min_effect:
        return "slower"
    if shift.ci_high < 1 / (1 + min_effect):
        return "faster"
    return "unchanged"


@dataclass
class CaseComparison:
    model: str
    variant: str
    backend: str
    shape: str | None
    scenario: str
    verdict: Verdict
    reason: str = ""
    base_p50_ms: float | None = None
    candidate_p50_ms: float | None = None
    ratio: float | None = None
    ratio_ci_low: float | None = None
    ratio_ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    base_fidelity: float | None = None
    candidate_fidelity: float | None = None
    fidelity_regression: bool = False
    cost_ratio: float | None = None
    noise_floor: float | None = None  # from the base's history of earlier runs
    noise: str | None = None  # the noise flags either row carried: its figures may be disturbed
    hardware_class: str | None = None  # fleet class, or "A -> B" for a hardware comparison

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def regression(self) -> bool:
        return self.verdict == "slower" or self.fidelity_regression


def _key(r: CaseResult) -> tuple[str, str, str, str | None, str]:
    # A load-scenario row's serving configuration (instances, batcher) is part of its scenario.
    scenario = f"{r.scenario}/{r.serving}" if r.serving else r.scenario
    return (r.model, r.variant, r.backend, r.shape, scenario)


def fleet_class(r: CaseResult) -> str | None:
    """The hardware class a fleet case was placed by (its case id's ``@class``), else None."""
    return case_fleet_class(r.case_id)


def _pairs(
    base: list[CaseResult], candidate: list[CaseResult]
) -> list[tuple[tuple[Any, ...], CaseResult | None, CaseResult | None]]:
    """Rows matched on ``_key`` and fleet class; where one class is left on each side of a key,
    those two rows are paired across classes (a hardware comparison)."""
    groups: dict[tuple[Any, ...], tuple[dict[Any, CaseResult], dict[Any, CaseResult]]] = {}
    for side, rows in enumerate((base, candidate)):
        for r in rows:
            groups.setdefault(_key(r), ({}, {}))[side][fleet_class(r)] = r
    out: list[tuple[tuple[Any, ...], CaseResult | None, CaseResult | None]] = []
    for key in sorted(groups, key=str):
        b_by, c_by = groups[key]
        only_b = [k for k in b_by if k not in c_by]
        only_c = [k for k in c_by if k not in b_by]
        if len(only_b) == 1 and len(only_c) == 1:
            out.append((key, b_by.pop(only_b[0]), c_by.pop(only_c[0])))
        for cls in sorted(set(b_by) | set(c_by), key=str):
            out.append((key, b_by.get(cls), c_by.get(cls)))
    return out


def _not_comparable(base: CaseResult, cand: CaseResult, same_machine: bool) -> str:
    if fleet_class(base) != fleet_class(cand):
        return "hardware class differs: a hardware comparison, not a regression"
    if not same_machine:
        return "hardware or software fingerprint differs"
    if base.status != "ok" or cand.status != "ok":
        return f"status {base.status} -> {cand.status}"
    if base.threads != cand.threads:
        return f"threads differ ({base.threads} -> {cand.threads})"
    if base.versions != cand.versions:
        return f"runtime versions differ ({base.versions} -> {cand.versions})"
    if base.artifact_sha256 != cand.artifact_sha256:
        return "artifact differs (another graph, weights, export, recipe or tool version)"
    return ""


def compare_runs(
    base: list[CaseResult],
    candidate: list[CaseResult],
    samples: dict[tuple[str, str], np.ndarray],
    same_machine: bool,
    alpha: float = DEFAULT_ALPHA,
    min_effect: float = DEFAULT_MIN_EFFECT,
    history: dict[str, list[float]] | None = None,
) -> list[CaseComparison]:
    """Compare matched cases; ``samples[(run_id, case_id)]`` holds raw latencies in ms and
    ``history[history_key(case)]`` the p50s of earlier runs of the base's machine."""
    out: list[CaseComparison] = []
    shifts: list[tuple[CaseComparison, Shift]] = []
    for key, b, c in _pairs(base, candidate):
        model, variant, backend, shape, scenario = key
        row = CaseComparison(model, variant, backend, shape, scenario, "not comparable")
        out.append(row)
        if b is None or c is None:
            row.verdict = "only in candidate" if b is None else "only in base"
            row.hardware_class = fleet_class(c or b)  # type: ignore[arg-type]
            continue
        flags = [f"{side}: {r.noise}" for side, r in (("base", b), ("candidate", c)) if r.noise]
        row.noise = "; ".join(flags) or None
        classes = (fleet_class(b), fleet_class(c))
        across = classes[0] != classes[1]
        row.hardware_class = f"{classes[0]} -> {classes[1]}" if across else classes[0]
        row.base_p50_ms, row.candidate_p50_ms = b.latency_ms_p50, c.latency_ms_p50
        row.base_fidelity, row.candidate_fidelity = b.fidelity, c.fidelity
        row.fidelity_regression = not across and b.fidelity_ok is True and c.fidelity_ok is False
        if b.cost_usd_per_million and c.cost_usd_per_million:
            row.cost_ratio = c.cost_usd_per_million / b.cost_usd_per_million
        row.reason = _not_comparable(b, c, same_machine)
        if across and b.latency_ms_p50 and c.latency_ms_p50:
            row.ratio = c.latency_ms_p50 / b.latency_ms_p50  # p50 ratio across classes
        if row.reason:
            continue
        shift = latency_shift(samples[(b.run_id, b.case_id)], samples[(c.run_id, c.case_id)])
        row.ratio, row.ratio_ci_low, row.ratio_ci_high = shift.ratio, shift.ci_low, shift.ci_high
        row.p_value = shift.p_value
        earlier = (history or {}).get(history_key(b), [])
        row.noise_floor = noise_floor([*earlier, b.latency_ms_p50 or 0.0], alpha)
        shifts.append((row, shift))
    for (row, shift), p_adj in zip(shifts, holm([s.p_value for _, s in shifts]), strict=True):
        row.p_adjusted = p_adj
        effect = max(min_effect, row.noise_floor or 0.0)
        row.verdict = decide(shift, p_adj, alpha, effect)
    return out


def hardware_speedups(rows: list[CaseResult]) -> list[dict[str, Any]]:
    """Side by side across hardware classes: per case key (``_key`` and threads) with ok rows
    on two or more fleet classes, each class's p50 (ms) and its speedup over ``reference`` =
    the slowest class's p50 / this class's p50 (>= 1; the reference class has 1.0). A
    hardware comparison, not a regression check: no test, only the medians."""
    groups: dict[tuple[Any, ...], dict[str, float]] = {}
    for r in rows:
        cls = fleet_class(r)
        if r.status == "ok" and cls and r.latency_ms_p50:
            groups.setdefault((*_key(r), r.threads), {})[cls] = r.latency_ms_p50
    out = []
    for key, p50s in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if len(p50s) < 2:
            continue
        slowest = max(p50s.values())
        model, variant, backend, shape, scenario, threads = key
        for cls, p50 in sorted(p50s.items(), key=lambda kv: kv[1]):
            out.append(
                {"model": model, "variant": variant, "backend": backend, "shape": shape,
                 "scenario": scenario, "threads": threads, "hardware_class": cls,
                 "latency_ms_p50": p50, "speedup_vs_slowest_class": slowest / p50}
            )  # fmt: skip
    return out


def history_key(r: CaseResult) -> str:
    """A case's key in a baseline's history (its identity without the run)."""
    cls = fleet_class(r)
    return "/".join(str(part) for part in _key(r)) + f"/t{r.threads}" + (f"@{cls}" if cls else "")


def comparison_key(row: CaseComparison) -> str:
    """A compared case's name for ``--allow-missing``: ``model/variant/backend/shape/scenario``."""
    return "/".join(str(p) for p in (row.model, row.variant, row.backend, row.shape, row.scenario))


def _allowed(key: str, allow: tuple[str, ...]) -> bool:
    """``key`` matches one of ``allow``: a comparison key or a case id (its ``/tN`` threads part
    is ignored), each possibly with shell wildcards."""
    import fnmatch
    import re

    return any(
        fnmatch.fnmatchcase(key, re.sub(r"/t\d+(?=/[^/]*$)", "", pattern)) for pattern in allow
    )


def allowed_case(row: CaseResult, allow: tuple[str, ...]) -> bool:
    """A stored row matches one of the ``--allow-missing`` patterns."""
    return _allowed("/".join(str(p) for p in _key(row)), allow)


def uncovered(
    rows: list[CaseComparison], base: list[CaseResult], allow: tuple[str, ...] = ()
) -> list[str]:
    """The baseline's measured (``ok``) cases the candidate does not cover: missing, skipped,
    failed or not comparable there, as ``key: why`` lines; cases matching ``allow`` excepted.
    A regression gate fails on any of them: a case that stopped running is not a pass."""
    measured = {_key(r) for r in base if r.status == "ok"}
    out = []
    for row in rows:
        key = (row.model, row.variant, row.backend, row.shape, row.scenario)
        if key not in measured or _allowed(comparison_key(row), allow):
            continue
        if row.verdict == "only in base":
            out.append(f"{comparison_key(row)}: missing in the candidate")
        elif row.verdict == "not comparable":
            out.append(f"{comparison_key(row)}: {row.reason or 'not comparable'}")
    return out


def check_common(rows: list[CaseComparison], base_name: str, candidate_name: str) -> None:
    """ConfigError (exit 2) when the two runs have no case in common: nothing was compared."""
    if not any(r.verdict not in ("only in base", "only in candidate") for r in rows):
        raise ConfigError(
            f"{candidate_name} and {base_name} have no case in common; compare runs of the "
            "same suite"
        )
