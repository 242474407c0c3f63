"""Exact counting primitives shared by every backend, the counts store and the run driver.

* :func:`count_keys` -- a batch of per-sample keys -> unique keys, counts, smallest index;
* :func:`merge_sorted_counts_reference` -- merge sorted unique ``(keys, counts, first_index)`` triples
  (the compiled fast path is :func:`fastpoly.counts.merge.merge_sorted_counts`).

Keys are ``(n, W)`` uint64 words compared as big integers (word ``W-1`` most significant).
"""
from __future__ import annotations

import numpy as np

from fastpoly.keys import sort_order

__all__ = ["count_keys", "merge_sorted_counts_reference"]


def count_keys(keys, indices):
    """Exact counting: unique keys (big-integer order), counts (int64), smallest index per key.

    Parameters
    ----------
    keys : uint64 array (n, W)
    indices : uint64 array (n,) — the sample index of each key
    """
    keys = np.asarray(keys, dtype=np.uint64)
    indices = np.asarray(indices, dtype=np.uint64)
    W = keys.shape[1]
    if keys.shape[0] == 0:
        return np.zeros((0, W), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64)
    order = sort_order(keys)
    sk = keys[order]
    si = indices[order]
    new = np.ones(sk.shape[0], bool)
    new[1:] = np.any(sk[1:] != sk[:-1], axis=1)
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, sk.shape[0])).astype(np.int64)
    first = np.minimum.reduceat(si, starts).astype(np.uint64)
    return np.ascontiguousarray(sk[starts]), counts, first


def merge_sorted_counts_reference(parts):
    """Merge sorted unique ``(keys, counts, first_index)`` triples (reference: concatenate, sort, reduce).

    Empty parts are allowed; at least one part must be given.
    """
    keys = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    first = np.concatenate([p[2] for p in parts])
    order = sort_order(keys)
    keys, counts, first = keys[order], counts[order], first[order]
    new = np.ones(keys.shape[0], bool)
    new[1:] = np.any(keys[1:] != keys[:-1], axis=1)
    starts = np.flatnonzero(new)
    return (
        np.ascontiguousarray(keys[starts]),
        np.add.reduceat(counts, starts).astype(np.int64),
        np.minimum.reduceat(first, starts).astype(np.uint64),
    )
