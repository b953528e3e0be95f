"""The one planner: Suite + command-line selection + this machine -> the cases to run.

The CLI, the runner's callers and the pytest plugin all call :func:`plan`; nothing else expands
a suite. Planning loads each model once (its inputs decide the shapes), checks every shape
binding, resolves each backend's device and reads the prices, so that bad input is refused,
on one line, before anything runs.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from harness.backend import backend_class, backend_names
from harness.case import Case
from harness.cost import Prices, prices
from harness.errors import ConfigError, VariantNotApplicable
from harness.models import Model, get_model
from harness.models.inputs import parse_binding
from harness.suite import Suite, choice, variant_name
from harness.suite import _model as model_spec


@dataclass(frozen=True)
class Sweeps:
    """Sweep axes given on the command line; empty ones keep the suite's."""

    batch_sizes: tuple[int, ...] = ()
    seq_lens: tuple[int, ...] = ()
    threads: tuple[int, ...] = ()
    image_sizes: tuple[int, ...] = ()
    dims: tuple[tuple[str, tuple[int, ...]], ...] = ()
    shapes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Selection:
    """What the command line replaces in a suite (empty: keep the suite's)."""

    backends: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    prices_file: str | None = None
    region: str | None = None
    watts_per_core: float | None = None
    sweeps: Sweeps = field(default_factory=Sweeps)


@dataclass(frozen=True)
class Plan:
    """A suite expanded for this machine: its cases in run order, the prices they are billed
    at, and the (backend, variant) whose p50 the others' speedup is relative to."""

    suite: Suite
    cases: tuple[Case, ...]
    prices: Prices


def select(suite: Suite, selection: Selection) -> Suite:
    """The suite with the command line's choices replacing its own (each name validated)."""
    where = "command line"
    if selection.watts_per_core is not None and not selection.watts_per_core > 0:
        raise ConfigError(
            f"{where}: --watts-per-core must be positive, got {selection.watts_per_core}"
        )
    changed = {k: v for k, v in asdict(selection.sweeps).items() if v}
    if "shapes" in changed and "batch_sizes" not in changed:
        # --shape x=8x3x64x64 with no --batch: the shape's first size is the batch
        changed["batch_sizes"] = (parse_binding(changed["shapes"][0], where)[1][0],)
    backends = tuple(choice(where, "--backend", b, backend_names()) for b in selection.backends)
    variants = tuple(variant_name(where, "--variant", v) for v in selection.variants)
    models = tuple(model_spec(where, "--model", m) for m in selection.models)
    return replace(
        suite,
        pricing=replace(
            suite.pricing,
            prices_file=selection.prices_file or suite.pricing.prices_file,
            region=selection.region or suite.pricing.region,
        ),
        energy=replace(
            suite.energy, watts_per_core=selection.watts_per_core or suite.energy.watts_per_core
        ),
        backends=backends or suite.backends,
        variants=variants or suite.variants,
        models=models or suite.models,
        **changed,
    )


def suite_prices(suite: Suite) -> Prices:
    """The prices a suite asks for; ConfigError on a bad prices file or region."""
    pricing = suite.pricing
    path = Path(pricing.prices_file) if pricing.prices_file else None
    return prices(path, pricing.region, dict(pricing.overrides))


def plan(suite: Suite, selection: Selection | None = None, auto_threads: int = 1) -> Plan:
    """Expand ``suite`` (with ``selection`` applied) into cases for this machine.

    ``auto_threads`` replaces ``threads = "auto"``. Models without a sequence axis get one case
    per batch size; a user model's unbound dynamic axis, a model that cannot be loaded, bad
    prices or shape bindings given to models that take none are ``ConfigError``s. A static
    batch that contradicts a case's batch size is left to the case (skipped, with the reason).
    """
    if selection is not None:
        suite = select(suite, selection)
    run_prices = suite_prices(suite)
    where = "command line" if selection is not None and selection.models else suite.path
    models = {name: _load(where, name) for name in suite.models}
    binding_sets = suite.binding_sets()
    takes = {name: model.accepts_bindings for name, model in models.items()}
    if binding_sets != [()] and not any(takes.values()):
        raise ConfigError(
            f"{suite.path}: shape bindings (--shape, --dim, --image-size) apply to ONNX "
            f"files (onnx:PATH); none of {', '.join(suite.models)} takes them"
        )
    devices = {b: backend_class(b).capabilities.devices[0] for b in suite.backends}
    settings = suite.settings
    cases: list[Case] = []
    several = sum(takes.values()) > 1  # one model: its resolver names a binding it cannot use
    own = {
        name: _own_bindings(model, binding_sets) if several else binding_sets
        for name, model in models.items()
    }
    _check_bindings_used(suite, binding_sets, models, own)
    for name, model in models.items():
        seqs: tuple[int | None, ...] = suite.seq_lens if model.uses_sequence else (None,)
        shapes = [
            (bindings, batch, seq)
            for bindings in (own[name] if takes[name] else [()])
            for batch in suite.batch_sizes
            for seq in seqs
        ]
        for bindings, batch, seq in shapes if takes[name] else ():
            with contextlib.suppress(VariantNotApplicable):
                get_model(name, bindings).shapes(batch, seq)
        cases += [
            Case(
                model=name,
                variant=variant,
                backend=backend,
                batch_size=batch,
                seq_len=seq,
                threads=threads or auto_threads,
                scenario=suite.scenario,
                options=suite.options.get(backend, {}),
                bindings=bindings,
                device=devices[backend],
                settings=settings,
            )
            for variant in suite.variants
            for backend in suite.backends
            for threads in suite.threads
            for bindings, batch, seq in shapes
        ]
    return Plan(suite, tuple(cases), run_prices)


def _own_bindings(model: Model, sets: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The binding sets as they apply to ``model``: in a suite of several user models, a
    binding names one model's axis or input and the others leave it out (each set once)."""
    names = getattr(model, "binding_names", None)
    if names is None:
        return sets
    known = names()
    out: list[tuple[str, ...]] = []
    for bindings in sets:
        kept = tuple(b for b in bindings if b.split("=", 1)[0] in known)
        if kept not in out:
            out.append(kept)
    return out


def _check_bindings_used(
    suite: Suite,
    sets: list[tuple[str, ...]],
    models: dict[str, Model],
    own: dict[str, list[tuple[str, ...]]],
) -> None:
    """ConfigError for a binding that no model of a several-model suite can use (a single
    model's resolver says so in its own words)."""
    if len([m for m in models.values() if m.accepts_bindings]) < 2:
        return
    used = {b for bindings in own.values() for s in bindings for b in s}
    unused = sorted({b for s in sets for b in s} - used)
    if unused:
        raise ConfigError(
            f"{suite.path}: shape binding {', '.join(unused)} names no input or dynamic axis of "
            f"any model of the suite"
        )


def _load(where: str, name: str) -> Model:
    """The model called ``name``; ConfigError naming where it was asked for."""
    key = "--model" if where == "command line" else "models"
    try:
        return get_model(name)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {key}: {exc}") from None
