"""Suite files (TOML) -> typed, validated cases. Validation only: no I/O beyond reading the file.

A suite file::

    name = "quick"
    description = "..."
    models = ["minilm-l6"]
    variants = ["fp32"]
    backends = ["torch-eager", "onnxruntime", "openvino"]
    batch_sizes = [1, 8]
    seq_lens = [128]
    threads = "auto"            # or a list of thread counts, e.g. [1, 2]
    scenario = "single-stream"
    baseline = "torch-eager/fp32"
    fidelity_min_ratio = 0.99   # a variant must keep this share of the fp32 metric

    [measure]                   # TimingPolicy fields, plus timeout_s per case
    budget_s = 8

    [options.onnxruntime]       # backend options, checked against the backend's declared ones
    execution_provider = "cpu"

    [energy]                    # probe = auto | rapl | nvml | estimate | none
    watts_per_core = 4.0        # override the CPU power table for the estimate

    [cost]                      # region, prices_file, usd_per_kwh, gco2_per_kwh, pue,
    region = "eu"               # usd_per_hour = { cpu-vcpu = 0.05 }

Every error names the file, the key and what is allowed, on one line.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from harness.backend import backend_class, backend_names
from harness.errors import ConfigError, VariantNotApplicable
from harness.measure.energy import PROBES, EnergySettings
from harness.measure.fidelity import DEFAULT_MIN_RATIO
from harness.measure.timing import TimingPolicy
from harness.models import get_model, is_user_model, model_names
from harness.models.inputs import parse_binding
from harness.optimize.variants import parse_variant

SCENARIOS = ("single-stream",)
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Case:
    """One measurement: model x variant x backend x shape x threads x scenario."""

    model: str
    variant: str
    backend: str
    batch_size: int
    seq_len: int | None
    threads: int
    scenario: str = "single-stream"
    device: str = "cpu"
    options: Mapping[str, Any] = field(default_factory=dict)
    bindings: tuple[str, ...] = ()  # a user model's shape bindings, e.g. ("height=640",)

    @property
    def shape(self) -> str:
        text = f"b{self.batch_size}" + (f"s{self.seq_len}" if self.seq_len else "")
        return "-".join((text, *self.bindings))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Case:
        """The inverse of ``asdict`` after a JSON round trip (lists back to tuples)."""
        return cls(**{**data, "bindings": tuple(data.get("bindings", ()))})

    @property
    def case_id(self) -> str:
        return "/".join(
            (self.model, self.variant, self.backend, self.shape, f"t{self.threads}", self.scenario)
        )


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
    threads: tuple[int, ...] = (0,)
    scenario: str = "single-stream"
    baseline: tuple[str, str] = ("torch-eager", "fp32")
    timing: TimingPolicy = field(default_factory=TimingPolicy)
    timeout_s: float = DEFAULT_TIMEOUT_S
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fidelity_min_ratio: float = DEFAULT_MIN_RATIO
    energy: EnergySettings = field(default_factory=EnergySettings)
    pricing: Pricing = field(default_factory=lambda: Pricing())
    image_sizes: tuple[int, ...] = ()
    dims: tuple[tuple[str, tuple[int, ...]], ...] = ()  # named axis -> sizes swept
    shapes: tuple[str, ...] = ()  # "input=1x3x640x640"

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

    def cases(self, auto_threads: int) -> Iterator[Case]:
        """Expand into cases, checked before anything runs: models without a sequence axis get
        one case per batch size; a user model's unbound dynamic axis is a ConfigError. Models
        that take no shape bindings (the zoo) ignore the binding axes."""
        binding_sets = self.binding_sets()
        takes = {m: get_model(m).accepts_bindings for m in self.models}
        if binding_sets != [()] and not any(takes.values()):
            raise ConfigError(
                f"{self.path}: shape bindings (--shape, --dim, --image-size) apply to ONNX "
                f"files (onnx:PATH); none of {', '.join(self.models)} takes them"
            )
        devices = {b: backend_class(b).capabilities.devices[0] for b in self.backends}
        for model in self.models:
            seqs: tuple[int | None, ...] = (
                self.seq_lens if get_model(model).uses_sequence else (None,)
            )
            shapes = [
                (bindings, batch, seq)
                for bindings in (binding_sets if takes[model] else [()])
                for batch in self.batch_sizes
                for seq in seqs
            ]
            if takes[model]:
                for bindings, batch, seq in shapes:
                    _check_shapes(model, bindings, batch, seq)
            for variant in self.variants:
                for backend in self.backends:
                    for threads in self.threads:
                        for bindings, batch, seq in shapes:
                            yield Case(
                                model=model,
                                variant=variant,
                                backend=backend,
                                batch_size=batch,
                                seq_len=seq,
                                threads=threads or auto_threads,
                                scenario=self.scenario,
                                options=self.options.get(backend, {}),
                                bindings=bindings,
                                device=devices[backend],
                            )

    def override(
        self,
        backends: list[str] | None = None,
        variants: list[str] | None = None,
        models: list[str] | None = None,
        prices_file: str | None = None,
        region: str | None = None,
        watts_per_core: float | None = None,
        sweeps: Sweeps | None = None,
    ) -> Suite:
        """The suite with CLI selections replacing its settings (each name validated)."""
        where = "command line"
        if watts_per_core is not None and watts_per_core <= 0:
            raise ConfigError(f"{where}: --watts-per-core must be positive, got {watts_per_core}")
        changed = {k: v for k, v in asdict(sweeps or Sweeps()).items() if v}
        if (
            self.shapes != tuple(changed.get("shapes", self.shapes))
            and "batch_sizes" not in changed
        ):
            # --shape x=8x3x64x64 with no --batch: the shape's first size is the batch
            first = parse_binding(changed["shapes"][0], where)[1]
            changed["batch_sizes"] = (first[0],)
        return replace(
            self,
            pricing=replace(
                self.pricing,
                prices_file=prices_file or self.pricing.prices_file,
                region=region or self.pricing.region,
            ),
            energy=replace(
                self.energy, watts_per_core=watts_per_core or self.energy.watts_per_core
            ),
            backends=tuple(_choice(where, "--backend", b, backend_names()) for b in backends)
            if backends
            else self.backends,
            variants=tuple(_variant(where, "--variant", v) for v in variants)
            if variants
            else self.variants,
            models=tuple(_model(where, "--model", m) for m in models) if models else self.models,
            **changed,
        )


@dataclass(frozen=True)
class Sweeps:
    """Sweep axes given on the command line; empty ones keep the suite's."""

    batch_sizes: tuple[int, ...] = ()
    seq_lens: tuple[int, ...] = ()
    threads: tuple[int, ...] = ()
    image_sizes: tuple[int, ...] = ()
    dims: tuple[tuple[str, tuple[int, ...]], ...] = ()
    shapes: tuple[str, ...] = ()


def _check_shapes(model: str, bindings: tuple[str, ...], batch: int, seq: int | None) -> None:
    """ConfigError for an unbound or unknown axis; a static batch that contradicts ``batch``
    is left for the case to report as skipped."""
    with contextlib.suppress(VariantNotApplicable):
        get_model(model, bindings).shapes(batch, seq)


def _choice(where: str, key: str, value: Any, allowed: list[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{where}: {key}: unknown value {value!r}; allowed: {', '.join(allowed)}")
    return value


def _one_of(allowed: Callable[[], list[str]]) -> Callable[[str, str, Any], str]:
    return lambda where, key, value: _choice(where, key, value, allowed())


def _names(
    where: str, key: str, value: Any, item: Callable[[str, str, Any], str]
) -> tuple[str, ...]:
    """A non-empty list of names, each checked by ``item``."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty list of strings, got {value!r}")
    return tuple(item(where, key, v) for v in value)


def _model(where: str, key: str, value: Any, base: Path | None = None) -> str:
    """A zoo model name, or a model on disk (onnx:, hf:, torch:) that exists and loads; paths
    in a suite file (files, directories, a factory's .py) are relative to the suite file."""
    if not isinstance(value, str) or not is_user_model(value):
        return _choice(where, key, value, model_names())
    kind, _, rest = value.partition(":")
    module, colon, factory = rest.rpartition(":")
    if base is not None and kind == "torch" and module.endswith(".py"):
        value = f"torch:{_relative(base, module)}{colon}{factory}"
    if base is not None and kind in ("onnx", "hf"):
        path, *options = rest.split("#")
        value = "#".join(
            [f"{kind}:{_relative(base, path)}", *(_option_path(base, o) for o in options)]
        )
    try:
        get_model(value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {key}: {exc}") from None
    return value


def _relative(base: Path, path: str) -> str:
    return path if Path(path).is_absolute() else str(base / path)


def _option_path(base: Path, option: str) -> str:
    key, sep, path = option.partition("=")
    return f"{key}={_relative(base, path)}" if sep else option


def _variant(where: str, key: str, value: Any) -> str:
    try:
        return parse_variant(value).name
    except ConfigError as exc:
        raise ConfigError(f"{where}: {key}: {exc}") from None


def _positive_ints(where: str, key: str, value: Any) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ConfigError(
            f"{where}: {key} must be a non-empty list of positive integers, got {value!r}"
        )
    return tuple(value)


def _threads(where: str, key: str, value: Any) -> tuple[int, ...]:
    if value == "auto":
        return (0,)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
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
    return _choice(where, key, backend, backend_names()), _variant(where, key, variant)


_TIMING_FIELDS = {f.name: f.type for f in fields(TimingPolicy)}


def _positive_int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def _measure(where: str, table: Any) -> tuple[TimingPolicy, float]:
    parsers: dict[str, _Parser] = {
        name: _positive_int if kind == "int" else _positive_number
        for name, kind in _TIMING_FIELDS.items()
    }
    values = _table(where, "measure", table, {**parsers, "timeout_s": _positive_number})
    timeout = float(values.pop("timeout_s", DEFAULT_TIMEOUT_S))
    policy = TimingPolicy(**values)
    if not 0 < policy.confidence < 1:
        raise ConfigError(
            f"{where}: measure.confidence must lie in (0, 1), got {policy.confidence}"
        )
    return policy, timeout


def _options(where: str, table: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [options] must be a table of backend tables, got {table!r}")
    result: dict[str, dict[str, Any]] = {}
    for backend, opts in table.items():
        _choice(where, "[options]", backend, backend_names())
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
                _choice(where, f"options.{backend}.{key}", value, list(spec))
            elif isinstance(value, bool) is not (spec is bool) or not isinstance(value, spec):
                raise ConfigError(
                    f"{where}: options.{backend}.{key} must be {spec.__name__}, got {value!r}"
                )
        check = getattr(backend_class(backend), "check_options", None)
        if check is not None:  # values only the backend can judge (e.g. a preset name)
            check(opts, where)
        result[backend] = dict(opts)
    return result


def _ratio(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(f"{where}: {key} must be a number in (0, 1], got {value!r}")
    return float(value)


def _positive_number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: {key} must be a positive number, got {value!r}")
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
        "probe": lambda w, k, v: _choice(w, k, v, list(PROBES)),
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
    "variants": lambda w, k, v: _names(w, k, v, _variant),
    "backends": lambda w, k, v: _names(w, k, v, _one_of(backend_names)),
    "batch_sizes": _positive_ints,
    "seq_lens": _positive_ints,
    "threads": _threads,
    "scenario": lambda w, k, v: _choice(w, k, v, list(SCENARIOS)),
    "baseline": _baseline,
    "fidelity_min_ratio": lambda w, k, v: _ratio(w, k, v),
    "image_sizes": _positive_ints,
    "dims": lambda w, k, v: _dims(w, k, v),
    "shapes": lambda w, k, v: tuple(_binding(w, k, x) for x in _names(w, k, v, _string)),
}
_TABLES = ("measure", "options", "energy", "cost")


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
        values["timing"], values["timeout_s"] = _measure(where, data["measure"])
    if "energy" in data:
        values["energy"] = _energy(where, data["energy"])
    if "cost" in data:
        values["pricing"] = _pricing(where, data["cost"])
    values["options"] = _options(where, data.get("options", {}))
    values.setdefault("name", Path(where).stem)
    return Suite(path=where, **values)


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
