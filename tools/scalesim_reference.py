"""Run SCALE-Sim (PyPI ``scalesim``, the cycle-level systolic-array simulator) on the GEMM shapes
that validate fpga-sim's analytical model, and write their cycle counts as a versioned fixture.

SCALE-Sim is slow (seconds to minutes per shape) and needs numpy < 2.4, so it runs in its own
virtual environment, not infrabench's::

    python -m venv /tmp/ssim && /tmp/ssim/bin/pip install scalesim "numpy<2.4"
    /tmp/ssim/bin/python tools/scalesim_reference.py -o tests/data/scalesim_reference.json

Standalone on purpose: it imports nothing from infrabench.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

FIXTURE_VERSION = 1

# (name, M, K, N): A[M,K] x W[K,N]. minilm-l6 / BERT at sequence 128, batch 1, and a CNN layer.
SHAPES = [
    ("bert-qkv-minilm", 128, 384, 384),
    ("bert-ffn-up-minilm", 128, 384, 1536),
    ("bert-ffn-down-minilm", 128, 1536, 384),
    ("bert-attn-scores-head", 128, 32, 128),
    ("bert-attn-context-head", 128, 128, 32),
    ("bert-base-qkv", 128, 768, 768),
    ("digits-conv2-im2col", 64, 144, 32),
    ("odd-shape", 100, 30, 50),
]
# (array rows, cols, dataflows, shapes): the edge preset's array on every shape; a larger
# rectangular array (the data-centre preset's) on the shapes it simulates in reasonable time.
CONFIGS = [
    (32, 32, ("os", "ws", "is"), [s[0] for s in SHAPES]),
    (128, 64, ("os", "ws", "is"), ["bert-qkv-minilm", "bert-attn-scores-head", "odd-shape"]),
]

CONFIG = """[general]
run_name = infrabench

[run_presets]
InterfaceBandwidth = USER
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
ifmapsramszkB = 65536
filtersramszkB = 65536
ofmapsramszkB = 65536
IfmapOffset = 0
FilterOffset = 100000000
OfmapOffset = 200000000
Bandwidth = 1000
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40
"""


def simulate(rows: int, cols: int, dataflow: str, m: int, k: int, n: int) -> dict[str, float]:
    """SCALE-Sim's compute report for one GEMM (buffers and bandwidth large: no stalls)."""
    from scalesim.scale_sim import scalesim

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "scale.cfg").write_text(CONFIG.format(rows=rows, cols=cols, dataflow=dataflow))
        (root / "gemm.csv").write_text(f"Layer, M, N, K,\ngemm, {m}, {n}, {k},\n")
        (root / "layout.csv").write_text("Layer," + "x," * 20 + "\ngemm," + "1," * 20 + "\n")
        sim = scalesim(
            save_disk_space=True, verbose=False, config=str(root / "scale.cfg"),
            topology=str(root / "gemm.csv"), layout=str(root / "layout.csv"),
            input_type_gemm=True,
        )  # fmt: skip
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            sim.run_scale(top_path=str(root))
        elapsed = time.perf_counter() - started
        header, values = (root / "infrabench" / "COMPUTE_REPORT.csv").read_text().splitlines()[:2]
        report = dict(zip((h.strip() for h in header.split(",")),
                          (v.strip() for v in values.split(",")), strict=False))  # fmt: skip
    return {
        "cycles": int(report["Total Cycles"]),
        "stall_cycles": int(report["Stall Cycles"]),
        "compute_util_pct": float(report["Compute Util %"]),
        "mapping_efficiency_pct": float(report["Mapping Efficiency %"]),
        "simulation_s": round(elapsed, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--only", help="comma-separated shape names (default: all)")
    args = parser.parse_args(argv)
    shapes = {name: (m, k, n) for name, m, k, n in SHAPES}
    only = set(args.only.split(",")) if args.only else set(shapes)
    results = []
    for rows, cols, dataflows, names in CONFIGS:
        for name in (n for n in names if n in only):
            m, k, n = shapes[name]
            for dataflow in dataflows:
                entry = {"shape": name, "m": m, "k": k, "n": n, "rows": rows, "cols": cols,
                         "dataflow": dataflow}  # fmt: skip
                entry.update(simulate(rows, cols, dataflow, m, k, n))
                print(json.dumps(entry), file=sys.stderr)
                results.append(entry)
    fixture = {
        "fixture_version": FIXTURE_VERSION,
        "scalesim": version("scalesim"),
        "numpy": version("numpy"),
        "buffers_kb": 65536,
        "bandwidth_words_per_cycle": 1000,
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(fixture, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
