"""tvm and tvm-tuned: Apache TVM's Relax compiler on the same ONNX artifact, run by the Relax VM.

Per case the artifact is specialised to the case's static shapes (ONNX Runtime's basic, portable
graph rewrites with the dynamic dimensions fixed: constant folding resolves the shape arithmetic
of exported transformers, which the Relax ONNX importer cannot convert), imported with the Relax
ONNX frontend and compiled for an LLVM target chosen from this CPU: LLVM's host CPU name as
``mcpu`` and the instruction-set flags of the fingerprint as ``mattr``. ``tvm`` builds with
Relax's default pipeline (no tuning); ``tvm-tuned`` first runs MetaSchedule with a trial budget
(``[options.tvm-tuned] trials``, default 64) and compiles with the best schedules found.

Compiled libraries are cached under ``<cache_dir>/tvm`` (``BackendSettings.cache_dir``; without
one, in a temporary directory removed at ``close``) by (artifact sha256, input shapes, target,
TVM version, trials); a tuning database is kept next to its library and reused. ``compile_s`` is
import + tuning + build, or the load of a cached library; ``details.tvm`` says which.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.backend import Artifact, BackendSettings, Capabilities, staged
from harness.errors import BackendError, BackendUnavailable

INSTALL = 'pip install "infrabench[tvm]"'
# Fingerprint ISA flags -> LLVM target features.
_MATTR = {
    "avx": "+avx", "avx2": "+avx2", "fma": "+fma", "f16c": "+f16c", "avx512f": "+avx512f",
    "avx512bw": "+avx512bw", "avx512vl": "+avx512vl", "avx512dq": "+avx512dq",
    "avx512_vnni": "+avx512vnni", "avx512_bf16": "+avx512bf16", "avx_vnni": "+avxvnni",
    "amx_tile": "+amx-tile", "amx_int8": "+amx-int8", "amx_bf16": "+amx-bf16",
    "asimd": "+neon", "sve": "+sve",
}  # fmt: skip
DEFAULT_TRIALS = 64
BUILD_TIMEOUT_S = 300.0


def target_config(threads: int, isa_flags: tuple[str, ...]) -> dict[str, Any]:
    """The LLVM target for this CPU: host CPU name, the features of its ISA flags (the
    fingerprint's, ``BackendSettings.isa_flags``), cores."""
    from tvm.target import codegen

    config: dict[str, Any] = {"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(),
                              "num-cores": threads}  # fmt: skip
    mattr = sorted({_MATTR[f] for f in isa_flags if f in _MATTR})
    if mattr:
        config["mattr"] = mattr
    return config


def static_graph(source: Path, shapes: Mapping[str, tuple[int, ...]], target: Path) -> None:
    """``source`` with its dynamic dimensions fixed to ``shapes`` and constants folded (ONNX
    Runtime's basic level: standard ONNX operators only)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(source), load_external_data=False)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    for value in model.graph.input:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param and value.name in shapes:
                options.add_free_dimension_override_by_name(dim.dim_param, shapes[value.name][axis])
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


class TvmBackend:
    name: ClassVar[str] = "tvm"
    capabilities: ClassVar[Capabilities] = Capabilities(
        consumes="onnx",
        options={"trials": int},
        runtime_modules=("tvm", "onnxruntime"),
        install_hint=INSTALL,
    )
    default_trials: ClassVar[int] = 0

    def __init__(self) -> None:
        self._vm: Any = None
        self._args: list[Any] = []
        self._params: list[Any] = []
        self._out: Any = None
        self._input_names: list[str] = []
        self._output_names: list[str] = []
        self._report: dict[str, Any] = {}
        self._scratch: tempfile.TemporaryDirectory[str] | None = None  # no cache_dir given

    def check(self) -> None:
        try:
            import tvm
            from tvm import relax  # noqa: F401
            from tvm.relax.frontend import onnx  # noqa: F401
        except Exception as exc:  # a broken native library raises more than ImportError
            raise BackendUnavailable(f"tvm cannot be imported ({INSTALL}): {exc}") from None
        if not tvm.runtime.enabled("llvm"):
            raise BackendUnavailable("this TVM build has no LLVM code generator")

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        import tvm

        versions = {"tvm": tvm.__version__}
        for package in ("apache-tvm-ffi", "xgboost-cpu", "xgboost"):
            try:
                versions[package] = version(package)
            except Exception:  # not installed
                continue
        return versions

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        import tvm
        from tvm import relax

        if settings.device != "cpu":
            raise BackendUnavailable(f"tvm runs on the CPU here, not {settings.device!r}")
        if settings.precision != "fp32":
            raise BackendUnavailable(f"tvm {settings.precision}: only fp32 graphs are compiled")
        trials = int(settings.options.get("trials", self.default_trials))
        if trials < 0:
            raise BackendError(f"{self.name}: trials must be >= 0, got {trials}")
        config = target_config(settings.threads, settings.isa_flags)
        key = _cache_key(artifact.sha256, settings.input_shapes, config, trials)
        directory = self._cache_dir(settings) / key
        library = directory / "model.so"
        started = time.perf_counter()
        self._report = {"target": config, "trials": trials, "cache_key": key}
        if library.is_file():
            self._report["cached"] = True
        else:
            self._report["cached"] = False
            self._compile(artifact, settings, config, trials, directory)
        meta = json.loads((directory / "meta.json").read_text())
        self._input_names, self._output_names = meta["inputs"], meta["outputs"]
        self._report.update({k: meta[k] for k in ("import_s", "tuning_s", "build_s")})
        dev = tvm.cpu()
        self._vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), dev)
        compile_s = time.perf_counter() - started
        self._report["load_or_compile_s"] = compile_s
        return compile_s

    def _compile(
        self,
        artifact: Artifact,
        settings: BackendSettings,
        config: dict[str, Any],
        trials: int,
        directory: Path,
    ) -> None:
        import onnx
        import tvm
        from tvm import relax
        from tvm.relax.frontend.onnx import from_onnx

        with staged(directory, "model.so") as staging:
            started = time.perf_counter()
            static_graph(artifact.onnx_path, settings.input_shapes, staging / "static.onnx")
            graph = onnx.load(str(staging / "static.onnx"))
            shapes = {k: list(v) for k, v in settings.input_shapes.items()}
            try:
                mod = from_onnx(graph, shape_dict=shapes, keep_params_in_input=False)
            except Exception as exc:  # the importer's own reason (an unsupported operator)
                raise BackendUnavailable(
                    f"TVM's Relax ONNX importer cannot convert this graph: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                ) from None
            import_s = time.perf_counter() - started
            target = tvm.target.Target(config)
            tuning_s = 0.0
            started = time.perf_counter()
            if trials > 0:
                executable = _tuned(mod, target, trials, staging / "tuning")
                tuning_s = time.perf_counter() - started
                started = time.perf_counter()
            else:
                with target:
                    lowered = relax.get_pipeline("zero")(mod)
                executable = relax.build(lowered, target=target)
            executable.export_library(str(staging / "model.so"))
            build_s = time.perf_counter() - started
            constants = {t.name for t in graph.graph.initializer}
            meta = {
                "inputs": [i.name for i in graph.graph.input if i.name not in constants],
                "outputs": [o.name for o in graph.graph.output],
                "import_s": import_s,
                "tuning_s": tuning_s,
                "build_s": build_s,
                "artifact_sha256": artifact.sha256,
                "shapes": shapes,
                "target": config,
                "tvm": tvm.__version__,
                "trials": trials,
            }
            (staging / "meta.json").write_text(json.dumps(meta, indent=2))
            (staging / "static.onnx").unlink()  # the library has the weights; keep the cache lean

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        import tvm

        dev = tvm.cpu()
        self._args = [
            tvm.runtime.tensor(np.ascontiguousarray(inputs[n]), dev) for n in self._input_names
        ]

    def run(self) -> int | None:
        self._out = self._vm["main"](*self._args)
        return None

    def synchronize(self) -> None:
        return None  # the Relax VM on the CPU returns when the work is done

    def outputs(self) -> dict[str, np.ndarray]:
        values = self._out if isinstance(self._out, list | tuple) else [self._out]
        if len(values) == 1 and not hasattr(values[0], "numpy"):
            values = list(values[0])  # a tuple of tensors
        arrays = {
            name: np.asarray(value.numpy())
            for name, value in zip(self._output_names, values, strict=False)
        }  # floats as float32; integers and booleans keep their dtype (exact comparison)
        return {n: a.astype(np.float32) if a.dtype.kind == "f" else a for n, a in arrays.items()}

    def executed_precision(self) -> str | None:
        return "fp32"

    def report(self) -> dict[str, Any]:
        return {"tvm": self._report}

    def _cache_dir(self, settings: BackendSettings) -> Path:
        if settings.cache_dir is not None:
            return settings.cache_dir / "tvm"
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="infrabench-tvm-")
        return Path(self._scratch.name)

    def close(self) -> None:
        self._vm = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None


class TvmTunedBackend(TvmBackend):
    name: ClassVar[str] = "tvm-tuned"
    default_trials: ClassVar[int] = DEFAULT_TRIALS


def _tuned(mod: Any, target: Any, trials: int, work_dir: Path) -> Any:
    """MetaSchedule with ``trials`` measured candidates in all, shared by every task that
    computes (estimated FLOPs above 1; pure data movement keeps the default schedule): an
    unscheduled task runs single-threaded scalar loops, so coverage matters more than depth on a
    small budget. Then a build from the best records."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops

    # Tasks come from the module legalized and fused exactly as compile_relax prepares it, so
    # the records (keyed by the fused TIR functions) are the ones its build looks up; the build
    # itself starts again from the unfused module.
    fused = tvm.transform.Sequential([
        relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(), relax.transform.FuseOps(), relax.transform.FuseTIR(),
    ])(mod)  # fmt: skip
    tasks = ms.relax_integration.extract_tasks(fused, target)
    chosen = sorted(
        (t for t in tasks if estimate_tir_flops(t.dispatched[0]) > 1),
        key=lambda t: -estimate_tir_flops(t.dispatched[0]) * t.weight,
    ) or list(tasks)
    per_task = max(1, trials // len(chosen))
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        extracted_tasks=chosen, work_dir=str(work_dir), seed=0
    )
    builder = ms.builder.LocalBuilder(
        timeout_sec=BUILD_TIMEOUT_S, f_build=None if _needs_intrinsics(target) else _build
    )
    database = ms.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=str(work_dir),
        max_trials_global=max(trials, len(chosen)), max_trials_per_task=per_task,
        num_trials_per_iter=per_task, builder=builder,
    )  # fmt: skip
    return ms.relax_integration.compile_relax(database, mod, target, params=None)


def _needs_intrinsics(target: Any) -> bool:
    """Tensorized x86 schedules (VNNI, AMX) need TVM's tensor intrinsics in the builder."""
    features = " ".join(str(f) for f in target.attrs.get("mattr", []))
    return "vnni" in features or "amx" in features


def _build(mod: Any, target: Any, _params: Any) -> Any:
    """MetaSchedule's default build without importing TVM's tensor intrinsics, which costs
    each builder process about 30 s on 2 cores; for targets that do not tensorize."""
    from tvm.driver import build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def _cache_key(
    sha256: str, shapes: Mapping[str, tuple[int, ...]], config: dict[str, Any], trials: int
) -> str:
    import tvm

    data = {"artifact": sha256, "shapes": {k: list(v) for k, v in sorted(shapes.items())},
            "target": config, "tvm": tvm.__version__, "trials": trials}  # fmt: skip
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]
