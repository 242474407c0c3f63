"""pytest-benchmark timings of the cupy backend (GPU only; skipped without one).

GPU times come from CUDA events through :func:`cupyx.profiler.benchmark`; each
benchmark also checks its result against the NumPy reference on a prefix.

    python -m pytest bench/bench_cupy.py --benchmark-json out.json
"""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly import MLP, make_plan
from fastpoly.backends.reference import count_range_reference

try:
    from fastpoly.backends.cuda.backend import CupyBackend

    _OK, _WHY = CupyBackend().availability()
except Exception as exc:  # pragma: no cover
    _OK, _WHY = False, repr(exc)
if not _OK:
    pytest.skip(f"cupy backend unavailable: {_WHY}", allow_module_level=True)

import cupyx.profiler  # noqa: E402

pytestmark = pytest.mark.gpu
ANCHOR = MLP(7, (40, 40))


def _gpu_rate(fn, n, n_repeat=3):
    res = cupyx.profiler.benchmark(fn, n_repeat=n_repeat, n_warmup=1)
    t = float(np.median(res.gpu_times[0]))
    return n / t, t


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
    ref = count_range_reference(plan, 0, 2000)
    got = be.count_range(plan, 0, 2000)
    assert np.array_equal(got.keys, ref.keys) and np.array_equal(got.counts, ref.counts)
    n = 1 << 25
    rate, t = _gpu_rate(lambda: be.count_range(plan, 0, n), n)
    benchmark.extra_info.update(samples_per_s_gpu_events=rate, n=n, device=be.describe())
    print(f"\n{plan.mlp.spec} {train or 'prior'}: {rate:,.0f} samples/s ({t:.3f} s for {n})")
    benchmark.pedantic(be.count_range, args=(plan, 0, n), rounds=2, iterations=1)


def test_sample_keys_anchor(benchmark):
    plan = make_plan(ANCHOR, None, seed=2)
    be = CupyBackend()
    n = 1 << 22
    rate, t = _gpu_rate(lambda: be.sample_keys(plan, 0, n), n)
    benchmark.extra_info.update(samples_per_s_gpu_events=rate, n=n)
    benchmark.pedantic(be.sample_keys, args=(plan, 0, n), rounds=2, iterations=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_poly_evaluate(benchmark, dtype):
    from fastpoly.poly.structured import SparseLayer, StructuredNetwork

    rng = np.random.default_rng(0)
    widths = (8, 64, 64, 1)
    layers = [SparseLayer.from_dense(rng.standard_normal((fo, fi)), rng.standard_normal(fo),
                                     "softplus" if i < 2 else "identity")
              for i, (fi, fo) in enumerate(zip(widths[:-1], widths[1:]))]
    snet = StructuredNetwork(layers)
    X = rng.uniform(-1, 1, (1 << 20, 8))
    be = CupyBackend()
    rate, t = _gpu_rate(lambda: be.evaluate(snet, X, dtype), X.shape[0])
    benchmark.extra_info.update(rows_per_s_gpu_events=rate, rows=X.shape[0])
    benchmark.pedantic(be.evaluate, args=(snet, X, dtype), rounds=2, iterations=1)


def test_sample_api_end_to_end(benchmark):
    """fastpoly.sample on the cupy backend, host merge included (what users see)."""
    n = 1 << 24
    res = benchmark.pedantic(fastpoly.sample, args=("7-40-40-1",), kwargs=dict(n_samples=n, seed=3, backend="cupy",
                                                                              progress=False), rounds=1, iterations=1)
    assert res.n_samples == n
