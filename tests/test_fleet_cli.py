"""The fleet options of ``infrabench run``: executor checks before anything runs, the
hardware axis, and Kubernetes Job manifests validated against the Kubernetes API schema (no
cluster here: nothing is applied)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import main
from harness.environment import KNOWN_CLASSES, class_mismatch, fingerprint
from harness.plan import Selection, plan
from harness.suite import load_suite

SUITE = """
    models = ["tiny-mlp"]
    backends = ["fake"]
    batch_sizes = [1, 4]
    threads = [1]
    baseline = "fake/fp32"
    retries = 2
    hardware = ["cpu-avx2", "rack-b"]
    [measure]
    timeout_s = 90
"""


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    return err


def test_the_hardware_axis_gives_a_case_per_class(write_suite: Callable[..., Path]) -> None:
    suite = load_suite(write_suite(SUITE))
    cases = plan(suite).cases
    assert [(c.hardware, c.batch_size) for c in cases] == [
        ("cpu-avx2", 1), ("cpu-avx2", 4), ("rack-b", 1), ("rack-b", 4)
    ]  # fmt: skip
    assert len({c.case_id for c in cases}) == 4 and cases[0].case_id.endswith("@cpu-avx2")
    chosen = plan(suite, Selection(hardware=("rack-c",), retries=0)).cases
    assert {c.hardware for c in chosen} == {"rack-c"}
    assert {c.settings.retries for c in chosen} == {0}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('hardware = ["AVX 512"]', "hardware: bad hardware class 'AVX 512'"),
        ("hardware = []", "hardware must be a non-empty list of strings"),
        ("retries = -1", "retries must be a non-negative integer (0..2147483647), got -1"),
    ],
)
def test_bad_fleet_keys_are_one_line_errors(
    write_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    path = write_suite(SUITE.replace('retries = 2\n    hardware = ["cpu-avx2", "rack-b"]', body))
    assert message in _error(capsys, "run", str(path))


def test_a_fleet_executor_needs_a_class_for_every_case(
    write_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_suite(SUITE.replace('hardware = ["cpu-avx2", "rack-b"]', ""))
    store = str(tmp_path / "s.duckdb")
    err = _error(capsys, "run", str(path), "--executor", "ray", "--store", store)
    assert "--executor ray: every case needs a hardware class" in err
    err = _error(capsys, "run", str(path), "--address", "auto", "--store", store)
    assert "--address is for --executor ray" in err
    assert not Path(store).exists()  # refused before a store was opened


def test_a_local_run_of_a_class_this_machine_lacks_is_refused(
    write_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lacking = [c for c in KNOWN_CLASSES if class_mismatch(fingerprint(), c) is not None]
    if not lacking:
        pytest.skip("this machine satisfies every known class")
    path = write_suite(SUITE)
    err = _error(capsys, "run", str(path), "--hardware", lacking[0],
                 "--store", str(tmp_path / "s.duckdb"))  # fmt: skip
    assert f"--executor local: this machine cannot run class {lacking[0]!r}" in err


@pytest.mark.parametrize("flag", ["--k8s-image", "--k8s-claim"])
def test_k8s_settings_without_manifests_are_refused(
    write_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str
) -> None:
    store = tmp_path / "s.duckdb"
    assert main(["run", str(write_suite(SUITE)), flag, "x", "--store", str(store)]) == 2
    assert "--k8s-image and --k8s-claim go with --k8s-manifests DIR" in capsys.readouterr().err
    assert not store.exists()


def test_k8s_manifests_are_valid_jobs_one_per_case(
    write_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    out = tmp_path / "jobs"
    assert main(["run", str(write_suite(SUITE)), "--k8s-manifests", str(out),
                 "--k8s-image", "registry.example/infrabench:1"]) == 0  # fmt: skip
    assert f"kubectl apply -f {out}" in capsys.readouterr().out
    manifests = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert len(manifests) == 4
    for m in manifests:
        kv.validate(m, "1.33", strict=True)  # raises ValidationError on a schema violation
        pod = m["spec"]["template"]["spec"]
        cls = m["metadata"]["labels"]["infrabench.io/hardware-class"]
        assert pod["nodeSelector"] == {"infrabench.io/hardware-class": cls}
        limits = pod["containers"][0]["resources"]["limits"]
        assert limits == {"infrabench.io/bench-slot": "1"}  # one case per node
        assert m["spec"]["backoffLimit"] == 2 and m["spec"]["activeDeadlineSeconds"] == 690
        command = pod["containers"][0]["command"]
        assert command[command.index("--hardware") + 1] == cls
    broken = {**manifests[0], "spec": {**manifests[0]["spec"], "backoffLimit": "two"}}
    with pytest.raises(kv.ValidationError):  # the check can fail: a broken Job is refused
        kv.validate(broken, "1.33", strict=True)


def test_an_operator_class_this_machine_does_not_advertise_is_refused_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    monkeypatch.delenv("INFRABENCH_HARDWARE_CLASS", raising=False)
    suite = tmp_path / "s.toml"
    suite.write_text('models = ["tiny-mlp"]\nbackends = ["fake"]\n')
    store = tmp_path / "s.duckdb"
    assert main(["run", str(suite), "--hardware", "warp-drive", "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "'warp-drive' is not a class infrabench can check" in err and len(err.splitlines()) == 1
    assert not store.exists()  # refused before the store opened


def test_ci_refuses_the_k8s_flags_it_would_ignore(
    write_suite: Callable[..., Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = tmp_path / "s.duckdb"
    assert main(["ci", str(write_suite(SUITE)), "--k8s-manifests", str(tmp_path / "jobs"),
                 "--baseline", str(tmp_path / "b.json"), "--update-baseline",
                 "--store", str(store)]) == 2  # fmt: skip
    assert "go with `infrabench run`" in capsys.readouterr().err and not store.exists()
