"""The pandas API returns the numbers the CLI shows; parquet round-trips them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from result_rows import rows, samples, write_store

import infrabench
from harness.api import load
from harness.cli import main
from harness.errors import ConfigError
from harness.result import COLUMNS


def _same(frame_value: object, json_value: object) -> bool:
    if json_value is None:
        return frame_value is pd.NA
    if isinstance(json_value, float):
        return float(str(frame_value)) == json_value  # exact: the same double
    return bool(frame_value == json_value)


def test_rows_equal_show_json_for_the_same_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = write_store(tmp_path / "s.duckdb", ("r1", "r2"))
    assert main(["show", "r2", "--format", "json", "--store", str(store)]) == 0
    shown = json.loads(capsys.readouterr().out)
    res = infrabench.load(store=store, run="r2")
    assert list(res.rows.columns) == list(COLUMNS)
    assert len(res.rows) == len(shown) == len(rows())
    for record, (_, frame_row) in zip(shown, res.rows.iterrows(), strict=True):
        for column in COLUMNS:
            assert _same(frame_row[column], record[column]), (column, frame_row[column], record)


def test_samples_are_one_row_per_raw_latency(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.duckdb", ("r1", "r2"))
    res = load(store, run=["r1", "r2"])
    assert list(res.samples.columns) == ["run_id", "case_id", "idx", "latency_ms"]
    assert list(res.runs.run_id) == ["r1", "r2"] and len(res.rows) == 2 * len(rows())
    for k, run_id in enumerate(("r1", "r2")):
        for i, row in enumerate(rows(run_id)):
            got = res.samples[(res.samples.run_id == run_id) & (res.samples.case_id == row.case_id)]
            assert got.latency_ms.tolist() == samples(row, seed=k * 100 + i)
            assert got.idx.tolist() == list(range(len(got)))
    assert len(load(store, run="all").runs) == 2
    assert set(load(store).rows.run_id) == {"r2"}  # latest


def test_a_notebook_summary_groups_by_backend(tmp_path: Path) -> None:
    res = load(write_store(tmp_path / "s.duckdb"))
    ok = res.rows[res.rows.status == "ok"]
    by_backend = ok.groupby("backend")["latency_ms_p50"].min()
    assert by_backend["openvino"] == 10.0 and by_backend["torch-eager"] == 30.0
    assert res.rows.loc[res.rows.status == "skipped", "latency_ms_p50"].isna().all()


def test_bad_references_are_config_errors(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.duckdb")
    with pytest.raises(ConfigError, match="no run matches 'zz'"):
        load(store, run="zz")
    with pytest.raises(ConfigError, match="no results store here"):
        load(tmp_path / "none.duckdb")


def test_show_parquet_writes_rows_and_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = write_store(tmp_path / "s.duckdb")
    out = tmp_path / "out" / "r1.parquet"
    assert main(["show", "--format", "parquet", "-o", str(out), "--store", str(store)]) == 0
    assert "raw samples ->" in capsys.readouterr().out
    res = load(store)
    pd.testing.assert_frame_equal(pd.read_parquet(out), res.rows)
    pd.testing.assert_frame_equal(pd.read_parquet(out.with_name("r1.samples.parquet")), res.samples)
    assert main(["show", "--format", "parquet", "--store", str(store)]) == 2
    assert "give -o FILE" in capsys.readouterr().err
