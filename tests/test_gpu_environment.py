"""The GPU part of the fingerprint, from a stand-in NVML module (no GPU needed)."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

from harness import environment
from harness.environment import cuda_version_text, describe_gpu, gpus


class NVMLError(Exception):
    pass


def fake_nvml(init_fails: bool = False) -> Any:
    """The calls ``environment.gpus`` makes, answering as an H200 node's driver would."""
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if init_fails:
            raise NVMLError("Driver Not Loaded")

    return SimpleNamespace(
        NVMLError=NVMLError,
        calls=calls,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlSystemGetDriverVersion=lambda: b"580.95.05",
        nvmlSystemGetCudaDriverVersion_v2=lambda: 13000,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetCudaComputeCapability=lambda h: (9, 0),
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=150754820096),
        nvmlDeviceGetName=lambda h: "NVIDIA H200",
        nvmlDeviceGetTotalEnergyConsumption=lambda h: 123_456,
    )


def test_gpus_come_from_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert gpus() == [{
        "name": "NVIDIA H200", "memory": "143771 MiB", "driver": "580.95.05", "cuda": "13.0",
        "compute_capability": "9.0",
    }]  # fmt: skip
    assert nvml.calls == ["init", "shutdown"]


def test_without_nvml_nvidia_smi_answers_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(init_fails=True))
    monkeypatch.setattr(environment.shutil, "which", lambda name: None)
    assert gpus() == []


def test_nvidia_smi_rows_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails: not installed
    monkeypatch.setattr(environment.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    out = "NVIDIA H200, 143771 MiB, 580.95.05, 9.0\n"
    monkeypatch.setattr(environment.subprocess, "run",
                        lambda *a, **k: SimpleNamespace(stdout=out))  # fmt: skip
    assert gpus() == [{"name": "NVIDIA H200", "memory": "143771 MiB", "driver": "580.95.05",
                       "compute_capability": "9.0"}]  # fmt: skip


def test_cuda_version_and_the_env_line() -> None:
    assert cuda_version_text(12040) == "12.4"
    assert cuda_version_text(13000) == "13.0"
    line = describe_gpu({"name": "NVIDIA H200", "memory": "143771 MiB", "driver": "580.95.05",
                         "cuda": "13.0", "compute_capability": "9.0"})  # fmt: skip
    assert line == ("NVIDIA H200, 143771 MiB, driver 580.95.05, CUDA 13.0, compute capability 9.0")


def test_env_prints_the_gpu_and_the_usable_gpu_backends(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness import cli

    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    # only the GPU backends: importing every CPU runtime costs seconds and is tested elsewhere
    monkeypatch.setattr(cli, "backend_names", lambda: ["tensorrt", "torch-cuda"])
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out
    assert "gpu 0            NVIDIA H200, 143771 MiB, driver 580.95.05, CUDA 13.0" in out
    assert "torch-cuda     unusable: torch" in out or "torch-cuda     usable" in out
    assert "tensorrt       unusable: tensorrt" in out
    assert "cuda:0         measured, nvml: total energy counter" in out
    assert "onnxruntime EPs  " in out
