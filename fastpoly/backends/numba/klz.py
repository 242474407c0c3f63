"""Bit-parallel complexity kernels on packed keys (Numba): LZ76 phrase counts, T and critical inputs.

LZ76 (Kaspar--Schuster, the anchors' ``KC_LZ``) on the packed bits, without unpacking a
character.  With ``x`` the string (bit ``j`` = character ``j``), the phrase starting at ``l``
is one character longer than the longest match of ``x[l:]`` against a copy starting at some
``i < l`` (or it ends with the string).  All copies are tracked at once as a bit mask ``F``:
after ``k`` matched characters, bit ``i + k`` of ``F`` is set for every live copy ``i``, so
``F`` starts as the ``l`` low bits and the character ``b = x[l + k]`` extends it by
``F <- (F & X_b) << 1`` (``X_1 = x``, ``X_0 = ~x``).

Pattern masks, built once per string, take several characters at a time: ``A_s[p]``
(``s = 1..4``, ``p < 2**s``) holds the positions ``j`` with ``x[j + t] == bit t of p`` for all
``t < s`` (``A_s`` from ``A_{s-1}`` by one AND each), so ``(F & A_4[p]) << 4`` extends every
live copy by the four characters ``p``.  One *step* reads the next 12 characters ``v`` of the
phrase (three nibbles ``v0, v1, v2``, straight from the words) and computes
``t = F & A_4[v0]``, ``u = (t << 4) & A_4[v1]``, ``y = (u << 4) & A_4[v2]``.  If ``y`` is not
empty the phrase goes on with ``F = y << 4`` (about 1% of the phrases of random strings);
otherwise the phrase ends inside the 12 characters and its match length is exact from
monotone indicators: with ``z`` the number of non-empty masks among ``t, u`` and ``B`` the
live copies before the first failing nibble (``F``, ``t << 4`` or ``u << 4``, picked by index
``z`` from a memory slot rather than by a branch), ``k = 4z + [B & A_1[q]] + [B & A_2[q]] +
[B & A_3[q]]`` (``[m]``: 1 if the mask ``m`` is not empty) with ``q`` that nibble.  Since
``A_s[p]`` is a subset of ``A_{s-1}[p mod 2**(s-1)]``, the true indicators form a prefix;
those that read characters past ``n`` (whatever those bits hold) only count matches that
run to the end of the string, so ``k`` is exact whenever ``l + k < n``, and ``l + k >= n``
means the string is done.  The next phrase starts at ``l + k + 1`` with ``F`` its low bits
(from a table).  The masks have 128 bits (two words); while every live copy and its
12-character extension stay below bit 64 (phrase position ``<= 52``, or ``n <= 64``), a
one-word step runs instead.

The steps of one string form a serial chain (a phrase starts where the last one ended), so
each chunk of rows runs two strings interleaved in one loop: lane A walks the forward
strings, lane B the reversed ones, each moving on to its next row when its string ends.  The
first phrases of a string come from a table over its first :data:`PREFIX_BITS` characters
(the phrases decided inside them and where the first undecided one starts).  The phrase
counts equal the reference's on every string (``tests/analysis/test_klz.py``).  Strings longer than
128 bits (``W > 2``) take the one-character mask loop over any number of words
(``_phrases_words``); ``kernels/klz.cu`` computes the same counts on the GPU with the
one-character scheme.  Bits ``>= n`` of a key are ignored.

For Boolean inputs (``n = 2**d``), the critical inputs are ``OR_j (x XOR flip_j(x))`` where
``flip_j`` swaps the rows that differ in input bit ``j``: within a word for ``j < 6``, whole
words for ``j >= 6``.
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.numba.bits import popcount64
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
_U2 = np.uint64(2)
_U3 = np.uint64(3)
_U4 = np.uint64(4)
_U7 = np.uint64(7)
_U8 = np.uint64(8)
_U15 = np.uint64(15)
_U60 = np.uint64(60)
_U63 = np.uint64(63)

#: per-string scratch in words: A_1 at 0 (2 masks x 2 words), A_2 at 4, A_3 at 12, A_4 at 28,
#: the string at 60..61 (+ a zero word), the three step bases at 64..69
_LANE = 72
_A2 = np.uint64(4)
_A3 = np.uint64(12)
_A4 = np.uint64(28)
_XS = np.uint64(60)
_BASE = np.uint64(64)
_LANE_B = np.uint64(_LANE)

#: first characters of every string whose phrases come from a table
PREFIX_BITS = 12


def _low_masks():
    """Words ``2l, 2l + 1`` = the 128-bit mask of the ``l`` low bits, ``l = 0..143``.

    A step ends a phrase at ``l <= pos + 13 <= n + 12`` (its count is not clipped to the string:
    any count reaching past ``n`` ends the string all the same).
    """
    t = np.zeros(2 * 144, np.uint64)
    for l in range(144):
        v = (1 << min(l, 128)) - 1
        t[2 * l] = v & 0xFFFFFFFFFFFFFFFF
        t[2 * l + 1] = v >> 64
    return t


_LOW = _low_masks()


@jit
def _bitrev64(x):
    x = ((x >> np.uint64(1)) & _M1) | ((x & _M1) << np.uint64(1))
    x = ((x >> np.uint64(2)) & _M2) | ((x & _M2) << np.uint64(2))
    x = ((x >> np.uint64(4)) & _M4) | ((x & _M4) << np.uint64(4))
    x = ((x >> np.uint64(8)) & _M8) | ((x & _M8) << np.uint64(8))
    x = ((x >> np.uint64(16)) & _M16) | ((x & _M16) << np.uint64(16))
    return (x >> np.uint64(32)) | (x << np.uint64(32))



@jit
def _reverse128(x0, x1, n):
    """The n-bit string (x0, x1) reversed (2 <= n <= 128; bits >= n are dropped)."""
    sh = 128 - n
    r1 = _bitrev64(x0)
    r0 = _bitrev64(x1)
    if sh >= 64:
        return r1 >> np.uint64(sh - 64), _ZERO
    if sh > 0:
        return (r0 >> np.uint64(sh)) | (r1 << np.uint64(64 - sh)), r1 >> np.uint64(sh)
    return r0, r1


@jit
def _build_prefix_table(m):
    """The phrases decided by every m-bit prefix, as uint16 ``c | l << 8``.

    The parse of any string longer than ``m`` that starts with the prefix has ``c`` phrases
    before position ``l`` and a phrase starting at ``l`` (the first phrase not ended by a
    mismatch inside the prefix).
    """
    out = np.empty(1 << m, np.uint16)
    for v in range(1 << m):
        c = 1
        l = 1
        while l < m:
            best = 0
            for i in range(l):
                k = 0
                while l + k < m and ((v >> (i + k)) & 1) == ((v >> (l + k)) & 1):
                    k += 1
                best = max(best, k)
            if l + best >= m:  # a copy reaches the end of the prefix: undecided here
                break
            c += 1
            l += best + 1
        out[v] = c | (l << 8)
    return out


_PREFIX: list[np.ndarray] = []


def prefix_table() -> np.ndarray:
    """The phrase table over the first :data:`PREFIX_BITS` characters (uint16, built once).

    Returns
    -------
    uint16 array (2**PREFIX_BITS,)
        Entry ``v``: ``c | l << 8`` -- any string longer than :data:`PREFIX_BITS` whose first
        characters are the bits of ``v`` has ``c`` phrases before position ``l`` and a phrase
        starting at ``l``.
    """
    if not _PREFIX:
        _PREFIX.append(_build_prefix_table(PREFIX_BITS))
    return _PREFIX[0]


@jit(inline="always")
def _init_lane(x0, x1, T, o, wide):
    """Pattern masks ``A_s[p]`` of the string (x0, x1) at ``T[o + 2 (2**s - 2 + p)]``, and the string.

    The high words (``+ 1``) are written only if ``wide``: one-word steps never read them.
    """
    T[o] = ~x0
    T[o + 2] = x0
    T[o + _BASE + _ONE] = _ZERO  # high words of the step bases: one-word steps leave them 0
    T[o + _BASE + _U3] = _ZERO
    T[o + _BASE + np.uint64(5)] = _ZERO
    if wide:
        T[o + 1] = ~x1
        T[o + 3] = x1
    for s in range(2, 5):
        us = np.uint64(s - 1)
        one0 = (x0 >> us) | (x1 << (np.uint64(64) - us))  # X_1 >> (s - 1): character j + s - 1
        zero0 = ~one0
        src = (1 << (s - 1)) - 2
        dst = (1 << s) - 2
        half = 1 << (s - 1)
        for q in range(half):
            a0 = T[o + 2 * (src + q)]
            T[o + 2 * (dst + q)] = a0 & zero0
            T[o + 2 * (dst + q + half)] = a0 & one0
        if wide:
            one1 = x1 >> us
            zero1 = (~x1) >> us
            for q in range(half):
                a1 = T[o + 2 * (src + q) + 1]
                T[o + 2 * (dst + q) + 1] = a1 & zero1
                T[o + 2 * (dst + q + half) + 1] = a1 & one1
    T[o + _XS] = x0
    T[o + _XS + _ONE] = x1
    T[o + _XS + _U2] = _ZERO


@jit(inline="always")
def _start_lane(x0, x1, n, T, o, ptab):
    """Set up lane ``o`` for the n-bit string (x0, x1): ``(pos, F low, F high, phrases so far)``."""
    _init_lane(x0, x1, T, o, n > 64)
    if n > PREFIX_BITS:
        e = ptab[x0 & np.uint64((1 << PREFIX_BITS) - 1)]
        l = np.int64(e >> 8)
        return l, _LOW[2 * l], _LOW[2 * l + 1], np.int64(e & 255)
    return 1, _ONE, _ZERO, 1


@jit(inline="always")
def _resolve(T, o, q, z, hit12):
    """Matched characters of a phrase that ends within its step: ``4 z`` + those of nibble ``q``.

    The copies live after the ``z`` full nibbles are the base at ``T[o + 64 + 2 z]``.
    """
    k = o + _BASE + (z << _ONE)
    b0 = T[k]
    b1 = T[k + _ONE]
    k1 = o + ((q & _ONE) << _ONE)
    k2 = o + _A2 + ((q & _U3) << _ONE)
    k3 = o + _A3 + ((q & _U7) << _ONE)
    i1 = np.uint64(((b0 & T[k1]) | (b1 & T[k1 + _ONE])) != _ZERO)
    i2 = np.uint64(((b0 & T[k2]) | (b1 & T[k2 + _ONE])) != _ZERO)
    i3 = np.uint64(((b0 & T[k3]) | (b1 & T[k3 + _ONE])) != _ZERO)
    return np.int64((z << _U2) + np.uint64(hit12) + i1 + i2 + i3)


@jit(inline="always")
def _step128(T, o, n, pos, f0, f1):
    """One step of the phrase being matched at ``pos`` with live copies ``F = (f0, f1)``.

    Returns ``(pos, f0, f1, ended)``: 12 characters further on with the phrase still going, or
    the start of the next phrase (``>= n`` when the string is done) and its copies.
    """
    v = (T[o + _XS + np.uint64(pos >> 6)] >> np.uint64(pos & 63)) | (
        (T[o + _XS + _ONE + np.uint64(pos >> 6)] << _ONE) << (_U63 - np.uint64(pos & 63)))
    i = o + _A4 + ((v & _U15) << _ONE)
    t0 = f0 & T[i]
    t1 = f1 & T[i + _ONE]
    s0 = t0 << _U4
    s1 = (t1 << _U4) | (t0 >> _U60)
    i = o + _A4 + (((v >> _U4) & _U15) << _ONE)
    u0 = s0 & T[i]
    u1 = s1 & T[i + _ONE]
    g0 = u0 << _U4
    g1 = (u1 << _U4) | (u0 >> _U60)
    i = o + _A4 + (((v >> _U8) & _U15) << _ONE)
    y0 = g0 & T[i]
    y1 = g1 & T[i + _ONE]
    hit12 = (y0 | y1) != _ZERO
    if hit12 and pos + 12 < n:
        return pos + 12, y0 << _U4, (y1 << _U4) | (y0 >> _U60), False
    T[o + _BASE] = f0
    T[o + _BASE + _ONE] = f1
    T[o + _BASE + _U2] = s0
    T[o + _BASE + _U3] = s1
    T[o + _BASE + _U4] = g0
    T[o + _BASE + np.uint64(5)] = g1
    z = np.uint64((t0 | t1) != _ZERO) + np.uint64((u0 | u1) != _ZERO)
    l = pos + _resolve(T, o, v >> (z << _U2), z, hit12) + 1
    return l, _LOW[np.uint64(l) << _ONE], _LOW[(np.uint64(l) << _ONE) + _ONE], True


@jit(inline="always")
def _step64(T, o, n, pos, f0):
    """:func:`_step128` while the masks fit one word (``pos <= 52`` or ``n <= 64``); ``f1 == 0``."""
    v = (T[o + _XS + np.uint64(pos >> 6)] >> np.uint64(pos & 63)) | (
        (T[o + _XS + _ONE + np.uint64(pos >> 6)] << _ONE) << (_U63 - np.uint64(pos & 63)))
    t0 = f0 & T[o + _A4 + ((v & _U15) << _ONE)]
    s0 = t0 << _U4
    u0 = s0 & T[o + _A4 + (((v >> _U4) & _U15) << _ONE)]
    g0 = u0 << _U4
    y0 = g0 & T[o + _A4 + (((v >> _U8) & _U15) << _ONE)]
    hit12 = y0 != _ZERO
    if hit12 and pos + 12 < n:
        return pos + 12, y0 << _U4, _ZERO, False
    T[o + _BASE] = f0  # the high words are still 0 (one-word steps come first in a string)
    T[o + _BASE + _U2] = s0
    T[o + _BASE + _U4] = g0
    z = np.uint64(t0 != _ZERO) + np.uint64(u0 != _ZERO)
    l = pos + _resolve(T, o, v >> (z << _U2), z, hit12) + 1
    return l, _LOW[np.uint64(l) << _ONE], _LOW[(np.uint64(l) << _ONE) + _ONE], True


@jit(inline="always")
def _step(T, o, n, lim, pos, f0, f1):
    """:func:`_step64` up to phrase position ``lim``, :func:`_step128` beyond."""
    if pos <= lim:
        return _step64(T, o, n, pos, f0)
    return _step128(T, o, n, pos, f0, f1)


@jit(inline="always")
def _row_words(keys, r, n):
    """Row r as (x0, x1) with the bits >= n cleared (W <= 2)."""
    W = keys.shape[1]
    x0 = keys[r, 0]
    x1 = keys[r, 1] if W == 2 else _ZERO
    if n < 64:
        x0 &= (_ONE << np.uint64(n)) - _ONE
    if n <= 64:
        x1 = _ZERO
    elif n < 128:
        x1 &= (_ONE << np.uint64(n - 64)) - _ONE
    return x0, x1


@jit
def _phrase_sums_lanes(keys, lo, hi, n, T, ptab, sums):
    """``sums[lo:hi]`` = c(s) + c(reversed s) of rows lo..hi-1 (W <= 2), constants not special-cased.

    Lane A (``T[0:72]``) walks the forward strings, lane B (``T[72:144]``) the reversed ones;
    the two chains of steps are independent, so the CPU overlaps them.
    """
    lim = 52 if n > 64 else 64
    oa = _ZERO
    ob = _LANE_B
    for r in range(lo, hi):
        sums[r] = 0
    ra = lo
    rb = lo
    x0, x1 = _row_words(keys, lo, n)
    pa, fa0, fa1, ca = _start_lane(x0, x1, n, T, oa, ptab)
    y0, y1 = _reverse128(x0, x1, n)
    pb, fb0, fb1, cb = _start_lane(y0, y1, n, T, ob, ptab)
    while ra < hi or rb < hi:
        if ra < hi:
            pa, fa0, fa1, e = _step(T, oa, n, lim, pa, fa0, fa1)
            ca += 1 if e else 0
            if pa >= n:
                sums[ra] += ca
                ra += 1
                if ra < hi:
                    x0, x1 = _row_words(keys, ra, n)
                    pa, fa0, fa1, ca = _start_lane(x0, x1, n, T, oa, ptab)
        if rb < hi:
            pb, fb0, fb1, e = _step(T, ob, n, lim, pb, fb0, fb1)
            cb += 1 if e else 0
            if pb >= n:
                sums[rb] += cb
                rb += 1
                if rb < hi:
                    x0, x1 = _row_words(keys, rb, n)
                    y0, y1 = _reverse128(x0, x1, n)
                    pb, fb0, fb1, cb = _start_lane(y0, y1, n, T, ob, ptab)


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
def _copy_row(keys, r, n, out):
    """Row r into ``out`` with the bits >= n cleared."""
    W = keys.shape[1]
    for w in range(W):
        lo = 64 * w
        if n >= lo + 64:
            out[w] = keys[r, w]
        elif n > lo:
            out[w] = keys[r, w] & ((_ONE << np.uint64(n - lo)) - _ONE)
        else:
            out[w] = _ZERO


@jit
def _ones_row(keys, r, n):
    W = keys.shape[1]
    t = 0
    for w in range(W):
        lo = 64 * w
        if n >= lo + 64:
            t += popcount64(keys[r, w])
        elif n > lo:
            t += popcount64(keys[r, w] & ((_ONE << np.uint64(n - lo)) - _ONE))
    return t


@jit
def _critical_row(keys, r, d):
    """Number of Boolean inputs (n = 2**d rows) with a Hamming-1 neighbour of different output."""
    total = 0
    for w in range(1 if d < 6 else 1 << (d - 6)):
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
        total += popcount64(crit)
    return total


@pjit
def _lz_kernel(keys, n, d, ptab, sums, ones, crit):
    """Phrase sums of every row into ``sums`` (-1 for constant strings).

    T goes into ``ones`` and the critical counts into ``crit`` where those arrays are not
    empty (``crit`` needs ``d > 0``).
    """
    K = keys.shape[0]
    W = keys.shape[1]
    n_chunks = (K + 1023) // 1024
    for ch in prange(n_chunks):
        lo = ch * 1024
        hi = min(K, lo + 1024)
        x = np.empty(W, np.uint64)
        rev = np.empty(W, np.uint64)
        m = np.empty(W, np.uint64)
        if W <= 2:
            T = np.empty(2 * _LANE, np.uint64)
            _phrase_sums_lanes(keys, lo, hi, n, T, ptab, sums)
        for r in range(lo, hi):
            t = _ones_row(keys, r, n)
            if t == 0 or t == n:
                sums[r] = -1
            elif W > 2:
                _copy_row(keys, r, n, x)
                _reverse_words(x, n, rev)
                sums[r] = _phrases_words(x, n, m) + _phrases_words(rev, n, m)
            if ones.shape[0]:
                ones[r] = t
            if crit.shape[0] and d > 0:
                crit[r] = _critical_row(keys, r, d)


def _check(keys: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    keys = np.ascontiguousarray(keys, np.uint64)
    if keys.ndim != 2 or keys.shape[1] < 1:
        raise ValueError(f"keys must be a (K, W) array of uint64 words with W >= 1, got shape {keys.shape}")
    n = int(n)
    if not 2 <= n <= 64 * keys.shape[1]:
        raise ValueError(f"the string length must be 2 <= n <= 64 * W = {64 * keys.shape[1]}, got {n}")
    return keys, n


def phrase_sums(keys: np.ndarray, n: int) -> np.ndarray:
    """``c(s) + c(reversed s)`` of every key (int64), ``-1`` for constant strings.

    Parameters
    ----------
    keys : uint64 array (K, W)
        Bit ``j`` of the words is character ``j``; bits ``>= n`` are ignored.
    n : int
        String length, ``2 <= n <= 64 * W``.

    Returns
    -------
    int64 array (K,)

    Raises
    ------
    ValueError
        For keys that are not 2-D or a length outside ``2 .. 64 * W``.
    """
    keys, n = _check(keys, n)
    K = keys.shape[0]
    out = np.empty(K, np.int64)
    if K:
        _lz_kernel(keys, n, 0, prefix_table(), out, np.empty(0, np.int64), np.empty(0, np.int64))
    return out


def complexity_ints(keys: np.ndarray, n: int, boolean_d: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer complexity data of every key in one pass: ``(phrase sums, ones, critical count)``.

    ``critical count`` (inputs with a Hamming-1 neighbour of different output) is computed only
    for ``boolean_d > 0`` (keys over all ``2**boolean_d`` Boolean inputs, ``n == 2**boolean_d``);
    zeros otherwise.

    Parameters
    ----------
    keys : uint64 array (K, W)
        Bit ``j`` of the words is character ``j``; bits ``>= n`` are ignored.
    n : int
        String length, ``2 <= n <= 64 * W``.
    boolean_d : int
        Number of Boolean inputs, or 0.

    Returns
    -------
    tuple of three int64 arrays (K,)

    Raises
    ------
    ValueError
        For keys that are not 2-D, a length outside ``2 .. 64 * W`` or ``boolean_d > 0``
        with ``n != 2**boolean_d``.
    """
    keys, n = _check(keys, n)
    d = int(boolean_d)
    if d < 0 or (d > 0 and n != 1 << d):
        raise ValueError(f"boolean_d must be 0 or log2(n) = log2({n}), got {boolean_d}")
    K = keys.shape[0]
    sums = np.empty(K, np.int64)
    ones = np.empty(K, np.int64)
    crit = np.zeros(K, np.int64)
    if K:
        _lz_kernel(keys, n, d, prefix_table(), sums, ones, crit)
    return sums, ones, crit
