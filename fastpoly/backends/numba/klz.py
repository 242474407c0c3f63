"""Bit-parallel complexity kernels on packed keys (Numba): LZ76 phrase counts, T and critical inputs.

LZ76 (Kaspar--Schuster, the anchors' ``KC_LZ``) on the packed bits, without unpacking a
character.  With ``x`` the string (bit ``j`` = character ``j``), a phrase starting at ``l`` is
as long as the longest match of ``x[l:]`` against a copy starting at some ``i < l``.  All start
positions ``i`` are tracked at once as one bit mask ``M`` (bit ``i`` set while
``x[i:i+k] == x[l:l+k]``); one step ``M &= (x >> k) ^ (x[l+k] - 1)`` extends every candidate
by one character, and the phrase ends at the first ``k`` where ``M`` is empty.  The steps of
all phrases add up to the string length, so a 128-bit string takes 2 x 128 steps of a few
word operations (forward and reversed).  Exactly the reference's phrase count on every
string (see ``tests/test_klz.py``); ``kernels/klz.cu`` is the same algorithm for CUDA.

For Boolean inputs (``n = 2**d``), the critical inputs are ``OR_j (x XOR flip_j(x))`` where
``flip_j`` swaps the rows that differ in input bit ``j``: within a word for ``j < 6``, whole
words for ``j >= 6``.
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.numba.jit import jit, pjit, prange

__all__ = ["phrase_sums", "complexity_ints"]

_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_M8 = np.uint64(0x00FF00FF00FF00FF)
_M16 = np.uint64(0x0000FFFF0000FFFF)
_M32 = np.uint64(0x00000000FFFFFFFF)
_H01 = np.uint64(0x0101010101010101)


@jit
def _bitrev64(x):
    x = ((x >> np.uint64(1)) & _M1) | ((x & _M1) << np.uint64(1))
    x = ((x >> np.uint64(2)) & _M2) | ((x & _M2) << np.uint64(2))
    x = ((x >> np.uint64(4)) & _M4) | ((x & _M4) << np.uint64(4))
    x = ((x >> np.uint64(8)) & _M8) | ((x & _M8) << np.uint64(8))
    x = ((x >> np.uint64(16)) & _M16) | ((x & _M16) << np.uint64(16))
    return (x >> np.uint64(32)) | (x << np.uint64(32))


@jit
def _popcount64(x):
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return np.int64((x * _H01) >> np.uint64(56))


@jit
def _shr128(lo, hi, s):
    """(lo, hi) >> s for 0 <= s < 128."""
    if s == 0:
        return lo, hi
    if s < 64:
        us = np.uint64(s)
        return (lo >> us) | (hi << np.uint64(64 - s)), hi >> us
    return hi >> np.uint64(s - 64), _ZERO


@jit
def _phrases128(x0, x1, n):
    """LZ76 phrase count of the n-bit string (x0, x1), 2 <= n <= 128 (bits >= n are zero)."""
    c = 1
    l = 1
    z0 = (x0 >> _ONE) | (x1 << np.uint64(63))  # x >> l, kept up to date as l grows
    z1 = x1 >> _ONE
    while True:
        rem = n - l
        if l >= 64:
            m0 = _ALL
            m1 = _ALL if l == 128 else ((_ONE << np.uint64(l - 64)) - _ONE)
        else:
            m0 = (_ONE << np.uint64(l)) - _ONE
            m1 = _ZERO
        y0 = x0
        y1 = x1
        k = 0
        # two characters per iteration: M_{k+1} = M_k & (y_k ^ t_k), y_{k+1} = y_k >> 1
        while k + 2 <= rem:
            t = (z0 & _ONE) - _ONE  # all ones where the next character is 0
            u = ((z0 >> _ONE) & _ONE) - _ONE
            a0 = m0 & (y0 ^ t)
            a1 = m1 & (y1 ^ t)
            y0 = (y0 >> _ONE) | (y1 << np.uint64(63))
            y1 >>= _ONE
            b0 = a0 & (y0 ^ u)
            b1 = a1 & (y1 ^ u)
            if (b0 | b1) == _ZERO:
                if (a0 | a1) != _ZERO:
                    k += 1
                    z0 = (z0 >> _ONE) | (z1 << np.uint64(63))
                    z1 >>= _ONE
                break
            m0 = b0
            m1 = b1
            y0 = (y0 >> _ONE) | (y1 << np.uint64(63))
            y1 >>= _ONE
            z0 = (z0 >> np.uint64(2)) | (z1 << np.uint64(62))
            z1 >>= np.uint64(2)
            k += 2
        else:
            if k < rem:  # one character left
                t = (z0 & _ONE) - _ONE
                if ((m0 & (y0 ^ t)) | (m1 & (y1 ^ t))) != _ZERO:
                    k += 1
                    z0 = (z0 >> _ONE) | (z1 << np.uint64(63))
                    z1 >>= _ONE
        c += 1
        if k == rem:
            break
        # the phrase is k + 1 characters: skip the mismatching one too
        l += k + 1
        if l >= n:
            break
        z0 = (z0 >> _ONE) | (z1 << np.uint64(63))
        z1 >>= _ONE
    return c


@jit
def _bit(x, pos):
    return (x[pos >> 6] >> np.uint64(pos & 63)) & _ONE


@jit
def _phrases_words(x, n, m):
    """LZ76 phrase count of the n-bit string in words ``x`` (any length); ``m`` is scratch (len(x))."""
    W = x.shape[0]
    c = 1
    l = 1
    while True:
        rem = n - l
        nw = (l + 63) >> 6
        for w in range(nw):
            m[w] = _ALL
        if l & 63:
            m[nw - 1] = (_ONE << np.uint64(l & 63)) - _ONE
        k = 0
        while k < rem:
            t = _bit(x, l + k) - _ONE
            q = k >> 6
            r = k & 63
            live = _ZERO
            for w in range(nw):
                lo = x[w + q] if w + q < W else _ZERO
                if r:
                    hi = x[w + q + 1] if w + q + 1 < W else _ZERO
                    y = (lo >> np.uint64(r)) | (hi << np.uint64(64 - r))
                else:
                    y = lo
                m[w] &= y ^ t
                live |= m[w]
            if live == _ZERO:
                break
            k += 1
        c += 1
        if k == rem:
            break
        l += k + 1
        if l >= n:
            break
    return c


@jit
def _reverse_words(x, n, out):
    W = x.shape[0]
    for w in range(W):
        out[w] = _ZERO
    for j in range(n):
        if _bit(x, j):
            p = n - 1 - j
            out[p >> 6] |= _ONE << np.uint64(p & 63)


@jit
def _ones_words(x, W):
    t = 0
    for w in range(W):
        t += _popcount64(x[w])
    return t


@jit
def _phrase_sum_row(keys, r, n, scratch, rev, m):
    """c(s) + c(reversed s) of row r, or -1 for a constant string; also returns T."""
    W = keys.shape[1]
    t = _ones_words(keys[r], W)
    if t == 0 or t == n:
        return -1, t
    if W == 1:
        x0 = keys[r, 0]
        rv = _bitrev64(x0) >> np.uint64(64 - n)
        return _phrases128(x0, _ZERO, n) + _phrases128(rv, _ZERO, n), t
    if W == 2:
        x0 = keys[r, 0]
        x1 = keys[r, 1]
        r0, r1 = _shr128(_bitrev64(x1), _bitrev64(x0), 128 - n)
        return _phrases128(x0, x1, n) + _phrases128(r0, r1, n), t
    for w in range(W):
        scratch[w] = keys[r, w]
    _reverse_words(scratch, n, rev)
    return _phrases_words(scratch, n, m) + _phrases_words(rev, n, m), t


@jit
def _critical_row(keys, r, d):
    """Number of Boolean inputs (n = 2**d rows) with a Hamming-1 neighbour of different output."""
    W = keys.shape[1]
    total = 0
    for w in range(W):
        x = keys[r, w]
        crit = _ZERO
        if d >= 1:
            crit |= x ^ (((x >> np.uint64(1)) & _M1) | ((x & _M1) << np.uint64(1)))
        if d >= 2:
            crit |= x ^ (((x >> np.uint64(2)) & _M2) | ((x & _M2) << np.uint64(2)))
        if d >= 3:
            crit |= x ^ (((x >> np.uint64(4)) & _M4) | ((x & _M4) << np.uint64(4)))
        if d >= 4:
            crit |= x ^ (((x >> np.uint64(8)) & _M8) | ((x & _M8) << np.uint64(8)))
        if d >= 5:
            crit |= x ^ (((x >> np.uint64(16)) & _M16) | ((x & _M16) << np.uint64(16)))
        if d >= 6:
            crit |= x ^ ((x >> np.uint64(32)) | (x << np.uint64(32)))
        for j in range(6, d):
            crit |= x ^ keys[r, w ^ (1 << (j - 6))]
        if d < 6:
            crit &= (_ONE << np.uint64(1 << d)) - _ONE
        total += _popcount64(crit)
    return total


@pjit
def _sums_kernel(keys, n, out):
    K = keys.shape[0]
    W = keys.shape[1]
    n_chunks = (K + 1023) // 1024
    for ch in prange(n_chunks):
        scratch = np.zeros(W, np.uint64)
        rev = np.zeros(W, np.uint64)
        m = np.zeros(W, np.uint64)
        for r in range(ch * 1024, min(K, ch * 1024 + 1024)):
            s, _ = _phrase_sum_row(keys, r, n, scratch, rev, m)
            out[r] = s


@pjit
def _ints_kernel(keys, n, d, sums, ones, crit):
    K = keys.shape[0]
    W = keys.shape[1]
    n_chunks = (K + 1023) // 1024
    for ch in prange(n_chunks):
        scratch = np.zeros(W, np.uint64)
        rev = np.zeros(W, np.uint64)
        m = np.zeros(W, np.uint64)
        for r in range(ch * 1024, min(K, ch * 1024 + 1024)):
            s, t = _phrase_sum_row(keys, r, n, scratch, rev, m)
            sums[r] = s
            ones[r] = t
            if d > 0:
                crit[r] = _critical_row(keys, r, d)


def phrase_sums(keys, n):
    """``c(s) + c(reversed s)`` of every key (int64), ``-1`` for constant strings.

    Parameters
    ----------
    keys : uint64 array (K, W), C-contiguous, bits ``>= n`` zero
    n : int
        String length, ``2 <= n <= 64 * W``.
    """
    keys = np.ascontiguousarray(keys, np.uint64)
    out = np.empty(keys.shape[0], np.int64)
    if keys.shape[0]:
        _sums_kernel(keys, int(n), out)
    return out


def complexity_ints(keys, n, boolean_d=0):
    """Integer complexity data of every key in one pass: ``(phrase sums, ones, critical count)``.

    ``critical count`` (inputs with a Hamming-1 neighbour of different output) is computed only
    for ``boolean_d > 0`` (keys over all ``2**boolean_d`` Boolean inputs); zeros otherwise.
    """
    keys = np.ascontiguousarray(keys, np.uint64)
    K = keys.shape[0]
    sums = np.empty(K, np.int64)
    ones = np.empty(K, np.int64)
    crit = np.zeros(K, np.int64)
    if K:
        _ints_kernel(keys, int(n), int(boolean_d), sums, ones, crit)
    return sums, ones, crit
