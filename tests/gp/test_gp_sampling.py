"""GP function sampling: Philox stream 3, NumPy == Numba bit for bit, exact zero rows, merge property."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastpoly
from fastpoly.gp import kernel, orthant, sample
from fastpoly.gp.sampling import GP_STREAM, gp_factor, gp_values
from fastpoly.stream.rng import stream_normals

ARCH = fastpoly.MLP(7, (40, 40))


def test_draws_are_the_stream_3_normals():
    g = gp_values(np.eye(5), seed=9, indices=np.arange(3, 7), backend="numpy")
    assert GP_STREAM == 3
    assert np.array_equal(g, stream_normals(9, np.arange(3, 7), 5, stream=3).astype(np.float64))
    assert not np.array_equal(g, stream_normals(9, np.arange(3, 7), 5, stream=0).astype(np.float64))


@pytest.mark.parametrize("kw", [{}, {"sigma_b": 0.0}, {"activation": "identity"}])
def test_numpy_and_numba_values_are_bit_identical(kw):
    pytest.importorskip("numba")
    K = kernel(fastpoly.MLP(7, (40, 40), **kw))
    F, _rows, _info = gp_factor(K)
    idx = np.arange(1000, 1300, dtype=np.uint64)
    a = gp_values(F, 5, idx, "numpy")
    b = gp_values(F, 5, idx, "numba")
    assert a.dtype == b.dtype == np.float64 and np.array_equal(a, b)


def test_counts_identical_across_backends_and_batches():
    pytest.importorskip("numba")
    a = sample(ARCH, None, 3000, seed=4, backend="numpy", batch_size=700)
    b = sample(ARCH, None, 3000, seed=4, backend="numba")
    assert a == b and a.info["backend"] == "numpy" and b.info["backend"] == "numba"
    c = sample(ARCH, None, 1200, seed=4, backend="numba").merge(sample(ARCH, None, 1800, seed=4, start=1200))
    assert c == b


def test_constant_function_frequency_matches_the_orthant():
    c = sample(ARCH, None, 20000, seed=1)
    p = c.probability("1" * 128)
    t = orthant(kernel(ARCH), np.ones(128), seed=0)
    se = math.sqrt(p * (1 - p) / c.n_samples)
    assert abs(p - math.exp(t.log_p)) < 5 * (se + math.exp(t.log_p) * t.stderr)


def test_zero_variance_row_always_outputs_zero():
    c = sample(fastpoly.MLP(7, (40, 40), sigma_b=0.0), None, 2000, seed=3)
    assert c.meta["gp"]["zero_variance_rows"] == [0] and c.meta["gp"]["factor"] == "cholesky"
    assert np.all(c.keys[:, 0] & np.uint64(1) == 0)


def test_singular_kernel_uses_eigh_and_reports_rank():
    c = sample(fastpoly.MLP(7, (), activation="identity"), None, 2000, seed=3)
    g = c.meta["gp"]
    assert g["factor"] == "eigh" and g["rank"] == 8 and g["clipped_eigenvalues"] == 120
    assert c.n_samples == 2000 and c.counts.sum() == 2000


def test_meta_marks_the_infinite_width_limit():
    c = sample(ARCH, None, 10, seed=0)
    assert c.meta["arch"]["limit"] == "nngp" and c.meta["ranges"] == [[0, 10]]
    finite = fastpoly.sample(ARCH, None, 10, seed=0, backend="numpy", progress=False)
    with pytest.raises(ValueError, match="incompatible arch"):
        finite.merge(c)


@pytest.mark.parametrize("kw,msg", [
    ({"backend": "cupy"}, "cannot use backend .cupy.: no CUDA kernel"),
    ({"backend": "torch"}, "unknown backend"),
    ({"n_samples": 0}, "positive"),
    ({"seed": -1}, "seed"),
    ({"start": -2}, "start"),
    ({"K": np.eye(3)}, "shape"),
])
def test_bad_arguments_raise(kw, msg):
    args = {"n_samples": 10, "seed": 0}
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        sample(ARCH, None, **args)
