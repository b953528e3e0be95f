"""Device check: infrabench's NVML energy probe on a real GPU (run where a GPU is lent).

Runs a fixed bf16 matrix-product workload and reads its energy two ways at once: NVML's
total-energy counter (the probe's first choice) and 20 ms power sampling integrated over time
(its fallback). Prints one JSON line: joules from each, seconds, mean power, TFLOP/s, TFLOP/J.
Needs torch with CUDA and nvidia-ml-py; imports only harness.measure.energy from infrabench.
"""

from __future__ import annotations

import json
import subprocess
import time

import torch

from harness.measure.energy import EnergySettings, NvmlProbe, choose_probe

N, SECONDS = 8192, 8.0


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    counter, note = choose_probe(EnergySettings(), "cuda:0", "")
    assert counter is not None, note
    sampler = NvmlProbe(0)
    sampler.counter = False  # force the fallback path on the same workload
    a = torch.randn(N, N, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(N, N, device="cuda", dtype=torch.bfloat16)
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    counter.start()
    sampler.start()
    started, products = time.perf_counter(), 0
    while time.perf_counter() - started < SECONDS:
        for _ in range(50):
            a @ b
        torch.cuda.synchronize()
        products += 50
    elapsed = time.perf_counter() - started
    by_counter, by_sampling = counter.stop(), sampler.stop()
    flop = 2 * N**3 * products
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,power.draw,power.limit", "--format=csv,noheader"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    print(
        json.dumps(
            {
                "gpu": torch.cuda.get_device_name(0),
                "probe": counter.describe(),
                "counter_j": round(by_counter.joules, 1),
                "sampling_j": round(by_sampling.joules, 1),
                "sampling_vs_counter": round(by_sampling.joules / by_counter.joules, 4),
                "seconds": round(elapsed, 3),
                "mean_power_w": round(by_counter.joules / by_counter.seconds, 1),
                "tflop_per_s": round(flop / elapsed / 1e12, 1),
                "tflop_per_j": round(flop / by_counter.joules / 1e12, 3),
                "products": products,
                "nvidia_smi_after": smi,
            }
        )
    )


if __name__ == "__main__":
    main()
