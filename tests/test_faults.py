"""Fault injection: each kind of fault of issue 19, injected, and its outcome asserted (rows
kept, the message, the exit code, no process or file left behind).

Tests marked ``faults`` make up the whole matrix (``tox -e faults``, a few minutes on 2 cores);
the unmarked ones are the small subset of the default set.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pytest

from harness import runfile
from harness.cli import main
from harness.errors import HarnessError, StoreError
from harness.launch import Outcome, ProcessLauncher, Progress
from harness.optimize.artifacts import cache_root
from harness.plan import plan
from harness.render import render
from harness.runner import Runner
from harness.store import Store
from harness.suite import load_suite
from tests.fakes import FixedWatch, ScriptedLauncher
from tests.result_rows import FINGERPRINT, rows

REPO = Path(__file__).resolve().parents[1]

FACTORIES = """
import ctypes, os, time
import torch

def good():
    return torch.nn.Linear(4, 2).eval(), torch.zeros(1, 4)

def segfault():
    ctypes.string_at(0)

def abort():
    os.abort()

def exit_zero():
    os._exit(0)

def system_exit():
    raise SystemExit(0)

def exception():
    raise RuntimeError("broken factory")

def hang():
    time.sleep(600)
"""

SUITE = """
    models = ["tiny-mlp"]
    backends = ["fake"]
    batch_sizes = [1, 4]
    threads = [1]
    [measure]
    budget_s = 0.2
    warmup_max_s = 0.1
    timeout_s = {timeout}
    build_timeout_s = {timeout}
    [options.fake]
    latency_ms = 0.05
    fail = "{fail}"
"""


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- 1. user code never runs in the CLI process --------------------------------------------


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "user_factories.py"
    path.write_text(FACTORIES)
    return path


def _user_model_run(
    factories: Path, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], *more: str
) -> tuple[int, str]:
    store = tmp_path / "store.duckdb"
    code = main(["run", "--model", f"torch:{factories}:{name}", "--backend", "fake",
                 "--store", str(store), *more])  # fmt: skip
    err = capsys.readouterr().err
    assert not store.exists()  # refused before anything ran
    return code, err


@pytest.mark.parametrize("name", ["exit_zero", pytest.param("segfault", marks=pytest.mark.faults)])
def test_a_dying_factory_is_one_line_and_exit_2(
    factories: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, err = _user_model_run(factories, name, tmp_path, capsys)
    assert code == 2
    line = _one_line_error(err)
    assert name in line and "model check: worker" in line


@pytest.mark.faults
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("abort", "killed by signal SIGABRT"),
        ("system_exit", "SystemExit"),
        ("exception", "broken factory"),
    ],
)
def test_every_factory_failure_is_one_line_and_exit_2(
    factories: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    expected: str,
) -> None:
    code, err = _user_model_run(factories, name, tmp_path, capsys)
    assert code == 2 and expected in _one_line_error(err)


@pytest.mark.faults
def test_a_hanging_factory_times_out_naming_the_setting(
    factories: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "hang.toml"
    suite.write_text(
        f'models = ["torch:{factories}:hang"]\nbackends = ["fake"]\nthreads = [1]\n'
        "[measure]\nbuild_timeout_s = 2\n"
    )
    started = time.monotonic()
    assert main(["run", str(suite), "--store", str(tmp_path / "s.duckdb")]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "model check: timed out after 2 s" in line and "build_timeout_s" in line
    assert time.monotonic() - started < 30


@pytest.mark.faults
def test_a_good_factory_is_probed_in_a_worker_not_here(
    factories: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = set(sys.modules)
    suite = load_suite(_suite_file(tmp_path, f'models = ["torch:{factories}:good"]'))
    planned = plan(suite)
    assert planned.cases and "user_factories" not in set(sys.modules) - before


def _suite_file(tmp_path: Path, first: str) -> Path:
    path = tmp_path / "probe.toml"
    path.write_text(f'{first}\nbackends = ["fake"]\nthreads = [1]\n')
    return path


# --- 3. no orphans: a worker's whole process group ends --------------------------------------


@dataclass(frozen=True)
class Spawner:
    """A task that starts a child process of its own, writes its pid, then hangs."""

    pid_file: str
    timeout_s: float = 10.0  # room for a spawned interpreter to start on a busy machine
    stage: str = "worker"

    def env(self) -> Mapping[str, str]:
        return {}

    def run(self, progress: Progress) -> None:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        Path(self.pid_file).write_text(str(child.pid))
        time.sleep(600)


@pytest.mark.slow
def test_a_timed_out_worker_and_its_children_are_ended(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    outcome: Outcome[None] = ProcessLauncher().launch(Spawner(str(pid_file)))
    assert outcome.status == "failed" and outcome.error_kind == "timeout"
    assert "worker: timed out after 10 s" in (outcome.reason or "")
    child = int(pid_file.read_text())
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.faults
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_to_infrabench_run_ends_everything_and_keeps_the_rows(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """A real ``infrabench run`` whose second case hangs in its worker; the signal comes while
    it hangs. Exit 130, the finished case kept, the run unfinished, no process of its session
    left (workers, their children, the resource tracker), no temporary file left."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    store, cache, suite = tmp_path / "store.duckdb", tmp_path / "cache", tmp_path / "s.toml"
    suite.write_text(
        textwrap.dedent("""
        models = ["tiny-mlp"]
        backends = ["fake"]
        batch_sizes = [1]
        threads = [1]
        [measure]
        budget_s = 0.2
        warmup_max_s = 0.1
        [options.fake]
        latency_ms = 0.05
        fail = "hang"
    """)
    )
    env = {**os.environ, "TMPDIR": str(temp), "INFRABENCH_CACHE": str(cache)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from harness.cli import entry; entry()", "run", str(suite),
         "--store", str(store)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_workers(proc.pid, 2, deadline_s=120)  # the build worker, then the hanging one
        time.sleep(1.0)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    time.sleep(0.5)
    # zombies are dead (this container's init may reap them late); anything else is an orphan
    left = [p.pid for p in psutil.process_iter() if _session(p.pid) == proc.pid and _alive(p.pid)]
    assert not left, [_cmdline(pid) for pid in left]
    assert not list(temp.iterdir())
    assert not list(cache.rglob(".build-*")) and not list(cache.rglob("*.tmp.npz"))
    with Store(store, read_only=True) as s:
        run = s.run(s.resolve_run("latest"))
    assert run["finished_at"] is None


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return "?"


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _wait_for_workers(parent: int, count: int, deadline_s: float) -> None:
    seen: set[int] = set()
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            children = psutil.Process(parent).children()
        except psutil.NoSuchProcess:
            return
        for child in children:
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    seen.add(child.pid)
            except psutil.Error:
                pass
        if len(seen) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"saw {len(seen)} of {count} workers")


# --- 4. damaged stores ------------------------------------------------------------------------


def _make(path: Path, *sql: str) -> Path:
    con = duckdb.connect(str(path))
    for statement in sql:
        con.execute(statement)
    con.close()
    return path


DAMAGED = {
    "another program": (
        ["CREATE TABLE t(x INTEGER)"],
        "not an infrabench results store",
    ),
    "empty schema_info": (["CREATE TABLE schema_info(version INTEGER)"], "found []"),
    "NULL version": (
        ["CREATE TABLE schema_info(version INTEGER)", "INSERT INTO schema_info VALUES (NULL)"],
        "found [None]",
    ),
    "version 0": (
        ["CREATE TABLE schema_info(version INTEGER)", "INSERT INTO schema_info VALUES (0)"],
        "found [0]",
    ),
    "version -1": (
        ["CREATE TABLE schema_info(version INTEGER)", "INSERT INTO schema_info VALUES (-1)"],
        "found [-1]",
    ),
    "a word": (
        ["CREATE TABLE schema_info(version VARCHAR)", "INSERT INTO schema_info VALUES ('two')"],
        "found ['two']",
    ),
    "two versions": (
        ["CREATE TABLE schema_info(version INTEGER)", "INSERT INTO schema_info VALUES (1), (2)"],
        "found [1, 2]",
    ),
    "tables missing": (
        ["CREATE TABLE schema_info(version INTEGER)", "INSERT INTO schema_info VALUES (2)"],
        "missing",
    ),
}


@pytest.mark.parametrize("kind", list(DAMAGED))
@pytest.mark.parametrize("command", ["show", pytest.param("run", marks=pytest.mark.faults)])
def test_a_damaged_store_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, command: str
) -> None:
    sql, expected = DAMAGED[kind]
    path = _make(tmp_path / "bad.duckdb", *sql)
    args = ["--model", "tiny-mlp", "--backend", "fake", "--inline"] if command == "run" else []
    assert main([command, *args, "--store", str(path)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert str(path) in line and expected in line


@pytest.fixture
def good_store(tmp_path: Path) -> Path:
    path = tmp_path / "good.duckdb"
    with Store(path) as s:
        s.start_run("r1", "s", "s.toml", FINGERPRINT)
        for i in range(100):
            s.add_case(replace(rows("r1")[0], case_id=f"c{i}"), [1.0] * 50)
        s.finish_run("r1")
    return path


@pytest.mark.parametrize(
    "damage",
    ["truncated", "sqlite", *(pytest.param(d, marks=pytest.mark.faults)
                              for d in ("corrupted", "text", "empty dir"))],
)  # fmt: skip
def test_a_broken_file_is_one_line(
    tmp_path: Path, good_store: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    data = good_store.read_bytes()
    bad = tmp_path / "bad.duckdb"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "corrupted":
        flipped = bytearray(data)
        for i in range(4096, len(flipped), 97):
            flipped[i] ^= 0xFF
        bad.write_bytes(bytes(flipped))
    elif damage == "sqlite":
        bad.write_bytes(b"SQLite format 3\x00" + bytes(4080))
    elif damage == "text":
        bad.write_text("hello\n")
    else:
        bad.mkdir()
    started = time.monotonic()
    assert main(["show", "--store", str(bad)]) in (1, 2)
    line = _one_line_error(capsys.readouterr().err)
    assert str(bad) in line
    assert time.monotonic() - started < 10  # never mistaken for a lock held by someone


def test_duckdb_never_installs_or_loads_extensions(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as s:
        settings = dict(s.con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN "
            "('autoinstall_known_extensions', 'autoload_known_extensions')"
        ).fetchall())  # fmt: skip
    assert settings == {"autoinstall_known_extensions": "false",
                        "autoload_known_extensions": "false"}  # fmt: skip


class _FullDisk:
    """A connection whose inserts into ``cases`` fail as on a full disk, and whose ROLLBACK
    fails too (what DuckDB does after an I/O error)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def execute(self, sql: str, params: Any = None) -> Any:
        if sql.startswith("INSERT INTO cases") or sql == "ROLLBACK":
            raise duckdb.IOException(f"Could not write file: {os.strerror(errno.ENOSPC)}")
        return self._con.execute(sql, params) if params is not None else self._con.execute(sql)

    def close(self) -> None:
        self._con.close()


def test_a_full_disk_names_the_row_in_flight_and_keeps_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_suite: Callable[..., Path]
) -> None:
    path = tmp_path / "s.duckdb"
    suite = load_suite(write_suite(SUITE.format(timeout=60, fail="")))
    store = Store(path)
    writes = {"n": 0}
    real = Store.con.fget  # type: ignore[attr-defined]

    def con(self: Store) -> Any:
        connection = real(self)
        return _FullDisk(connection) if writes["n"] >= 1 else connection

    original_add = Store.add_case

    def add_case(self: Store, result: Any, samples: list[float]) -> None:
        try:
            original_add(self, result, samples)
        finally:
            writes["n"] += 1

    monkeypatch.setattr(Store, "con", property(con))
    monkeypatch.setattr(Store, "add_case", add_case)
    runner = Runner(store, cache_root(), ScriptedLauncher(), watch=FixedWatch())
    with pytest.raises(StoreError) as err:
        runner.run(plan(suite))
    message = str(err.value)
    assert "NOT stored" in message and "No space left on device" in message
    assert "tiny-mlp/fp32/fake/b4" in message and str(path) in message
    monkeypatch.undo()
    store.close()
    with Store(path, read_only=True) as s:
        kept = s.cases(s.resolve_run("latest"))
    assert [r.batch_size for r in kept] == [1]


# --- 7. reading while a run writes ---------------------------------------------------------


@dataclass
class _ShowDuringRun(ScriptedLauncher):
    """Runs ``infrabench show`` in another process before the second case is measured."""

    store: Path = Path()
    seen: list[subprocess.CompletedProcess[str]] | None = None

    def launch(self, task: Any, progress: Progress = lambda text: None) -> Outcome[Any]:
        measured = sum(type(t).__name__ == "MeasureTask" for t in self.launched)
        if type(task).__name__ == "MeasureTask" and measured == 1 and self.seen is not None:
            self.seen.append(subprocess.run(
                [sys.executable, "-m", "harness.cli", "show", "--store", str(self.store)],
                cwd=REPO, capture_output=True, text=True, timeout=120,
                env={**os.environ, "INFRABENCH_STORE_LOCK_S": "5"},
            ))  # fmt: skip
        return super().launch(task, progress)


def test_show_works_while_a_run_writes_and_marks_it_unfinished(
    tmp_path: Path, write_suite: Callable[..., Path]
) -> None:
    path = tmp_path / "s.duckdb"
    suite = load_suite(write_suite(SUITE.format(timeout=60, fail="")))
    seen: list[subprocess.CompletedProcess[str]] = []
    with Store(path) as store:
        launcher = _ShowDuringRun(store=path, seen=seen)
        Runner(store, cache_root(), launcher, watch=FixedWatch()).run(plan(suite))
    assert seen and seen[0].returncode == 0, seen[0].stderr
    assert "UNFINISHED" in seen[0].stdout and "b1" in seen[0].stdout


@pytest.mark.faults
def test_a_store_held_by_another_process_is_waited_for_then_busy(
    tmp_path: Path, good_store: Path
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, time; c = duckdb.connect({str(good_store)!r}); print(1, flush=True); "
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline()
        done = subprocess.run(
            [sys.executable, "-m", "harness.cli", "show", "--store", str(good_store)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
            env={**os.environ, "INFRABENCH_STORE_LOCK_S": "1"},
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert done.returncode == 2
    assert "busy" in _one_line_error(done.stderr) and "INFRABENCH_STORE_LOCK_S" in done.stderr


# --- 5. bad values ---------------------------------------------------------------------------

BAD_SUITES = {
    "nan budget": ("[measure]\nbudget_s = nan", "finite"),
    "inf budget": ("[measure]\nbudget_s = inf", "finite"),
    "nan timeout": ("[measure]\ntimeout_s = nan", "finite"),
    "inf build timeout": ("[measure]\nbuild_timeout_s = inf", "finite"),
    "nan watts": ("[energy]\nwatts_per_core = nan", "finite"),
    "negative watts": ("[energy]\nwatts_per_core = -3", "(0, inf)"),
    "max < min samples": ("[measure]\nmin_samples = 50\nmax_samples = 10", "at least"),
    "huge samples": ("[measure]\nmin_samples = 9223372036854775807", "2147483647"),
    "nan fidelity": ("fidelity_min_ratio = nan", "(0, 1]"),
}


@pytest.mark.parametrize("kind", list(BAD_SUITES))
def test_bad_numbers_in_a_suite_are_one_line_with_the_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    extra, expected = BAD_SUITES[kind]
    path = tmp_path / "bad.toml"
    path.write_text(f'models = ["tiny-mlp"]\nbackends = ["fake"]\nthreads = [1]\n{extra}\n')
    assert main(["run", str(path), "--inline", "--store", str(tmp_path / "s.duckdb")]) == 2
    assert expected in _one_line_error(capsys.readouterr().err)


BAD_ARGS = {
    "batch beyond int64": (["--batch", "99999999999999999999"], "2147483647"),
    "threads beyond usable": (["--threads", "4096"], "usable CPU"),
    "nan watts": (["--watts-per-core", "nan"], "finite"),
    "inf watts": (["--watts-per-core", "inf"], "finite"),
}


@pytest.mark.parametrize("kind", list(BAD_ARGS))
def test_bad_numbers_on_the_command_line_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    args, expected = BAD_ARGS[kind]
    store = tmp_path / "s.duckdb"
    code = main(["run", "--model", "tiny-mlp", "--backend", "fake", "--inline",
                 "--store", str(store), *args])  # fmt: skip
    assert code == 2 and expected in _one_line_error(capsys.readouterr().err)
    assert not store.exists()


# --- 6. outputs checked before work ----------------------------------------------------------


@pytest.fixture
def stored_run(tmp_path: Path, write_suite: Callable[..., Path]) -> Path:
    path = tmp_path / "runs.duckdb"
    with Store(path) as store:
        suite = load_suite(write_suite(SUITE.format(timeout=60, fail="")))
        Runner(store, cache_root(), ScriptedLauncher(), watch=FixedWatch()).run(plan(suite))
    return path


@pytest.mark.parametrize("command", ["export", "report", "show"])
@pytest.mark.parametrize(
    "where", ["a directory", pytest.param("an impossible folder", marks=pytest.mark.faults)]
)
def test_outputs_that_cannot_be_written_are_refused_first(
    tmp_path: Path,
    stored_run: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    where: str,
) -> None:
    target = tmp_path if where == "a directory" else tmp_path / "file.txt" / "x" / "out.md"
    if where != "a directory":
        (tmp_path / "file.txt").write_text("a file where a folder should be")
    assert main([command, "-o", str(target), "--store", str(stored_run)]) == 2
    assert str(target) in _one_line_error(capsys.readouterr().err)


def test_ci_checks_its_outputs_before_running_the_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.duckdb"
    base = ["ci", "--model", "tiny-mlp", "--backend", "fake", "--inline", "--store", str(store)]
    assert main([*base, "--baseline", str(tmp_path), "--update-baseline"]) == 2
    assert "directory" in _one_line_error(capsys.readouterr().err)
    (tmp_path / "file").write_text("x")
    report = tmp_path / "file" / "report.html"
    assert main([*base, "--baseline", str(tmp_path / "b.json"), "--update-baseline",
                 "--report", str(report)]) == 2  # fmt: skip
    assert "--report" in _one_line_error(capsys.readouterr().err)
    assert not store.exists()  # nothing ran


def test_a_full_disk_leaves_no_partial_file(
    tmp_path: Path, stored_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "out"
    out.mkdir()
    with Store(stored_run, read_only=True) as store:
        exported = runfile.export_run(store, store.resolve_run("latest"))
    monkeypatch.setattr(runfile.strict_json, "dumps", full)
    with pytest.raises(HarnessError, match="No space left"):
        runfile.write(exported, out / "run.json")
    monkeypatch.setattr(Path, "write_text", full)
    assert main(["show", "--format", "markdown", "-o", str(out / "x.md"),
                 "--store", str(stored_run)]) == 1  # fmt: skip
    assert not list(out.iterdir())


# --- 7. builders write only in their staging folder ---------------------------------------------


@pytest.mark.faults
def test_quantizers_read_a_copy_inside_their_staging_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.optimize import recipes
    from harness.optimize.artifacts import build_artifact

    seen: list[Path] = []
    real = recipes.quantize_dynamic_onnx

    def spy(source: Path, target: Path) -> dict[str, Any]:
        seen.append(source)
        assert source.parent.parent == target.parent  # inside this build's staging folder
        return real(source, target)

    monkeypatch.setattr(recipes, "quantize_dynamic_onnx", spy)
    fp32 = build_artifact("tiny-mlp", "fp32", tmp_path)
    before = sorted(p.name for p in Path(fp32.directory).iterdir())
    built = build_artifact("tiny-mlp", "int8-dynamic", tmp_path)
    assert seen and Path(fp32.directory) not in seen[0].parents
    assert sorted(p.name for p in Path(fp32.directory).iterdir()) == before
    assert sorted(p.name for p in Path(built.directory).iterdir()) == ["meta.json", "model.onnx"]


# --- 8. markdown escapes names ----------------------------------------------------------------


def test_markdown_escapes_html_from_names() -> None:
    evil = replace(rows()[0], model="<img src=x onerror=alert(1)>", reason="<script>x</script>")
    text = render([evil], "markdown", title="run <b>1</b>")
    assert "<img" not in text and "<b>" not in text and "&lt;img" in text


# --- 3. leftovers of a builder killed with SIGKILL ------------------------------------------


def test_staging_folders_of_dead_builders_are_removed(tmp_path: Path) -> None:
    from harness.backend import staged

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    orphan = tmp_path / f".build-{dead.stdout.strip()}-abc"
    orphan.mkdir()
    (orphan / "model.onnx").write_bytes(b"partial")
    mine = tmp_path / f".build-{os.getpid()}-live"  # a live builder's folder stays
    mine.mkdir()
    with staged(tmp_path / "final", "meta.json") as staging:
        (staging / "meta.json").write_text("{}")
    assert not orphan.exists() and mine.exists() and (tmp_path / "final" / "meta.json").exists()


# --- 8. OpenVINO telemetry declined -----------------------------------------------------------


@pytest.mark.faults
def test_importing_openvino_writes_nothing_in_home(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    done = subprocess.run(
        [sys.executable, "-c", "from backends.openvino import OpenVinoBackend as B; "
         "b = B(); b.check(); print(b.versions())"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.iterdir())
