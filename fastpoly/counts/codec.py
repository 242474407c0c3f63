"""Block codec for sorted unique count records: the byte format and its plain-Python reference.

Records ``(keys (K, W) uint64, counts (K,) int64 >= 1, first (K,) uint64)`` with keys strictly
increasing as big integers (word ``W-1`` most significant) are cut into blocks of ``block``
records (the last one may be shorter).  Blocks are independent: each is encoded and decoded on
its own (the compiled codec, :mod:`fastpoly.backends.numba.codec`, runs over blocks in parallel).
A block is three sections, one after the other:

keys
    per record one length byte ``L`` (``0 <= L <= 8W``), then the ``L`` significant bytes,
    little-endian, of the *delta* to the previous key of the block (a W-word big integer,
    ``> 0``); the first record of a block stores its key itself (the delta to 0).  ``L`` is
    minimal: the last of the ``L`` bytes is not zero (``L == 0`` only for the key 0).
counts, first
    each value as an unsigned LEB128 varint (7 bits per byte, low groups first, high bit =
    "more bytes follow"), minimal (no trailing zero group); counts in ``[1, 2**63 - 1]``.

The length of each section (bytes) and the number of records of each block are kept by the
container (the counts file's block index, a run's block header), not in the block.

Why a length byte for keys and LEB128 for the rest: a delta of ``b`` bits costs
``1 + ceil(b / 8)`` bytes with a length byte and ``ceil(b / 7)`` as LEB128, equal at 56 bits;
deltas of sorted 128-bit keys are ~80-110 bits (length byte ~1.5 B/key smaller), counts and
first indices are small (LEB128 wins).

This module is the test oracle: straightforward Python integers, no tricks.
"""
from __future__ import annotations

import numpy as np

# the error and the largest count are shared with the compiled engine (backends may not import counts)
from fastpoly.backends.base import MAX_COUNT, CodecError

__all__ = ["CodecError", "MAX_COUNT", "block_bound", "encode_block_reference", "decode_block_reference",
           "leb128_len"]

def leb128_len(values: np.ndarray) -> np.ndarray:
    """Bytes of the LEB128 varint of each uint64 value (1..10)."""
    v = np.asarray(values, np.uint64)
    n = np.ones(v.shape, np.int64)
    for k in range(1, 10):
        n += v >= np.uint64(1 << (7 * k))
    return n


def block_bound(n_records: int, n_words: int) -> int:
    """Most bytes a block of ``n_records`` records of ``n_words`` words can take."""
    return int(n_records) * (1 + 8 * int(n_words) + 10 + 10)


def _leb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_block_reference(keys: np.ndarray, counts: np.ndarray, first: np.ndarray) -> tuple[bytes, bytes, bytes]:
    """The three sections ``(keys, counts, first)`` of one block.

    Raises
    ------
    ValueError
        If keys are not strictly increasing, a count is outside ``[1, 2**63 - 1]``.
    """
    keys = np.asarray(keys, np.uint64)
    W = keys.shape[1]
    ks, cs, fs = bytearray(), bytearray(), bytearray()
    prev = None
    for i in range(keys.shape[0]):
        k = sum(int(keys[i, w]) << (64 * w) for w in range(W))
        d = k if prev is None else k - prev
        if prev is not None and d <= 0:
            raise ValueError(f"keys are not strictly increasing at record {i}")
        L = (d.bit_length() + 7) // 8
        ks.append(L)
        ks += d.to_bytes(L, "little")
        prev = k
        c = int(counts[i])
        if not 1 <= c <= MAX_COUNT:
            raise ValueError(f"count {c} at record {i} is outside [1, 2**63 - 1]")
        cs += _leb(c)
        fs += _leb(int(first[i]))
    return bytes(ks), bytes(cs), bytes(fs)


def _read_leb(sec: bytes, p: int, what: str) -> tuple[int, int]:
    v = 0
    for j in range(10):
        if p >= len(sec):
            raise CodecError(f"{what}: varint runs past the end of its section")
        b = sec[p]
        p += 1
        v |= (b & 0x7F) << (7 * j)
        if not b & 0x80:
            if j and b == 0:
                raise CodecError(f"{what}: varint not minimal")
            if v >= 2**64:
                raise CodecError(f"{what}: varint larger than 64 bits")
            return v, p
    raise CodecError(f"{what}: varint longer than 10 bytes")


def decode_block_reference(sections: tuple[bytes, bytes, bytes], n: int,
                           n_words: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one block of ``n`` records (every byte checked).

    Raises
    ------
    CodecError
        If a section is too short or too long, or holds a value that the encoder never writes.
    """
    ksec, csec, fsec = (bytes(s) for s in sections)
    W = int(n_words)
    keys = np.zeros((n, W), np.uint64)
    counts = np.zeros(n, np.int64)
    first = np.zeros(n, np.uint64)
    p = 0
    k = 0
    for i in range(n):
        if p >= len(ksec):
            raise CodecError("keys section too short")
        L = ksec[p]
        p += 1
        if L > 8 * W or p + L > len(ksec):
            raise CodecError("key length out of range")
        if L and ksec[p + L - 1] == 0:
            raise CodecError("key delta not minimal")
        d = int.from_bytes(ksec[p:p + L], "little")
        p += L
        if i and d == 0:
            raise CodecError("zero key delta (keys not strictly increasing)")
        k = d if i == 0 else k + d
        if k >= 2 ** (64 * W):
            raise CodecError("key overflows its words")
        for w in range(W):
            keys[i, w] = (k >> (64 * w)) & (2**64 - 1)
    if p != len(ksec):
        raise CodecError("keys section too long")
    for sec, out, name in ((csec, counts, "counts"), (fsec, first, "first")):
        p = 0
        for i in range(n):
            v, p = _read_leb(sec, p, name)
            if name == "counts":
                if not 1 <= v <= MAX_COUNT:
                    raise CodecError("count out of range")
            out[i] = v
        if p != len(sec):
            raise CodecError(f"{name} section too long")
    return keys, counts, first
