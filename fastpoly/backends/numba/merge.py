"""Linear-time merge of sorted, unique count triples (Numba), used by :func:`fastpoly.counts.merge_sorted_counts`.

Two sorted runs ``(keys, counts, first_index)`` (keys unique, big-integer order,
word ``W-1`` most significant) merge into one in a single pass: equal keys add
their counts and keep the smaller first index.  Exactly the result of the NumPy
path (concatenate, sort, reduce), at about 50x its speed for millions of keys.
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.numba.jit import jit

__all__ = ["merge2"]


@jit
def _merge2_kernel(ka, ca, fa, kb, cb, fb, ko, co, fo):
    na = ka.shape[0]
    nb = kb.shape[0]
    W = ka.shape[1]
    i = 0
    j = 0
    n = 0
    while i < na and j < nb:
        cmp = 0
        for w in range(W - 1, -1, -1):
            x = ka[i, w]
            y = kb[j, w]
            if x != y:
                cmp = -1 if x < y else 1
                break
        if cmp < 0:
            for w in range(W):
                ko[n, w] = ka[i, w]
            co[n] = ca[i]
            fo[n] = fa[i]
            i += 1
        elif cmp > 0:
            for w in range(W):
                ko[n, w] = kb[j, w]
            co[n] = cb[j]
            fo[n] = fb[j]
            j += 1
        else:
            for w in range(W):
                ko[n, w] = ka[i, w]
            co[n] = ca[i] + cb[j]
            fo[n] = fa[i] if fa[i] < fb[j] else fb[j]
            i += 1
            j += 1
        n += 1
    return i, j, n


def merge2(a, b):
    """Merge two sorted, unique ``(keys, counts, first_index)`` triples into a new one."""
    ka, ca, fa = (np.ascontiguousarray(a[0], np.uint64), np.ascontiguousarray(a[1], np.int64),
                  np.ascontiguousarray(a[2], np.uint64))
    kb, cb, fb = (np.ascontiguousarray(b[0], np.uint64), np.ascontiguousarray(b[1], np.int64),
                  np.ascontiguousarray(b[2], np.uint64))
    if ka.shape[1] != kb.shape[1]:
        raise ValueError("cannot merge keys of different lengths")
    cap = ka.shape[0] + kb.shape[0]
    ko = np.empty((cap, ka.shape[1]), np.uint64)
    co = np.empty(cap, np.int64)
    fo = np.empty(cap, np.uint64)
    i, j, n = _merge2_kernel(ka, ca, fa, kb, cb, fb, ko, co, fo)
    # one input is exhausted: the rest of the other is already sorted and unique
    for k, c, f, r in ((ka, ca, fa, i), (kb, cb, fb, j)):
        t = k.shape[0] - r
        if t:
            ko[n : n + t], co[n : n + t], fo[n : n + t] = k[r:], c[r:], f[r:]
            n += t
    if n == cap:
        return ko, co, fo
    return ko[:n].copy(), co[:n].copy(), fo[:n].copy()
