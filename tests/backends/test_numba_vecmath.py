"""Accuracy of the vectorisable float32 ``exp``/``expm1``/``log1p`` and activations of :mod:`fastpoly.backends.numba.vecmath`.

Each function is checked against float64 NumPy on 10**7 random float32 bit
patterns (the whole range: subnormals, overflow, +-inf, NaN) plus 10**7
points spread over the range the activations use, and on special values.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("numba")

from fastpoly.backends.numba import vecmath as vm  # noqa: E402
from fastpoly.backends.numba.jit import jit  # noqa: E402

N_BITS = 10_000_000
N_RANGE = 10_000_000


def _vectorised(f):
    @jit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = f(x[i])

    def call(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty_like(x)
        apply(x, out)
        return out

    return call


def _sigmoid64(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _log1p64(z):
    with np.errstate(all="ignore"):
        return np.log1p(z)


#: name -> (float32 function, float64 reference, max ulp, ulp floor)
FUNCS = {
    "exp32": (vm.exp32, np.exp, 2.0, 2.0**-149),
    "expm1_32": (vm.expm1_32, np.expm1, 2.0, 2.0**-149),
    "log1p32": (vm.log1p32, _log1p64, 2.0, 2.0**-149),
    "sigmoid32": (vm.sigmoid32, _sigmoid64, 4.0, 2.0**-149),
    "softplus32": (vm.softplus32, lambda z: np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))), 4.0, 2.0**-149),
    # silu = z * sigmoid(z): a subnormal float32 sigmoid (z < -87) loses relative accuracy, as in NumPy
    "silu32": (vm.silu32, lambda z: z * _sigmoid64(z), 4.0, 2.0**-126),
    "tanh32": (vm.tanh32, np.tanh, 4.0, 2.0**-149),
}


def ulp_errors(got, ref, floor=2.0**-149):
    """Errors of float32 ``got`` against float64 ``ref`` in float32 ulps of ``ref``.

    Where ``ref`` rounds to +-inf in float32, ``got`` must equal it (error 0, else inf);
    where ``ref`` is NaN, ``got`` must be NaN.  ``floor`` is the smallest ulp used.
    """
    ref = np.asarray(ref, np.float64)
    with np.errstate(all="ignore"):
        r32 = ref.astype(np.float32)
        _, e = np.frexp(np.abs(ref))
        ulp = np.maximum(np.ldexp(1.0, e - 24), floor)
        err = np.abs(got.astype(np.float64) - ref) / ulp
    err = np.where(np.isinf(r32), np.where(got == r32, 0.0, np.inf), err)
    err = np.where(np.isnan(ref), np.where(np.isnan(got), 0.0, np.inf), err)
    return err


def _inputs():
    rng = np.random.default_rng(12345)
    bits = rng.integers(0, 2**32, N_BITS, dtype=np.uint64).astype(np.uint32).view(np.float32)
    dense = rng.uniform(-110.0, 110.0, N_RANGE).astype(np.float32)
    small = (rng.uniform(-1, 1, N_RANGE // 4) * 2.0 ** rng.uniform(-30, 3, N_RANGE // 4)).astype(np.float32)
    return np.concatenate([bits, dense, small])


@pytest.fixture(scope="module")
def inputs():
    return _inputs()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FUNCS))
def test_accuracy_against_float64(name, inputs):
    f, ref, max_ulp, floor = FUNCS[name]
    x = inputs
    if name == "log1p32":
        # log1p only makes sense on (-1, inf]; also densely sample (-1, 1] where softplus uses it
        x = np.concatenate([x, np.random.default_rng(7).uniform(-1, 1, N_RANGE // 2).astype(np.float32)])
    got = _vectorised(f)(x)
    with np.errstate(all="ignore"):
        err = ulp_errors(got, ref(x.astype(np.float64)), floor)
    i = int(np.argmax(err))
    assert err[i] <= max_ulp, f"{name}: {err[i]:.3f} ulp at x={x[i]!r} (got {got[i]!r})"


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, -1e-38, 88.72283, 88.72284, 89.0,
                    -87.33654, -103.97208, -103.97209, -104.0, -150.0, 1e30, -1e30, -1.0, -0.99999994, -1.0000001,
                    -17.33, -30.0, 0.34657359, -0.34657359, 0.41421357, -0.29289323], np.float32)


@pytest.mark.parametrize("name", list(FUNCS))
def test_special_values(name):
    f, ref, max_ulp, floor = FUNCS[name]
    got = _vectorised(f)(SPECIAL)
    with np.errstate(all="ignore"):
        err = ulp_errors(got, ref(SPECIAL.astype(np.float64)), floor)
    assert np.all(err <= max_ulp), list(zip(SPECIAL[err > max_ulp], got[err > max_ulp]))


def test_overflow_underflow_limits():
    exp = _vectorised(vm.exp32)
    expm1 = _vectorised(vm.expm1_32)
    log1p = _vectorised(vm.log1p32)
    softplus = _vectorised(vm.softplus32)
    big = np.array([88.7229, 100.0, 1e10, np.inf], np.float32)
    assert np.all(np.isposinf(exp(big)))
    assert np.all(np.isposinf(expm1(big)))
    assert np.all(exp(np.array([-104.0, -1e10, -np.inf], np.float32)) == 0)
    assert exp(np.array([-103.0], np.float32))[0] > 0  # gradual underflow, not flushed
    assert np.all(expm1(np.array([-20.0, -1e10, -np.inf], np.float32)) == -1)
    assert np.isneginf(log1p(np.array([-1.0], np.float32))[0])
    assert np.all(np.isnan(log1p(np.array([-1.5, -np.inf, np.nan], np.float32))))
    assert np.isposinf(log1p(np.array([np.inf], np.float32))[0])
    # softplus never overflows on finite input
    z = np.array([-3e38, -1e4, 1e4, 3e38], np.float32)
    np.testing.assert_array_equal(softplus(z), np.array([0, 0, 1e4, 3e38], np.float32))
    assert np.isposinf(softplus(np.array([np.inf], np.float32))[0])


def test_float64_dispatch_tanh_is_libm():
    # float64 exp/expm1/log1p/sigmoid/softplus: tests/test_ltr_vecmath64.py
    @jit
    def f(x):
        return vm.vtanh(x)

    for v in (-0.875, -0.25, 0.0, 0.7, 12.0):
        assert f(v) == math.tanh(v)


def test_float32_dispatch_uses_vecmath():
    @jit
    def both(x):
        return (vm.vexp(x), vm.vexpm1(x), vm.vlog1p(x), vm.vtanh(x), vm.vsigmoid(x), vm.vsoftplus(x))

    x = np.float32(0.375)
    got = both(x)
    want = (vm.exp32(x), vm.expm1_32(x), vm.log1p32(x), vm.tanh32(x), vm.sigmoid32(x), vm.softplus32(x))
    from numba.core import types

    assert both.nopython_signatures[0].return_type == types.UniTuple(types.float32, 6)
    assert got == want
