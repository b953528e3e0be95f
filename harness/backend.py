"""The Backend protocol, its capability flags and the lazy entry-point registry.

A backend only does the work (``run``) and waits for it (``synchronize``); the harness owns the
clock. Importing a backend module must not import its runtime: ``check`` does, and raises
``BackendUnavailable`` with the reason when the runtime is missing or unusable here.

Call order in a worker: ``check -> load -> prepare -> run/synchronize (timed) -> outputs -> close``.

This module and :mod:`harness.errors` are all of ``harness`` a backend may import: what a backend
needs from the environment (ISA flags, the cache directory, the model's input and output names)
arrives in ``BackendSettings``; what it may offer beyond the protocol is declared by the small
optional protocols below (``ReportsDetails``, ``SimulatedDevice``, ``ChecksOptions``,
``ReportsDeviceMemory``, ``ChoosesDevice``), which the
harness tests with ``isinstance``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from harness import __version__ as INFRABENCH_VERSION
from harness.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np
    import torch

ENTRY_POINT_GROUP = "infrabench.backends"
# The http target's protocols that stream generated text (the llm-server scenario): OpenAI's
# completions and chat completions, and Triton's generate extension
# (``/v2/models/NAME/generate_stream``). Here so that planning and the backend share one list.
GENERATION_PROTOCOLS = ("openai-completions", "openai-chat", "triton-generate")
__all__ = [
    "ENTRY_POINT_GROUP",
    "GENERATION_PROTOCOLS",
    "INFRABENCH_VERSION",
    "NATIVE_PRECISION_FLAGS",
    "Artifact",
    "Backend",
    "BackendSettings",
    "Capabilities",
    "ChecksOptions",
    "ChoosesDevice",
    "Generates",
    "GenerationSettings",
    "ReportsDetails",
    "ReportsDeviceMemory",
    "ServeRequest",
    "ServesRequests",
    "SimulatedDevice",
    "availability",
    "backend_class",
    "backend_names",
    "case_device",
    "native_precision_missing",
    "quick_unavailable_reason",
    "staged",
]  # fmt: skip


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared without importing its runtime.

    consumes:    the artifact form it runs: the ONNX file, or the matching torch module.
    devices:     devices it can run on.
    own_clock:   ``run()`` returns elapsed ns measured by a better clock than the harness's.
    options:     suite options it accepts (``[options.NAME]`` table): name -> a type, or the
                 tuple of allowed strings.
    runtime_modules: modules that must be importable; checked cheaply before a worker starts.
    install_hint: what to install when those are missing.
    computes_outputs: ``outputs()`` are the model's real outputs (false only for test doubles),
                 so fidelity can be scored.
    generates:   it implements ``Generates`` (decoder cases: TTFT/TPOT); declared here so the
                 planner can refuse a decoder on a backend that cannot generate, cheaply.
    serves:      it implements ``ServesRequests`` (the ``llm-server`` scenario: concurrent
                 requests on an engine with continuous batching, or a client of a server).
    energy:      ``host``: the harness's probe measures (or estimates) the machine running the
                 backend; ``simulated``: the backend models a device and reports joules itself
                 (it is a ``SimulatedDevice``).
    """

    consumes: Literal["onnx", "torch"]
    devices: tuple[str, ...] = ("cpu",)
    own_clock: bool = False
    options: Mapping[str, type | tuple[str, ...]] = field(default_factory=dict)
    runtime_modules: tuple[str, ...] = ()
    install_hint: str = ""
    computes_outputs: bool = True
    energy: Literal["host", "simulated"] = "host"
    generates: bool = False
    serves: bool = False


@dataclass(frozen=True)
class BackendSettings:
    """How a case asks a backend to run, and the facts of the environment it may need.

    threads:      threads the runtime may use (intra-op; inter-op is 1).
    device:       one of ``Capabilities.devices``.
    options:      the suite's ``[options.NAME]`` table, already checked against the declaration.
    input_shapes: the shapes of the inputs it will be given (for runtimes that compile for static
                  shapes), by input name.
    input_names:  the model's inputs in the order its torch module takes them.
    output_names: the model's outputs in the order its torch module returns them.
    precision:    the precision to execute in (a runtime variant step): fp16/bf16 means execute
                  in that precision, or raise ``BackendUnavailable``.
    isa_flags:    the ISA extensions this CPU reports (the fingerprint's ``isa_flags``, e.g.
                  ``avx512_bf16``), for native-precision checks and compiler targets.
    cache_dir:    infrabench's cache root; a backend keeps what it compiles under its own
                  subdirectory there. ``None``: nothing is kept between runs.
    example_inputs: the inputs ``prepare`` will first be given, by name, for runtimes that
                  compile or capture by running real inputs in ``load`` (torch.compile, CUDA
                  graphs), so that the compile time is ``compile_s`` and not a sample. Empty:
                  not known.
    """

    threads: int
    device: str = "cpu"
    options: Mapping[str, Any] = field(default_factory=dict)
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    precision: str = "fp32"
    isa_flags: tuple[str, ...] = ()
    cache_dir: Path | None = None
    example_inputs: Mapping[str, np.ndarray] = field(default_factory=dict)


class Artifact(Protocol):
    """What a backend sees of a built model variant (``harness.optimize.artifacts.Artifact``
    satisfies it): the ONNX file, its digest and the matching torch module."""

    @property
    def sha256(self) -> str:
        """sha256 of ``model.onnx``: the artifact's identity, usable in cache keys."""
        ...

    @property
    def onnx_path(self) -> Path:
        """The ONNX file every ONNX-consuming backend runs."""
        ...

    def torch_module(self) -> torch.nn.Module:
        """The torch module matching this artifact (built on each call)."""
        ...


class Backend(Protocol):
    """One inference runtime. Instances live in a single worker process for one case."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def check(self) -> None:
        """Import the runtime; raise ``BackendUnavailable`` saying why it cannot run here."""
        ...

    def versions(self) -> dict[str, str]:
        """Versions of the runtime libraries actually loaded, recorded with the result."""
        ...

    def load(self, artifact: Artifact, settings: BackendSettings) -> float | None:
        """Load (and compile) the artifact with the given threads; timed as ``load_s``.
        Returns the seconds spent compiling (``compile_s``) when that is a separate step."""
        ...

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Bind inputs outside the timed region (host-to-device copies belong here)."""
        ...

    def run(self) -> int | None:
        """Do one inference on the prepared inputs; may return immediately (async devices).
        Returns elapsed ns only when ``capabilities.own_clock`` is set, else ``None``."""
        ...

    def synchronize(self) -> None:
        """Block until the work started by ``run`` has finished."""
        ...

    def outputs(self) -> dict[str, np.ndarray]:
        """The outputs of the last ``run``, as host float arrays, for fidelity checks."""
        ...

    def executed_precision(self) -> str | None:
        """The precision the runtime really executed in (e.g. ``fp32``, ``bf16``)."""
        ...

    def close(self) -> None:
        """Release the runtime's resources."""
        ...


@runtime_checkable
class ReportsDetails(Protocol):
    """A backend with facts for the case's details (a compiler's target and cache state, a
    simulator's per-layer model), read after the measurement while the backend is loaded."""

    def report(self) -> dict[str, Any]:
        """JSON-serialisable facts, merged at the top level of the row's ``details``."""
        ...


@runtime_checkable
class SimulatedDevice(Protocol):
    """A backend that models a device (``Capabilities.energy == "simulated"``) rather than
    running on one: it reports the device's energy and identity itself.

    hardware_class: the price class of the modelled device (a key of ``prices.toml``'s
                    hardware table, e.g. ``fpga-edge``); set by ``load``.
    device_label:   the device the row reports (e.g. ``fpga:fpga-edge``); set by ``load``.
    """

    hardware_class: str
    device_label: str

    def energy_j(self) -> float:
        """Joules of one inference of the prepared batch (the whole batch), after ``prepare``."""
        ...


@runtime_checkable
class ReportsDeviceMemory(Protocol):
    """A backend on an accelerator, whose memory the host's RSS does not show."""

    def device_mem_mb(self) -> float | None:
        """Peak device memory (MiB) the case used, read after the measurement; ``None`` when
        the device cannot say."""
        ...


@runtime_checkable
class ChecksOptions(Protocol):
    """A backend whose option values only it can judge (a preset name, a presets file)."""

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        """Raise a one-line ``ConfigError`` starting with ``where`` for a bad value; called
        while the suite is validated, before anything runs."""
        ...


@runtime_checkable
class ChecksCheaply(Protocol):
    """A backend that can tell, without importing its runtime, that it certainly cannot run
    here (a CPU-only build of its library, no device node): the runner then skips its cases
    before building their artifacts."""

    @classmethod
    def unavailable_without_import(cls) -> str | None:
        """Why the backend certainly cannot run here, or ``None`` (``check`` decides)."""
        ...


@runtime_checkable
class ChoosesDevice(Protocol):
    """A backend whose options decide its device (ONNX Runtime's execution provider)."""

    @classmethod
    def device_for(cls, options: Mapping[str, Any]) -> str:
        """The device (one of ``capabilities.devices``) a case with these options runs on."""
        ...


def case_device(name: str, options: Mapping[str, Any]) -> str:
    """The device a case of backend ``name`` with suite ``options`` runs on: what the backend
    chooses for them, else its first declared device."""
    cls = backend_class(name)
    if issubclass(cls, ChoosesDevice):
        return cls.device_for(options)
    return cls.capabilities.devices[0]


@dataclass(frozen=True)
class GenerationSettings:
    """How a decoder case asks a generative backend to run.

    threads:       threads the runtime may use.
    batch_size:    rows per generation call.
    max_length:    prompt_len + gen_len: the KV cache an engine allocates (onnxruntime-genai
                   would otherwise allocate the model's full context).
    weight_bits:   8 or 4 for weight-only quantization the engine applies at load, in its own
                   format; None: fp32 weights as the directory holds them.
    kv_cache_int8: hold the KV cache in int8 (raise ``BackendUnavailable`` where the engine
                   cannot).
    precision:     fp32, or bf16/fp16 to execute in (native only).
    isa_flags, cache_dir, options: as in ``BackendSettings``.
    """

    threads: int
    batch_size: int
    max_length: int
    weight_bits: int | None = None
    kv_cache_int8: bool = False
    precision: str = "fp32"
    isa_flags: tuple[str, ...] = ()
    cache_dir: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Generates(Protocol):
    """A backend that runs a decoder: greedy generation with a per-token callback.

    Call order in a worker: ``check -> load_generator -> generate (timed, many) ->
    next_token_logits (fidelity) -> close``. The harness owns the clock: it reads it when it calls
    ``generate`` and in ``on_token``; the backend only calls ``on_token`` as soon as each decode
    step's tokens exist (from its streamer), and must not batch callbacks up.
    """

    def load_generator(self, model_dir: Path, settings: GenerationSettings) -> float | None:
        """Load (converting and compressing the weights, cached under ``settings.cache_dir``) the
        fp32 Hugging Face directory ``model_dir``; returns seconds spent converting, if any."""
        ...

    def generate(
        self, prompt_ids: np.ndarray, gen_len: int, on_token: Callable[[], None]
    ) -> np.ndarray:
        """Greedy decoding of ``prompt_ids`` (batch, prompt_len) int64, ignoring EOS: exactly
        ``gen_len`` new tokens per row; no chat template. Calls ``on_token()`` once per decode
        step. Returns the new tokens, (batch, gen_len) int64."""
        ...

    def next_token_logits(self, ids: np.ndarray) -> np.ndarray | None:
        """Teacher-forced logits for ``ids`` (batch, length) int64: (batch, length, vocab)
        float32; ``None`` where the engine cannot return them."""
        ...

    def kv_cache_bytes(self) -> int | None:
        """The KV cache's bytes as the engine reports them after a generation, or ``None``."""
        ...


@dataclass(frozen=True)
class StepTimes:
    """An engine's own timing of its last ``generate`` call, from its start: when each decode
    step's tokens existed (``steps_ns``, one per step) and the whole call (``total_ns``), ns;
    ``source`` names what reported them."""

    steps_ns: tuple[int, ...]
    total_ns: int
    source: str


@runtime_checkable
class ReportsStepTimes(Protocol):
    """A generator that cannot call ``on_token`` as tokens appear for some calls (OpenVINO
    GenAI streams batch 1 only) and reports its engine's step times for those instead. The
    harness uses them only for a call with no ``on_token`` at all, anchored at its own reading
    before the call, and only when the engine's duration agrees with its own clock's
    (``harness.generate.execute.engine_token_times``)."""

    def last_step_times(self) -> StepTimes | None:
        """The last ``generate`` call's step times, or None when it called ``on_token``."""
        ...


@dataclass(frozen=True)
class ServeRequest:
    """One generation request of a serving load.

    request_id:     unique within a load.
    prompt_ids:     the prompt, 1-D int64 token ids (no chat template, no special tokens).
    prompt_text:    the same tokens decoded, for servers that take text.
    max_new_tokens: tokens to generate; EOS is ignored, so exactly this many where the engine
                    honours it.
    """

    request_id: int
    prompt_ids: np.ndarray
    prompt_text: str
    max_new_tokens: int


OnTokens = Callable[["Sequence[int]"], None]
OnEnd = Callable[[str | None, int | None], None]


@runtime_checkable
class ServesRequests(Protocol):
    """A backend that serves many generation requests at once: an engine with its own
    continuous-batching scheduler in process, or a client of a running server.

    Call order in a worker: ``check -> load_server -> (submit | pump | cancel)* -> close``, all
    from one thread. The harness owns the clock and the arrival times: it calls ``submit`` when
    a request is due and reads its clock in the callbacks. ``on_tokens(ids)`` must be called as
    soon as new output tokens of that request exist (a decode step, a streamed chunk),
    ``on_end(error, output_tokens)`` once when it finished (error None; ``output_tokens`` the
    count the engine or server reports, or None) or failed (a one-line reason).
    ``on_tokens`` gets the new tokens' ids where the backend knows them (an engine), else one
    ``-1`` per streamed piece of text (a client: usage's count corrects the total at the
    end). Callbacks may come from ``pump`` or from the backend's own threads.
    """

    def load_server(self, model_dir: Path, settings: GenerationSettings) -> float | None:
        """Load the engine (``settings.batch_size`` is the most sequences it may schedule
        together) or connect to the server; returns seconds spent converting, if any."""
        ...

    def submit(self, request: ServeRequest, on_tokens: OnTokens, on_end: OnEnd) -> None:
        """Hand the request over without waiting for it."""
        ...

    def pump(self, wait_s: float) -> None:
        """Make progress: an in-process engine runs one scheduler step when it has work, else
        waits ``wait_s``; a client waits up to ``wait_s`` for its threads. Never blocks for
        long past ``wait_s`` beyond one engine step."""
        ...

    def cancel(self, request_id: int) -> None:
        """Stop a request the harness gave up on (its deadline passed); no callback follows."""
        ...


# CPU features that give native (not emulated) kernels for a reduced precision.
NATIVE_PRECISION_FLAGS = {
    "bf16": ("avx512_bf16", "amx_bf16", "bf16"),
    "fp16": ("avx512_fp16", "amx_fp16", "asimdhp", "fphp"),
}


def native_precision_missing(precision: str, flags: tuple[str, ...] | list[str]) -> str | None:
    """Why a CPU with ISA ``flags`` (``BackendSettings.isa_flags``) has no native ``precision``
    arithmetic, or ``None`` if it has (always for fp32 and any precision not listed in
    ``NATIVE_PRECISION_FLAGS``)."""
    needed = NATIVE_PRECISION_FLAGS.get(precision)
    if needed is None or any(flag in flags for flag in needed):
        return None
    return (
        f"this CPU has no native {precision} arithmetic (needs one of: {', '.join(needed)}); "
        "emulating it would measure nothing useful"
    )


def _remove_orphaned_staging(folder: Path) -> None:
    """Remove staging folders whose builder process is gone (killed with SIGKILL, or a
    machine that lost power): their name carries the builder's process id."""
    for path in folder.glob(".build-*-*"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and not _process_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@contextlib.contextmanager
def staged(final: Path, marker: str) -> Iterator[Path]:
    """A staging directory beside ``final``, moved into place (atomically) when the block ends
    without an error and removed in every case. A concurrent build of the same key that already
    put ``final/marker`` in place wins; any other failure to move is raised (``OSError``)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_staging(final.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".build-{os.getpid()}-", dir=final.parent))
    try:
        yield staging
        try:
            staging.rename(final)
        except OSError:
            if not (final / marker).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def backend_names() -> list[str]:
    """Registered backend names, without importing any backend module."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``; importing it imports no runtime."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        raise ConfigError(f"unknown backend {name!r}; allowed: {', '.join(backend_names())}")
    cls: type[Backend] = matches[0].load()
    return cls


def quick_unavailable_reason(name: str) -> str | None:
    """Why ``name`` certainly cannot run here (a runtime module is missing, or what a
    ``ChecksCheaply`` backend finds), or ``None``.

    Cheap: looks modules up without importing them. ``check`` in the worker has the last word.
    """
    caps = backend_class(name).capabilities
    missing = [m for m in caps.runtime_modules if importlib.util.find_spec(m) is None]
    if missing:
        hint = f" ({caps.install_hint})" if caps.install_hint else ""
        return f"{', '.join(missing)} is not installed{hint}"
    cls = backend_class(name)
    if issubclass(cls, ChecksCheaply):
        return cls.unavailable_without_import()
    return None


def availability(name: str) -> str | None:
    """Import the backend's runtime here and return why it is unusable, or ``None`` if usable."""
    reason = quick_unavailable_reason(name)
    if reason is not None:
        return reason
    try:
        backend_class(name)().check()
    except BackendUnavailable as exc:
        return str(exc)
    return None


def exposed_session(model: Any) -> Any:
    """An ONNX Runtime CPU session of ``model`` (an ``onnx.ModelProto``, left unchanged) with
    every intermediate tensor exposed as an output and no graph optimization, so one run shows
    the shape of every tensor as the graph computes it (a simulator's or a roofline's view)."""
    import onnx
    import onnxruntime as ort

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    known = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in known:
                exposed.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(
        exposed.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
