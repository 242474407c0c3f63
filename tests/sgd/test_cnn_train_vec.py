"""The vector paths of the Numba layer trainer, bit for bit against the NumPy reference.

Channel counts that are multiples of 8 take other code paths than the small networks of
``test_cnn_train.py``: pooling with eight channels per SIMD vector, convolutions whose tiles store
straight into the activations and read the output errors in place (no padded lanes), minibatches
with rows four at a time in the dense head (and a remainder), patch rows reused by the gradient.
Every output is compared exactly (keys, status, epochs, the bits of the loss and parameters),
including a run that diverges.
"""
from __future__ import annotations

import numpy as np
import pytest
from support import assert_same_train

from fastpoly.model.spec import parse
from fastpoly.sgd import Recipe, make_train_plan
from fastpoly.sgd.reference import train_range_reference

M_ROWS = 24

#: (architecture, recipe fields, init fields, batch size)
CASES = {
    "c8k3-ap2-sgd-b7": ("8x8x1-c8k3-ap2-1", dict(optimizer="sgd", lr=0.1), {}, 7),
    "c8k3-mp2-adam-b10": ("8x8x1-c8k3-mp2-1", dict(optimizer="adam", lr=0.01), {}, 10),
    "c8k3p-c16k3-gap-adam": ("8x8x1-c8k3p-c16k3-gap-1", dict(optimizer="adam", lr=0.01), {}, 6),
    "c8k2s2-ap2-dense-nesterov": ("8x8x1-c8k2s2-ap2-9-1", dict(optimizer="sgd", lr=0.05, momentum=0.9,
                                                              nesterov=True), {}, 9),
    "c8k3-c8k3-ap2-tanh-mse": ("8x8x1-c8k3-c8k3-ap2-1", dict(optimizer="sgd", lr=0.05, loss="mse"),
                               dict(activation="tanh"), 5),
    "c8k3-ap2-nobias-rmsprop": ("8x8x1-c8k3-ap2-1", dict(optimizer="rmsprop", lr=0.01), dict(bias=False), 8),
}


@pytest.fixture(scope="module")
def digits():
    """24 digit images (8, 8, 1) in [0, 1] and their parity labels."""
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    X = (d.images[:M_ROWS] / 16.0).astype(np.float32)[..., None]
    return X, (d.target[:M_ROWS] % 2).astype(np.uint8)


@pytest.mark.parametrize("case", list(CASES))
def test_numba_vector_paths_match_reference(digits, case):
    from fastpoly.backends.numba.train_cnn import train_range_layers

    spec, rec, init, bs = CASES[case]
    X, y = digits
    tp = make_train_plan(parse(spec, **init), X, (np.arange(20), y[:20]), 3,
                         Recipe(batch_size=bs, max_epochs=3, **rec))
    ref = train_range_reference(tp, 0, 3, params=True)
    assert_same_train(ref, train_range_layers(tp, 0, 3, params=True, n_threads=2))


def _diverging_plan(digits):
    X, y = digits
    return make_train_plan("8x8x1-c8k3-ap2-1", X, (np.arange(16), y[:16]), 0,
                           Recipe(optimizer="sgd", lr=1e30, batch_size=8, max_epochs=4, loss="mse"))


def test_numba_layer_trainer_reports_divergence_like_the_reference(digits):
    """A learning rate that overflows float32: status diverged (3) on both, same epoch and bits."""
    from fastpoly.backends.numba.train_cnn import train_range_layers

    tp = _diverging_plan(digits)
    ref = train_range_reference(tp, 0, 2, params=True)
    assert np.all(ref.status == 3) and np.all(ref.epochs < 4)
    assert_same_train(ref, train_range_layers(tp, 0, 2, params=True, n_threads=1))


@pytest.mark.cuda_emu
def test_cuda_layer_trainer_reports_divergence_like_the_reference(emu, digits):
    """The CUDA layer kernel ends a diverging run as the reference does (status 3, same epoch and bits)."""
    from fastpoly.backends.cuda.train import train_range_cuda

    tp = _diverging_plan(digits)
    ref = train_range_reference(tp, 0, 2, params=True)
    assert_same_train(ref, train_range_cuda(tp, 0, 2, params=True, device=emu.EmuDevice(), max_blocks=1))
