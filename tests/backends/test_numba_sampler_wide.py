"""The Numba sampler on wide layers (8-neuron blocks, rows in chunks): bit for bit the NumPy reference.

Wide layers (fan-in and fan-out at least ``WIDE_MIN``) take :func:`fastpoly.backends.numba.sampler.dense_rows_w`'s
8-neuron x 32-row register blocks over chunks of ``WIDE_ROWS`` rows where the CPU has AVX-512; the tests force
both schedules on real inputs (scikit-learn's 8x8 digits): a fan-out that is not a multiple of 8 (the 4-, 2-
and 1-neuron blocks take the rest), more rows than a chunk, train rows (rejection) and key rows.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import fastpoly  # noqa: E402
from fastpoly.backends.numba.sampler import WIDE_MIN, WIDE_ROWS, prepare  # noqa: E402
from fastpoly.backends.reference import sample_keys_reference  # noqa: E402
from fastpoly.plan import make_plan  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    return (d.data[:300] / 16.0).astype(np.float32), (d.target[:300] >= 5).astype(np.uint8)


CASES = {
    "64-150-70-1-relu": (fastpoly.MLP(64, (150, 70), sigma_b=0.1), None),
    "64-96-96-1-tanh-cond": (fastpoly.MLP(64, (96, 96), "tanh"), 40),
    "64-128-1-nobias-uniform": (fastpoly.MLP(64, (128,), bias=False, weights="uniform"), None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_wide_sampler_both_schedules_bit_identical(digits, name):
    mlp, n_train = CASES[name]
    X, y = digits
    assert max(mlp.widths[1:-1]) >= WIDE_MIN and X.shape[0] > WIDE_ROWS
    train = None if n_train is None else (np.arange(n_train), y[:n_train])
    plan = make_plan(mlp, X, 5, train) if train is not None else make_plan(mlp, X, 5)
    ref = sample_keys_reference(plan, 7, 13, margins=True)
    for wide in (True, False):
        pp = prepare(plan, wide=wide)
        assert pp.net.wide is wide
        keys, acc, marg = pp.run(7, 6, 2, early_exit=False, want_margins=True)
        assert np.array_equal(acc, ref.accepted)
        assert np.array_equal(keys, ref.keys)
        assert np.array_equal(marg.view(np.uint32), ref.margins.view(np.uint32))
