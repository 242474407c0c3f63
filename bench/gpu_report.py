#!/usr/bin/env python
"""Figures and a one-page summary of a GPU check (``ci/gpu-check.sh OUTDIR``).

    python bench/gpu_report.py OUTDIR

Reads what the check's steps left in ``OUTDIR`` (each may be missing or partial: reported,
never fatal): ``smoke.json`` (bench/gpu_smoke.py), ``*.xml`` (pytest's JUnit reports),
``compare.json`` (bench/compare.py), ``run-*/run.json`` (bench/gpu_run.py), ``sgd.json``
(bench/gpu_sgd.py), ``steps.jsonl`` (the check's own step log: one JSON object per step).  Writes ``OUTDIR/summary.json``
and ``OUTDIR/throughput.png``, and prints the summary.

Sampler rates are set against the **FP32 FMA roof** of the network on the device:
``SMs x 128 FP32 lanes x clock / multiply-adds per sample`` -- for 7-40-40-1 on the 128
Boolean inputs (245,760 multiply-adds per sample) on an H100 SXM (132 SMs, 1.98 GHz) about
1.36e8 samples/s.  No kernel that computes every multiply-add in FP32 can pass it; the SASS
of the sampler (Philox + Box--Muller and the layer loops, ~14.8k warp-instructions per sample)
puts its issue ceiling near 7e7/s, about half the roof.  The report gives the ratio to the roof,
and the end-to-end / kernel-only ratio of the timed run (goal >= 0.8).
"""
from __future__ import annotations

import glob
import json
import os
import sys
import xml.etree.ElementTree as ET

#: FP32 FMA roof of 7-40-40-1 on 128 inputs on an H100 SXM, when the run did not record the device's clock
H100_ROOF_ANCHOR = 132 * 128 * 1.98e9 / (128 * (7 * 40 + 40 * 40 + 40 * 1))
END_TO_END_GOAL = 0.8


def _load(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _load_lines(path):
    try:
        with open(path) as fh:
            return [json.loads(ln) for ln in fh if ln.strip()]
    except (OSError, ValueError):
        return None


def junit_summary(path):
    """Counts of a pytest JUnit XML file, and the ids of the failed / errored tests."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        return {"error": repr(exc)}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    out = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    out["time_s"] = sum(float(s.get("time", 0)) for s in suites)
    bad = []
    for tc in root.iter("testcase"):
        if tc.find("failure") is not None or tc.find("error") is not None:
            bad.append(f"{tc.get('classname')}::{tc.get('name')}")
    out["failed"] = bad[:50]
    return out


def roof_of(run):
    """(roof samples/s, where it came from) for a run.json."""
    r = run.get("fp32_fma_roof_samples_per_s")
    if r:
        return r, "device clock x SMs"
    return H100_ROOF_ANCHOR, "H100 SXM constant (132 SMs, 1.98 GHz)"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__)
        return 2
    out = argv[0]
    summary = {"steps": _load_lines(os.path.join(out, "steps.jsonl")), "smoke": None, "tests": {}, "runs": {},
               "compare": None, "sgd": None}
    smoke = _load(os.path.join(out, "smoke.json"))
    if smoke:
        summary["smoke"] = {"complete": smoke.get("complete"), "device": smoke.get("info", {}).get("device"),
                            "rows": [{k: r.get(k) for k in ("check", "ok", "seconds", "error")} for r in smoke["rows"]]}
    for x in sorted(glob.glob(os.path.join(out, "*.xml"))):
        summary["tests"][os.path.basename(x)] = junit_summary(x)
    for p in sorted(glob.glob(os.path.join(out, "run-*", "run.json"))):
        run = _load(p)
        if not run:
            continue
        k = (run.get("kernel_only") or {}).get("samples_per_s")
        e2e = run.get("end_to_end") or {}
        roof, how = (None, "not on the CPU emulation") if run.get("info", {}).get("emulate") else roof_of(run)
        summary["runs"][os.path.basename(os.path.dirname(p))] = {
            "complete": run.get("complete"), "device": run.get("info", {}).get("device"),
            "samples_done": e2e.get("samples_done"), "kernel_only_samples_per_s": k,
            "end_to_end_samples_per_s": e2e.get("samples_per_s"),
            "end_to_end_over_kernel": run.get("ratio_end_to_end_to_kernel"),
            "end_to_end_goal_met": bool(run.get("ratio_end_to_end_to_kernel")
                                        and run["ratio_end_to_end_to_kernel"] >= END_TO_END_GOAL),
            "fp32_fma_roof_samples_per_s": roof, "roof_from": how,
            "kernel_over_roof": (k / roof) if k and roof else None,
            "backend_merge_s": e2e.get("backend_merge_s"), "device_s": e2e.get("device_s"),
            "wall_s": e2e.get("wall_s"), "stopped_early": run.get("stopped_early"),
            "peak_host_memory_bytes": run.get("peak_host_memory_bytes"), "model": run.get("model"),
        }
    comp = _load(os.path.join(out, "compare.json"))
    if comp:
        rows = [r for r in comp.get("rows", []) if r.get("workload") == "sampler-prior" and "samples_per_s" in r]
        cupy = next((r["samples_per_s"] for r in rows if r["name"] == "fastpoly cupy"), None)
        torch_best = max((r["samples_per_s"] for r in rows if "cuda" in r["name"] and r.get("kind") == "baseline"),
                         default=None)
        summary["compare"] = {
            "complete": comp.get("complete"), "cupy_samples_per_s": cupy,
            "best_torch_cuda_samples_per_s": torch_best,
            "x_best_torch": (cupy / torch_best) if cupy and torch_best else None,
            "cupy_over_h100_roof": (cupy / H100_ROOF_ANCHOR) if cupy else None,
            "rows": [{k: r.get(k) for k in ("workload", "name", "samples_per_s", "points_per_s", "n", "error")}
                     for r in comp.get("rows", [])],
        }
        _figure(comp, out)
    sgd = _load(os.path.join(out, "sgd.json"))
    if sgd:
        summary["sgd"] = {"fastpoly": sgd.get("fastpoly"), "torch": sgd.get("torch"), "warmup_s": sgd.get("warmup_s"),
                          # the wide rows (tiled kernel first, then the layer kernel): runs/s, GFLOP/s and
                          # the projected time of the MNIST-sized goal
                          "wide": sgd.get("wide"), "wide_rows": sgd.get("wide_rows")}
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    print(json.dumps(summary, indent=2, default=str)[:6000])
    return 0


def _figure(comp, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        allrows = [r for r in comp["rows"] if r.get("workload", "").startswith("sampler") and "samples_per_s" in r]
        if not allrows:
            return
        labels = [f"{r['name']} ({r['workload'].split('-', 1)[1]})" for r in allrows]
        vals = [r["samples_per_s"] for r in allrows]
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(vals) + 1.5))
        colors = ["C3" if "cupy" in lab else ("C0" if "cuda" in lab else "C7") for lab in labels]
        ax.barh(range(len(vals)), vals, color=colors)
        ax.set_yticks(range(len(vals)), labels, fontsize=8)
        ax.set_xscale("log")
        ax.axvline(H100_ROOF_ANCHOR, color="k", ls="--", lw=1, label=f"FP32 FMA roof, H100 ({H100_ROOF_ANCHOR:.3g}/s)")
        ax.set_xlabel("samples/s (7-40-40-1 on 128 Boolean inputs, exact counts)")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title("GPU check: sampler throughput (bench/compare.py --gpu-only)")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "throughput.png"), dpi=120)
        plt.close(fig)
    except Exception as exc:  # figures are optional
        print(f"no throughput figure: {exc!r}")


if __name__ == "__main__":
    sys.exit(main())
