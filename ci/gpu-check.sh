#!/usr/bin/env bash
# GPU check: one short device call that always reports.  From a source checkout, nothing installed:
#     PYTHONPATH=. ci/gpu-check.sh OUTDIR              # a machine with an NVIDIA GPU, CuPy (and PyTorch)
#     ci/gpu-check.sh --emulate OUTDIR                 # the same steps, tiny sizes, on the CPU emulation
# A device call brings back at most 8 files, so OUTDIR only ever holds three:
#     gpu-check.log     the step log (each step's tail, status and seconds)
#     results.tar.gz    every step's outputs, re-packed after each step (so a call cut short still
#                       brings back everything finished): env.txt, smoke.json/.log, gpu-tests.xml/.log,
#                       compare.json/.log, run-1e9/run.{json,txt} + rank.png, sgd.json/.log,
#                       bench_cupy.json/.log, steps.jsonl, throughput.png
#     summary.json      bench/gpu_report.py: smoke results, test counts, kernel-only and end-to-end rates,
#                       ratio to the FP32 FMA roof, compare and P_SGD figures
# Steps (slots in seconds, device / --emulate; each under `timeout -s INT -k 15`, so pytest still writes its
# XML and the Python scripts, which rewrite their JSON after every row, keep what they finished):
#   env 10 | smoke 40: every kernel compiled and launched once (bench/gpu_smoke.py) | GPU tests 95 with
#   FASTPOLY_REQUIRE_GPU=1 and a per-test limit (FASTPOLY_TEST_TIMEOUT, tests/conftest.py) | compare 40
#   (bench/compare.py --gpu-only) | timed run 60 (bench/gpu_run.py, 1e9 samples, kernel-only and end to end)
#   | P_SGD 35 (bench/gpu_sgd.py) | report 15 | bench_cupy with what is left (> 45 s).
# Whole budget: GPU_CHECK_BUDGET (default 290 s device, 150 s emulated); give the device call ~320 s.
# GPU_CHECK_STEPS=smoke,tests,compare,run,sgd,bench selects steps (the report and packing always run).
# Exit status: 0 only if every selected step succeeded (smoke all ok, tests passed, complete JSON from
# compare / the timed run / P_SGD); 2 on a usage error.
set -uo pipefail
EMU=0
if [ "${1:-}" = "--emulate" ]; then EMU=1; shift; fi
if [ $# -ne 1 ] || [ "${1:0:1}" = "-" ]; then
  echo "usage: ci/gpu-check.sh [--emulate] OUTDIR" >&2
  exit 2
fi
mkdir -p "$1" || exit 2
OUT="$(cd "$1" && pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
PY="${PYTHON:-python3}"
if [ "$EMU" = 1 ]; then
  BUDGET=${GPU_CHECK_BUDGET:-150}
  unset FASTPOLY_REQUIRE_GPU
  export FASTPOLY_TEST_TIMEOUT=${FASTPOLY_TEST_TIMEOUT:-60}
else
  BUDGET=${GPU_CHECK_BUDGET:-290}
  export FASTPOLY_REQUIRE_GPU=1 FASTPOLY_TEST_TIMEOUT=${FASTPOLY_TEST_TIMEOUT:-30}
fi
STEPS=",${GPU_CHECK_STEPS:-smoke,tests,compare,run,sgd,bench},"
W=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")   # step outputs live here and are packed into OUT
trap 'rm -rf "$W"' EXIT
t0=$(date +%s)
status=0
LOG="$OUT/gpu-check.log"
: >"$LOG"
: >"$W/steps.jsonl"
rm -f "$OUT/results.tar.gz" "$OUT/summary.json"

left() { echo $(( BUDGET - ($(date +%s) - t0) )); }
# slot LIMIT: the step's limit, capped by what is left of the budget (at least 5 s)
slot() { local l; l=$(left); [ "$l" -lt "$1" ] && echo $(( l > 5 ? l : 5 )) || echo "$1"; }
say() { echo "== [$(( $(date +%s) - t0 )) s] $*" | tee -a "$LOG"; }
want() { case "$STEPS" in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
pack() { tar -C "$W" -czf "$OUT/results.tar.gz.tmp" . 2>/dev/null && mv -f "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"; }
# run NAME SLOT LOGFILE CMD...: run one step under its slot; record rc and seconds; tail its log
run() {
  local name=$1 lim; lim=$(slot "$2"); local lf=$3; shift 3
  local s; s=$(date +%s)
  say "$name (slot ${lim} s)"
  timeout -s INT -k 15 "$lim" "$@" >"$W/$lf" 2>&1
  local rc=$?
  tail -n 25 "$W/$lf" | sed 's/^/   /' >>"$LOG"
  printf '{"step": "%s", "rc": %d, "seconds": %d, "slot": %d, "timed_out": %s}\n' "$name" "$rc" \
      $(( $(date +%s) - s )) "$lim" "$([ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo true || echo false)" \
      >>"$W/steps.jsonl"
  [ "$rc" -eq 0 ] || say "$name: exit status $rc (124/137 = out of time)"
  pack
  return $rc
}
# complete FILE: the script's JSON exists and says "complete": true
complete() { "$PY" -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("complete") else 1)' "$1" \
               2>/dev/null; }
fail() { say "FAILED: $*"; status=1; }

E=""; [ "$EMU" = 1 ] && E="--emulate"
say "gpu-check $([ "$EMU" = 1 ] && echo '--emulate (CPU emulation of CUDA) ')in $ROOT, budget $BUDGET s"

run env 30 env.txt "$PY" - "$EMU" <<'PYEOF'
import platform, subprocess, sys
emu = sys.argv[1] == "1"
try:
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=8).stdout)
except Exception as e:
    print("nvidia-smi:", repr(e))
import numpy
import fastpoly
print("python", platform.python_version(), "numpy", numpy.__version__, "fastpoly", fastpoly.__version__)
for k, v in fastpoly.backends().items():
    print("backend", k, v)
try:
    import cupy
    print("cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
          "driver", cupy.cuda.runtime.driverGetVersion())
except Exception as e:
    print("cupy:", repr(e))
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available())
except Exception as e:
    print("torch:", repr(e))
PYEOF
[ $? -eq 0 ] || fail "environment report"

if want smoke; then
  run smoke 40 smoke.log "$PY" bench/gpu_smoke.py $E --json "$W/smoke.json" || fail "smoke: a kernel failed"
fi

if want tests; then
  if [ "$EMU" = 1 ]; then  # the GPU test modules skip here; the emulation's own tests prove the same path
    TESTS=(tests/cuda/test_cuda_hostmerge.py tests/cuda/test_cuda_emu_ptx.py tests/cuda/test_cupy_backend.py)
  else
    TESTS=(tests/cuda/test_cupy_backend.py tests/cuda/test_cuda_emu_ptx.py tests/analysis/test_klz_cuda.py tests/cuda/test_sgd_cuda.py)
  fi
  run tests 95 gpu-tests.log "$PY" -m pytest -q -rfEs -p no:cacheprovider "${TESTS[@]}" \
      --junitxml="$W/gpu-tests.xml" || fail "GPU tests"
fi

if want compare; then
  if [ "$EMU" = 1 ]; then
    ARGS=(--gpu-only --emulate --rounds 1 --round-seconds 0.2 --poly-points 500 --no-torch)
  else
    ARGS=(--gpu-only --rounds 2 --round-seconds 0.4 --poly-points 200000)
  fi
  run compare 40 compare.log "$PY" bench/compare.py "${ARGS[@]}" --json "$W/compare.json"
  complete "$W/compare.json" || fail "compare.py: no complete JSON"
fi

if want run; then
  if [ "$EMU" = 1 ]; then
    ARGS=(--emulate --samples 4000 --kernel-samples 1000 --time-limit 20 --model-samples 1e10 --out "$W/run-emu")
  else
    ARGS=(--samples 1e9 --time-limit 45 --model-samples 1e10 --out "$W/run-1e9")
  fi
  run run 60 run.log "$PY" bench/gpu_run.py "${ARGS[@]}"
  complete "$W/${ARGS[-1]##*/}/run.json" || fail "timed run: no complete run.json"
fi

if want sgd; then
  if [ "$EMU" = 1 ]; then
    ARGS=(--emulate --runs 32 --chunk 16 --warmup-runs 4 --time-limit 10 --wide-runs 2 --wide-arch 12-20-20-1 --wide-m 8
          --wide-layers-runs 2 --wide-layers-m 8 --wide-path tiled,layers)
  else
    ARGS=(--runs 1e6 --time-limit 20 --torch-runs 20000 --torch-epochs 3)
  fi
  run sgd 35 sgd.log "$PY" bench/gpu_sgd.py "${ARGS[@]}" --json "$W/sgd.json" || fail "gpu_sgd.py"
  [ -s "$W/sgd.json" ] || fail "gpu_sgd.py: no JSON"
fi

if want bench; then
  if [ "$EMU" = 1 ]; then
    say "bench_cupy: not on the emulation (CUDA events)"
  elif [ "$(left)" -gt 45 ]; then
    run bench_cupy $(( $(left) - 20 )) bench_cupy.log "$PY" -m pytest -q -p no:cacheprovider bench/bench_cupy.py \
        --benchmark-json="$W/bench_cupy.json" || say "bench_cupy did not finish (not counted)"
  else
    say "bench_cupy skipped: $(left) s left"
  fi
fi

# the report and the packing always run
"$PY" bench/gpu_report.py "$W" >"$W/report.log" 2>&1 || say "gpu_report.py failed (see report.log)"
[ -s "$W/summary.json" ] && cp "$W/summary.json" "$OUT/summary.json"
say "done, status $status"
cp "$LOG" "$W/gpu-check.log"
pack
exit $status
