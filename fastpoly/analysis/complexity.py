"""Complexity measures of Boolean functions (REFERENCE.md §7).

* :func:`klz` -- Lempel--Ziv complexity K_LZ with the exact semantics of the
  anchors' reference code (Dingle, Camargo & Louis 2018; the ``KC_LZ`` /
  ``calc_KC`` functions): ``c(s)`` is the Lempel--Ziv 1976 phrase count in the
  Kaspar--Schuster scheme and ``K_LZ(s) = log2(n) * (c(s) + c(reversed s)) / 2``,
  or ``log2(n)`` for a constant string.
* :func:`entropy` -- Shannon entropy (bits) of the 0/1 frequencies.
* :func:`ones` -- T, the number of ones.
* :func:`critical_sample_ratio` -- fraction of Boolean inputs with a Hamming-1
  neighbour of different output.

All functions take keys ``(K, W)`` uint64 (bit ``i`` = output on row ``i``) and
the number of bits.  The string a key stands for is ``key_to_bits``: character
``i`` = output on row ``i`` (rows LSB-first, REFERENCE.md §2).  K_LZ is symmetric
under reversing the string, so this equals K_LZ of the C++ anchor's reversed
strings; the Python anchors' strings list inputs MSB-first, a different
permutation of the same bits -- pass ``order="msb"`` to get their values.

K_LZ is compiled with Numba (the package jit policy, parallel over keys) when
Numba is importable; otherwise a pure Python loop with the same semantics runs.
"""
from __future__ import annotations

import math

import numpy as np

from fastpoly.keys import msb_permutation, pack_bits, unpack_bits

__all__ = ["lz76_phrases", "klz_string", "klz", "entropy", "ones", "critical_sample_ratio",
           "msb_permutation", "complexity_table"]


# --- reference semantics (plain Python, used as the oracle and the fallback) -----------------
def lz76_phrases(s):
    """Lempel--Ziv (1976) phrase count ``c(s)`` in the Kaspar--Schuster scheme.

    A line-by-line transcription of the anchors' ``KC_LZ`` (which pads the
    string with one leading character to use 1-based indices).

    Parameters
    ----------
    s : str or sequence of 0/1
        At least 2 symbols.
    """
    s = [int(ch) for ch in s] if isinstance(s, str) else [int(v) for v in s]
    n = len(s)
    if n < 2:
        raise ValueError("lz76_phrases needs a string of at least 2 symbols")
    return _phrases_buf([0] + s, n)


def klz_string(s):
    """K_LZ of one 0/1 string (the anchors' ``calc_KC``).

    Examples
    --------
    >>> klz_string("0" * 128)
    7.0
    >>> klz_string("01" * 64)
    21.0
    """
    if isinstance(s, str):
        if set(s) - {"0", "1"}:
            raise ValueError("K_LZ is defined here for 0/1 strings")
        bits = [1 if ch == "1" else 0 for ch in s]
    else:
        bits = [int(v) for v in s]
    n = len(bits)
    if n < 2:
        raise ValueError("K_LZ needs a string of at least 2 symbols")
    if all(b == bits[0] for b in bits):
        return math.log2(n)
    return math.log2(n) * (lz76_phrases(bits) + lz76_phrases(bits[::-1])) / 2.0


# --- compiled kernel -------------------------------------------------------------------------
_KERNEL = None


def _phrases_buf(s, n):
    # s[0] is the pad; s[1..n] the symbols (same algorithm as lz76_phrases)
    c = 1
    l = 1
    i = 0
    k = 1
    k_max = 1
    while True:
        if s[i + k] != s[l + k]:
            if k > k_max:
                k_max = k
            i += 1
            if i == l:
                c += 1
                l += k_max
                if l + 1 > n:
                    break
                i = 0
                k = 1
                k_max = 1
            else:
                k = 1
        else:
            k += 1
            if l + k > n:
                c += 1
                break
    return c


def _phrase_sums_py(bits):
    """c(s) + c(reverse s) per row of a (K, n) uint8 array; -1 for constant rows (Python)."""
    K, n = bits.shape
    out = np.empty(K, np.int64)
    for r in range(K):
        row = bits[r].tolist()
        if min(row) == max(row):
            out[r] = -1
        else:
            out[r] = _phrases_buf([0] + row, n) + _phrases_buf([0] + row[::-1], n)
    return out


def _kernel():
    """Compile (once) the Numba kernel; None if Numba is not importable."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL or None
    try:
        from fastpoly.backends.numba.jit import jit, pjit, prange  # Numba is optional here
    except ImportError:
        _KERNEL = False
        return None
    phr = jit(_phrases_buf)

    def sums(keys, n):
        K = keys.shape[0]
        out = np.empty(K, np.int64)
        n_chunks = (K + 1023) // 1024
        for ch in prange(n_chunks):
            fwd = np.zeros(n + 1, np.uint8)
            rev = np.zeros(n + 1, np.uint8)
            for r in range(ch * 1024, min(K, ch * 1024 + 1024)):
                t = 0
                for j in range(n):
                    b = np.uint8((keys[r, j >> 6] >> np.uint64(j & 63)) & np.uint64(1))
                    fwd[j + 1] = b
                    rev[n - j] = b
                    t += b
                if t == 0 or t == n:
                    out[r] = -1
                else:
                    out[r] = phr(fwd, n) + phr(rev, n)
        return out

    _KERNEL = pjit(sums)
    return _KERNEL


def _as_keys(keys, n_bits):
    keys = np.ascontiguousarray(np.asarray(keys, dtype=np.uint64))
    if keys.ndim == 1:
        keys = keys[None, :]
    if keys.ndim != 2:
        raise ValueError("keys must be a (K, n_words) uint64 array")
    n_bits = int(n_bits)
    if n_bits < 1 or keys.shape[1] != (n_bits + 63) // 64:
        raise ValueError(f"keys have {keys.shape[1]} words, which does not fit {n_bits} bits")
    return keys, n_bits


def _permute_keys(keys, n_bits, perm):
    bits = unpack_bits(keys, n_bits)
    return pack_bits(bits[:, perm].astype(bool))


def klz(keys, n_bits, order="rows", compiled=None):
    """K_LZ of each key (vectorised; compiled when Numba is available).

    Parameters
    ----------
    keys : uint64 array (K, W) or (W,)
    n_bits : int
        String length n (>= 2).
    order : {"rows", "msb"}
        ``rows``: the fastpoly string (character i = row i; equals the C++ anchor's
        values since K_LZ is reversal-symmetric); ``msb``: the Python anchors'
        MSB-first input order.
    compiled : bool or None
        Force (True) or forbid (False) the Numba kernel; None = use it if available.

    Returns
    -------
    float64 array (K,)
    """
    keys, n = _as_keys(keys, n_bits)
    if n < 2:
        raise ValueError("K_LZ needs at least 2 bits")
    if order not in ("rows", "msb"):
        raise ValueError(f"order must be 'rows' or 'msb', got {order!r}")
    if order == "msb":
        keys = _permute_keys(keys, n, msb_permutation(n))
    kern = _kernel() if compiled in (None, True) else None
    if compiled is True and kern is None:
        raise ValueError("compiled=True but Numba is not importable")
    if keys.shape[0] == 0:
        return np.zeros(0, np.float64)
    if kern is not None:
        s = kern(keys, n)
    else:
        s = np.concatenate([_phrase_sums_py(unpack_bits(keys[a:a + 4096], n))
                            for a in range(0, keys.shape[0], 4096)])
    lg = math.log2(n)
    return np.where(s < 0, lg, lg * s / 2.0)


def ones(keys, n_bits):
    """T: number of ones of each key (int64)."""
    keys, n = _as_keys(keys, n_bits)
    if keys.shape[0] == 0:
        return np.zeros(0, np.int64)
    by = keys.astype("<u8").view(np.uint8).reshape(keys.shape[0], -1)
    return np.unpackbits(by, axis=1, bitorder="little")[:, :n].sum(axis=1).astype(np.int64)


def entropy(keys, n_bits):
    """Shannon entropy (bits) of the 0/1 frequencies of each key; 0 for constants."""
    keys, n = _as_keys(keys, n_bits)
    p = ones(keys, n) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.where((p == 0) | (p == 1), 0.0, h)


def critical_sample_ratio(keys, n_bits):
    """Fraction of inputs with a Hamming-1 neighbour of different output.

    Defined for keys over all ``2**d`` Boolean inputs (row ``i`` has bits of ``i``).
    """
    keys, n = _as_keys(keys, n_bits)
    d = n.bit_length() - 1
    if 2**d != n or d < 1:
        raise ValueError(f"the critical sample ratio needs keys over all 2**d Boolean inputs, got {n} bits")
    out = np.empty(keys.shape[0], np.float64)
    rows = np.arange(n)
    for a in range(0, keys.shape[0], 8192):
        bits = unpack_bits(keys[a:a + 8192], n).astype(bool)
        crit = np.zeros(bits.shape, bool)
        for j in range(d):
            crit |= bits != bits[:, rows ^ (1 << j)]
        out[a:a + 8192] = crit.mean(axis=1)
    return out


def complexity_table(keys, n_bits, boolean=True, order="rows"):
    """All measures at once: dict of arrays ``klz``, ``entropy``, ``ones`` (T) and ``csr``.

    ``csr`` is omitted unless ``boolean`` (keys over all Boolean inputs).
    """
    out = {"klz": klz(keys, n_bits, order=order), "entropy": entropy(keys, n_bits), "ones": ones(keys, n_bits)}
    if boolean:
        out["csr"] = critical_sample_ratio(keys, n_bits)
    return out
