"""pytest-benchmark: the NumPy reference sampler and the float32 math (benchmarks also check results)."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly.backends.reference import sample_keys_reference
from fastpoly.stream import fmath, rng


@pytest.fixture(scope="module")
def plan():
    return fastpoly.make_plan("7-40-40-1")


def test_reference_sampler_7_40_40_1(benchmark, plan):
    b = benchmark(sample_keys_reference, plan, 0, 64)
    assert b.keys.shape == (64, 2)


def test_reference_count_range(benchmark, plan):
    batch = benchmark(fastpoly.get_backend("numpy").count_range, plan, 0, 64)
    assert batch.counts.sum() == 64


def test_stream_normals(benchmark):
    z = benchmark(rng.stream_normals, 0, np.arange(1000, dtype=np.uint64), 2001)
    assert z.shape == (1000, 2001)


def test_fma32_emulation(benchmark):
    g = np.random.default_rng(0)
    a, b, c = (g.standard_normal(10**6).astype(np.float32) for _ in range(3))
    out = benchmark(fmath.fma32, a, b, c)
    assert out.dtype == np.float32
