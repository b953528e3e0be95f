"""Which configuration to deploy: the Pareto front and the best row under an SLO, explained.

Pure functions over ``CaseResult`` rows of one model (any variant, backend, batch, scenario,
hardware class, from any number of runs and machines):

* A **constraint** counts as met only with confidence: a latency bound is judged on the upper
  end of the p99's confidence interval (a p99 without an interval is "unknown", never met), a
  fidelity bound on the measured ratio to fp32, memory on the larger of host RSS and device
  memory.
* The **objective** (cost, energy, co2: lower is better; latency: the p99, lower; throughput:
  higher) ranks the rows that meet every constraint; the winner is the best, ties broken by the
  p99's upper bound, then fidelity, then the configuration's label.
* Energy-derived objectives (cost includes the energy bill) rank rows of **one energy source**:
  measured, simulated and estimated joules are never ranked against each other unless the
  caller asks for it explicitly (``energy_source="any"``), and then the output says so.
* The **Pareto front** is over (objective, p99, fidelity ratio) of every measured row with the
  objective and the p99 known, constraints ignored; fidelity counts where both rows have it.
  Without a latency bound, a row whose p99 is unknown is still ranked, but not placed on it.
* Every row gets **one line** saying why it won, came second, or lost.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from harness import cost
from harness.case import SCREENING
from harness.errors import ConfigError
from harness.measure.stats import min_samples_for
from harness.result import CaseResult


@dataclass(frozen=True)
class Objective:
    """What the winner is best at: a row column, its unit, and which way is better."""

    name: str
    column: str
    unit: str
    maximize: bool = False
    energy_based: bool = False  # derived from joules: ranked within one energy source


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("cost", "cost_usd_per_million", "USD/M", energy_based=True),
        Objective("energy", "energy_j_per_inference", "J", energy_based=True),
        Objective("co2", "gco2_per_million", "gCO2/M", energy_based=True),
        Objective("latency", "latency_ms_p99", "ms"),
        Objective("throughput", "throughput_per_s", "/s", maximize=True),
    )
}
ENERGY_SOURCES = ("measured", "simulated", "estimated")  # preference when rows mix sources


@dataclass(frozen=True)
class Constraints:
    """The SLO. ``None`` leaves a bound out; ``hardware`` empty allows every class.

    Latency bounds are in ms and judged on the p99's upper interval bound; ``min_fidelity`` is
    a ratio to the fp32 metric (0.99 = MLPerf's 99% rule). Without it, a row whose
    ``fidelity_ok`` is false (it failed its suite's threshold) is still excluded.
    """

    max_p99_ms: float | None = None
    max_ttft_ms: float | None = None
    max_tpot_ms: float | None = None
    min_fidelity: float | None = None
    max_memory_mb: float | None = None
    hardware: tuple[str, ...] = ()


Role = Literal["winner", "runner-up", "feasible", "excluded"]


@dataclass(frozen=True)
class Verdict:
    """One row's place in the recommendation and the one line that says why."""

    row: CaseResult
    label: str
    role: Role
    on_front: bool
    why: str


@dataclass(frozen=True)
class Recommendation:
    """``verdicts``: winner, runner-up, other feasible rows by rank, then the excluded."""

    objective: Objective
    constraints: Constraints
    energy_source: str | None  # the source ranked within; None when the objective needs none
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)

    @property
    def winner(self) -> Verdict | None:
        return next((v for v in self.verdicts if v.role == "winner"), None)

    @property
    def runner_up(self) -> Verdict | None:
        return next((v for v in self.verdicts if v.role == "runner-up"), None)

    @property
    def front(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.on_front]


def row_hardware_class(row: CaseResult) -> str:
    """The row's hardware class: its own column where the row has one, else the device's."""
    return row.hardware_class or cost.hardware_class(row.device)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _value(row: CaseResult, objective: Objective) -> float | None:
    value: float | None = getattr(row, objective.column)
    return value


def labels(rows: Sequence[CaseResult]) -> list[str]:
    """A short unique name per row: variant/backend/shape/threads[/scenario], the hardware
    class when rows span several, the run id when two rows would still share a name."""
    several = len({row_hardware_class(r) for r in rows}) > 1
    names = []
    for r in rows:
        name = f"{r.variant}/{r.backend}/{r.shape or f'b{r.batch_size}'}/t{r.threads}"
        if r.scenario != "single-stream":
            name += f"/{r.scenario}"
        names.append(name + (f" on {row_hardware_class(r)}" if several else ""))
    return [
        f"{n} ({r.run_id})" if names.count(n) > 1 else n for n, r in zip(names, rows, strict=True)
    ]


def _bound(what: str, upper: float | None, bound: float) -> str | None:
    """``None`` when ``upper`` (an interval's upper end, ms) is within ``bound``."""
    if upper is None:
        return f"{what} interval unknown (too few samples)"
    if upper > bound:
        over = _num(upper - bound)
        return f"violates {what} by {over} ms (upper bound {_num(upper)} > {_num(bound)} ms)"
    return None


LATENCY_BOUNDS = (("p99", "latency_ms_p99", "max_p99_ms"), ("TTFT p99", "ttft_ms_p99",
                  "max_ttft_ms"), ("TPOT p99", "tpot_ms_p99", "max_tpot_ms"))  # fmt: skip


def _unboundable(what: str, column: str, rows: Sequence[CaseResult]) -> str:
    """Why a bound on ``column`` cannot be judged on any of ``rows``: decoder metrics on
    encoder rows, or a p99 that no row measured with enough samples for its interval."""
    decoder_bound = column.startswith(("ttft", "tpot"))
    if decoder_bound and all(r.gen_len is None for r in rows):
        return f"a {what} bound applies to decoder (text generation) rows; these rows have none"
    needed = min_samples_for(0.99, 0.95)
    return (
        f"a {what} bound needs a p99 with its interval, which takes at least {needed} "
        f"{'generations' if decoder_bound else 'samples'}; no row has one (raise the suite's "
        "[measure] min_samples and budget_s, or bound another constraint)"
    )


def is_screening(row: CaseResult) -> bool:
    """A row of ``recommend --run``'s screening round (``CaseSettings.screening``)."""
    try:
        details = json.loads(row.details or "{}")
    except ValueError:
        return False
    return isinstance(details, dict) and SCREENING in details


def violations(
    row: CaseResult, c: Constraints, timed: bool = True, known_only: bool = False
) -> list[str]:
    """Every constraint the row does not meet with confidence, one phrase each (empty: met).

    ``timed=False`` leaves out the latency bounds (whose intervals narrow with longer timing);
    ``known_only`` leaves out fidelity and memory the row did not measure (a search's
    screening round leaves them to later rounds).
    Raises ConfigError for a TTFT/TPOT bound when rows have no such column (not generative).
    """
    if row.status != "ok":
        return [f"{row.status}: {row.reason or 'no reason recorded'}"]
    found = []
    if not known_only and is_screening(row):
        found.append("a search's screening row: timed only (no fidelity or memory)")
    hw = row_hardware_class(row)
    if c.hardware and hw not in c.hardware:
        found.append(f"hardware {hw} not among {', '.join(c.hardware)}")
    for what, column, name in LATENCY_BOUNDS if timed else ():
        bound = getattr(c, name)
        if bound is None:
            continue
        timed_ok = getattr(row, column) is not None
        upper = getattr(row, f"{column}_ci_high", None) if timed_ok else None
        found.append(_bound(what, upper, bound) or "")
    if c.min_fidelity is not None:
        if row.fidelity_ratio is None:
            found.append("" if known_only else "fidelity not scored")
        elif row.fidelity_ratio < c.min_fidelity:
            found.append(f"fidelity {_num(row.fidelity_ratio)} < {_num(c.min_fidelity)}")
    elif row.fidelity_ok is False:
        found.append("fails its suite's fidelity threshold")
    if c.max_memory_mb is not None:
        known = [m for m in (row.peak_rss_mb, row.device_mem_mb) if m is not None]
        if not known:
            found.append("" if known_only else "memory not measured")
        elif max(known) > c.max_memory_mb:
            found.append(f"memory {_num(max(known))} MB > {_num(c.max_memory_mb)} MB")
    return [f for f in found if f]


def _better(a: CaseResult, b: CaseResult, objective: Objective) -> tuple[list[str], list[str]]:
    """The criteria on which ``a`` is strictly better than ``b``, and strictly worse.

    Criteria: the objective, latency (p99), fidelity; each only where both rows have it.
    """
    va, vb = _value(a, objective), _value(b, objective)
    pairs: list[tuple[str, float, float]] = []
    if objective.name != "latency" and va is not None and vb is not None:
        pairs.append((objective.name, -va if objective.maximize else va,
                      -vb if objective.maximize else vb))  # fmt: skip
    if a.latency_ms_p99 is not None and b.latency_ms_p99 is not None:
        pairs.append(("latency", a.latency_ms_p99, b.latency_ms_p99))
    if a.fidelity_ratio is not None and b.fidelity_ratio is not None:
        pairs.append(("fidelity", -a.fidelity_ratio, -b.fidelity_ratio))
    return [n for n, x, y in pairs if x < y], [n for n, x, y in pairs if x > y]


def dominates(a: CaseResult, b: CaseResult, objective: Objective) -> bool:
    """``a`` is at least as good as ``b`` on every criterion and strictly better on one.

    Equal rows do not dominate each other: exact ties both stay on the front.
    """
    better, worse = _better(a, b, objective)
    return bool(better) and not worse


def pareto_front(rows: Sequence[CaseResult], objective: Objective) -> list[CaseResult]:
    """The rows no other row dominates (input order kept); rows need the objective and p99."""
    return [r for r in rows if not any(dominates(o, r, objective) for o in rows if o is not r)]


def _words(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _chosen_source(pool: list[CaseResult], requested: str | None) -> tuple[str | None, list[str]]:
    """Which energy source is ranked, and the note saying so when rows mix sources."""
    sources = sorted({r.energy_source for r in pool if r.energy_source})
    if requested == "any":
        note = (
            f"ranking mixes energy sources ({', '.join(sources)}) as requested"
            if len(sources) > 1
            else ""
        )
        return "any", [note] if note else []
    if requested is not None:
        if requested not in ENERGY_SOURCES:
            raise ConfigError(
                f"unknown energy source {requested!r}; allowed: {', '.join(ENERGY_SOURCES)}, any"
            )
        chosen = requested
    else:
        chosen = next((s for s in ENERGY_SOURCES if s in sources), "measured")
    notes = []
    if len(sources) > 1:
        counts = ", ".join(f"{s} {sum(r.energy_source == s for r in pool)}" for s in sources)
        notes.append(
            f"rows mix energy sources ({counts}): ranked within {chosen} only "
            "(--energy-source picks another, or any to rank across)"
        )
    return chosen, notes


def recommend(
    rows: Sequence[CaseResult],
    objective: str,
    constraints: Constraints,
    energy_source: str | None = None,
) -> Recommendation:
    """Rank ``rows`` (one model) under ``constraints`` by ``objective`` (a key of OBJECTIVES).

    ``energy_source``: for cost/energy/co2, the source to rank within (default: measured, else
    simulated, else estimated, whichever rows have), or ``"any"``. Raises ConfigError on no
    rows, several models, an unknown objective or source.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    if not rows:
        raise ConfigError("no rows to recommend from")
    models = sorted({r.model for r in rows})
    if len(models) > 1:
        raise ConfigError(f"rows of several models ({', '.join(models)}): choose one with --model")
    for what, column, name in LATENCY_BOUNDS:
        if getattr(constraints, name) is not None and all(getattr(r, column) is None for r in rows):
            raise ConfigError(_unboundable(what, column, rows))
    obj = OBJECTIVES[objective]
    names = dict(zip((id(r) for r in rows), labels(rows), strict=True))
    reasons = {id(r): violations(r, constraints) for r in rows}
    measured = [r for r in rows if r.status == "ok" and _value(r, obj) is not None]
    source: str | None = None
    notes: list[str] = []
    if obj.energy_based:
        source, notes = _chosen_source(measured, energy_source)
        if source != "any":
            for r in measured:
                if r.energy_source != source:
                    reasons[id(r)].append(
                        f"energy {r.energy_source}: not ranked against {source} energy"
                    )
            measured = [r for r in measured if r.energy_source == source]
    placed = [r for r in measured if r.latency_ms_p99 is not None]
    front = {id(r) for r in pareto_front(placed, obj)}
    feasible = sorted(
        (r for r in measured if not reasons[id(r)]), key=lambda r: _rank(r, obj, names[id(r)])
    )
    verdicts = [
        _verdict(r, i, feasible, obj, names, id(r) in front, placed) for i, r in enumerate(feasible)
    ]
    ranked = {id(r) for r in feasible}
    for r in rows:
        if id(r) not in ranked:
            why = "; ".join(reasons[id(r)]) or f"{obj.name} unknown"
            verdicts.append(Verdict(r, names[id(r)], "excluded", id(r) in front, why))
    return Recommendation(obj, constraints, source, verdicts, notes)


def _rank(row: CaseResult, obj: Objective, label: str) -> tuple[float, float, float, str]:
    value = _value(row, obj) or 0.0  # ranked rows have it: filtered before ranking
    upper = row.latency_ms_p99_ci_high or row.latency_ms_p99 or float("inf")
    fidelity = row.fidelity_ratio if row.fidelity_ratio is not None else float("-inf")
    return (-value if obj.maximize else value, upper, -fidelity, label)


def _verdict(
    row: CaseResult,
    index: int,
    feasible: list[CaseResult],
    obj: Objective,
    names: dict[int, str],
    on_front: bool,
    pool: list[CaseResult],
) -> Verdict:
    value = _value(row, obj)
    label = names[id(row)]
    if index == 0:
        best = "highest" if obj.maximize else "lowest"
        amount = f"{_num(value or 0)} {obj.unit}"
        why = f"winner: {best} {obj.name} among {len(feasible)} feasible ({amount})"
        return Verdict(row, label, "winner", on_front, why)
    winner = feasible[0]
    w = _value(winner, obj) or 0.0
    against = f"{obj.name} {_num(value or 0)} {obj.unit} vs the winner's {_num(w)}"
    placed = [d for d in [*feasible, *pool] if d.latency_ms_p99 is not None]
    dominator = next((d for d in placed if dominates(d, row, obj)), None)
    if row.latency_ms_p99 is None:
        tail = "p99 unknown (too few samples): not placed on the Pareto front"
    elif dominator is not None:
        better = _better(dominator, row, obj)[0]
        tail = f"dominated by {names[id(dominator)]} on {_words(better)}"
    else:
        better, worse = _better(row, winner, obj)
        if not better and not worse:
            by = "p99 upper bound" if _rank(row, obj, "") != _rank(winner, obj, "") else "name"
            tail = f"ties the winner on every criterion; ranked after it by {by}"
        else:  # nothing dominates it (a winner without a p99 is not compared on latency)
            tail = "on the Pareto front" + (f" (better {_words(better)})" if better else "")
    role: Role = "runner-up" if index == 1 else "feasible"
    prefix = "runner-up: " if index == 1 else "feasible; "
    return Verdict(row, label, role, on_front, f"{prefix}{against}; {tail}")


def command(row: CaseResult, suite: str | None) -> str:
    """The ``infrabench run`` line that measures this row's configuration again."""
    parts = ["infrabench", "run", suite or "quick", "--model", row.model, "--variant",
             row.variant, "--backend", row.backend]  # fmt: skip
    if row.batch_size is not None:
        parts += ["--batch", str(row.batch_size)]
    if row.gen_len is not None:  # a decoder's: its sequence length is the prompt's
        parts += ["--prompt-len", str(row.prompt_len or row.seq_len), "--gen-len", str(row.gen_len)]
    elif row.seq_len is not None:
        parts += ["--seq", str(row.seq_len)]
    if row.threads is not None:
        parts += ["--threads", str(row.threads)]
    for binding in _bindings(row):
        value = binding.partition("=")[2]
        parts += ["--shape" if "x" in value else "--dim", binding]
    if row.scenario != "single-stream":
        parts += ["--scenario", row.scenario]
    return shlex.join(parts)


def _bindings(row: CaseResult) -> list[str]:
    """A user model's shape bindings from the shape column (``b8s128-height=640``)."""
    return [b for b in (row.shape or "").split("-")[1:] if "=" in b]


def suite_snippet(row: CaseResult, min_fidelity: float | None) -> str:
    """A suite TOML that measures only this row's configuration."""

    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ['name = "recommended"', f"models = [{q(row.model)}]", f"variants = [{q(row.variant)}]",
             f"backends = [{q(row.backend)}]"]  # fmt: skip
    if row.batch_size is not None:
        lines.append(f"batch_sizes = [{row.batch_size}]")
    if row.gen_len is not None:
        lines += [f"prompt_lens = [{row.prompt_len or row.seq_len}]", f"gen_lens = [{row.gen_len}]"]
    elif row.seq_len is not None:
        lines.append(f"seq_lens = [{row.seq_len}]")
    if row.threads is not None:
        lines.append(f"threads = [{row.threads}]")
    shapes = [b for b in _bindings(row) if "x" in b.partition("=")[2]]
    dims = [b.partition("=") for b in _bindings(row) if b not in shapes]
    if shapes:
        lines.append(f"shapes = [{', '.join(q(s) for s in shapes)}]")
    if row.scenario != "single-stream":
        lines.append(f"scenario = {q(row.scenario)}")
    if min_fidelity is not None:
        lines.append(f"fidelity_min_ratio = {min_fidelity}")
    if dims:
        lines += ["", "[dims]", *(f"{q(name)} = [{value}]" for name, _, value in dims)]
    return "\n".join(lines) + "\n"
