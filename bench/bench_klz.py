"""pytest-benchmark: the bit-parallel K_LZ kernel of the Numba backend on random keys.

Every benchmark also checks its result against the plain Python reference on a sample.  Under
``pytest bench --benchmark-disable`` each runs once on a reduced size (fast smoke test).  Full
figures (keys/s = keys / best time, in ``extra_info``)::

    NUMBA_NUM_THREADS=2 python -m pytest bench/bench_klz.py --benchmark-min-rounds=5

Other processes share the cores: take the best of N rounds.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from fastpoly.analysis.complexity import _phrase_sums_py, critical_counts  # noqa: E402
from fastpoly.backends.numba import klz as kmod  # noqa: E402
from fastpoly.keys import unpack_bits  # noqa: E402


def _keys(request, n):
    disabled = request.config.getoption("benchmark_disable", False)
    K = 10_000 if disabled else 1_000_000
    W = (n + 63) // 64
    keys = np.random.default_rng(1).integers(0, 2**64, size=(K, W), dtype=np.uint64)
    if n % 64:
        keys[:, -1] &= np.uint64((1 << (n % 64)) - 1)
    return keys


def _record(benchmark, K):
    if benchmark.stats:
        benchmark.extra_info["keys_per_s"] = K / benchmark.stats.stats.min


@pytest.mark.parametrize("n", [64, 100, 128])
def test_klz_phrase_sums(benchmark, request, n):
    """c(s) + c(reversed s) of random n-bit keys."""
    keys = _keys(request, n)
    kmod.phrase_sums(keys[:64], n)  # compile / load from cache outside the timing
    out = benchmark.pedantic(kmod.phrase_sums, args=(keys, n), rounds=5, iterations=1)
    _record(benchmark, keys.shape[0])
    assert np.array_equal(out[:500], _phrase_sums_py(unpack_bits(keys[:500], n)))


def test_klz_complexity_ints_128(benchmark, request):
    """Phrase sums, T and critical inputs of random 7-input Boolean functions in one pass."""
    keys = _keys(request, 128)
    kmod.complexity_ints(keys[:64], 128, 7)
    sums, t, crit = benchmark.pedantic(kmod.complexity_ints, args=(keys, 128, 7), rounds=5, iterations=1)
    _record(benchmark, keys.shape[0])
    assert np.array_equal(sums[:500], _phrase_sums_py(unpack_bits(keys[:500], 128)))
    assert np.array_equal(t[:500], unpack_bits(keys[:500], 128).sum(axis=1))
    assert np.array_equal(crit[:500], critical_counts(keys[:500], 128))
