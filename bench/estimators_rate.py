#!/usr/bin/env python
"""Rates of the three estimators through the one driver, optionally against an older fastpoly in the same process.

    python bench/estimators_rate.py                      # this checkout: GP draws/s, runs/s, samples/s
    python bench/estimators_rate.py --old /tmp/old       # also an older tree, renamed to the package fastpoly_old

For ``--old``: export an older commit and rename its package so both import side by side::

    git archive <commit> fastpoly | tar -x -C /tmp/old && mv /tmp/old/fastpoly /tmp/old/fastpoly_old
    grep -rl fastpoly /tmp/old/fastpoly_old --include=*.py | xargs sed -i -E \\
        's/\\bfastpoly\\./fastpoly_old./g; s/^from fastpoly import/from fastpoly_old import/'

Rounds alternate between the two trees; the best of ``--rounds`` is reported (compilation excluded
by a warm-up call).  Results depend on the machine's load: say whether it was shared.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def jobs(pkg, n_gp, n_train, n_sample):
    """``name -> (callable, units)`` for one package tree."""
    fp = importlib.import_module(pkg)
    gps = importlib.import_module(pkg + ".gp.sampling")
    sgd = importlib.import_module(pkg + ".sgd.api")
    X = fp.boolean_inputs(7)
    rows = np.arange(0, 128, 4)
    train = (rows, (rows >> 1) & 1)

    def gp():
        gps.sample("7-40-40-1", X, n_gp, seed=1, backend="numba")

    def tr():
        sgd.sample_sgd("7-40-40-1", X, train, n_runs=n_train, seed=1, backend="numba", max_epochs=40, lr=0.1)

    def sa():
        fp.sample("7-40-40-1", X, n_sample, seed=1, backend="numba", progress=False)

    return {"gp_draws": (gp, n_gp), "psgd_train": (tr, n_train), "sample": (sa, n_sample)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", help="folder holding an older tree as the package fastpoly_old")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gp", type=int, default=200_000, help="GP draws per round")
    ap.add_argument("--train", type=int, default=4000, help="training runs per round")
    ap.add_argument("--samples", type=int, default=1_000_000, help="network samples per round")
    ap.add_argument("--only", nargs="+", choices=["gp_draws", "psgd_train", "sample"], help="measure only these")
    a = ap.parse_args(argv)
    trees = {"new": "fastpoly"}
    if a.old:
        sys.path.insert(0, a.old)
        trees["old"] = "fastpoly_old"
    table = {t: jobs(pkg, a.gp, a.train, a.samples) for t, pkg in trees.items()}
    if a.only:
        table = {t: {j: v for j, v in jobs_.items() if j in a.only} for t, jobs_ in table.items()}
    best = {(t, j): 0.0 for t in trees for j in table[t]}
    for t in trees:  # warm-up: compile
        for fn, _ in table[t].values():
            fn()
    for _ in range(a.rounds):
        for j in table["new"]:
            for t in trees:
                fn, n = table[t][j]
                t0 = time.perf_counter()
                fn()
                best[t, j] = max(best[t, j], n / (time.perf_counter() - t0))
    for j in table["new"]:
        line = f"{j:<12} new {best['new', j]:>12,.0f}/s"
        if "old" in trees:
            line += f"   old {best['old', j]:>12,.0f}/s   new/old {best['new', j] / best['old', j]:.3f}"
        print(line)


if __name__ == "__main__":
    main()
