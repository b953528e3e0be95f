"""Bring your own model: onnx:PATH, hf:DIR and torch:MODULE:FACTORY, with shape bindings, sweeps
and the errors a user meets. Every model here is built by the tests themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from harness.cli import main
from harness.errors import ConfigError, VariantNotApplicable
from harness.models import get_model
from harness.models.inputs import TensorSpec, generate, parse_binding, resolve_shapes
from harness.models.minilm import model_dir
from harness.optimize.artifacts import build, cache_root
from harness.plan import plan
from harness.store import Store
from harness.suite import load_suite

MEASURE = """
[measure]
budget_s = 0.3
warmup_max_s = 0.2
min_samples = 20
timeout_s = 120
"""


def _export(module: torch.nn.Module, args: tuple, path: Path, **kwargs: object) -> Path:
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), opset_version=17, dynamo=False,
                          **kwargs)  # type: ignore[arg-type]  # fmt: skip
    return path


class Detector(torch.nn.Module):
    """A convolutional detector head: boxes and class scores per cell, any image size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, 2, 1)
        )
        self.boxes = torch.nn.Conv2d(16, 4, 1)
        self.scores = torch.nn.Conv2d(16, 3, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(images).relu()
        return self.boxes(features), self.scores(features).sigmoid()


class BagOfWords(torch.nn.Module):
    """int64 token ids and a bool mask in, masked mean embedding out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = torch.nn.Embedding(500, 16)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(pooled)


class Recurrent(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gru = torch.nn.GRU(8, 12, batch_first=True)

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, hn = self.gru(x, h0)
        return y, hn


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("user-models")
    paths = {
        "detector": _export(
            Detector(), (torch.rand(1, 3, 32, 32),), base / "detector.onnx",
            input_names=["images"], output_names=["boxes", "scores"],
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                          "boxes": {0: "batch"}, "scores": {0: "batch"}},
        ),
        "text": _export(
            BagOfWords(), (torch.randint(0, 500, (2, 8)), torch.ones(2, 8, dtype=torch.bool)),
            base / "text.onnx", input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                          "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}},
        ),
        "recurrent": _export(
            Recurrent(), (torch.rand(2, 5, 8), torch.zeros(1, 2, 12)), base / "gru.onnx",
            input_names=["x", "h0"], output_names=["y", "hn"],
            dynamic_axes={"x": {0: "batch", 1: "steps"}, "h0": {1: "batch"},
                          "y": {0: "batch", 1: "steps"}, "hn": {1: "batch"}},
        ),
    }  # fmt: skip
    paths["control_flow"] = _if_model(base / "if.onnx")
    paths["strings"] = _string_input_model(base / "strings.onnx")
    paths["not_onnx"] = base / "notes.onnx"
    paths["not_onnx"].write_text("this is not a protobuf\n")
    return paths


def _if_model(path: Path) -> Path:
    """y = relu(x) if sum(x) > 0 else -x: an If node with two subgraphs."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])
    branch_out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    then = helper.make_graph([helper.make_node("Relu", ["x"], ["out"])], "then", [], [branch_out])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["out"])], "else", [], [branch_out])
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", 1, [], [0.0])),
        helper.make_node("Greater", ["total", "zero"], ["positive"]),
        helper.make_node("If", ["positive"], ["y"], then_branch=then, else_branch=other),
    ]
    graph = helper.make_graph(nodes, "if-model", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _string_input_model(path: Path) -> Path:
    x = helper.make_tensor_value_info("words", TensorProto.STRING, ["batch"])
    y = helper.make_tensor_value_info("same", TensorProto.STRING, ["batch"])
    graph = helper.make_graph([helper.make_node("Identity", ["words"], ["same"])], "s", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _run(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
         "run", *args, "--store", str(store)],
        capture_output=True, text=True, timeout=900, check=False, env=dict(os.environ),
    )  # fmt: skip  # env: the C-level environ of a pytest process can carry COLUMNS=80


def _suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(textwrap.dedent(body) + MEASURE)
    return path


def _rows(store: Path) -> list:
    with Store(store, read_only=True) as s:
        return s.cases(s.resolve_run("latest"))


# --- shape bindings and generated data -----------------------------------------------------


IMAGE = TensorSpec("images", "float32", ("batch", 3, "height", "width"))
IDS = TensorSpec("input_ids", "int64", ("batch", "sequence"), vocab=500)


def test_bindings_fill_every_dynamic_axis() -> None:
    shapes = resolve_shapes([IMAGE], 4, None, ["height=64", "width=96"], "m")
    assert shapes == {"images": (4, 3, 64, 96)}
    assert resolve_shapes([IMAGE], 2, None, ["images=1x3x32x48"], "m") == {"images": (2, 3, 32, 48)}
    assert resolve_shapes([IDS], 8, 128, [], "m") == {"input_ids": (8, 128)}
    unnamed = TensorSpec("pixels", "float32", (None, 3, None, None))  # image axes by position
    assert resolve_shapes([unnamed], 1, None, ["height=5", "width=7"], "m")["pixels"] == (
        1,
        3,
        5,
        7,
    )


def test_an_unbound_axis_names_the_input_the_axis_and_a_flag_to_fix_it() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_shapes([IMAGE], 1, None, [], "onnx:det.onnx")
    message = str(err.value)
    assert "input 'images' axis 2 ('height')" in message
    assert "--shape images=1x3x224x224" in message and "--dim height=224" in message


def test_bad_bindings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="matches no dynamic axis"):
        resolve_shapes([IMAGE], 1, None, ["height=8", "width=8", "depth=3"], "m")
    with pytest.raises(ConfigError, match="axis 1 is static 3"):
        resolve_shapes([IMAGE], 1, None, ["images=1x4x8x8"], "m")
    with pytest.raises(ConfigError, match="rank 3"):
        resolve_shapes([IMAGE], 1, None, ["images=1x8x8"], "m")
    with pytest.raises(ConfigError, match="bad shape binding"):
        parse_binding("height=-3")


def test_a_static_batch_skips_other_batch_sizes() -> None:
    static = TensorSpec("x", "float32", (1, 16))
    assert resolve_shapes([static], 1, None, [], "m") == {"x": (1, 16)}
    with pytest.raises(VariantNotApplicable, match="static batch of 1"):
        resolve_shapes([static], 8, None, [], "m")


def test_data_is_generated_by_dtype_and_role() -> None:
    rng = np.random.default_rng(0)
    ids = generate(IDS, (4, 32), rng)
    assert ids.dtype == np.int64 and ids.min() >= 1 and ids.max() < 500
    mask = generate(TensorSpec("attention_mask", "bool", ("b", "s")), (4, 32), rng)
    assert mask.dtype == bool and mask.all()
    state = generate(TensorSpec("h0", "float32", (1, "b", 12)), (1, 4, 12), rng)
    assert not state.any()
    image = generate(IMAGE, (2, 3, 8, 8), rng)
    assert image.dtype == np.float32 and image.min() >= 0 and image.max() < 1
    half = generate(TensorSpec("x", "float16", ("b", 4)), (2, 4), rng)
    assert half.dtype == np.float16


def test_an_onnx_file_is_discovered_from_its_graph(models: dict[str, Path]) -> None:
    det = get_model(f"onnx:{models['detector']}")
    assert det.input_names == ("images",) and det.output_names == ("boxes", "scores")
    assert not det.uses_sequence
    text = get_model(f"onnx:{models['text']}")
    assert text.uses_sequence
    specs = {s.name: s for s in text.specs}  # type: ignore[attr-defined]
    assert specs["input_ids"].vocab == 500 and specs["attention_mask"].dtype == "bool"
    inputs = get_model(f"onnx:{models['detector']}", ("height=40", "width=24")).example_inputs(
        2, None
    )
    assert inputs["images"].shape == (2, 3, 40, 24)


def test_sample_inputs_from_an_npz_replace_generated_ones(
    models: dict[str, Path], tmp_path: Path
) -> None:
    images = np.random.default_rng(5).random((3, 3, 16, 16), dtype=np.float32)
    np.savez(tmp_path / "samples.npz", images=images)
    model = get_model(f"onnx:{models['detector']}#inputs={tmp_path / 'samples.npz'}")
    batch = model.example_inputs(2, None)["images"]
    np.testing.assert_array_equal(batch, images[:2])  # no binding needed: the samples fix H, W
    np.savez(tmp_path / "wrong.npz", pixels=images)
    with pytest.raises(ConfigError, match="arrays pixels match no model input"):
        get_model(f"onnx:{models['detector']}#inputs={tmp_path / 'wrong.npz'}")


# --- runs through every installed CPU backend ----------------------------------------------


@pytest.mark.slow
def test_a_detector_with_a_dynamic_image_size_sweeps_in_one_command(
    models: dict[str, Path], tmp_path: Path
) -> None:
    suite = _suite(tmp_path, 'models = ["tiny-mlp"]\nbackends = ["onnxruntime"]\n')
    store = tmp_path / "store.duckdb"
    proc = _run(
        str(suite), "--model", f"onnx:{models['detector']}", "--image-size", "32,64",
        "--batch", "1,2", "--backend", "onnxruntime", "--backend", "openvino",
        "--backend", "torch-eager", store=store,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = _rows(store)
    assert len(rows) == 2 * 2 * 3  # image sizes x batches x backends
    ran = [r for r in rows if r.backend != "torch-eager"]
    assert all(r.status == "ok" for r in ran), [r.reason for r in ran]
    assert {r.shape for r in ran} == {  # the arrays fed, not the request
        f"b{b}-images={b}x3x{s}x{s}" for b in (1, 2) for s in (32, 64)
    }
    for row in ran:
        assert row.fidelity is not None and row.fidelity > 0.999 and row.fidelity_ok
        assert row.latency_ms_p50 and row.throughput_per_s and row.energy_j_per_inference
        assert row.artifact_sha256 and row.params_m and row.cost_usd_per_million
    assert "fidelity_per_output" in ran[0].details  # two outputs, each scored
    skipped = [r for r in rows if r.backend == "torch-eager"]
    assert all(r.status == "skipped" and "ONNX file" in (r.reason or "") for r in skipped)
    assert "b2-images=2x3x64x64" in proc.stdout  # the shape column names the fed shapes


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["text", "recurrent", "control_flow"])
def test_int64_bool_recurrent_and_control_flow_graphs_run(
    kind: str, models: dict[str, Path], tmp_path: Path
) -> None:
    body = f"""
        models = ["onnx:{models[kind]}"]
        backends = ["onnxruntime", "openvino"]
        variants = ["fp32", "int8-dynamic"]
        batch_sizes = [1, 4]
        seq_lens = [16]
    """
    if kind == "recurrent":
        body += "[dims]\nsteps = [10]\n"
    store = tmp_path / "store.duckdb"
    proc = _run(str(_suite(tmp_path, body)), store=store)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(store)
    assert len(rows) == 8
    for row in rows:  # ran and scored, or skipped with the runtime's own reason
        assert row.status == "ok" or (row.status == "skipped" and row.reason), row.reason
    fp32 = [r for r in rows if r.variant == "fp32"]
    assert all(r.status == "ok" and r.fidelity and r.fidelity > 0.999 for r in fp32)


@pytest.mark.slow
def test_quantization_applies_to_an_onnx_file_but_pruning_is_skipped(
    models: dict[str, Path], tmp_path: Path
) -> None:
    body = f"""
        models = ["onnx:{models["detector"]}"]
        backends = ["onnxruntime"]
        variants = ["int8-static", "pruned-unstructured-50"]
        image_sizes = [32]
    """
    store = tmp_path / "store.duckdb"
    proc = _run(str(_suite(tmp_path, body)), store=store)
    assert proc.returncode == 0, proc.stderr
    rows = {r.variant: r for r in _rows(store)}
    assert rows["int8-static"].status == "ok" and rows["int8-static"].fidelity > 0.9
    assert rows["int8-static"].executed_precision == "int8"
    assert rows["pruned-unstructured-50"].status == "skipped"
    assert "no PyTorch module" in rows["pruned-unstructured-50"].reason


FACTORY = """
import torch


def build():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    return module, {"features": torch.rand(2, 12)}


def broken():
    raise RuntimeError("no weights here")
"""


@pytest.mark.slow
def test_a_torch_factory_runs_on_torch_and_onnx_backends(tmp_path: Path) -> None:
    (tmp_path / "my_models.py").write_text(FACTORY)
    model = f"torch:{tmp_path / 'my_models.py'}:build"
    body = f"""
        models = ["{model}"]
        backends = ["torch-eager", "onnxruntime"]
        variants = ["fp32", "pruned-unstructured-50", "distilled-2l"]
        batch_sizes = [8]
    """  # one batch size, not the example's 2: each more is a worker per case, same path
    store = tmp_path / "store.duckdb"
    proc = _run(str(_suite(tmp_path, body)), store=store)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(store)
    ok = [r for r in rows if r.variant != "distilled-2l"]
    assert len(ok) == 4 and all(r.status == "ok" for r in ok), [r.reason for r in ok]
    assert all(r.fidelity is not None for r in ok)
    fp32 = [r for r in ok if r.variant == "fp32"]
    assert all(r.fidelity > 0.999 for r in fp32)
    distilled = [r for r in rows if r.variant == "distilled-2l"]
    assert all(r.status == "skipped" and "transformer" in r.reason for r in distilled)


def test_a_module_name_factory_imports_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_models.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    model = get_model("torch:my_models:build")
    assert model.input_names == ("features",) and model.output_names == ("output",)
    assert model.example_inputs(5, None)["features"].shape == (5, 12)


def _tiny_hf_dir(path: Path, classifier: bool) -> Path:
    import transformers

    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    cls = transformers.BertForSequenceClassification if classifier else transformers.BertModel
    cls(config).save_pretrained(str(path), safe_serialization=True)
    shutil.copy(model_dir() / "tokenizer.json", path / "tokenizer.json")
    return path


@pytest.mark.parametrize("classifier", [False, True])
def test_a_hugging_face_directory_takes_its_head_from_the_config(
    classifier: bool, tmp_path: Path
) -> None:
    model = get_model(f"hf:{_tiny_hf_dir(tmp_path / 'hf', classifier)}")
    assert model.task == ("classifier" if classifier else "embedding")


@pytest.mark.parametrize(
    "classifier",
    [
        # The embedding head's run takes the same path (hf export, quantization, a worker per
        # case on both backends) as the classifier's below, which stays in the full set; a
        # cosine-scored row is checked there by test_cli.py, the head by the test above.
        pytest.param(False, marks=pytest.mark.integration),
        pytest.param(True, marks=pytest.mark.slow),
    ],
)
def test_a_hugging_face_directory_runs_with_its_head_from_the_config(
    classifier: bool, tmp_path: Path
) -> None:
    directory = _tiny_hf_dir(tmp_path / "hf", classifier)
    model = get_model(f"hf:{directory}")
    assert model.task == ("classifier" if classifier else "embedding")
    body = f"""
        models = ["hf:{directory}"]
        backends = ["torch-eager", "onnxruntime"]
        variants = ["fp32", "int8-dynamic"]
        seq_lens = [32]
    """
    store = tmp_path / "store.duckdb"
    proc = _run(str(_suite(tmp_path, body)), store=store)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(store)
    assert len(rows) == 4 and all(r.status == "ok" for r in rows), [r.reason for r in rows]
    expected = "top1_agreement" if classifier else "cosine"
    assert all(r.fidelity_metric == expected for r in rows)
    assert all(r.fidelity > 0.999 for r in rows if r.variant == "fp32")


def test_a_copy_of_the_minilm_directory_gives_minilm_numbers(tmp_path: Path) -> None:
    copy = tmp_path / "minilm-copy"
    copy.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (copy / name).symlink_to(model_dir() / name)
    ours, zoo = get_model(f"hf:{copy}"), get_model("minilm-l6")
    inputs = zoo.example_inputs(3, 64)
    for name, array in ours.example_inputs(3, 64).items():
        np.testing.assert_array_equal(array, inputs[name])
    with torch.inference_mode():
        args = [torch.from_numpy(inputs[n]) for n in zoo.input_names]
        np.testing.assert_allclose(ours.build_torch()(*args), zoo.build_torch()(*args), atol=1e-6)


def test_hf_text_from_a_user_file(tmp_path: Path) -> None:
    directory = _tiny_hf_dir(tmp_path / "hf", classifier=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(f"patient {i} reports mild pain on day {i}" for i in range(30)))
    model = get_model(f"hf:{directory}#text={notes}")
    assert model.evaluation_inputs(16)["input_ids"].shape == (6, 16)  # 20% of 30 lines
    short = tmp_path / "short.txt"
    short.write_text("one line\n")
    with pytest.raises(ConfigError, match="at least 10"):
        get_model(f"hf:{directory}#text={short}")


# --- clear errors --------------------------------------------------------------------------


def test_user_model_errors_are_one_line_and_exit_2(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_models.py").write_text(FACTORY)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    cases = {
        "file not found": ["--model", "onnx:/nonexistent/model.onnx"],
        "not an ONNX model": ["--model", f"onnx:{models['not_onnx']}"],
        "axis 2 ('height') is dynamic": ["--model", f"onnx:{models['detector']}"],
        "dtype string": ["--model", f"onnx:{models['strings']}"],
        "cannot import 'no_such_package.models'": ["--model", "torch:no_such_package.models:f"],
        "has no callable 'missing'": ["--model", f"torch:{tmp_path / 'my_models.py'}:missing"],
        "the factory failed: RuntimeError": ["--model", f"torch:{tmp_path}/my_models.py:broken"],
        "is a pickle and is never loaded": ["--model", f"hf:{pickled}"],
        "--batch must be comma-separated": ["--model", "tiny-mlp", "--batch", "1,x"],
        "apply to ONNX files": ["--model", "tiny-mlp", "--dim", "height=3"],
        "--inputs needs a --model onnx:PATH": ["--model", "tiny-mlp", "--inputs", "x.npz"],
    }
    store = tmp_path / "store.duckdb"
    for expected, args in cases.items():
        # --inline: the probe runs here (the worker path is covered in test_faults.py)
        assert main(["run", *args, "--inline", "--store", str(store)]) == 2, expected
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err
    assert not store.exists()  # nothing was started


def test_suite_paths_are_relative_to_the_suite_file(
    models: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copy(models["detector"], tmp_path / "det.onnx")
    suite = _suite(tmp_path, 'models = ["onnx:det.onnx"]\nbackends = ["onnxruntime"]\n'
                   'shapes = ["images=1x3x16x16"]\n')  # fmt: skip
    loaded = load_suite(suite)
    assert loaded.models == (f"onnx:{tmp_path / 'det.onnx'}",)
    (case,) = plan(loaded).cases
    assert case.bindings == ("images=1x3x16x16",) and case.shape == "b1-images=1x3x16x16"


def test_the_onnx_artifact_is_the_users_file(models: dict[str, Path]) -> None:
    artifact = build(f"onnx:{models['detector']}", "fp32", cache_root())
    assert artifact.onnx_path.read_bytes() == models["detector"].read_bytes()
    assert artifact.params_m == pytest.approx(sum(p.numel() for p in Detector().parameters()) / 1e6)
