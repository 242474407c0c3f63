"""The CUDA P_SGD trainer on a GPU: bit for bit against the NumPy reference, and the anchor recipe at scale.

Needs a CUDA GPU and CuPy: skipped (with the reason) without them, and FAILS instead when
``FASTPOLY_REQUIRE_GPU=1`` (``ci/gpu-check.sh`` sets it).  The plans are those of
``tests/cuda/test_sgd_cuda_emu.py`` (which runs the same kernel through the CPU emulation in CI);
here the real compile path (NVRTC, no flush to zero), the hardware's arithmetic and scheduling
are checked.  The tiled wide-MLP kernel (``kernels/train_wide.cu``) likewise, on plans of
``tests/cuda/test_sgd_cuda_tiled_emu.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
from support import float_bits

from fastpoly.backends.cuda import source as src
from fastpoly.sgd.anchor import anchor_problem, anchor_recipe
from fastpoly.sgd.plan import make_train_plan
from fastpoly.sgd.reference import STATUS_FAILED, train_range_reference
from fastpoly.stream import fmath_train as sf

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("require_gpu")]


@pytest.fixture(scope="module")
def emu_plans():
    import test_sgd_cuda_emu as t  # the plans of the emulator tests (tests/ is on sys.path)

    return t


@pytest.mark.parametrize("name", ["sgd-ce-partial", "momentum", "nesterov-mse", "adam-thr", "adam-mse-min-epochs",
                                  "randX-W3-chunks-cross-words", "full-batch-40-nobias-identity",
                                  "deep-uniform-batch1-bigindex", "one-layer", "anchor-7-40-40-1-short"])
def test_train_bit_for_bit_on_gpu(emu_plans, name):
    from fastpoly.backends.cuda.train import train_range_cuda

    tp, ref = emu_plans._reference(name)
    emu_plans._same(ref, train_range_cuda(tp, ref.lo, ref.hi, params=True))
    # one warp per block and a single block: the same bits
    emu_plans._same(ref, train_range_cuda(tp, ref.lo, ref.hi, params=True, warps_per_block=1, max_blocks=1))


def test_leak_on_gpu(emu_plans):
    from fastpoly.backends.cuda.train import train_range_cuda

    tp = emu_plans._plan("sgd-ce-partial")[0].with_leak(3, [12, 3, 7], [0, 1, 2**62])
    emu_plans._same(train_range_reference(tp, 0, 7, params=True), train_range_cuda(tp, 0, 7, params=True))


@pytest.fixture(scope="module")
def tiled_plans():
    import test_sgd_cuda_tiled_emu as t  # the plans of the tiled trainer's emulator tests

    return t


@pytest.mark.parametrize("name", ["4-6-5-1-sgd-ce-partial-batch", "4-6-5-1-adam-mse-thr-max-epochs",
                                  "4-6-5-1-adagrad-one-row-minibatch", "3-70-33-1-adagrad-tanh",
                                  "3-9-7-1-rmsprop-tanh-nobias", "2-150-1-rows-over-a-tile",
                                  "20-200-150-1-adam-full-tiles"])
def test_tiled_trainer_bit_for_bit_on_gpu(tiled_plans, name):
    """The tiled wide-MLP kernel (kernels/train_wide.cu) forced with path="tiled": the reference's bits."""
    from fastpoly.backends.cuda.train import train_range_cuda

    tp, lo, hi = tiled_plans._plan(name)
    ref = train_range_reference(tp, lo, hi, params=True)
    tiled_plans._same(ref, train_range_cuda(tp, lo, hi, params=True, path="tiled"))
    tiled_plans._same(ref, train_range_cuda(tp, lo, hi, params=True, path="tiled", max_blocks=1))


def test_tiled_trainer_paper_network_on_gpu(tiled_plans):
    """784-1024-1024-1 (one run, 12 images, one epoch) takes the tiled kernel by itself; no FTZ in its PTX."""
    from fastpoly import MLP
    from fastpoly.backends.cuda import train as sc
    from fastpoly.backends.cuda.train_wide import WIDE_FILE, WIDE_KERNEL
    from fastpoly.sgd import Recipe

    g = np.random.default_rng(0)
    tp = make_train_plan(MLP(784, (1024, 1024)), g.random((16, 784), dtype=np.float32),
                         (np.arange(12), (g.random(12) < 0.5).astype(np.uint8)), 4,
                         Recipe(lr=0.01, batch_size=8, max_epochs=1))
    tiled_plans._same(train_range_reference(tp, 0, 1, params=True), sc.train_range_cuda(tp, 0, 1, params=True))
    dev = sc.default_device()
    dev.compile(WIDE_FILE, [WIDE_KERNEL])
    assert not src.ptx_ftz_instructions(dev.ptx[(WIDE_FILE, (WIDE_KERNEL,))])


def test_loss_math_on_gpu():
    from fastpoly.backends.cuda.train import loss_math_cuda

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(200000) * 30, rng.standard_normal(20000) * 1e-4,
                        [0.0, -0.0, 88.5, 89.5, -103.9, -110.0, 1e-40, -1e-40, 3e38, -3e38, np.inf, -np.inf]])
    x = x.astype(np.float32)
    got = loss_math_cuda(x)
    for i, w in enumerate([sf.exp32(x), sf.sigmoid32(x), sf.softplus32(x), sf.log1p32(np.abs(x))]):
        assert np.array_equal(float_bits(w), float_bits(got[i])), i


def test_ptx_has_no_ftz():
    from fastpoly.backends.cuda import train as sc

    dev = sc.default_device()
    dev.compile(sc.TRAIN_FILE, [sc.TRAIN_KERNEL, sc.MATH_KERNEL])
    ptx = dev.ptx[(sc.TRAIN_FILE, (sc.TRAIN_KERNEL, sc.MATH_KERNEL))]
    assert not src.ptx_ftz_instructions(ptx)


def test_anchor_recipe_full_runs_and_partitions():
    """Full anchor runs (m = 32, up to 3000 epochs): one bit for bit with the reference, 4096 sane, partition-free."""
    from fastpoly.backends.cuda.train import train_range_cuda

    arch, X, train, _ = anchor_problem(32)
    tp = make_train_plan(arch, X, train, 0, anchor_recipe(1))
    big = train_range_cuda(tp, 0, 4096, params=False)
    ref = train_range_reference(tp, 0, 1)  # ~70 epochs: a few seconds
    for f in ("keys", "init_keys", "status", "first_fit", "epochs"):
        assert np.array_equal(getattr(big, f)[:1], getattr(ref, f)), f
    assert np.array_equal(float_bits(big.loss[:1]), float_bits(ref.loss))
    assert np.mean(big.status != STATUS_FAILED) > 0.99
    assert 20 < big.epochs.mean() < 300
    part = train_range_cuda(tp, 1000, 1100)
    for f in ("keys", "init_keys", "status", "first_fit", "epochs", "loss"):
        assert np.array_equal(getattr(part, f), getattr(big, f)[1000:1100]), f
