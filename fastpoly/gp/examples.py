"""Real data: the NNGP marginal likelihood and PAC-Bayes bound on scikit-learn's bundled 8x8 digits.

``python -m fastpoly.gp.examples [--train 1000] [--method ep|tilting|both]`` (needs
scikit-learn: ``pip install "fastpoly[examples]"``; the data ship with it, no download).

Data: ``sklearn.datasets.load_digits`` (1797 images, 64 pixels in 0..16), pixels
scaled to [0, 1], label 1 iff the digit is < 5; a seeded permutation
(``numpy.random.default_rng(seed)``) picks ``n_train`` train images and the next
``n_test`` test images.  Architecture: 64-40-40-1 relu, ``sigma_w = sigma_b = 1``
(the Boolean experiment's initialisation).  Not done here: P_B^GP of the
functions SGD finds on the test images (needs the SGD sampler of another issue).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from fastpoly.arch import MLP
from fastpoly.gp.bayes import log_marginal, pac_bayes_bound
from fastpoly.gp.kernels import kernel

__all__ = ["digits_example", "load_digits_binary", "main"]


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
                   n_samples: int = 20_000) -> dict:
    """Kernel, log P(S) and the PAC-Bayes bound on ``n_train`` digits, with timings.

    Returns
    -------
    dict
        ``arch``, ``n_train``, ``kernel_seconds``, and per method ``log_p_S``, ``stderr``,
        ``seconds`` (orthant only), ``bound`` (PAC-Bayes, delta = 2**-10) and ``diagnostics``.
    """
    Xtr, ytr, _, _ = load_digits_binary(n_train, 0, seed)
    arch = MLP(64, tuple(hidden))
    t0 = time.perf_counter()
    K = kernel(arch, Xtr)
    out = {"arch": arch.spec, "n_train": int(n_train), "kernel_seconds": time.perf_counter() - t0,
           "fraction_label_1": float(ytr.mean())}
    rows = np.arange(n_train)
    for method in methods:
        kw = {} if method == "ep" else {"n_samples": n_samples, "seed": seed}
        t0 = time.perf_counter()
        r = log_marginal(arch, Xtr, (rows, ytr), method, K=K, **kw)
        dt = time.perf_counter() - t0
        out[method] = {"log_p_S": r.log_p, "stderr": r.stderr, "seconds": dt,
                       "bound": pac_bayes_bound(r.log_p, n_train),
                       "diagnostics": {k: v for k, v in r.diagnostics.items() if k != "change_history"}}
    return out


def main(argv=None) -> int:
    """Command-line entry: print the digits example's numbers."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--method", default="ep", choices=["ep", "tilting", "both"])
    p.add_argument("--samples", type=int, default=20_000, help="tilting samples")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    methods = ("ep", "tilting") if a.method == "both" else (a.method,)
    r = digits_example(a.train, methods, seed=a.seed, n_samples=a.samples)
    print(f"digits (label = digit < 5, {r['fraction_label_1']:.3f} ones), {r['arch']} relu, "
          f"m = {r['n_train']}: kernel {r['kernel_seconds']:.3f} s")
    for m in methods:
        x = r[m]
        se = "" if x["stderr"] is None else f" +- {x['stderr']:.3g}"
        print(f"  {m:8s} log P(S) = {x['log_p_S']:.3f}{se}  ({x['seconds']:.2f} s)  "
              f"PAC-Bayes bound {x['bound']:.4f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
