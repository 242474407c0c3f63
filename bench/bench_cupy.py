"""pytest-benchmark timings of the cupy backend (GPU only; skipped without one).

Every benchmark first checks its result against the NumPy reference on at most 2,000 samples
or rows (exactly for keys and counts, within the tolerance table for evaluation): a larger
NumPy reference would take most of a device call's time.  GPU times come from CUDA events
recorded on the stream the backend's work runs on (its non-blocking stream -- events on
the null stream would not be ordered with that work and would measure wall time):

* ``kernel``: the sampler kernel alone (one count-mode launch into preallocated buffers),
* ``count_range``: launches + sort + run-length + copies + host merge (wall time too).

    python -m pytest bench/bench_cupy.py --benchmark-json out.json
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import fastpoly
from fastpoly import MLP, make_plan
from fastpoly.backends.cuda import source as src
from fastpoly.backends.reference import count_range_reference, sample_keys_reference
from fastpoly.tolerances import assert_close_to_reference

try:
    from fastpoly.backends.cuda.backend import CupyBackend

    _OK, _WHY = CupyBackend().availability()
except Exception as exc:  # pragma: no cover
    _OK, _WHY = False, repr(exc)
if not _OK:
    pytest.skip(f"cupy backend unavailable: {_WHY}", allow_module_level=True)

pytestmark = pytest.mark.gpu
ANCHOR = MLP(7, (40, 40))


def stream_seconds(be, fn, repeat=3):
    """Seconds per call of ``fn`` between CUDA events on the backend's own stream (after one warm-up)."""
    dev = be._device()
    cp = dev.cp
    stream = dev.stream()
    fn()
    stream.synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record(stream)
    for _ in range(repeat):
        fn()
    end.record(stream)
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end) / 1e3 / repeat


def kernel_only(be, plan, n):
    """A closure launching the count-mode sampler once over n samples into preallocated buffers."""
    dev = be._device()
    d = be._plan_data(plan)
    W = plan.n_words
    stats = dev.zeros(src.STATS_WORDS, np.uint64)
    bkeys = dev.empty((n, W), np.uint64)
    bidx = dev.empty(n, np.uint64)
    d8, df, d64 = dev.zeros(1, np.uint8), dev.zeros(1, np.float32), dev.zeros(1, np.uint64)

    def run():
        # the reset must run on the backend's (non-blocking) stream, ordered before the launch: on the
        # legacy default stream it could land after the kernel started, and a stale append count would
        # let the appends write past bkeys
        with dev.stream():
            stats.fill(0)
        be._launch(d, src.MODE_COUNT, plan.seed, 0, n, [d64, d8, df, bkeys, bidx, stats])

    return run


def _check_counts(be, plan, n=2000):
    ref = count_range_reference(plan, 0, n)
    got = be.count_range(plan, 0, n)
    assert (got.n_samples, got.n_accepted) == (ref.n_samples, ref.n_accepted)
    assert np.array_equal(got.keys, ref.keys) and np.array_equal(got.counts, ref.counts)
    assert np.array_equal(got.first_index, ref.first_index)


@pytest.mark.parametrize("train", [None, "cond64"], ids=["prior", "cond64"])
def test_count_anchor(benchmark, train):
    """7-40-40-1 ReLU on the 128 Boolean inputs, exact counting (goal: >= 7e7 samples/s on an H100)."""
    tr = None
    if train:
        rng = np.random.default_rng(0)
        rows = rng.choice(128, 64, replace=False)
        tr = (rows, rng.integers(0, 2, 64))
    plan = make_plan(ANCHOR, None, seed=1, train=tr)
    be = CupyBackend()
    _check_counts(be, plan)
    n = 1 << 25
    tk = stream_seconds(be, kernel_only(be, plan, n))
    tc = stream_seconds(be, lambda: be.count_range(plan, 0, n), repeat=1)
    t0 = time.perf_counter()
    res = be.count_range(plan, 0, n)
    wall = time.perf_counter() - t0
    assert res.n_samples == n and int(res.counts.sum()) == res.n_accepted
    benchmark.extra_info.update(kernel_samples_per_s=n / tk, count_range_samples_per_s_events=n / tc,
                                count_range_samples_per_s_wall=n / wall, n=n, device=be.describe())
    print(f"\n{plan.mlp.spec} {train or 'prior'}: kernel {n / tk:,.0f}/s, count_range {n / tc:,.0f}/s (events), "
          f"{n / wall:,.0f}/s (wall)")
    benchmark.pedantic(be.count_range, args=(plan, 0, n), rounds=2, iterations=1)


def test_sample_keys_anchor(benchmark):
    plan = make_plan(ANCHOR, None, seed=2)
    be = CupyBackend()
    got = be.sample_keys(plan, 2**32 - 500, 2**32 + 500, margins=True)
    ref = sample_keys_reference(plan, 2**32 - 500, 2**32 + 500, margins=True)
    assert np.array_equal(got.keys, ref.keys) and np.array_equal(got.margins.view(np.uint32),
                                                                 ref.margins.view(np.uint32))
    n = 1 << 22
    t = stream_seconds(be, lambda: be.sample_keys(plan, 0, n))
    benchmark.extra_info.update(samples_per_s_events=n / t, n=n)
    benchmark.pedantic(be.sample_keys, args=(plan, 0, n), rounds=2, iterations=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_poly_evaluate(benchmark, dtype):
    from fastpoly.poly.structured import SparseLayer, StructuredNetwork, evaluate_structured_reference

    rng = np.random.default_rng(0)
    widths = (8, 64, 64, 1)
    layers = [SparseLayer.from_dense(rng.standard_normal((fo, fi)), rng.standard_normal(fo),
                                     "softplus" if i < 2 else "identity")
              for i, (fi, fo) in enumerate(zip(widths[:-1], widths[1:]))]
    snet = StructuredNetwork(layers)
    X = rng.uniform(-1, 1, (1 << 20, 8))
    be = CupyBackend()
    got = be.evaluate(snet, X[:2000], dtype)
    assert_close_to_reference(got, evaluate_structured_reference(snet, X[:2000], dtype), dtype)
    t = stream_seconds(be, lambda: be.evaluate(snet, X, dtype))
    benchmark.extra_info.update(rows_per_s_events=X.shape[0] / t, rows=X.shape[0])
    benchmark.pedantic(be.evaluate, args=(snet, X, dtype), rounds=2, iterations=1)


def test_sample_api_end_to_end(benchmark):
    """fastpoly.sample on the cupy backend, host merge included (what users see)."""
    n = 1 << 24
    small = fastpoly.sample("7-40-40-1", n_samples=2000, seed=3, backend="cupy", progress=False)
    ref = fastpoly.sample("7-40-40-1", n_samples=2000, seed=3, backend="numpy", progress=False)
    assert np.array_equal(small.keys, ref.keys) and np.array_equal(small.counts, ref.counts)
    res = benchmark.pedantic(fastpoly.sample, args=("7-40-40-1",), kwargs=dict(n_samples=n, seed=3, backend="cupy",
                                                                              progress=False), rounds=1, iterations=1)
    assert res.n_samples == n and int(res.counts.sum()) == res.n_accepted
