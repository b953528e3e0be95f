"""The store's schema, written out per version, and the migrations between versions.

Each version's DDL is literal text, frozen once released: it is never generated from
``CaseResult``, so adding a field to the dataclass cannot silently redefine an old version.
A new field needs a new version here (its DDL and a migration from the previous one).

* v1 is exactly what the first release (commit 833ef1e) created; ``tests/data/schema_v1.sql``,
  written by that commit (``tools/make_golden.py``), is compared against it in the tests.
* v2 = v1 plus ``cases.hardware_class`` (the price/hardware class a case ran on, e.g.
  ``cpu-vcpu``, ``fpga-edge``, ``gpu-datacenter``), ``cases.noise`` (noise flags as text, null
  = none) and the suite's speedup baseline in ``runs`` (``baseline_backend``,
  ``baseline_variant``; null = the run recorded none).
* v3 = v2 plus ``cases.node`` (the fleet node a case ran on: its Ray node id, Slurm host or
  Kubernetes pod's node; null = this machine, as every row of a v2 store) and the load-scenario
  columns of ``cases``: ``serving`` (instances, max batch, queue delay as text), ``target_qps``,
  ``achieved_qps``, ``latency_bound_ms``, ``valid``, ``early_stop_p99_ms``, ``goodput_rps``,
  ``error_rate``; null on older rows (measured by the single-stream loop, which has none).

* v3 = v2 plus the decoder columns (null for encoders): ``prompt_len``, ``gen_len``, TTFT and
  TPOT p50/p90/p99 with their intervals (``ttft_ms_*``, ``tpot_ms_*``), ``itl_ms_p99``,
  ``e2e_ms_p50``, ``prefill_tokens_per_s``, ``decode_tokens_per_s``, ``kv_cache_mb`` and cost
  and carbon per million output tokens.

``cases.speedup_vs_baseline`` stays in the table because v1 stores hold values in it. From v2 on,
nothing writes it: the speedup is computed when rows are read, from the run's recorded baseline
(``Store.cases``). It is read back as stored only for a run without a recorded baseline, which
happens for a v1 run whose baseline cannot be derived (see ``derive_baseline``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import duckdb

SCHEMA_VERSION = 3

_V1_RUNS = """CREATE TABLE runs(
    run_id VARCHAR PRIMARY KEY, suite VARCHAR, suite_path VARCHAR, started_at TIMESTAMP,
    finished_at TIMESTAMP, infrabench_version VARCHAR, git_sha VARCHAR,
    fingerprint_sha256 VARCHAR, cpu_model VARCHAR, isa_flags VARCHAR, physical_cores INTEGER,
    logical_cpus INTEGER, memory_gb DOUBLE, os VARCHAR, python VARCHAR, versions VARCHAR,
    fingerprint VARCHAR{extra})"""

_V1_CASES = """CREATE TABLE cases(
    run_id VARCHAR, case_id VARCHAR, model VARCHAR, variant VARCHAR, backend VARCHAR,
    device VARCHAR, "precision" VARCHAR, executed_precision VARCHAR, threads BIGINT,
    batch_size BIGINT, seq_len BIGINT, shape VARCHAR, scenario VARCHAR, status VARCHAR,
    reason VARCHAR, latency_ms_p50 DOUBLE, latency_ms_p90 DOUBLE, latency_ms_p99 DOUBLE,
    latency_ms_p50_ci_low DOUBLE, latency_ms_p50_ci_high DOUBLE, latency_ms_p90_ci_low DOUBLE,
    latency_ms_p90_ci_high DOUBLE, latency_ms_p99_ci_low DOUBLE, latency_ms_p99_ci_high DOUBLE,
    latency_ms_mean DOUBLE, n_samples BIGINT, cv DOUBLE, throughput_per_s DOUBLE, load_s DOUBLE,
    compile_s DOUBLE, first_inference_ms DOUBLE, peak_rss_mb DOUBLE, model_mem_mb DOUBLE,
    device_mem_mb DOUBLE, energy_j_per_inference DOUBLE, energy_source VARCHAR, power_w DOUBLE,
    cost_usd_per_million DOUBLE, cost_usd_per_million_energy DOUBLE,
    cost_usd_per_million_machine DOUBLE, gco2_per_million DOUBLE, fidelity_metric VARCHAR,
    fidelity DOUBLE, fidelity_ratio DOUBLE, fidelity_ok BOOLEAN, artifact_sha256 VARCHAR,
    artifact_mb DOUBLE, params_m DOUBLE, speedup_vs_baseline DOUBLE, warmup_iters BIGINT,
    warmup_s DOUBLE, warmup_steady BOOLEAN, stop_reason VARCHAR, p50_rel_ci_width DOUBLE,
    affinity VARCHAR, versions VARCHAR, details VARCHAR{extra},
    PRIMARY KEY(run_id, case_id))"""

_V3_CASES_EXTRA = """, hardware_class VARCHAR, noise VARCHAR, node VARCHAR, serving VARCHAR,
    target_qps DOUBLE, achieved_qps DOUBLE, latency_bound_ms DOUBLE, valid BOOLEAN,
    early_stop_p99_ms DOUBLE, goodput_rps DOUBLE, error_rate DOUBLE,
    prompt_len BIGINT, gen_len BIGINT, ttft_ms_p50 DOUBLE, ttft_ms_p90 DOUBLE,
    ttft_ms_p99 DOUBLE, ttft_ms_p50_ci_low DOUBLE, ttft_ms_p50_ci_high DOUBLE,
    ttft_ms_p90_ci_low DOUBLE,
    ttft_ms_p90_ci_high DOUBLE, ttft_ms_p99_ci_low DOUBLE, ttft_ms_p99_ci_high DOUBLE,
    tpot_ms_p50 DOUBLE, tpot_ms_p90 DOUBLE, tpot_ms_p99 DOUBLE, tpot_ms_p50_ci_low DOUBLE,
    tpot_ms_p50_ci_high DOUBLE, tpot_ms_p90_ci_low DOUBLE, tpot_ms_p90_ci_high DOUBLE,
    tpot_ms_p99_ci_low DOUBLE, tpot_ms_p99_ci_high DOUBLE, itl_ms_p99 DOUBLE, e2e_ms_p50 DOUBLE,
    prefill_tokens_per_s DOUBLE, decode_tokens_per_s DOUBLE, kv_cache_mb DOUBLE,
    cost_usd_per_million_output_tokens DOUBLE, gco2_per_million_output_tokens DOUBLE"""

_SAMPLES = "CREATE TABLE samples(run_id VARCHAR, case_id VARCHAR, idx INTEGER, latency_ms DOUBLE)"
_SCHEMA_INFO = 'CREATE TABLE schema_info("version" INTEGER NOT NULL)'

# The full DDL of each version: a fresh store is created at SCHEMA_VERSION from these.
DDL: dict[int, tuple[str, ...]] = {
    1: (
        _SCHEMA_INFO,
        _V1_RUNS.format(extra=""),
        _V1_CASES.format(extra=""),
        _SAMPLES,
    ),
    2: (
        _SCHEMA_INFO,
        _V1_RUNS.format(extra=", baseline_backend VARCHAR, baseline_variant VARCHAR"),
        _V1_CASES.format(extra=", hardware_class VARCHAR, noise VARCHAR"),
        _SAMPLES,
    ),
    3: (
        _SCHEMA_INFO,
        _V1_RUNS.format(extra=", baseline_backend VARCHAR, baseline_variant VARCHAR"),
        _V1_CASES.format(extra=_V3_CASES_EXTRA),
        _SAMPLES,
    ),
}

# The columns of ``runs`` and ``cases`` that each version adds (for readers and tests).
ADDED_COLUMNS: dict[int, dict[str, tuple[str, ...]]] = {
    2: {"cases": ("hardware_class", "noise"), "runs": ("baseline_backend", "baseline_variant")},
    3: {
        "cases": (
            "node", "serving", "target_qps", "achieved_qps", "latency_bound_ms", "valid",
            "early_stop_p99_ms", "goodput_rps", "error_rate",
            "prompt_len",
            "gen_len",
            "ttft_ms_p50",
            "ttft_ms_p90",
            "ttft_ms_p99",
            "ttft_ms_p50_ci_low",
            "ttft_ms_p50_ci_high",
            "ttft_ms_p90_ci_low",
            "ttft_ms_p90_ci_high",
            "ttft_ms_p99_ci_low",
            "ttft_ms_p99_ci_high",
            "tpot_ms_p50",
            "tpot_ms_p90",
            "tpot_ms_p99",
            "tpot_ms_p50_ci_low",
            "tpot_ms_p50_ci_high",
            "tpot_ms_p90_ci_low",
            "tpot_ms_p90_ci_high",
            "tpot_ms_p99_ci_low",
            "tpot_ms_p99_ci_high",
            "itl_ms_p99",
            "e2e_ms_p50",
            "prefill_tokens_per_s",
            "decode_tokens_per_s",
            "kv_cache_mb",
            "cost_usd_per_million_output_tokens",
            "gco2_per_million_output_tokens",
        ),
        "runs": (),
    },
}  # fmt: skip
_V3_TYPES = {
    "node": "VARCHAR",
    "serving": "VARCHAR",
    "valid": "BOOLEAN",
    "prompt_len": "BIGINT",
    "gen_len": "BIGINT",
}  # the rest DOUBLE

# Only a case with these keys equal to the baseline's is compared with it (as in v1), and of
# the same fleet hardware class (the case id's "@class" suffix; none before fleets existed).
SPEEDUP_KEY = ("model", "shape", "threads", "scenario")
FLEET_CLASS_RE = r"@([a-z0-9._-]+)$"
FLEET_CLASS_SQL = "regexp_extract({table}case_id, '" + FLEET_CLASS_RE + "', 1)"  # '' if none


def fleet_class(case_id: str) -> str | None:
    """The hardware class a fleet case was placed by (its case id's ``@class``), else None."""
    import re

    found = re.search(FLEET_CLASS_RE, case_id)
    return found.group(1) if found else None


def create(con: duckdb.DuckDBPyConnection, version: int = SCHEMA_VERSION) -> None:
    """Create every table of ``version`` in an empty database and record the version."""
    for statement in DDL[version]:
        con.execute(statement)
    con.execute("INSERT INTO schema_info VALUES (?)", [version])


def derive_baseline(rows: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """The (backend, variant) whose speedups a v1 writer stored in these rows of one run, or
    ``None`` where that cannot be told for certain.

    v1 recorded no baseline, only ``speedup_vs_baseline`` = baseline p50 / case p50 on ok rows.
    A candidate is a (backend, variant) with an ok row whose stored speedup is exactly 1.0; it
    is accepted only if it is the one candidate and recomputing every row's speedup from it
    gives back exactly the stored value (same division, same doubles). Rows are mappings with
    the ``CaseResult`` field names.
    """
    rows = list(rows)
    candidates = {
        (r["backend"], r["variant"])
        for r in rows
        if r["status"] == "ok" and r["speedup_vs_baseline"] == 1.0
    }
    if len(candidates) != 1:
        return None
    (baseline,) = candidates
    return baseline if recompute_speedups(rows, baseline) == [
        r["speedup_vs_baseline"] for r in rows
    ] else None  # fmt: skip


def recompute_speedups(
    rows: list[Mapping[str, Any]], baseline: tuple[str, str]
) -> list[float | None]:
    """Per row: baseline p50 / row p50 for an ok row with a p50 whose ``SPEEDUP_KEY`` matches
    exactly one ok baseline row with a p50; otherwise ``None``. The rule ``Store.cases`` applies
    in SQL, for rows that are already in memory (run files)."""
    base: dict[tuple[Any, ...], list[float]] = {}
    for r in rows:
        is_base = (r["backend"], r["variant"]) == baseline and r["status"] == "ok"
        if is_base and r["latency_ms_p50"] is not None:
            base.setdefault(_speedup_key(r), []).append(r["latency_ms_p50"])
    out: list[float | None] = []
    for r in rows:
        found = base.get(_speedup_key(r), [])
        p50 = r["latency_ms_p50"]
        ok = r["status"] == "ok" and len(found) == 1 and p50
        out.append(found[0] / p50 if ok else None)
    return out


def _speedup_key(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (*(r[k] for k in SPEEDUP_KEY), fleet_class(str(r.get("case_id") or "")))


def legacy_hardware_class(device: str | None) -> str:
    """The hardware class a v1 row was priced at: v1 derived it from the device text
    (``cuda*`` -> gpu-datacenter, ``fpga:<class>`` -> that class, ``fpga*`` -> fpga-card,
    anything else -> cpu-vcpu); v2 rows carry it as a column."""
    device = device or "cpu"
    if device.startswith("cuda"):
        return "gpu-datacenter"
    if device.startswith("fpga:"):
        return device.removeprefix("fpga:")
    return "fpga-card" if device.startswith("fpga") else "cpu-vcpu"


def _v1_to_v2(con: duckdb.DuckDBPyConnection) -> None:
    for table, columns in ADDED_COLUMNS[2].items():
        for column in columns:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {column} VARCHAR")
    devices = [r[0] for r in con.execute("SELECT DISTINCT device FROM cases").fetchall()]
    for device in devices:
        con.execute(
            "UPDATE cases SET hardware_class = ? WHERE device IS NOT DISTINCT FROM ?",
            [legacy_hardware_class(device), device],
        )
    run_ids = [r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()]
    for run_id in run_ids:
        cursor = con.execute(
            "SELECT backend, variant, status, latency_ms_p50, speedup_vs_baseline, "
            f"{', '.join(SPEEDUP_KEY)} FROM cases WHERE run_id = ?",
            [run_id],
        )
        names = [d[0] for d in cursor.description]
        baseline = derive_baseline(dict(zip(names, r, strict=True)) for r in cursor.fetchall())
        if baseline is not None:
            con.execute(
                "UPDATE runs SET baseline_backend = ?, baseline_variant = ? WHERE run_id = ?",
                [*baseline, run_id],
            )


def _v2_to_v3(con: duckdb.DuckDBPyConnection) -> None:
    # every v2 row ran on the machine that wrote the store (node null), through the
    # single-stream loop (no load-scenario figures) and measured no decoder: all null
    for column in ADDED_COLUMNS[3]["cases"]:
        con.execute(f"ALTER TABLE cases ADD COLUMN {column} {_V3_TYPES.get(column, 'DOUBLE')}")


# MIGRATIONS[n] upgrades a store at schema version n to n + 1 (inside one transaction).
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}
