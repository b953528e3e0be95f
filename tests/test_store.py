from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness import store as store_module
from harness.environment import fingerprint
from harness.errors import ConfigError, StoreError
from harness.result import COLUMNS, CaseResult
from harness.store import SCHEMA_VERSION, Store


def _row(run_id: str, backend: str, p50: float | None, status: str = "ok") -> CaseResult:
    return CaseResult(
        run_id=run_id, case_id=f"m/fp32/{backend}/b1", model="m", variant="fp32",
        backend=backend, threads=1, batch_size=1, shape="b1", status=status,  # type: ignore[arg-type]
        latency_ms_p50=p50,
    )  # fmt: skip


def test_rows_and_samples_round_trip_with_nulls_kept(store: Store) -> None:
    store.start_run("r1", "quick", "suites/quick.toml", fingerprint())
    samples = np.linspace(1.0, 2.0, 5000).tolist()
    store.add_case(_row("r1", "fake", 1.5), samples)
    store.add_case(_row("r1", "other", None, status="failed"), [])
    store.finish_run("r1")
    rows = store.cases("r1")
    assert [r.backend for r in rows] == ["fake", "other"]
    assert rows[1].latency_ms_p50 is None and rows[1].energy_j_per_inference is None
    assert store.samples("r1", "m/fp32/fake/b1").tolist() == samples
    run = store.run("r1")
    assert run["cpu_model"] and run["finished_at"] is not None
    assert set(rows[0].to_dict()) == set(COLUMNS)


def test_speedup_is_computed_on_read_from_the_runs_baseline(store: Store) -> None:
    store.start_run("r1", "s", "s.toml", fingerprint(), baseline=("torch-eager", "fp32"))
    store.add_case(_row("r1", "torch-eager", 30.0), [])
    written = _row("r1", "onnxruntime", 10.0)
    written.speedup_vs_baseline = 99.0  # a writer's value is not stored: it is derived
    store.add_case(written, [])
    store.add_case(_row("r1", "openvino", 12.0, status="failed"), [])
    other_shape = _row("r1", "tvm", 5.0)
    other_shape.shape, other_shape.case_id = "b8", "m/fp32/tvm/b8"
    store.add_case(other_shape, [])
    speedups = {r.backend: r.speedup_vs_baseline for r in store.cases("r1")}
    assert speedups == {"torch-eager": 1.0, "onnxruntime": 3.0, "openvino": None, "tvm": None}
    stored = store.con.execute("SELECT count(speedup_vs_baseline) FROM cases").fetchone()
    assert stored == (0,)


def test_a_run_without_a_baseline_or_an_ok_baseline_row_has_no_speedups(store: Store) -> None:
    store.start_run("r1", "pytest", "bench.json", fingerprint())
    store.add_case(_row("r1", "onnxruntime", 10.0), [])
    store.start_run("r2", "s", "s.toml", fingerprint(), baseline=("torch-eager", "fp32"))
    store.add_case(_row("r2", "torch-eager", None, status="failed"), [])
    store.add_case(_row("r2", "onnxruntime", 10.0), [])
    assert store.run("r1")["baseline_backend"] is None
    assert [r.speedup_vs_baseline for r in store.cases("r1")] == [None]
    assert [r.speedup_vs_baseline for r in store.cases("r2")] == [None, None]


def test_runs_resolve_by_latest_and_prefix(store: Store) -> None:
    with pytest.raises(ConfigError, match="holds no runs"):
        store.resolve_run("latest")
    store.start_run("20260101-000000-aaaa", "s", "s.toml", fingerprint())
    store.start_run("20260102-000000-bbbb", "s", "s.toml", fingerprint())
    assert store.resolve_run("latest") == "20260102-000000-bbbb"
    assert store.resolve_run("20260101") == "20260101-000000-aaaa"
    with pytest.raises(ConfigError, match="2 runs matches '2026'"):
        store.resolve_run("2026")


def test_schema_version_is_recorded_and_newer_stores_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        assert s.version() == SCHEMA_VERSION
        s.con.execute("UPDATE schema_info SET version = ?", [SCHEMA_VERSION + 1])
    with pytest.raises(StoreError, match="upgrade infrabench"):
        Store(path)


def test_older_stores_are_migrated_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        s.start_run("r1", "s", "s.toml", fingerprint())
    applied = []

    def add_note_column(con: object) -> None:
        applied.append(1)
        con.execute("ALTER TABLE runs ADD COLUMN note VARCHAR")  # type: ignore[attr-defined]

    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(store_module.MIGRATIONS, SCHEMA_VERSION, add_note_column)
    with Store(path) as s:
        assert s.version() == SCHEMA_VERSION + 1
        assert "note" in s.run("r1")
    assert applied == [1]


def test_reading_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no results store here"):
        Store(tmp_path / "none.duckdb", read_only=True)


def test_a_failed_migration_leaves_the_store_at_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.duckdb"
    with Store(path) as s:
        s.start_run("r1", "s", "s.toml", fingerprint())

    def half_done(con: object) -> None:
        con.execute("ALTER TABLE runs ADD COLUMN note VARCHAR")  # type: ignore[attr-defined]
        con.execute("SELECT no_such_column FROM runs")  # type: ignore[attr-defined]

    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(store_module.MIGRATIONS, SCHEMA_VERSION, half_done)
    with pytest.raises(StoreError, match=f"from schema version {SCHEMA_VERSION} to"):
        Store(path)
    monkeypatch.undo()
    with Store(path) as s:
        assert s.version() == SCHEMA_VERSION and "note" not in s.run("r1")


def test_an_import_with_an_incomplete_case_is_refused_before_storing(
    store: Store, tmp_path: Path
) -> None:
    from harness.importer import import_pytest_benchmark

    path = tmp_path / "bench.json"
    path.write_text(json.dumps({
        "machine_info": {"infrabench": fingerprint()},
        "benchmarks": [{"name": "test_x", "extra_info": {"case_id": "c", "model": "m"}}],
    }))  # fmt: skip
    with pytest.raises(ConfigError, match="'test_x' lacks variant, backend in extra_info"):
        import_pytest_benchmark(path, store)
    assert store.runs() == []


def test_an_interrupt_during_a_write_lands_after_the_row_is_committed(tmp_path: Path) -> None:
    """Ctrl-C inside DuckDB's COMMIT would end it with 'Query interrupted' (a traceback, a lost
    row): the write holds the signal and raises it once the row is in."""
    import signal

    from harness.store import interrupts_deferred

    reached: list[str] = []

    def write() -> None:
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            reached.append("after the signal, inside the write")

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever tests ran
    try:
        with pytest.raises(KeyboardInterrupt):
            write()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    assert reached == ["after the signal, inside the write"]
