"""The results store: an embedded DuckDB file with a versioned schema.

Tables: ``schema_info`` (one row: the schema version), ``runs`` (one row per run, with the
hardware fingerprint), ``cases`` (one row per case, columns = ``CaseResult`` fields) and
``samples`` (raw latencies, one row per sample). Opening an older store migrates it in place with
the functions in ``MIGRATIONS``; a newer one is refused rather than misread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from harness.errors import ConfigError, StoreError
from harness.result import COLUMNS, CaseResult

SCHEMA_VERSION = 1
STORE_ENV = "INFRABENCH_STORE"
DEFAULT_STORE = Path("results") / "infrabench.duckdb"

# MIGRATIONS[n] upgrades a store at schema version n to n + 1.
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {}

_RUN_COLUMNS = (
    "run_id", "suite", "suite_path", "started_at", "finished_at", "infrabench_version", "git_sha",
    "fingerprint_sha256", "cpu_model", "isa_flags", "physical_cores", "logical_cpus",
    "memory_gb", "os", "python", "versions", "fingerprint",
)  # fmt: skip


def _sql_type(annotation: str) -> str:
    base = annotation.replace(" | None", "").strip()
    return {"int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN"}.get(base, "VARCHAR")


def _create_v1(con: duckdb.DuckDBPyConnection) -> None:
    case_cols = ", ".join(f"{f.name} {_sql_type(str(f.type))}" for f in fields(CaseResult))
    con.execute("CREATE TABLE schema_info (version INTEGER NOT NULL)")
    con.execute(
        """CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY, suite VARCHAR, suite_path VARCHAR,
            started_at TIMESTAMP, finished_at TIMESTAMP, infrabench_version VARCHAR,
            git_sha VARCHAR, fingerprint_sha256 VARCHAR, cpu_model VARCHAR, isa_flags VARCHAR,
            physical_cores INTEGER, logical_cpus INTEGER, memory_gb DOUBLE, os VARCHAR,
            python VARCHAR, versions VARCHAR, fingerprint VARCHAR)"""
    )
    con.execute(f"CREATE TABLE cases ({case_cols}, PRIMARY KEY (run_id, case_id))")
    con.execute(
        "CREATE TABLE samples (run_id VARCHAR, case_id VARCHAR, idx INTEGER, latency_ms DOUBLE)"
    )
    con.execute("INSERT INTO schema_info VALUES (1)")


def store_path(option: str | None = None) -> Path:
    """The option, else ``$INFRABENCH_STORE``, else ``results/infrabench.duckdb``."""
    return Path(option or os.environ.get(STORE_ENV) or DEFAULT_STORE)


class Store:
    """A connection to one store file; use as a context manager."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self._baseline: tuple[str, str] | None = None  # MERGE-TEMP
        if read_only and not path.exists():
            raise ConfigError(f"{path}: no results store here (run `infrabench run` first)")
        try:
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.con = duckdb.connect(str(path), read_only=read_only)
        except (duckdb.Error, OSError) as exc:
            raise StoreError(f"{path}: cannot open results store: {exc}") from None
        if not read_only:
            self._migrate()
        self._check_version()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def version(self) -> int | None:
        tables = {r[0] for r in self.con.execute("SHOW TABLES").fetchall()}
        if "schema_info" not in tables:
            return None
        row = self.con.execute("SELECT version FROM schema_info").fetchone()
        return int(row[0]) if row else None

    def _check_version(self) -> None:
        found = self.version()
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store has schema version {found}; this infrabench reads up to "
                f"{SCHEMA_VERSION}: upgrade infrabench"
            )

    def _migrate(self) -> None:
        found = self.version()
        if found is None:
            _create_v1(self.con)
            found = 1
        while found < SCHEMA_VERSION:
            MIGRATIONS[found](self.con)
            found += 1
            self.con.execute("UPDATE schema_info SET version = ?", [found])

    # -- writing ------------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        suite: str,
        suite_path: str,
        fp: dict[str, Any],
        baseline: tuple[str, str] | None = None,
    ) -> None:
        """Record a run and the fingerprint of the machine it runs on."""
        self._baseline = baseline  # MERGE-TEMP
        row = {
            "run_id": run_id,
            "suite": suite,
            "suite_path": suite_path,
            "started_at": datetime.now(UTC).replace(tzinfo=None),
            "finished_at": None,
            "infrabench_version": fp["versions"].get("infrabench"),
            "git_sha": fp.get("git_sha"),
            "fingerprint_sha256": fp["fingerprint_sha256"],
            "cpu_model": fp["cpu_model"],
            "isa_flags": " ".join(fp["isa_flags"]),
            "physical_cores": fp["physical_cores"],
            "logical_cpus": fp["logical_cpus"],
            "memory_gb": fp["memory_gb"],
            "os": fp["os"],
            "python": fp["python"],
            "versions": json.dumps(fp["versions"], sort_keys=True),
            "fingerprint": json.dumps(fp, sort_keys=True),
        }
        marks = ", ".join("?" for _ in _RUN_COLUMNS)
        self.con.execute(
            f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({marks})",
            [row[c] for c in _RUN_COLUMNS],
        )

    def finish_run(self, run_id: str) -> None:
        self.con.execute(
            "UPDATE runs SET finished_at = ? WHERE run_id = ?",
            [datetime.now(UTC).replace(tzinfo=None), run_id],
        )

    def add_case(self, result: CaseResult, samples_ms: list[float]) -> None:
        """Store one case's row and its raw samples in one transaction."""
        data = result.to_dict()
        marks = ", ".join("?" for _ in COLUMNS)
        self.con.execute("BEGIN TRANSACTION")
        try:
            self.con.execute(
                f"INSERT INTO cases ({', '.join(COLUMNS)}) VALUES ({marks})",
                [data[c] for c in COLUMNS],
            )
            if samples_ms:
                self.con.execute(
                    "INSERT INTO samples SELECT ?, ?, g.i - 1, ?[g.i] "
                    "FROM (SELECT unnest(range(1, ? + 1)) AS i) g",
                    [result.run_id, result.case_id, samples_ms, len(samples_ms)],
                )
            self.con.execute("COMMIT")
            if self._baseline:  # MERGE-TEMP
                self.update_speedups(result.run_id, *self._baseline)
        except duckdb.Error:
            self.con.execute("ROLLBACK")
            raise

    def update_speedups(self, run_id: str, backend: str, variant: str) -> None:
        """speedup_vs_baseline = baseline p50 / case p50, for cases of the same model and shape."""
        self.con.execute(
            """UPDATE cases SET speedup_vs_baseline = b.latency_ms_p50 / cases.latency_ms_p50
               FROM (SELECT model, shape, threads, scenario, latency_ms_p50 FROM cases
                     WHERE run_id = ? AND backend = ? AND variant = ? AND status = 'ok') b
               WHERE cases.run_id = ? AND cases.status = 'ok' AND cases.model = b.model
                 AND cases.shape = b.shape AND cases.threads = b.threads
                 AND cases.scenario = b.scenario""",
            [run_id, backend, variant, run_id],
        )

    # -- reading ------------------------------------------------------------------------------

    def resolve_run(self, ref: str) -> str:
        """``latest``, a run id, or a unique prefix of one -> the run id."""
        if ref == "latest":
            row = self.con.execute(
                "SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1"
            ).fetchone()
            if row is None:
                raise ConfigError(f"{self.path}: the store holds no runs yet")
            return str(row[0])
        rows = self.con.execute(
            "SELECT run_id FROM runs WHERE starts_with(run_id, ?) ORDER BY run_id", [ref]
        ).fetchall()
        if len(rows) != 1:
            known = [
                r[0]
                for r in self.con.execute(
                    "SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 5"
                ).fetchall()
            ]
            what = "no run" if not rows else f"{len(rows)} runs"
            raise ConfigError(
                f"{self.path}: {what} matches {ref!r}; use 'latest' or a run id such as "
                f"{', '.join(known) or '(none yet)'}"
            )
        return str(rows[0][0])

    def runs(self) -> list[dict[str, Any]]:
        return self._dicts("SELECT * FROM runs ORDER BY started_at", [])

    def run(self, run_id: str) -> dict[str, Any]:
        return self._dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])[0]

    def cases(self, run_id: str) -> list[CaseResult]:
        rows = self._dicts(
            f"SELECT {', '.join(COLUMNS)} FROM cases WHERE run_id = ? "
            "ORDER BY model, variant, backend, threads, batch_size, seq_len, shape",
            [run_id],
        )
        return [CaseResult.from_dict(r) for r in rows]

    def samples(self, run_id: str, case_id: str) -> np.ndarray:
        rows = self.con.execute(
            "SELECT latency_ms FROM samples WHERE run_id = ? AND case_id = ? ORDER BY idx",
            [run_id, case_id],
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.float64)

    def _dicts(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        cursor = self.con.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
