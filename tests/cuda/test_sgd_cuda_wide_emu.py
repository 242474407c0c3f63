"""Wide MLPs on the CUDA layer kernel: per-run state in global memory, bit for bit the reference.

A run of the warp-per-run kernel (``kernels/train.cu``) lives in one block's shared memory; an MLP
too wide for it (784-1024-1024-1, or here 2-300-300-1 with Adam) trains on the tiled kernel by
default (``kernels/train_wide.cu``, ``tests/cuda/test_sgd_cuda_tiled_emu.py``); the generic layer
kernel (``kernels/train_cnn.cu``, one thread per run, scratch in global memory) stays forceable with
``path="layers"``.  The CPU emulation (``tests/cuda_emu``) runs it on small nets and on the wide
2-300-300-1; the bits are the NumPy reference's.
"""
from __future__ import annotations

import numpy as np
import pytest
from support import assert_same_train

from fastpoly import MLP, boolean_inputs
from fastpoly.backends.cuda.train import train_range_cuda
from fastpoly.sgd import Recipe, make_train_plan
from fastpoly.sgd.reference import train_range_reference

pytestmark = pytest.mark.cuda_emu

X4 = boolean_inputs(4)
ROWS = np.array([3, 0, 7, 12, 5, 9, 14, 1])
LABELS = ((ROWS >> 1) & 1).astype(np.uint8)


def _X(m, n, seed):
    return np.random.default_rng(seed).standard_normal((m, n)).astype(np.float32)


# name -> (arch, X, train, seed, recipe, lo, hi)
PLANS = {
    "sgd-ce": ("4-6-5-1", X4, (ROWS, LABELS), 3, Recipe(lr=0.1, batch_size=3, max_epochs=12, epochs_after_fit=1),
               0, 3),
    "adam-mse-thr": ("4-6-5-1", X4, (ROWS, LABELS), 3,
                     Recipe(optimizer="adam", lr=0.05, loss="mse", batch_size=5, max_epochs=10, fit_threshold=0.5),
                     1, 4),
    "rmsprop-tanh-nobias": (MLP(3, (9, 7), activation="tanh", bias=False), _X(30, 3, 1),
                            (np.arange(12), (np.arange(12) % 3 == 0).astype(np.uint8)), 5,
                            Recipe(optimizer="rmsprop", lr=0.01, batch_size=4, max_epochs=4), 0, 2),
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_small_mlp_forced_down_the_wide_path(emu, name):
    arch, X, train, seed, recipe, lo, hi = PLANS[name]
    tp = make_train_plan(arch, X, train, seed, recipe)
    ref = train_range_reference(tp, lo, hi, params=True)
    assert_same_train(ref, train_range_cuda(tp, lo, hi, params=True, device=emu.EmuDevice(), path="layers", max_blocks=1))


def test_a_wide_mlp_on_the_layer_kernel(emu):
    """2-300-300-1 with Adam needs more shared memory per run than a block has; forced onto the layer kernel."""
    tp = make_train_plan(MLP(2, (300, 300)), _X(6, 2, 2), (np.arange(4), np.array([0, 1, 1, 0])), 9,
                         Recipe(optimizer="adam", lr=0.01, batch_size=2, max_epochs=1))
    ref = train_range_reference(tp, 0, 1, params=True)
    dev = emu.EmuDevice()
    assert_same_train(ref, train_range_cuda(tp, 0, 1, params=True, device=dev, path="layers"))
    assert [x[0] for x in dev.launches] == ["fastpoly_train_layers"]
    with pytest.raises(ValueError, match="shared memory"):
        train_range_cuda(tp, 0, 1, device=emu.EmuDevice(), path="warp")
    with pytest.raises(ValueError, match="path"):
        train_range_cuda(tp, 0, 1, device=emu.EmuDevice(), path="wide")
