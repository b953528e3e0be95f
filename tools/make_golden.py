"""Make the golden files under tests/data/ with the RELEASED code, not with this tree.

The golden files are what an existing user has on disk: a results store of schema version 1 and
run files of format versions 1 and 2. They must be written by the code that really wrote them,
so this script runs inside a checkout of the release (commit 833ef1e, the last commit before the
store and run files were restructured) and, for the v1 run file, a checkout of the last commit
whose run-file writer was version 1 (ae6c33f; commit a7a6519 made it version 2). Between those
two commits ``harness/result.py`` is unchanged and ``harness/store.py`` differs only in an
``ORDER BY``, so both read the same store the same way.

Reproduce (from this repository's root; the worktrees are throwaway)::

    git worktree add /tmp/golden 833ef1e
    git worktree add /tmp/golden-rf1 ae6c33f
    cd /tmp/golden && PYTHONPATH=/tmp/golden /work/main/.venv/bin/python \\
        "$OLDPWD/tools/make_golden.py" --out "$OLDPWD/tests/data" --runfile-v1-tree /tmp/golden-rf1

It writes, into ``--out``:

* ``golden_v1.duckdb.gz`` (gzipped; tests unpack it into a temp dir): two runs of a tiny suite
  (model tiny-mlp, variant fp32, batch 1, one thread; backends torch-eager = the suite's
  baseline, fake, onnxruntime) run by 833ef1e's ``Runner`` in inline mode. Run
  ``golden-base``: torch-eager ok, fake ok, onnxruntime skipped (asked for the CUDA provider,
  which this CPU build lacks). Run ``golden-cand``: the same, but the fake backend fails at load
  on purpose (a failed row). Speedups were written by 833ef1e's ``update_speedups``. Few
  samples (``max_samples``) keep the file small.
* ``golden_base_v2.json``: run ``golden-base`` exported by 833ef1e (run file version 2), with
  the history ``infrabench ci`` keeps once run ``golden-cand`` passed on the same machine
  (833ef1e's ``runfile.with_history``).
* ``golden_base_v1.json``: run ``golden-base`` exported by ae6c33f (run file version 1).
* ``golden_compare.json``: 833ef1e's ``runfile.compare`` of run ``golden-base`` (base) with run
  ``golden-cand`` (candidate), one ``CaseComparison.to_dict()`` per case.
* ``schema_v1.sql``: the DDL of every table of a fresh store made by 833ef1e's ``_create_v1``,
  as DuckDB normalises it (``duckdb_tables().sql``), one statement per line, sorted by table.

The figures inside are real measurements of the machine that ran this; tests only use them as
stored values, never as expectations about speed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SUITE = """
    name = "golden"
    models = ["tiny-mlp"]
    variants = ["fp32"]
    backends = ["torch-eager", "fake", "onnxruntime"]
    batch_sizes = [1]
    threads = [1]
    baseline = "torch-eager/fp32"
    [measure]
    budget_s = 0.5
    warmup_max_s = 0.2
    min_samples = 20
    max_samples = 40
    [options.fake]
    latency_ms = 0.05
    fail = "{fail}"
    [options.onnxruntime]
    execution_provider = "cuda"
"""
RUNS = {"golden-base": "", "golden-cand": "load"}

EXPORT_V1 = """
import sys
from pathlib import Path
from harness import runfile
from harness.store import Store
if runfile.VERSION != 1:
    sys.exit(f"this checkout writes run file version {runfile.VERSION}, not 1")
with Store(Path(sys.argv[1]), read_only=True) as store:
    runfile.write(runfile.export_run(store, sys.argv[2]), Path(sys.argv[3]))
"""


def schema_dump(con: object) -> str:
    """Every table's DDL as DuckDB normalises it, sorted by table name, one per line."""
    rows = con.execute(  # type: ignore[attr-defined]
        "SELECT sql FROM duckdb_tables() ORDER BY table_name"
    ).fetchall()
    return "".join(f"{r[0]}\n" for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runfile-v1-tree", type=Path, required=True)
    args = parser.parse_args()

    import duckdb

    import harness
    from harness import runfile, store
    from harness.config import load_suite
    from harness.runner import Runner

    here = Path(harness.__file__).resolve().parent.parent
    sha = subprocess.run(
        ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if sha != "833ef1e":
        print(f"run this from a checkout of 833ef1e (harness here is {sha} at {here})")
        return 2

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(":memory:")
    store._create_v1(con)
    (out / "schema_v1.sql").write_text(schema_dump(con))
    con.close()

    work = Path(tempfile.mkdtemp(prefix="golden-"))
    os.environ["INFRABENCH_CACHE"] = str(work / "cache")
    db = work / "golden_v1.duckdb"
    allowed = os.sched_getaffinity(0)  # inline cases pin this process's CPUs
    try:
        with store.Store(db) as s:
            for run_id, fail in RUNS.items():
                suite_file = work / f"{run_id}.toml"
                suite_file.write_text(textwrap.dedent(SUITE.format(fail=fail)))
                Runner(s, work / "cache", inline=True).run(load_suite(suite_file), run_id)
                # Inline cases leave this process pinned; unpinned, both runs get the same
                # fingerprint (usable_cpus is part of it), as two CLI runs would.
                os.sched_setaffinity(0, allowed)
            s.con.execute("CHECKPOINT")
            base = runfile.export_run(s, "golden-base")
            cand = runfile.export_run(s, "golden-cand")
    finally:
        os.sched_setaffinity(0, allowed)
    runfile.write(runfile.with_history(base, cand), out / "golden_base_v2.json")
    verdicts = [c.to_dict() for c in runfile.compare(base, cand)]
    (out / "golden_compare.json").write_text(json.dumps(verdicts, indent=1) + "\n")
    with db.open("rb") as raw, gzip.GzipFile(out / "golden_v1.duckdb.gz", "wb", 9, mtime=0) as gz:
        shutil.copyfileobj(raw, gz)  # mostly empty 256 KiB blocks: 1.5 MB raw, ~10 KB gzipped
    env = {**os.environ, "PYTHONPATH": str(args.runfile_v1_tree.resolve())}
    subprocess.run(
        [sys.executable, "-c", EXPORT_V1, str(db), "golden-base", str(out / "golden_base_v1.json")],
        cwd=args.runfile_v1_tree, env=env, check=True,
    )  # fmt: skip
    shutil.rmtree(work)
    for name in [*sorted(p.name for p in out.glob("golden_*")), "schema_v1.sql"]:
        print(f"{name}: {(out / name).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
