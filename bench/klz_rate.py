"""K_LZ throughput: keys/s (wall) and keys per CPU-second of the compiled kernels, best of several rounds.

    NUMBA_NUM_THREADS=2 python bench/klz_rate.py [--keys 1e6] [--rounds 7] [--bits 128 64]

Random full-width keys (the issue's benchmark: 1e6 random 128-bit keys), after a warm-up call that
also checks 1,000 keys against the plain reference.  ``phrase_sums`` is K_LZ alone;
``complexity_ints`` adds T and the critical-input count (what ``fastpoly analyze`` computes).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", default="1e6")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--bits", type=int, nargs="+", default=[128, 64])
    args = ap.parse_args()
    from fastpoly.analysis.complexity import _phrase_sums_py
    from fastpoly.backends.numba import klz
    from fastpoly.backends.numba.jit import get_num_threads
    from fastpoly.keys import unpack_bits

    K = int(float(args.keys))
    rng = np.random.default_rng(1)
    print(f"threads {get_num_threads()}  keys {K:,}  rounds {args.rounds}")
    for n in args.bits:
        W = (n + 63) // 64
        keys = rng.integers(0, 2**64, (K, W), dtype=np.uint64)
        if n % 64:
            keys[:, -1] &= np.uint64((1 << (n % 64)) - 1)
        d = n.bit_length() - 1 if n & (n - 1) == 0 else 0
        ref = _phrase_sums_py(unpack_bits(keys[:1000], n).astype(np.uint8))
        assert np.array_equal(klz.phrase_sums(keys[:1000], n), ref), "kernel disagrees with the reference"
        kernels = {"phrase_sums": lambda: klz.phrase_sums(keys, n),
                   "complexity_ints": lambda: klz.complexity_ints(keys, n, d)}
        for name, fn in kernels.items():
            fn()
            wall = cpu = float("inf")
            for _ in range(args.rounds):
                w0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall = min(wall, time.perf_counter() - w0)
                cpu = min(cpu, time.process_time() - c0)
            print(f"n={n:4d} {name:16s} {K / wall:.3e} keys/s wall   {K / cpu:.3e} keys per CPU-s")


if __name__ == "__main__":
    main()
