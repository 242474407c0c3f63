#!/usr/bin/env bash
# P_SGD vs P_B on the anchor Boolean experiment (Mingard et al. 2021; docs/design.md#psgd-anchor-experiment), end to end.
# Usage: bench/psgd_vs_pb.sh OUTDIR
#   PSGD_RUNS   runs per P_SGD result (default 1e5; the corrected rule and the leaked-callback emulation)
#   PB_SAMPLES  prior samples for P_B by rejection (default 4e7; acceptance ~3e-5 at m = 32)
#   M           train-set size (default 32)
# Writes OUTDIR/{psgd,psgd-leak,pb}/counts.npz, OUTDIR/comparison.txt, OUTDIR/comparison.csv,
# OUTDIR/summary.json and OUTDIR/psgd_vs_pb.png.
set -euo pipefail
out="${1:?usage: bench/psgd_vs_pb.sh OUTDIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
M="${M:-32}"
RUNS="${PSGD_RUNS:-1e5}"
PB="${PB_SAMPLES:-4e7}"
mkdir -p "$out"
t0=$(date +%s)
python -m fastpoly train --anchor "$M" --runs "$RUNS" --records --no-progress --out "$out/psgd" | tee "$out/psgd.log"
python -m fastpoly train --anchor "$M" --callback-leak --runs "$RUNS" --records --no-progress --out "$out/psgd-leak" \
  | tee "$out/psgd-leak.log"
python -m fastpoly sample 7-40-40-1 --train "anchor:$M" --samples "$PB" --no-plot --no-progress --out "$out/pb" \
  | tee "$out/pb.log"
python - "$out" <<'PY'
import json, os, sys
import numpy as np
import fastpoly
from fastpoly.sgd.api import compare, plot_compare

out = sys.argv[1]
sgd = fastpoly.FunctionCounts.load(os.path.join(out, "psgd", "counts.npz"))
leak = fastpoly.FunctionCounts.load(os.path.join(out, "psgd-leak", "counts.npz"))
pb = fastpoly.FunctionCounts.load(os.path.join(out, "pb", "counts.npz"))
c = compare(sgd, pb, k=2, names=("P_SGD", "P_B"))
cl = compare(leak, sgd, k=2, names=("P_SGD_leak", "P_SGD"))
plot_compare(sgd, pb, os.path.join(out, "psgd_vs_pb.png"), names=("P_SGD", "P_B"))
plot_compare(leak, sgd, os.path.join(out, "leak_vs_noleak.png"), names=("P_SGD leaked callback", "P_SGD"))
c.save_table(os.path.join(out, "comparison.csv"))
tgt_i = int(np.flatnonzero(c.errors == 0)[0]) if np.any(c.errors == 0) else None
rec = {k: np.load(os.path.join(out, d, "records.npz"))["epochs"].mean() for k, d in (("noleak", "psgd"), ("leak", "psgd-leak"))}
s = c.summary()
s.update(
    p_sgd_target=float(c.p_a[tgt_i]) if tgt_i is not None else 0.0,
    p_b_target=float(c.p_b[tgt_i]) if tgt_i is not None else 0.0,
    p_sgd_leak_target=float(cl.p_a[np.flatnonzero(cl.errors == 0)[0]]) if np.any(cl.errors == 0) else 0.0,
    runs=sgd.n_samples, fitted=sgd.n_accepted, failed=sgd.n_samples - sgd.n_accepted,
    pb_samples=pb.n_samples, pb_accepted=pb.n_accepted,
    mean_epochs_noleak=float(rec["noleak"]), mean_epochs_leak=float(rec["leak"]),
    leak_vs_noleak=cl.summary(),
    one_error_neighbours=c.neighbours(1)[:10],
)
with open(os.path.join(out, "summary.json"), "w") as fh:
    json.dump(s, fh, indent=1)
with open(os.path.join(out, "comparison.txt"), "w") as fh:
    fh.write(c.to_text(25) + "\n\n== leaked callback vs intended rule ==\n" + cl.to_text(10) + "\n")
print(c.to_text(15))
print(f"P_SGD(target) = {s['p_sgd_target']:.4f} (leak: {s['p_sgd_leak_target']:.4f}), P_B(target) = {s['p_b_target']:.4f}")
print(f"mean epochs: {s['mean_epochs_noleak']:.1f} (intended rule), {s['mean_epochs_leak']:.1f} (leaked callback)")
PY
echo "elapsed $(( $(date +%s) - t0 )) s"
