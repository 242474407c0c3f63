"""Build time and peak memory of NNGP kernels on m sklearn digits (8x8): FCN vs CNN, with and without pooling.

Usage (the issue's figure is m = 1000)::

    OPENBLAS_NUM_THREADS=1 python bench/cnn_kernel.py --m 1000
    python bench/cnn_kernel.py --m 60 --rounds 1      # smoke size

Peak memory is the largest NumPy allocation high-water mark during one build (``tracemalloc``,
which sees NumPy's buffers), the output kernel (``8 m**2`` bytes) included.  Times are the best
of ``--rounds`` builds (wall clock, and the process's CPU time, the fairer figure on a shared
machine).  Each kernel is checked (symmetric, finite, positive diagonal) and, for
the smallest rows, against the unblocked composition of the layer maps.
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from fastpoly.gp import kernel
from fastpoly.model import parse

#: (label, architecture string): the FCN on the flattened images, CNNs on the images
ARCHS = (
    ("FCN 64-512-512-1", "64-512-512-1"),
    ("CNN 8x8x1-c16k3-c16k3-1 (flatten)", "8x8x1-c16k3-c16k3-1"),
    ("CNN 8x8x1-c16k3p-c16k3p-1 (same)", "8x8x1-c16k3p-c16k3p-1"),
    ("CNN 8x8x1-c16k3-c16k3-gap-1 (global pool)", "8x8x1-c16k3-c16k3-gap-1"),
    ("CNN 8x8x1-c16k3p-ap2-c16k3-1 (avg pool)", "8x8x1-c16k3p-ap2-c16k3-1"),
)


def digits(m: int) -> np.ndarray:
    """The first ``m`` sklearn digits as flat rows in [0, 1] (repeated if m > 1797)."""
    from sklearn.datasets import load_digits

    X = load_digits().data / 16.0
    return np.resize(X, (m, 64))


def measure(spec: str, X: np.ndarray, rounds: int, max_bytes: int) -> tuple[float, float, float, np.ndarray]:
    """``(best wall seconds, best CPU seconds, peak MiB, kernel)`` of ``kernel(spec, X)``."""
    arch = parse(spec, activation="relu", sigma_w=1.4, sigma_b=0.3)
    best, cpu, peak, K = float("inf"), float("inf"), 0.0, None
    for _ in range(rounds):
        tracemalloc.start()
        t, c = time.perf_counter(), time.process_time()
        K = kernel(arch, X, max_bytes=max_bytes)
        best = min(best, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
        peak = max(peak, tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
    assert K is not None and np.all(np.isfinite(K)) and np.array_equal(K, K.T) and np.all(np.diag(K) > 0)
    small = X[:5]
    np.testing.assert_allclose(kernel(arch, small), arch.nngp(small), rtol=1e-12)
    return best, cpu, peak, K


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=1000, help="number of digit images (default 1000)")
    p.add_argument("--rounds", type=int, default=1, help="builds per architecture (best time)")
    p.add_argument("--max-bytes", type=int, default=512 * 2**20, help="working-set budget of one block")
    a = p.parse_args()
    X = digits(a.m)
    print(f"m = {a.m} digits, block budget {a.max_bytes / 2**20:.0f} MiB, best of {a.rounds}")
    print(f"{'architecture':44s} {'wall s':>9s} {'CPU s':>9s} {'peak MiB':>9s}")
    for label, spec in ARCHS:
        t, c, mem, _ = measure(spec, X, a.rounds, a.max_bytes)
        print(f"{label:44s} {t:9.2f} {c:9.2f} {mem:9.1f}", flush=True)


if __name__ == "__main__":
    main()
