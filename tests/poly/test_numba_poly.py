"""Numba backend: evaluation of dense networks (FMA rule) and structured polynomial networks."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import fastpoly  # noqa: E402
from fastpoly.network import forward_reference  # noqa: E402
from fastpoly.tolerances import tolerance  # noqa: E402


@pytest.mark.parametrize("act", ["relu", "sign", "identity"])
def test_dense_float32_bit_identical(act):
    mlp = fastpoly.MLP(7, (40, 13), act)
    X = np.random.default_rng(0).standard_normal((1000, 7)).astype(np.float32)
    for idx in (0, 2**32 + 9):
        net = mlp.instantiate(3, idx)
        got = fastpoly.evaluate(net, X, backend="numba", dtype="float32")
        ref = forward_reference(net, X, np.float32)[:, 0]
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_dense_reproduces_sampled_keys():
    mlp = fastpoly.MLP(7, (40, 40), "relu")
    keys = fastpoly.sample_keys(mlp, seed=5, start=0, stop=5, backend="numba")
    X = fastpoly.boolean_inputs(7)
    for i in range(5):
        out = fastpoly.evaluate(mlp.instantiate(5, i), X, backend="numba")
        bits = np.packbits(out > 0, bitorder="little").view("<u8")
        assert np.array_equal(bits, keys[i])


def test_dense_float64_and_smooth():
    net = fastpoly.MLP(5, (9, 4), "tanh").instantiate(1, 0)
    X = np.random.default_rng(1).standard_normal((500, 5))
    for dt in (np.float64, np.float32):
        got = fastpoly.evaluate(net, X, backend="numba", dtype=dt)
        ref = forward_reference(net, X, dt)[:, 0]
        rtol, atol = tolerance(dt)
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)


def _poly():
    poly = pytest.importorskip("fastpoly.poly")
    return poly


CASES = [
    ("softplus", True), ("tanh", True), ("sigmoid", True), ("square", False), ("square", True),
    ("relu", False), ("softplus", False), ("exp", False), ("silu", False), ("gelu", False),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act,centered", CASES, ids=[f"{a}{'-centered' if c else ''}" for a, c in CASES])
def test_structured_matches_reference(act, centered, dtype):
    poly = _poly()
    p = poly.random_polynomial(5, 3, 8, seed=1)
    net = poly.compile_polynomial(p, activation=act, construction="tree", dtype=dtype, centered=centered)
    X = np.random.default_rng(0).uniform(-1, 1, (3000, 5))
    got = fastpoly.evaluate(net, X, backend="numba")
    ref = fastpoly.evaluate(net, X, backend="numpy")
    assert got.dtype == np.dtype(dtype)
    rtol, atol = tolerance(dtype)
    scale = max(1.0, float(np.abs(ref).max()))
    # Second-difference gates amplify 1-ulp differences of the activation (our libm vs NumPy's
    # SIMD exp/log1p) by ~1/lambda**2 (less when centered): for smooth gates the allowance is a
    # small fraction of the network's certified error on top of the plain tolerance table.
    allow = atol * scale
    if act not in ("relu", "square"):
        allow = max(allow, 0.05 * net.report().certified_error)
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    assert np.all(err <= allow + rtol * np.abs(ref)), (err.max(), allow)


def test_structured_block_boundaries_and_small_batches():
    poly = _poly()
    net = poly.compile_polynomial(poly.random_polynomial(4, 2, 5, seed=3), activation="square")
    from fastpoly.backends.numba.poly import evaluate_structured

    X = np.random.default_rng(2).uniform(-1, 1, (1031, 4))
    ref = net.evaluate_reference(X, np.float64)
    for block in (1, 7, 256):
        np.testing.assert_array_equal(evaluate_structured(net.structured, X, np.float64, block=block), ref)
    assert evaluate_structured(net.structured, X[:0], np.float64).shape == (0, 1)
