#!/usr/bin/env bash
# CI entry point (called by .ci/run): a fresh virtual environment, the README's test command,
# then the benchmarks once as smoke tests, ruff/mypy/import-linter, the documentation (with its
# executed examples), the sdist and wheel, the CUDA compile check and a short run of the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$(mktemp -d)
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$WORK/numba-cache}"
export MPLBACKEND=Agg
export PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$NUMBA_CACHE_DIR"

python3 -m venv "$WORK/venv"
# shellcheck disable=SC1091
. "$WORK/venv/bin/activate"

# CI-only: NVRTC (what cupy.RawModule compiles with at run time) so that tests/cuda/test_cuda_compile.py
# checks the kernels through NVRTC too, not only nvcc. Optional: the test skips without it.
python -m pip install -q nvidia-cuda-nvrtc || echo "ci: nvidia-cuda-nvrtc not installed; NVRTC checks will skip"

# The README's quickstart test command, verbatim (so a missing install step fails CI).
TEST_CMD=$(awk '/<!-- quickstart-test -->/{f=1; next} f && /^pip /{print; exit}' README.md)
if [ -z "$TEST_CMD" ]; then echo "ci: no quickstart test command found in README.md" >&2; exit 1; fi
echo "+ $TEST_CMD"
eval "$TEST_CMD"

echo "+ python -m pytest bench --benchmark-disable -q"
python -m pytest bench --benchmark-disable -q

# Static checks of the package: lint, types, and the layer contracts of the README's Architecture.
python -m pip install -q ".[dev]"
echo "+ ruff check fastpoly tests bench"
ruff check fastpoly tests bench
echo "+ mypy"
mypy
echo "+ lint-imports"
lint-imports

# The documentation site, warnings as errors, with the example gallery executed (a broken example or
# docstring fails CI), then the release artifacts: sdist and wheel, twine's metadata check, and the
# wheel's contents (the CUDA sources and headers the cupy backend compiles at run time, and py.typed).
python -m pip install -q ".[docs]" build twine
echo "+ sphinx-build -W -b html docs docs/_build/html"
docs_t0=$(date +%s)
rm -rf docs/_build docs/api docs/auto_examples
sphinx-build -W --keep-going -b html docs docs/_build/html
echo "ci: docs built in $(( $(date +%s) - docs_t0 )) s"
echo "+ python -m build"
python -m build --outdir "$WORK/dist" .
echo "+ twine check"
twine check --strict "$WORK"/dist/*
python - "$WORK"/dist/*.whl <<'PY'
import pathlib, sys, zipfile

names = set(zipfile.ZipFile(sys.argv[1]).namelist())
want = {f"fastpoly/kernels/{p.name}" for p in pathlib.Path("kernels").iterdir() if p.suffix in (".cu", ".cuh")}
want |= {"fastpoly/py.typed"}
missing = sorted(want - names)
if missing or not any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names):
    sys.exit(f"ci: the wheel lacks {missing or 'LICENSE'}")
print(f"ci: wheel ships {len(want) - 1} CUDA sources/headers, py.typed and LICENSE")
PY

if [ -x ci/nvcc-check.sh ]; then
  echo "+ ci/nvcc-check.sh"
  ci/nvcc-check.sh
fi

# The GPU check's dry run on the CPU emulation of CUDA (~1 min): its steps, slots, partial JSON, packing
# (at most 8 files, what one device call brings back) and exit status, proven before a device is lent.
echo "+ ci/gpu-check.sh --emulate"
ci/gpu-check.sh --emulate "$WORK/gpu-check" || { tail -n 60 "$WORK/gpu-check/gpu-check.log" >&2; exit 1; }
n_files=$(find "$WORK/gpu-check" -type f | wc -l)
[ "$n_files" -le 8 ] || { echo "ci: gpu-check.sh --emulate wrote $n_files files (a device call returns 8)" >&2; exit 1; }

# The main job on the default backend (the quickstart's run command, shortened).
cd "$WORK"
echo "+ fastpoly sample 7-40-40-1 --samples 1e5 --no-progress"
fastpoly sample 7-40-40-1 --samples 1e5 --no-progress --out "$WORK/out"
cd "$ROOT"
