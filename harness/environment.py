"""The hardware and software fingerprint recorded with every run.

Two results are comparable only when their fingerprints match; ``fingerprint_sha256`` hashes the
parts that change performance (CPU, ISA, cores, memory, GPU, OS, library versions), not the git sha.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

# ISA extensions that decide which kernels a runtime can use (int8 dot products, bf16, AMX).
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "neon", "asimd", "asimdhp", "fphp", "bf16", "sve",
)  # fmt: skip
PACKAGES = (
    "infrabench", "numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino",
    "transformers", "apache-tvm", "tensorrt", "duckdb",
)  # fmt: skip


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or "unknown"


def isa_flags() -> list[str]:
    """The ISA extensions of interest this CPU reports."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return [f for f in ISA_FLAGS if f in flags]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), the default thread count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def package_version(name: str) -> str | None:
    """The installed version of a distribution, read without importing it; None if absent."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def package_versions() -> dict[str, str]:
    """Installed versions of the libraries that matter."""
    return {name: v for name in PACKAGES if (v := package_version(name)) is not None}


def gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs: name, memory, driver, CUDA (the highest version the driver supports) and
    compute capability, from NVML (nvidia-ml-py, imported here, not at module import) or else
    ``nvidia-smi``; an empty list where neither answers. No CUDA context is created."""
    found = _nvml_gpus()
    return found if found is not None else _smi_gpus()


def _nvml_gpus() -> list[dict[str, str]] | None:
    """GPUs through NVML, or ``None`` when NVML is not installed or cannot initialise."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = cuda_version_text(pynvml.nvmlSystemGetCudaDriverVersion_v2())
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            total = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            found.append({
                "name": _text(pynvml.nvmlDeviceGetName(handle)),
                "memory": f"{total // 2**20} MiB",
                "driver": driver,
                "cuda": cuda,
                "compute_capability": f"{major}.{minor}",
            })  # fmt: skip
        return found
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    """NVML strings are bytes in old nvidia-ml-py releases, str in new ones."""
    return value.decode() if isinstance(value, bytes) else value


def cuda_version_text(version: int) -> str:
    """NVML's CUDA version integer (1000 x major + 10 x minor, e.g. 13000) as ``13.0``."""
    return f"{version // 1000}.{version % 1000 // 10}"


def _smi_gpus() -> list[dict[str, str]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version,compute_cap",
             "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines()]
    keys = ("name", "memory", "driver", "compute_capability")
    return [dict(zip(keys, r, strict=True)) for r in rows if len(r) == len(keys)]


def onnxruntime_providers() -> list[str] | None:
    """ONNX Runtime's execution providers in this environment (imports onnxruntime), or
    ``None`` when it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return list(onnxruntime.get_available_providers())


def describe_gpu(gpu: dict[str, str]) -> str:
    """One line for ``infrabench env``: ``NVIDIA H200, 143771 MiB, driver 580.1, CUDA 13.0,
    compute capability 9.0`` (the parts the fingerprint has)."""
    parts = [gpu.get("name", "unknown GPU"), gpu.get("memory")]
    parts += [f"{label} {gpu[key]}" for key, label in
              (("driver", "driver"), ("cuda", "CUDA"), ("compute_capability", "compute capability"))
              if gpu.get(key)]  # fmt: skip
    return ", ".join(p for p in parts if p)


def git_sha() -> str | None:
    """The commit of the infrabench source tree, when it is a git checkout."""
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        return subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None


def fingerprint() -> dict[str, Any]:
    """Everything recorded about the machine a run happened on."""
    data: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "isa_flags": isa_flags(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cpus": psutil.cpu_count(logical=True),
        "usable_cpus": usable_cpus(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpus": gpus(),
        "versions": package_versions(),
    }
    data["fingerprint_sha256"] = hashlib.sha256(
        json.dumps(data, sort_keys=True).encode()
    ).hexdigest()
    data["git_sha"] = git_sha()
    return data


# Fleet hardware classes that can be told from a fingerprint: class -> (ISA flags it needs,
# whether it needs a GPU). Ordered from the most specific; a machine's derived class is the
# first it satisfies. Other class names are the operator's own (e.g. "rack-b") and are checked
# only against what the node advertises.
KNOWN_CLASSES: dict[str, tuple[tuple[str, ...], bool]] = {
    "gpu": ((), True),
    "cpu-amx": (("amx_tile",), False),
    "cpu-avx512": (("avx512f",), False),
    "cpu-avx2": (("avx2",), False),
    "cpu-neon": (("asimd",), False),
}
CLASS_ENV = "INFRABENCH_HARDWARE_CLASS"  # the class an operator declares for a node


def hardware_class_of(fp: dict[str, Any]) -> str:
    """The most specific known fleet class (``KNOWN_CLASSES``) that fingerprint ``fp`` satisfies,
    or ``cpu-generic``."""
    for name in KNOWN_CLASSES:
        if not class_mismatch(fp, name):
            return name
    return "cpu-generic"


def class_mismatch(fp: dict[str, Any], requested: str, advertised: str | None = None) -> str | None:
    """Why a node with fingerprint ``fp`` cannot run a case of class ``requested``, or None.

    ``advertised`` is the class the node was started with (its Ray resource ``hw:<class>``,
    ``$INFRABENCH_HARDWARE_CLASS``); when given it must equal ``requested``. A known class
    (``KNOWN_CLASSES``) must also be borne out by the fingerprint: its ISA flags, or a GPU.
    """
    if advertised is not None and advertised != requested:
        return f"node advertises hardware class {advertised!r}, case needs {requested!r}"
    flags, needs_gpu = KNOWN_CLASSES.get(requested, ((), False))
    missing = [f for f in flags if f not in fp.get("isa_flags", [])]
    if missing:
        return f"class {requested!r} needs ISA flags {', '.join(missing)}, absent on this node"
    if needs_gpu and not fp.get("gpus"):
        return f"class {requested!r} needs a GPU; this node has none (nvidia-smi found none)"
    return None
