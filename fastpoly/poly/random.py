"""Reproducible random polynomials (shared by the NumPy, Numba and CUDA benchmarks)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from fastpoly.poly.polynomial import Polynomial

__all__ = ["random_polynomial", "make_bench_polynomial", "BENCH_SPEC"]

#: the benchmark polynomial: 16 variables, total degree <= 4, 50 terms
BENCH_SPEC = {"n_vars": 16, "degree": 4, "n_terms": 50}


def random_polynomial(n_vars, degree, n_terms, seed=0, max_var_degree=None):
    r"""A random polynomial with ``n_terms`` distinct monomials of total degree 1..``degree``.

    Coefficients are dyadic rationals ``k/8`` with ``k`` uniform in ``[-16, 16] \\ {0}``
    (exact in float32).  Deterministic for a given ``seed`` (NumPy PCG64).

    Parameters
    ----------
    n_vars, degree, n_terms : int
    seed : int
    max_var_degree : int, optional
        Largest exponent of any single variable (default ``degree``).

    Returns
    -------
    Polynomial
    """
    for name, v in (("n_vars", n_vars), ("degree", degree), ("n_terms", n_terms)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    g = np.random.default_rng(seed)
    mvd = degree if max_var_degree is None else int(max_var_degree)
    terms = {}
    tries = 0
    while len(terms) < n_terms:
        tries += 1
        if tries > 100 * n_terms + 1000:
            raise ValueError(f"cannot draw {n_terms} distinct monomials with n_vars={n_vars}, degree={degree}")
        d = int(g.integers(1, degree + 1))
        e = np.zeros(n_vars, dtype=np.int64)
        for i in g.integers(0, n_vars, size=d):
            if e[i] < mvd:
                e[i] += 1
        e = tuple(int(x) for x in e)
        if sum(e) == 0 or e in terms:
            continue
        k = int(g.integers(1, 17)) * (1 if g.integers(0, 2) else -1)
        terms[e] = Fraction(k, 8)
    return Polynomial(terms, n_vars=n_vars)


def make_bench_polynomial(seed=0):
    """The benchmark polynomial (:data:`BENCH_SPEC`): 16 variables, degree 4, 50 terms."""
    return random_polynomial(BENCH_SPEC["n_vars"], BENCH_SPEC["degree"], BENCH_SPEC["n_terms"], seed)
