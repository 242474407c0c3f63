"""The Numba softplus of the structured-network kernels and the gate pairs of the fused output layer.

* ``log1p_exp_neg32`` / ``log1p_exp_neg64`` (``log1p(exp(-a))`` in one piece): within 3 ulp of the
  exact value (float64 / extended-precision references) on dense samples of their ranges, special
  values handled; softplus built on them within 4 ulp (the certified bounds allow ``KAPPA = 8``).
* Softplus pairs (exactly negated neurons) share the tail: the same bits as without sharing.
* Output pairs (``w h_j - w h_{j+1}`` summed as ``w (h_j - h_{j+1})``): fused and unfused kernels
  agree bit for bit, stay within the tolerance table of the reference and within the certified
  bound of the exact polynomial.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import fastpoly  # noqa: E402
from fastpoly.backends.numba import vecmath as vm  # noqa: E402
from fastpoly.backends.numba.jit import jit  # noqa: E402
from fastpoly.tolerances import assert_close_to_reference, network_atol  # noqa: E402

#: stated bounds (ulps of the float type at the exact value)
TAIL_ULP = 3.0
SOFTPLUS_ULP = 4.0


def _apply(f, dtype):
    @jit
    def run(x, out):
        for i in range(x.shape[0]):
            out[i] = f(x[i])

    def call(x):
        x = np.ascontiguousarray(x, dtype=dtype)
        out = np.empty_like(x)
        run(x, out)
        return out

    return call


def _samples(hi, n, rng):
    return np.concatenate([np.linspace(0, hi, n), rng.uniform(0, 2, n), rng.uniform(0, 30, n),
                           np.exp(rng.uniform(-40, np.log(hi), n)), [0.0, 1e-30, np.log(2.0), 0.5, hi]])


def _ulps(got, ref, dtype):
    """``|got - ref|`` in ulps of ``dtype`` at ``ref`` (``ref`` in extended precision)."""
    spacing = np.spacing(np.abs(ref).astype(dtype)).astype(np.longdouble)
    return np.asarray(np.abs(got.astype(np.longdouble) - ref) / spacing, dtype=np.float64)


@pytest.mark.parametrize("dtype,f,hi", [("float32", vm.log1p_exp_neg32, 87.0),
                                        ("float64", vm.log1p_exp_neg64, 708.0)], ids=["float32", "float64"])
def test_softplus_tail_accuracy(dtype, f, hi):
    dt = np.dtype(dtype)
    rng = np.random.default_rng(0)
    a = _samples(hi, 400_000, rng).astype(dt)
    got = _apply(f, dt)(a)
    al = a.astype(np.longdouble)
    ref = np.log1p(np.exp(-al))
    assert _ulps(got, ref, dt).max() <= TAIL_ULP
    for sign in (1, -1):
        z = sign * al
        sp_ref = np.maximum(z, 0) + ref
        sp = (np.maximum(sign * a, dt.type(0)) + got).astype(dt)
        assert _ulps(sp, sp_ref, dt).max() <= SOFTPLUS_ULP
    # beyond the clamp the tail is flushed to 0: the exact value is below the smallest normal
    big = np.array([hi * 1.0001, 2 * hi, 1e30, np.inf], dt)
    assert np.all(_apply(f, dt)(big) == 0)
    assert float(np.log1p(np.exp(-np.longdouble(hi)))) < np.finfo(dt).tiny * 2**1.5
    assert np.isnan(_apply(f, dt)(np.array([np.nan], dt))[0])
    assert _apply(f, dt)(np.array([0.0], dt))[0] == dt.type(np.log(2.0))


def _gate_net(dtype, activation="softplus"):
    poly = pytest.importorskip("fastpoly.poly")
    p = poly.random_polynomial(5, 3, 10, seed=2)
    return poly, p, poly.compile_polynomial(p, activation=activation, construction="tree", dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gate_pairs_are_found_and_keep_the_bits(dtype):
    from fastpoly.backends.numba.poly import _StructuredArrays, evaluate_structured

    _, p, net = _gate_net(dtype)
    dt = np.dtype(dtype)
    arr = _StructuredArrays(net.structured, dt)
    assert arr.fused and np.count_nonzero(arr.opair) > 0
    X = np.random.default_rng(3).uniform(-1, 1, (700, 5)).astype(dt)
    got = evaluate_structured(net.structured, X, dt, prepared=arr, block=64)
    # softplus pairs share log1p(exp(-|z|)): the same bits as evaluating both neurons
    unshared = evaluate_structured(net.structured, X, dt, prepared=_StructuredArrays(net.structured, dt, pairs=False),
                                   block=64)
    assert np.array_equal(got.view(np.uint8), unshared.view(np.uint8))
    # the unfused kernel sums the same output pairs
    plain = _StructuredArrays(net.structured, dt)
    plain.fused = False
    plain.maxw = int(max([net.n_inputs] + list(plain.fan_out)))
    assert plain.epair.sum() > 0
    unfused = evaluate_structured(net.structured, X, dt, prepared=plain, block=64)
    assert np.array_equal(got.view(np.uint8), unfused.view(np.uint8))
    # within the tolerance table of the reference and the certified bound of the exact value
    ref = net.evaluate_reference(X.astype(np.float64), dt)
    assert_close_to_reference(got, ref, dt, extra_atol=network_atol(net))
    exact = p(X.astype(np.float64))
    assert np.all(np.abs(got[:, 0].astype(np.float64) - exact) <= net.report().certified_error)


def test_output_pairs_only_for_tolerance_compared_activations():
    from fastpoly.backends.numba.poly import PAIRED_OUTPUT_ACTS, _StructuredArrays

    assert not {"identity", "relu", "square"} & PAIRED_OUTPUT_ACTS
    _, _, net = _gate_net("float64", activation="square")
    arr = _StructuredArrays(net.structured, np.dtype(np.float64))
    assert arr.fused and not arr.opair.any() and arr.epair.size == 0
    X = np.random.default_rng(4).uniform(-1, 1, (300, 5))
    got = fastpoly.evaluate(net, X, backend="numba")
    np.testing.assert_array_equal(np.ravel(got), np.ravel(net.evaluate_reference(X, np.float64)))
