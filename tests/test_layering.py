"""The dependency direction: backends see only the backend protocol and the error types of the
harness; the harness reaches backends only through the entry-point registry; importing the
harness (or a backend module) imports no ML runtime."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backend import (
    BackendSettings,
    ChecksOptions,
    ReportsDetails,
    SimulatedDevice,
    backend_class,
    backend_names,
    native_precision_missing,
)
from harness.errors import BackendUnavailable

ROOT = Path(__file__).resolve().parents[1]
ALLOWED_FOR_BACKENDS = {"harness.backend", "harness.errors"}
RUNTIMES = ("torch", "onnxruntime", "openvino", "tvm", "onnx")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute module a file imports, anywhere in it (``TYPE_CHECKING`` blocks and
    function bodies included), as (line, dotted name); ``from a import b`` yields ``a.b``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_import_scanner_sees_every_form(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import harness.models\nfrom harness import sim\nfrom . import x\n"
        "if TYPE_CHECKING:\n    from harness.optimize.artifacts import Artifact\n"
        "def f():\n    from harness.environment import fingerprint\n"
    )
    assert imported_modules(source) == [
        (1, "harness.models"),
        (2, "harness.sim"),
        (5, "harness.optimize.artifacts.Artifact"),
        (7, "harness.environment.fingerprint"),
    ]


def test_backends_import_only_the_backend_protocol_and_errors_from_harness() -> None:
    files = sorted((ROOT / "backends").rglob("*.py"))
    assert any(p.name == "systolic.py" for p in files)  # the simulator lives with its backend
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in files
        for line, name in imported_modules(path)
        if _under(name, "harness")
        and not any(_under(name, allowed) for allowed in ALLOWED_FOR_BACKENDS)
    ]
    assert not wrong, "backends may import only harness.backend and harness.errors:\n" + "\n".join(
        wrong
    )


def test_the_harness_imports_no_backend_module() -> None:
    """The harness finds backends through the ``infrabench.backends`` entry points only."""
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / "harness").rglob("*.py"))
        for line, name in imported_modules(path)
        if _under(name, "backends")
    ]
    assert not wrong, "\n".join(wrong)


def test_importing_the_harness_and_the_backend_classes_imports_no_ml_runtime() -> None:
    code = (
        "import json, sys\n"
        "import harness, harness.backend, harness.cli\n"
        "loaded = {'harness': sorted(m for m in sys.modules if m.split('.')[0] in RUNTIMES)}\n"
        "for name in harness.backend.backend_names():\n"
        "    harness.backend.backend_class(name)\n"
        "loaded['backends'] = sorted(m for m in sys.modules if m.split('.')[0] in RUNTIMES)\n"
        "print(json.dumps(loaded))\n"
    ).replace("RUNTIMES", repr(set(RUNTIMES)))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    assert json.loads(proc.stdout) == {"harness": [], "backends": []}


@pytest.mark.parametrize("name", backend_names())
def test_optional_members_match_the_declared_capabilities(name: str) -> None:
    """A backend declaring simulated energy is a SimulatedDevice, and only such a backend is;
    every optional protocol a backend claims is a callable it really has."""
    cls = backend_class(name)
    backend = cls()
    assert isinstance(backend, SimulatedDevice) is (cls.capabilities.energy == "simulated")
    if isinstance(backend, ReportsDetails):
        assert callable(backend.report)
    if issubclass(cls, ChecksOptions):
        cls.check_options({}, "suite.toml")  # the defaults are valid


def test_the_known_optional_members() -> None:
    assert issubclass(backend_class("fpga-sim"), ChecksOptions)
    assert not issubclass(backend_class("onnxruntime"), ChecksOptions)
    assert isinstance(backend_class("tvm")(), ReportsDetails)
    assert isinstance(backend_class("fpga-sim")(), ReportsDetails)
    assert isinstance(backend_class("onnxruntime")(), ReportsDetails)  # provider, I/O binding
    assert not isinstance(backend_class("torch-eager")(), ReportsDetails)
    assert issubclass(backend_class("torch-cuda"), ChecksOptions)


def test_native_precision_comes_from_the_isa_flags_given() -> None:
    assert native_precision_missing("fp32", ()) is None
    assert native_precision_missing("int8", ()) is None
    assert native_precision_missing("bf16", ("avx2", "avx512_bf16")) is None
    assert native_precision_missing("fp16", ("asimdhp",)) is None
    missing = native_precision_missing("bf16", ("avx2", "avx512_fp16"))
    assert missing is not None and "no native bf16" in missing and "avx512_bf16" in missing


@pytest.mark.parametrize("name", ["torch-eager", "openvino"])
def test_a_reduced_precision_without_the_isa_flags_is_unavailable(name: str) -> None:
    """The backend judges the CPU by ``BackendSettings.isa_flags``, not by reading it itself."""
    from harness.backend import availability

    reason = availability(name)
    if reason is not None:
        pytest.skip(reason)
    from harness.optimize.artifacts import build, cache_root

    artifact = build("tiny-mlp", "fp32", cache_root())
    backend = backend_class(name)()
    settings = BackendSettings(
        threads=1, precision="bf16", isa_flags=("avx2",), input_names=("x",), output_names=("y",)
    )
    with pytest.raises(BackendUnavailable, match=f"{name} bf16: this CPU has no native bf16"):
        backend.load(artifact, settings)
