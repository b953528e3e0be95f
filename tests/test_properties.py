"""Property-based tests (hypothesis): whatever suite file, command line or run file a user
gives, infrabench exits 0, 1 or 2, never prints a traceback, and an exit 2 is one line on
stderr. Examples per property: 25 by default (the default set), $INFRABENCH_HYPOTHESIS_EXAMPLES
under ``tox -e faults``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main

EXAMPLES = int(os.environ.get("INFRABENCH_HYPOTHESIS_EXAMPLES", "25"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# TOML values, good and bad, for any key
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 0.05, 0.5, -1, 2**31, 2**63]),
)
VALUES = st.one_of(
    NUMBERS,
    st.text(max_size=12),
    st.booleans(),
    st.lists(st.one_of(st.integers(-3, 2**40), st.text(max_size=4)), max_size=3),
    st.sampled_from(["auto", "fake", "tiny-mlp", "fp32", "fake/fp32", "<b>x</b>"]),
)
TOP_KEYS = ["name", "models", "variants", "backends", "batch_sizes", "seq_lens", "threads",
            "baseline", "fidelity_min_ratio", "scenario", "unknown_key"]  # fmt: skip
MEASURE_KEYS = ["budget_s", "timeout_s", "build_timeout_s", "min_samples", "max_samples",
                "warmup_max_s", "confidence", "target_rel_ci", "nonsense"]  # fmt: skip
ENERGY_KEYS = ["watts_per_core", "probe"]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(_toml(v) for v in value) + "]"


@st.composite
def suite_text(draw: st.DrawFn) -> str:
    """A suite that starts runnable (tiny-mlp on the fake backend, short budget) and has some
    keys replaced by arbitrary values, or some raw bytes appended."""
    top = {"models": ["tiny-mlp"], "backends": ["fake"], "batch_sizes": [1], "threads": [1]}
    measure: dict[str, Any] = {"budget_s": 0.05, "warmup_max_s": 0.02, "min_samples": 5}
    for key in draw(st.lists(st.sampled_from(TOP_KEYS), max_size=2, unique=True)):
        top[key] = draw(VALUES)
    for key in draw(st.lists(st.sampled_from(MEASURE_KEYS), max_size=2, unique=True)):
        measure[key] = draw(VALUES)
    energy = {k: draw(VALUES) for k in draw(st.lists(st.sampled_from(ENERGY_KEYS), max_size=1))}
    lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
    lines += ["[measure]", *(f"{k} = {_toml(v)}" for k, v in measure.items())]
    lines += ["[energy]", *(f"{k} = {_toml(v)}" for k, v in energy.items())] if energy else []
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()) and draw(st.booleans()):
        text += draw(st.text(max_size=20))
    return text


def _check(code: int, err: str) -> None:
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err


@SETTINGS
@given(text=suite_text())
def test_any_suite_file_exits_0_1_or_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    # hypothesis reuses function-scoped fixtures across examples: each example gets its own
    # folder and store, and starts from empty captured output, so no example sees another's
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = folder / "suite.toml"
    path.write_text(text)
    capsys.readouterr()
    code = main(["run", str(path), "--inline", "--store", str(folder / "store.duckdb")])
    _check(code, capsys.readouterr().err)


FLAGS = {
    "--batch": st.one_of(st.text(max_size=8), st.sampled_from(["1", "0", "1,2", "99999999999"])),
    "--threads": st.one_of(st.text(max_size=6), st.sampled_from(["1", "4096", "-1"])),
    "--watts-per-core": st.one_of(st.text(max_size=6), st.sampled_from(["nan", "inf", "-2"])),
    "--backend": st.sampled_from(["fake", "nope", ""]),
    "--variant": st.sampled_from(["fp32", "int8", "distilled-0l", "x+y"]),
    "--model": st.sampled_from(["tiny-mlp", "onnx:/nope.onnx", "torch:", "hf:", "zzz"]),
    "--dim": st.text(max_size=8),
    "--shape": st.text(max_size=8),
    "--region": st.text(max_size=5),
}


@SETTINGS
@given(
    flags=st.dictionaries(st.sampled_from(sorted(FLAGS)), st.just(""), max_size=3).flatmap(
        lambda chosen: st.fixed_dictionaries({k: FLAGS[k] for k in chosen})
    ),
    command=st.sampled_from(["run", "show", "export", "report", "compare", "recommend"]),
)
def test_any_command_line_exits_0_1_or_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: dict[str, str], command: str
) -> None:
    store = tmp_path / "store.duckdb"
    if command == "run":
        args = ["run", "--inline", "--model", "tiny-mlp", "--backend", "fake"]
        args += [part for flag, value in flags.items() for part in (flag, value)]
    else:
        extra = {"export": ["-o", str(tmp_path / "x.json")], "report": ["-o", str(tmp_path)],
                 "compare": ["a", "b"], "recommend": ["--objective", "cost"]}  # fmt: skip
        args = [command, *extra.get(command, []), *(v for v in flags.values() if v)]
    code = main([*args, "--store", str(store)])
    _check(code, capsys.readouterr().err)


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(), st.text()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def run_file(draw: st.DrawFn) -> str:
    """A run file's top level with some fields replaced, or any JSON, or broken text."""
    doc: dict[str, Any] = {"format": "infrabench-run", "version": 1, "run": {}, "cases": [],
                           "samples": {}, "history": {}}  # fmt: skip
    for key in draw(st.lists(st.sampled_from(sorted(doc)), max_size=3, unique=True)):
        doc[key] = draw(JSON)
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return json.dumps(doc)
    if choice == 1:
        return json.dumps(draw(JSON))
    return draw(st.text(max_size=30))


@SETTINGS
@given(text=run_file(), command=st.sampled_from(["ci", "import"]))
def test_any_run_file_exits_0_1_or_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, command: str
) -> None:
    path = tmp_path / "run.json"
    path.write_text(text)
    store = tmp_path / "store.duckdb"
    if command == "ci":
        args = ["ci", "--inline", "--model", "tiny-mlp", "--backend", "fake", "--baseline",
                str(path), "--report", str(tmp_path / "r.html")]  # fmt: skip
    else:
        args = ["import", str(path)]
    code = main([*args, "--store", str(store)])
    _check(code, capsys.readouterr().err)
