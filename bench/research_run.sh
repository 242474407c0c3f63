#!/usr/bin/env bash
# The closing research run of issue 6: sample the prior of a 7-40-40-1 ReLU network, print the
# analysis table, and draw the four figures (rank, complexity, ones, error; PNG and PDF).
#
# usage: bench/research_run.sh OUTDIR [N]          (N defaults to 1e7)
#
# Environment (optional):
#   ARCH=7-40-40-1  BACKEND=auto  SEED=0  MEMORY=4GB   sampling options
#   TARGET=...      target function for the error figure (0/1 string, char i = row i);
#                   default f = x_6 (rows 64..127 are 1), a simple function
#   TRAIN_SIZE=16   random train rows for the offline-conditioned posterior (TRAIN_SEED=0)
#
# The run is checkpointed in OUTDIR/checkpoint: rerunning the script after an interruption
# (Ctrl-C, kill, reboot) resumes it, and the final counts are identical to an uninterrupted run.
set -euo pipefail
OUT=${1:?usage: bench/research_run.sh OUTDIR [N]}
N=${2:-1e7}
ARCH=${ARCH:-7-40-40-1}
BACKEND=${BACKEND:-auto}
SEED=${SEED:-0}
MEMORY=${MEMORY:-4GB}
TRAIN_SIZE=${TRAIN_SIZE:-16}
TRAIN_SEED=${TRAIN_SEED:-0}
if command -v fastpoly >/dev/null 2>&1; then FP=(fastpoly); else FP=(python -m fastpoly); fi
NIN=${ARCH%%-*}
ROWS=$((1 << NIN))
TARGET=${TARGET:-$(printf '0%.0s' $(seq 1 $((ROWS / 2))))$(printf '1%.0s' $(seq 1 $((ROWS / 2))))}

mkdir -p "$OUT"
CK="$OUT/checkpoint"
if [ -f "$CK/job.json" ]; then
  echo "resuming the run checkpointed in $CK"
  "${FP[@]}" sample --resume "$CK" --backend "$BACKEND" | tee "$OUT/sample.txt"
else
  "${FP[@]}" sample "$ARCH" --samples "$N" --seed "$SEED" --backend "$BACKEND" --out "$OUT" \
    --checkpoint "$CK" --checkpoint-every 120 --memory-budget "$MEMORY" --no-plot | tee "$OUT/sample.txt"
fi
COUNTS="$OUT/counts.npz"

"${FP[@]}" analyze "$COUNTS" --top 20 --csv "$OUT/functions.csv" | tee "$OUT/analyze.txt"

for kind in rank complexity ones; do
  for ext in png pdf; do "${FP[@]}" plot "$kind" "$COUNTS" --out "$OUT/$kind.$ext"; done
done

# the posterior of the prior conditioned offline on TRAIN_SIZE rows of TARGET (same as online rejection)
"${FP[@]}" condition "$COUNTS" --target "$TARGET" --train-size "$TRAIN_SIZE" --train-seed "$TRAIN_SEED" \
  --out "$OUT/posterior.npz" | tee "$OUT/condition.txt"
"${FP[@]}" analyze "$OUT/posterior.npz" --top 10 | tee "$OUT/analyze_posterior.txt"
for ext in png pdf; do "${FP[@]}" plot error "$OUT/posterior.npz" --out "$OUT/error.$ext"; done
echo "done: $OUT/{analyze.txt,rank,complexity,ones,error}.{png,pdf}"
