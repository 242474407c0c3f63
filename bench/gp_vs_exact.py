"""GP vs exact: log P_B^GP(f|S) against rejection-sampled log P_B(f|S) for the m = 32 Boolean experiment.

Usage::

    python bench/gp_vs_exact.py OUTDIR [--counts COUNTS.npz] [--samples 1e7] [--top 30]

Without ``--counts`` it runs the rejection sampler exactly like
``fastpoly sample 7-40-40-1 --samples 1e7 --train-size 32 --target 0011...0011``
(train rows ``sort(default_rng(0).choice(128, 32))``, seed 0; ~2 min on 2 cores).
Writes ``OUTDIR/gp_vs_exact.png`` and ``OUTDIR/gp_vs_exact.txt`` (one line per function:
count, log P_B exact with its 95 % Wilson interval, log P_B^GP by tilting +- 1 s.e. and by EP,
generalisation error), plus P(S) exact vs GP.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

import fastpoly
from fastpoly.analysis.conditioning import generalization_error
from fastpoly.analysis.stats import wilson_interval
from fastpoly.gp import log_marginal, plot_vs_exact, posterior

TARGET = "0011" * 32


def rejection_counts(n_samples, seed=0, train_seed=0):
    X = fastpoly.boolean_inputs(7)
    target = np.frombuffer(TARGET.encode(), np.uint8) - ord("0")
    rows = np.sort(np.random.default_rng(train_seed).choice(128, 32, replace=False))
    return fastpoly.sample("7-40-40-1", X, n_samples, seed=seed, train=(rows, target[rows]), progress=False,
                           annotations={"target": fastpoly.keys.key_to_hex(fastpoly.keys.pack_bits(target.astype(bool)), 128)})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir")
    p.add_argument("--counts", help="a conditioned counts file of 7-40-40-1 on the Boolean inputs")
    p.add_argument("--samples", default="1e7", help="rejection samples when no --counts (default 1e7)")
    p.add_argument("--top", type=int, default=30, help="functions compared (the most frequent; default 30)")
    p.add_argument("--n-samples", type=int, default=20000, help="tilting samples per estimate")
    a = p.parse_args(argv)
    os.makedirs(a.outdir, exist_ok=True)
    t0 = time.perf_counter()
    counts = (fastpoly.FunctionCounts.load(a.counts) if a.counts
              else rejection_counts(int(float(a.samples))))
    t_rej = time.perf_counter() - t0
    arch = fastpoly.MLP.from_dict(counts.meta["arch"])
    X = fastpoly.boolean_inputs(arch.n_inputs)
    train = (np.asarray(counts.meta["train_rows"]), np.asarray(counts.meta["train_labels"]))
    top = counts.top(a.top)
    keys = [t["key"] for t in top]
    t0 = time.perf_counter()
    tab = posterior(arch, X, train, keys, "tilting", n_samples=a.n_samples, seed=0)
    t_tilt = time.perf_counter() - t0
    t0 = time.perf_counter()
    tab_ep = posterior(arch, X, train, keys, "ep")
    t_ep = time.perf_counter() - t0
    mc = log_marginal(arch, X, train, "mc", n_samples=2 * 10**6, seed=0)
    err_all = generalization_error(counts)
    png = plot_vs_exact(counts, tab, os.path.join(a.outdir, "gp_vs_exact.png"),
                        title=f"7-40-40-1 relu, target 0011x32, m = 32: GP (tilting) vs rejection "
                              f"({counts.n_accepted} of {counts.n_samples:.0e})")
    n = counts.n_accepted
    lines = [
        "# GP (NNGP, infinite width) vs exact rejection sampling at width 40",
        f"# 7-40-40-1 relu sigma_w = sigma_b = 1, target 0011x32, train rows {train[0].tolist()}",
        (f"# rejection: {counts.n_samples} samples (seed {counts.meta.get('seed')}), {n} accepted, "
        f"{counts.n_distinct} distinct functions ({t_rej:.0f} s)"),
        (f"# log P(S): exact {math.log(n / counts.n_samples):.4f} "
        f"(95% [{math.log(wilson_interval(n, counts.n_samples)[0]):.4f}, "
        f"{math.log(wilson_interval(n, counts.n_samples)[1]):.4f}]); "
        f"GP tilting {tab.log_p_S:.4f} +- {tab.stderr_S:.4f}; GP EP {tab_ep.log_p_S:.4f}; "
        f"GP direct MC {mc.log_p:.4f} +- {mc.stderr:.4f}"),
        f"# PAC-Bayes bound (GP tilting P(S), delta 2^-10): {tab.meta['gp']['pac_bayes_bound']:.4f}",
        f"# GP posterior of the top {len(keys)} functions: tilting {t_tilt:.1f} s, EP {t_ep:.1f} s (natural logs)",
        "rank\tkey\tcount\tlogPB_exact\tlo95\thi95\tlogPB_GP_tilting\tse\tlogPB_GP_EP\tgen_error",
    ]
    for r, (t, k) in enumerate(zip(top, keys), 1):
        i = int(np.flatnonzero([tab.hex(j) == k for j in range(len(tab))])[0])
        lo, hi = wilson_interval(t["count"], n)
        e = err_all[counts._find(k)]
        lines.append(f"{r}\t{k}\t{t['count']}\t{math.log(t['count'] / n):.4f}\t{math.log(lo):.4f}\t"
                     f"{math.log(hi):.4f}\t{tab.log_p[i]:.4f}\t{tab.stderr[i]:.4f}\t{tab_ep.log_p[i]:.4f}\t{e:.4f}")
    txt = os.path.join(a.outdir, "gp_vs_exact.txt")
    with open(txt, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines[:7]))
    print(f"wrote {png}\nwrote {txt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
