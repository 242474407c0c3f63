"""Function keys: packing output bits into uint64 words, and key <-> string conversions.

Convention (``docs/design.md#keys``): bit ``i`` of a key is the output on input row ``i``
(of the key's rows); word ``w`` holds rows ``64w .. 64w+63`` at bit ``i mod 64``.
The canonical order of keys is as big integers (word ``W-1`` most significant).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["pack_bits", "unpack_bits", "key_to_hex", "hex_to_key", "key_to_bits", "bits_to_key", "parse_key_text",
           "key_forms",
           "sort_order", "as_key", "CONVENTIONS", "msb_permutation", "keys_to_strings", "strings_to_keys",
           "convert_string"]


def pack_bits(bits: ArrayLike) -> np.ndarray:
    """Pack a boolean array ``(..., n)`` into uint64 words ``(..., ceil(n/64))``, bit i -> word i//64, bit i%64."""
    bits = np.asarray(bits, dtype=bool)
    n = bits.shape[-1]
    W = (n + 63) // 64
    pad = W * 64 - n
    if pad:
        bits = np.concatenate([bits, np.zeros(bits.shape[:-1] + (pad,), bool)], axis=-1)
    by = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(by).view("<u8").astype(np.uint64, copy=False).reshape(bits.shape[:-1] + (W,))


def unpack_bits(keys: ArrayLike, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``(..., W)`` uint64 -> ``(..., n)`` uint8 of 0/1."""
    keys = np.ascontiguousarray(np.asarray(keys, dtype=np.uint64)).astype("<u8")
    by = keys.view(np.uint8).reshape(keys.shape[:-1] + (keys.shape[-1] * 8,))
    return np.unpackbits(by, axis=-1, bitorder="little")[..., :n]


def key_to_hex(key: ArrayLike, n_bits: int) -> str:
    """Big-integer hex string of one key (``ceil(n_bits/4)`` digits, bit 0 = row 0 = least significant)."""
    key = np.asarray(key, dtype=np.uint64).reshape(-1)
    v = 0
    for w in key[::-1]:
        v = (v << 64) | int(w)
    return format(v, f"0{max(1, (n_bits + 3) // 4)}x")


def hex_to_key(s: str, n_bits: int) -> np.ndarray:
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


def key_to_bits(key: ArrayLike, n_bits: int) -> str:
    """String form: character ``i`` = output on row ``i`` ('0'/'1')."""
    return "".join("1" if b else "0" for b in unpack_bits(np.asarray(key, np.uint64)[None, :], n_bits)[0])


def bits_to_key(s: str, n_bits: int) -> np.ndarray:
    """Inverse of :func:`key_to_bits`."""
    if len(s) != n_bits or set(s) - {"0", "1"}:
        raise ValueError(f"a bit string key must have {n_bits} characters of 0/1, got {len(s)}")
    return pack_bits(np.frombuffer(s.encode(), np.uint8) == ord("1"))


_HEX = frozenset("0123456789abcdef")


def key_forms(n_bits: int) -> str:
    """The accepted text forms of a function on ``n_bits`` rows, for error messages."""
    digits = max(1, (int(n_bits) + 3) // 4)
    return (f"a 0/1 string of exactly {n_bits} characters (character i = row i), a hex key of exactly "
            f"{digits} digits, or 0x followed by at most {digits} hex digits (bit i = row i)")


def parse_key_text(text: str, n_bits: int, what: str = "a key") -> np.ndarray:
    """Parse a function given as text, without ambiguity, into uint64 key words.

    Accepted: a 0/1 string of exactly ``n_bits`` characters (character i = row i); a hex key
    of exactly ``ceil(n_bits/4)`` digits, as :func:`key_to_hex` prints it; or ``0x`` followed by
    hex digits (bit i = row i).  Anything else -- a shorter 0/1 string, a short hex key without
    ``0x`` -- is refused, so that a short 0/1 string is never read as a different function.

    Raises
    ------
    ValueError
        Naming ``what``, the accepted forms and their lengths.
    """
    t = str(text).strip()
    low = t.lower()
    digits = max(1, (int(n_bits) + 3) // 4)
    if low.startswith("0x"):
        if not low[2:] or set(low[2:]) - _HEX:
            raise ValueError(f"{what} must be {key_forms(n_bits)}; got {text!r}, which is not hexadecimal")
        try:
            return hex_to_key(low, n_bits)
        except ValueError:
            raise ValueError(f"{what} {text!r} has bits beyond the {n_bits} rows") from None
    if len(t) == n_bits and set(t) <= {"0", "1"}:
        return bits_to_key(t, n_bits)
    if len(low) == digits and low and not set(low) - _HEX:
        try:
            return hex_to_key(low, n_bits)
        except ValueError:
            raise ValueError(f"{what} {text!r} has bits beyond the {n_bits} rows") from None
    if t and set(t) <= {"0", "1"}:
        got = f"a 0/1 string of {len(t)} characters"
    elif low and not set(low) - _HEX:
        got = f"a hex string of {len(low)} digits without 0x"
    else:
        got = repr(text)
    raise ValueError(f"{what} must be {key_forms(n_bits)}; got {got}")


def as_key(key: Any, n_bits: int) -> np.ndarray:
    """Accept words (array), a Python int, or text in the forms of :func:`parse_key_text`."""
    W = (n_bits + 63) // 64
    if isinstance(key, str):
        return parse_key_text(key, n_bits)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return hex_to_key(format(int(key), "x"), n_bits)
    arr = np.asarray(key, dtype=np.uint64).reshape(-1)
    if arr.size != W:
        raise ValueError(f"a key has {W} uint64 words, got {arr.size}")
    return arr


def sort_order(keys: np.ndarray) -> np.ndarray:
    """Indices that sort keys ``(K, W)`` as big integers (word W-1 most significant)."""
    keys = np.asarray(keys)
    if keys.shape[1] == 1:
        return np.argsort(keys[:, 0], kind="stable")
    return np.lexsort(keys.T)


# --- string conventions of the anchor pipelines (docs/design.md#anchor-conventions; see fastpoly.counts.anchors) ---
CONVENTIONS = ("rows", "cpp", "python")


def msb_permutation(n_bits: int) -> np.ndarray:
    """Row order of the Python anchors' strings: character ``i`` is fastpoly row ``perm[i]``.

    The anchors list input ``i`` with bits ``format(i, '0db')`` (MSB first) for
    features ``x_0 .. x_{d-1}``; fastpoly row ``r`` has ``x_j = (r >> j) & 1``,
    so ``perm[i]`` is ``i`` with its ``d`` bits reversed.
    """
    d = int(n_bits).bit_length() - 1
    if n_bits < 2 or 2**d != n_bits:
        raise ValueError(f"MSB-first order needs 2**d rows, got {n_bits}")
    i = np.arange(n_bits)
    perm = np.zeros(n_bits, np.int64)
    for j in range(d):
        perm |= ((i >> (d - 1 - j)) & 1) << j
    return perm


def _perm(n_bits, convention):
    """Character ``c`` of a string in ``convention`` is fastpoly row ``perm[c]``."""
    if convention == "rows":
        return np.arange(n_bits)
    if convention == "cpp":
        return np.arange(n_bits)[::-1].copy()
    if convention == "python":
        return msb_permutation(n_bits)
    raise ValueError(f"unknown string convention {convention!r}; valid: {', '.join(CONVENTIONS)}")


def keys_to_strings(keys: ArrayLike, n_bits: int, convention: str = "rows") -> list[str]:
    """Keys ``(K, W)`` -> list of 0/1 strings in ``convention``."""
    keys = np.atleast_2d(np.asarray(keys, dtype=np.uint64))
    perm = _perm(int(n_bits), convention)
    out: list[str] = []
    for a in range(0, keys.shape[0], 1 << 15):
        bits = unpack_bits(keys[a:a + (1 << 15)], n_bits)[:, perm] + ord("0")
        raw = np.ascontiguousarray(bits.astype(np.uint8)).tobytes()
        out.extend(raw[i * n_bits:(i + 1) * n_bits].decode() for i in range(bits.shape[0]))
    return out


def strings_to_keys(strings: Iterable[str], convention: str = "rows") -> np.ndarray:
    """List of 0/1 strings in ``convention`` (all of one length) -> keys ``(K, W)`` uint64."""
    strings = list(strings)
    if not strings:
        raise ValueError("no strings given")
    n = len(strings[0])
    if any(len(s) != n for s in strings):
        raise ValueError("strings of different lengths")
    raw = np.frombuffer("".join(strings).encode("ascii", errors="replace"), np.uint8).reshape(len(strings), n)
    if np.any((raw != ord("0")) & (raw != ord("1"))):
        bad = int(np.flatnonzero(np.any((raw != ord("0")) & (raw != ord("1")), axis=1))[0])
        raise ValueError(f"string {bad} is not made of 0 and 1: {strings[bad][:40]!r}")
    perm = _perm(n, convention)
    bits = np.zeros_like(raw, dtype=bool)
    bits[:, perm] = raw == ord("1")
    return pack_bits(bits)


def convert_string(s: str, from_convention: str, to_convention: str) -> str:
    """Convert one string between conventions (exact)."""
    k = strings_to_keys([s], from_convention)
    return keys_to_strings(k, len(s), to_convention)[0]
