#!/usr/bin/env python
"""A timed exact-count run on the GPU: kernel-only and end-to-end rates side by side, and a model of a larger run.

    python bench/gpu_run.py --samples 1e9 --time-limit 50 --out OUTDIR   # ci/gpu-check.sh
    python bench/gpu_run.py --samples 1e10 --out OUTDIR                  # bench/gpu-1e10.sh
    python bench/gpu_run.py --emulate --samples 2e4 --out OUTDIR         # the CPU emulation (dry run)

1. **Kernel only**: the count-mode sampler over ``--kernel-samples`` samples into preallocated
   buffers (no sort, no copies; best of 3 launches, the device synchronised around each).
2. **End to end**: ``fastpoly.sample`` with the cupy backend (launches, GPU sort and run-length
   encoding, copies, the backend's host merge, the API's accumulation) in chunks of a tenth of
   ``--samples``, the chunks merged linearly in a worker thread behind the next chunk's device
   work, the final merge included in the time; after every chunk ``OUTDIR/run.json`` is
   rewritten, and no chunk is started that would end after ``--time-limit`` seconds, so a run
   cut short still reports its rate on what it did (``samples_done``).
3. The ratio end-to-end / kernel-only (goal >= 0.8 on a 1e9-sample run), the FP32 FMA roof of the
   network on this device (``bench/gpu_report.py``), and a model of ``--model-samples``: the
   distinct count grows as N**beta (beta from the first tenth and the whole run).

Exactness is the GPU tests' job (bit-identical to the Numba backend and, on <= 2,000 samples,
to the NumPy reference); here only the invariants are checked (sum of counts = accepted).
Writes ``OUTDIR/run.json``, ``OUTDIR/run.txt`` and ``OUTDIR/rank.png`` (with Matplotlib).
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpu_common import PartialJSON, cupy_backend  # noqa: E402

import fastpoly  # noqa: E402
from fastpoly.backends.cuda import source as src  # noqa: E402
from fastpoly.backends.cuda.hostmerge import SortedRunMerger  # noqa: E402
from fastpoly.counts import FunctionCounts  # noqa: E402


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def fma_per_sample(arch, m):
    """Multiply-adds of one forward pass of ``arch`` over ``m`` input rows."""
    w = arch.widths
    return m * sum(a * b for a, b in zip(w[:-1], w[1:]))


def model(n, d, part_n, part_d, wall_s, target, n_words):
    """Extrapolate a run of ``n`` samples (``d`` distinct) to ``target`` samples.

    Time is linear in the samples (the host merge is linear in the records, which grow at most
    like the samples); the distinct count grows as N**beta with beta from the two measured
    sizes; memory and disk are the final count table (key words, count, first index:
    8 W + 16 bytes per function), twice for the merge that produces it.
    """
    beta = math.log(d / part_d) / math.log(n / part_n) if d > part_d > 0 and n > part_n else 1.0
    beta = min(max(beta, 0.0), 1.0)
    f = target / n
    d_t = d * f**beta
    rec = 8 * n_words + 16
    return {"target_samples": target, "beta": beta, "distinct": d_t, "total_s": wall_s * f,
            "host_memory_bytes": 2 * d_t * rec, "disk_bytes": d_t * rec}


def kernel_only_rate(be, plan, n, repeat=3):
    """Samples/s of the count-mode sampler alone (preallocated buffers; best of ``repeat``)."""
    dev = be._device()
    d = be._plan_data(plan)
    W = plan.n_words
    stats = dev.zeros(src.STATS_WORDS, np.uint64)
    bkeys = dev.empty((n, W), np.uint64)
    bidx = dev.empty(n, np.uint64)
    d8, df, d64 = dev.zeros(1, np.uint8), dev.zeros(1, np.float32), dev.zeros(1, np.uint64)
    best = 0.0
    for r in range(repeat + 1):  # the first launch compiles / loads the module: not timed
        with dev.stream():
            stats.fill(0)  # on the backend's stream, ordered before the launch
        dev.synchronize()
        t0 = time.perf_counter()
        be._launch(d, src.MODE_COUNT, plan.seed, r * n, n, [d64, d8, df, bkeys, bidx, stats])
        dev.synchronize()
        dt = time.perf_counter() - t0
        st = dev.download(stats)
        src.check_status(int(st[src.STATUS_WORD]), "the count kernel")
        if int(st[0]) > n:
            raise RuntimeError(f"the count kernel appended {int(st[0])} keys for {n} samples")
        if r:
            best = max(best, n / dt)
    del bkeys, bidx
    dev.free_cached()
    return best


def device_facts(be, emulate):
    """SM count, clock (kHz) and name of the device, for the FMA roof."""
    p = dict(be._properties())
    if not emulate:
        try:
            import cupy

            dev_id = cupy.cuda.Device().id
            try:  # cudaDevAttrClockRate (kHz); CUDA 13 dropped clockRate from cudaDeviceProp
                p["clock_khz"] = int(cupy.cuda.runtime.deviceGetAttribute(13, dev_id)) or None
            except Exception:  # noqa: BLE001
                q = cupy.cuda.runtime.getDeviceProperties(dev_id)
                p["clock_khz"] = int(q.get("clockRate", 0)) or None
        except Exception as exc:  # noqa: BLE001 - optional
            p["clock_error"] = repr(exc)
    return p


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="7-40-40-1")
    ap.add_argument("--samples", type=float, default=1e9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-samples", type=float, default=1e10)
    ap.add_argument("--kernel-samples", type=float, default=None,
                    help="samples of the kernel-only launches (default: min(2**25, samples))")
    ap.add_argument("--batch-size", type=float, default=None, help="samples per backend call (default: auto)")
    ap.add_argument("--time-limit", type=float, default=None, help="start no chunk that would end after this")
    ap.add_argument("--emulate", action="store_true", help="the CPU emulation of CUDA (tiny sizes only)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    n = int(args.samples)
    be = cupy_backend(args.emulate)
    ok, why = be.availability()
    if not ok:
        print(f"cupy backend unavailable: {why}", file=sys.stderr)
        return 2
    arch = fastpoly.MLP.from_string(args.arch)
    X = fastpoly.boolean_inputs(arch.n_inputs)
    plan = fastpoly.make_plan(arch, X, seed=args.seed)
    out = PartialJSON(os.path.join(args.out, "run.json"),
                      {"arch": args.arch, "samples": n, "seed": args.seed, "device": be.describe(),
                       "emulate": args.emulate})
    facts = device_facts(be, args.emulate)
    fma = fma_per_sample(arch, X.shape[0])
    out.set("device_facts", facts)
    out.set("fma_per_sample", fma)
    if facts.get("clock_khz"):
        roof = facts["sm_count"] * 128 * facts["clock_khz"] * 1e3 / fma  # 128 FP32 lanes per SM (sm_80+)
        out.set("fp32_fma_roof_samples_per_s", roof)

    nk = int(args.kernel_samples or min(1 << 25, n))
    t = time.perf_counter()
    krate = kernel_only_rate(be, plan, nk)
    out.set("kernel_only", {"samples": nk, "samples_per_s": krate, "seconds_incl_compile": time.perf_counter() - t})
    print(f"{args.arch}: kernel only {krate:,.0f} samples/s ({nk:.3g} samples per launch)", flush=True)

    bs = int(args.batch_size) if args.batch_size else None
    fastpoly.sample(args.arch, n_samples=min(n, 4096), seed=args.seed, backend=be, progress=False)  # warm-up
    be.timings = {"device_s": 0.0, "merge_s": 0.0, "sub_batches": 0}
    chunk = max(1, n // 10)
    # chunks are merged linearly in a worker thread while the next chunk runs (no full-table merge per chunk)
    merger = SortedRunMerger(threaded=True)
    t0 = time.perf_counter()
    done, d1, last, n_acc, meta = 0, None, 0.0, 0, None
    stopped = None
    while done < n:
        k = min(chunk, n - done)
        elapsed = time.perf_counter() - t0
        if args.time_limit and done and elapsed + last * k / chunk > args.time_limit:
            stopped = f"time limit: {elapsed:.1f} s used, the next chunk would take ~{last:.1f} s"
            break
        t1 = time.perf_counter()
        part = fastpoly.sample(args.arch, n_samples=k, start=done, seed=args.seed, backend=be, batch_size=bs,
                               progress=False)
        if part.n_samples != k or int(part.counts.sum()) != part.n_accepted:
            raise AssertionError(f"count invariants broken in [{done}, {done + k})")
        merger.add((part.keys, part.counts, part.first_index))
        n_acc += part.n_accepted
        meta = meta or dict(part.meta)
        if d1 is None:
            d1 = part.n_distinct
        del part
        last = time.perf_counter() - t1
        done += k
        wall = time.perf_counter() - t0
        out.set("end_to_end", {"samples_done": done, "wall_s": wall, "samples_per_s": done / wall,
                               "device_s": be.timings["device_s"], "backend_merge_s": be.timings["merge_s"],
                               "sub_batches": be.timings["sub_batches"], "distinct_at_first_chunk": d1,
                               "first_chunk_samples": min(chunk, n), "final_merge_pending": True})
        out.set("ratio_end_to_end_to_kernel", (done / wall) / krate if krate else None)
    t_merge = time.perf_counter()
    merged = merger.result()
    wall = time.perf_counter() - t0
    assert merged is not None
    meta["ranges"] = [[0, done]]
    c = FunctionCounts(merged[0], merged[1], merged[2], done, n_acc, meta)
    if int(c.counts.sum()) != c.n_accepted:
        raise AssertionError(f"count invariants broken: sum of counts {int(c.counts.sum())} != {c.n_accepted} accepted")
    out.set("end_to_end", {**out.doc["end_to_end"], "wall_s": wall, "samples_per_s": done / wall,
                           "final_merge_s": wall - (t_merge - t0), "distinct": c.n_distinct,
                           "final_merge_pending": False, "merged_records": merger.records_written})
    out.set("ratio_end_to_end_to_kernel", (done / wall) / krate if krate else None)
    rate = done / wall
    res = out.doc
    res["stopped_early"] = stopped
    res["peak_host_memory_bytes"] = peak_rss_bytes()
    res["top_constant_share"] = float(c.counts.max()) / max(c.n_accepted, 1)
    res["model"] = model(done, c.n_distinct, min(chunk, done), d1, wall, int(args.model_samples), c.n_words)
    out.finish()
    m = res["model"]
    lines = [
        f"{args.arch}: {done:.3g} of {n:.3g} samples, exact counts, {res['info']['device']}"
        + (f" (stopped early: {stopped})" if stopped else ""),
        f"  kernel only {krate:,.0f} samples/s; end to end {rate:,.0f} samples/s = {rate / krate:.2f} x kernel "
        f"(goal >= 0.8); wall {wall:.1f} s, device work {be.timings['device_s']:.1f} s, backend host merge "
        f"{be.timings['merge_s']:.2f} s, {be.timings['sub_batches']} sub-batches",
        f"  peak host memory {res['peak_host_memory_bytes'] / 2**30:.2f} GiB; {c.n_distinct:,} distinct functions "
        f"({d1:,} after the first chunk); largest share {res['top_constant_share']:.3f}",
        f"  model of {m['target_samples']:.3g} samples: beta={m['beta']:.3f}, {m['distinct']:.3g} distinct, "
        f"{m['total_s'] / 60:.1f} min; host memory {m['host_memory_bytes'] / 2**30:.1f} GiB, "
        f"disk {m['disk_bytes'] / 2**30:.1f} GiB",
    ]
    if res.get("fp32_fma_roof_samples_per_s"):
        lines.insert(2, f"  FP32 FMA roof {res['fp32_fma_roof_samples_per_s']:,.0f} samples/s: kernel at "
                        f"{krate / res['fp32_fma_roof_samples_per_s']:.2f} of it")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "run.txt"), "w") as fh:
        fh.write(text + "\n")
    try:
        from fastpoly.analysis.figures import plot_rank

        plot_rank(c, out=os.path.join(args.out, "rank.png"))
    except Exception as exc:  # figures are optional
        print(f"  (no rank figure: {exc!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
