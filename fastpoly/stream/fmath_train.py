"""NumPy twins (bit for bit) of the Numba float32 ``exp``, ``log1p``, ``sigmoid`` and ``softplus``.

They mirror :mod:`fastpoly.backends.numba.vecmath`, for the loss of the SGD trainers.

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

__all__ = ["exp32", "log1p32", "sigmoid32", "softplus32"]

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
