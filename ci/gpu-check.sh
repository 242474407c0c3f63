#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU, CuPy (and PyTorch) and no network; from a source checkout:
#     PYTHONPATH=. ci/gpu-check.sh OUTDIR
# Sized for one short device call: every step runs under `timeout` (slots 15+75+30+45+60+40+15 s,
# the 1e8 fallback 20 s, within the 285 s budget), the whole script stays under
# 5 minutes on an H100/H200 including compilation (NVRTC, PTX JIT, CuPy's own kernels).
#   1. environment report (nvidia-smi, backends)                       -> OUTDIR/env.txt
#   2. GPU tests, FASTPOLY_REQUIRE_GPU=1 (a skip is a failure), and the  -> OUTDIR/gpu-tests.log, .xml
#      FTZ guard on the PTX of the backend's compile path; the K_LZ kernel (tests/test_klz_cuda.py)
#   3. bench/compare.py --device cuda: the cupy backend vs PyTorch eager -> OUTDIR/compare.json, .log
#      and torch.compile on the same card; NumPy reference on a small N
#   4. a timed exact-count run of 7-40-40-1, 1e9 samples: GPU time, host  -> OUTDIR/run-1e9/run.{json,txt},
#      merge time, peak host memory, and a model of the 1e10 run            rank.png
#      (falls back to 1e8 when 1e9 does not finish in its slot)
#   5. P_SGD: tests/test_sgd_cuda.py (after step 2)                     -> OUTDIR/gpu-tests-sgd.log, .xml
#      and bench/gpu_sgd.py: the m = 32 anchor recipe, 1e6 runs (goal     -> OUTDIR/sgd.json, sgd.log
#      < 30 s), PyTorch bmm / func.vmap on the same card
#   6. figures and summary                                               -> OUTDIR/throughput.png, summary.json
#   7. bench/bench_cupy.py (CUDA events), only with time to spare       -> OUTDIR/bench_cupy.{json,log}
# The full 1e10 run is bench/gpu-1e10.sh OUTDIR (about 10 minutes at the goal rate).
# Exit status: 0 only if the GPU tests passed, compare.py wrote its JSON, a timed run finished and
# gpu_sgd.py wrote its JSON.
set -uo pipefail
OUT="${1:?usage: ci/gpu-check.sh OUTDIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export FASTPOLY_REQUIRE_GPU=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
PY="${PYTHON:-python3}"
BUDGET=${GPU_CHECK_BUDGET:-285}   # seconds for the whole script
t0=$(date +%s)
status=0
LOG="$OUT/gpu-check.log"
: >"$LOG"

left() { echo $(( BUDGET - ($(date +%s) - t0) )); }
# slot LIMIT: the step's time limit, capped by what is left of the budget (at least 5 s)
slot() { local l; l=$(left); [ "$l" -lt "$1" ] && echo $(( l > 5 ? l : 5 )) || echo "$1"; }
say() { echo "== [$(( $(date +%s) - t0 )) s] $*" | tee -a "$LOG"; }

say "environment"
timeout "$(slot 15)" "$PY" - >"$OUT/env.txt" 2>&1 <<'PYEOF'
import subprocess, platform
try:
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout)
except Exception as e:
    print("nvidia-smi failed:", e)
import fastpoly
print("python", platform.python_version(), "fastpoly", fastpoly.__version__)
for k, v in fastpoly.backends().items():
    print("backend", k, v)
try:
    import cupy
    print("cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion())
    print(fastpoly.get_backend("cupy").describe())
except Exception as e:
    print("cupy backend:", repr(e))
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available())
except Exception as e:
    print("torch:", repr(e))
PYEOF
cat "$OUT/env.txt" | tee -a "$LOG"

say "GPU tests (FASTPOLY_REQUIRE_GPU=1)"
timeout "$(slot 75)" "$PY" -m pytest -q -rfEs -p no:cacheprovider \
    tests/test_cupy_backend.py tests/test_cuda_emu_ptx.py tests/test_klz_cuda.py \
    --junitxml="$OUT/gpu-tests.xml" 2>&1 | tee "$OUT/gpu-tests.log" | tail -25 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { say "GPU tests FAILED (rc=$rc; 124 = out of time)"; status=1; }

say "GPU tests of the P_SGD trainer (kernels/train.cu)"
timeout "$(slot 30)" "$PY" -m pytest -q -rfEs -p no:cacheprovider tests/test_sgd_cuda.py \
    --junitxml="$OUT/gpu-tests-sgd.xml" 2>&1 | tee "$OUT/gpu-tests-sgd.log" | tail -15 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { say "P_SGD GPU tests FAILED (rc=$rc; 124 = out of time)"; status=1; }

say "bench/compare.py --device cuda"
timeout "$(slot 45)" "$PY" bench/compare.py --device cuda --rounds 2 --round-seconds 0.4 \
    --poly-points 200000 --ref-points 5000 --json "$OUT/compare.json" 2>&1 | tee "$OUT/compare.log" | tee -a "$LOG"
rc=${PIPESTATUS[0]}
{ [ "$rc" -eq 0 ] && [ -s "$OUT/compare.json" ]; } || { say "compare.py FAILED (rc=$rc)"; status=1; }

say "timed run: 7-40-40-1, 1e9 samples, exact counts"
timeout "$(slot 60)" "$PY" bench/gpu_run.py --samples 1e9 --model-samples 1e10 --out "$OUT/run-1e9" 2>&1 \
    | tee -a "$LOG"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
  say "the 1e9 run did not finish (rc=$rc; 124 = out of time)"
  if [ "$(left)" -gt 35 ]; then
    say "timed run: 1e8 samples (for the model)"
    timeout "$(slot 20)" "$PY" bench/gpu_run.py --samples 1e8 --model-samples 1e10 --out "$OUT/run-1e8" 2>&1 \
        | tee -a "$LOG"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  else
    status=1
  fi
fi

say "P_SGD: m = 32 anchor recipe, 1e6 runs (goal < 30 s) vs PyTorch bmm/vmap on the same card"
timeout "$(slot 40)" "$PY" bench/gpu_sgd.py --runs 1e6 --time-limit 30 --torch-runs 20000 --torch-epochs 3 \
    --json "$OUT/sgd.json" 2>&1 | tee "$OUT/sgd.log" | tee -a "$LOG"
rc=${PIPESTATUS[0]}
{ [ "$rc" -eq 0 ] && [ -s "$OUT/sgd.json" ]; } || { say "gpu_sgd.py FAILED (rc=$rc; 124 = out of time)"; status=1; }

say "figures and summary"
timeout "$(slot 15)" "$PY" bench/gpu_report.py "$OUT" 2>&1 | tee -a "$LOG"

if [ "$(left)" -gt 60 ]; then
  say "bench/bench_cupy.py"
  timeout "$(( $(left) - 10 ))" "$PY" -m pytest -q -p no:cacheprovider bench/bench_cupy.py \
      --benchmark-json="$OUT/bench_cupy.json" 2>&1 | tee "$OUT/bench_cupy.log" | tail -15 | tee -a "$LOG" \
      || say "bench_cupy did not finish"
else
  say "bench_cupy skipped: $(left) s left" | tee "$OUT/bench_cupy.log"
fi

say "done, status $status"
exit $status
