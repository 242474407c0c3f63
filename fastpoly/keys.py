"""Function keys: packing output bits into uint64 words, and key <-> string conversions.

Convention (REFERENCE.md §2): bit ``i`` of a key is the output on input row ``i``
(of the key's rows); word ``w`` holds rows ``64w .. 64w+63`` at bit ``i mod 64``.
The canonical order of keys is as big integers (word ``W-1`` most significant).
"""
from __future__ import annotations

import numpy as np

__all__ = ["pack_bits", "unpack_bits", "key_to_hex", "hex_to_key", "key_to_bits", "bits_to_key",
           "sort_order", "as_key"]


def pack_bits(bits):
    """Pack a boolean array ``(..., n)`` into uint64 words ``(..., ceil(n/64))``, bit i -> word i//64, bit i%64."""
    bits = np.asarray(bits, dtype=bool)
    n = bits.shape[-1]
    W = (n + 63) // 64
    pad = W * 64 - n
    if pad:
        bits = np.concatenate([bits, np.zeros(bits.shape[:-1] + (pad,), bool)], axis=-1)
    by = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(by).view("<u8").astype(np.uint64, copy=False).reshape(bits.shape[:-1] + (W,))


def unpack_bits(keys, n):
    """Inverse of :func:`pack_bits`: ``(..., W)`` uint64 -> ``(..., n)`` uint8 of 0/1."""
    keys = np.ascontiguousarray(np.asarray(keys, dtype=np.uint64)).astype("<u8")
    by = keys.view(np.uint8).reshape(keys.shape[:-1] + (keys.shape[-1] * 8,))
    return np.unpackbits(by, axis=-1, bitorder="little")[..., :n]


def key_to_hex(key, n_bits):
    """Big-integer hex string of one key (``ceil(n_bits/4)`` digits, bit 0 = row 0 = least significant)."""
    key = np.asarray(key, dtype=np.uint64).reshape(-1)
    v = 0
    for w in key[::-1]:
        v = (v << 64) | int(w)
    return format(v, "0{}x".format(max(1, (n_bits + 3) // 4)))


def hex_to_key(s, n_bits):
    """Parse a hex key (as printed by :func:`key_to_hex`) into uint64 words."""
    s = s.strip().lower()
    if s.startswith("0x"):
        s = s[2:]
    try:
        v = int(s, 16)
    except ValueError:
        raise ValueError(f"not a hexadecimal key: {s!r}") from None
    if v >> n_bits:
        raise ValueError(f"hex key {s!r} has bits beyond the {n_bits} rows")
    W = (n_bits + 63) // 64
    return np.array([(v >> (64 * w)) & (2**64 - 1) for w in range(W)], dtype=np.uint64)


def key_to_bits(key, n_bits):
    """String form: character ``i`` = output on row ``i`` ('0'/'1')."""
    return "".join("1" if b else "0" for b in unpack_bits(np.asarray(key, np.uint64)[None, :], n_bits)[0])


def bits_to_key(s, n_bits):
    """Inverse of :func:`key_to_bits`."""
    if len(s) != n_bits or set(s) - {"0", "1"}:
        raise ValueError(f"a bit string key must have {n_bits} characters of 0/1, got {len(s)}")
    return pack_bits(np.frombuffer(s.encode(), np.uint8) == ord("1"))


def as_key(key, n_bits):
    """Accept words (array), a Python int, a hex string or a 0/1 string of length ``n_bits``."""
    W = (n_bits + 63) // 64
    if isinstance(key, str):
        if len(key) == n_bits and set(key) <= {"0", "1"} and n_bits > 1:
            return bits_to_key(key, n_bits)
        return hex_to_key(key, n_bits)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return hex_to_key(format(int(key), "x"), n_bits)
    arr = np.asarray(key, dtype=np.uint64).reshape(-1)
    if arr.size != W:
        raise ValueError(f"a key has {W} uint64 words, got {arr.size}")
    return arr


def sort_order(keys):
    """Indices that sort keys ``(K, W)`` as big integers (word W-1 most significant)."""
    keys = np.asarray(keys)
    if keys.shape[1] == 1:
        return np.argsort(keys[:, 0], kind="stable")
    return np.lexsort(keys.T)
