"""The columns of the human-readable result views (terminal table, markdown, HTML report).

Each column has a ``--columns`` key, a header and a cell function of one result row. The
default terminal view shows ``DEFAULT_COLUMNS`` (about 100 characters for the shipped models);
``WIDE`` is every named column; any result field can be named as well and is shown raw.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.errors import ConfigError
from harness.measure.stats import min_samples_for
from harness.result import COLUMNS, CaseResult

# What the terminal shows when no --columns is given, left to right.
DEFAULT_COLUMNS = (
    "model", "variant", "backend", "shape", "status", "p50", "p99", "throughput", "cost",
    "fidelity", "speedup",
)  # fmt: skip
# Dropped first when the terminal is too narrow; model, variant, backend, status and p50 stay.
DROP_ORDER = ("throughput", "cost", "p99", "speedup", "fidelity", "shape")
KEEP = ("model", "variant", "backend", "status", "p50")
# Decoder rows: TTFT and TPOT side by side (p50 and p99 of each), decode tokens/s and $ per
# million output tokens in place of whole-call latency, items/s and $ per million inferences.
GENERATIVE_COLUMNS = (
    "model", "variant", "backend", "shape", "status", "ttft", "ttft_p99", "tpot", "tpot_p99",
    "decode_tps", "cost_mtok", "fidelity", "speedup",
)  # fmt: skip
GENERATIVE_DROP_ORDER = ("cost_mtok", "speedup", "ttft_p99", "tpot_p99", "decode_tps",
                         "fidelity", "shape")  # fmt: skip
# Encoder and decoder rows in one table: the encoders' view with TTFT and TPOT p50 after p99.
MIXED_COLUMNS = (*DEFAULT_COLUMNS[:7], "ttft", "tpot", *DEFAULT_COLUMNS[7:])
MIXED_DROP_ORDER = ("throughput", "cost", "tpot", "ttft", "p99", "speedup", "fidelity", "shape")
# Rows under load (LoadGen scenarios, llm-server rates): what load each row carried and what it
# achieved, in place of the quiet-loop columns.
LOAD_COLUMNS = (
    "model", "variant", "backend", "scenario", "serving", "status", "target_qps", "achieved_qps",
    "p50", "p99", "goodput", "valid", "errors",
)  # fmt: skip
LOAD_DROP_ORDER = ("p50", "serving", "scenario", "valid", "errors")
LLM_LOAD_COLUMNS = (
    "model", "variant", "backend", "serving", "status", "target_qps", "achieved_qps", "goodput",
    "ttft", "ttft_p99", "tpot", "tpot_p99", "errors",
)  # fmt: skip
LLM_LOAD_DROP_ORDER = ("errors", "ttft_p99", "tpot_p99", "serving")
VIEWS = {DEFAULT_COLUMNS: DROP_ORDER, GENERATIVE_COLUMNS: GENERATIVE_DROP_ORDER,
         MIXED_COLUMNS: MIXED_DROP_ORDER, LOAD_COLUMNS: LOAD_DROP_ORDER,
         LLM_LOAD_COLUMNS: LLM_LOAD_DROP_ORDER}  # fmt: skip


def is_generative(r: CaseResult) -> bool:
    """A decoder's row (its case generated tokens; skipped and failed ones included)."""
    return r.gen_len is not None


def default_view(results: Sequence[CaseResult]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The columns shown when none are asked for, and the order they are dropped in when the
    terminal is too narrow: the load view when every row ran under load (the llm-server one
    when every row is an llm-server rate), else the decoders' view when every row is a
    decoder's, the encoders' when none is, both latencies when the rows mix."""
    keys: tuple[str, ...]
    if results and all(r.serving is not None for r in results):  # every row under load
        llm = all(r.scenario == "llm-server" for r in results)
        keys = LLM_LOAD_COLUMNS if llm else LOAD_COLUMNS
        return keys, VIEWS[keys]
    decoders = sum(is_generative(r) for r in results)
    keys = (DEFAULT_COLUMNS if not decoders else
            GENERATIVE_COLUMNS if decoders == len(results) else MIXED_COLUMNS)  # fmt: skip
    return keys, VIEWS[keys]


def num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _sig(value: float | None, digits: int = 4) -> str:
    """``digits`` significant digits, trailing zeros kept, no exponent from 0.001 up (ms,
    items/s, $): 12.35, 0.2800, 1235."""
    if value is None:
        return "-"
    whole = len(str(int(abs(value)))) if abs(value) >= 1 else 0
    if whole >= digits:
        return f"{value:.0f}"
    if whole:
        return f"{value:.{digits - whole}f}"
    return f"{value:#.{digits}g}"


def noise_flags(r: CaseResult) -> list[str]:
    """The row's noise flags. The ``noise`` field (text, flags joined by "; ") is read with
    getattr so rows of stores written before the field existed read as not flagged."""
    value = r.noise
    if not value:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    return [str(part) for part in value]


def _model(r: CaseResult) -> str:
    """A zoo name as is; a model on disk as its source and file or directory name
    (``onnx:/data/yolo/model.onnx#inputs=x.npz`` -> ``onnx:model.onnx``): the full reference is
    in the JSON and CSV views."""
    source, sep, rest = r.model.partition(":")
    if not sep or "/" not in rest:
        return r.model
    path = rest.split("#", 1)[0].rstrip("/")
    return f"{source}:{path.rsplit('/', 1)[-1]}"


def _status(r: CaseResult) -> str:
    return "ok noisy" if r.status == "ok" and noise_flags(r) else r.status


def _p50(r: CaseResult) -> str:
    """Median and the larger side of its interval (at the row's confidence), relative:
    ``12.35 ±0.8%``."""
    if r.latency_ms_p50 is None:
        return "-"
    p50, low, high = r.latency_ms_p50, r.latency_ms_p50_ci_low, r.latency_ms_p50_ci_high
    if low is None or high is None or p50 <= 0:
        return _sig(p50)
    return f"{_sig(p50)} ±{max(p50 - low, high - p50) / p50:.1%}"


def _p50_interval(r: CaseResult) -> str:
    if r.latency_ms_p50 is None:
        return "-"
    return f"[{_sig(r.latency_ms_p50_ci_low)}, {_sig(r.latency_ms_p50_ci_high)}]"


DEFAULT_CONFIDENCE = 0.95  # rows stored before the confidence was recorded used this


def row_confidence(r: CaseResult) -> float:
    """The confidence level of the row's intervals (``details["confidence"]``, recorded from
    the suite's ``[measure] confidence``; 0.95 for rows that predate it)."""
    try:
        value = json.loads(r.details or "{}").get("confidence", DEFAULT_CONFIDENCE)
        return float(value) if 0 < float(value) < 1 else DEFAULT_CONFIDENCE
    except (ValueError, TypeError, AttributeError):
        return DEFAULT_CONFIDENCE


def common_confidence(results: Sequence[CaseResult]) -> float | None:
    """The one confidence level of every row, or None when they differ."""
    levels = {row_confidence(r) for r in results} or {DEFAULT_CONFIDENCE}
    return levels.pop() if len(levels) == 1 else None


def _tail(attr: str) -> Callable[[CaseResult], str]:
    """A p99 cell: the value, or ``n<N`` for an ok row with too few samples for one."""

    def cell(r: CaseResult) -> str:
        if r.status != "ok":
            return "-"
        value = getattr(r, attr)
        if value is None:
            return f"n<{min_samples_for(0.99, row_confidence(r))}"
        return _sig(value)

    return cell


_p99 = _tail("latency_ms_p99")


_SOURCE_TAGS = {"measured": "meas", "estimated": "est", "simulated": "sim"}


def _valid(r: CaseResult) -> str:
    return "-" if r.valid is None else "VALID" if r.valid else "INVALID"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.3g}%"


def _fidelity(r: CaseResult) -> str:
    if r.fidelity_ratio is None:
        try:
            said = json.loads(r.details or "{}").get("fidelity", "")
        except (ValueError, AttributeError):
            said = ""
        # an output the reference cannot score (NaN, not reproducible): say so, not "-"
        return "not scored" if r.status == "ok" and "reference" in str(said) else "-"
    return f"{r.fidelity_ratio:.1%}" + (" FAIL" if r.fidelity_ok is False else "")


def _fidelity_value(r: CaseResult) -> str:
    return "-" if r.fidelity is None else f"{r.fidelity_metric} {r.fidelity:.4f}"


@dataclass(frozen=True)
class Column:
    """One column of the human-readable views. ``elide`` is the width a text column may be
    ellipsized to before columns are dropped (``None``: never elided); ``middle`` elides inside
    the text (a model path's file name is its informative end); ``right`` aligns numbers."""

    key: str
    header: str
    cell: Callable[[CaseResult], str]
    right: bool = False
    elide: int | None = None
    middle: bool = False


def _energy_columns(results: Sequence[CaseResult]) -> list[Column]:
    """Energy-derived columns carry their source: in the header when every row has the same
    source, else on each cell. Never a bare number."""
    sources = {r.energy_source for r in results if r.energy_source}
    one = _SOURCE_TAGS.get(next(iter(sources)), "?") if len(sources) == 1 else None

    def sourced(attr: str) -> Callable[[CaseResult], str]:
        def cell(r: CaseResult) -> str:
            value = getattr(r, attr)
            if value is None:
                return "-"
            text = _sig(value, 3)
            return text if one else f"{text} {_SOURCE_TAGS.get(r.energy_source or '', '?')}"

        return cell

    tag = f" {one}" if one else ""
    return [
        Column("energy", f"J/inf{tag}", sourced("energy_j_per_inference"), right=True),
        Column("power", f"W{tag}", sourced("power_w"), right=True),
        Column("cost", f"$/M{tag}", sourced("cost_usd_per_million"), right=True),
        Column("co2", f"gCO2/M{tag}", sourced("gco2_per_million"), right=True),
    ]


def columns(results: Sequence[CaseResult]) -> dict[str, Column]:
    """Every named display column, in ``--wide`` order, keyed by its ``--columns`` name."""
    named = [
        Column("model", "model", _model, elide=15, middle=True),
        Column("variant", "variant", lambda r: r.variant, elide=12),
        Column("backend", "backend", lambda r: r.backend, elide=11),
        Column("shape", "shape", lambda r: r.shape or "-", elide=8, middle=True),
        Column("precision", "prec", lambda r: r.executed_precision or "-"),
        Column("threads", "thr", lambda r: "-" if r.threads is None else str(r.threads), True),
        Column(
            "batch", "batch", lambda r: "-" if r.batch_size is None else str(r.batch_size), True
        ),
        Column("seq", "seq", lambda r: "-" if r.seq_len is None else str(r.seq_len), True),
        Column("status", "status", _status),
        Column("scenario", "scenario", lambda r: r.scenario or "-", elide=13),
        Column("serving", "serving", lambda r: r.serving or "-", elide=14),
        Column("target_qps", "target/s", lambda r: _sig(r.target_qps), right=True),
        Column("achieved_qps", "achieved/s", lambda r: _sig(r.achieved_qps), right=True),
        Column("goodput", "goodput/s", lambda r: _sig(r.goodput_rps), right=True),
        Column("valid", "valid", _valid),
        Column("errors", "errors", lambda r: _percent(r.error_rate), right=True),
        Column("p50", "p50 ms ±CI", _p50, right=True),
        Column("p50_ci", "p50 95% CI", _p50_interval, right=True),
        Column("p90", "p90 ms", lambda r: _sig(r.latency_ms_p90), right=True),
        Column("p99", "p99 ms", _p99, right=True),
        Column("n", "n", lambda r: "-" if r.n_samples is None else str(r.n_samples), True),
        Column("cv", "cv", lambda r: num(r.cv, 3), right=True),
        Column("throughput", "items/s", lambda r: _sig(r.throughput_per_s), right=True),
        Column("ttft", "TTFT p50 ms", lambda r: _sig(r.ttft_ms_p50), right=True),
        Column("ttft_p99", "TTFT p99 ms", _tail("ttft_ms_p99"), right=True),
        Column("tpot", "TPOT p50 ms", lambda r: _sig(r.tpot_ms_p50), right=True),
        Column("tpot_p99", "TPOT p99 ms", _tail("tpot_ms_p99"), right=True),
        Column("decode_tps", "decode tok/s", lambda r: _sig(r.decode_tokens_per_s), right=True),
        Column("kv_mb", "KV MB", lambda r: num(r.kv_cache_mb), right=True),
        Column(
            "cost_mtok",
            "$/M out tok",
            lambda r: _sig(r.cost_usd_per_million_output_tokens),
            right=True,
        ),
        Column("load_s", "load s", lambda r: num(r.load_s), right=True),
        Column("first_ms", "1st ms", lambda r: _sig(r.first_inference_ms), right=True),
        Column("peak_mb", "peak MB", lambda r: num(r.peak_rss_mb, 0), right=True),
        Column("model_mb", "model MB", lambda r: num(r.model_mem_mb, 0), right=True),
        *_energy_columns(results),
        Column("fidelity", "fidelity", _fidelity, right=True),
        Column("fidelity_value", "fidelity value", _fidelity_value),
        Column(
            "speedup",
            "speedup",
            lambda r: "-" if r.speedup_vs_baseline is None else f"{r.speedup_vs_baseline:.2f}x",
            right=True,
        ),
        Column("noise", "noise", lambda r: "; ".join(noise_flags(r)) or "-", elide=20),
        Column("reason", "reason", lambda r: r.reason or "", elide=20),
    ]
    return {c.key: c for c in named}


def _field_column(name: str) -> Column:
    """A raw result field (``--columns cv,latency_ms_p90``) shown under its own name."""

    def cell(r: CaseResult) -> str:
        value = getattr(r, name)
        if value is None:
            return "-"
        return _sig(value) if isinstance(value, float) else str(value)

    numeric = name.startswith(("latency_", "cost_", "gco2_")) or name.endswith(("_s", "_mb"))
    return Column(name, name, cell, right=numeric, elide=12)


def parse_columns(text: str) -> tuple[str, ...]:
    """``"model,p50,cv"`` -> the keys; a display column name or any result field.

    Raises ConfigError naming the unknown names and the allowed ones.
    """
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    known = columns([])
    unknown = [k for k in keys if k not in known and k not in COLUMNS]
    if unknown or not keys:
        raise ConfigError(
            f"command line: --columns: unknown column {', '.join(map(repr, unknown)) or '(none)'}; "
            f"allowed: {', '.join(known)} or any result field (see `show --format json`)"
        )
    return keys


def resolve(results: Sequence[CaseResult], keys: Sequence[str]) -> list[Column]:
    named = columns(results)
    return [named[k] if k in named else _field_column(k) for k in keys]


WIDE = tuple(columns([]))


def display_rows(
    results: Sequence[CaseResult], keys: Sequence[str] = WIDE
) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the human-readable view for the column ``keys``."""
    chosen = resolve(results, keys)
    level = common_confidence(results)
    label = f"{level:.0%}" if level is not None else "mixed-level"
    headers = [c.header.replace("95%", label) for c in chosen]  # the suite's confidence
    return headers, [[c.cell(r) for c in chosen] for r in results]


def notes(results: Sequence[CaseResult]) -> list[str]:
    """Caveats printed under a table: what marks and energy tags mean, mixed sources, noise."""
    sources = sorted({r.energy_source for r in results if r.energy_source})
    lines = []
    if any(r.fidelity_ok is False for r in results):
        lines.append(
            "FAIL = the variant keeps less than the suite's share (default 99%) of the fp32 "
            "metric: faster, but not an acceptable substitute"
        )
    tails = ("latency_ms_p99", "ttft_ms_p99", "tpot_ms_p99")
    short = [r for r in results if r.status == "ok" and any(
        getattr(r, t) is None for t in tails[: 3 if is_generative(r) else 1])]  # fmt: skip
    for level in sorted({row_confidence(r) for r in short}):
        lines.append(
            f"p99 n<{min_samples_for(0.99, level)} = too few samples for a p99 with a "
            f"{level:.0%} interval; no number is invented"
        )
    if "estimated" in sources:
        lines.append("est = estimated energy (worker CPU-seconds x watts per core), not measured")
    if "simulated" in sources:
        lines.append("sim = simulated energy from an accelerator model, not measured")
    if len(sources) > 1:
        lines.append(
            f"energy sources differ ({', '.join(sources)}): energy, $ and gCO2 figures of "
            "different sources are not comparable and are not ranked against each other"
        )
    flags: dict[str, int] = {}
    for r in results:
        for flag in noise_flags(r):
            flags[flag] = flags.get(flag, 0) + 1
    if flags:
        said = "; ".join(f"{f} ({n} row{'s' if n > 1 else ''})" for f, n in flags.items())
        lines.append(f"noisy = measured while the machine or the samples were unstable: {said}")
    return lines + unmeasured_notes(results)


def unmeasured_notes(results: Sequence[CaseResult], shown: int = 3) -> list[str]:
    """One line per distinct (status, reason) of the rows that were not measured: the default
    table has no reason column, and a skip without its reason reads like a gap."""
    groups: dict[tuple[str, str], list[str]] = {}
    for r in results:
        if r.status != "ok":
            cases = groups.setdefault((r.status, r.reason or "no reason recorded"), [])
            shape = f" {r.shape}" if r.shape else ""
            cases.append(f"{_model(r)}/{r.variant}/{r.backend}{shape}")
    lines = []
    for (status, reason), cases in groups.items():
        named = ", ".join(cases[:shown]) + (f" and {len(cases) - shown} more" if len(cases) >
                                             shown else "")  # fmt: skip
        lines.append(f"{status}: {reason} ({named})")
    return lines
