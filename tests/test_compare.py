"""Soundness of the comparison on seeded synthetic samples: pure functions, no sleeps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.compare import compare_runs, history_key, holm, latency_shift, noise_floor
from harness.environment import fingerprint
from harness.result import CaseResult
from harness.store import Store

CV = 0.05  # realistic within-run noise of a steady benchmark
SIGMA = float(np.sqrt(np.log(1 + CV**2)))  # lognormal sigma for that CV


def _samples(rng: np.random.Generator, median_ms: float, n: int = 100) -> np.ndarray:
    return rng.lognormal(np.log(median_ms), SIGMA, n)


def _case(run_id: str, backend: str, **kw: object) -> CaseResult:
    fields = dict(run_id=run_id, case_id=f"m/fp32/{backend}/b1", model="m", variant="fp32",
                  backend=backend, shape="b1", threads=2, status="ok", versions="{}",
                  artifact_sha256="a", latency_ms_p50=10.0)  # fmt: skip
    fields.update(kw)
    return CaseResult(**fields)  # type: ignore[arg-type]


def _run(pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[str]:
    base = [_case("A", f"b{i}") for i in range(len(pairs))]
    cand = [_case("B", f"b{i}") for i in range(len(pairs))]
    samples = {}
    for i, (x, y) in enumerate(pairs):
        samples[("A", base[i].case_id)] = x
        samples[("B", cand[i].case_id)] = y
    return [c.verdict for c in compare_runs(base, cand, samples, same_machine=True)]


def test_a_a_comparisons_almost_never_raise_a_false_alarm() -> None:
    rng = np.random.default_rng(11)
    verdicts = []
    for _ in range(10):  # 10 runs of 60 cases: 600 A/A comparisons, Holm within each run
        verdicts += _run([(_samples(rng, 10.0), _samples(rng, 10.0)) for _ in range(60)])
    assert len(verdicts) == 600
    false_alarms = sum(v in ("slower", "faster") for v in verdicts)
    assert false_alarms / len(verdicts) <= 0.01


def test_a_ten_percent_slowdown_in_five_percent_noise_is_detected() -> None:
    rng = np.random.default_rng(12)
    verdicts = []
    for _ in range(10):
        verdicts += _run([(_samples(rng, 10.0), _samples(rng, 11.0)) for _ in range(60)])
    assert sum(v == "slower" for v in verdicts) / len(verdicts) >= 0.95


def test_shift_estimate_and_interval_cover_the_true_ratio() -> None:
    rng = np.random.default_rng(13)
    shift = latency_shift(_samples(rng, 10.0, 400), _samples(rng, 12.0, 400))
    assert shift.ci_low < 1.2 < shift.ci_high
    assert shift.ratio == pytest.approx(1.2, rel=0.01)
    assert shift.p_value < 1e-10


def test_holm_adjustment() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


def test_different_machines_or_artifacts_are_not_comparable_never_regressions() -> None:
    rng = np.random.default_rng(14)
    x, y = _samples(rng, 10.0), _samples(rng, 20.0)
    base, cand = [_case("A", "ort")], [_case("B", "ort")]
    samples = {("A", base[0].case_id): x, ("B", cand[0].case_id): y}
    (row,) = compare_runs(base, cand, samples, same_machine=False)
    assert row.verdict == "not comparable" and "fingerprint" in row.reason
    assert not row.regression
    cand = [_case("B", "ort", artifact_sha256="other")]
    (row,) = compare_runs(base, cand, samples, same_machine=True)
    assert row.verdict == "not comparable" and "artifact differs" in row.reason
    cand = [_case("B", "ort", versions='{"onnxruntime": "9"}')]
    (row,) = compare_runs(base, cand, samples, same_machine=True)
    assert "runtime versions differ" in row.reason
    rows = compare_runs(base, [_case("B", "ov")], samples, same_machine=True)
    assert sorted(r.verdict for r in rows) == ["only in base", "only in candidate"]


def test_a_fidelity_gate_flip_is_a_regression() -> None:
    rng = np.random.default_rng(15)
    x, y = _samples(rng, 10.0), _samples(rng, 10.0)
    base = [_case("A", "ort", fidelity_ok=True, fidelity=0.995)]
    cand = [_case("B", "ort", fidelity_ok=False, fidelity=0.95)]
    samples = {("A", base[0].case_id): x, ("B", cand[0].case_id): y}
    (row,) = compare_runs(base, cand, samples, same_machine=True)
    assert row.verdict == "unchanged" and row.fidelity_regression and row.regression


def _store_run(store: Store, run_id: str, median_ms: float, fp: dict, seed: int) -> None:
    store.start_run(run_id, "s", "s.toml", fp)
    rng = np.random.default_rng(seed)
    for backend in ("onnxruntime", "openvino"):
        x = _samples(rng, median_ms if backend == "onnxruntime" else 10.0)
        store.add_case(_case(run_id, backend, latency_ms_p50=float(np.median(x))), x.tolist())


def test_compare_command_reports_and_gates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "s.duckdb"
    fp = fingerprint()
    with Store(path) as store:
        _store_run(store, "20260101-000000-base", 10.0, fp, seed=1)
        _store_run(store, "20260102-000000-same", 10.0, fp, seed=2)
        _store_run(store, "20260103-000000-slow", 12.0, fp, seed=3)
    args = ["compare", "20260101", "20260102", "--store", str(path), "--format", "json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["verdict"] for r in rows] == ["unchanged", "unchanged"]
    assert main(["compare", "20260101", "20260103", "--store", str(path)]) == 1
    out = capsys.readouterr().out
    assert "slower" in out and "unchanged" in out
    assert main(["compare", "20260101", "latest", "--min-effect", "2", "--store", str(path)]) == 2


def test_the_noise_floor_comes_from_earlier_runs_medians() -> None:
    assert noise_floor([10.0, 10.5]) is None  # too few runs to say
    assert noise_floor([10.0] * 5) == 0.0
    rng = np.random.default_rng(3)
    drifting = list(rng.lognormal(np.log(10.0), 0.05, 50))  # runs drift 5% (sd of log p50)
    floor = noise_floor(drifting, alpha=0.01)
    assert floor is not None and 0.12 < floor < 0.25  # exp(2.58 x 0.05 x 1.41) - 1 = 0.2


def test_a_drifting_machine_needs_more_than_its_drift_to_flag() -> None:
    rng = np.random.default_rng(4)
    base, cand = [_case("A", "ort")], [_case("B", "ort", latency_ms_p50=11.2)]
    samples = {("A", base[0].case_id): _samples(rng, 10.0, 400),
               ("B", cand[0].case_id): _samples(rng, 11.2, 400)}  # fmt: skip
    (plain,) = compare_runs(base, cand, samples, same_machine=True)
    assert plain.verdict == "slower" and plain.noise_floor is None
    drift = {history_key(base[0]): [9.0, 10.8, 9.5, 11.0, 10.2]}  # this machine: +-10% nightly
    (gated,) = compare_runs(base, cand, samples, same_machine=True, history=drift)
    assert gated.verdict == "unchanged" and gated.noise_floor > 0.12
    steady = {history_key(base[0]): [10.0, 10.1, 9.95, 10.05]}
    (tight,) = compare_runs(base, cand, samples, same_machine=True, history=steady)
    assert tight.verdict == "slower" and tight.noise_floor < 0.05


def test_history_is_kept_per_case_and_capped(tmp_path: Path) -> None:
    from harness import runfile

    run = {"run_id": "A", "fingerprint_sha256": "f"}
    base = runfile.RunFile(run, [_case("A", "ort")], {})
    for i in range(12):
        current = runfile.RunFile({**run, "run_id": f"B{i}"},
                                  [_case(f"B{i}", "ort", latency_ms_p50=10.0 + i)], {})  # fmt: skip
        base = runfile.with_history(base, current)
    (kept,) = base.history.values()
    assert kept == [10.0 + i for i in range(2, 12)]  # the last 10
    other = runfile.RunFile({"run_id": "C", "fingerprint_sha256": "g"}, [_case("C", "ort")], {})
    assert runfile.with_history(base, other) is base  # another machine teaches nothing
    runfile.write(base, tmp_path / "b.json")
    assert runfile.read(tmp_path / "b.json").history == base.history
    old = json.loads((tmp_path / "b.json").read_text())
    old["version"] = 1
    del old["history"]
    (tmp_path / "v1.json").write_text(json.dumps(old))
    assert runfile.read(tmp_path / "v1.json").history == {}  # version 1 files still read


def test_a_comparison_mentions_noisy_rows() -> None:
    from harness.compare import compare_runs
    from harness.render import render_comparison
    from harness.result import CaseResult

    common = {"model": "m", "variant": "fp32", "backend": "b", "shape": "b1", "status": "ok",
              "latency_ms_p50": 1.0, "case_id": "c"}  # fmt: skip
    base = CaseResult(run_id="r1", **common)  # type: ignore[arg-type]
    cand = CaseResult(run_id="r2", noise="other processes used 1.7 cores", **common)  # type: ignore[arg-type]
    samples = {("r1", "c"): np.full(50, 1.0), ("r2", "c"): np.full(50, 1.0)}
    (row,) = compare_runs([base], [cand], samples, same_machine=True)
    assert row.noise == "candidate: other processes used 1.7 cores"
    text = render_comparison([row], "table", "t")
    assert "(noisy)" in text and "noisy m/fp32/b b1: candidate: other processes" in text
    assert "> note: noisy m/fp32/b b1" in render_comparison([row], "markdown", "t")
