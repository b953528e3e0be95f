"""The results store: an embedded DuckDB file with a versioned schema.

Tables: ``schema_info`` (one row: the schema version), ``runs`` (one row per run, with the
hardware fingerprint and the suite's speedup baseline), ``cases`` (one row per case, columns =
``CaseResult`` fields) and ``samples`` (raw latencies, one row per sample). The DDL of each
version and the migrations live in ``harness.store_schema``.

Opening a store for writing migrates an older one in place (one transaction per step). Opening
an older store read-only cannot change the file: the store is copied into a temporary directory
and the copy is migrated and read (removed on ``close``); this costs one copy of the file, until
the next write migrates the original. A store of a newer version is refused with one line.

Damage is found when the store is opened, before any suite runs: a file DuckDB cannot read, a
DuckDB file of another program (tables but no ``schema_info``), a ``schema_info`` that does not
hold exactly one version in 1..SCHEMA_VERSION, or a missing table is a one-line ``StoreError``
naming the file and what is wrong.

A writable store does not hold DuckDB's file lock for a whole run: the runner calls
:meth:`Store.release` after each write (one transaction per case), which closes the file until
the next use opens it again, so ``show``, ``export`` and ``report`` can read while a run goes on
(reopening costs DuckDB's checkpoint, tens of milliseconds per case). Opening waits for
another process's lock for at most ``$INFRABENCH_STORE_LOCK_S`` seconds (default 30), then
says the store is busy. DuckDB's extension auto-install and auto-load are off: opening a file
never reaches the network.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from harness.errors import ConfigError, StoreError
from harness.result import COLUMNS, CaseResult
from harness.store_schema import FLEET_CLASS_SQL, MIGRATIONS, SCHEMA_VERSION, SPEEDUP_KEY, create

__all__ = ["DEFAULT_STORE", "LOCK_ENV", "SCHEMA_VERSION", "STORE_ENV", "Store", "store_path"]

STORE_ENV = "INFRABENCH_STORE"
LOCK_ENV = "INFRABENCH_STORE_LOCK_S"
DEFAULT_LOCK_S = 30.0
# No network, ever: a file that looks like another format must not make DuckDB fetch an
# extension to read it (documented DuckDB settings).
_CONNECT_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}
_LOCKED = "Conflicting lock is held"  # DuckDB's message when another process has the file
_TABLES = ("schema_info", "runs", "cases", "samples")
DEFAULT_STORE = Path("results") / "infrabench.duckdb"

_RUN_COLUMNS = (
    "run_id", "suite", "suite_path", "started_at", "finished_at", "infrabench_version", "git_sha",
    "fingerprint_sha256", "cpu_model", "isa_flags", "physical_cores", "logical_cpus",
    "memory_gb", "os", "python", "versions", "fingerprint", "baseline_backend",
    "baseline_variant",
)  # fmt: skip
# Written by no one since v2 (computed on read); its stored value only serves v1 runs.
_STORED_SPEEDUP = "speedup_vs_baseline"


def store_path(option: str | None = None) -> Path:
    """The option, else ``$INFRABENCH_STORE``, else ``results/infrabench.duckdb``."""
    return Path(option or os.environ.get(STORE_ENV) or DEFAULT_STORE)


def lock_wait_s() -> float:
    """How long opening the store waits for another process's lock: ``$INFRABENCH_STORE_LOCK_S``
    (seconds, finite, >= 0), default 30. ConfigError outside that range."""
    text = os.environ.get(LOCK_ENV)
    if text is None:
        return DEFAULT_LOCK_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"${LOCK_ENV}: seconds in [0, inf), finite; got {text!r}")
    return value


_ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def interrupted_query(exc: BaseException) -> bool:
    """An interrupt that reached DuckDB in the middle of a read (it raises its own error:
    ``InterruptException``, or a RuntimeError in some DuckDB builds)."""
    return isinstance(exc, duckdb.InterruptException) or (
        isinstance(exc, RuntimeError) and "interrupted" in str(exc).lower()
    )


def _interrupted(exc: BaseException) -> None:
    """Raise KeyboardInterrupt when DuckDB's error is an interrupt, not a damaged store."""
    if interrupted_query(exc):
        raise KeyboardInterrupt from None


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends, then deliver the first one to its
    own handler: a write commits whole or not at all, and an interrupt is raised after it (not
    inside DuckDB, which would end the COMMIT with ``RuntimeError: Query interrupted``). Signals
    reach only the main thread; elsewhere the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: h for s in _ENDING_SIGNALS if (h := signal.getsignal(s)) is not None}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        signal.raise_signal(caught[0])


class Store:
    """A connection to one store file; use as a context manager.

    Raises ``ConfigError`` for a missing store opened read-only, ``StoreError`` for a file that
    cannot be opened or a store of a newer schema version than this code reads.
    """

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._copy: tempfile.TemporaryDirectory[str] | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        if read_only and not path.exists():
            raise ConfigError(f"{path}: no results store here (run `infrabench run` first)")
        if not read_only:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{path}: cannot open results store: {exc}") from None
        self._con = self._connect(path, read_only)
        try:
            found = self.version()
            self._check_version(found)
            if found is not None:  # every version has the same tables: check before migrating
                self._check_tables()
            if read_only and found is not None and found < SCHEMA_VERSION:
                self._open_migrated_copy()
            elif not read_only:
                self._migrate(found)
        except BaseException:
            self.close()
            raise
        self.release()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The open connection, opened again after :meth:`release`."""
        if self._con is None:
            target = Path(self._copy.name) / self.path.name if self._copy else self.path
            self._con = self._connect(target, self.read_only and self._copy is None)
        return self._con

    def release(self) -> None:
        """Close the file of a writable store (so others can read it); the next use opens it
        again. A read-only store stays open until :meth:`close`."""
        if not self.read_only and self._con is not None:
            self._con.close()
            self._con = None

    def _connect(self, path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + lock_wait_s()
        while True:
            try:
                return duckdb.connect(str(path), read_only=read_only, config=_CONNECT_CONFIG)
            except (duckdb.Error, OSError) as exc:
                busy = _LOCKED in str(exc)
                if busy and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                if busy:
                    raise StoreError(
                        f"{self.path}: results store is busy: another process holds it longer "
                        f"than ${LOCK_ENV} = {lock_wait_s():g} s"
                    ) from None
                raise StoreError(
                    f"{self.path}: cannot open results store (damaged or not a DuckDB file): "
                    f"{_first_line(exc)}"
                ) from None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        if self._copy is not None:
            self._copy.cleanup()
            self._copy = None

    def version(self) -> int | None:
        """The schema version recorded in the open store; ``None`` for an empty database.
        StoreError for a file that is not an infrabench store or whose ``schema_info`` is
        damaged (not exactly one version in 1..SCHEMA_VERSION's range of known versions)."""
        try:
            tables = {r[0] for r in self.con.execute("SHOW TABLES").fetchall()}
            if "schema_info" not in tables:
                if tables:
                    raise StoreError(
                        f"{self.path}: not an infrabench results store: a DuckDB file with "
                        f"tables {', '.join(sorted(tables))} but no schema_info; use another "
                        "--store"
                    )
                return None
            rows = self.con.execute("SELECT version FROM schema_info").fetchall()
        except duckdb.Error as exc:
            _interrupted(exc)
            raise StoreError(f"{self.path}: damaged results store: {_first_line(exc)}") from None
        values = [r[0] for r in rows]
        if len(values) != 1 or not isinstance(values[0], int) or values[0] < 1:
            raise StoreError(
                f"{self.path}: damaged results store: schema_info must hold one version "
                f"(an integer 1..{SCHEMA_VERSION}), found {values!r}"
            )
        return values[0]

    def _check_tables(self) -> None:
        try:
            tables = {r[0] for r in self.con.execute("SHOW TABLES").fetchall()}
            missing = [t for t in _TABLES if t not in tables]
            if not missing:
                for table in _TABLES:  # reads every table's first block: truncation shows
                    self.con.execute(f"SELECT count(*) FROM {table}").fetchone()
        except duckdb.Error as exc:
            _interrupted(exc)
            raise StoreError(f"{self.path}: damaged results store: {_first_line(exc)}") from None
        if missing:
            raise StoreError(
                f"{self.path}: damaged results store: table(s) {', '.join(missing)} missing"
            )

    def _check_version(self, found: int | None) -> None:
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store has schema version {found}; this infrabench reads up to "
                f"{SCHEMA_VERSION}: upgrade infrabench"
            )

    def _migrate(self, found: int | None) -> None:
        """Create a fresh store at the current version, or upgrade an older one step by step;
        each step and its version bump commit together or not at all."""
        if found is None:
            create(self.con, SCHEMA_VERSION)
            return
        while found < SCHEMA_VERSION:
            try:
                with interrupts_deferred():  # a step is short: it lands whole, then the signal
                    self.con.execute("BEGIN TRANSACTION")
                    MIGRATIONS[found](self.con)
                    self.con.execute("UPDATE schema_info SET version = ?", [found + 1])
                    self.con.execute("COMMIT")
            except duckdb.Error as exc:
                self.con.execute("ROLLBACK")
                raise StoreError(
                    f"{self.path}: cannot migrate the store from schema version {found} to "
                    f"{found + 1}: {_first_line(exc)}"
                ) from None
            found += 1

    def _open_migrated_copy(self) -> None:
        """Read-only and older: read a migrated copy, leaving the file as it is."""
        found = self.version()
        self.close()
        self._copy = tempfile.TemporaryDirectory(prefix="infrabench-store-")
        copy = Path(self._copy.name) / self.path.name
        shutil.copyfile(self.path, copy)
        wal = self.path.with_name(self.path.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
        self._migrate(found)

    # -- writing ------------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        suite: str,
        suite_path: str,
        fp: dict[str, Any],
        baseline: tuple[str, str] | None = None,
    ) -> None:
        """Record a run, the fingerprint of the machine it runs on and the suite's speedup
        baseline (backend, variant); ``None``: the run has none and reports no speedups."""
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
            "baseline_backend": baseline[0] if baseline else None,
            "baseline_variant": baseline[1] if baseline else None,
        }
        marks = ", ".join("?" for _ in _RUN_COLUMNS)
        self._write(
                self.con, f"run {run_id}",
                [(f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({marks})",
                  [row[c] for c in _RUN_COLUMNS])],
            )  # fmt: skip

    def finish_run(self, run_id: str) -> None:
        self._write(
                self.con, f"the end of run {run_id}",
                [("UPDATE runs SET finished_at = ? WHERE run_id = ?",
                  [datetime.now(UTC).replace(tzinfo=None), run_id])],
            )  # fmt: skip

    def _write(self, con: duckdb.DuckDBPyConnection, what: str, steps: list[Any]) -> None:
        """Run ``steps`` (sql, params) in one transaction. A failure (a full disk, a damaged
        file) is a StoreError naming ``what`` was not stored and DuckDB's own reason, even
        when the ROLLBACK fails too (the transaction is then rolled back by closing). Inside
        an open :meth:`transaction` the steps join it: it commits or rolls back as a whole."""
        if self._in_transaction:
            for sql, params in steps:
                con.execute(sql, params)
            return
        try:
            with interrupts_deferred():  # an interrupt lands after the row, never inside it
                con.execute("BEGIN TRANSACTION")
                for sql, params in steps:
                    con.execute(sql, params)
                con.execute("COMMIT")
        except duckdb.Error as exc:
            _interrupted(exc)
            # the connection is closed below; nothing of this write was committed
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            self.close()
            raise StoreError(f"{self.path}: {what} NOT stored: {_first_line(exc)}") from None

    _in_transaction = False

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything stored inside (a run and its cases: an import) is stored together or not
        at all; ``add_case`` joins it instead of committing on its own."""
        self.con.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            self._in_transaction = False
            raise
        try:
            with interrupts_deferred():  # an interrupt lands after the COMMIT, never inside
                self.con.execute("COMMIT")
        finally:
            self._in_transaction = False

    def add_case(self, result: CaseResult, samples_ms: list[float]) -> None:
        """Store one case's row and its raw samples (ms) in one transaction (or in the open
        :meth:`transaction`). The row's ``speedup_vs_baseline`` is not stored: ``cases``
        computes it."""
        data = {**result.to_dict(), _STORED_SPEEDUP: None}  # computed on read, never stored
        marks = ", ".join("?" for _ in COLUMNS)
        steps: list[Any] = [
            (f"INSERT INTO cases ({', '.join(COLUMNS)}) VALUES ({marks})",
             [data[c] for c in COLUMNS])
        ]  # fmt: skip
        if samples_ms:
            steps.append((
                "INSERT INTO samples SELECT ?, ?, g.i - 1, ?[g.i] "
                "FROM (SELECT unnest(range(1, ? + 1)) AS i) g",
                [result.run_id, result.case_id, samples_ms, len(samples_ms)],
            ))  # fmt: skip
        p50 = f", p50 {result.latency_ms_p50:.4g} ms" if result.latency_ms_p50 is not None else ""
        what = f"case {result.case_id} ({result.status}{p50}, {len(samples_ms)} samples)"
        try:
            con = self.con  # reopened after release: another process may hold the lock
        except StoreError as exc:
            raise StoreError(f"{exc}; {what} NOT stored") from None
        self._write(con, what, steps)

    # -- reading ------------------------------------------------------------------------------

    def resolve_run(self, ref: str) -> str:
        """``latest``, a run id, or a unique prefix of one -> the run id."""
        if ref == "latest":
            found = self._fetch(
                "SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1", []
            )
            row = found[0] if found else None
            if row is None:
                raise ConfigError(f"{self.path}: the store holds no runs yet")
            return str(row[0])
        rows = self._fetch(
            "SELECT run_id FROM runs WHERE starts_with(run_id, ?) ORDER BY run_id", [ref]
        )
        if len(rows) != 1:
            known = [
                r[0]
                for r in self._fetch("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 5", [])
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
        """The run's rows, with ``speedup_vs_baseline`` = baseline p50 / case p50 for each ok
        row whose model, shape, threads, scenario and fleet class match exactly one ok row of
        the run's baseline (backend, variant); null otherwise. A run without a recorded
        baseline (a v1 run whose baseline could not be derived) reads the value its writer
        stored."""
        run = self._dicts(
            "SELECT baseline_backend, baseline_variant FROM runs WHERE run_id = ?", [run_id]
        )
        baseline = (run[0]["baseline_backend"], run[0]["baseline_variant"]) if run else None
        others = ", ".join(f"c.{c}" for c in COLUMNS if c != _STORED_SPEEDUP)
        order = "model, variant, backend, threads, batch_size, seq_len, shape"
        if baseline is None or baseline[0] is None:
            rows = self._dicts(
                f"SELECT {', '.join(COLUMNS)} FROM cases WHERE run_id = ? ORDER BY {order}",
                [run_id],
            )
            return [CaseResult.from_dict(r) for r in rows]
        key = ", ".join(SPEEDUP_KEY) + f", {FLEET_CLASS_SQL.format(table='')} AS fleet_class"
        match = " AND ".join(f"c.{k} IS NOT DISTINCT FROM b.{k}" for k in SPEEDUP_KEY)
        match += f" AND {FLEET_CLASS_SQL.format(table='c.')} = b.fleet_class"
        rows = self._dicts(
            f"""SELECT {others},
                   CASE WHEN c.status = 'ok' THEN b.p50 / NULLIF(c.latency_ms_p50, 0) END
                       AS {_STORED_SPEEDUP}
                FROM cases c LEFT JOIN (
                    SELECT {key}, CASE WHEN count(*) = 1 THEN any_value(latency_ms_p50) END
                        AS p50
                    FROM cases WHERE run_id = ? AND backend = ? AND variant = ?
                        AND status = 'ok' AND latency_ms_p50 IS NOT NULL
                    GROUP BY ALL) b ON {match}
                WHERE c.run_id = ? ORDER BY {", ".join(f"c.{c}" for c in order.split(", "))}""",
            [run_id, *baseline, run_id],
        )
        return [CaseResult.from_dict(r) for r in rows]

    def samples(self, run_id: str, case_id: str) -> np.ndarray:
        rows = self._fetch(
            "SELECT latency_ms FROM samples WHERE run_id = ? AND case_id = ? ORDER BY idx",
            [run_id, case_id],
        )
        return np.array([r[0] for r in rows], dtype=np.float64)

    def _dicts(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        try:
            return self._read(sql, params)
        except duckdb.Error as exc:
            _interrupted(exc)
            raise StoreError(f"{self.path}: damaged results store: {_first_line(exc)}") from None

    def _fetch(self, sql: str, params: list[Any]) -> list[Any]:
        """Rows of ``sql``; StoreError naming the file when DuckDB cannot read them."""
        try:
            return self.con.execute(sql, params).fetchall()
        except duckdb.Error as exc:
            _interrupted(exc)
            raise StoreError(f"{self.path}: damaged results store: {_first_line(exc)}") from None

    def _read(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        cursor = self.con.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
