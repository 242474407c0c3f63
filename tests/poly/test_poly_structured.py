"""The structured (sparse) form: contract, centered formulas, equality with the dense layers."""
from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

from fastpoly.network import forward_reference
from fastpoly.poly import compile_polynomial
from fastpoly.poly.structured import (
    ACT,
    CENTERED,
    STRUCT_CODES,
    SparseLayer,
    StructuredNetwork,
    evaluate_structured_reference,
)

_MP = {
    "softplus": lambda z: mp.log1p(mp.exp(z)),
    "exp": mp.exp,
    "silu": lambda z: z / (1 + mp.exp(-z)),
    "gelu": lambda z: z * mp.ncdf(z),
    "tanh": mp.tanh,
    "sigmoid": lambda z: 1 / (1 + mp.exp(-z)),
    "square": lambda z: z * z,
}


def test_struct_codes_stable():
    assert set(STRUCT_CODES) == {"identity", "relu", "square", "softplus", "exp", "sigmoid", "tanh",
                                 "silu", "gelu"}
    from fastpoly.activations import CODES

    assert all(STRUCT_CODES[k] == CODES[k] for k in STRUCT_CODES)
    assert set(CENTERED) == set(ACT)


@pytest.mark.parametrize("name", sorted(_MP))
def test_centered_formulas_cancellation_free(name):
    worst = 0.0
    with mp.workdps(40):
        for b in (-1.03, 0.0, 0.5, 0.658, 1.317, 2.29):
            for t in (1e-12, -3e-9, 1e-5, -0.3, 0.9, 1.0, -1.5, 3.0):
                ex = _MP[name](mp.mpf(b) + mp.mpf(t)) - _MP[name](mp.mpf(b))
                if ex == 0:
                    continue
                got = CENTERED[name](np.array([t]), np.array([b]))[0]
                worst = max(worst, abs(float((got - ex) / ex)))
    assert worst < 1e-13


@pytest.mark.parametrize("name", ["softplus", "tanh", "sigmoid", "exp", "silu"])
def test_centered_float32_stays_float32(name):
    t = np.array([1e-3, -0.2], np.float32)
    b = np.array([0.5, 0.5], np.float32)
    out = CENTERED[name](t, b)
    assert out.dtype == np.float32


def test_from_dense_roundtrip_and_reference():
    g = np.random.default_rng(0)
    W1 = g.normal(size=(5, 3)) * (g.random((5, 3)) < 0.6)
    W2 = g.normal(size=(1, 5))
    snet = StructuredNetwork([SparseLayer.from_dense(W1, g.normal(size=5), "softplus"),
                              SparseLayer.from_dense(W2, np.zeros(1))])
    W, b = snet.layers[0].to_dense()
    assert np.array_equal(W, W1)
    X = g.normal(size=(7, 3))
    want = W2 @ ACT["softplus"](X @ W1.T + b).T
    np.testing.assert_allclose(evaluate_structured_reference(snet, X)[:, 0], want[0], rtol=1e-13)


@pytest.mark.parametrize("act", ["softplus", "exp", "silu", "gelu", "tanh", "sigmoid", "square", "relu"])
def test_compiled_structured_equals_dense(act):
    net = compile_polynomial("x0*x1*x2 - 3*x1**2 + x2 + 0.5", activation=act)
    X = np.random.default_rng(1).uniform(-1, 1, (200, 3))
    assert np.array_equal(net.evaluate_reference(X, np.float64), forward_reference(net, X, np.float64))
    # CSR rows: sorted column indices, float64 data exactly representable in the dtype
    for L in net.structured.layers:
        for j in range(L.fan_out):
            cols = L.indices[L.indptr[j]:L.indptr[j + 1]]
            assert np.all(np.diff(cols) > 0)
    net32 = compile_polynomial("x0*x1*x2 - 3*x1**2 + x2 + 0.5", activation=act, dtype="float32")
    for L in net32.structured.layers:
        assert np.array_equal(L.data.astype(np.float32).astype(np.float64), L.data)
        assert np.array_equal(L.bias.astype(np.float32).astype(np.float64), L.bias)
        assert net32.layers[0].W.dtype == np.float32


def test_centered_networks_have_shifts_and_zero_bias():
    net = compile_polynomial("x0*x1 + x2**2", centered=True)
    for L in net.structured.layers[:-1]:
        assert L.shift is not None and np.all(L.bias == 0)
    assert net.structured.layers[-1].shift is None
    relu = compile_polynomial("x0*x1", activation="relu")
    assert all(L.shift is None for L in relu.structured.layers)
