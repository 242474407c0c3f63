"""Accuracy of the vectorisable float64 ``exp``/``expm1``/``log1p`` (and sigmoid, softplus) of
:mod:`fastpoly.backends.numba.vecmath`: within 2 ulp of libm (NumPy) over the whole range and of
the exact value (50-digit mpmath) on a sample; special values, overflow and underflow."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from fastpoly.backends.numba import vecmath as vm  # noqa: E402
from fastpoly.backends.numba.jit import jit  # noqa: E402

#: stated bound: every function within this many ulps of libm and of the exact value
MAX_ULP = 2.0


def _vectorised(f):
    @jit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = f(x[i])

    def call(x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty_like(x)
        apply(x, out)
        return out

    return call


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


FUNCS = {
    "exp64": (vm.exp64, np.exp),
    "expm1_64": (vm.expm1_64, np.expm1),
    "log1p64": (vm.log1p64, np.log1p),
    "sigmoid64": (vm.sigmoid64, _sigmoid),
    "softplus64": (vm.softplus64, _softplus),
}
#: the activations compose two functions (and a division): their bound against libm's composition
COMPOSED_ULP = 4.0


def ulps(got, ref):
    """``|got - ref|`` in float64 ulps of ``ref`` (smallest ulp 2**-1074); inf/NaN must match exactly."""
    with np.errstate(all="ignore"):
        _, e = np.frexp(np.abs(ref))
        ulp = np.maximum(np.ldexp(1.0, e - 53), 2.0**-1074)
        err = np.abs(got - ref) / ulp
    special = ~np.isfinite(ref)
    same = (got == ref) | (np.isnan(got) & np.isnan(ref))
    return np.where(special, np.where(same, 0.0, np.inf), err)


def _inputs():
    rng = np.random.default_rng(64)
    bits = rng.integers(0, 2**63, 1_000_000, dtype=np.int64)
    bits[::2] |= np.int64(-(2**63))  # negative half
    x_bits = bits.view(np.float64)
    dense = rng.uniform(-750, 750, 1_000_000)
    mid = rng.uniform(-40, 40, 1_000_000)
    small = rng.uniform(-1, 1, 1_000_000) * 2.0 ** rng.uniform(-60, 2, 1_000_000)
    return np.concatenate([x_bits, dense, mid, small])


@pytest.fixture(scope="module")
def inputs():
    return _inputs()


@pytest.mark.parametrize("name", list(FUNCS))
def test_against_libm(name, inputs):
    f, ref = FUNCS[name]
    x = inputs
    if name == "log1p64":
        x = np.concatenate([x, np.random.default_rng(7).uniform(-1, 1, 1_000_000)])
    got = _vectorised(f)(x)
    with np.errstate(all="ignore"):
        err = ulps(got, ref(x))
    bound = MAX_ULP if name in ("exp64", "expm1_64", "log1p64") else COMPOSED_ULP
    i = int(np.argmax(err))
    assert err[i] <= bound, f"{name}: {err[i]:.3f} ulp at x={x[i]!r} (got {got[i]!r})"


@pytest.mark.parametrize("name", ["exp64", "expm1_64", "log1p64"])
def test_against_exact_values(name):
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-40, 40, 1500), rng.uniform(-1, 1, 1500) * 2.0 ** rng.uniform(-40, 0, 1500)])
    if name == "log1p64":
        x = np.concatenate([np.abs(x) * 3, rng.uniform(-1, 0, 1000)])
    if name == "exp64":
        x = np.concatenate([x, rng.uniform(-745, 709, 1000)])
    f = {"exp64": mpmath.exp, "expm1_64": mpmath.expm1, "log1p64": mpmath.log1p}[name]
    exact = np.array([float(f(mpmath.mpf(float(v)))) for v in x])  # correctly rounded
    got = _vectorised(FUNCS[name][0])(x)
    err = ulps(got, exact)
    i = int(np.argmax(err))
    assert err[i] <= MAX_ULP, f"{name}: {err[i]:.3f} ulp at x={x[i]!r}"


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300,
                    709.782712893384, 709.79, 710.0, 800.0, -708.4, -745.13, -745.14, -746.0, -1e300, 1e300,
                    -1.0, -0.9999999999999999, -1.0000000000000002, -37.0, -40.0, 0.34657359027997264,
                    -0.34657359027997264, 0.41421356237309503, -0.2928932188134524])


@pytest.mark.parametrize("name", list(FUNCS))
def test_special_values(name):
    f, ref = FUNCS[name]
    got = _vectorised(f)(SPECIAL)
    with np.errstate(all="ignore"):
        err = ulps(got, ref(SPECIAL))
    assert np.all(err <= COMPOSED_ULP), list(zip(SPECIAL[err > COMPOSED_ULP], got[err > COMPOSED_ULP]))


def test_limits():
    exp, expm1, log1p = _vectorised(vm.exp64), _vectorised(vm.expm1_64), _vectorised(vm.log1p64)
    assert np.all(np.isposinf(exp(np.array([709.8, 1e10, np.inf]))))
    assert np.all(exp(np.array([-745.2, -1e10, -np.inf])) == 0)
    assert 0 < exp(np.array([-745.0]))[0] < 1e-320  # gradual underflow, not flushed
    assert np.all(expm1(np.array([-38.0, -1e10, -np.inf])) == -1)
    assert np.isneginf(log1p(np.array([-1.0]))[0])
    assert np.all(np.isnan(log1p(np.array([-1.5, -np.inf, np.nan]))))
    assert np.isposinf(log1p(np.array([np.inf]))[0])
    np.testing.assert_array_equal(_vectorised(vm.softplus64)(np.array([-1e300, 1e300])), [0.0, 1e300])


def test_float64_dispatch():
    @jit
    def both(x):
        return (vm.vexp(x), vm.vexpm1(x), vm.vlog1p(x), vm.vsigmoid(x), vm.vsoftplus(x))

    for v in (-0.875, -0.25, 0.0, 0.7, 12.0):
        assert both(v) == (vm.exp64(v), vm.expm1_64(v), vm.log1p64(v), vm.sigmoid64(v), vm.softplus64(v))
