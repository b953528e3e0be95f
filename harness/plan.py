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
from harness.optimize.variants import parse_variant
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
    takes = {name: getattr(model, "accepts_bindings", False) for name, model in models.items()}
    if binding_sets != [()] and not any(takes.values()):
        raise ConfigError(
            f"{suite.path}: shape bindings (--shape, --dim, --image-size) apply to ONNX "
            f"files (onnx:PATH); none of {', '.join(suite.models)} takes them"
        )
    devices = {b: backend_class(b).capabilities.devices[0] for b in suite.backends}
    settings = suite.settings
    cases: list[Case] = []
    for name, model in models.items():
        generative = getattr(model, "generative", False)
        _check_generative(suite, name, generative)
        seqs: tuple[int | None, ...] = suite.seq_lens if model.uses_sequence else (None,)
        gens: tuple[int | None, ...] = (None,)
        if generative:
            seqs, gens = suite.prompt_lens, suite.gen_lens
            _check_lengths(suite, model, seqs, gens)
        shapes = [
            (bindings, batch, seq, gen)
            for bindings in (binding_sets if takes[name] else [()])
            for batch in suite.batch_sizes
            for seq in seqs
            for gen in gens
        ]
        for bindings, batch, seq, _ in shapes if takes[name] else ():
            with contextlib.suppress(VariantNotApplicable):
                get_model(name, bindings).shapes(batch, seq)  # type: ignore[attr-defined]
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
                gen_len=gen,
            )
            for variant in suite.variants
            for backend in suite.backends
            for threads in suite.threads
            for bindings, batch, seq, gen in shapes
        ]
    return Plan(suite, tuple(cases), run_prices)


def _load(where: str, name: str) -> Model:
    """The model called ``name``; ConfigError naming where it was asked for."""
    key = "--model" if where == "command line" else "models"
    try:
        return get_model(name)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {key}: {exc}") from None


def _check_generative(suite: Suite, name: str, generative: bool) -> None:
    """ConfigError for a decoder on a backend that cannot generate, a decoder with an encoder
    variant step, or a decoder-only step on an encoder."""
    for variant in suite.variants:
        parsed = parse_variant(variant)
        if generative and any(s.kind in ("torch", "onnx") for s in parsed.steps):
            raise ConfigError(
                f"{suite.path}: variant {variant!r} does not apply to the decoder {name!r}; "
                "allowed: fp32, int8-weight, int4-weight, bf16, kv-int8 (and their + chains)"
            )
        if not generative and parsed.generative_only:
            raise ConfigError(
                f"{suite.path}: variant {variant!r} applies to decoders only; {name!r} is not one"
            )
    if generative:
        cannot = [b for b in suite.backends if not backend_class(b).capabilities.generates]
        if cannot:
            able = [b for b in backend_names() if backend_class(b).capabilities.generates]
            raise ConfigError(
                f"{suite.path}: backend {', '.join(cannot)} cannot generate text ({name!r} is "
                f"a decoder); allowed: {', '.join(able)}"
            )


def _check_lengths(
    suite: Suite, model: Model, prompts: tuple[int | None, ...], gens: tuple[int | None, ...]
) -> None:
    """ConfigError when a prompt plus its generation exceeds the model's context."""
    limit = getattr(model, "max_positions", None)
    for prompt in prompts:
        for gen in gens:
            if limit and (prompt or 0) + (gen or 0) > limit:
                raise ConfigError(
                    f"{suite.path}: prompt_len {prompt} + gen_len {gen} exceeds "
                    f"{model.name}'s context of {limit} tokens"
                )
