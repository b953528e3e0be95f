"""The one planner: Suite + command-line selection + this machine -> the cases to run.

The CLI, the runner's callers and the pytest plugin all call :func:`plan`; nothing else expands
a suite. Planning loads each model once (its inputs decide the shapes), checks every shape
binding, resolves each backend's device and reads the prices, so that bad input is refused,
on one line, before anything runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from harness.backend import GENERATION_PROTOCOLS, backend_class, backend_names, case_device
from harness.cache import cache_root
from harness.case import Case
from harness.cost import Prices, prices
from harness.errors import ConfigError
from harness.launch import Launcher, ProcessLauncher
from harness.models import get_model, is_user_model
from harness.models.inputs import parse_binding
from harness.optimize.variants import parse_variant
from harness.scenarios.config import SCENARIOS, ServingKnobs
from harness.suite import Suite, choice, hardware_class_name, variant_name
from harness.suite import _model as model_spec
from harness.worker import ModelProbe, ProbeModelTask


@dataclass(frozen=True)
class Sweeps:
    """Sweep axes given on the command line; empty ones keep the suite's."""

    batch_sizes: tuple[int, ...] = ()
    seq_lens: tuple[int, ...] = ()
    prompt_lens: tuple[int, ...] = ()  # decoders
    gen_lens: tuple[int, ...] = ()  # decoders
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
    hardware: tuple[str, ...] = ()  # fleet hardware classes
    retries: int | None = None
    scenarios: tuple[str, ...] = ()
    target: str | None = None  # http://HOST:PORT: measure that server (the http backend)


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
    watts = selection.watts_per_core
    if watts is not None and not (math.isfinite(watts) and watts > 0):
        raise ConfigError(
            f"{where}: --watts-per-core must be a finite number in (0, inf), got {watts}"
        )
    changed = {k: v for k, v in asdict(selection.sweeps).items() if v}
    if "shapes" in changed and "batch_sizes" not in changed:
        # --shape x=8x3x64x64 with no --batch: the shape's first size is the batch
        changed["batch_sizes"] = (parse_binding(changed["shapes"][0], where)[1][0],)
    backends = tuple(choice(where, "--backend", b, backend_names()) for b in selection.backends)
    variants = tuple(variant_name(where, "--variant", v) for v in selection.variants)
    models = tuple(model_spec(where, "--model", m) for m in selection.models)
    hardware = tuple(hardware_class_name(where, "--hardware", h) for h in selection.hardware)
    if selection.retries is not None and selection.retries < 0:
        raise ConfigError(f"{where}: --retries must be 0 or more, got {selection.retries}")
    scenarios = tuple(choice(where, "--scenario", s, list(SCENARIOS)) for s in selection.scenarios)
    options = dict(suite.options)
    if selection.target is not None:
        found = re.fullmatch(r"https?://[^/\s:]+:(\d+)/?", selection.target)
        if not found or not 1 <= int(found.group(1)) <= 65535:
            raise ConfigError(
                f"{where}: --target must be http://HOST:PORT (port 1-65535), got "
                f"{selection.target!r}"
            )
        backends = ("http",)
        options["http"] = {**options.get("http", {}), "url": selection.target}
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
        scenarios=scenarios or suite.scenarios,
        options=options,
        variants=variants or suite.variants,
        models=models or suite.models,
        hardware=hardware or suite.hardware,
        retries=suite.retries if selection.retries is None else selection.retries,
        **changed,
    )


def suite_prices(suite: Suite) -> Prices:
    """The prices a suite asks for; ConfigError on a bad prices file or region."""
    pricing = suite.pricing
    path = Path(pricing.prices_file) if pricing.prices_file else None
    return prices(path, pricing.region, dict(pricing.overrides))


def plan(
    suite: Suite,
    selection: Selection | None = None,
    auto_threads: int = 1,
    launcher: Launcher | None = None,
    cache: str | None = None,
) -> Plan:
    """Expand ``suite`` (with ``selection`` applied) into cases for this machine.

    ``auto_threads`` replaces ``threads = "auto"``. Each hardware class of the suite (fleet) is
    one more axis: a case per class, outermost. Models without a sequence axis get one case
    per batch size; a user model's unbound dynamic axis, a model that cannot be loaded, bad
    prices or shape bindings given to models that take none are ``ConfigError``s. A static
    batch that contradicts a case's batch size is left to the case (skipped, with the reason).

    User models (``onnx:``, ``hf:``, ``torch:``) are loaded and checked through ``launcher``
    (default: a fresh worker per model, bounded by ``[measure] build_timeout_s``): their code
    never runs in this process, and its crash, hang, exit or exception is a one-line
    ConfigError. Zoo models are ours and are checked here. ``cache``: the artifact cache
    (``--cache``; default ``$INFRABENCH_CACHE`` or ``~/.cache/infrabench``).
    """
    if selection is not None:
        suite = select(suite, selection)
    run_prices = suite_prices(suite)
    where = "command line" if selection is not None and selection.models else suite.path
    binding_sets = suite.binding_sets()
    several = sum(name.startswith("onnx:") for name in suite.models) > 1  # take bindings
    probes = {
        name: _probe(where, name, suite, binding_sets, launcher or ProcessLauncher(), cache,
                     several)
        for name in suite.models
    }  # fmt: skip
    if selection is not None:
        _check_length_flags(selection.sweeps, probes)
    lengths_from = (
        "command line"
        if selection is not None and (selection.sweeps.prompt_lens or selection.sweeps.gen_lens)
        else suite.path
    )
    takes = {name: probe.accepts_bindings for name, probe in probes.items()}
    if binding_sets != [()] and not any(takes.values()):
        raise ConfigError(
            f"{suite.path}: shape bindings (--shape, --dim, --image-size) apply to ONNX "
            f"files (onnx:PATH); none of {', '.join(suite.models)} takes them"
        )
    devices = {b: case_device(b, suite.options.get(b, {})) for b in suite.backends}
    settings = suite.settings
    cases: list[Case] = []
    own = {name: list(probe.binding_sets) or binding_sets for name, probe in probes.items()}
    _check_bindings_used(suite, binding_sets, takes, own)
    _check_llm_server(suite)
    for name, probe in probes.items():
        _check_generative(suite, name, probe.generative)
        seqs: tuple[int | None, ...] = suite.seq_lens if probe.uses_sequence else (None,)
        gens: tuple[int | None, ...] = (None,)
        if probe.generative:
            seqs, gens = suite.prompt_lens, suite.gen_lens
            _check_lengths(lengths_from, name, probe.max_positions, seqs, gens)
        shapes = [
            (bindings, batch, seq, gen)
            for bindings in (own[name] if takes[name] else [()])
            for batch in suite.batch_sizes
            for seq in seqs
            for gen in gens
        ]
        cases += [
            Case(
                model=name,
                variant=variant,
                backend=backend,
                batch_size=batch,
                seq_len=seq,
                threads=threads or auto_threads,
                scenario=scenario,
                serving=knobs,
                options=suite.options.get(backend, {}),
                bindings=bindings,
                device=devices[backend],
                settings=settings,
                hardware=hardware,
                gen_len=gen,
            )
            for hardware in suite.hardware or (None,)
            for variant in suite.variants
            for backend in suite.backends
            for threads in suite.threads
            for bindings, batch, seq, gen in shapes
            for scenario, knobs in _serving_axes(suite)
        ]
    # a value given twice (--batch 1,1, a backend listed twice) is one case, measured once
    unique = {case.case_id: case for case in reversed(cases)}
    return Plan(suite, tuple(c for c in cases if unique[c.case_id] is c), run_prices)


def _serving_axes(suite: Suite) -> list[tuple[str, ServingKnobs]]:
    """Each scenario with each serving configuration it runs under: load-driven scenarios
    sweep instances x max batch x queue delay (the delay only where batching); the harness's
    own single-stream loop runs one backend instance, unbatched."""
    loop_only = not suite.serving.loadgen
    out: list[tuple[str, ServingKnobs]] = []
    for scenario in suite.scenarios:
        if scenario == "llm-server":  # one engine; its scheduler batches up to max_num_seqs
            out += [(scenario, ServingKnobs(max_batch_size=batch, request_rate=rate))
                    for batch in suite.max_batch_sizes for rate in suite.request_rates]  # fmt: skip
            continue
        if scenario == "single-stream" and loop_only:
            out.append((scenario, ServingKnobs()))
            continue
        for instances in suite.instances:
            for batch in suite.max_batch_sizes:
                delays = suite.max_queue_delays_ms if batch > 1 else (0.0,)
                out += [(scenario, ServingKnobs(instances, batch, d)) for d in delays]
    return out


def check_threads(planned: Plan, usable: int) -> None:
    """ConfigError when a case asks for more threads than the ``usable`` CPUs of this machine:
    its row would claim (and bill) CPUs the case never had."""
    asked = max((case.threads for case in planned.cases), default=0)
    if asked > usable:
        raise ConfigError(
            f"{planned.suite.path}: threads {asked}: this machine has {usable} usable CPU(s); "
            f'allowed: 1..{usable} or "auto"'
        )


def _probe(
    where: str,
    name: str,
    suite: Suite,
    binding_sets: list[tuple[str, ...]],
    launcher: Launcher,
    cache: str | None,
    own_only: bool = False,
) -> ModelProbe:
    """What planning needs of model ``name``; ConfigError naming where it was asked for.

    A user model is probed in a worker; a zoo model here (our code)."""

    key = "--model" if where == "command line" else "models"
    task = ProbeModelTask(
        name, tuple(binding_sets), suite.batch_sizes, suite.seq_lens, str(cache_root(cache)),
        suite.settings.build_timeout_s, own_only=own_only,
    )  # fmt: skip
    if not is_user_model(name):
        get_model(name)  # a ConfigError for an unknown name, before the task runs it
        probe = task.run(lambda text: None)
    else:
        outcome = launcher.launch(task)
        if outcome.value is None:
            bound = (
                " ([measure] build_timeout_s bounds it)" if outcome.error_kind == "timeout" else ""
            )
            raise ConfigError(f"{where}: {key}: {name}: {outcome.reason}{bound}")
        probe = outcome.value
    if probe.error is not None:
        raise ConfigError(f"{where}: {key}: {probe.error}")
    return probe


def _check_bindings_used(
    suite: Suite,
    sets: list[tuple[str, ...]],
    takes: dict[str, bool],
    own: dict[str, list[tuple[str, ...]]],
) -> None:
    """ConfigError for a binding that no model of a several-model suite can use (a single
    model's resolver says so in its own words)."""
    if sum(takes.values()) < 2:
        return
    used = {b for name, sets_ in own.items() if takes[name] for s in sets_ for b in s}
    unused = sorted({b for s in sets for b in s} - used)
    if unused:
        raise ConfigError(
            f"{suite.path}: shape binding {', '.join(unused)} names no input or dynamic axis of "
            f"any model of the suite"
        )


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
    serving = "llm-server" in suite.scenarios
    if serving and not generative:
        raise ConfigError(
            f"{suite.path}: scenario llm-server serves text generation; {name!r} is not a decoder"
        )
    if generative:
        need = "serves" if serving else "generates"
        cannot = [b for b in suite.backends if not getattr(backend_class(b).capabilities, need)]
        if cannot:
            able = [b for b in backend_names() if getattr(backend_class(b).capabilities, need)]
            what = "serve generation requests" if serving else "generate text"
            raise ConfigError(
                f"{suite.path}: backend {', '.join(cannot)} cannot {what} ({name!r} is "
                f"a decoder); allowed: {', '.join(able)}"
            )


def _check_length_flags(sweeps: Sweeps, probes: dict[str, ModelProbe]) -> None:
    """ConfigError for a length flag that no model of the suite would use (it would be
    silently ignored): --prompt-len and --gen-len without a decoder, --seq without a model
    that has a sequence input (a decoder's is --prompt-len)."""
    names = ", ".join(probes)
    decoders = [n for n, p in probes.items() if p.generative]
    texts = [n for n, p in probes.items() if p.uses_sequence and not p.generative]
    for flag, given in (("--prompt-len", sweeps.prompt_lens), ("--gen-len", sweeps.gen_lens)):
        if given and not decoders:
            hint = "; --seq sets a text model's sequence length" if texts else ""
            raise ConfigError(
                f"command line: {flag} applies to decoders (text generation); none of "
                f"{names} is one{hint}"
            )
    if sweeps.seq_lens and not texts:
        hint = "; use --prompt-len for a decoder's prompt length" if decoders else ""
        raise ConfigError(
            f"command line: --seq applies to models with a sequence input; none of {names} "
            f"has one{hint}"
        )


# [serving] keys that only one kind of load reads (harness.scenarios.config.ServingSettings)
LOADGEN_KEYS = ("loadgen", "mode", "latency_bound_ms", "search_budget_s", "samples_per_query",
                "short_duration_ms", "short_query_count")  # fmt: skip
LLM_SERVER_KEYS = ("burstiness", "ttft_slo_ms", "tpot_slo_ms", "rate_duration_s", "max_requests",
                   "request_timeout_s", "length_range_ratio", "attainment_goal")  # fmt: skip


def _check_llm_server(suite: Suite) -> None:
    """ConfigError for an llm-server suite without rates, mixed with other scenarios, or with
    serving axes that do not apply to it (instances, queue delay: the engine schedules); and
    for [serving] keys of the one kind of load in a suite that runs only the other (they would
    be ignored)."""
    where = suite.path
    llm = "llm-server" in suite.scenarios
    given = [f.name for f in fields(suite.serving)
             if getattr(suite.serving, f.name) != f.default]  # fmt: skip
    foreign = [k for k in given if k in (LOADGEN_KEYS if llm else LLM_SERVER_KEYS)]
    if not llm and suite.request_rates:
        foreign.insert(0, "request_rates")
    if foreign:
        kind = "the LoadGen scenarios" if llm else "scenario llm-server"
        raise ConfigError(f"{where}: [serving] {', '.join(foreign)} apply only to {kind}, which "
                          "this suite does not run")  # fmt: skip
    if not llm:
        return
    if len(suite.scenarios) > 1:
        raise ConfigError(
            f"{where}: scenario llm-server cannot be mixed with other scenarios "
            f"({', '.join(suite.scenarios)}): they need other backends and axes"
        )
    if not suite.request_rates:
        raise ConfigError(f"{where}: scenario llm-server needs [serving] request_rates "
                          "(requests per second, e.g. [0.5, 1, 2])")  # fmt: skip
    if suite.instances != (1,) or suite.max_queue_delays_ms != (0.0,):
        raise ConfigError(f"{where}: [serving] instances and max_queue_delay_ms do not apply "
                          "to llm-server (one engine whose scheduler batches; max_batch_size "
                          "is its max_num_seqs)")  # fmt: skip
    protocol = suite.options.get("http", {}).get("protocol")
    if "http" in suite.backends and protocol not in (None, *GENERATION_PROTOCOLS):
        raise ConfigError(f"{where}: options.http.protocol {protocol!r} does not generate text; "
                          f"allowed for llm-server: {', '.join(GENERATION_PROTOCOLS)}")  # fmt: skip


def _check_lengths(
    where: str,
    name: str,
    limit: int | None,
    prompts: tuple[int | None, ...],
    gens: tuple[int | None, ...],
) -> None:
    """ConfigError when a prompt plus its generation exceeds the model's context (``limit``
    tokens; None: unknown)."""
    for prompt in prompts:
        for gen in gens:
            if limit and (prompt or 0) + (gen or 0) > limit:
                raise ConfigError(
                    f"{where}: prompt_len {prompt} + gen_len {gen} exceeds "
                    f"{name}'s context of {limit} tokens"
                )
