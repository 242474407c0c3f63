#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU, CuPy and no network; run from a source checkout:
#     bash ci/gpu-check.sh OUTDIR
# 1. environment report (nvidia-smi, backends)            -> OUTDIR/env.txt
# 2. GPU tests with FASTPOLY_REQUIRE_GPU=1 (skips = fails)  -> OUTDIR/gpu-tests.log, gpu-tests.xml
# 3. bench/compare.py --device cuda (fastpoly backends vs PyTorch eager / torch.compile on the same card,
#    Numba on the CPU cores)                                -> OUTDIR/compare.json, compare.log
# 4. bench/bench_cupy.py (CUDA-event timings)               -> OUTDIR/bench_cupy.json, bench_cupy.log
# Each step has its own time limit; the whole script stays under 8 minutes.
# Exit status: 0 only if the GPU tests passed and compare.py produced its JSON.
set -uo pipefail
OUT="${1:?usage: ci/gpu-check.sh OUTDIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export FASTPOLY_REQUIRE_GPU=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python3}"
t0=$(date +%s)
status=0

{
  echo "== date: $(date -u)"; echo "== git: $(git rev-parse HEAD 2>/dev/null || echo '?')"
  nvidia-smi 2>&1 || echo "nvidia-smi failed"
  "$PY" - <<'PYEOF' 2>&1
import fastpoly, platform
print("python", platform.python_version(), "fastpoly", fastpoly.__version__)
for k, v in fastpoly.backends().items():
    print("backend", k, v)
try:
    import cupy
    print("cupy", cupy.__version__)
    print(fastpoly.get_backend("cupy").describe())
except Exception as e:
    print("cupy backend:", repr(e))
PYEOF
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

echo "== GPU tests"
timeout 230 "$PY" -m pytest -q -rfEs -p no:cacheprovider \
    tests/test_cupy_backend.py tests/test_cuda_host.py \
    --junitxml="$OUT/gpu-tests.xml" 2>&1 | tee "$OUT/gpu-tests.log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { echo "GPU tests FAILED (rc=$rc)"; status=1; }

echo "== bench/compare.py --device cuda"
if [ -f bench/compare.py ]; then
  timeout 200 "$PY" bench/compare.py --device cuda --rounds 3 --round-seconds 0.5 --poly-points 200000 --json "$OUT/compare.json" 2>&1 | tee "$OUT/compare.log"
  rc=${PIPESTATUS[0]}
  { [ "$rc" -eq 0 ] && [ -s "$OUT/compare.json" ]; } || { echo "compare.py FAILED (rc=$rc)"; status=1; }
else
  echo "bench/compare.py missing"; status=1
fi

echo "== bench/bench_cupy.py"
left=$(( 470 - ($(date +%s) - t0) ))
if [ "$left" -gt 20 ]; then
  timeout "$left" "$PY" -m pytest -q -p no:cacheprovider bench/bench_cupy.py \
      --benchmark-json="$OUT/bench_cupy.json" 2>&1 | tee "$OUT/bench_cupy.log" || echo "bench_cupy did not finish"
else
  echo "skipped: not enough time left ($left s)" | tee "$OUT/bench_cupy.log"
fi

echo "== done in $(( $(date +%s) - t0 )) s, status $status"
exit $status
