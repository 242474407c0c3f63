"""Branch-free, vectorisable float32 ``exp``, ``expm1``, ``log1p`` (and activations built on them) for Numba.

Numba here has no SVML, so ``math.exp`` / ``math.log1p`` on float32 are scalar
libm calls that stop LLVM from vectorising the per-point loops of
:mod:`fastpoly.backends.numba.poly`.  The functions below use only arithmetic,
:func:`fastpoly.backends.numba.jit.fma`, exact bit casts and selects, so a loop over points
that calls them (inlined) vectorises.

Accuracy (float32, checked against float64 NumPy in ``tests/backends/test_numba_vecmath.py``):
``exp32``, ``expm1_32``, ``log1p32`` within 2 ulp over their whole domain,
including overflow to ``inf``, gradual underflow to 0, ``+-inf`` and NaN;
the activations built from them within 4 ulp (where not cancelling).

float64 (``exp64``, ``expm1_64``, ``log1p64`` and the activations on them) use the
same algorithms with float64 constants (degree-13 Taylor polynomial for ``e^r - 1``,
musl's ``log1p`` with its degree-14 polynomial); accuracy within 2 ulp of the exact value
(``tests/test_ltr_vecmath64.py``: against libm on 4e6 points and the whole range, and
against 50-digit mpmath), and they vectorise where libm's scalar calls do not.

``log1p_exp_neg32`` / ``log1p_exp_neg64`` compute softplus's ``log1p(exp(-a))`` (``a >= 0``)
in one piece, cheaper than the composition (one division, no exponent extraction; within 3 ulp,
``tests/poly/test_softplus_kernel.py``): the structured-network kernels use them.

Generic entry points :func:`vexp`, :func:`vexpm1`, :func:`vlog1p`, :func:`vsigmoid`,
:func:`vsoftplus` dispatch on the argument type inside jitted code (float32 and float64:
the functions of this module); :func:`vtanh` uses this module for float32 and ``math.tanh``
(libm) for float64.

Algorithms
----------
* ``exp``: ``k = round(x / ln 2)`` by the 1.5*2**23 shifter (``k`` read back from
  the bits), ``r = x - k ln 2`` by two FMAs (Cody-Waite; the first is exact),
  ``e^r - 1`` by a degree-8 Taylor polynomial on ``|r| <= ln2 / 2`` (truncation
  below 1e-9 relative), scaled by ``2**k`` in two exact power-of-two steps so
  that subnormal results are rounded once and ``k = 128`` still overflows to ``inf``.
* ``expm1``: the same reduction; ``2**k (e^r - 1) + (2**k - 1)`` in one FMA
  (``e^r - 1`` itself when ``k = 0``).
* ``log1p``: musl's ``log1pf`` (FreeBSD): ``1 + x = 2**k (1 + f)`` with
  ``1 + f`` in ``[sqrt(2)/2, sqrt(2))``, a correction term for the rounding of
  ``1 + x``, ``log(1 + f) = 2 atanh(f / (2 + f))`` with a degree-8 even
  polynomial; every data-dependent branch became a select.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

from fastpoly.backends.numba.jit import JIT_OPTIONS, bits_to_f32, f32_to_bits, fma, jit
from fastpoly.stream import fmath_train as _FT

__all__ = [
    "exp32", "expm1_32", "log1p32", "sigmoid32", "softplus32", "silu32", "tanh32", "erf32",
    "d_tanh32", "d_erf32", "d_sigmoid32",
    "log1p_exp_neg32",
    "exp64", "expm1_64", "log1p64", "sigmoid64", "softplus64", "log1p_exp_neg64", "exp_neg64", "log1p_small64",
    "vexp", "vexpm1", "vlog1p", "vtanh", "vsigmoid", "vsoftplus",
]

_F = np.float32
_ZERO = _F(0.0)
_ONE = _F(1.0)
_TWO = _F(2.0)
_HALF = _F(0.5)
_INF = _F(np.inf)
_NAN = _F(np.nan)
_FMAX = _F(np.finfo(np.float32).max)

_SHIFT = _F(12582912.0)  # 1.5 * 2**23: adding it rounds |v| < 2**22 to an integer
_SHIFT_BITS = 0x4B400000  # bit pattern of _SHIFT
_LOG2E = _F(1.4426950408889634)
_LN2_C1 = _F(math.log(2.0))  # float32(ln 2)
_LN2_C2 = _F(math.log(2.0) - float(_LN2_C1))  # ln 2 - C1, rounded

#: exp clamps: exp(x) == +inf for x > 88.7228..., rounds to 0 for x < -103.972...
_EXP_HI = _F(89.0)
_EXP_LO = _F(-104.0)
#: expm1(x) rounds to -1 for x < -17.33
_EXPM1_LO = _F(-30.0)

#: Taylor coefficients 1/2!, ..., 1/8! of (e^r - 1 - r) / r**2
_P2 = _F(1.0 / 2)
_P3 = _F(1.0 / 6)
_P4 = _F(1.0 / 24)
_P5 = _F(1.0 / 120)
_P6 = _F(1.0 / 720)
_P7 = _F(1.0 / 5040)
_P8 = _F(1.0 / 40320)

#: musl log1pf constants
_LN2_HI = _F(6.9313812256e-01)  # 0x3f317180
_LN2_LO = _F(9.0580006145e-06)  # 0x3717f7d1
_LG1 = _F(0.66666662693)  # 0xaaaaaa.0p-24
_LG2 = _F(0.40000972152)  # 0xccce13.0p-25
_LG3 = _F(0.28498786688)  # 0x91e9ee.0p-25
_LG4 = _F(0.24279078841)  # 0xf89e26.0p-26


@jit
def _expm1_poly(r):
    """``e^r - 1`` for float32 ``|r| <= ln2/2`` (degree-8 Taylor, Horner with FMA)."""
    q = fma(_P8, r, _P7)
    q = fma(q, r, _P6)
    q = fma(q, r, _P5)
    q = fma(q, r, _P4)
    q = fma(q, r, _P3)
    q = fma(q, r, _P2)
    return fma(q, r * r, r)


@jit
def _reduce(x):
    """``(k, r)`` with ``x = k ln2 + r``, ``k`` an integer (int64), ``|r| <= ln2/2`` (float32 ``|x| < 2**21``)."""
    s = fma(x, _LOG2E, _SHIFT)
    kf = s - _SHIFT
    k = np.int64(f32_to_bits(s)) - _SHIFT_BITS
    r = fma(kf, -_LN2_C1, x)
    r = fma(kf, -_LN2_C2, r)
    return k, r


@jit
def _pow2(k):
    """``2**k`` as float32 for integer ``-126 <= k <= 127`` (exact, from the bits)."""
    return bits_to_f32(np.uint32((k + 127) << 23))


@jit
def exp32(x):
    """``e**x`` for float32 ``x`` (branch-free; within 2 ulp; ``inf`` / 0 / NaN handled)."""
    x = _EXP_HI if x > _EXP_HI else x
    x = _EXP_LO if x < _EXP_LO else x
    k, r = _reduce(x)
    p = _ONE + _expm1_poly(r)
    k1 = k >> 1
    k2 = k - k1
    return (p * _pow2(k1)) * _pow2(k2)


@jit
def expm1_32(x):
    """``e**x - 1`` for float32 ``x`` (branch-free; within 2 ulp; ``inf`` / -1 / NaN handled)."""
    x = _EXP_HI if x > _EXP_HI else x
    x = _EXPM1_LO if x < _EXPM1_LO else x
    k, r = _reduce(x)
    u = _expm1_poly(r)
    h = _pow2(k - 1)  # k - 1 in [-45, 127]
    v = _TWO * fma(h, u, h - _HALF)
    return u if k == 0 else v


@jit
def log1p32(x):
    """``log(1 + x)`` for float32 ``x`` (branch-free musl ``log1pf``; within 2 ulp; -1, < -1, inf, NaN handled)."""
    u = _ONE + x
    iu = np.int64(f32_to_bits(u)) + (0x3F800000 - 0x3F3504F3)
    k = (iu >> 23) - 127
    # correction term ~ log(1+x) - log(u) for the rounding of u = 1 + x
    c = (_ONE - (u - x)) if k >= 2 else (x - (u - _ONE))
    c = c / u
    f = bits_to_f32(np.uint32((iu & 0x7FFFFF) + 0x3F3504F3)) - _ONE
    small = k == 0
    f = x if small else f
    c = _ZERO if (small or k >= 25) else c
    s = f / (_TWO + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * _LG4)
    t2 = z * (_LG1 + w * _LG3)
    R = t2 + t1
    hfsq = _HALF * f * f
    dk = _F(k)
    res = s * (hfsq + R) + (dk * _LN2_LO + c) - hfsq + f + dk * _LN2_HI
    res = x if not (x <= _FMAX) else res  # +inf, NaN
    res = -_INF if x == -_ONE else res
    return _NAN if x < -_ONE else res


@jit
def sigmoid32(z):
    """``1 / (1 + e**-z)`` as the reference computes it (``e = exp(-|z|)``; ``1/(1+e)`` or ``e/(1+e)``)."""
    e = exp32(-abs(z))
    num = _ONE if z >= _ZERO else e
    return num / (_ONE + e)


@jit
def softplus32(z):
    """``max(z, 0) + log1p(exp(-|z|))`` for float32 ``z`` (never overflows)."""
    m = z if z > _ZERO else _ZERO
    return m + log1p32(exp32(-abs(z)))


@jit
def silu32(z):
    """``z * sigmoid(z)`` for float32 ``z``."""
    return z * sigmoid32(z)


@jit
def tanh32(z):
    """``tanh(z)`` for float32 ``z`` as ``-expm1(-2|z|) / (2 + expm1(-2|z|))`` with the sign of ``z``."""
    a = abs(z)
    em = expm1_32(_F(-2.0) * a)
    t = -em / (_TWO + em)
    return t if z >= _ZERO else -t


#: softplus tail: ``log1p(exp(-a))`` is flushed to 0 beyond this ``a`` (``exp(-87) > 2**-126``: normal)
_SPT_AMAX = _F(87.0)
_SPT_POW2_OFF = ((127 - _SHIFT_BITS) << 23) & 0xFFFFFFFF
#: ``e^r`` on ``|r| <= ln2 / 2``: degree-6 least-squares fit of the relative error at Chebyshev nodes,
#: constant and linear coefficients 1, the others rounded to float32 (relative error < 0.3 * 2**-24)
_SPT_E2 = _F(0.49999991059303284)
_SPT_E3 = _F(0.1666642129421234)
_SPT_E4 = _F(0.0416683591902256)
_SPT_E5 = _F(0.008374771103262901)
_SPT_E6 = _F(0.0013829420786350965)
#: ``P(z) ~ (atanh(t)/t - 1) / z`` on ``z = t**2 in [0, 1/9]`` (degree-4 fit at Chebyshev nodes,
#: rounded to float32): its error moves ``log1p`` by < 0.02 units of 2**-24 relative
_SPT_P0 = _F(0.33333334)
_SPT_P1 = _F(0.19999851)
_SPT_P2 = _F(0.14296292)
_SPT_P3 = _F(0.10851662)
_SPT_P4 = _F(0.11619509)


@jit
def log1p_exp_neg32(a):
    """``log1p(exp(-a))`` for float32 ``a >= 0``: the transcendental part of softplus, in one piece.

    ``softplus(z) = max(z, 0) + log1p_exp_neg32(|z|)``.  ``e = exp(-a)`` with the reduction of
    :func:`exp32`, a degree-6 polynomial for ``e^r`` and one scaling step (``a`` is clamped to 87
    so ``e`` stays normal; ``2**k`` built in 32-bit integers), then
    ``log(1 + e) = 2 atanh(t)``, ``t = e / (2 + e) in [0, 1/3]``, as ``2t + 2t z P(z)``
    (``z = t**2``, ``P`` a degree-4 polynomial): one division, no exponent extraction,
    no correction term (``1 + e`` is never formed).  For ``a > 87`` the result is 0 (the exact
    value is below ``1.7e-38``); NaN propagates; ``a = inf`` gives 0.

    Accuracy (``tests/poly/test_softplus_kernel.py``): within 3 ulp of ``log1p(exp(-a))``
    on a dense sample of ``[0, 87]`` (measured: 2.7), so ``max(z, 0) + log1p_exp_neg32(|z|)`` is
    within 4 ulp of softplus (``KAPPA = 8`` ulps is what the certified bounds assume).
    """
    x = -a
    x = -_SPT_AMAX if x < -_SPT_AMAX else x
    s = fma(x, _LOG2E, _SHIFT)
    kf = s - _SHIFT
    r = fma(kf, -_LN2_C1, x)
    r = fma(kf, -_LN2_C2, r)
    # 2**k from the low bits of s (k = bits(s) - bits(shifter)): ((k + 127) << 23) mod 2**32, in 32 bits
    scale = bits_to_f32(np.uint32(((f32_to_bits(s) << 23) + _SPT_POW2_OFF) & 0xFFFFFFFF))
    q = fma(_SPT_E6, r, _SPT_E5)
    q = fma(q, r, _SPT_E4)
    q = fma(q, r, _SPT_E3)
    q = fma(q, r, _SPT_E2)
    q = fma(q, r, _ONE)
    e = fma(q, r, _ONE) * scale
    e = _ZERO if a > _SPT_AMAX else e
    t = e / (_TWO + e)
    z = t * t
    q = fma(_SPT_P4, z, _SPT_P3)
    q = fma(q, z, _SPT_P2)
    q = fma(q, z, _SPT_P1)
    q = fma(q, z, _SPT_P0)
    t2 = t + t
    return fma(t2, z * q, t2)


# --- float64 -----------------------------------------------------------------------------------

@intrinsic
def f64_to_bits(typingctx, x):
    """The IEEE-754 bit pattern of a float64 as an int64 (exact bit cast)."""
    if x != types.float64:
        return None
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def bits_to_f64(typingctx, x):
    """The float64 with IEEE-754 bit pattern ``x`` (an int64; exact bit cast)."""
    if x != types.int64:
        return None
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


_SHIFT64 = 6755399441055744.0  # 1.5 * 2**52: adding it rounds |v| < 2**51 to an integer
_SHIFT64_BITS = 0x4338000000000000
_LOG2E64 = 1.4426950408889634
#: fdlibm's split of ln 2 (hi has 32 trailing zero bits)
_LN2_HI64 = 6.93147180369123816490e-01
_LN2_LO64 = 1.90821492927058770002e-10
_EXP_HI64 = 710.0  # exp(x) == inf for x > 709.78...
_EXP_LO64 = -746.0  # exp(x) rounds to 0 for x < -745.13...
_EXPM1_LO64 = -40.0  # expm1(x) rounds to -1 for x < -37.43
#: Taylor coefficients 1/2! .. 1/13! of (e^r - 1 - r) / r**2 (|r| <= ln2/2: truncation < 4e-18 r)
_Q = tuple(1.0 / math.factorial(k) for k in range(2, 14))
#: musl log1p's polynomial
_LG1_64 = 6.666666666666735130e-01
_LG2_64 = 3.999999999940941908e-01
_LG3_64 = 2.857142874366239149e-01
_LG4_64 = 2.222219843214978396e-01
_LG5_64 = 1.818357216161805012e-01
_LG6_64 = 1.531383769920937332e-01
_LG7_64 = 1.479819860511658591e-01
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # bits of sqrt(2)/2
_FMAX64 = float(np.finfo(np.float64).max)
_Q2, _Q3, _Q4, _Q5, _Q6, _Q7, _Q8, _Q9, _Q10, _Q11, _Q12, _Q13 = _Q


@jit
def _expm1_poly64(r):
    """``e^r - 1`` for float64 ``|r| <= ln2/2`` (degree-13 Taylor, Horner with FMA)."""
    q = fma(_Q13, r, _Q12)
    q = fma(q, r, _Q11)
    q = fma(q, r, _Q10)
    q = fma(q, r, _Q9)
    q = fma(q, r, _Q8)
    q = fma(q, r, _Q7)
    q = fma(q, r, _Q6)
    q = fma(q, r, _Q5)
    q = fma(q, r, _Q4)
    q = fma(q, r, _Q3)
    q = fma(q, r, _Q2)
    return fma(q, r * r, r)


@jit
def _reduce64(x):
    """``(k, r)`` with ``x = k ln2 + r``, ``k`` an integer (int64), ``|r| <= ln2/2`` (``|x| < 2**40``)."""
    s = fma(x, _LOG2E64, _SHIFT64)
    kf = s - _SHIFT64
    k = f64_to_bits(s) - _SHIFT64_BITS
    r = fma(kf, -_LN2_HI64, x)
    r = fma(kf, -_LN2_LO64, r)
    return k, r


@jit
def _pow2_64(k):
    """``2**k`` as float64 for integer ``-1022 <= k <= 1023`` (exact, from the bits)."""
    return bits_to_f64((k + 1023) << 52)


@jit
def exp64(x):
    """``e**x`` for float64 ``x`` (branch-free; within 2 ulp; ``inf`` / 0 / NaN handled)."""
    x = _EXP_HI64 if x > _EXP_HI64 else x
    x = _EXP_LO64 if x < _EXP_LO64 else x
    k, r = _reduce64(x)
    p = 1.0 + _expm1_poly64(r)
    k1 = k >> 1
    k2 = k - k1
    return (p * _pow2_64(k1)) * _pow2_64(k2)


@jit
def expm1_64(x):
    """``e**x - 1`` for float64 ``x`` (branch-free; within 2 ulp; ``inf`` / -1 / NaN handled)."""
    x = _EXP_HI64 if x > _EXP_HI64 else x
    x = _EXPM1_LO64 if x < _EXPM1_LO64 else x
    k, r = _reduce64(x)
    u = _expm1_poly64(r)
    h = _pow2_64(k - 1)  # k - 1 in [-59, 1023]
    v = 2.0 * fma(h, u, h - 0.5)
    return u if k == 0 else v


@jit
def log1p64(x):
    """``log(1 + x)`` for float64 ``x`` (branch-free musl ``log1p``; within 2 ulp; -1, < -1, inf, NaN handled)."""
    u = 1.0 + x
    iu = f64_to_bits(u) + (0x3FF0000000000000 - _SQRT_HALF_BITS)
    k = (iu >> 52) - 1023
    # correction term ~ log(1+x) - log(u) for the rounding of u = 1 + x
    c = (1.0 - (u - x)) if k >= 2 else (x - (u - 1.0))
    c = c / u
    f = bits_to_f64((iu & 0x000FFFFFFFFFFFFF) + _SQRT_HALF_BITS) - 1.0
    small = k == 0
    f = x if small else f
    c = 0.0 if (small or k >= 54) else c
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2_64 + w * (_LG4_64 + w * _LG6_64))
    t2 = z * (_LG1_64 + w * (_LG3_64 + w * (_LG5_64 + w * _LG7_64)))
    R = t2 + t1
    dk = np.float64(k)
    res = s * (hfsq + R) + (dk * _LN2_LO64 + c) - hfsq + f + dk * _LN2_HI64
    res = x if not (x <= _FMAX64) else res  # +inf, NaN
    res = -math.inf if x == -1.0 else res
    return math.nan if x < -1.0 else res


@jit
def sigmoid64(z):
    """``1 / (1 + e**-z)`` as the reference computes it (``e = exp(-|z|)``; ``1/(1+e)`` or ``e/(1+e)``)."""
    e = exp64(-abs(z))
    num = 1.0 if z >= 0.0 else e
    return num / (1.0 + e)


@jit
def softplus64(z):
    """``max(z, 0) + log1p(exp(-|z|))`` for float64 ``z`` (never overflows)."""
    m = z if z > 0.0 else 0.0
    return m + log1p64(exp64(-abs(z)))


#: softplus tail: ``log1p(exp(-a))`` is flushed to 0 beyond this ``a`` (``exp(-708) > 2**-1022``: normal)
_SPT_AMAX64 = 708.0
#: Taylor coefficients 1/3, 1/5, ..., 1/21 of ``(atanh(t)/t - 1) / t**2`` in ``z = t**2``
_SPT_C64 = tuple(1.0 / (2 * k + 3) for k in range(10))
(_SPT_C0, _SPT_C1, _SPT_C2, _SPT_C3, _SPT_C4, _SPT_C5, _SPT_C6, _SPT_C7, _SPT_C8,
 _SPT_C9) = _SPT_C64


@jit
def log1p_exp_neg64(a):
    """``log1p(exp(-a))`` for float64 ``a >= 0``: the transcendental part of softplus, in one piece.

    ``e = exp(-a)`` as in :func:`exp64` (``a`` clamped to 708 so ``e`` stays normal: one
    scaling step); then ``1 + e = 2**j (1 + f)`` with ``f = e`` (``j = 0``) for ``e < 1/2`` and
    ``f = (e - 1) / 2`` (``j = 1``, exact by Sterbenz) otherwise, so ``|f| <= 1/2`` and
    ``t = f / (2 + f)`` has ``|t| <= 1/5``; ``log(1 + f) = 2 atanh(t) = 2t + 2t z P(z)``,
    ``z = t**2 <= 1/25``, with ``P`` the Taylor polynomial of degree 9 (truncation below
    ``0.04**11 / 23 < 2e-17`` relative), plus ``j ln 2`` in two parts.  No exponent
    extraction and one division.  For ``a > 708`` the result is 0 (the exact value is below
    ``3.3e-308``); NaN propagates; ``a = inf`` gives 0.

    Accuracy (``tests/poly/test_softplus_kernel.py``, against extended precision): within 3 ulp
    of ``log1p(exp(-a))`` (measured: 2.7), softplus built on it within 4 ulp.
    """
    return log1p_small64(exp_neg64(a))


@jit
def exp_neg64(a):
    """``exp(-a)`` for float64 ``a >= 0``, flushed to 0 for ``a > 708`` (first half of :func:`log1p_exp_neg64`)."""
    x = -a
    x = -_SPT_AMAX64 if x < -_SPT_AMAX64 else x
    k, r = _reduce64(x)
    e = (1.0 + _expm1_poly64(r)) * _pow2_64(k)
    return 0.0 if a > _SPT_AMAX64 else e


@jit
def log1p_small64(e):
    """``log(1 + e)`` for float64 ``e in [0, 1]`` (second half of :func:`log1p_exp_neg64`)."""
    big = e >= 0.5
    f = (e - 1.0) * 0.5 if big else e
    j = 1.0 if big else 0.0
    t = f / (2.0 + f)
    z = t * t
    q = fma(_SPT_C9, z, _SPT_C8)
    q = fma(q, z, _SPT_C7)
    q = fma(q, z, _SPT_C6)
    q = fma(q, z, _SPT_C5)
    q = fma(q, z, _SPT_C4)
    q = fma(q, z, _SPT_C3)
    q = fma(q, z, _SPT_C2)
    q = fma(q, z, _SPT_C1)
    q = fma(q, z, _SPT_C0)
    t2 = t + t
    lo = fma(t2, z * q, j * _LN2_LO64)
    return (t2 + lo) + j * _LN2_HI64


_ES = tuple(float(c) for c in _FT.ERF_SMALL)
_EM = tuple(float(c) for c in _FT.ERF_MID)
_ES0, _ES1, _ES2, _ES3, _ES4, _ES5, _ES6 = (_F(c) for c in _ES)
_EM0, _EM1, _EM2, _EM3, _EM4, _EM5, _EM6, _EM7, _EM8 = (_F(c) for c in _EM)
_ERF_T0 = _FT.ERF_T0
_ERF_ONE = _FT.ERF_ONE
_TWO_OVER_SQRT_PI = _FT.TWO_OVER_SQRT_PI
_FOUR = _F(4.0)
_ZCAP = _F(12.0)  # the cap of |z| in d_erf32


@jit
def erf32(z):
    """``erf(z)`` for float32 ``z``; the bits of :func:`fastpoly.stream.fmath_train.erf32` (within 2 ulp)."""
    a = abs(z)
    s = a * a
    q = fma(_ES6, s, _ES5)
    q = fma(q, s, _ES4)
    q = fma(q, s, _ES3)
    q = fma(q, s, _ES2)
    q = fma(q, s, _ES1)
    q = fma(q, s, _ES0)
    small = fma(a, q, a)
    t = a - _ERF_T0
    p = fma(_EM8, t, _EM7)
    p = fma(p, t, _EM6)
    p = fma(p, t, _EM5)
    p = fma(p, t, _EM4)
    p = fma(p, t, _EM3)
    p = fma(p, t, _EM2)
    p = fma(p, t, _EM1)
    p = fma(p, t, _EM0)
    mid = _ONE - exp32(p)
    r = small if a < _ONE else (_ONE if a >= _ERF_ONE else mid)
    return r if z >= _ZERO else -r


@jit
def d_tanh32(z, e):
    """``e * tanh'(z)`` = ``e * (((4E) / w) / w)``, ``E = exp32(-2|z|)``, ``w = 1 + E``."""
    E = exp32(_F(-2.0) * abs(z))
    w = _ONE + E
    return e * (((_FOUR * E) / w) / w)


@jit
def d_sigmoid32(z, e):
    """``e * sigmoid'(z)`` = ``e * ((E / w) / w)``, ``E = exp32(-|z|)``, ``w = 1 + E``."""
    E = exp32(-abs(z))
    w = _ONE + E
    return e * ((E / w) / w)


@jit
def d_erf32(z, e):
    """``e * erf'(z)`` = ``e * (C * fma(-lo, E, E))``.

    ``a = min(|z|, 12)``, ``hi = a*a``, ``lo = fma(a, a, -hi)``, ``E = exp32(-hi)``.
    """
    a = abs(z)
    a = _ZCAP if a > _ZCAP else a
    hi = a * a
    lo = fma(a, a, -hi)
    E = exp32(-hi)
    return e * (_TWO_OVER_SQRT_PI * fma(-lo, E, E))


# --- type-dispatching entry points (float32 and float64: this module; float64 tanh: libm) -----

_OV_OPTS: Any = {k: v for k, v in JIT_OPTIONS.items() if k != "cache"}


def vexp(x):
    """``e**x`` in the argument's float type (jitted code only)."""
    raise NotImplementedError("vexp is only callable from jitted code")


def vexpm1(x):
    """``e**x - 1`` in the argument's float type (jitted code only)."""
    raise NotImplementedError("vexpm1 is only callable from jitted code")


def vlog1p(x):
    """``log(1 + x)`` in the argument's float type (jitted code only)."""
    raise NotImplementedError("vlog1p is only callable from jitted code")


def vtanh(x):
    """``tanh(x)`` in the argument's float type (jitted code only)."""
    raise NotImplementedError("vtanh is only callable from jitted code")


def vsigmoid(x):
    """The reference sigmoid in the argument's float type (jitted code only)."""
    raise NotImplementedError("vsigmoid is only callable from jitted code")


def vsoftplus(x):
    """The reference softplus in the argument's float type (jitted code only)."""
    raise NotImplementedError("vsoftplus is only callable from jitted code")


@overload(vexp, jit_options=_OV_OPTS)
def _ov_vexp(x):
    if x == types.float32:
        return lambda x: exp32(x)
    if x == types.float64:
        return lambda x: exp64(x)
    return None


@overload(vexpm1, jit_options=_OV_OPTS)
def _ov_vexpm1(x):
    if x == types.float32:
        return lambda x: expm1_32(x)
    if x == types.float64:
        return lambda x: expm1_64(x)
    return None


@overload(vlog1p, jit_options=_OV_OPTS)
def _ov_vlog1p(x):
    if x == types.float32:
        return lambda x: log1p32(x)
    if x == types.float64:
        return lambda x: log1p64(x)
    return None


@overload(vtanh, jit_options=_OV_OPTS)
def _ov_vtanh(x):
    if x == types.float32:
        return lambda x: tanh32(x)
    if isinstance(x, types.Float):
        return lambda x: math.tanh(x)
    return None


@overload(vsigmoid, jit_options=_OV_OPTS)
def _ov_vsigmoid(x):
    if x == types.float32:
        return lambda x: sigmoid32(x)
    if x == types.float64:
        return lambda x: sigmoid64(x)
    return None


@overload(vsoftplus, jit_options=_OV_OPTS)
def _ov_vsoftplus(x):
    if x == types.float32:
        return lambda x: softplus32(x)
    if x == types.float64:
        return lambda x: softplus64(x)
    return None
