"""Benchmark: the compiled digits-QDA classifier (64 inputs, 10 classes) vs the same network in PyTorch.

The classifier is scikit-learn's ``QuadraticDiscriminantAnalysis(reg_param=0.1)`` fitted on the
bundled digits (pixels / 16, so inputs in [0, 1]), turned into Hamiltonians by
:func:`fastpoly.poly.from_sklearn` and compiled by :func:`fastpoly.poly.classifier` (softplus,
shared gates: 2080 quadratic monomials, 8320 hidden neurons).  Both sides compute class
probabilities of ``--points`` uniform points of [0, 1]^64:

* ``fastpoly <backend>``: ``fastpoly.evaluate(net, X, backend=..., output="proba")``;
* ``torch (to_torch)``: ``net.to_torch()`` (dense ``nn.Linear`` layers + ``nn.Softplus``) and
  ``torch.softmax``, in chunks of 16384 points under ``torch.no_grad()``, all CPU threads.

Each row is the best wall-clock rate of ``--rounds`` rounds over all points, after a warm-up,
both sides in this one process.  Run::

    python bench/bench_ltr.py --points 1000000 --rounds 3

``bench/compare.py`` adds the same rows (workloads ``ltr-qda-float32`` / ``ltr-qda-float64``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpoly  # noqa: E402

TORCH_CHUNK = 16384


def build(dtype):
    """The digits-QDA classifier compiled for ``dtype`` (and the fitted estimator)."""
    from sklearn.datasets import load_digits
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

    from fastpoly.poly import classifier, from_sklearn

    X, y = load_digits(return_X_y=True)
    est = QuadraticDiscriminantAnalysis(reg_param=0.1).fit(X / 16.0, y)
    return classifier(*from_sklearn(est), dtype=dtype, domain=(0, 1), classes=est.classes_), est


def _best(fn, rounds):
    """Best (wall seconds, cpu seconds) of ``rounds`` calls after one warm-up call."""
    fn()
    best = (float("inf"), float("inf"))
    for _ in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        fn()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        if dt < best[0]:
            best = (dt, dc)
    return best


def torch_proba(net):
    """``X -> probabilities`` through ``net.to_torch()`` (chunked), or None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    seq = net.to_torch()

    def run(X):
        Xt = torch.as_tensor(X)
        out = []
        with torch.no_grad():
            for i in range(0, Xt.shape[0], TORCH_CHUNK):
                out.append(torch.softmax(seq(Xt[i:i + TORCH_CHUNK]), dim=1))
        return torch.cat(out).numpy()

    return run


def ltr_rows(n_points=1_000_000, rounds=3, backends=("numba", "cupy"), use_torch=True, verbose=True):
    """Rows ``{workload, name, kind, points_per_s, cpu_s, n}`` for both dtypes (``bench/compare.py`` format)."""
    rows = []
    X = np.random.default_rng(0).uniform(0, 1, (n_points, 64))
    avail = fastpoly.backends()
    for dtype in ("float32", "float64"):
        wl = f"ltr-qda-{dtype}"
        t = time.perf_counter()
        net, _ = build(dtype)
        if verbose:
            r = net.report()
            print(f"  {dtype}: compiled in {time.perf_counter() - t:.1f} s: {r.hidden_neurons} hidden neurons, "
                  f"certified logit error {r.certified_error:.3g}", flush=True)
        Xd = np.ascontiguousarray(X.astype(dtype))
        for name in backends:
            if not avail[name]["available"]:
                continue
            wall, cpu = _best(lambda name=name: fastpoly.evaluate(net, Xd, backend=name, output="proba"), rounds)
            rows.append({"workload": wl, "name": f"fastpoly {name}", "kind": "fastpoly",
                         "points_per_s": n_points / wall, "cpu_s": cpu, "n": n_points})
            if verbose:
                print(f"  {dtype} fastpoly {name:6s} {n_points / wall:14,.0f} points/s ({wall:.2f} s)", flush=True)
        run = torch_proba(net) if use_torch else None
        if run is not None:
            p_ref = fastpoly.evaluate(net, Xd[:2000], backend="numpy", output="proba")
            assert np.max(np.abs(run(Xd[:2000]) - p_ref)) <= max(1e-3, float(net.proba_error().max()))
            wall, cpu = _best(lambda: run(Xd), rounds)
            rows.append({"workload": wl, "name": "torch (to_torch)", "kind": "baseline",
                         "points_per_s": n_points / wall, "cpu_s": cpu, "n": n_points})
            if verbose:
                print(f"  {dtype} torch (to_torch) {n_points / wall:14,.0f} points/s ({wall:.2f} s)", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    print(f"digits-QDA classifier, {args.points:,} points, best of {args.rounds} rounds, {os.cpu_count()} cpus")
    rows = ltr_rows(args.points, args.rounds, use_torch=not args.no_torch)
    for dtype in ("float32", "float64"):
        rs = {r["name"]: r for r in rows if r["workload"] == f"ltr-qda-{dtype}"}
        if "fastpoly numba" in rs and "torch (to_torch)" in rs:
            a, b = rs["fastpoly numba"], rs["torch (to_torch)"]
            print(f"  {dtype}: numba / torch = {a['points_per_s'] / b['points_per_s']:.2f}x wall, "
                  f"{b['cpu_s'] / a['cpu_s']:.2f}x cpu time")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
