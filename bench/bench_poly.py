"""pytest-benchmark: NumPy reference evaluation of a compiled polynomial network.

The polynomial is :func:`fastpoly.poly.make_bench_polynomial` (16 variables, degree 4,
50 terms), compiled as a softplus tree; the Numba / CUDA benchmarks use the same one.
Also records the accuracy goal of issue 3 (x1...x8 on [-2, 2]^8, softplus tree).
"""
from __future__ import annotations

import numpy as np
import pytest

from fastpoly.cli.poly import measure_error
from fastpoly.poly import compile_polynomial, make_bench_polynomial

N_POINTS = 100_000


@pytest.fixture(scope="module")
def bench_inputs():
    return np.random.default_rng(0).uniform(-1, 1, (N_POINTS, 16))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_reference_eval_bench_polynomial(benchmark, bench_inputs, dtype):
    p = make_bench_polynomial(0)
    net = compile_polynomial(p, activation="softplus", construction="tree", dtype=dtype)
    y = benchmark(net.evaluate_reference, bench_inputs)
    assert y.shape == (N_POINTS, 1)
    err = np.abs(y[:1000, 0] - p(bench_inputs[:1000])).max()
    assert err <= net.report().certified_error
    benchmark.extra_info.update(hidden_neurons=net.report().hidden_neurons,
                                nonzero_weights=net.report().nonzero_weights, max_error=float(err))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", ["auto", "auto-centered", "paper-lambda-0.1", "best-global-lambda"])
def test_accuracy_goal_product_of_8(benchmark, dtype, mode):
    """Relative error max|err| / max|p| of x1...x8 on [-2,2]^8 (goal: 1e-9 float64, 1e-4 float32)."""
    p = "*".join(f"x{i}" for i in range(8))
    kw = dict(domain=(-2, 2), dtype=dtype)
    if mode == "auto":
        net = compile_polynomial(p, **kw)
    elif mode == "auto-centered":
        net = compile_polynomial(p, centered=True, **kw)
    elif mode == "paper-lambda-0.1":
        net = compile_polynomial(p, lam=0.1, bias="paper", **kw)
    else:
        best = None
        for lam in 2.0 ** np.arange(-20, -1, 0.5):
            cand = compile_polynomial(p, lam=float(lam), bias="paper", **kw)
            e, _ = measure_error(cand, 500, seed=1)
            if best is None or e < best[0]:
                best = (e, cand)
        net = best[1]
    err, pmax = benchmark.pedantic(measure_error, args=(net, 2000, 3), rounds=1, iterations=1)
    rel = err / pmax
    benchmark.extra_info.update(relative_error=rel, lam_min=net.info["lam_min"], lam_max=net.info["lam_max"],
                                certified_relative=net.report().certified_error / pmax)
    if mode == "auto-centered":
        assert rel <= (1e-9 if dtype == "float64" else 1e-4)
