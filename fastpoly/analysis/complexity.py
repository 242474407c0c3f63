"""Complexity measures of Boolean functions (``docs/design.md#complexity-measures``).

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
``i`` = output on row ``i`` (rows LSB-first, ``docs/design.md#keys``).  K_LZ is symmetric
under reversing the string, so this equals K_LZ of the C++ anchor's reversed
strings; the Python anchors' strings list inputs MSB-first, a different
permutation of the same bits -- pass ``order="msb"`` to get their values.

The integer data (:func:`phrase_sums`, :func:`complexity_ints`) is computed by one of three
backends, the same integers on each: ``"numpy"`` (the pure Python/NumPy reference), ``"numba"``
(:mod:`fastpoly.backends.numba.klz`, bit-parallel, parallel over keys) and ``"cupy"``
(``kernels/klz.cu`` on a CUDA device, :mod:`fastpoly.backends.cuda.klz`); ``"auto"`` is Numba when it
is importable, else NumPy (:data:`fastpoly.backends.ANALYSIS_AUTO_ORDER`: the GPU only when asked).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastpoly.backends import availability, backend_for
from fastpoly.keys import msb_permutation, pack_bits, unpack_bits

__all__ = ["lz76_phrases", "klz_string", "klz", "phrase_sums", "klz_from_sums", "entropy", "entropy_from_ones",
           "ones", "critical_sample_ratio", "critical_counts", "msb_permutation", "complexity_table",
           "complexity_ints", "resolve_analysis_backend"]


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


def resolve_analysis_backend(backend: Any = "auto") -> tuple[str, Any]:
    """``(name, backend object)`` of the backend that computes the integer complexity data.

    The one rule of :func:`fastpoly.backends.backend_for` for the capability ``"klz"``.

    Parameters
    ----------
    backend : str, backend or device
        ``"auto"`` (Numba if importable, else NumPy: :data:`fastpoly.backends.ANALYSIS_AUTO_ORDER`;
        ``$FASTPOLY_BACKEND`` overrides, as for every ``"auto"``), ``"numpy"``, ``"numba"``,
        ``"cupy"``, a backend object, or a CUDA device interface
        (:class:`~fastpoly.backends.cuda.backend.CupyDevice`, the tests' emulation) meaning
        ``"cupy"`` on that device.

    Returns
    -------
    (str, object or None)
        The resolved name and the device interface when one was given (None: the backend's own).

    Raises
    ------
    ValueError
        An unknown name (the message lists the valid ones).
    fastpoly.backends.BackendUnavailable
        ``"numba"`` without Numba, ``"cupy"`` without CuPy or a GPU (the message says why).
    """
    be = backend_for("klz", backend)
    return be.name, (backend if be.name == "cupy" and not isinstance(backend, str) else None)


def _run_ints(be, keys, n, d):
    """(sums, ones, crit) of cleared keys on backend ``be`` (crit zeros unless ``d > 0``); the reference here."""
    if not be.reference:
        return be.complexity_ints(keys, n, d)
    sums = np.concatenate([np.zeros(0, np.int64)] + [_phrase_sums_py(unpack_bits(keys[a:a + 4096], n))
                                                      for a in range(0, keys.shape[0], 4096)])
    crit = critical_counts(keys, n) if d > 0 else np.zeros(keys.shape[0], np.int64)
    return sums, ones(keys, n), crit


def _phrase_sums(be, keys, n):
    return _run_ints(be, keys, n, 0)[0] if be.reference else be.phrase_sums(keys, n)


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


def klz(keys, n_bits, order="rows", compiled=None, backend="auto"):
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
    backend : str or device
        Which backend computes the phrase sums (see :func:`phrase_sums`).

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
    return klz_from_sums(phrase_sums(keys, n, compiled=compiled, backend=backend), n)


def phrase_sums(keys, n_bits, compiled=None, backend="auto"):
    """``c(s) + c(reversed s)`` (LZ76 phrase counts) of each key as int64; ``-1`` for constant strings.

    K_LZ is a function of this integer (:func:`klz_from_sums`), which takes few distinct values:
    histograms over it are exact.  Bit-parallel on the packed words with Numba
    (:mod:`fastpoly.backends.numba.klz`) or CUDA (``kernels/klz.cu``), else the reference loop.

    Parameters
    ----------
    keys : uint64 array (K, W) or (W,)
    n_bits : int
        String length (>= 2).
    compiled : bool or None
        Older switch: True = ``backend="numba"`` (ValueError without Numba), False = ``"numpy"``.
    backend : str or device
        ``"auto"``, ``"numpy"``, ``"numba"``, ``"cupy"`` or a CUDA device interface
        (see :func:`resolve_analysis_backend`).
    """
    keys, n = _as_keys(keys, n_bits)
    if n < 2:
        raise ValueError("K_LZ needs at least 2 bits")
    if compiled is not None:
        if not (isinstance(backend, str) and backend == "auto"):
            raise ValueError("give either compiled= or backend=, not both")
        if compiled and not availability("numba")[0]:
            raise ValueError("compiled=True but Numba is not importable")
        backend = "numba" if compiled else "numpy"
    be = backend_for("klz", backend)
    if keys.shape[0] == 0:
        return np.zeros(0, np.int64)
    keys = _clear_high_bits(keys, n)
    return _phrase_sums(be, keys, n)


def klz_from_sums(sums, n_bits):
    """K_LZ from :func:`phrase_sums`: ``log2(n) * sums / 2``, or ``log2(n)`` for constants (-1)."""
    lg = math.log2(int(n_bits))
    s = np.asarray(sums)
    return np.where(s < 0, lg, lg * s / 2.0)


def ones(keys, n_bits):
    """T: number of ones of each key (int64)."""
    keys, n = _as_keys(keys, n_bits)
    if keys.shape[0] == 0:
        return np.zeros(0, np.int64)
    return _popcount_words(_clear_high_bits(keys, n))


def entropy(keys, n_bits):
    """Shannon entropy (bits) of the 0/1 frequencies of each key; 0 for constants."""
    keys, n = _as_keys(keys, n_bits)
    return entropy_from_ones(ones(keys, n), n)


def _clear_high_bits(keys, n):
    """``keys`` with the bits ``>= n`` of the last word cleared (a copy only when some are set)."""
    r = n % 64
    if r == 0 or keys.shape[0] == 0:
        return keys
    mask = np.uint64((1 << r) - 1)
    if not np.any(keys[:, -1] & ~mask):
        return keys
    keys = keys.copy()
    keys[:, -1] &= mask
    return keys


_FLIP_MASKS = [np.uint64(v) for v in (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F,
                                      0x00FF00FF00FF00FF, 0x0000FFFF0000FFFF, 0x00000000FFFFFFFF)]


def _boolean_dim(n):
    d = n.bit_length() - 1
    if 2**d != n or d < 1:
        raise ValueError(f"the critical sample ratio needs keys over all 2**d Boolean inputs, got {n} bits")
    return d


def critical_counts(keys, n_bits):
    """Number of inputs with a Hamming-1 neighbour of different output, per key (int64).

    Bit-parallel on the packed words: the rows that differ from row ``i`` in input bit ``j`` are
    ``i ^ 2**j``, a swap of bit blocks inside a word for ``j < 6`` and of whole words otherwise.
    """
    keys, n = _as_keys(keys, n_bits)
    d = _boolean_dim(n)
    keys = _clear_high_bits(keys, n)
    out = np.zeros(keys.shape[0], np.int64)
    W = keys.shape[1]
    for a in range(0, keys.shape[0], 1 << 16):
        x = keys[a:a + (1 << 16)]
        crit = np.zeros_like(x)
        for j in range(min(d, 6)):
            m, sh = _FLIP_MASKS[j], np.uint64(1 << j)
            crit |= x ^ (((x >> sh) & m) | ((x & m) << sh))
        for j in range(6, d):
            crit |= x ^ x[:, np.arange(W) ^ (1 << (j - 6))]
        if d < 6:
            crit &= np.uint64((1 << n) - 1)
        out[a:a + x.shape[0]] = _popcount_words(crit)
    return out


def _popcount_words(x):
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).sum(axis=1, dtype=np.int64)
    by = np.ascontiguousarray(x.astype("<u8")).view(np.uint8).reshape(x.shape[0], -1)
    return np.unpackbits(by, axis=1).sum(axis=1, dtype=np.int64)


def critical_sample_ratio(keys, n_bits):
    """Fraction of inputs with a Hamming-1 neighbour of different output.

    Defined for keys over all ``2**d`` Boolean inputs (row ``i`` has bits of ``i``).
    """
    keys, n = _as_keys(keys, n_bits)
    return critical_counts(keys, n) / n


def complexity_ints(keys, n_bits, boolean=True, order="rows", backend="auto"):
    """The integers every complexity measure is a function of, in one pass over the keys.

    Parameters
    ----------
    keys : uint64 array (K, W) or (W,)
    n_bits : int
        String length.
    boolean : bool
        Keys over all ``2**d`` Boolean inputs: also count critical inputs.
    order : {"rows", "msb"}
        String order of the phrase sums (see :func:`klz`).
    backend : str or device
        ``"auto"`` (Numba if importable, else NumPy), ``"numpy"`` (the reference), ``"numba"``,
        ``"cupy"`` (``kernels/klz.cu`` on the GPU), or a CUDA device interface; the same integers
        on every backend (see :func:`resolve_analysis_backend`).

    Returns
    -------
    dict of int64 arrays (K,)
        ``sums`` (:func:`phrase_sums` in the given string ``order``; K_LZ by
        :func:`klz_from_sums`), ``ones`` (T; entropy by :func:`entropy_from_ones`) and, if
        ``boolean``, ``crit`` (critical inputs; CSR = crit / n).

    Raises
    ------
    ValueError
        Bad keys, ``order`` or backend name; ``boolean`` with ``n_bits`` not a power of 2.
    fastpoly.backends.BackendUnavailable
        The backend asked for cannot run here.
    """
    keys, n = _as_keys(keys, n_bits)
    if order not in ("rows", "msb"):
        raise ValueError(f"order must be 'rows' or 'msb', got {order!r}")
    be = backend_for("klz", backend)
    keys = _clear_high_bits(keys, n)
    d = _boolean_dim(n) if boolean else 0
    if keys.shape[0] == 0:
        out = {"sums": np.zeros(0, np.int64), "ones": np.zeros(0, np.int64)}
        if boolean:
            out["crit"] = np.zeros(0, np.int64)
        return out
    if order == "rows":
        s, t, c = _run_ints(be, keys, n, d)
        out = {"sums": s, "ones": t}
        if boolean:
            out["crit"] = c
        return out
    # msb: phrase sums of the permuted strings; T and critical inputs of the stored keys
    src = _permute_keys(keys, n, msb_permutation(n))
    out = {"sums": _phrase_sums(be, src, n),
           "ones": ones(keys, n)}
    if boolean:
        out["crit"] = critical_counts(keys, n)
    return out


def entropy_from_ones(t, n_bits):
    """Shannon entropy (bits) of a string of ``n_bits`` with ``t`` ones (vectorised; 0 for constants)."""
    p = np.asarray(t) / int(n_bits)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.where((p == 0) | (p == 1), 0.0, h)


def complexity_table(keys, n_bits, boolean=True, order="rows"):
    """All measures at once: dict of arrays ``klz``, ``entropy``, ``ones`` (T) and ``csr``.

    ``csr`` is omitted unless ``boolean`` (keys over all Boolean inputs).
    """
    out = {"klz": klz(keys, n_bits, order=order), "entropy": entropy(keys, n_bits), "ones": ones(keys, n_bits)}
    if boolean:
        out["csr"] = critical_sample_ratio(keys, n_bits)
    return out
