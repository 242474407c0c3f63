"""Wide MLPs on the Numba trainer (layers of 128 neurons and more): bit for bit the NumPy reference.

Wide layers take the 512-bit tiles (8 rows x 32 lanes, :func:`fastpoly.backends.numba.train_tiles.tiles_w`)
and minibatch-sized blocks for the fit check, the loss and the keys; narrow ones the 256-bit tiles.  Both
schedules are forced here on the same plans (``PreparedTrain(tp, wide=...)``) on real inputs (scikit-learn's
8x8 digits, 16 or 64 pixels): widths that are not multiples of 32 (lanes left to the 256-bit tiles), a last
minibatch of 7 rows (the 4-, 2- and 1-row tiles), every optimiser family and a smooth activation.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastpoly import MLP
from fastpoly.sgd import Recipe, make_train_plan
from fastpoly.sgd.reference import train_range_reference

pytest.importorskip("numba")
from support import assert_same_train

from fastpoly.backends.numba.train import PreparedTrain, train_range_numba  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    X = (d.data / 16.0).astype(np.float32)
    return X, (d.target >= 5).astype(np.uint8)


# name -> (arch, pixels, train points, recipe)
CASES = {
    "16-256-256-1-sgd-batch8": (MLP(16, (256, 256), sigma_b=0.1), 16, 23,
                                Recipe(lr=0.05, batch_size=8, max_epochs=3)),
    "64-200-136-1-adam-mse-batch8": (MLP(64, (200, 136)), 64, 23,
                                     Recipe(optimizer="adam", lr=0.001, loss="mse", batch_size=8, max_epochs=3,
                                            fit_threshold=0.5)),
    "16-160-1-nesterov-batch20": (MLP(16, (160,), bias=False), 16, 30,
                                  Recipe(lr=0.02, momentum=0.9, nesterov=True, batch_size=20, max_epochs=3)),
    "16-128-128-1-tanh-rmsprop-batch5": (MLP(16, (128, 128), activation="tanh"), 16, 12,
                                         Recipe(optimizer="rmsprop", lr=0.001, batch_size=5, max_epochs=2)),
    # a 512-neuron layer: its row stride gets 32 more lanes (the cache-set rule of _width_stride)
    "16-512-40-1-adagrad-batch6": (MLP(16, (512, 40)), 16, 14,
                                   Recipe(optimizer="adagrad", lr=0.01, batch_size=6, max_epochs=2)),
}


def test_row_strides_avoid_multiples_of_512():
    from fastpoly.backends.numba.train import _width_stride

    assert [_width_stride(n) for n in (1, 40, 136, 500, 505, 520)] == [8, 40, 136, 504, 512 + 32, 520]
    assert [_width_stride(n) for n in (512, 1000, 1024, 2048)] == [544, 1000, 1056, 2080]


@pytest.mark.parametrize("name", sorted(CASES))
def test_wide_mlp_numba_equals_reference_both_tile_schedules(digits, name):
    arch, pixels, m, recipe = CASES[name]
    X, y = digits
    Xs = np.ascontiguousarray(X[:60, :pixels])
    tp = make_train_plan(arch, Xs, (np.arange(m), y[:m]), 4, recipe)
    ref = train_range_reference(tp, 1, 3, params=True)
    for wide in (True, False):
        pt = PreparedTrain(tp, wide=wide)
        assert pt.net.wide is wide
        assert_same_train(ref, train_range_numba(tp, 1, 3, params=True, n_threads=2, prepared=pt))


def test_a_wide_run_that_fits_stops_by_the_rule(digits):
    """A run long enough to fit (the minibatch-sized fit-check blocks decide when): same status and epochs."""
    X, y = digits
    tp = make_train_plan(MLP(16, (128, 128)), np.ascontiguousarray(X[:40, :16]), (np.arange(10), y[:10]), 2,
                         Recipe(optimizer="adam", lr=0.01, batch_size=10, max_epochs=40, epochs_after_fit=2))
    ref = train_range_reference(tp, 0, 2, params=True)
    assert (ref.status == 0).all() and (ref.first_fit >= 1).all()
    for wide in (True, False):
        assert_same_train(ref, train_range_numba(tp, 0, 2, params=True, prepared=PreparedTrain(tp, wide=wide)))
