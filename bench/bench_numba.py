"""pytest-benchmark: the Numba backend (fused sampler, counting, polynomial evaluation).

Every benchmark also checks its result.  Under ``pytest bench --benchmark-disable``
each runs once on a reduced size (fast smoke test).  Full figures::

    NUMBA_CACHE_DIR=/tmp/nbcache python -m pytest bench/bench_numba.py --benchmark-min-rounds=3

Throughput = work / best time; other processes share the cores, so take the best of N.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import fastpoly  # noqa: E402
from fastpoly.backends.counting import count_keys  # noqa: E402
from fastpoly.backends.reference import sample_keys_reference


@pytest.fixture(scope="module")
def nb():
    return fastpoly.get_backend("numba")


def _n(request, full, smoke):
    disabled = request.config.getoption("benchmark_disable", False)
    return smoke if disabled else full


def _warm(nb, plan):
    nb.count_range(plan, 0, 64)  # compile / load from cache outside the timing


def test_numba_sample_7_40_40_1(benchmark, nb, request):
    """7-40-40-1 ReLU on the 128 Boolean inputs, RNG + forward + counting (samples/s = n / time)."""
    plan = fastpoly.make_plan("7-40-40-1", None, 1)
    _warm(nb, plan)
    n = _n(request, 200_000, 2_000)
    batch = benchmark.pedantic(nb.count_range, args=(plan, 0, n), rounds=3, iterations=1)
    benchmark.extra_info["samples_per_s"] = n / benchmark.stats.stats.min if benchmark.stats else None
    assert batch.counts.sum() == n
    ref = sample_keys_reference(plan, 0, 32)
    assert np.array_equal(nb.sample_keys(plan, 0, 32).keys, ref.keys)


def test_numba_sample_train64(benchmark, nb, request):
    """Rejection with a 64-row train set (early exit after the train rows)."""
    rows = np.arange(0, 128, 2)
    labels = np.zeros(64, np.uint8)
    plan = fastpoly.make_plan("7-40-40-1", None, 1, (rows, labels))
    _warm(nb, plan)
    n = _n(request, 200_000, 2_000)
    batch = benchmark.pedantic(nb.count_range, args=(plan, 0, n), rounds=3, iterations=1)
    if benchmark.stats:
        benchmark.extra_info["samples_per_s"] = n / benchmark.stats.stats.min
    assert batch.n_samples == n and batch.counts.sum() == batch.n_accepted


def _zipf_keys(n, seed=0):
    g = np.random.default_rng(seed)
    r = (g.zipf(1.2, n) % 10_000_000).astype(np.uint64)
    keys = np.empty((n, 2), np.uint64)
    with np.errstate(over="ignore"):
        for w in range(2):
            x = r * np.uint64(0x9E3779B97F4A7C15) + np.uint64(w + 1)
            x ^= x >> np.uint64(31)
            keys[:, w] = x * np.uint64(0xBF58476D1CE4E5B9)
    u = g.random(n)
    keys[u < 0.15] = 0
    keys[(u >= 0.15) & (u < 0.3)] = np.uint64(2**64 - 1)
    return keys


@pytest.mark.parametrize("lanes", [1, 2], ids=lambda n: f"lanes={n}")
def test_numba_count_zipf_128bit(benchmark, request, lanes):
    """Counting 128-bit Zipf(1.2) keys, 30% on the two constant keys.

    keys/s = input keys / best wall time (of 5 rounds) of one full ``count_keys`` call, i.e.
    counting, merging the lanes and producing the sorted unique keys, counts and minimum indices.
    """
    from fastpoly.backends.numba.count import count_keys as nb_count

    n = _n(request, 4_000_000, 20_000)
    keys = _zipf_keys(n)
    idx = np.arange(n, dtype=np.uint64)
    nb_count(keys[:1000], idx[:1000], n_lanes=lanes)
    k, c, f = benchmark.pedantic(nb_count, args=(keys, idx), kwargs=dict(n_bits=128, n_lanes=lanes),
                                 rounds=5, iterations=1)
    if benchmark.stats:
        benchmark.extra_info["keys_per_s"] = n / benchmark.stats.stats.min
    assert c.sum() == n
    if n <= 20_000:
        kr, cr, fr = count_keys(keys, idx)
        assert np.array_equal(k, kr) and np.array_equal(c, cr) and np.array_equal(f, fr)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_poly_eval(benchmark, request, dtype):
    """Random 16-variable, degree-4, 50-term polynomial (tree, softplus) on 1e6 points."""
    poly = pytest.importorskip("fastpoly.poly")
    p = poly.random_polynomial(16, 4, 50, seed=0)
    net = poly.compile_polynomial(p, activation="softplus", construction="tree", dtype=dtype)
    n = _n(request, 1_000_000, 2_000)
    X = np.random.default_rng(0).uniform(-1, 1, (n, 16)).astype(dtype)
    fastpoly.evaluate(net, X[:10], backend="numba")
    y = benchmark.pedantic(fastpoly.evaluate, args=(net, X), kwargs=dict(backend="numba"),
                           rounds=3, iterations=1)
    yr = fastpoly.evaluate(net, X[:2000], backend="numpy")
    assert np.max(np.abs(y[:2000] - yr)) <= 0.05 * net.report().certified_error + 1e-5
