"""torch-cuda: the PyTorch module on an NVIDIA GPU, timed with CUDA events.

Precision (the variant's runtime step): fp32, or the whole module cast to fp16 or bf16 (weights
and activations; LayerNorm and softmax run in that type too, as in a half-precision deployment).
bf16 needs compute capability 8.0 or newer (Ampere: the first with bf16 tensor cores; older cards
only emulate it).

Options (``[options.torch-cuda]``):

* ``compile``: ``off`` (eager), or ``torch.compile`` with an inductor mode: ``default``,
  ``reduce-overhead`` (inductor's own CUDA graphs) or ``max-autotune`` (kernel autotuning and
  CUDA graphs). Compilation is lazy in torch, so ``load`` runs the example inputs until the
  compiled graphs exist (three calls); that time is ``compile_s``.
* ``cuda_graphs``: capture one forward pass in a ``torch.cuda.CUDAGraph`` on static input
  buffers and replay it; ``prepare`` copies new inputs into the buffers (outside the timed
  region), a new shape re-captures. Not combinable with ``reduce-overhead`` or
  ``max-autotune``, which capture graphs themselves.

Timing (``own_clock``): ``run`` records a start event, enqueues the work, records an end event on
the same stream, waits on the end event and returns ``start.elapsed_time(end)`` in ns (events
resolve about 0.5 us). Host-to-device copies happen in ``prepare`` and are never timed;
``outputs`` copies back, untimed. ``synchronize`` waits on the end event again (already done).

Decoders (``Generates``, from ``backends.torch_generate``): transformers' ``generate`` with a
static KV cache on the GPU in fp32, fp16 or bf16; each token is stamped by the harness's clock
when its step's tokens reach the host (the streamer's copy waits for the step's kernels), so TTFT
and TPOT are host-observed, as a serving client sees them. The options (compile, CUDA graphs)
apply to encoder cases only.

Device memory: ``device_mem_mb`` is the caching allocator's peak (``max_memory_allocated``:
weights, activations and graph pools, counted from the end of ``load``'s weight upload); the
details add the allocator's reserve and NVML's figure for this process (reserve + CUDA context +
cuBLAS workspaces) when nvidia-ml-py can read it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from backends.torch_generate import TorchGenerator
from harness.backend import Artifact, BackendSettings, Capabilities, GenerationSettings
from harness.errors import BackendError, BackendUnavailable, ConfigError

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
# Inductor modes that already capture CUDA graphs (torch._inductor.config triton.cudagraphs).
SELF_GRAPHING_MODES = ("reduce-overhead", "max-autotune")
COMPILE_WARMUP_CALLS = 3  # dynamo traces on call 1; cudagraph trees record on 2 and replay on 3
GRAPH_WARMUP_CALLS = 3  # side-stream warm-up before capture, as torch.cuda.graphs advises
_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}
BF16_MIN_CAPABILITY = (8, 0)
_MIB = 2**20
DEVICE = "cuda"  # where tensors go; tests put a stand-in for torch.cuda around "cpu"


# present while the NVIDIA driver is loaded (the /dev nodes also in containers given a GPU)
NVIDIA_DRIVER_FILES = (Path("/proc/driver/nvidia/version"), Path("/dev/nvidiactl"),
                       Path("/dev/nvidia0"))  # fmt: skip


def torch_version_file() -> Path | None:
    """torch's generated ``version.py``, found without importing torch (None: not installed)."""
    spec = importlib.util.find_spec("torch")
    locations = list(spec.submodule_search_locations or ()) if spec else []
    return Path(locations[0]) / "version.py" if locations else None


def cpu_only_torch(version_file: Path | None) -> str | None:
    """Why a torch whose ``version.py`` is ``version_file`` cannot use CUDA, or None."""
    if version_file is None or not version_file.is_file():
        return None  # check() decides
    text = version_file.read_text()
    built = re.search(r"^__version__\s*=\s*'([^']*)'", text, re.M)
    if re.search(r"^cuda(:[^=]*)?=\s*None\s*$", text, re.M):
        found = built.group(1) if built else "?"
        return f"torch {found} is a CPU-only build (torch.version.cuda is None)"
    return None


def no_nvidia_driver(driver_files: tuple[Path, ...]) -> str | None:
    """Why no NVIDIA GPU can be used when none of ``driver_files`` exists, or None."""
    if any(path.exists() for path in driver_files):
        return None
    return f"no NVIDIA driver is loaded (none of {', '.join(map(str, driver_files))} exists)"


def check_options(options: Mapping[str, Any], where: str) -> None:
    """One-line ``ConfigError`` for option values that contradict each other."""
    mode = str(options.get("compile", "off"))
    if options.get("cuda_graphs") and mode in SELF_GRAPHING_MODES:
        raise ConfigError(
            f"{where}: options.torch-cuda: cuda_graphs = true cannot be combined with "
            f"compile = {mode!r}, which captures CUDA graphs itself; use compile = 'default'"
        )


class TorchCudaBackend(TorchGenerator):
    name: ClassVar[str] = "torch-cuda"
    capabilities: ClassVar[Capabilities] = Capabilities(
        consumes="torch",
        generates=True,
        devices=("cuda",),
        own_clock=True,
        options={"compile": COMPILE_MODES, "cuda_graphs": bool},
        runtime_modules=("torch",),
        install_hint="a CUDA build of torch (https://pytorch.org/get-started/locally/)",
    )

    def __init__(self) -> None:
        self._torch: Any = None
        self._module: Any = None
        self._fn: Any = None
        self._dtype: Any = None
        self._args: tuple[Any, ...] = ()
        self._out: Any = None
        self._graph: Any = None
        self._graph_key: tuple[Any, ...] = ()
        self._start: Any = None
        self._end: Any = None
        self._stream: Any = None
        self._mode = "off"
        self._graphs = False
        self._input_names: tuple[str, ...] = ()
        self._output_names: tuple[str, ...] = ()
        self._facts: dict[str, Any] = {}

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        check_options(options, where)

    @classmethod
    def unavailable_without_import(cls) -> str | None:
        """A CPU-only torch build (its ``version.py`` says ``cuda = None``) or no NVIDIA driver
        (none of ``NVIDIA_DRIVER_FILES``), read without importing torch."""
        return cpu_only_torch(torch_version_file()) or no_nvidia_driver(NVIDIA_DRIVER_FILES)

    def check(self) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable(f"torch cannot be imported: {exc}") from None
        if torch.version.cuda is None:
            raise BackendUnavailable(
                f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None)"
            )
        if not torch.cuda.is_available():
            raise BackendUnavailable(
                f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
            )

    def versions(self) -> dict[str, str]:
        import torch

        found = {"torch": torch.__version__, "cuda": str(torch.version.cuda)}
        cudnn = torch.backends.cudnn.version()
        if cudnn is not None:
            found["cudnn"] = str(cudnn)
        if self._mode != "off":
            try:
                import triton

                found["triton"] = triton.__version__
            except ImportError:
                found["triton"] = "not installed"
        return found

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        import torch

        if not settings.device.startswith("cuda"):
            raise BackendUnavailable(f"torch-cuda runs on a CUDA device, not {settings.device!r}")
        if not settings.input_names or not settings.output_names:
            raise BackendError("torch-cuda needs the model's input and output names")
        check_options(settings.options, "torch-cuda")
        self._mode = str(settings.options.get("compile", "off"))
        self._graphs = bool(settings.options.get("cuda_graphs", False))
        self._input_names, self._output_names = settings.input_names, settings.output_names
        precision = settings.precision
        self._check_precision(precision)
        self._dtype = getattr(torch, _DTYPES[precision]) if precision in _DTYPES else None
        module = artifact.torch_module().eval()
        if self._dtype is not None:
            module = module.to(self._dtype)
        self._module = module.to(DEVICE)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self._stream = torch.cuda.current_stream()
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self._fn = self._module
        if self._mode == "off" and not self._graphs:
            return None
        if not settings.example_inputs:
            raise BackendError("torch-cuda compile/cuda_graphs need the example inputs in load")
        started = time.perf_counter()
        if self._mode != "off":
            self._fn = torch.compile(self._module, mode=self._mode)
            args = self._device_args(settings.example_inputs)
            with torch.inference_mode():
                for _ in range(COMPILE_WARMUP_CALLS):
                    self._fn(*args)
            torch.cuda.synchronize()
        if self._graphs:
            self._capture(self._device_args(settings.example_inputs))
        self._facts["compile_and_capture_s"] = time.perf_counter() - started
        return self._facts["compile_and_capture_s"]

    def _check_precision(self, precision: str) -> None:
        """BackendUnavailable for a precision this GPU does not run natively; turns TF32 off
        (fp32 means fp32)."""
        import torch

        self._torch = torch
        major, minor = torch.cuda.get_device_capability()
        if precision == "bf16" and (major, minor) < BF16_MIN_CAPABILITY:
            raise BackendUnavailable(
                f"torch-cuda bf16: {torch.cuda.get_device_name()} (compute capability "
                f"{major}.{minor}) has no native bf16 arithmetic (needs 8.0 or newer)"
            )
        if precision not in ("fp32", *_DTYPES):
            raise BackendUnavailable(f"torch-cuda runs fp32, fp16 or bf16, not {precision}")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def generation_device(self, settings: GenerationSettings) -> str:
        """The GPU; BackendUnavailable for a precision it lacks, or for the encoder-only options
        (a decoder's ``generate`` runs eager: its row must not claim a compile or graphs)."""
        used = {k: v for k, v in settings.options.items() if v not in (False, "off")}
        if used:
            raise BackendUnavailable(
                f"torch-cuda: options {used} apply to encoder cases; a decoder runs eager"
            )
        self._check_precision(settings.precision)
        return DEVICE

    def generator_loaded(self) -> None:
        self._torch.cuda.synchronize()
        self._torch.cuda.reset_peak_memory_stats()

    def _device_args(self, inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
        """The inputs in the module's order, on the GPU (a blocking copy); floating inputs in
        the execution precision (integer ids and masks stay as they are)."""
        torch = self._torch
        args = []
        for name in self._input_names:
            tensor = torch.from_numpy(np.ascontiguousarray(inputs[name])).to(DEVICE)
            if self._dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(self._dtype)
            args.append(tensor)
        return tuple(args)

    def _capture(self, args: tuple[Any, ...]) -> None:
        """Capture one forward pass on ``args`` (which become the static input buffers)."""
        torch = self._torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_CALLS):
                self._fn(*args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.inference_mode(), torch.cuda.graph(graph):
                self._out = self._fn(*args)
            torch.cuda.synchronize()
        except RuntimeError as exc:  # torch reports a failed capture as a RuntimeError
            raise BackendError(
                f"torch-cuda: CUDA graph capture failed ({str(exc).splitlines()[0]}); the model "
                "synchronises with the host during the forward pass (a data-dependent branch)"
            ) from None
        self._graph, self._args = graph, args
        self._graph_key = tuple((a.shape, a.dtype) for a in args)

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        args = self._device_args(inputs)
        if self._graphs:
            if tuple((a.shape, a.dtype) for a in args) == self._graph_key:
                for static, new in zip(self._args, args, strict=True):
                    static.copy_(new)
                self._torch.cuda.synchronize()
            else:
                self._capture(args)
            return
        self._args = args
        self._torch.cuda.synchronize()

    def run(self) -> int | None:
        """One forward pass between two CUDA events; waits for the end event and returns the
        elapsed ns between them (the GPU's time for the work, launch gaps included)."""
        self._start.record(self._stream)
        if self._graph is not None:
            self._graph.replay()
        else:
            with self._torch.inference_mode():
                self._out = self._fn(*self._args)
        self._end.record(self._stream)
        self._end.synchronize()
        return round(self._start.elapsed_time(self._end) * 1e6)

    def synchronize(self) -> None:
        self._end.synchronize()

    def outputs(self) -> dict[str, np.ndarray]:
        outs = self._out if isinstance(self._out, tuple | list) else (self._out,)
        return {
            name: out.detach().float().cpu().numpy()
            for name, out in zip(self._output_names, outs, strict=False)
        }

    def executed_precision(self) -> str | None:
        if self._lm is not None:
            return self._lm_dtype
        if self._dtype is None:
            return "fp32"
        return "fp16" if self._dtype == self._torch.float16 else "bf16"

    def device_mem_mb(self) -> float | None:
        torch = self._torch
        if torch is None:
            return None
        torch.cuda.synchronize()
        self._facts["device_mem_reserved_mb"] = torch.cuda.max_memory_reserved() / _MIB
        nvml = process_gpu_mem_mb(torch.cuda.current_device())
        self._facts["device_mem_nvml_mb"] = nvml[0]
        if nvml[1]:
            self._facts["device_mem_nvml"] = nvml[1]
        return float(torch.cuda.max_memory_allocated()) / _MIB

    def report(self) -> dict[str, Any]:
        torch = self._torch
        facts: dict[str, Any] = {
            "compile": self._mode,
            "cuda_graphs": self._graphs,
            "timer": "cuda events (start/end on the compute stream; copies outside)",
            "host_device_copies_timed": False,
        }
        if self._lm is not None:
            facts = {
                "timer": "the harness's clock per token, when the step's tokens reach the host",
                "host_device_copies_timed": True,  # each token's copy to the host: a client's view
            }
        if torch is not None:
            major, minor = torch.cuda.get_device_capability()
            facts["gpu"] = f"{torch.cuda.get_device_name()} (sm_{major}{minor})"
        return {**facts, **self._facts}

    def close(self) -> None:
        self._graph = self._fn = self._module = self._out = self._lm = None
        self._args = ()
        if self._torch is not None:
            self._torch.cuda.empty_cache()


def process_gpu_mem_mb(index: int) -> tuple[float | None, str]:
    """This process's memory on GPU ``index`` as NVML reports it (MiB), or ``None`` and why."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        return None, f"NVML: {exc}"
    used = [p.usedGpuMemory for p in procs if p.pid == os.getpid() and p.usedGpuMemory]
    if not used:
        return None, "NVML lists no memory for this process (containers hide other PID spaces)"
    return used[0] / _MIB, ""
