#!/usr/bin/env bash
# P_SGD vs P_B^GP on MNIST at the paper's scale (Mingard et al. 2021), for one GPU and the user's IDX files.
# Usage: bench/psgd_vs_gp_mnist.sh DATA_DIR OUT
#   DATA_DIR  folder with the four MNIST IDX files (train-images-idx3-ubyte[.gz], ...; never downloaded)
#   RUNS      training runs per optimizer (default 10000; the paper had ~1e5)
#   ARCH      default 784-512-512-1 (the anchor's MNIST SGD-vs-Bayes width); 784-1024-1024-1 also works
#   M         train images (default 10000), drawn from the official train split (seed 0)
#   OPTIMIZERS  default sgd,adam,adagrad,rmsprop
#   BACKEND   training backend (default cupy); LINALG: EP's linear algebra (default cupy, cuSOLVER)
#   MAX_FUNCTIONS  cap on the functions that get P_B^GP, most frequent first (default: every one seen >= 2 times)
# Runs 'fastpoly experiment psgd-vs-gp' with the anchor's conventions (nn-pacbayes preset: label >= 5 -> 1,
# pixels / 255, the first 100 official test images in order; sigma_w = 1, sigma_b = 1/sqrt(784) = 0.0357;
# batch 128; stop at 100 % train accuracy (logit > 0.5) + 64 epochs; Keras learning rates) and writes
# OUT/{results.json,functions.csv,psgd_vs_gp.png,mass_by_errors.png,summary.txt}, the runs in OUT/runs/.
# It always passes --resume: a killed run continues where its checkpoints stopped, a finished one is re-read.
#
# Expected time on one H100 -- an ESTIMATE from arithmetic, not a measurement (no GPU was lent when this
# script was written; see docs/guide/real-data.md):
#   training FLOPs per run = epochs x m x 8 P   (6 P per example and step: forward + backward + update;
#                                                2 P per example for the per-epoch fit check)
#   P = 665,089 parameters (784-512-512-1) or 1,854,465 (784-1024-1024-1); m = 10,000;
#   epochs ~ 100 per run (fit in ~20-40 epochs, then 64 more) -- the least known factor;
#   784-512-512-1:   5.3e12 FLOP per run; 1e4 runs = 5.3e16 FLOP per optimizer
#   784-1024-1024-1: 1.5e13 FLOP per run; 1e4 runs = 1.5e17 FLOP per optimizer
#   float32 FMA rate of an H100 (non-tensor) ~ 60 TFLOP/s peak; assume half sustained (30 TFLOP/s):
#   784-512-512-1:   ~30 min per optimizer (15 min at peak), ~2 h for the four optimizers
#   784-1024-1024-1: ~80 min per optimizer (40 min at peak), ~5.5 h for the four optimizers
#   GP: kernel of 10,100 images ~10 s (CPU); EP log P(S) at m = 10,000 is 30 sweeps of a 10^4 Cholesky
#   (2m^3/3 = 6.7e11 FLOP each, float64): seconds on cuSOLVER (23 min wall on the shared 2-core CPU);
#   joint EP per function ~ one more P(S): F functions seen >= 2 times cost ~F x (2e13 FLOP), i.e. about
#   a second each at a sustained 20 TFLOP/s float64.
# The training time scales with RUNS, the epochs per run and the trainer's efficiency on the device: these
# MLPs train on the tiled kernel (kernels/train_wide.cu, one block per run; estimated 40-60 % of the FMA roof,
# docs/guide/wide-networks.md), whose speed has not been measured on a GPU yet. Measure first: ci/gpu-check.sh
# reports its runs/s and the projected time of 1e4 runs (bench/gpu_sgd.py), or run a small RUNS, e.g. RUNS=200.
set -euo pipefail
data="${1:?usage: bench/psgd_vs_gp_mnist.sh DATA_DIR OUT}"
out="${2:?usage: bench/psgd_vs_gp_mnist.sh DATA_DIR OUT}"
[ -d "$data" ] || { echo "psgd_vs_gp_mnist.sh: $data is not a folder" >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
RUNS="${RUNS:-10000}"
ARCH="${ARCH:-784-512-512-1}"
M="${M:-10000}"
OPTIMIZERS="${OPTIMIZERS:-sgd,adam,adagrad,rmsprop}"
BACKEND="${BACKEND:-cupy}"
LINALG="${LINALG:-cupy}"
cap=()
[ -n "${MAX_FUNCTIONS:-}" ] && cap=(--max-functions "$MAX_FUNCTIONS")
mkdir -p "$out"
t0=$(date +%s)
python -m fastpoly experiment psgd-vs-gp --data mnist --data-path "$data" --arch "$ARCH" \
  --optimizer "$OPTIMIZERS" --train "$M" --test 100 --runs "$RUNS" --min-count 2 \
  --batch 128 --epochs-after-fit 64 --max-epochs 1000 \
  ${cap[@]+"${cap[@]}"} --backend "$BACKEND" --linalg "$LINALG" --resume --no-progress --out "$out" 2>&1 | tee -a "$out/run.log"
echo "total wall time: $(( $(date +%s) - t0 )) s" | tee -a "$out/run.log"
