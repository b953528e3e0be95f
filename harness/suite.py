"""Suite files (TOML) -> a typed, validated ``Suite``; and where suite files are found by name.

Validation only: no I/O beyond reading the file, no model is loaded (``harness.plan`` does
that when it expands the suite into cases).

A suite file::

    name = "quick"
    description = "..."
    models = ["minilm-l6"]
    variants = ["fp32"]
    backends = ["torch-eager", "onnxruntime", "openvino"]
    batch_sizes = [1, 8]
    seq_lens = [128]
    threads = "auto"            # or a list of thread counts, e.g. [1, 2]
    scenario = "single-stream"   # or a list of: single-stream, multi-stream, offline, server
    baseline = "torch-eager/fp32"
    hardware = ["avx512", "gpu-a10"]  # fleet: one case per class, each on a node of that class
    retries = 1                 # fleet: a case whose node was lost runs again on another node
    fidelity_min_ratio = 0.99   # a variant must keep this share of the fp32 metric

    [measure]                   # TimingPolicy fields, plus timeout_s per case
    budget_s = 8

    [options.onnxruntime]       # backend options, checked against the backend's declared ones
    execution_provider = "cpu"

    [energy]                    # probe = auto | rapl | nvml | estimate | none
    watts_per_core = 4.0        # override the CPU power table for the estimate

    [cost]                      # region, prices_file, usd_per_kwh, gco2_per_kwh, pue,
    region = "eu"               # usd_per_hour = { cpu-vcpu = 0.05 }

    [serving]                   # load scenarios (harness.scenarios): ServingSettings fields,
    mode = "short"              # short | full (MLPerf-compliant durations)
    latency_bound_ms = 50       # server: p99 bound of the max-QPS search
    instances = [1, 2]          # axes: model instances, dynamic batcher's max batch and delay
    max_batch_size = [1, 8]
    max_queue_delay_ms = [2]
    request_rates = [0.5, 1, 2]  # llm-server: one case per offered rate (requests/s); there
                                 # max_batch_size is the engine's max_num_seqs

Every error names the file, the key and what is allowed, on one line.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.backend import ChecksOptions, backend_class, backend_names
from harness.case import DEFAULT_BUILD_TIMEOUT_S, DEFAULT_TIMEOUT_S, CaseSettings
from harness.errors import ConfigError
from harness.measure.energy import PROBES, EnergySettings
from harness.measure.fidelity import DEFAULT_MIN_RATIO
from harness.measure.timing import TimingPolicy
from harness.models import is_user_model, model_names
from harness.models.inputs import parse_binding
from harness.optimize.variants import parse_variant
from harness.scenarios.config import MODES, SCENARIOS, ServingSettings

SUITES_ENV = "INFRABENCH_SUITES"


@dataclass(frozen=True)
class Pricing:
    """Where prices come from: a prices file (None: the shipped one), a region, and overrides
    (usd_per_kwh, gco2_per_kwh, pue, usd_per_hour = {class: price})."""

    prices_file: str | None = None
    region: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """A validated suite. ``threads`` holds 0 for "auto" (every CPU this process may use)."""

    name: str
    path: str
    description: str = ""
    models: tuple[str, ...] = ()
    variants: tuple[str, ...] = ("fp32",)
    backends: tuple[str, ...] = ()
    batch_sizes: tuple[int, ...] = (1,)
    seq_lens: tuple[int, ...] = (128,)
    prompt_lens: tuple[int, ...] = (128,)  # decoders: prompt tokens
    gen_lens: tuple[int, ...] = (64,)  # decoders: generated tokens (EOS ignored)
    threads: tuple[int, ...] = (0,)
    scenarios: tuple[str, ...] = ("single-stream",)
    baseline: tuple[str, str] = ("torch-eager", "fp32")
    timing: TimingPolicy = field(default_factory=TimingPolicy)
    timeout_s: float = DEFAULT_TIMEOUT_S
    build_timeout_s: float = DEFAULT_BUILD_TIMEOUT_S
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fidelity_min_ratio: float = DEFAULT_MIN_RATIO
    energy: EnergySettings = field(default_factory=EnergySettings)
    pricing: Pricing = field(default_factory=lambda: Pricing())
    image_sizes: tuple[int, ...] = ()
    dims: tuple[tuple[str, tuple[int, ...]], ...] = ()  # named axis -> sizes swept
    shapes: tuple[str, ...] = ()  # "input=1x3x640x640"
    hardware: tuple[str, ...] = ()  # fleet hardware classes; empty: this machine only
    retries: int = 0  # fleet: extra tries of a case whose node was lost
    serving: ServingSettings = field(default_factory=ServingSettings)
    instances: tuple[int, ...] = (1,)  # serving axes (load scenarios only)
    max_batch_sizes: tuple[int, ...] = (1,)
    max_queue_delays_ms: tuple[float, ...] = (0.0,)
    request_rates: tuple[float, ...] = ()  # llm-server: offered rates, requests/s

    @property
    def settings(self) -> CaseSettings:
        """The per-case settings every case of this suite carries."""
        return CaseSettings(
            timing=self.timing,
            energy=self.energy,
            timeout_s=self.timeout_s,
            build_timeout_s=self.build_timeout_s,
            fidelity_min_ratio=self.fidelity_min_ratio,
            retries=self.retries,
            serving=self.serving,
        )

    def binding_sets(self) -> list[tuple[str, ...]]:
        """Every combination of the swept axes as binding texts; ``shapes`` go in every set."""
        axes: list[list[tuple[str, ...]]] = []
        if self.image_sizes:
            axes.append([(f"height={v}", f"width={v}") for v in self.image_sizes])
        axes += [[(f"{name}={v}",) for v in sizes] for name, sizes in self.dims]
        combos: list[tuple[str, ...]] = [self.shapes]
        for axis in axes:
            combos = [(*combo, *choice) for combo in combos for choice in axis]
        return combos


def choice(where: str, key: str, value: Any, allowed: list[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{where}: {key}: unknown value {value!r}; allowed: {', '.join(allowed)}")
    return value


def _one_of(allowed: Callable[[], list[str]]) -> Callable[[str, str, Any], str]:
    return lambda where, key, value: choice(where, key, value, allowed())


def _names(
    where: str, key: str, value: Any, item: Callable[[str, str, Any], str]
) -> tuple[str, ...]:
    """A non-empty list of names, each checked by ``item``."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty list of strings, got {value!r}")
    return tuple(item(where, key, v) for v in value)


def _model(where: str, key: str, value: Any, base: Path | None = None) -> str:
    """A zoo model name, or a model on disk (onnx:, hf:, torch:); paths in a suite file (files,
    directories, a factory's .py) are made relative to the suite file. Nothing is loaded here:
    the planner loads each model once and reports what is wrong with it."""
    if not isinstance(value, str) or not is_user_model(value):
        return choice(where, key, value, model_names())
    kind, _, rest = value.partition(":")
    module, colon, factory = rest.rpartition(":")
    if base is not None and kind == "torch" and module.endswith(".py"):
        value = f"torch:{_relative(base, module)}{colon}{factory}"
    if base is not None and kind in ("onnx", "hf"):
        path, *options = rest.split("#")
        value = "#".join(
            [f"{kind}:{_relative(base, path)}", *(_option_path(base, o) for o in options)]
        )
    return value


def _relative(base: Path, path: str) -> str:
    return path if Path(path).is_absolute() else str(base / path)


def _option_path(base: Path, option: str) -> str:
    key, sep, path = option.partition("=")
    return f"{key}={_relative(base, path)}" if sep else option


def variant_name(where: str, key: str, value: Any) -> str:
    try:
        return parse_variant(value).name
    except ConfigError as exc:
        raise ConfigError(f"{where}: {key}: {exc}") from None


# The largest count or size accepted anywhere (batch, sequence, threads, samples): a signed
# 32-bit integer, far above any real value and safely inside the store's BIGINT columns.
MAX_INT = 2**31 - 1


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_INT


def _positive_ints(where: str, key: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(_count(v) for v in value):
        raise ConfigError(
            f"{where}: {key} must be a non-empty list of positive integers (1..{MAX_INT}), "
            f"got {value!r}"
        )
    return tuple(value)


def _threads(where: str, key: str, value: Any) -> tuple[int, ...]:
    if value == "auto":
        return (0,)
    if _count(value):
        return (value,)
    try:
        return _positive_ints(where, key, value)
    except ConfigError:
        raise ConfigError(
            f'{where}: {key} must be "auto" or a list of positive integers, got {value!r}'
        ) from None


def _string(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
    return value


def _baseline(where: str, key: str, value: Any) -> tuple[str, str]:
    backend, _, variant = _string(where, key, value).partition("/")
    if not variant:
        raise ConfigError(f'{where}: {key} must be "BACKEND/VARIANT", got {value!r}')
    return choice(where, key, backend, backend_names()), variant_name(where, key, variant)


_TIMING_FIELDS = {f.name: f.type for f in fields(TimingPolicy)}


HARDWARE_CLASS_PATTERN = r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?"


def hardware_class_name(where: str, key: str, value: Any) -> str:
    """A fleet hardware class: lower-case letters, digits, ``.``, ``_`` and ``-``, at most 63
    characters, starting and ending alphanumeric, so that the same name is a valid Ray resource
    (``hw:<class>``), Slurm constraint and Kubernetes label value (RFC 1123-like rule)."""
    import re

    if not isinstance(value, str) or not re.fullmatch(HARDWARE_CLASS_PATTERN, value):
        raise ConfigError(
            f"{where}: {key}: bad hardware class {value!r}; allowed: lower-case letters, "
            "digits, '.', '_', '-' (at most 63, alphanumeric at both ends)"
        )
    return value


def _retries(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise ConfigError(
            f"{where}: {key} must be a non-negative integer (0..{MAX_INT}), got {value!r}"
        )
    return value


def _positive_int(where: str, key: str, value: Any) -> int:
    if not _count(value):
        raise ConfigError(
            f"{where}: {key} must be a positive integer (1..{MAX_INT}), got {value!r}"
        )
    return int(value)


def _measure(where: str, table: Any) -> tuple[TimingPolicy, dict[str, float]]:
    parsers: dict[str, _Parser] = {
        name: _positive_int if kind == "int" else _positive_number
        for name, kind in _TIMING_FIELDS.items()
    }
    bounds = {"timeout_s": _positive_number, "build_timeout_s": _positive_number}
    values = _table(where, "measure", table, {**parsers, **bounds})
    timeouts = {k: values.pop(k) for k in bounds if k in values}
    policy = TimingPolicy(**values)
    if policy.max_samples < policy.min_samples:
        raise ConfigError(
            f"{where}: measure.max_samples ({policy.max_samples}) must be at least "
            f"measure.min_samples ({policy.min_samples})"
        )
    if policy.warmup_max_iters < policy.warmup_min_iters:
        raise ConfigError(
            f"{where}: measure.warmup_max_iters ({policy.warmup_max_iters}) must be at least "
            f"measure.warmup_min_iters ({policy.warmup_min_iters})"
        )
    if not 0 < policy.confidence < 1:
        raise ConfigError(
            f"{where}: measure.confidence must lie in (0, 1), got {policy.confidence}"
        )
    return policy, timeouts


def _options(where: str, table: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [options] must be a table of backend tables, got {table!r}")
    result: dict[str, dict[str, Any]] = {}
    for backend, opts in table.items():
        choice(where, "[options]", backend, backend_names())
        declared = backend_class(backend).capabilities.options
        if not isinstance(opts, dict):
            raise ConfigError(f"{where}: [options.{backend}] must be a table, got {opts!r}")
        for key, value in opts.items():
            if key not in declared:
                allowed = ", ".join(declared) or "(none)"
                raise ConfigError(
                    f"{where}: unknown key {key!r} in [options.{backend}]; allowed: {allowed}"
                )
            spec = declared[key]
            if isinstance(spec, tuple):
                choice(where, f"options.{backend}.{key}", value, list(spec))
            elif isinstance(value, bool) is not (spec is bool) or not isinstance(value, spec):
                raise ConfigError(
                    f"{where}: options.{backend}.{key} must be {spec.__name__}, got {value!r}"
                )
        cls = backend_class(backend)
        if issubclass(cls, ChecksOptions):  # values only the backend can judge (a preset name)
            cls.check_options(opts, where)
        result[backend] = dict(opts)
    return result


def _ratio(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        # NaN fails the comparison too: it is refused here
        raise ConfigError(f"{where}: {key} must be a number in (0, 1], got {value!r}")
    return float(value)


def _positive_number(where: str, key: str, value: Any) -> float:
    """A finite number > 0 (TOML allows nan and inf: both refused)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not value > 0
    ):
        raise ConfigError(
            f"{where}: {key} must be a positive number (finite, in (0, inf)), got {value!r}"
        )
    return float(value)


def _table(where: str, name: str, table: Any, parsers: Mapping[str, _Parser]) -> dict[str, Any]:
    """Validate a [name] table whose keys each have a parser."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{name}] must be a table, got {table!r}")
    values = {}
    for key, value in table.items():
        if key not in parsers:
            raise ConfigError(
                f"{where}: unknown key {key!r} in [{name}]; allowed: {', '.join(parsers)}"
            )
        values[key] = parsers[key](where, f"{name}.{key}", value)
    return values


def _hourly_prices(where: str, key: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table of hardware class = USD per hour")
    return {cls: _positive_number(where, f"{key}.{cls}", v) for cls, v in value.items()}


def _energy(where: str, table: Any) -> EnergySettings:
    values = _table(where, "energy", table, {
        "probe": lambda w, k, v: choice(w, k, v, list(PROBES)),
        "watts_per_core": _positive_number,
        "powercap_root": _string,
    })  # fmt: skip
    return EnergySettings(**values)


def _pricing(where: str, table: Any) -> Pricing:
    values = _table(where, "cost", table, {
        "prices_file": _string,
        "region": _string,
        "usd_per_kwh": _positive_number,
        "gco2_per_kwh": _positive_number,
        "pue": _positive_number,
        "usd_per_hour": _hourly_prices,
    })  # fmt: skip
    prices_file = values.pop("prices_file", None)
    if prices_file is not None:  # relative to the suite file, like any path in it
        prices_file = str(Path(where).parent / prices_file)
    return Pricing(prices_file, values.pop("region", None), values)


def _dims(where: str, key: str, value: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table of axis name = list of sizes")
    return tuple((name, _positive_ints(where, f"{key}.{name}", v)) for name, v in value.items())


def _binding(where: str, key: str, value: str) -> str:
    parse_binding(value, f"{where}: {key}")
    return value


_Parser = Callable[[str, str, Any], Any]
_KEYS: dict[str, _Parser] = {
    "name": _string,
    "description": _string,
    "models": lambda w, k, v: _names(
        w, k, v, lambda w2, k2, v2: _model(w2, k2, v2, Path(w).parent)
    ),
    "variants": lambda w, k, v: _names(w, k, v, variant_name),
    "backends": lambda w, k, v: _names(w, k, v, _one_of(backend_names)),
    "batch_sizes": _positive_ints,
    "seq_lens": _positive_ints,
    "prompt_lens": _positive_ints,
    "gen_lens": _positive_ints,
    "threads": _threads,
    "scenario": lambda w, k, v: _names(
        w,
        k,
        [v] if isinstance(v, str) else v,
        lambda w2, k2, v2: choice(w2, k2, v2, list(SCENARIOS)),
    ),
    "baseline": _baseline,
    "fidelity_min_ratio": lambda w, k, v: _ratio(w, k, v),
    "image_sizes": _positive_ints,
    "dims": lambda w, k, v: _dims(w, k, v),
    "shapes": lambda w, k, v: tuple(_binding(w, k, x) for x in _names(w, k, v, _string)),
    "hardware": lambda w, k, v: _names(w, k, v, hardware_class_name),
    "retries": _retries,
}
_TABLES = ("measure", "options", "energy", "cost", "serving")


def _delays(where: str, key: str, value: Any) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        raise ConfigError(f"{where}: {key} must be a non-empty list of numbers >= 0, got {value!r}")
    return tuple(float(v) for v in value)


def _rates(where: str, key: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty list of positive numbers")
    return tuple(_positive_number(where, key, v) for v in value)


def _non_negative_int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise ConfigError(f"{where}: {key} must be an integer in 0..{MAX_INT}, got {value!r}")
    return value


def _range_ratio(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ConfigError(f"{where}: {key} must be a number in [0, 1), got {value!r}")
    return float(value)


def _flag(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _serving(where: str, table: Any) -> dict[str, Any]:
    """The [serving] table: ServingSettings fields and the three serving axes."""
    values = _table(where, "serving", table, {
        "loadgen": _flag,
        "mode": lambda w, k, v: choice(w, k, v, list(MODES)),
        "latency_bound_ms": _positive_number,
        "search_budget_s": _positive_number,
        "samples_per_query": _positive_int,
        "short_duration_ms": _positive_int,
        "short_query_count": _positive_int,
        "instances": _positive_ints,
        "max_batch_size": _positive_ints,
        "max_queue_delay_ms": _delays,
        "request_rates": _rates,
        "burstiness": _positive_number,
        "ttft_slo_ms": _positive_number,
        "tpot_slo_ms": _positive_number,
        "rate_duration_s": _positive_number,
        "max_requests": _positive_int,
        "request_timeout_s": _positive_number,
        "length_range_ratio": _range_ratio,
        "seed": _non_negative_int,
        "attainment_goal": _ratio,
    })  # fmt: skip
    axes = {
        "instances": values.pop("instances", (1,)),
        "max_batch_sizes": values.pop("max_batch_size", (1,)),
        "max_queue_delays_ms": values.pop("max_queue_delay_ms", (0.0,)),
        "request_rates": values.pop("request_rates", ()),
    }
    return {"serving": ServingSettings(**values), **axes}


def parse_suite(data: Mapping[str, Any], where: str) -> Suite:
    """Validate a parsed TOML document; ``where`` names the file in error messages."""
    allowed = [*_KEYS, *_TABLES]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed: {', '.join(allowed)}")
        if key in _KEYS:
            values[key] = _KEYS[key](where, key, value)
    for required in ("models", "backends"):
        if required not in values:
            raise ConfigError(f"{where}: missing key {required!r}")
    if "measure" in data:
        values["timing"], timeouts = _measure(where, data["measure"])
        values.update(timeouts)
    if "energy" in data:
        values["energy"] = _energy(where, data["energy"])
    if "cost" in data:
        values["pricing"] = _pricing(where, data["cost"])
    if "serving" in data:
        values.update(_serving(where, data["serving"]))
        _full_mode_fits(where, values)
    if "scenario" in values:
        values["scenarios"] = values.pop("scenario")
    values["options"] = _options(where, data.get("options", {}))
    values.setdefault("name", Path(where).stem)
    return Suite(path=where, **values)


def _full_mode_fits(where: str, values: dict[str, Any]) -> None:
    """Full mode runs LoadGen for 600 s at least (offline about 1.65x that; the server its
    search, then a full run while the timeout has room for one): a shorter case timeout would
    kill the other scenarios' cases, and leave the server no full run, every time (a load case
    keeps nothing of a run that did not finish)."""
    serving: ServingSettings = values["serving"]
    if not serving.compliant:
        return
    least = math.ceil(1500.0 + serving.search_budget_s)
    given = values.get("timeout_s", DEFAULT_TIMEOUT_S)
    if given < least:
        unset = "" if "timeout_s" in values else " (the default)"
        raise ConfigError(
            f"{where}: [measure] timeout_s = {given:g} s{unset} is too short for [serving] mode "
            f'= "full" (a full-mode case runs 10-45 minutes); allowed: at least {least:g} s'
        )


def load_suite(path: Path) -> Suite:
    """Read and validate one suite file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: suite file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read suite file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_suite(data, str(path))


def suite_dirs() -> list[Path]:
    """Where suite names are looked up: $INFRABENCH_SUITES, ./suites, the source tree's suites."""
    dirs = [Path(p) for p in os.environ.get(SUITES_ENV, "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "suites", Path(__file__).resolve().parent.parent / "suites"]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def suite_names() -> dict[str, Path]:
    """Every suite findable by name; earlier directories win."""
    found: dict[str, Path] = {}
    for directory in suite_dirs():
        for path in sorted(directory.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def find_suite(name_or_path: str) -> Path:
    """A suite by file path or by name; ConfigError listing the known names otherwise."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: suite file not found")
        return candidate
    names = suite_names()
    if name_or_path not in names:
        raise ConfigError(
            f"unknown suite {name_or_path!r}; allowed: {', '.join(names) or '(none found)'} "
            "or a path to a .toml file"
        )
    return names[name_or_path]
