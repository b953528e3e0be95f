"""Files written by released infrabench open, show, compare and migrate with this code.

The golden files under tests/data/ were written by commit 833ef1e (and, for the v1 run file,
ae6c33f) through tools/make_golden.py; see its docstring for what each run holds. The tests
never write into tests/data/: a store is unpacked into tmp_path first.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from harness import runfile
from harness.cli import main
from harness.errors import ConfigError, StoreError
from harness.result import COLUMNS
from harness.store import SCHEMA_VERSION, Store
from harness.store_schema import ADDED_COLUMNS, DDL, MIGRATIONS, create, derive_baseline

DATA = Path(__file__).parent / "data"
V1_CASE_COLUMNS = [
    c for c in COLUMNS if not any(c in added["cases"] for added in ADDED_COLUMNS.values())
]


def _dump(con: duckdb.DuckDBPyConnection) -> str:
    """Same normalised DDL text as tools/make_golden.py writes to schema_v1.sql."""
    rows = con.execute("SELECT sql FROM duckdb_tables() ORDER BY table_name").fetchall()
    return "".join(f"{r[0]}\n" for r in rows)


def _raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture
def golden_store(tmp_path: Path) -> Path:
    path = tmp_path / "golden_v1.duckdb"
    with gzip.open(DATA / "golden_v1.duckdb.gz") as packed, path.open("wb") as out:
        shutil.copyfileobj(packed, out)
    return path


def test_the_v1_ddl_is_what_the_release_created(golden_store: Path) -> None:
    con = duckdb.connect(":memory:")
    create(con, 1)
    assert _dump(con) == (DATA / "schema_v1.sql").read_text()
    con.close()
    con = duckdb.connect(str(golden_store), read_only=True)
    assert _dump(con) == (DATA / "schema_v1.sql").read_text()
    con.close()


def test_every_older_schema_migrates_to_exactly_the_current_ddl() -> None:
    fresh = duckdb.connect(":memory:")
    create(fresh, SCHEMA_VERSION)
    for version in range(1, SCHEMA_VERSION):
        con = duckdb.connect(":memory:")
        create(con, version)
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](con)
        assert _dump(con) == _dump(fresh)
    cols = [r[0] for r in fresh.execute("SELECT column_name FROM duckdb_columns() "
                                        "WHERE table_name = 'cases'").fetchall()]  # fmt: skip
    assert sorted(cols) == sorted(COLUMNS)  # a CaseResult field needs a schema version
    assert sorted(DDL) == list(range(1, SCHEMA_VERSION + 1))


def test_a_golden_v1_store_is_read_read_only_without_touching_it(
    golden_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = hashlib.sha256(golden_store.read_bytes()).hexdigest()
    stored = dict(_raw(golden_store, "SELECT case_id, speedup_vs_baseline FROM cases "
                                     "WHERE run_id = 'golden-base'"))  # fmt: skip
    with Store(golden_store, read_only=True) as store:
        assert [r["run_id"] for r in store.runs()] == ["golden-base", "golden-cand"]
        rows = store.cases("golden-base")
    assert [(r.backend, r.status) for r in rows] == [
        ("fake", "ok"), ("onnxruntime", "skipped"), ("torch-eager", "ok"),
    ]  # fmt: skip
    assert {r.case_id: r.speedup_vs_baseline for r in rows} == stored
    assert hashlib.sha256(golden_store.read_bytes()).hexdigest() == before
    assert _raw(golden_store, "SELECT version FROM schema_info") == [(1,)]

    assert main(["show", "golden-cand", "--store", str(golden_store), "--format", "csv"]) == 0
    shown = capsys.readouterr().out
    assert "fake: load failed on purpose" in shown and "torch-eager" in shown
    assert hashlib.sha256(golden_store.read_bytes()).hexdigest() == before


def test_a_golden_v1_store_migrates_in_place_with_its_rows_unchanged(golden_store: Path) -> None:
    v1_cols = ", ".join(V1_CASE_COLUMNS)
    cases_sql = f"SELECT {v1_cols} FROM cases ORDER BY run_id, case_id"
    runs_sql = "SELECT * FROM runs ORDER BY run_id"
    samples_sql = "SELECT * FROM samples ORDER BY run_id, case_id, idx"
    cases, runs, samples = (_raw(golden_store, q) for q in (cases_sql, runs_sql, samples_sql))
    speedups = dict(_raw(golden_store, "SELECT run_id || case_id, speedup_vs_baseline FROM cases"))

    with Store(golden_store) as store:
        assert store.version() == SCHEMA_VERSION == 3
        read_back = {
            r.run_id + r.case_id: r.speedup_vs_baseline
            for run in ("golden-base", "golden-cand")
            for r in store.cases(run)
        }
        bases = {r["run_id"]: (r["baseline_backend"], r["baseline_variant"]) for r in store.runs()}
        assert {r.status for r in store.cases("golden-cand")} == {"ok", "failed", "skipped"}
        # v1 priced each row at the class its device named; the migration records that class.
        base = store.cases("golden-base")
        assert all(r.hardware_class == "cpu-vcpu" and r.noise is None for r in base)

    assert _raw(golden_store, "SELECT version FROM schema_info") == [(SCHEMA_VERSION,)]
    assert _raw(golden_store, cases_sql) == cases
    assert [r[:-2] for r in _raw(golden_store, runs_sql)] == runs
    assert _raw(golden_store, samples_sql) == samples
    assert read_back == speedups  # the read-time speedups are exactly what 833ef1e stored
    assert any(v not in (None, 1.0) for v in speedups.values())
    # v1 recorded no baseline; it is derived from the stored speedups (the suite's, see
    # tools/make_golden.py), and checked against every row before it is trusted.
    assert bases == {"golden-base": ("torch-eager", "fp32"), "golden-cand": ("torch-eager", "fp32")}


def test_a_migrated_golden_store_exports_and_compares_as_the_release_did(
    golden_store: Path, tmp_path: Path
) -> None:
    with Store(golden_store) as store:
        base = runfile.export_run(store, "golden-base")
        cand = runfile.export_run(store, "golden-cand")
    runfile.write(base, tmp_path / "base.json")
    runfile.write(cand, tmp_path / "cand.json")
    base, cand = runfile.read(tmp_path / "base.json"), runfile.read(tmp_path / "cand.json")
    assert json.loads((tmp_path / "base.json").read_text())["version"] == runfile.VERSION
    assert base.run["baseline_backend"] == "torch-eager"
    got = [c.to_dict() for c in runfile.compare(base, cand)]
    assert got == json.loads((DATA / "golden_compare.json").read_text())
    assert [c["verdict"] for c in got][:2] == ["not comparable"] * 2  # failed, skipped rows


def test_golden_v1_and_v2_run_files_read_as_the_same_run(golden_store: Path) -> None:
    v1 = runfile.read(DATA / "golden_base_v1.json")
    v2 = runfile.read(DATA / "golden_base_v2.json")
    with Store(golden_store, read_only=True) as store:
        stored = store.cases("golden-base")
        samples = {c.case_id: store.samples("golden-base", c.case_id).tolist() for c in stored}
    assert v1.cases == v2.cases == stored
    assert v1.samples == v2.samples == {k: v for k, v in samples.items() if v}
    assert v1.history == {}  # v1 kept none
    assert v2.history == json.loads((DATA / "golden_base_v2.json").read_text())["history"] != {}
    for rf in (v1, v2):
        assert (rf.run["baseline_backend"], rf.run["baseline_variant"]) == ("torch-eager", "fp32")
    assert all(c.hardware_class == "cpu-vcpu" and c.noise is None for c in v1.cases)


def test_the_update_chain_covers_every_version() -> None:
    assert sorted(runfile.UPDATES) == list(range(2, runfile.VERSION + 1))
    data = json.loads((DATA / "golden_base_v1.json").read_text())
    for target in range(2, runfile.VERSION + 1):
        data = runfile.UPDATES[target](data)
        assert data["version"] == target
    assert set(data) == {"format", "version", "run", "cases", "samples", "history"}


@pytest.mark.parametrize("read_only", [False, True])
def test_a_newer_store_is_refused_in_one_line(golden_store: Path, read_only: bool) -> None:
    con = duckdb.connect(str(golden_store))
    newer = SCHEMA_VERSION + 1
    con.execute(f"UPDATE schema_info SET version = {newer}")
    con.close()
    with pytest.raises(StoreError) as err:
        Store(golden_store, read_only=read_only)
    assert str(err.value) == (
        f"{golden_store}: store has schema version {newer}; this infrabench reads up to "
        f"{SCHEMA_VERSION}: upgrade infrabench"
    )
    assert _raw(golden_store, "SELECT version FROM schema_info") == [(newer,)]


def test_a_newer_run_file_is_refused_in_one_line(tmp_path: Path) -> None:
    data = json.loads((DATA / "golden_base_v2.json").read_text())
    path = tmp_path / "new.json"
    path.write_text(json.dumps({**data, "version": runfile.VERSION + 1}))
    with pytest.raises(ConfigError) as err:
        runfile.read(path)
    assert str(err.value) == (
        f"{path}: run file has version {runfile.VERSION + 1}; this infrabench reads up to "
        f"{runfile.VERSION}: upgrade infrabench"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cases": {"a": 1}}, "'cases' must be a list of case objects"),
        ({"cases": [["m", "fp32"]]}, "cases[0] must be an object with run_id, case_id"),
        ({"cases": [{"case_id": "x", "model": "m"}]}, "cases[0] must be an object with"),
        ({"run": {"run_id": "r"}}, "'run' must be an object with 'run_id' and"),
        ({"samples": {"c": "1,2"}}, "'samples' must be an object of lists of numbers"),
        ({"history": [1.0]}, "'history' must be an object of lists of numbers"),
        ({"version": "2"}, "run file version must be a positive integer, got '2'"),
    ],
)
def test_a_malformed_run_file_is_one_line_naming_the_file(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    data = json.loads((DATA / "golden_base_v2.json").read_text())
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**data, **change}))
    with pytest.raises(ConfigError, match=f"^{path}: .*") as err:
        runfile.read(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def _v1_row(backend: str, p50: float, speedup: float | None) -> dict[str, object]:
    return {"backend": backend, "variant": "fp32", "status": "ok", "latency_ms_p50": p50,
            "speedup_vs_baseline": speedup, "model": "m", "shape": "b1", "threads": 1,
            "scenario": "single-stream"}  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([_v1_row("a", 2.0, 1.0), _v1_row("b", 1.0, 2.0)], ("a", "fp32")),
        ([_v1_row("a", 2.0, 1.0), _v1_row("b", 2.0, 1.0)], None),  # two candidates
        ([_v1_row("a", 2.0, 1.0), _v1_row("b", 1.0, 3.0)], None),  # does not reproduce b
        ([_v1_row("a", 2.0, None), _v1_row("b", 1.0, None)], None),  # nothing stored
    ],
)
def test_a_v1_baseline_is_derived_only_when_certain(
    rows: list[dict[str, object]], expected: tuple[str, str] | None
) -> None:
    assert derive_baseline(rows) == expected


def test_a_v1_run_without_a_derivable_baseline_keeps_its_stored_speedups(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    create(con, 1)
    con.execute("INSERT INTO runs (run_id, fingerprint_sha256) VALUES ('r', 'f')")
    for backend, p50, speedup in (("a", 2.0, 1.0), ("b", 2.0, 1.0), ("c", 1.0, 2.0)):
        con.execute(
            "INSERT INTO cases (run_id, case_id, model, variant, backend, shape, threads, "
            "scenario, status, latency_ms_p50, speedup_vs_baseline) "
            "VALUES ('r', ?, 'm', 'fp32', ?, 'b1', 1, 'single-stream', 'ok', ?, ?)",
            [backend, backend, p50, speedup],
        )
    con.close()
    with Store(path) as store:
        assert store.run("r")["baseline_backend"] is None
        assert [r.speedup_vs_baseline for r in store.cases("r")] == [1.0, 1.0, 2.0]


def test_the_cli_compares_the_two_golden_runs_read_only(
    golden_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", "golden-base", "golden-cand", "--store", str(golden_store)]
    assert main([*args, "--format", "json"]) == 0  # torch-eager unchanged; nothing regressed
    shown = json.loads(capsys.readouterr().out)
    expected = json.loads((DATA / "golden_compare.json").read_text())
    assert [(r["backend"], r["verdict"]) for r in shown] == [
        (r["backend"], r["verdict"]) for r in expected
    ]
    assert _raw(golden_store, "SELECT version FROM schema_info") == [(1,)]
