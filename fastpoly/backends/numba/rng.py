"""Numba versions of fastpoly's random stream: Philox4x32-10 and the bit-exact normal transform.

Every function here reproduces its NumPy counterpart in :mod:`fastpoly.stream.rng` /
:mod:`fastpoly.stream.fmath` **bit for bit**: the same float32 operation sequence,
the same explicit fused multiply-adds (:func:`fastpoly.backends.numba.jit.fma`) and exact
bit manipulation.  The per-sample loops (:func:`philox_sample_words`,
:func:`normals_from_words`, :func:`uniform_pm1_from_words`) are branch-free so
LLVM vectorises them.
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.numba.jit import bits_to_f32, f32_to_bits, fma, jit
from fastpoly.stream.fmath import (
    COS_COEFFS,
    LN2_HI,
    LN2_LO,
    LOG_COEFFS,
    SIN_COEFFS,
    SQRT2,
)

__all__ = [
    "round_keys", "philox_block", "philox_sample_words", "log_odd24", "sincos2pi_odd24",
    "box_muller", "normals_from_words", "uniform_pm1_from_words", "philox_words_array",
    "normals_array", "log_odd24_array", "sincos2pi_odd24_array",
]

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_U9 = np.uint32(9)
_U1 = np.uint32(1)

_f32 = np.float32
_C3, _C5, _C7, _C9 = LOG_COEFFS
_S1, _S3, _S5, _S7, _S9 = SIN_COEFFS
_CC2, _CC4, _CC6, _CC8, _CC10 = COS_COEFFS
_LN2_HI = LN2_HI
_LN2_LO = LN2_LO
_SQRT2 = SQRT2
_ONE = _f32(1.0)
_TWO = _f32(2.0)
_HALF = _f32(0.5)
_MTWO = _f32(-2.0)
_ZERO = _f32(0.0)
_TWO_M24 = _f32(2.0**-24)
_TWO_M23 = _f32(2.0**-23)


def round_keys(seed):
    """The 10 Philox round keys of a stream, as a ``(10, 2)`` uint64 array (values < 2**32).

    Round ``r`` uses ``(k0 + r*W0, k1 + r*W1) mod 2**32`` with ``k = (lo32(seed), hi32(seed))``.
    """
    seed = int(seed)
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    return np.array(
        [[(k0 + r * _W0) & 0xFFFFFFFF, (k1 + r * _W1) & 0xFFFFFFFF] for r in range(10)],
        dtype=np.uint64,
    )


@jit(inline="always")
def _round(c0, c1, c2, c3, k0, k1):
    p0 = c0 * _M0
    p1 = c2 * _M1
    return (p1 >> _S32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> _S32) ^ c3 ^ k1, p0 & _MASK32


@jit(inline="always")
def philox_block(c0, c1, c2, c3, rk):
    """One Philox4x32-10 block.  Counter words and results are uint64 holding 32-bit values.

    Parameters
    ----------
    c0, c1, c2, c3 : uint64
        Counter words (< 2**32).
    rk : uint64 array (10, 2)
        Round keys from :func:`round_keys`.
    """
    for r in range(10):
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, rk[r, 0], rk[r, 1])
    return c0, c1, c2, c3


@jit(inline="always")
def philox_sample_words(rk, index, stream, n_blocks, out):
    """Words of ``n_blocks`` blocks of sample ``index`` into ``out[:4*n_blocks]`` (uint32).

    Counter of block ``j``: ``(j, stream, lo32(index), hi32(index))``.  The ten
    rounds are written out with the round keys in scalars so that LLVM
    vectorises the loop over blocks.
    """
    lo = np.uint64(index) & _MASK32
    hi = np.uint64(index) >> _S32
    st = np.uint64(stream)
    # masking tells LLVM the upper halves are zero: 32x32->64 multiplies (vpmuludq)
    m = _MASK32
    a0, b0, a1, b1 = rk[0, 0] & m, rk[0, 1] & m, rk[1, 0] & m, rk[1, 1] & m
    a2, b2, a3, b3 = rk[2, 0] & m, rk[2, 1] & m, rk[3, 0] & m, rk[3, 1] & m
    a4, b4, a5, b5 = rk[4, 0] & m, rk[4, 1] & m, rk[5, 0] & m, rk[5, 1] & m
    a6, b6, a7, b7 = rk[6, 0] & m, rk[6, 1] & m, rk[7, 0] & m, rk[7, 1] & m
    a8, b8, a9, b9 = rk[8, 0] & m, rk[8, 1] & m, rk[9, 0] & m, rk[9, 1] & m
    for j in range(n_blocks):
        c0, c1, c2, c3 = _round(np.uint64(j), st, lo, hi, a0, b0)
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, a1, b1)
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, a2, b2)
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, a3, b3)
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, a4, b4)
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, a5, b5)
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, a6, b6)
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, a7, b7)
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, a8, b8)
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, a9, b9)
        out[4 * j] = np.uint32(c0)
        out[4 * j + 1] = np.uint32(c1)
        out[4 * j + 2] = np.uint32(c2)
        out[4 * j + 3] = np.uint32(c3)


@jit(inline="always")
def log_odd24(n):
    """``ln(n * 2**-24)`` in float32 for odd ``n`` in ``[1, 2**24)`` (uint32); see :func:`fastpoly.stream.fmath.log_odd24`."""
    bits = f32_to_bits(np.float32(n))  # exact: n < 2**24
    e = np.int32((bits >> np.uint32(23)) & np.uint32(0xFF)) - np.int32(127)
    m = bits_to_f32(np.uint32((bits & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)))  # n * 2**-e, exact
    big = m > _SQRT2
    m = m * _HALF if big else m
    e = e + np.int32(1) if big else e
    f = m - _ONE
    s = f / (_TWO + f)
    s2 = s * s
    p = fma(fma(fma(_C9, s2, _C7), s2, _C5), s2, _C3)
    t = s + s
    lm = fma(t * s2, p, t)
    E = np.float32(e - np.int32(24))
    return fma(E, _LN2_HI, fma(E, _LN2_LO, lm))


@jit(inline="always")
def sincos2pi_odd24(n):
    """``(sin 2*pi*u, cos 2*pi*u)``, ``u = n * 2**-24``, n odd uint32; see :func:`fastpoly.stream.fmath.sincos2pi_odd24`."""
    ni = np.int32(n)
    q = (ni + np.int32(1 << 21)) >> np.int32(22)
    r = np.float32(ni - (q << np.int32(22))) * _TWO_M24  # exact
    r2 = r * r
    ps = fma(fma(fma(fma(_S9, r2, _S7), r2, _S5), r2, _S3), r2, _S1)
    S = r * ps
    C = fma(fma(fma(fma(fma(_CC10, r2, _CC8), r2, _CC6), r2, _CC4), r2, _CC2), r2, _ONE)
    q = q & np.int32(3)
    # quadrant: q=0 (S, C); 1 (C, -S); 2 (-S, -C); 3 (-C, S)
    swap = (q & np.int32(1)) != 0
    a = C if swap else S
    b = S if swap else C
    sin = -a if q >= np.int32(2) else a
    cos = -b if (q == np.int32(1) or q == np.int32(2)) else b
    return sin, cos


@jit(inline="always")
def box_muller(w_radius, w_angle):
    """Two normals ``(r cos, r sin)`` from two uint32 words; see :func:`fastpoly.stream.fmath.box_muller_words`."""
    n1 = ((w_radius >> _U9) << _U1) | _U1
    n2 = ((w_angle >> _U9) << _U1) | _U1
    L = log_odd24(n1)
    rad = np.sqrt(_MTWO * L)
    sin, cos = sincos2pi_odd24(n2)
    return rad * cos, rad * sin


@jit(inline="always")
def normals_from_words(words, n_pairs, out):
    """``out[2t], out[2t+1] = box_muller(words[2t], words[2t+1])`` for ``t < n_pairs``."""
    for t in range(n_pairs):
        z0, z1 = box_muller(words[2 * t], words[2 * t + 1])
        out[2 * t] = z0
        out[2 * t + 1] = z1


@jit(inline="always")
def uniform_pm1_from_words(words, count, out):
    """``out[p] = 2u - 1`` (float32, exact) of word ``p`` for ``p < count``."""
    for p in range(count):
        n = np.int32(((words[p] >> _U9) << _U1) | _U1) - np.int32(1 << 23)
        out[p] = np.float32(n) * _TWO_M23


# --- array entry points (tests, diagnostics) ----------------------------------------------


@jit
def _words_array(rk, indices, n_blocks, stream, out):
    for i in range(indices.shape[0]):
        philox_sample_words(rk, indices[i], stream, n_blocks, out[i])


def philox_words_array(seed, indices, n_blocks, stream=0):
    """Numba equivalent of :func:`fastpoly.stream.rng.stream_words` (uint32, ``(n, 4*n_blocks)``)."""
    idx = np.ascontiguousarray(indices, dtype=np.uint64).reshape(-1)
    out = np.empty((idx.size, 4 * n_blocks), np.uint32)
    _words_array(round_keys(seed), idx, int(n_blocks), int(stream), out)
    return out


@jit
def _normals_rows(words, out):
    for i in range(words.shape[0]):
        normals_from_words(words[i], words.shape[1] // 2, out[i])


def normals_array(words):
    """Normals of a uint32 word array ``(n, 2k)`` (pairs of words -> ``(r cos, r sin)``), float32."""
    w = np.ascontiguousarray(words, dtype=np.uint32)
    w2 = w.reshape(-1, w.shape[-1])
    out = np.empty(w2.shape, np.float32)
    _normals_rows(w2, out)
    return out.reshape(w.shape)


@jit
def _log_arr(n, out):
    for i in range(n.shape[0]):
        out[i] = log_odd24(n[i])


@jit
def _sincos_arr(n, s, c):
    for i in range(n.shape[0]):
        s[i], c[i] = sincos2pi_odd24(n[i])


def log_odd24_array(n):
    """Vectorised :func:`log_odd24` (uint32 odd numerators -> float32)."""
    n = np.ascontiguousarray(n, dtype=np.uint32)
    out = np.empty(n.shape, np.float32)
    _log_arr(n.reshape(-1), out.reshape(-1))
    return out


def sincos2pi_odd24_array(n):
    """Vectorised :func:`sincos2pi_odd24` -> ``(sin, cos)`` float32 arrays."""
    n = np.ascontiguousarray(n, dtype=np.uint32)
    s = np.empty(n.shape, np.float32)
    c = np.empty(n.shape, np.float32)
    _sincos_arr(n.reshape(-1), s.reshape(-1), c.reshape(-1))
    return s, c
