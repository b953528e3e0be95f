"""The TVM Relax backends: a hardware-aware target, static specialisation of the shared ONNX
artifact, compiled-library and tuning caches, and outputs checked like every backend."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from harness.backend import availability
from harness.environment import fingerprint
from harness.models import get_model
from harness.optimize.artifacts import build, cache_root
from harness.store import Store

pytestmark = pytest.mark.skipif(
    availability("tvm") is not None, reason=f"tvm is not usable here: {availability('tvm')}"
)


def test_the_target_comes_from_this_cpu() -> None:
    from tvm.target import codegen

    from backends.tvm_relax import target_config

    config = target_config(2, tuple(fingerprint()["isa_flags"]))
    assert config["kind"] == "llvm" and config["num-cores"] == 2
    assert codegen.llvm_is_valid_cpu(config["mcpu"], "x86_64" if "x86" in fingerprint()["machine"]
                                     else "")  # fmt: skip
    flags = set(fingerprint()["isa_flags"])
    if "avx2" in flags:
        assert "+avx2" in config["mattr"]
    if "avx512f" not in flags:
        assert "+avx512f" not in config.get("mattr", [])


def test_the_shared_artifact_is_specialised_to_static_shapes(tmp_path: Path) -> None:
    """The exported transformer's mask arithmetic is folded away for the importer, and the
    specialised graph computes the same outputs."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    from backends.tvm_relax import static_graph

    artifact = build("tiny-bert", "fp32", cache_root())
    inputs = get_model("tiny-bert").example_inputs(2, 16)
    static_graph(artifact.onnx_path, {k: v.shape for k, v in inputs.items()}, tmp_path / "s.onnx")
    graph = onnx.load(str(tmp_path / "s.onnx"))
    dims = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input]
    assert dims == [[2, 16], [2, 16]]
    ours = ort.InferenceSession(str(tmp_path / "s.onnx")).run(None, inputs)[0]
    theirs = ort.InferenceSession(str(artifact.onnx_path)).run(None, inputs)[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    from_onnx(graph, shape_dict={k: list(v.shape) for k, v in inputs.items()})  # imports


def test_the_library_is_kept_under_the_cache_dir_given_and_nowhere_without_one(
    tmp_path: Path,
) -> None:
    from backends.tvm_relax import TvmBackend
    from harness.backend import BackendSettings

    artifact = build("tiny-mlp", "fp32", cache_root())
    inputs = get_model("tiny-mlp").example_inputs(2, None)
    shapes = {k: v.shape for k, v in inputs.items()}
    (expected,) = ort.InferenceSession(str(artifact.onnx_path)).run(None, inputs)
    reports = []
    for cache_dir in (tmp_path, tmp_path, None):
        backend = TvmBackend()
        backend.load(artifact, BackendSettings(threads=1, input_shapes=shapes, cache_dir=cache_dir))
        backend.prepare(inputs)
        backend.run()
        np.testing.assert_allclose(backend.outputs()["y"], expected, rtol=1e-4, atol=1e-5)
        reports.append(backend.report()["tvm"])
        scratch = backend._scratch
        backend.close()
    kept, reused, uncached = reports
    assert not kept["cached"] and reused["cached"] and not uncached["cached"]
    assert (tmp_path / "tvm" / kept["cache_key"] / "model.so").is_file()
    assert scratch is not None and not Path(scratch.name).exists()  # removed at close


def _run(tmp_path: Path, body: str) -> list:
    suite = tmp_path / "tvm.toml"
    suite.write_text(textwrap.dedent(body))
    store = tmp_path / "store.duckdb"
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
         "run", str(suite), "--store", str(store)],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Store(store, read_only=True) as s:
        return s.cases(s.resolve_run("latest"))


SUITE = """
    models = ["tiny-bert"]
    backends = ["tvm"]
    batch_sizes = [2]
    seq_lens = [16]
    threads = [2]
    [measure]
    budget_s = 0.5
    warmup_max_s = 0.3
    min_samples = 20
    timeout_s = 600
"""


@pytest.mark.slow
def test_tvm_compiles_runs_scores_and_caches_the_library(tmp_path: Path) -> None:
    (first,) = _run(tmp_path, SUITE)
    assert first.status == "ok", first.reason
    assert first.fidelity is not None and first.fidelity > 0.9999
    assert first.compile_s and first.compile_s > 0 and first.executed_precision == "fp32"
    details = json.loads(first.details)["tvm"]
    assert details["cached"] is False and details["trials"] == 0
    assert details["target"]["mcpu"] and details["build_s"] > 0
    assert "apache-tvm-ffi" in json.loads(first.versions)
    (second,) = _run(tmp_path, SUITE)  # same artifact, shape, target, version: no compile
    again = json.loads(second.details)["tvm"]
    assert again["cached"] is True and again["cache_key"] == details["cache_key"]


def _matmul(path: Path) -> Path:
    """y = x [batch, 64] @ W [64, 64], the weights inside the file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])],
        initializer=[numpy_helper.from_array(w, "W")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.slow
def test_tvm_tuned_tunes_once_and_reuses_the_result(tmp_path: Path) -> None:
    """In this process, on one MatMul (one tuning task: MetaSchedule starts its builder and
    runner processes once per task) for a target without VNNI/AMX (whose builders import TVM's
    tensor intrinsics, ~30 s each on 2 cores). The suite-driven run on this CPU's own target
    is the integration test below."""
    from backends.tvm_relax import TvmTunedBackend
    from harness.backend import BackendSettings

    artifact = build(f"onnx:{_matmul(tmp_path / 'mm.onnx')}", "fp32", cache_root())
    inputs = {"x": np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)}
    (expected,) = ort.InferenceSession(str(artifact.onnx_path)).run(None, inputs)
    portable = tuple(
        f for f in fingerprint()["isa_flags"] if "vnni" not in f and not f.startswith("amx")
    )
    settings = BackendSettings(threads=2, input_shapes={"x": (2, 64)}, cache_dir=tmp_path,
                               options={"trials": 1}, isa_flags=portable)  # fmt: skip
    reports = []
    for _ in range(2):
        backend = TvmTunedBackend()
        backend.load(artifact, settings)
        backend.prepare(inputs)
        backend.run()
        np.testing.assert_allclose(backend.outputs()["y"], expected, rtol=1e-4, atol=1e-5)
        reports.append(backend.report()["tvm"])
        backend.close()
    tuned, again = reports
    assert tuned["trials"] == 1 and tuned["tuning_s"] > 0 and tuned["cached"] is False
    assert again["cached"] is True and again["cache_key"] == tuned["cache_key"]


# Minutes on 2 cores, more on a CPU with VNNI or AMX (see above): MetaSchedule's builder and
# runner processes per task. The tuning and its reuse are checked in the full set above; this
# adds the suite's [options.tvm-tuned] table, this CPU's own target and a stored row.
@pytest.mark.integration
def test_a_tvm_tuned_suite_tunes_once_and_reuses_the_result(tmp_path: Path) -> None:
    # tiny-mlp: two fused tasks, so the budget test stays short (tiny-bert has ~25 tasks).
    body = SUITE.replace('backends = ["tvm"]', 'backends = ["tvm-tuned"]').replace(
        'models = ["tiny-bert"]', 'models = ["tiny-mlp"]'
    )
    body += "    [options.tvm-tuned]\n    trials = 8\n"
    (tuned,) = _run(tmp_path, body)
    assert tuned.status == "ok", tuned.reason
    details = json.loads(tuned.details)["tvm"]
    assert details["trials"] == 8 and details["tuning_s"] > 0 and details["cached"] is False
    assert tuned.fidelity > 0.9999
    (again,) = _run(tmp_path, body)
    assert json.loads(again.details)["tvm"]["cached"] is True
