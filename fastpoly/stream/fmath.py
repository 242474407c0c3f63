"""Bit-reproducible float32 arithmetic: the project's FMA rule, log and sincos.

Every backend (NumPy, Numba, CUDA) must produce the *same bits* for the random
normals and for the forward pass of a sampled network.  Library transcendental
functions differ in their last bits between libm, NumPy and CUDA, so fastpoly
uses its own fixed polynomials, built only from correctly rounded IEEE float32
operations (``+ - * / sqrt`` and fused multiply-add) and exact integer / bit
manipulation.

The FMA rule
------------
Every multiply-add in the inner loops of fastpoly -- the Horner steps of the
polynomials below and every ``z = w * x + z`` step of a forward pass -- is an
explicit, correctly rounded float32 **fused** multiply-add ``fma(a, b, c) =
RN(a*b + c)``.  Nothing else is fused.  Backends with hardware FMA (CUDA
``__fmaf_rn``, LLVM ``llvm.fma.f32`` in Numba) use it; NumPy has no fused
operation, so :func:`fma32` emulates it exactly: the product of two float32 is
exact in float64, the float64 sum is rounded *to odd* (Boldo & Melquiond,
IEEE TC 2008) and then rounded to float32, which gives the correctly rounded
result because 53 >= 2*24 + 2.

The uniform
-----------
``u = ((x >> 9) + 0.5) * 2**-23 = (2*(x >> 9) + 1) * 2**-24``.  The older form
``((x >> 8) + 0.5) * 2**-24`` (``docs/design.md#stream-layout``) is *not* exact in float32 for
``x >= 2**31`` (``(2**24 - 0.5) * 2**-24`` rounds to 1.0); our form is exact,
lies in ``[2**-24, 1 - 2**-24]`` and is never 0 or 1.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "fma32",
    "log_odd24",
    "sincos2pi_odd24",
    "uniform_from_word",
    "box_muller_words",
    "LOG_COEFFS",
    "SIN_COEFFS",
    "COS_COEFFS",
    "LN2_HI",
    "LN2_LO",
    "SQRT2",
]

f32 = np.float32

# --- constants (float32; the CUDA header kernels/fp_math.cuh spells the same bits) ---
#: ln(2) split so that ``E*LN2_HI`` is exact for ``|E| < 2**8``
LN2_HI = f32(float.fromhex("0x1.62e400p-1"))
LN2_LO = f32(float.fromhex("0x1.7f7d1cp-20"))
SQRT2 = f32(float.fromhex("0x1.6a09e6p+0"))
#: ``2*atanh(s) = 2s * (1 + s^2*(C3 + s^2*(C5 + s^2*(C7 + s^2*C9))))``, ``|s| <= 0.1716``
LOG_COEFFS = tuple(f32(1.0 / k) for k in (3, 5, 7, 9))  # C3, C5, C7, C9
_TWO_PI = 2.0 * np.pi
#: ``sin(2*pi*r) = r * (S1 + r2*(S3 + r2*(S5 + r2*(S7 + r2*S9))))``, ``|r| <= 1/8``
SIN_COEFFS = tuple(
    f32((-1) ** k * _TWO_PI ** (2 * k + 1) / float(np.prod(np.arange(1, 2 * k + 2))))
    for k in range(5)
)  # S1, S3, S5, S7, S9
#: cos(2*pi*r) = 1 + r2*(C2 + r2*(C4 + r2*(C6 + r2*(C8 + r2*C10))))
COS_COEFFS = tuple(
    f32((-1) ** k * _TWO_PI ** (2 * k) / float(np.prod(np.arange(1, 2 * k + 1))))
    for k in range(1, 6)
)  # C2, C4, C6, C8, C10


def fma32(a, b, c):
    """Correctly rounded float32 fused multiply-add ``RN(a*b + c)``, exact emulation.

    Parameters
    ----------
    a, b, c : array_like of float32
        Operands (broadcast together).  They are converted to float32 first.

    Returns
    -------
    numpy.ndarray of float32
        ``a*b + c`` rounded once to float32 (round to nearest, ties to even),
        bit-identical to a hardware FMA.

    Notes
    -----
    The float32 product is exact in float64, so ``s = RN64(a*b + c)`` has one
    rounding.  Rounding ``s`` to float32 can only differ from the correctly
    rounded result when ``s`` lies exactly on a float32 rounding boundary (a
    midpoint) or in the float32 subnormal range; only those rare elements are
    recomputed with a float64 sum rounded *to odd*, which is then exact after
    the final rounding to float32 (53 >= 2*24 + 2).
    """
    a = np.asarray(a, dtype=np.float32).astype(np.float64)
    b = np.asarray(b, dtype=np.float32).astype(np.float64)
    c = np.asarray(c, dtype=np.float32).astype(np.float64)
    return _fma32_from_f64(a, b, c)


_LOW29 = np.int64((1 << 29) - 1)
_HALF29 = np.int64(1 << 28)
_TINY32 = np.float64(2.0**-126)


def _fma32_from_f64(a, b, c):
    """fma32 for float64 arrays that hold float32 values (see :func:`fma32`)."""
    s = a * b + c  # one rounding: the product is exact
    s = np.asarray(s)
    out = s.astype(np.float32)
    bits = s.view(np.int64)
    suspect = (bits & _LOW29) == _HALF29
    suspect |= np.abs(s) < _TINY32
    if np.any(suspect):
        ia = np.broadcast_to(a, s.shape)[suspect]
        ib = np.broadcast_to(b, s.shape)[suspect]
        ic = np.broadcast_to(c, s.shape)[suspect]
        out[suspect] = _fma32_round_to_odd(ia, ib, ic)
    return out


def _fma32_round_to_odd(a, b, c):
    """Exact fma32 via a round-to-odd float64 sum (slow path, 1-D float64 inputs)."""
    p = a * b  # exact
    s = p + c
    bp = s - c
    e = (p - bp) + (c - (s - bp))  # TwoSum: p + c = s + e exactly
    bits = s.view(np.int64).copy()
    inexact = (e != 0) & ((bits & 1) == 0)
    step = np.where(np.signbit(e) == np.signbit(s), 1, -1).astype(np.int64)
    bits = np.where(inexact, bits + step, bits)
    return bits.view(np.float64).astype(np.float32)


def _bitlength_minus1(n):
    """floor(log2(n)) for integer n >= 1, exact (exponent extraction)."""
    _, e = np.frexp(n.astype(np.float64))  # exact for n < 2**53
    return e.astype(np.int32) - 1


def log_odd24(n):
    """Natural log of ``u = n * 2**-24`` for odd integers ``0 < n < 2**24``, in float32.

    This is the logarithm used by the Box--Muller step.  Accurate to about one
    float32 ulp (tested exhaustively over all 2**23 inputs).

    Parameters
    ----------
    n : array_like of int
        Odd integers in ``[1, 2**24)`` (the numerators of the uniforms).

    Returns
    -------
    numpy.ndarray of float32
        ``ln(n * 2**-24)`` (always negative).
    """
    n = np.asarray(n, dtype=np.int64)
    e = _bitlength_minus1(n)  # n = m * 2**e, m in [1, 2)
    m = np.ldexp(n.astype(np.float32), -e).astype(np.float32)  # exact
    big = m > SQRT2
    m = np.where(big, m * f32(0.5), m).astype(np.float32)  # exact
    e = e + big
    f = (m - f32(1.0)).astype(np.float32)  # exact (Sterbenz)
    s = (f / (f32(2.0) + f)).astype(np.float32)
    s2 = (s * s).astype(np.float32)
    c3, c5, c7, c9 = LOG_COEFFS
    p = fma32(fma32(fma32(c9, s2, c7), s2, c5), s2, c3)
    t = (s + s).astype(np.float32)
    lm = fma32((t * s2).astype(np.float32), p, t)
    E = (e - 24).astype(np.float32)
    return fma32(E, LN2_HI, fma32(E, LN2_LO, lm))


def sincos2pi_odd24(n):
    """``(sin 2*pi*u, cos 2*pi*u)`` for ``u = n * 2**-24``, n odd in ``[1, 2**24)``.

    The angle is reduced exactly with integer arithmetic to ``u = q/4 + r`` with
    ``|r| <= 1/8`` and quadrant ``q``; fixed polynomials in ``r`` then give
    sin and cos, and the quadrant swaps / negates them exactly.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray) of float32
    """
    n = np.asarray(n, dtype=np.int64)
    q = (n + (1 << 21)) >> 22  # round(4u); n odd so never a tie
    r = np.ldexp((n - (q << 22)).astype(np.float32), -24).astype(np.float32)  # exact
    r2 = (r * r).astype(np.float32)
    s1, s3, s5, s7, s9 = SIN_COEFFS
    c2, c4, c6, c8, c10 = COS_COEFFS
    ps = fma32(fma32(fma32(fma32(s9, r2, s7), r2, s5), r2, s3), r2, s1)
    S = (r * ps).astype(np.float32)
    C = fma32(fma32(fma32(fma32(fma32(c10, r2, c8), r2, c6), r2, c4), r2, c2), r2, f32(1.0))
    q = q & 3
    sin = np.select([q == 0, q == 1, q == 2], [S, C, -S], -C).astype(np.float32)
    cos = np.select([q == 0, q == 1, q == 2], [C, -S, -C], S).astype(np.float32)
    return sin, cos


def uniform_from_word(x):
    """Map uint32 words to float32 uniforms ``(2*(x >> 9) + 1) * 2**-24`` in (0, 1)."""
    n = (np.asarray(x, dtype=np.uint32) >> np.uint32(9)).astype(np.int64) * 2 + 1
    return np.ldexp(n.astype(np.float32), -24).astype(np.float32)


def odd24_from_word(x):
    """The odd numerator ``n = 2*(x >> 9) + 1`` of the uniform of word ``x``."""
    return (np.asarray(x, dtype=np.uint32) >> np.uint32(9)).astype(np.int64) * 2 + 1


def box_muller_words(w_radius, w_angle):
    """Two standard normals from two uint32 words (Box--Muller, fastpoly's bits).

    ``z0 = sqrt(-2 ln u1) * cos(2 pi u2)``, ``z1 = sqrt(-2 ln u1) * sin(2 pi u2)``
    with ``u1 = uniform(w_radius)`` and ``u2 = uniform(w_angle)``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray) of float32
    """
    L = log_odd24(odd24_from_word(w_radius))
    rad = np.sqrt((f32(-2.0) * L).astype(np.float32)).astype(np.float32)
    sin, cos = sincos2pi_odd24(odd24_from_word(w_angle))
    return (rad * cos).astype(np.float32), (rad * sin).astype(np.float32)
