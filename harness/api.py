"""Results as pandas DataFrames, for notebooks and scripts.

    import infrabench                      # or: from harness.api import load
    res = infrabench.load()                # the latest run of $INFRABENCH_STORE or results/
    res.rows.groupby("backend")["latency_ms_p50"].median()
    res.samples.query("case_id == @res.rows.case_id[0]").latency_ms.plot.hist()

``rows`` has one row per case and exactly the columns of ``show --format json`` (DESIGN.md's
names, units in the name); ``samples`` one row per raw latency sample (``run_id, case_id, idx,
latency_ms``); ``runs`` one row per run with its machine fingerprint. A value that was not
measured is ``<NA>`` (pandas' nullable dtypes), never 0. pandas is imported when this module is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from harness.result import COLUMNS, CaseResult
from harness.store import Store, store_path

_DTYPES = {"int": "Int64", "float": "Float64", "bool": "boolean"}


@dataclass(frozen=True)
class Results:
    """The runs read by ``load``: ``runs`` (one row per run), ``rows`` (one per case, columns
    ``harness.result.COLUMNS``) and ``samples`` (one per sample: run_id, case_id, idx,
    latency_ms in milliseconds, idx from 0 in the order measured)."""

    runs: pd.DataFrame
    rows: pd.DataFrame
    samples: pd.DataFrame


def rows_frame(results: Sequence[CaseResult]) -> pd.DataFrame:
    """Result rows as a DataFrame with nullable dtypes from the CaseResult annotations
    (int -> Int64, float -> Float64, bool -> boolean, text -> string)."""
    frame = pd.DataFrame([r.to_dict() for r in results], columns=list(COLUMNS))
    dtypes = {}
    for f in fields(CaseResult):
        base = str(f.type).replace(" | None", "").strip()
        dtypes[f.name] = _DTYPES.get(base, "string")
    return frame.astype(dtypes)


def _run_ids(store: Store, run: str | Sequence[str]) -> list[str]:
    if isinstance(run, str) and run == "all":
        return [str(r["run_id"]) for r in store.runs()]
    refs = [run] if isinstance(run, str) else list(run)
    return [store.resolve_run(ref) for ref in refs]


def load(store: str | Path | None = None, run: str | Sequence[str] = "latest") -> Results:
    """Read runs from a results store into DataFrames.

    ``store``: the DuckDB file (default ``$INFRABENCH_STORE``, else ``results/infrabench.duckdb``).
    ``run``: ``"latest"``, a run id or a unique prefix of one, a list of those, or ``"all"``.
    Raises ConfigError when the store does not exist or a run reference matches no run (or
    several), StoreError when the store is unreadable or of a newer schema.
    """
    with Store(store_path(str(store) if store is not None else None), read_only=True) as st:
        ids = _run_ids(st, run)
        cases = [row for run_id in ids for row in st.cases(run_id)]
        marks = ", ".join("?" for _ in ids) or "NULL"
        samples = st.con.execute(
            "SELECT run_id, case_id, idx, latency_ms FROM samples "
            f"WHERE run_id IN ({marks}) ORDER BY run_id, case_id, idx",
            ids,
        ).df()
        runs = st.con.execute(
            f"SELECT * FROM runs WHERE run_id IN ({marks}) ORDER BY started_at, run_id", ids
        ).df()
    samples = samples.astype(
        {"run_id": "string", "case_id": "string", "idx": "int64", "latency_ms": "float64"}
    )
    return Results(runs=runs, rows=rows_frame(cases), samples=samples)


def write_parquet(store: str | Path | None, run: str, output: Path) -> Path:
    """Write one run's rows to ``output`` (Parquet, the columns of ``Results.rows``) and its raw
    samples next to it as ``<stem>.samples.parquet``; return the samples file's path."""
    res = load(store, run)
    output.parent.mkdir(parents=True, exist_ok=True)
    res.rows.to_parquet(output, index=False)
    samples = output.with_name(f"{output.stem}.samples{output.suffix or '.parquet'}")
    res.samples.to_parquet(samples, index=False)
    return samples
