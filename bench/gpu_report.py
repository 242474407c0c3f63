#!/usr/bin/env python
"""Figures and a one-page summary of a GPU check (``ci/gpu-check.sh OUTDIR``).

    python bench/gpu_report.py OUTDIR

Reads ``OUTDIR/compare.json`` (bench/compare.py) and ``OUTDIR/run-*/run.json``
(bench/gpu_run.py); writes ``OUTDIR/throughput.png`` (samples/s of every sampler row,
log scale, the goals marked), ``OUTDIR/summary.json`` and prints the summary.  Missing
inputs are reported, not fatal.
"""
from __future__ import annotations

import glob
import json
import os
import sys

GOAL_RATE = 7e7  # samples/s, 7-40-40-1 exact counting on an H100/H200
GOAL_X_TORCH = 5.0


def _load(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__)
        return 2
    out = argv[0]
    comp = _load(os.path.join(out, "compare.json"))
    runs = {os.path.basename(os.path.dirname(p)): _load(p) for p in sorted(glob.glob(os.path.join(out, "run-*",
                                                                                                  "run.json")))}
    summary = {"compare": None, "runs": {k: v for k, v in runs.items() if v}}
    if comp:
        rows = [r for r in comp["rows"] if r.get("workload") == "sampler-prior" and "samples_per_s" in r]
        cupy = next((r["samples_per_s"] for r in rows if r["name"] == "fastpoly cupy"), None)
        torch_best = max((r["samples_per_s"] for r in rows if "cuda" in r["name"] and r.get("kind") == "baseline"),
                         default=None)
        summary["compare"] = {
            "cupy_samples_per_s": cupy, "best_torch_cuda_samples_per_s": torch_best,
            "x_best_torch": (cupy / torch_best) if cupy and torch_best else None,
            "goal_rate_met": bool(cupy and cupy >= GOAL_RATE),
            "goal_x_torch_met": bool(cupy and torch_best and cupy / torch_best >= GOAL_X_TORCH),
        }
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            allrows = [r for r in comp["rows"] if r.get("workload", "").startswith("sampler") and "samples_per_s" in r]
            labels = [f"{r['name']} ({r['workload'].split('-', 1)[1]})" for r in allrows]
            vals = [r["samples_per_s"] for r in allrows]
            fig, ax = plt.subplots(figsize=(8, 0.45 * len(vals) + 1.5))
            colors = ["C3" if "cupy" in lab else ("C0" if "cuda" in lab else "C7") for lab in labels]
            ax.barh(range(len(vals)), vals, color=colors)
            ax.set_yticks(range(len(vals)), labels, fontsize=8)
            ax.set_xscale("log")
            ax.axvline(GOAL_RATE, color="k", ls="--", lw=1, label="goal 7e7/s")
            ax.set_xlabel("samples/s (7-40-40-1 on 128 Boolean inputs, exact counts)")
            ax.legend(loc="lower right", fontsize=8)
            ax.set_title("GPU check: sampler throughput (bench/compare.py --device cuda)")
            fig.tight_layout()
            fig.savefig(os.path.join(out, "throughput.png"), dpi=120)
            plt.close(fig)
        except Exception as exc:  # figures are optional
            print(f"no throughput figure: {exc!r}")
    else:
        print("compare.json missing or unreadable")
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
