#!/usr/bin/env python
"""A timed exact-count run on the GPU, and a model of a larger one (time, host memory, disk).

    python bench/gpu_run.py --samples 1e9 --out OUTDIR        # ci/gpu-check.sh
    python bench/gpu_run.py --samples 1e10 --out OUTDIR       # bench/gpu-1e10.sh

The run is done in two parts (the first tenth, then the rest) through ``fastpoly.sample``
with the cupy backend, so the number of distinct functions is known at two sizes; their
ratio gives the growth exponent used to extrapolate (Heaps' law, D ~ N**beta).  Reported:
wall time, device time (launches, GPU sorts and copies, from the backend's timings), the
backend's host merge of sorted runs, the rest of the host merging (``fastpoly.sample``'s
accumulation), peak host memory (ru_maxrss), distinct functions, and the model for
``--model-samples`` (default 1e10).  Writes ``OUTDIR/run.json``, ``OUTDIR/run.txt`` and
``OUTDIR/rank.png`` (the rank plot of the counts) when Matplotlib is there.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpoly  # noqa: E402
from fastpoly.backends.cuda.backend import CupyBackend  # noqa: E402


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def model(n, d, part_n, part_d, device_s, merge_s, target, n_words):
    """Extrapolate a run of ``n`` samples (``d`` distinct) to ``target`` samples.

    Device time is linear in the samples; the distinct count grows as N**beta with beta from
    the two measured sizes; host merging is linear in the records merged, which grow like
    the distinct count (at most linearly in the samples); memory and disk are the final
    count table (key words, count, first index: 8 W + 16 bytes per function), twice for
    the merge that produces it.
    """
    beta = math.log(d / part_d) / math.log(n / part_n) if d > part_d > 0 and n > part_n else 1.0
    beta = min(max(beta, 0.0), 1.0)
    f = target / n
    d_t = d * f**beta
    rec = 8 * n_words + 16
    merge_lo = merge_s * f              # linear in the samples
    merge_hi = merge_s * f * (d_t / d)  # each batch merged into a table that grows like D
    return {
        "target_samples": target, "beta": beta, "distinct": d_t,
        "device_s": device_s * f, "host_merge_s": merge_hi, "host_merge_s_linear": merge_lo,
        "total_s": device_s * f + merge_hi, "total_s_linear": device_s * f + merge_lo,
        "host_memory_bytes": 2 * d_t * rec, "disk_bytes": d_t * rec,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="7-40-40-1")
    ap.add_argument("--samples", type=float, default=1e9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-samples", type=float, default=1e10)
    ap.add_argument("--batch-size", type=float, default=None, help="samples per backend call (default: auto)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    n = int(args.samples)
    n1 = max(1, n // 10)
    be = CupyBackend()
    ok, why = be.availability()
    if not ok:
        print(f"cupy backend unavailable: {why}", file=sys.stderr)
        return 2
    bs = int(args.batch_size) if args.batch_size else None
    # compile + warm up outside the timing, and check a prefix against the reference
    small = fastpoly.sample(args.arch, n_samples=4000, seed=args.seed, backend=be, progress=False)
    ref = fastpoly.sample(args.arch, n_samples=4000, seed=args.seed, backend="numpy", progress=False)
    exact = bool(np.array_equal(small.keys, ref.keys) and np.array_equal(small.counts, ref.counts)
                 and np.array_equal(small.first_index, ref.first_index))
    be.timings = {"device_s": 0.0, "merge_s": 0.0, "sub_batches": 0}
    t0 = time.perf_counter()
    c1 = fastpoly.sample(args.arch, n_samples=n1, seed=args.seed, backend=be, batch_size=bs, progress=False)
    t1 = time.perf_counter()
    d1 = c1.n_distinct
    c2 = fastpoly.sample(args.arch, n_samples=n - n1, start=n1, seed=args.seed, backend=be, batch_size=bs,
                         progress=False)
    t2 = time.perf_counter()
    c = c1.merge(c2)
    t3 = time.perf_counter()
    del c1, c2
    wall = t3 - t0
    dev_s, bmerge = be.timings["device_s"], be.timings["merge_s"]
    host_merge = wall - dev_s  # everything that is not device work: backend merge + API accumulation
    assert c.n_samples == n and int(c.counts.sum()) == c.n_accepted
    res = {
        "arch": args.arch, "samples": n, "seed": args.seed, "device": be.describe(),
        "prefix_exact_vs_numpy": exact,
        "wall_s": wall, "samples_per_s": n / wall, "device_s": dev_s, "device_samples_per_s": n / dev_s,
        "backend_merge_s": bmerge, "host_merge_s": host_merge, "final_merge_s": t3 - t2,
        "sub_batches": be.timings["sub_batches"], "peak_host_memory_bytes": peak_rss_bytes(),
        "distinct": c.n_distinct, "distinct_at_tenth": d1, "first_part_s": t1 - t0,
        "top_constant_share": float(c.counts.max()) / c.n_accepted,
    }
    res["model"] = model(n, c.n_distinct, n1, d1, dev_s, host_merge, int(args.model_samples), c.n_words)
    with open(os.path.join(args.out, "run.json"), "w") as fh:
        json.dump(res, fh, indent=2, default=str)
    m = res["model"]
    lines = [
        f"{args.arch}: {n:.3g} samples, exact counts, {res['device']}",
        f"  prefix identical to the NumPy reference: {exact}",
        f"  wall {wall:.1f} s ({n / wall:,.0f} samples/s); device {dev_s:.1f} s ({n / dev_s:,.0f}/s); "
        f"host merging {host_merge:.1f} s (backend runs {bmerge:.1f} s)",
        f"  peak host memory {res['peak_host_memory_bytes'] / 2**30:.2f} GiB; {c.n_distinct:,} distinct functions "
        f"({d1:,} after the first tenth); largest share {res['top_constant_share']:.3f}",
        f"  model of {m['target_samples']:.3g} samples: beta={m['beta']:.3f}, {m['distinct']:.3g} distinct, "
        f"device {m['device_s']:.0f} s + host merge {m['host_merge_s_linear']:.0f}..{m['host_merge_s']:.0f} s = "
        f"{m['total_s_linear'] / 60:.1f}..{m['total_s'] / 60:.1f} min; "
        f"host memory {m['host_memory_bytes'] / 2**30:.1f} GiB, disk {m['disk_bytes'] / 2**30:.1f} GiB",
    ]
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "run.txt"), "w") as fh:
        fh.write(text + "\n")
    try:
        from fastpoly.analysis.figures import plot_rank

        plot_rank(c, out=os.path.join(args.out, "rank.png"))
    except Exception as exc:  # figures are optional
        print(f"  (no rank figure: {exc!r})")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
