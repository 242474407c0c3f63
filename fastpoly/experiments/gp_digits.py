"""Real data: the NNGP marginal likelihood and PAC-Bayes bound on scikit-learn's bundled 8x8 digits.

``python -m fastpoly.experiments.gp_digits [--train 1000] [--method ep|tilting|both]`` (needs
scikit-learn: ``pip install "fastpoly[examples]"``; the data ship with it, no download).

Data: ``sklearn.datasets.load_digits`` (1797 images, 64 pixels in 0..16), pixels
scaled to [0, 1], label 1 iff the digit is < 5; a seeded permutation
(``numpy.random.default_rng(seed)``) picks ``n_train`` train images and the next
``n_test`` test images.  Architecture: 64-40-40-1 relu, ``sigma_w = sigma_b = 1``
(the Boolean experiment's initialisation).

:func:`digits_sgd_vs_gp` then trains networks on the train images with
:func:`fastpoly.sample_sgd` (Adam, cross-entropy, from the prior's initialisations),
counts the functions they reach on the test images, and computes the GP posterior
``log P_B^GP(f|S)`` of the most frequent of them, next to their ``P_SGD(f|S)``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from fastpoly.arch import MLP
from fastpoly.gp.bayes import log_marginal, pac_bayes_bound, posterior
from fastpoly.gp.kernels import kernel
from fastpoly.sgd.api import sample_sgd

__all__ = ["digits_example", "digits_sgd_vs_gp", "load_digits_binary", "main"]


def load_digits_binary(n_train: int = 1000, n_test: int = 100, seed: int = 0):
    """``(X_train, y_train, X_test, y_test)``: digits scaled to [0, 1], label = digit < 5.

    Raises
    ------
    ValueError
        If scikit-learn is missing or the split does not fit in 1797 images.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError('the digits example needs scikit-learn: pip install "fastpoly[examples]"') from None
    d = load_digits()
    X = d.data.astype(np.float64) / 16.0
    y = (d.target < 5).astype(np.uint8)
    if n_train < 1 or n_test < 0 or n_train + n_test > X.shape[0]:
        raise ValueError(f"n_train + n_test must be at most {X.shape[0]}, got {n_train} + {n_test}")
    p = np.random.default_rng(seed).permutation(X.shape[0])
    tr, te = p[:n_train], p[n_train:n_train + n_test]
    return X[tr], y[tr], X[te], y[te]


def digits_example(n_train: int = 1000, methods=("ep",), hidden=(40, 40), seed: int = 0,
                   n_samples: int = 20_000, log=None) -> dict:
    """Kernel, log P(S) and the PAC-Bayes bound on ``n_train`` digits, with timings.

    ``log``: a callable given one line before each step (the orthant steps take up to a minute
    for 1000 digits), e.g. ``print``; None: silent.

    Returns
    -------
    dict
        ``arch``, ``n_train``, ``kernel_seconds``, and per method ``log_p_S``, ``stderr``,
        ``seconds`` (orthant only), ``bound`` (PAC-Bayes, delta = 2**-10) and ``diagnostics``.
    """
    say = log or (lambda msg: None)
    say(f"loading {n_train} digits and computing the {n_train} x {n_train} NNGP kernel ...")
    Xtr, ytr, _, _ = load_digits_binary(n_train, 0, seed)
    arch = MLP(64, tuple(hidden))
    t0 = time.perf_counter()
    K = kernel(arch, Xtr)
    out = {"arch": arch.spec, "n_train": int(n_train), "kernel_seconds": time.perf_counter() - t0,
           "fraction_label_1": float(ytr.mean())}
    rows = np.arange(n_train)
    for method in methods:
        kw = {} if method == "ep" else {"n_samples": n_samples, "seed": seed}
        say(f"log P(S) by {method} over {n_train} train digits"
            + (" (EP sweeps until the sites converge; the longest step) ..." if method == "ep"
               else f" ({n_samples:,} tilting samples) ..."))
        t0 = time.perf_counter()
        r = log_marginal(arch, Xtr, (rows, ytr), method, K=K, **kw)
        dt = time.perf_counter() - t0
        say(f"  {method} done in {dt:.1f} s")
        out[method] = {"log_p_S": r.log_p, "stderr": r.stderr, "seconds": dt,
                       "bound": pac_bayes_bound(r.log_p, n_train),
                       "diagnostics": {k: v for k, v in r.diagnostics.items() if k != "change_history"}}
    return out


def digits_sgd_vs_gp(n_train: int = 1000, n_test: int = 100, n_runs: int = 200, hidden=(40, 40), top: int = 10,
                     seed: int = 0, method: str = "ep", backend: str = "auto", max_epochs: int = 300,
                     lr: float = 3e-3, minibatch: int = 32) -> dict:
    """P_SGD of the functions SGD finds on the test digits, and their GP posterior ``P_B^GP(f|S)``.

    Returns
    -------
    dict
        ``n_runs``, ``n_fitted``, ``distinct``, ``log_p_S`` (GP), ``sgd_seconds``, ``gp_seconds`` and
        ``rows``: for the ``top`` most frequent functions, ``key`` (hex over the test rows),
        ``p_sgd``, ``log_p_gp``, ``stderr`` (None for EP) and ``test_errors`` (vs the true labels).
    """
    Xtr, ytr, Xte, yte = load_digits_binary(n_train, n_test, seed)
    X = np.vstack([Xtr, Xte])
    arch = MLP(64, tuple(hidden))
    train = (np.arange(n_train), ytr)
    t0 = time.perf_counter()
    psgd = sample_sgd(arch, X, train, n_runs, seed=seed, backend=backend, optimizer="adam", lr=lr,
                      minibatch=minibatch, loss="ce", max_epochs=max_epochs)
    t_sgd = time.perf_counter() - t0
    out: dict = {"arch": arch.spec, "n_train": n_train, "n_test": n_test, "n_runs": psgd.n_samples,
                 "n_fitted": psgd.n_accepted, "distinct": psgd.n_distinct, "sgd_seconds": t_sgd, "rows": []}
    if psgd.n_distinct == 0:
        return out
    order = np.lexsort((np.arange(psgd.n_distinct), -np.asarray(psgd.counts)))[:top]
    keys = np.asarray(psgd.keys)[order]
    t0 = time.perf_counter()
    table = posterior(arch, X, train, keys, method)
    out["gp_seconds"] = time.perf_counter() - t0
    out["log_p_S"] = table.log_p_S
    truth = np.zeros(n_test, bool)
    truth[:] = yte.astype(bool)
    from fastpoly.keys import unpack_bits

    bits = unpack_bits(keys, n_test).astype(bool)
    for j, i in enumerate(order):
        out["rows"].append({"key": psgd.hex(int(i)), "p_sgd": float(psgd.counts[i] / psgd.n_accepted),
                            "log_p_gp": float(table.log_p[j]),
                            "stderr": None if table.stderr is None or not np.isfinite(table.stderr[j])
                            else float(table.stderr[j]),
                            "test_errors": int(np.count_nonzero(bits[j] != truth))})
    return out


def main(argv=None) -> int:
    """Command-line entry: print the digits example's numbers."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--method", default="ep", choices=["ep", "tilting", "both"])
    p.add_argument("--samples", type=int, default=20_000, help="tilting samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sgd-runs", type=int, default=0,
                   help="also train this many networks with SGD (Adam) and give P_B^GP of the functions they find")
    a = p.parse_args(argv)
    methods = ("ep", "tilting") if a.method == "both" else (a.method,)
    r = digits_example(a.train, methods, seed=a.seed, n_samples=a.samples,
                       log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(f"digits (label = digit < 5, {r['fraction_label_1']:.3f} ones), {r['arch']} relu, "
          f"m = {r['n_train']}: kernel {r['kernel_seconds']:.3f} s")
    for m in methods:
        x = r[m]
        se = "" if x["stderr"] is None else f" +- {x['stderr']:.3g}"
        print(f"  {m:8s} log P(S) = {x['log_p_S']:.3f}{se}  ({x['seconds']:.2f} s)  "
              f"PAC-Bayes bound {x['bound']:.4f}")
    if a.sgd_runs:
        print(f"training {a.sgd_runs} networks with Adam, then the GP posterior of the functions they find ...",
              file=sys.stderr, flush=True)
        d = digits_sgd_vs_gp(a.train, 100, a.sgd_runs, seed=a.seed)
        print(f"SGD (Adam lr 3e-3, minibatch 32, ce): {d['n_fitted']:,} of {d['n_runs']:,} runs fitted the "
              f"{d['n_train']} train images ({d['sgd_seconds']:.1f} s); {d['distinct']:,} distinct functions on "
              f"{d['n_test']} test images; GP log P(S) = {d.get('log_p_S', float('nan')):.3f}")
        print(f"  {'P_SGD':>8}  {'log P_B^GP(f|S)':>16}  {'test errors':>11}  key (hex, bit i = test row i)")
        for r in d["rows"]:
            print(f"  {r['p_sgd']:8.4f}  {r['log_p_gp']:16.3f}  {r['test_errors']:11d}  {r['key']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
