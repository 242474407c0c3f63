"""Per-block tallies of the streaming analysis (Numba): contingency tables, weighted histograms, per-class maxima.

:func:`tally_block` does in one parallel pass over a block of functions what
:func:`fastpoly.analysis.histograms.summarize` needs from it, as exact integers:

* the 2-D histogram of ``(count, class)`` for counts below ``cap`` as a dense table (the rare larger
  counts are returned by index, for a sparse table);
* count-weighted histograms of T, critical inputs and errors;
* per class, the largest count and the first row holding it;
* the errors (Hamming distance of each key to the target's key) and the dense 2-D histogram of
  ``(errors, count)`` for counts below ``cap``.

The block is split into ``parts`` contiguous row ranges, one per ``prange`` iteration, each with its
own tables; the tables are then added (integers: the same result in any order) and the maxima
merged part by part with a strict ``>``, so ties go to the earliest row, as in a serial pass.
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.numba.bits import popcount64
from fastpoly.backends.numba.jit import get_num_threads, pjit, prange

__all__ = ["tally_block"]

@pjit
def _tally_kernel(cnt, cls, ones, crit, keys, tkey, has_crit, has_err, cap,
                  dense, ones_w, crit_w, max_count, max_first, errs, edense, err_w, bad):
    K = cnt.shape[0]
    P = dense.shape[0]
    W = keys.shape[1]
    nc = dense.shape[2]
    no = ones_w.shape[1]
    ne = err_w.shape[1]
    for p in prange(P):
        lo = p * K // P
        hi = (p + 1) * K // P
        for r in range(lo, hi):
            c = cnt[r]
            s = cls[r]
            if c < 0 or s < 0 or s >= nc or ones[r] < 0 or ones[r] >= no or \
                    (has_crit and (crit[r] < 0 or crit[r] >= no)):
                bad[p] = r + 1  # out of range: reported, never written out of bounds
                continue
            if has_err:
                e = 0
                for w in range(W):
                    e += popcount64(keys[r, w] ^ tkey[w])
                if e >= ne:
                    bad[p] = r + 1
                    continue
                errs[r] = e
                err_w[p, e] += c
                if c < cap:
                    edense[p, e, c] += 1
            if c < cap:
                dense[p, c, s] += 1
            ones_w[p, ones[r]] += c
            if has_crit:
                crit_w[p, crit[r]] += c
            if c > max_count[p, s]:
                max_count[p, s] = c
                max_first[p, s] = r


def tally_block(cnt, cls, n_classes, ones, n_ones, crit=None, keys=None, tkey=None, n_err=0, cap=64, parts=None):
    """Exact tallies of one block of functions (see the module docstring).

    Parameters
    ----------
    cnt : int64 array (K,)
        Counts (``>= 0``).
    cls : int64 array (K,)
        Class of each function in ``[0, n_classes)`` (the phrase sum + 1).
    n_classes : int
    ones : int64 array (K,)
        T of each function, in ``[0, n_ones)``.
    n_ones : int
        Length of the T and critical-input histograms.
    crit : int64 array (K,) or None
        Critical inputs, in ``[0, n_ones)``; None: no histogram.
    keys : uint64 array (K, W) or None
        With ``tkey``: count errors (the Hamming distance ``popcount(key ^ tkey)`` in ``[0, n_err)``).
    tkey : uint64 array (W,) or None
    n_err : int
        Length of the error histograms (``n_test + 1``).
    cap : int
        Counts below ``cap`` go to the dense contingency tables.
    parts : int or None
        Row ranges tallied in parallel (default: Numba's thread count, at most one per 4096 rows).

    Returns
    -------
    dict
        ``dense`` (cap, n_classes), ``ones_w`` (n_ones,), ``crit_w`` (n_ones,) or None, ``max_count``
        and ``max_first`` (n_classes,; -1 where no row; the row within the block), ``big`` (rows with
        ``cnt >= cap``), and with errors ``errs`` (K,), ``edense`` (n_err, cap), ``err_w`` (n_err,).
    """
    cnt = np.ascontiguousarray(cnt, np.int64)
    cls = np.ascontiguousarray(cls, np.int64)
    ones = np.ascontiguousarray(ones, np.int64)
    K = cnt.shape[0]
    cap, n_classes, n_ones = int(cap), int(n_classes), int(n_ones)
    if parts is None:
        parts = max(1, min(get_num_threads(), K // 4096))
    P = max(1, int(parts))
    has_crit = crit is not None
    has_err = keys is not None and tkey is not None
    crit_a = np.ascontiguousarray(crit, np.int64) if has_crit else np.zeros(1, np.int64)
    keys_a = np.ascontiguousarray(keys, np.uint64) if has_err else np.zeros((1, 1), np.uint64)
    tkey_a = np.ascontiguousarray(tkey, np.uint64).ravel() if has_err else np.zeros(1, np.uint64)
    ne = int(n_err) if has_err else 1
    dense = np.zeros((P, cap, n_classes), np.int64)
    ones_w = np.zeros((P, n_ones), np.int64)
    crit_w = np.zeros((P, n_ones if has_crit else 1), np.int64)
    max_count = np.zeros((P, n_classes), np.int64)
    max_first = np.full((P, n_classes), -1, np.int64)
    errs = np.zeros(K if has_err else 1, np.int64)
    edense = np.zeros((P, ne, cap if has_err else 1), np.int64)
    err_w = np.zeros((P, ne), np.int64)
    bad = np.zeros(P, np.int64)
    if cap < 1 or n_classes < 1 or n_ones < 1 or ne < 1:
        raise ValueError("cap, n_classes, n_ones and n_err must be >= 1")
    if not cls.shape == ones.shape == (K,) or (has_crit and crit_a.shape != (K,)) or \
            (has_err and (keys_a.shape[0] != K or tkey_a.shape != (keys_a.shape[1],))):
        raise ValueError("tally_block: the per-function arrays must have one entry per count (and tkey one per word)")
    if K:
        _tally_kernel(cnt, cls, ones, crit_a, keys_a, tkey_a, has_crit, has_err, cap,
                      dense, ones_w, crit_w, max_count, max_first, errs, edense, err_w, bad)
    if bad.any():
        r = int(bad[bad > 0][0]) - 1
        raise ValueError(f"tally_block: row {r} is out of range (count {int(cnt[r])}, class {int(cls[r])}, "
                         f"T {int(ones[r])}; {n_classes} classes, {n_ones} T values, {ne} error values)")
    mc, mf = max_count[0].copy(), max_first[0].copy()
    for p in range(1, P):  # part order: a later part wins only with a strictly larger count
        better = max_count[p] > mc
        mc[better] = max_count[p][better]
        mf[better] = max_first[p][better]
    out = {"dense": dense.sum(axis=0), "ones_w": ones_w.sum(axis=0), "crit_w": crit_w.sum(axis=0) if has_crit else None,
           "max_count": mc, "max_first": mf, "big": np.flatnonzero(cnt >= cap)}
    if has_err:
        out.update(errs=errs, edense=edense.sum(axis=0), err_w=err_w.sum(axis=0))
    return out
