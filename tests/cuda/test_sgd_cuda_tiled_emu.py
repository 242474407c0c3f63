"""The tiled wide-MLP CUDA trainer (``kernels/train_wide.cu``) in the CPU emulation, bit for bit the reference.

One thread block (256 threads) trains one run: the minibatch products are shared-memory-tiled
matrix products (output tiles of 128 x 64, k in chunks of 16), every output element one float32
FMA chain in the reference's order.  Small MLPs are forced down this path with
``train_range_cuda(..., path="tiled")``; their widths are not multiples of the tiles (partial
tiles in rows, columns and k), the products of 2-130-1 span several column tiles and of 3-70-33-1
a partial one, and 2-150-1 with batch 140 has more minibatch rows than a row tile; the output layer's
products (one column, or one row) and those of a one-row minibatch run as vector products.  Every output is
compared exactly with :func:`~fastpoly.sgd.reference.train_range_reference`: keys, initial keys,
status, first-fit epoch, epochs, the bits of the final loss and of the parameters.
"""
from __future__ import annotations

import numpy as np
import pytest
from support import assert_same_train

from fastpoly import MLP, boolean_inputs
from fastpoly.backends.cuda.train import train_range_cuda
from fastpoly.model import parse
from fastpoly.sgd import Recipe, make_train_plan
from fastpoly.sgd.reference import (
    STATUS_DIVERGED,
    STATUS_FAILED,
    STATUS_MAX_EPOCHS,
    STATUS_STOPPED,
    train_range_reference,
)

pytestmark = pytest.mark.cuda_emu

X4 = boolean_inputs(4)
ROWS = np.array([3, 0, 7, 12, 5, 9, 14, 1])
LABELS = ((ROWS >> 1) & 1).astype(np.uint8)


def _X(m, n, seed):
    return np.random.default_rng(seed).standard_normal((m, n)).astype(np.float32)


def _train(m_rows, m, seed):
    rng = np.random.default_rng(seed)
    return rng.choice(m_rows, m, replace=False), rng.integers(0, 2, m).astype(np.uint8)


# name -> (arch, X, train, seed, recipe, lo, hi)
PLANS = {
    "4-6-5-1-sgd-ce-partial-batch": ("4-6-5-1", X4, (ROWS, LABELS), 3,
                                     Recipe(lr=0.1, batch_size=3, max_epochs=12, epochs_after_fit=1), 0, 3),
    "4-6-5-1-momentum": ("4-6-5-1", X4, (ROWS, LABELS), 3,
                         Recipe(lr=0.05, momentum=0.9, batch_size=4, max_epochs=8), 0, 2),
    # runs that fit (status stopped after 3 more epochs) and one that fails; fit checks in chunks of 3 rows
    "4-6-5-1-nesterov-after-fit-stops": ("4-6-5-1", X4, (ROWS, LABELS), 3,
                                         Recipe(lr=0.2, momentum=0.5, nesterov=True, batch_size=3, max_epochs=20,
                                                epochs_after_fit=3), 0, 3),
    "4-6-5-1-nesterov-mse-full-batch": ("4-6-5-1", X4, (ROWS, LABELS), 3,
                                        Recipe(lr=0.2, momentum=0.5, nesterov=True, loss="mse", batch_size=8,
                                               max_epochs=6, fit_threshold=0.5), 0, 2),
    # fitted runs that reach max_epochs (epochs_after_fit 30) next to failed ones
    "4-6-5-1-adam-mse-thr-max-epochs": ("4-6-5-1", X4, (ROWS, LABELS), 3,
                                        Recipe(optimizer="adam", lr=0.05, loss="mse", batch_size=5, max_epochs=14,
                                               epochs_after_fit=30, fit_threshold=0.5), 2, 6),
    # m = 8, batch 7: a one-row last minibatch (its products are vector products) and one-row fit chunks
    "4-6-5-1-adagrad-one-row-minibatch": ("4-6-5-1", X4, (ROWS, LABELS), 2,
                                          Recipe(optimizer="adagrad", lr=0.1, batch_size=7, max_epochs=6), 0, 2),
    "3-70-33-1-adagrad-tanh": (MLP(3, (70, 33), activation="tanh"), _X(40, 3, 1), _train(40, 21, 2), 5,
                               Recipe(optimizer="adagrad", lr=0.05, batch_size=8, max_epochs=3), 0, 2),
    "3-9-7-1-rmsprop-tanh-nobias": (MLP(3, (9, 7), activation="tanh", bias=False), _X(30, 3, 1),
                                    (np.arange(12), (np.arange(12) % 3 == 0).astype(np.uint8)), 5,
                                    Recipe(optimizer="rmsprop", lr=0.01, batch_size=4, max_epochs=4), 0, 2),
    "3-9-7-1-rmsprop-momentum-eps-outside-sqrt": (MLP(3, (9, 7)), _X(30, 3, 2),
                                                   (np.arange(12), (np.arange(12) % 2 == 0).astype(np.uint8)), 6,
                                                   Recipe(optimizer="rmsprop", lr=0.01, momentum=0.5,
                                                          eps_in_sqrt=False, batch_size=5, max_epochs=4), 0, 2),
    "2-130-1-sgd-relu-W2-keys": (MLP(2, (130,)), _X(140, 2, 3), _train(140, 10, 4), 7,
                                 Recipe(lr=0.05, batch_size=4, max_epochs=3), 0, 2),
    "2-150-1-rows-over-a-tile": (MLP(2, (150,), activation="erf"), _X(150, 2, 5), _train(150, 140, 6), 2,
                                 Recipe(optimizer="adam", lr=0.01, batch_size=140, max_epochs=2), 0, 1),
    # full tiles: minibatches of 128 rows, several 64-column tiles and 16-wide k chunks in every product
    "20-200-150-1-adam-full-tiles": (MLP(20, (200, 150)), _X(300, 20, 7), _train(300, 256, 8), 4,
                                     Recipe(optimizer="adam", lr=0.01, batch_size=128, max_epochs=2), 0, 1),
    "4-6-5-1-uniform-sigmoid": (MLP(4, (6, 5), activation="sigmoid", weights="uniform"), X4, (ROWS, LABELS), 1,
                                Recipe(lr=0.3, batch_size=3, max_epochs=5), 0, 2),
    "4-6-5-1-truncated-normal": (parse("4-6-5-1", weights="truncated_normal"), X4, (ROWS, LABELS), 4,
                                 Recipe(lr=0.1, batch_size=3, max_epochs=5), 0, 2),
}


def _plan(name):
    arch, X, train, seed, recipe, lo, hi = PLANS[name]
    return make_train_plan(arch, X, train, seed, recipe), lo, hi


@pytest.mark.parametrize("name", sorted(PLANS))
def test_small_mlp_forced_down_the_tiled_path(emu, name):
    tp, lo, hi = _plan(name)
    ref = train_range_reference(tp, lo, hi, params=True)
    dev = emu.EmuDevice()
    assert_same_train(ref, train_range_cuda(tp, lo, hi, params=True, device=dev, path="tiled", max_blocks=1))
    assert {x[0] for x in dev.launches} == {"fastpoly_train_wide"}


def test_the_plans_cover_every_ending():
    """The forced plans end in every way but divergence (which test_diverging_runs covers)."""
    seen = set()
    for name in PLANS:
        tp, lo, hi = _plan(name)
        seen |= set(train_range_reference(tp, lo, hi).status.tolist())
    assert {STATUS_STOPPED, STATUS_MAX_EPOCHS, STATUS_FAILED} <= seen


def test_several_blocks_and_launches(emu):
    """Runs spread over 3 blocks, and over launches of 2 runs: the same bits as one block."""
    tp, _, _ = _plan("4-6-5-1-sgd-ce-partial-batch")
    ref = train_range_reference(tp, 5, 12, params=True)
    assert_same_train(ref, train_range_cuda(tp, 5, 12, params=True, device=emu.EmuDevice(), path="tiled", max_blocks=3))
    assert_same_train(ref, train_range_cuda(tp, 5, 12, params=True, device=emu.EmuDevice(order="reverse"), path="tiled",
                                max_runs_per_launch=2))


def test_grid_capped_by_device_memory(emu):
    """The scratch of all blocks takes at most half the free device memory: a small device gets a small grid."""
    from fastpoly.backends.cuda.train_wide import PreparedWide

    tp, _, _ = _plan("3-70-33-1-adagrad-tanh")
    per_block = PreparedWide(tp, emu.EmuDevice(), None)
    nbytes = 4 * (per_block.per_block_f + per_block.per_block_i)
    dev = emu.EmuDevice(memory=5 * nbytes)  # half of it: 2 blocks
    ref = train_range_reference(tp, 0, 5, params=True)
    assert_same_train(ref, train_range_cuda(tp, 0, 5, params=True, device=dev, path="tiled"))
    assert [x[1][0] for x in dev.launches] == [2]


def test_diverging_runs(emu):
    """A huge learning rate: parameters overflow, the run ends diverged at the epoch's check."""
    tp = make_train_plan("4-6-5-1", X4, (ROWS, LABELS), 3, Recipe(lr=1e30, batch_size=3, max_epochs=6))
    ref = train_range_reference(tp, 0, 3, params=True)
    assert np.any(ref.status == STATUS_DIVERGED)
    assert_same_train(ref, train_range_cuda(tp, 0, 3, params=True, device=emu.EmuDevice(), path="tiled", max_blocks=2))


def test_leaked_callback_rule(emu):
    tp0, _, _ = _plan("4-6-5-1-nesterov-after-fit-stops")
    tp = tp0.with_leak(3, [12, 3, 7], [0, 1, 2**62])
    ref = train_range_reference(tp, 0, 6, params=True)
    assert not np.array_equal(ref.epochs, train_range_reference(tp0, 0, 6).epochs)  # the leak changed some runs
    assert_same_train(ref, train_range_cuda(tp, 0, 6, params=True, device=emu.EmuDevice(), path="tiled", max_blocks=2))


def test_a_wide_mlp_takes_the_tiled_path_by_itself(emu):
    """2-300-300-1 with Adam needs more shared memory per run than a block has: ``auto`` picks the tiled kernel."""
    tp = make_train_plan(MLP(2, (300, 300)), _X(6, 2, 2), (np.arange(4), np.array([0, 1, 1, 0])), 9,
                         Recipe(optimizer="adam", lr=0.01, batch_size=3, max_epochs=1))
    ref = train_range_reference(tp, 0, 1, params=True)
    dev = emu.EmuDevice()
    assert_same_train(ref, train_range_cuda(tp, 0, 1, params=True, device=dev))
    assert [x[0] for x in dev.launches] == ["fastpoly_train_wide"]
    with pytest.raises(ValueError, match="path"):
        train_range_cuda(tp, 0, 1, device=emu.EmuDevice(), path="wide")


def test_the_paper_network_784_1024_1024_1(emu):
    """The issue's MNIST-sized FCN itself (12 train images, batch 8, one epoch): ``auto`` takes the tiled kernel."""
    g = np.random.default_rng(0)
    tp = make_train_plan(MLP(784, (1024, 1024)), g.random((16, 784), dtype=np.float32),
                         (np.arange(12), (g.random(12) < 0.5).astype(np.uint8)), 4,
                         Recipe(lr=0.01, batch_size=8, max_epochs=1))
    ref = train_range_reference(tp, 0, 1, params=True)
    dev = emu.EmuDevice()
    assert_same_train(ref, train_range_cuda(tp, 0, 1, params=True, device=dev))
    assert [x[0] for x in dev.launches] == ["fastpoly_train_wide"]


@pytest.mark.parametrize("width, kernel", [(128, "fastpoly_train_wide"), (20, "fastpoly_train_layers")],
                         ids=["flatten-128-tiled", "flatten-20-layers"])
def test_auto_routes_flatten_dense_by_width(emu, width, kernel):
    """Images flattened into dense layers: the tiled kernel from 128 neurons on, the layer kernel below."""
    arch = parse(f"3x3x1-{width}-1")
    assert [layer.kind for layer in arch.layers][0] == "flatten"
    X = _X(8, 9, 2).reshape(8, 3, 3, 1)
    tp = make_train_plan(arch, X, (np.arange(6), np.array([0, 1, 1, 0, 1, 0], np.uint8)), 2,
                         Recipe(lr=0.05, batch_size=4, max_epochs=3))
    dev = emu.EmuDevice()
    assert_same_train(train_range_reference(tp, 0, 2, params=True), train_range_cuda(tp, 0, 2, params=True, device=dev))
    assert {x[0] for x in dev.launches} == {kernel}


def test_tiled_path_refuses_convolutions(emu):
    arch = parse("4x4x1-c2k3-1")
    X = _X(6, 16, 1).reshape(6, 4, 4, 1)
    tp = make_train_plan(arch, X, (np.arange(4), np.array([0, 1, 1, 0])), 1, Recipe(lr=0.1, max_epochs=1))
    with pytest.raises(ValueError, match="dense and elementwise"):
        train_range_cuda(tp, 0, 1, device=emu.EmuDevice(), path="tiled")


def test_nvrtc_ptx_of_train_wide_cu():
    """The backend's compile path (NVRTC, --ftz=false): no flush-to-zero, float32 FMAs, no tensor-core instructions."""
    import re

    from fastpoly.backends.cuda import source as src
    from fastpoly.backends.cuda.train_wide import WIDE_FILE, WIDE_KERNEL

    path = src.find_nvrtc_library()
    if path is None:
        pytest.skip("libnvrtc not found (set FASTPOLY_NVRTC_LIB or pip install nvidia-cuda-nvrtc)")
    text, lowered = src.build_ptx(WIDE_FILE, [WIDE_KERNEL], src.CtypesNVRTC(path), arch="90")
    code = [ln.split("//")[0] for ln in text.splitlines()]
    assert src.ptx_ftz_instructions(text) == []
    assert not [ln for ln in code if ".ftz" in ln]
    assert not [ln for ln in code if re.search(r"\b(mma|wmma|wgmma)\.|\.tf32\b", ln)]
    assert len(re.findall(r"\bfma\.rn\.f32\b", text)) >= 3 * 8 * 4 * 16  # three products' unrolled register tiles
    assert set(lowered) == {WIDE_KERNEL}
