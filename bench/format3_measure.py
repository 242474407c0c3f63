"""Format 3 measurements on a real counts file (format 2 input; see bench/SCALE.md).

Usage: ``PYTHONPATH=. python bench/format3_measure.py FORMAT2.npz OUT3.npz``
"""
import os
import sys
import time

import numpy as np

import fastpoly.counts.fileformat as ff
from fastpoly.backends.numba.codec import decode_blocks, encode_blocks
from fastpoly.counts import FunctionCounts

src = sys.argv[1]
out = sys.argv[2]
c = FunctionCounts.load(src)
k, cnt, f = c.keys, c.counts, c.first_index
n, W = k.shape
print(f"records {n}  words {W}  format-2 size {os.path.getsize(src)} B = {os.path.getsize(src)/n:.2f} B/record")
encode_blocks(k[:1000], cnt[:1000], f[:1000], 100)  # compile / load cache
def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    r = fn()
    return r, time.perf_counter() - t0, time.process_time() - c0
B = ff.BLOCK_RECORDS
(buf, idx), w, cpu = timed(lambda: encode_blocks(k, cnt, f, B))
print(f"encode: {n/w/1e6:.1f} M records/s wall ({w:.3f} s), {n/cpu/1e6:.1f} M records/s CPU ({cpu:.3f} s)")
decode_blocks(buf, idx[:1], W)
(k2, c2, f2), w, cpu = timed(lambda: decode_blocks(buf, idx, W))
assert np.array_equal(k2, k) and np.array_equal(c2, cnt) and np.array_equal(f2, f)
print(f"decode: {n/w/1e6:.1f} M records/s wall ({w:.3f} s), {n/cpu/1e6:.1f} M records/s CPU ({cpu:.3f} s)")
kb, cb, fb = (idx[:, j].sum() / n for j in (1, 2, 3))
print(f"bytes/record: keys {kb:.3f} (of {8*W})  counts {cb:.3f} (of 8)  first {fb:.3f} (of 8)  total {kb+cb+fb:.3f}")
# key delta as LEB128 instead of length byte + bytes (sizes only)
d = np.zeros((n, W), np.uint64)
d[0] = k[0]
borrow = np.zeros(n - 1, bool)
for w_ in range(W):
    a, b = k[1:, w_], k[:-1, w_]
    d[1:, w_] = a - b - borrow.astype(np.uint64)
    borrow = (a < b) | ((a == b) & borrow)
bits = np.zeros(n, np.int64)
for w_ in range(W):
    x = d[:, w_]
    bl = np.zeros(n, np.int64)
    for t in range(64):
        bl += x >= np.uint64(1) << np.uint64(t)
    bits = np.where(bl > 0, 64 * w_ + bl, bits)
lenbyte = (1 + (bits + 7) // 8).mean()
leb = np.maximum(1, (bits + 6) // 7).mean()
print(f"key deltas: median {np.median(bits):.0f} bits; length byte + bytes {lenbyte:.3f} B/key, LEB128 {leb:.3f} B/key")
t0, c0 = time.perf_counter(), time.process_time()
c.save(out, compress=True)
w, cpu = time.perf_counter() - t0, time.process_time() - c0
s3, s2 = os.path.getsize(out), os.path.getsize(src)
print(f"save(compress=True): {w:.2f} s wall, {cpu:.2f} s CPU; format-3 size {s3} B = {s3/n:.3f} B/record; ratio 3/2 = {s3/s2:.3f}")
for mm in (False, True):
    t0, c0 = time.perf_counter(), time.process_time()
    m = FunctionCounts.load(out, mmap=mm)
    if mm:
        tot = sum(int(x[0].sum()) for _, x in m.iter_blocks(("counts",)))
    w, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"load(mmap={mm}){' + one pass over counts' if mm else ''}: {w:.2f} s wall, {cpu:.2f} s CPU")
t0, c0 = time.perf_counter(), time.process_time()
m2 = FunctionCounts.load(src, mmap=True)
tot2 = sum(int(x[0].sum()) for _, x in m2.iter_blocks(("counts",)))
w, cpu = time.perf_counter() - t0, time.process_time() - c0
print(f"format 2 load(mmap=True) + one pass over counts: {w:.2f} s wall, {cpu:.2f} s CPU")
assert tot == tot2
