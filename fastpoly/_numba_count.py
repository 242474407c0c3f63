"""Exact counting of multi-word keys with Numba: per-lane open-addressing hash tables, merged.

Counting ``n`` keys ``(n, W)`` (uint64 words) with sample indices returns the
unique keys, their counts and the smallest sample index per key -- exactly
:func:`fastpoly.reference.count_keys`, including its big-integer key order.

Design
------
* The key range is split into one contiguous lane per thread (``prange``).
  Each lane counts into its own open-addressing table (linear probing,
  power-of-two capacity, grown by doubling at load 1/2).  A slot is ``W + 2``
  consecutive uint64: the key words, the count and the smallest index, so a
  probe touches one cache line for 128-bit keys.
* Hot keys: the two constant functions (all zeros, and all ones over the key
  bits) can take tens of percent of all samples; they are recognised by a
  few word compares before hashing and counted in scalars.
* Each lane writes its unique entries, compacted, into its own slice of the
  output buffers; a serial pass merges the lanes (counts added, minimum index
  kept) into one table, and the unique keys are finally put in big-integer
  order.
"""
from __future__ import annotations

import numpy as np

from ._jit import jit, pjit, prange, prefetch
from .keys import sort_order

__all__ = ["count_keys", "count_lanes", "hash_key"]

_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)
_H0 = np.uint64(0x9E3779B97F4A7C15)
_H1 = np.uint64(0xFF51AFD7ED558CCD)
_H2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_ONE = np.uint64(1)


@jit(inline="always")
def hash_key(keys, i, W):
    """64-bit hash of key ``keys[i]`` (``W`` words; murmur3-style mixing)."""
    h = _H0
    for w in range(W):
        h = (h ^ keys[i, w]) * _H1
        h ^= h >> _S33
    h *= _H2
    h ^= h >> _S33
    return h


#: prefetch distance (keys) of the counting loop
AHEAD = 16
#: initial capacity (slots) of a lane's table
INITIAL_CAPACITY = 4096
#: largest pre-sized capacity (slots); tables still grow beyond it when needed
MAX_INITIAL_CAPACITY = 1 << 20


@jit(inline="always")
def _insert(T, cap, W, keys, i, count, first):
    """Add ``count`` occurrences of ``keys[i]`` with smallest index ``first``; return 1 if the key is new."""
    return _insert_h(T, cap, W, keys, i, count, first, hash_key(keys, i, W))


@jit(inline="always")
def _insert_h(T, cap, W, keys, i, count, first, h):
    """:func:`_insert` with the key's hash ``h`` already computed."""
    mask = np.uint64(cap - 1)
    slot = h & mask
    while True:
        c = T[slot, W]
        if c == 0:
            for w in range(W):
                T[slot, w] = keys[i, w]
            T[slot, W] = count
            T[slot, W + 1] = first
            return 1
        same = True
        for w in range(W):
            if T[slot, w] != keys[i, w]:
                same = False
                break
        if same:
            T[slot, W] = c + count
            if first < T[slot, W + 1]:
                T[slot, W + 1] = first
            return 0
        slot = (slot + _ONE) & mask


@jit
def _grow(T, W):
    """Rehash table ``T`` into one of twice the capacity."""
    cap = T.shape[0]
    N = np.zeros((2 * cap, W + 2), np.uint64)
    for s in range(cap):
        if T[s, W] != 0:
            _insert(N, 2 * cap, W, T, s, T[s, W], T[s, W + 1])
    return N


@jit
def _count_run(T, keys, indices, mask, use_mask, start, hi, ones_last, st, hot_first):
    """Count ``keys[start:hi]`` into table ``T`` until it is half full; return the next row to count.

    ``st`` (int64[3]) holds ``used, count(zero key), count(all-ones key)``; ``hot_first``
    (uint64[2]) the smallest index of the two hot keys.  ``T`` is never rebound here, so the
    loop has no reference-counting traffic.
    """
    W = keys.shape[1]
    cap = T.shape[0]
    cmask = np.uint64(cap - 1)
    used = st[0]
    c_zero = st[1]
    c_ones = st[2]
    f_zero = hot_first[0]
    f_ones = hot_first[1]
    # software pipelining: the hash of key i + AHEAD is computed (and its slot prefetched)
    # AHEAD iterations before key i is inserted
    ring = np.empty(AHEAD, np.uint64)
    for j in range(start, min(start + AHEAD, hi)):
        hj = hash_key(keys, j, W)
        ring[j % AHEAD] = hj
        prefetch(T, np.int64(hj & cmask) * (W + 2))
    i = start
    while i < hi:
        h = ring[i % AHEAD]
        j = i + AHEAD
        if j < hi:
            hj = hash_key(keys, j, W)
            ring[j % AHEAD] = hj
            prefetch(T, np.int64(hj & cmask) * (W + 2))
        if use_mask and not mask[i]:
            i += 1
            continue
        idx = indices[i]
        is_zero = True
        is_ones = True
        for w in range(W):
            k = keys[i, w]
            is_zero = is_zero and k == 0
            is_ones = is_ones and k == (ones_last if w == W - 1 else _U64_MAX)
        i += 1
        if is_zero:
            c_zero += 1
            if idx < f_zero:
                f_zero = idx
        elif is_ones:
            c_ones += 1
            if idx < f_ones:
                f_ones = idx
        else:
            used += _insert_h(T, cap, W, keys, i - 1, _ONE, idx, h)
            if 2 * used > cap:
                break
    st[0] = used
    st[1] = c_zero
    st[2] = c_ones
    hot_first[0] = f_zero
    hot_first[1] = f_ones
    return i


@jit
def _count_lane(keys, indices, mask, use_mask, lo, hi, ones_last, out_keys, out_counts, out_first):
    """Count ``keys[lo:hi]`` (rows with ``mask`` when ``use_mask``); write unique entries at ``lo``.

    Returns the number of unique entries written (hot keys included).
    """
    W = keys.shape[1]
    # pre-size for about n/4 distinct keys (growth rehashes are cache-missing), within bounds
    cap = INITIAL_CAPACITY
    while cap < (hi - lo) // 2 and cap < MAX_INITIAL_CAPACITY:
        cap *= 2
    T = np.zeros((cap, W + 2), np.uint64)
    st = np.zeros(3, np.int64)
    hot_first = np.full(2, _U64_MAX, np.uint64)
    i = lo
    while i < hi:
        i = _count_run(T, keys, indices, mask, use_mask, i, hi, ones_last, st, hot_first)
        if 2 * st[0] > T.shape[0]:
            T = _grow(T, W)
    cap = T.shape[0]
    o = lo
    if st[1] > 0:
        for w in range(W):
            out_keys[o, w] = 0
        out_counts[o] = st[1]
        out_first[o] = hot_first[0]
        o += 1
    if st[2] > 0:
        for w in range(W):
            out_keys[o, w] = ones_last if w == W - 1 else _U64_MAX
        out_counts[o] = st[2]
        out_first[o] = hot_first[1]
        o += 1
    for s in range(cap):
        if T[s, W] != 0:
            for w in range(W):
                out_keys[o, w] = T[s, w]
            out_counts[o] = np.int64(T[s, W])
            out_first[o] = T[s, W + 1]
            o += 1
    return o - lo


@jit
def _merge_lanes(out_keys, out_counts, out_first, starts, n_unique):
    """Merge the lanes' compacted entries (serial); returns compacted unique (keys, counts, first)."""
    W = out_keys.shape[1]
    total = 0
    for L in range(starts.shape[0]):
        total += n_unique[L]
    cap = 1024
    while cap < 2 * total:
        cap *= 2
    T = np.zeros((cap, W + 2), np.uint64)
    used = 0
    for L in range(starts.shape[0]):
        for i in range(starts[L], starts[L] + n_unique[L]):
            used += _insert(T, cap, W, out_keys, i, np.uint64(out_counts[i]), out_first[i])
    k = np.empty((used, W), np.uint64)
    c = np.empty(used, np.int64)
    f = np.empty(used, np.uint64)
    o = 0
    for s in range(cap):
        if T[s, W] != 0:
            for w in range(W):
                k[o, w] = T[s, w]
            c[o] = np.int64(T[s, W])
            f[o] = T[s, W + 1]
            o += 1
    return k, c, f


@pjit
def _count_parallel(keys, indices, mask, use_mask, n_lanes, ones_last, out_keys, out_counts, out_first,
                    starts, n_unique):
    n = keys.shape[0]
    for lane in prange(n_lanes):
        lo = (n * lane) // n_lanes
        hi = (n * (lane + 1)) // n_lanes
        starts[lane] = lo
        n_unique[lane] = _count_lane(keys, indices, mask, use_mask, lo, hi, ones_last,
                                     out_keys, out_counts, out_first)


def count_lanes(keys, indices, mask=None, n_bits=None, n_lanes=None):
    """Count keys in parallel lanes and merge them (unsorted result).

    Parameters
    ----------
    keys : uint64 array (n, W)
    indices : uint64 array (n,) — sample index of each key
    mask : bool array (n,) or None — count only rows where True
    n_bits : int or None — number of key bits (for the all-ones hot key); default ``64*W``
    n_lanes : int or None — default: the number of Numba threads

    Returns
    -------
    (keys (K, W) uint64, counts (K,) int64, first_index (K,) uint64), in no particular order
    """
    import numba

    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    indices = np.ascontiguousarray(indices, dtype=np.uint64)
    n, W = keys.shape
    if W < 1:
        raise ValueError("keys must have at least one word")
    if n_bits is None:
        n_bits = 64 * W
    rem = n_bits - 64 * (W - 1)
    ones_last = np.uint64((1 << rem) - 1)
    use_mask = mask is not None
    mask_arr = np.ascontiguousarray(mask, dtype=np.bool_) if use_mask else np.zeros(0, np.bool_)
    n_lanes = int(n_lanes or numba.get_num_threads())
    n_lanes = max(1, min(n_lanes, max(n, 1)))
    out_keys = np.empty((n, W), np.uint64)
    out_counts = np.empty(n, np.int64)
    out_first = np.empty(n, np.uint64)
    starts = np.zeros(n_lanes, np.int64)
    n_unique = np.zeros(n_lanes, np.int64)
    if n == 0:
        return np.zeros((0, W), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64)
    _count_parallel(keys, indices, mask_arr, use_mask, np.int64(n_lanes), ones_last, out_keys, out_counts,
                    out_first, starts, n_unique)
    return _merge_lanes(out_keys, out_counts, out_first, starts, n_unique)


def count_keys(keys, indices, mask=None, n_bits=None, n_lanes=None):
    """Exact counting, same result as :func:`fastpoly.reference.count_keys`.

    Returns
    -------
    keys (K, W) uint64 in big-integer order, counts (K,) int64, first_index (K,) uint64
    """
    k, c, f = count_lanes(keys, indices, mask, n_bits, n_lanes)
    if k.shape[0] > 1:
        order = sort_order(k)
        k, c, f = np.ascontiguousarray(k[order]), c[order], f[order]
    return k, c, f
