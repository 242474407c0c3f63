"""Compiled block codec (Numba, parallel over blocks) for sorted unique count records.

The byte format and the plain-Python reference (the test oracle) are in
:mod:`fastpoly.counts.codec`.  :func:`encode_blocks` and :func:`decode_blocks` produce and
consume exactly those bytes, block after block; every block is independent, so both run in
parallel over blocks (``prange``).

Numba does no bounds checks: the decoder checks every length against its section before it
reads (a corrupt buffer yields an error code, never a read outside the buffer); the caller
checks the block index against the buffer first (:func:`decode_blocks` does).
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.base import MAX_COUNT, CodecError
from fastpoly.backends.numba.jit import jit, pjit, prange

__all__ = ["encode_blocks", "decode_blocks"]

_U8 = np.uint64(8)
_U7 = np.uint64(7)
_LOW7 = np.uint64(0x7F)
_FF = np.uint64(0xFF)
_ZERO = np.uint64(0)
_ONE = np.uint64(1)

# error codes of the kernels (0: fine)
_E_ORDER, _E_COUNT = 1, 2
_E_KSHORT, _E_KLEN, _E_KMIN, _E_KZERO, _E_KOVER, _E_KLONG = 11, 12, 13, 14, 15, 16
_E_VSHORT, _E_VMIN, _E_VOVER, _E_VLONG, _E_CRANGE = 21, 22, 23, 24, 25
_MESSAGES = {
    _E_KSHORT: "keys section too short", _E_KLEN: "key length out of range", _E_KMIN: "key delta not minimal",
    _E_KZERO: "zero key delta (keys not strictly increasing)", _E_KOVER: "key overflows its words",
    _E_KLONG: "keys section too long", _E_VSHORT: "varint runs past the end of its section",
    _E_VMIN: "varint not minimal", _E_VOVER: "varint larger than 64 bits", _E_VLONG: "section too long",
    _E_CRANGE: "count out of range",
}


@jit
def _leb_len(v):
    n = 1
    while v >= np.uint64(128):
        v >>= _U7
        n += 1
    return n


@jit
def _delta(keys, i, d):
    """``d = keys[i] - keys[i - 1]`` as a W-word big integer; returns the final borrow (1: keys[i] < keys[i - 1])."""
    borrow = _ZERO
    for w in range(keys.shape[1]):
        a = keys[i, w]
        c = keys[i - 1, w]
        d[w] = a - c - borrow
        borrow = _ONE if (a < c or (a == c and borrow == _ONE)) else _ZERO
    return borrow


@jit
def _sig_bytes(d, W):
    """Significant bytes of the W-word big integer ``d`` (0 for zero): the key's length byte ``L``."""
    for w in range(W - 1, -1, -1):
        if d[w] != _ZERO:
            x = d[w]
            nb = 0
            while x != _ZERO:
                x >>= _U8
                nb += 1
            return 8 * w + nb
    return 0


@jit
def _block_sizes(keys, counts, first, lo, hi, d, sizes, b):
    """Section sizes of block ``b`` (records ``[lo, hi)``) into ``sizes[b]``; error code."""
    W = keys.shape[1]
    sk = 0
    sc = 0
    sf = 0
    for i in range(lo, hi):
        if i > 0:  # strictly increasing, also across block boundaries
            borrow = _delta(keys, i, d)
            nz = False
            for w in range(W):
                if d[w] != _ZERO:
                    nz = True
            if borrow == _ONE or not nz:
                sizes[b, 0] = i
                return _E_ORDER
        if i == lo:
            for w in range(W):
                d[w] = keys[i, w]
        sk += 1 + _sig_bytes(d, W)
        c = counts[i]
        if c < 1:
            sizes[b, 0] = i
            return _E_COUNT
        sc += _leb_len(np.uint64(c))
        sf += _leb_len(first[i])
    sizes[b, 0] = sk
    sizes[b, 1] = sc
    sizes[b, 2] = sf
    return 0


@pjit
def _sizes_kernel(keys, counts, first, B, sizes, status):
    n = keys.shape[0]
    W = keys.shape[1]
    nb = sizes.shape[0]
    for b in prange(nb):
        d = np.empty(W, np.uint64)
        status[b] = _block_sizes(keys, counts, first, b * B, min(n, (b + 1) * B), d, sizes, b)


@jit
def _put_leb(buf, p, v):
    while v >= np.uint64(128):
        buf[p] = np.uint8((v & _LOW7) | np.uint64(128))
        v >>= _U7
        p += 1
    buf[p] = np.uint8(v)
    return p + 1


@pjit
def _write_kernel(keys, counts, first, B, offsets, sizes, buf):
    n = keys.shape[0]
    W = keys.shape[1]
    nb = sizes.shape[0]
    for b in prange(nb):
        lo = b * B
        hi = min(n, lo + B)
        d = np.empty(W, np.uint64)
        p = offsets[b]
        for i in range(lo, hi):
            if i == lo:
                for w in range(W):
                    d[w] = keys[i, w]
            else:
                _delta(keys, i, d)
            L = _sig_bytes(d, W)
            buf[p] = np.uint8(L)
            p += 1
            for j in range(L):
                buf[p + j] = np.uint8((d[j // 8] >> np.uint64(8 * (j % 8))) & _FF)
            p += L
        for i in range(lo, hi):
            p = _put_leb(buf, p, np.uint64(counts[i]))
        for i in range(lo, hi):
            p = _put_leb(buf, p, first[i])


@jit
def _get_leb(buf, p, end, out, i):
    """Decode one varint at ``buf[p:end]`` into ``out[i]``; returns (new p, error code)."""
    v = _ZERO
    for j in range(10):
        if p >= end:
            return p, _E_VSHORT
        byte = np.uint64(buf[p])
        p += 1
        if j == 9 and byte > _ONE:
            return p, _E_VOVER
        v |= (byte & _LOW7) << np.uint64(7 * j)
        if byte < np.uint64(128):
            if j > 0 and byte == _ZERO:
                return p, _E_VMIN
            out[i] = v
            return p, 0
    return p, _E_VOVER


@jit
def _decode_block(buf, p, lk, lc, lf, lo, hi, keys, counts, first, d):
    W = keys.shape[1]
    end = p + lk
    for i in range(lo, hi):
        if p >= end:
            return _E_KSHORT
        L = np.int64(buf[p])
        p += 1
        if L > 8 * W or p + L > end:
            return _E_KLEN
        if L > 0 and buf[p + L - 1] == 0:
            return _E_KMIN
        if i > lo and L == 0:
            return _E_KZERO
        for w in range(W):
            d[w] = _ZERO
        for j in range(L):
            d[j // 8] |= np.uint64(buf[p + j]) << np.uint64(8 * (j % 8))
        p += L
        if i == lo:
            for w in range(W):
                keys[i, w] = d[w]
        else:
            carry = _ZERO
            for w in range(W):
                a = keys[i - 1, w]
                s = a + d[w]
                c1 = _ONE if s < a else _ZERO
                s2 = s + carry
                c2 = _ONE if s2 < s else _ZERO
                keys[i, w] = s2
                carry = c1 | c2
            if carry != _ZERO:
                return _E_KOVER
    if p != end:
        return _E_KLONG
    end = p + lc
    for i in range(lo, hi):
        p, e = _get_leb(buf, p, end, first, i)  # first[] as scratch: counts are checked below
        if e != 0:
            return e
        if first[i] > np.uint64(MAX_COUNT) or first[i] == _ZERO:
            return _E_CRANGE
        counts[i] = np.int64(first[i])
    if p != end:
        return _E_VLONG
    end = p + lf
    for i in range(lo, hi):
        p, e = _get_leb(buf, p, end, first, i)
        if e != 0:
            return e
    if p != end:
        return _E_VLONG
    return 0


@pjit
def _decode_kernel(buf, boff, lk, lc, lf, rstart, nrec, keys, counts, first, status):
    W = keys.shape[1]
    for b in prange(boff.shape[0]):
        d = np.empty(W, np.uint64)
        status[b] = _decode_block(buf, boff[b], lk[b], lc[b], lf[b], rstart[b], rstart[b] + nrec[b],
                                  keys, counts, first, d)


def encode_blocks(keys: np.ndarray, counts: np.ndarray, first: np.ndarray,
                  block: int) -> tuple[np.ndarray, np.ndarray]:
    """Encode records into consecutive blocks of ``block`` records.

    Returns
    -------
    buf : uint8 array
        The blocks, one after the other (each: keys, counts, first sections).
    index : int64 array (n_blocks, 4)
        Per block: records, bytes of the keys, counts and first sections.

    Raises
    ------
    ValueError
        If keys are not strictly increasing or a count is below 1.
    """
    keys = np.ascontiguousarray(keys, np.uint64)
    counts = np.ascontiguousarray(counts, np.int64)
    first = np.ascontiguousarray(first, np.uint64)
    n = keys.shape[0]
    if keys.ndim != 2 or counts.shape != (n,) or first.shape != (n,) or keys.shape[1] < 1:
        raise ValueError("keys (K, W), counts (K,) and first (K,) do not match")
    if keys.shape[1] > 31:
        raise ValueError("the codec stores keys of at most 31 words")
    block = int(block)
    if block < 1:
        raise ValueError("block must be >= 1")
    nb = -(-n // block)
    sizes = np.zeros((nb, 3), np.int64)
    status = np.zeros(nb, np.int64)
    _sizes_kernel(keys, counts, first, block, sizes, status)
    bad = np.flatnonzero(status)
    if bad.size:
        b = int(bad[0])
        i = int(sizes[b, 0])
        if status[b] == _E_ORDER:
            raise ValueError(f"keys are not strictly increasing at record {i}")
        raise ValueError(f"count {int(counts[i])} at record {i} is outside [1, 2**63 - 1]")
    tot = sizes.sum(axis=1)
    offsets = np.zeros(nb, np.int64)
    if nb:
        offsets[1:] = np.cumsum(tot)[:-1]
    buf = np.empty(int(tot.sum()), np.uint8)
    _write_kernel(keys, counts, first, block, offsets, sizes, buf)
    index = np.empty((nb, 4), np.int64)
    index[:, 0] = np.minimum(block, n - np.arange(nb, dtype=np.int64) * block)
    index[:, 1:] = sizes
    return buf, index


def decode_blocks(buf: np.ndarray, index: np.ndarray, n_words: int,
                  offset: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode consecutive blocks starting at byte ``offset`` of ``buf`` (see :func:`encode_blocks`).

    Raises
    ------
    CodecError
        If the index does not fit the buffer or any block is corrupt.
    """
    buf = np.ascontiguousarray(buf, np.uint8).reshape(-1)
    index = np.asarray(index, np.int64).reshape(-1, 4)
    W = int(n_words)
    if not 1 <= W <= 31:
        raise CodecError(f"bad number of key words {W}")
    if index.size and (index.min() < 0 or np.any(index[:, 0] == 0)):
        raise CodecError("block index holds negative lengths or empty blocks")
    tot = index[:, 1:].sum(axis=1)
    boff = int(offset) + np.concatenate([[0], np.cumsum(tot)[:-1]]).astype(np.int64) if index.shape[0] else \
        np.zeros(0, np.int64)
    if int(offset) < 0 or int(offset) + int(tot.sum()) > buf.shape[0]:
        raise CodecError("blocks run past the end of the data")
    nrec = np.ascontiguousarray(index[:, 0])
    rstart = np.concatenate([[0], np.cumsum(nrec)[:-1]]).astype(np.int64) if index.shape[0] else np.zeros(0, np.int64)
    n = int(nrec.sum())
    keys = np.empty((n, W), np.uint64)
    counts = np.empty(n, np.int64)
    first = np.empty(n, np.uint64)
    status = np.zeros(index.shape[0], np.int64)
    _decode_kernel(buf, boff, np.ascontiguousarray(index[:, 1]), np.ascontiguousarray(index[:, 2]),
                   np.ascontiguousarray(index[:, 3]), rstart, nrec, keys, counts, first, status)
    bad = np.flatnonzero(status)
    if bad.size:
        b = int(bad[0])
        raise CodecError(f"block {b}: {_MESSAGES.get(int(status[b]), 'corrupt')}")
    return keys, counts, first
