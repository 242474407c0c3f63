"""Exact counting of multi-word keys with Numba: open-addressing hash tables (one per lane), merged.

Counting ``n`` keys ``(n, W)`` (uint64 words) with sample indices returns the
unique keys, their counts and the smallest sample index per key -- exactly
:func:`fastpoly.backends.reference.count_keys`, including its big-integer key order.

Design
------
* Hash: a multiply-xorshift of the words (the keys are already random-ish
  bits); the slot is the *top* ``log2(capacity)`` bits of the last product.
* Table: linear probing, power-of-two capacity, grown by doubling at load 1/2.
  A slot is ``W + 2`` consecutive uint64: the key words, the count and the
  smallest index (one cache line per probe for 128-bit keys).
* Hot keys: the two constant functions (all zeros, and all ones over the key
  bits) can take tens of percent of all samples.  The keys are processed in
  chunks of :data:`CHUNK` rows: a branch-free pass counts the hot keys in
  scalars and writes the row numbers and hashes of the other keys into a small
  buffer; a second pass inserts the buffered keys, prefetching the slot of the
  key :data:`AHEAD` positions further on.
* One lane (one thread) counts straight into its table.  With several lanes
  (``prange``), each lane counts a contiguous range into its own table and
  writes its entries, compacted, into its own slice of the output buffers; a
  serial pass merges them (counts added, minimum index kept) into one table.
* Sorted output: only the distinct keys are sorted.  One counting pass
  scatters the table entries into buckets by the 16 most significant varying
  bits of the most significant varying word (an MSD radix step, consistent
  with big-integer order); buckets are then finished by insertion sort (small)
  or a merge sort on the full key (large; structured keys with long common
  prefixes).
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.numba.jit import jit, pjit, prange, prefetch

__all__ = ["count_keys", "count_lanes", "hash_key"]

_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xD6E8FEB86659FD93)
_S32 = np.uint64(32)
_ONE = np.uint64(1)

#: prefetch distance (buffered keys) of the insertion loop
AHEAD = 16
#: rows classified per chunk (hot keys counted, others buffered)
CHUNK = 4096
#: initial capacity (slots) of a table
INITIAL_CAPACITY = 4096
#: largest pre-sized capacity (slots); tables still grow beyond it when needed
MAX_INITIAL_CAPACITY = 1 << 20
#: buckets up to this size are finished by insertion sort
_INSERTION_MAX = 24


@jit
def hash_key(keys, i, W):
    """64-bit hash of key ``keys[i]`` (``W`` words); use its top bits."""
    h = keys[i, 0] * _M1
    for w in range(1, W):
        h = (h ^ (h >> _S32) ^ keys[i, w]) * _M2
    return h


@jit
def _shift_of(cap):
    """``64 - log2(cap)`` as uint64 (``cap`` a power of two >= 2)."""
    s = 64
    c = cap
    while c > 1:
        c >>= 1
        s -= 1
    return np.uint64(s)


@jit
def _absorb(T, src, lo, hi):
    """Add the entries ``src[lo:hi]`` (rows: key words, count, first; count 0 = empty) to ``T``.

    ``T`` must have room for them at load <= 1/2.  Returns the number of new keys.
    """
    W = T.shape[1] - 2
    S = W + 2
    cap = T.shape[0]
    shift = _shift_of(cap)
    smask = np.uint64(cap - 1)
    new = 0
    for r in range(lo, hi):
        cnt = src[r, W]
        if cnt == 0:
            continue
        first = src[r, W + 1]
        h = src[r, 0] * _M1
        for w in range(1, W):
            h = (h ^ (h >> _S32) ^ src[r, w]) * _M2
        slot = h >> shift
        # hand-inlined insertion (an inlined call would add reference-count traffic)
        while True:
            c = T[slot, W]
            if c == 0:
                for w in range(S):
                    T[slot, w] = src[r, w]
                new += 1
                break
            same = True
            for w in range(W):
                if T[slot, w] != src[r, w]:
                    same = False
                    break
            if same:
                T[slot, W] = c + cnt
                if first < T[slot, W + 1]:
                    T[slot, W + 1] = first
                break
            slot = (slot + _ONE) & smask
    return new


@jit
def _grow(T, W):
    """Rehash table ``T`` into one of twice the capacity."""
    N = np.zeros((2 * T.shape[0], W + 2), np.uint64)
    _absorb(N, T, 0, T.shape[0])
    return N


@jit
def _classify(keys, indices, mask, use_mask, lo, hi, ones_last, buf_i, buf_h, st, hot_first):
    """Count the hot keys of rows ``lo:hi`` (branch-free); buffer row and hash of the others.

    ``st`` (int64[3]) holds ``used, count(zero key), count(all-ones key)``; ``hot_first``
    (uint64[2]) the smallest index of the two hot keys.  Returns the number buffered.
    """
    W = keys.shape[1]
    m = 0
    c0 = st[1]
    c1 = st[2]
    f0 = hot_first[0]
    f1 = hot_first[1]
    for i in range(lo, hi):
        any_bit = np.uint64(0)
        diff_ones = np.uint64(0)
        for w in range(W):
            k = keys[i, w]
            any_bit |= k
            diff_ones |= k ^ (ones_last if w == W - 1 else _U64_MAX)
        valid = mask[i] if use_mask else True
        z = valid and any_bit == 0
        o = valid and diff_ones == 0
        idx = indices[i]
        c0 += z
        c1 += o
        f0 = min(f0, idx if z else _U64_MAX)
        f1 = min(f1, idx if o else _U64_MAX)
        h = keys[i, 0] * _M1
        for w in range(1, W):
            h = (h ^ (h >> _S32) ^ keys[i, w]) * _M2
        buf_i[m] = i
        buf_h[m] = h
        m += valid and not (z or o)
    st[1] = c0
    st[2] = c1
    hot_first[0] = f0
    hot_first[1] = f1
    return m


@jit
def _insert_run(T, keys, indices, buf_i, buf_h, j, m, st):
    """Insert buffered keys ``j:m`` until the table is half full; return the next position.

    ``T`` is never rebound here, so the loop has no reference-counting traffic.
    """
    W = keys.shape[1]
    S = W + 2
    cap = T.shape[0]
    shift = _shift_of(cap)
    smask = np.uint64(cap - 1)
    used = st[0]
    for a in range(j, min(j + AHEAD, m)):
        prefetch(T, np.int64(buf_h[a] >> shift) * S)
    while j < m:
        a = j + AHEAD
        if a < m:
            prefetch(T, np.int64(buf_h[a] >> shift) * S)
        i = buf_i[j]
        idx = indices[i]
        slot = buf_h[j] >> shift
        j += 1
        # insert key i (hand-inlined: an inlined call would add reference-count traffic)
        while True:
            c = T[slot, W]
            if c == 0:
                for w in range(W):
                    T[slot, w] = keys[i, w]
                T[slot, W] = _ONE
                T[slot, W + 1] = idx
                used += 1
                break
            same = True
            for w in range(W):
                if T[slot, w] != keys[i, w]:
                    same = False
                    break
            if same:
                T[slot, W] = c + _ONE
                if idx < T[slot, W + 1]:
                    T[slot, W + 1] = idx
                break
            slot = (slot + _ONE) & smask
        if 2 * used > cap:
            break
    st[0] = used
    return j


@jit
def _count_table(keys, indices, mask, use_mask, lo, hi, ones_last):
    """Count rows ``lo:hi`` into a table; the two hot keys are added at the end.

    Returns ``(T, used)``.
    """
    W = keys.shape[1]
    # pre-size for about n/8 distinct keys (growth rehashes are cache-missing, but a table much
    # larger than needed costs its zeroing and the final scan), within bounds
    cap = INITIAL_CAPACITY
    while cap < (hi - lo) // 4 and cap < MAX_INITIAL_CAPACITY:
        cap *= 2
    T = np.zeros((cap, W + 2), np.uint64)
    st = np.zeros(3, np.int64)
    hot_first = np.full(2, _U64_MAX, np.uint64)
    buf_i = np.empty(CHUNK, np.int64)
    buf_h = np.empty(CHUNK, np.uint64)
    for c in range(lo, hi, CHUNK):
        m = _classify(keys, indices, mask, use_mask, c, min(c + CHUNK, hi), ones_last, buf_i, buf_h,
                      st, hot_first)
        j = 0
        while j < m:
            j = _insert_run(T, keys, indices, buf_i, buf_h, j, m, st)
            if 2 * st[0] > T.shape[0]:
                T = _grow(T, W)
    hot = np.zeros((2, W + 2), np.uint64)
    for w in range(W):
        hot[1, w] = ones_last if w == W - 1 else _U64_MAX
    for r in range(2):
        hot[r, W] = np.uint64(st[1 + r])  # count 0: absent
        hot[r, W + 1] = hot_first[r]
    used = st[0]
    if 2 * (used + 2) > T.shape[0]:
        T = _grow(T, W)
    used += _absorb(T, hot, 0, 2)
    return T, used


@jit
def _compact(T, W, out_keys, out_counts, out_first, o):
    """Write the entries of table ``T`` at ``o`` of the output buffers; return the end position."""
    for s in range(T.shape[0]):
        if T[s, W] != 0:
            for w in range(W):
                out_keys[o, w] = T[s, w]
            out_counts[o] = np.int64(T[s, W])
            out_first[o] = T[s, W + 1]
            o += 1
    return o


@jit
def _compact_rows(T, out, o):
    """Copy the occupied slots of ``T`` to rows ``o, o+1, ...`` of ``out``; return the end row."""
    W = T.shape[1] - 2
    for s in range(T.shape[0]):
        if T[s, W] != 0:
            for w in range(W + 2):
                out[o, w] = T[s, w]
            o += 1
    return o


@pjit
def _count_parallel(keys, indices, mask, use_mask, n_lanes, ones_last, out, starts, n_unique):
    n = keys.shape[0]
    for lane in prange(n_lanes):
        lo = (n * lane) // n_lanes
        hi = (n * (lane + 1)) // n_lanes
        o = lo + 2 * lane  # a lane's hot keys may add 2 entries beyond its hi - lo rows
        starts[lane] = o
        T, used = _count_table(keys, indices, mask, use_mask, lo, hi, ones_last)
        n_unique[lane] = _compact_rows(T, out, o) - o


@jit
def _merge_lanes(out, starts, n_unique):
    """Merge the lanes' compacted entries (serial) into one table; returns ``(T, used)``."""
    W = out.shape[1] - 2
    total = 0
    for L in range(starts.shape[0]):
        total += n_unique[L]
    cap = 1024
    while cap < 2 * total:
        cap *= 2
    T = np.zeros((cap, W + 2), np.uint64)
    used = 0
    for L in range(starts.shape[0]):
        used += _absorb(T, out, starts[L], starts[L] + n_unique[L])
    return T, used


@jit
def _sort_segment(k, c, f, a, b):
    """Sort entries ``a:b`` of ``(k, c, f)`` by key (all keys distinct): merge sort on the full key."""
    W = k.shape[1]
    m = b - a
    # bottom-up merge sort of a permutation, then one gather
    p = np.arange(a, b)
    q = np.empty(m, np.int64)
    width = 1
    while width < m:
        for lo in range(0, m, 2 * width):
            mid = min(lo + width, m)
            hi = min(lo + 2 * width, m)
            i = lo
            j = mid
            o = lo
            while i < mid and j < hi:
                lt = False
                for w in range(W - 1, -1, -1):
                    x = k[p[j], w]
                    y = k[p[i], w]
                    if x != y:
                        lt = x < y
                        break
                if lt:
                    q[o] = p[j]
                    j += 1
                else:
                    q[o] = p[i]
                    i += 1
                o += 1
            while i < mid:
                q[o] = p[i]
                i += 1
                o += 1
            while j < hi:
                q[o] = p[j]
                j += 1
                o += 1
        p, q = q, p
        width *= 2
    tk = k[a:b].copy()
    tc = c[a:b].copy()
    tf = f[a:b].copy()
    for o in range(m):
        s = p[o] - a
        for w in range(W):
            k[a + o, w] = tk[s, w]
        c[a + o] = tc[s]
        f[a + o] = tf[s]


@jit
def _sorted_entries(T, used, do_sort):
    """The entries of table ``T`` as compact ``(keys, counts, first)``, in big-integer key order if ``do_sort``."""
    W = T.shape[1] - 2
    k0 = np.empty((used, W), np.uint64)
    c0 = np.empty(used, np.int64)
    f0 = np.empty(used, np.uint64)
    _compact(T, W, k0, c0, f0, 0)
    if not do_sort or used <= 1:
        return k0, c0, f0
    # the most significant word in which the keys differ, and its highest differing bit
    vw = -1
    x = np.uint64(0)
    for i in range(1, used):
        for w in range(W - 1, -1, -1):
            d = k0[i, w] ^ k0[0, w]
            if d != 0:
                if w > vw:
                    vw = w
                    x = d
                elif w == vw:
                    x |= d
                break
    b = 63
    while (x >> np.uint64(b)) == 0:
        b -= 1
    # MSD radix step on up to 16 bits ending at bit b of word vw (about 4 keys per bucket)
    nbits = 1
    while nbits < 16 and (np.int64(1) << (nbits + 2)) < used:
        nbits += 1
    nbits = min(nbits, b + 1)
    sh = np.uint64(b + 1 - nbits)
    dmask = np.uint64((1 << nbits) - 1)
    nb = 1 << nbits
    start = np.zeros(nb + 1, np.int64)
    for i in range(used):
        start[np.int64((k0[i, vw] >> sh) & dmask) + 1] += 1
    for d in range(nb):
        start[d + 1] += start[d]
    pos = start[:nb].copy()
    k = np.empty((used, W), np.uint64)
    c = np.empty(used, np.int64)
    f = np.empty(used, np.uint64)
    for i in range(used):
        d = np.int64((k0[i, vw] >> sh) & dmask)
        o = pos[d]
        pos[d] = o + 1
        for w in range(W):
            k[o, w] = k0[i, w]
        c[o] = c0[i]
        f[o] = f0[i]
    for d in range(nb):
        a = start[d]
        e = start[d + 1]
        if e - a > _INSERTION_MAX:
            _sort_segment(k, c, f, a, e)
            continue
        # insertion sort, hand-inlined (a call per bucket costs more than the sort)
        for i in range(a + 1, e):
            j = i
            while j > a:
                lt = False
                for w in range(W - 1, -1, -1):
                    x = k[j, w]
                    y = k[j - 1, w]
                    if x != y:
                        lt = x < y
                        break
                if not lt:
                    break
                for w in range(W):
                    t = k[j, w]
                    k[j, w] = k[j - 1, w]
                    k[j - 1, w] = t
                tc = c[j]
                c[j] = c[j - 1]
                c[j - 1] = tc
                tf = f[j]
                f[j] = f[j - 1]
                f[j - 1] = tf
                j -= 1
    return k, c, f


@jit
def _count_serial(keys, indices, mask, use_mask, ones_last, do_sort):
    T, used = _count_table(keys, indices, mask, use_mask, 0, keys.shape[0], ones_last)
    return _sorted_entries(T, used, do_sort)


def _count(keys, indices, mask, n_bits, n_lanes, do_sort):
    import numba

    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    indices = np.ascontiguousarray(indices, dtype=np.uint64)
    if keys.ndim != 2:
        raise ValueError("keys must be a 2-d array (n, W)")
    n, W = keys.shape
    if W < 1:
        raise ValueError("keys must have at least one word")
    if indices.shape != (n,):
        raise ValueError("indices must have one entry per key")
    if n == 0:
        return np.zeros((0, W), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64)
    if n_bits is None:
        n_bits = 64 * W
    rem = n_bits - 64 * (W - 1)
    ones_last = np.uint64((1 << rem) - 1)
    use_mask = mask is not None
    mask_arr = np.ascontiguousarray(mask, dtype=np.bool_) if use_mask else np.zeros(0, np.bool_)
    if use_mask and mask_arr.shape != (n,):
        raise ValueError("mask must have one entry per key")
    n_lanes = int(n_lanes or numba.get_num_threads())
    n_lanes = max(1, min(n_lanes, n))
    if n_lanes == 1:
        return _count_serial(keys, indices, mask_arr, use_mask, ones_last, do_sort)
    out = np.empty((n + 2 * n_lanes, W + 2), np.uint64)
    starts = np.zeros(n_lanes, np.int64)
    n_unique = np.zeros(n_lanes, np.int64)
    _count_parallel(keys, indices, mask_arr, use_mask, np.int64(n_lanes), ones_last, out, starts, n_unique)
    T, used = _merge_lanes(out, starts, n_unique)
    return _sorted_entries(T, used, do_sort)


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
    return _count(keys, indices, mask, n_bits, n_lanes, False)


def count_keys(keys, indices, mask=None, n_bits=None, n_lanes=None):
    """Exact counting, same result as :func:`fastpoly.backends.reference.count_keys`.

    Returns
    -------
    keys (K, W) uint64 in big-integer order, counts (K,) int64, first_index (K,) uint64
    """
    return _count(keys, indices, mask, n_bits, n_lanes, True)
