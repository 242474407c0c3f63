"""NumPy twins (bit for bit) of the trainers' float32 elementary functions.

``exp``, ``expm1``, ``log1p``, ``sigmoid``, ``softplus``, ``tanh``, ``erf`` and the derivatives of
the smooth activations.

They mirror :mod:`fastpoly.backends.numba.vecmath` and ``kernels/train.cuh``, for the loss of the
SGD trainers and for their smooth hidden activations (tanh, erf, sigmoid).

Accuracy against float64 math (``tests/test_train_smooth.py`` checks it on dense grids):

* ``exp32``, ``expm1_32``: within 2 ulp; ``sigmoid32`` within 3 ulp; ``tanh32`` within 4 ulp
  (``-expm1(-2|z|) / (2 + expm1(-2|z|))``, no cancellation).
* ``erf32``: within 2 ulp.  ``|z| < 1``: ``z + z*Q(z^2)``, ``Q`` of degree 6 fitted to
  ``(erf(z) - z)/z``; ``1 <= |z| < 3.92``: ``1 - exp(P(|z| - 2.46))`` with ``P`` of degree 8 fitted to
  ``log erfc``; beyond, 1 (``erfc(3.92) < 2**-25``).  Both polynomials are near-minimax (Lawson
  iterations on weighted least squares, coefficients rounded to float32; the ulp bound is measured).
* derivatives, from ``z`` (not from the rounded activation, which would lose all relative accuracy
  where the function saturates): ``tanh'(z) = 4E / (1 + E)**2`` with ``E = exp32(-2|z|)``,
  ``sigmoid'(z) = E / (1 + E)**2`` with ``E = exp32(-|z|)``, ``erf'(z) = (2/sqrt(pi)) exp(-z**2)`` with
  ``z**2 = hi + lo`` (``|z|`` capped at 12) split exactly by an FMA and ``exp(-hi - lo) = fma(-lo, E, E)``, ``E = exp32(-hi)``:
  each within 4 ulp of the float64 derivative wherever that is a normal float32.

Only correctly rounded float32 operations (``+ - * /``), exact fused
multiply-adds (:func:`fastpoly.stream.fmath.fma32`), exact bit manipulation and
selects are used, in the same order as the Numba functions, so the NumPy
reference trainer and the Numba (and CUDA) kernels compute the same bits.
``tests/sgd/test_sgd.py`` checks the equality on random and special values.
"""
from __future__ import annotations

import math

import numpy as np

from fastpoly.stream.fmath import fma32

__all__ = ["ERF_MID", "ERF_SMALL", "d_erf32", "d_sigmoid32", "d_tanh32", "erf32", "exp32", "expm1_32", "log1p32",
           "sigmoid32", "softplus32", "tanh32"]

_F = np.float32
_ONE, _TWO, _HALF, _ZERO = _F(1.0), _F(2.0), _F(0.5), _F(0.0)
_SHIFT = _F(12582912.0)
_SHIFT_BITS = 0x4B400000
_LOG2E = _F(1.4426950408889634)
_LN2_C1 = _F(math.log(2.0))
_LN2_C2 = _F(math.log(2.0) - float(_LN2_C1))
_EXP_HI, _EXP_LO = _F(89.0), _F(-104.0)
_P = [_F(1.0 / math.factorial(k)) for k in range(2, 9)]  # 1/2! .. 1/8!
_LN2_HI = _F(6.9313812256e-01)
_LN2_LO = _F(9.0580006145e-06)
_LG1, _LG2, _LG3, _LG4 = _F(0.66666662693), _F(0.40000972152), _F(0.28498786688), _F(0.24279078841)
_FMAX = _F(np.finfo(np.float32).max)
_EXPM1_LO = _F(-30.0)
#: ``erf(z) = z + z*Q(z^2)`` for ``|z| < 1``: the coefficients of Q, constant term first
ERF_SMALL = tuple(_F(float.fromhex(h)) for h in (
    "0x1.06eba8p-3", "-0x1.81273ep-2", "0x1.ce2cf8p-4", "-0x1.b7f910p-6", "0x1.5405d0p-8", "-0x1.a3f7e8p-11",
    "0x1.496cbep-14"))
#: ``erf(z) = 1 - exp(P(|z| - ERF_T0))`` for ``1 <= |z| < ERF_ONE``: the coefficients of P, constant term first
ERF_MID = tuple(_F(float.fromhex(h)) for h in (
    "-0x1.e607aap+2", "-0x1.51be02p+2", "-0x1.e2985cp-1", "-0x1.6f41b8p-7", "0x1.277992p-9", "-0x1.d26854p-12",
    "0x1.25b90ap-14", "-0x1.594370p-16", "0x1.c7df1cp-23"))
ERF_T0 = _F(2.46)
ERF_ONE = _F(3.92)
_ZCAP = _F(12.0)  # the cap of |z| in d_erf32
#: float32(2 / sqrt(pi))
TWO_OVER_SQRT_PI = _F(1.1283791670955126)


def _f(x):
    return np.asarray(x, dtype=np.float32)


def _pow2(k):
    return ((k + 127).astype(np.int64) << 23).astype(np.uint32).view(np.float32)


def exp32(x):
    """``e**x`` for float32 arrays; the bits of :func:`fastpoly.backends.numba.vecmath.exp32`."""
    x = _f(x)
    x = np.where(x > _EXP_HI, _EXP_HI, x).astype(np.float32)
    x = np.where(x < _EXP_LO, _EXP_LO, x).astype(np.float32)
    s = fma32(x, _LOG2E, _SHIFT)
    kf = (s - _SHIFT).astype(np.float32)
    k = s.view(np.uint32).astype(np.int64) - _SHIFT_BITS
    r = fma32(kf, -_LN2_C1, x)
    r = fma32(kf, -_LN2_C2, r)
    p2, p3, p4, p5, p6, p7, p8 = _P
    q = fma32(p8, r, p7)
    for c in (p6, p5, p4, p3, p2):
        q = fma32(q, r, c)
    em1 = fma32(q, (r * r).astype(np.float32), r)
    p = (_ONE + em1).astype(np.float32)
    k1 = k >> 1
    k2 = k - k1
    with np.errstate(over="ignore"):
        return ((p * _pow2(k1)).astype(np.float32) * _pow2(k2)).astype(np.float32)


def expm1_32(x):
    """``e**x - 1`` for float32 arrays; the bits of :func:`fastpoly.backends.numba.vecmath.expm1_32`."""
    x = _f(x)
    x = np.where(x > _EXP_HI, _EXP_HI, x).astype(np.float32)
    x = np.where(x < _EXPM1_LO, _EXPM1_LO, x).astype(np.float32)
    s = fma32(x, _LOG2E, _SHIFT)
    kf = (s - _SHIFT).astype(np.float32)
    k = s.view(np.uint32).astype(np.int64) - _SHIFT_BITS
    r = fma32(kf, -_LN2_C1, x)
    r = fma32(kf, -_LN2_C2, r)
    p2, p3, p4, p5, p6, p7, p8 = _P
    q = fma32(p8, r, p7)
    for c in (p6, p5, p4, p3, p2):
        q = fma32(q, r, c)
    u = fma32(q, (r * r).astype(np.float32), r)
    h = _pow2(k - 1)
    with np.errstate(over="ignore"):
        v = (_TWO * fma32(h, u, (h - _HALF).astype(np.float32))).astype(np.float32)
    return np.where(k == 0, u, v).astype(np.float32)


def tanh32(z):
    """``tanh(z)``: ``t = -em / (2 + em)``, ``em = expm1_32(-2|z|)``, with the sign of ``z``."""
    z = _f(z)
    em = expm1_32((_F(-2.0) * np.abs(z)).astype(np.float32))
    t = (-em / (_TWO + em).astype(np.float32)).astype(np.float32)
    return np.where(z >= _ZERO, t, -t).astype(np.float32)


def _horner(coeffs, x):
    q = np.full(np.shape(x), coeffs[-1], np.float32)
    for c in coeffs[-2::-1]:
        q = fma32(q, x, c)
    return q


def erf32(z):
    """``erf(z)``: ``a + a*Q(a*a)`` (``a = |z| < 1``), ``1 - exp32(P(a - 2.46))`` (``a < 3.92``), else 1; sign of ``z``."""
    z = _f(z)
    a = np.abs(z)
    small = fma32(a, _horner(ERF_SMALL, (a * a).astype(np.float32)), a)
    with np.errstate(invalid="ignore"):
        mid = (_ONE - exp32(_horner(ERF_MID, (a - ERF_T0).astype(np.float32)))).astype(np.float32)
        r = np.where(a < _ONE, small, np.where(a >= ERF_ONE, _ONE, mid)).astype(np.float32)
    return np.where(z >= _ZERO, r, -r).astype(np.float32)


def d_tanh32(z, e):
    """``e * tanh'(z)``: ``e * (((4*E) / w) / w)``, ``E = exp32(-2|z|)``, ``w = 1 + E`` (``1/cosh(z)**2``)."""
    z = _f(z)
    E = exp32((_F(-2.0) * np.abs(z)).astype(np.float32))
    w = (_ONE + E).astype(np.float32)
    return (_f(e) * (((_F(4.0) * E).astype(np.float32) / w).astype(np.float32) / w).astype(np.float32)).astype(np.float32)


def d_sigmoid32(z, e):
    """``e * sigmoid'(z)``: ``e * ((E / w) / w)``, ``E = exp32(-|z|)``, ``w = 1 + E``."""
    z = _f(z)
    E = exp32(-np.abs(z))
    w = (_ONE + E).astype(np.float32)
    return (_f(e) * ((E / w).astype(np.float32) / w).astype(np.float32)).astype(np.float32)


def d_erf32(z, e):
    """``e * erf'(z)``: ``e * (C * fma(-lo, E, E))``.

    ``a = min(|z|, 12)``, ``hi = a*a``, ``lo = fma(a, a, -hi)``, ``E = exp32(-hi)`` (``erf'(12) < 2**-200``:
    0 in float32).
    """
    a = np.abs(_f(z))
    a = np.where(a > _ZCAP, _ZCAP, a).astype(np.float32)
    hi = (a * a).astype(np.float32)
    lo = fma32(a, a, -hi)
    E = exp32(-hi)
    return (_f(e) * (TWO_OVER_SQRT_PI * fma32(-lo, E, E)).astype(np.float32)).astype(np.float32)


def log1p32(x):
    """``log(1 + x)`` for float32 arrays (``x > -1``); the bits of :func:`fastpoly.backends.numba.vecmath.log1p32`."""
    x = _f(x)
    with np.errstate(all="ignore"):
        u = (_ONE + x).astype(np.float32)
        iu = u.view(np.uint32).astype(np.int64) + (0x3F800000 - 0x3F3504F3)
        k = (iu >> 23) - 127
        c = np.where(k >= 2, (_ONE - (u - x)), (x - (u - _ONE))).astype(np.float32)
        c = (c / u).astype(np.float32)
        f = (((iu & 0x7FFFFF) + 0x3F3504F3).astype(np.uint32).view(np.float32) - _ONE).astype(np.float32)
        small = k == 0
        f = np.where(small, x, f).astype(np.float32)
        c = np.where(small | (k >= 25), _ZERO, c).astype(np.float32)
        s = (f / (_TWO + f)).astype(np.float32)
        z = s * s
        w = z * z
        t1 = w * (_LG2 + w * _LG4)
        t2 = z * (_LG1 + w * _LG3)
        R = t2 + t1
        hfsq = _HALF * f * f
        dk = k.astype(np.float32)
        res = s * (hfsq + R) + (dk * _LN2_LO + c) - hfsq + f + dk * _LN2_HI
        res = np.where(~(x <= _FMAX), x, res)
        res = np.where(x == -_ONE, _F(-np.inf), res)
        res = np.where(x < -_ONE, _F(np.nan), res)
    return res.astype(np.float32)


def sigmoid32(z):
    """``1 / (1 + e**-z)``: ``e = exp32(-|z|)``, ``1/(1+e)`` (z >= 0) or ``e/(1+e)``."""
    z = _f(z)
    e = exp32(-np.abs(z))
    num = np.where(z >= _ZERO, _ONE, e).astype(np.float32)
    return (num / (_ONE + e).astype(np.float32)).astype(np.float32)


def softplus32(z):
    """``max(z, 0) + log1p(exp(-|z|))`` (never overflows)."""
    z = _f(z)
    m = np.where(z > _ZERO, z, _ZERO).astype(np.float32)
    return (m + log1p32(exp32(-np.abs(z)))).astype(np.float32)
