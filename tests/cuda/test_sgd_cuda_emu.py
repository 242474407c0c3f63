"""The CUDA P_SGD trainer (``kernels/train.cu``) run by the CPU emulation, bit for bit against the NumPy reference.

``fastpoly.backends.cuda.train.train_range_cuda(..., device=EmuDevice())`` runs the real kernel source
(compiled with g++ and the shim of ``tests/cuda_emu``: one fiber per CUDA thread, warp
collectives, poisoned dynamic shared memory) through the same host code as on a GPU: layout,
uploads, shared-memory plan, launch configuration, argument types (checked against the
kernel's parameters), downloads.  Every output is compared exactly: keys and init keys,
status, first-fit epoch, epochs, and the bits of the final loss and parameters.

Covered: SGD, momentum, Nesterov, Adam; cross-entropy and MSE; partial last minibatches,
full-batch training, runs that fail; the leaked-callback rule; no biases, identity, one
layer, three hidden layers, uniform weights; keys over several 64-bit words (chunks that
cross a word); run indices across 2**32 and a 64-bit seed; warps per block, grids, launch
splits and the emulator's reversed lane order; the loss math on special values.  What the
emulator cannot show (FTZ, real scheduling) is for ``tests/cuda/test_sgd_cuda.py`` on a GPU.
"""
from __future__ import annotations

import numpy as np
import pytest
from support import assert_same_train, float_bits

from fastpoly import MLP, boolean_inputs
from fastpoly.backends.cuda.train import loss_math_cuda, train_range_cuda
from fastpoly.sgd import Recipe, make_train_plan
from fastpoly.sgd.anchor import anchor_problem, anchor_recipe
from fastpoly.sgd.reference import STATUS_FAILED, STATUS_MAX_EPOCHS, STATUS_STOPPED, train_range_reference
from fastpoly.stream import fmath_train as sf

pytestmark = pytest.mark.cuda_emu

X4 = boolean_inputs(4)
ROWS = np.array([3, 0, 7, 12, 5, 9, 14, 1])
LABELS = ((ROWS >> 1) & 1).astype(np.uint8)


def _rng_X(m, n, seed):
    return np.random.default_rng(seed).standard_normal((m, n)).astype(np.float32)


def _rand_train(m_rows, m, seed):
    rng = np.random.default_rng(seed)
    rows = rng.choice(m_rows, m, replace=False)
    return rows, rng.integers(0, 2, m).astype(np.uint8)


# name -> (arch, X, train, seed, recipe, lo, hi)
PLANS = {
    "sgd-ce-partial": ("4-6-5-1", X4, (ROWS, LABELS), 3,
                       Recipe(lr=0.1, batch_size=3, max_epochs=40, epochs_after_fit=1), 0, 4),
    "momentum": ("4-6-5-1", X4, (ROWS, LABELS), 3, Recipe(lr=0.05, momentum=0.9, batch_size=4, max_epochs=30), 0, 4),
    "nesterov-mse": ("4-6-5-1", X4, (ROWS, LABELS), 3,
                     Recipe(lr=0.2, momentum=0.5, nesterov=True, loss="mse", batch_size=8, max_epochs=30,
                            epochs_after_fit=12, fit_threshold=0.5), 0, 3),
    "adam-thr": ("4-6-5-1", X4, (ROWS, LABELS), 3,
                 Recipe(optimizer="adam", lr=0.01, batch_size=5, max_epochs=30, fit_threshold=0.5), 0, 4),
    "adam-mse-min-epochs": ("4-6-5-1", X4, (ROWS, LABELS), 3,
                            Recipe(optimizer="adam", lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6, loss="mse",
                                   batch_size=3, max_epochs=25, min_epochs=12, fit_threshold=0.5), 2, 5),
    # a key of 3 words; batch 12 -> evaluation chunks of 12 rows cross the 64-bit words
    "randX-W3-chunks-cross-words": (MLP(3, (7, 4)), _rng_X(170, 3, 1), _rand_train(170, 26, 2), 5,
                                    Recipe(lr=0.05, momentum=0.3, batch_size=12, max_epochs=6), 0, 2),
    # full batch of 40 rows (more than a warp), no biases, identity activation
    "full-batch-40-nobias-identity": (MLP(3, (9,), bias=False, activation="identity"), _rng_X(100, 3, 3),
                                      _rand_train(100, 40, 4), 7, Recipe(lr=0.05, batch_size=64, max_epochs=8), 0, 2),
    # three hidden layers, uniform weights, batch 1, run indices across 2**32, a 64-bit seed
    "deep-uniform-batch1-bigindex": (MLP(3, (5, 4, 3), weights="uniform"), _rng_X(20, 3, 5), _rand_train(20, 6, 6),
                                     2**63 + 77, Recipe(optimizer="adam", lr=0.02, batch_size=1, max_epochs=5),
                                     2**32 - 2, 2**32 + 1),
    # one layer (logistic regression), sgd
    "one-layer": (MLP(4, ()), X4, (ROWS, LABELS), 11, Recipe(lr=0.5, batch_size=2, max_epochs=20), 0, 3),
    # the anchor architecture and recipe (7-40-40-1, m = 32, batch 8, threshold 0.5), 6 epochs at most
    "anchor-7-40-40-1-short": None,
}


def _plan(name):
    if name == "anchor-7-40-40-1-short":
        arch, X, train, _ = anchor_problem(32)
        return make_train_plan(arch, X, train, 0, anchor_recipe(1).replace(max_epochs=6)), 0, 2
    arch, X, train, seed, recipe, lo, hi = PLANS[name]
    return make_train_plan(arch, X, train, seed, recipe), lo, hi


_REF = {}


def _reference(name):
    if name not in _REF:
        tp, lo, hi = _plan(name)
        _REF[name] = (tp, train_range_reference(tp, lo, hi, params=True))
    return _REF[name]


@pytest.mark.parametrize("name", sorted(PLANS))
def test_train_bit_for_bit(emu, name):
    tp, ref = _reference(name)
    got = train_range_cuda(tp, ref.lo, ref.hi, params=True, device=emu.EmuDevice())
    assert_same_train(ref, got)


def test_recipes_reach_every_outcome(emu):
    """The plans above include runs that stop by the rule, that fail, and that run out of epochs fitting S."""
    seen = set()
    for name in ("sgd-ce-partial", "momentum", "nesterov-mse", "adam-thr", "adam-mse-min-epochs"):
        seen |= set(_reference(name)[1].status.tolist())
    assert {STATUS_STOPPED, STATUS_MAX_EPOCHS, STATUS_FAILED} <= seen
    b = _reference("adam-mse-min-epochs")[1]  # min_epochs binds: stopped at 12 after a first fit before
    assert np.any((b.status == STATUS_STOPPED) & (b.epochs == 12) & (b.first_fit < 12))


CONFIGS = {
    "1-warp-1-block": dict(warps_per_block=1, max_blocks=1),
    "3-warps-split-launches": dict(warps_per_block=3, max_runs_per_launch=2),
    "reverse-lanes-2-blocks": dict(warps_per_block=2, max_blocks=2, _order="reverse"),
}


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
def test_launch_configurations_and_partitions(emu, cfg):
    kw = dict(CONFIGS[cfg])
    order = kw.pop("_order", "forward")
    tp, ref = _reference("sgd-ce-partial")
    dev = emu.EmuDevice(order=order, sm_count=1)
    assert_same_train(ref, train_range_cuda(tp, ref.lo, ref.hi, params=True, device=dev, **kw))
    # any partition of the runs gives the same runs
    parts = [train_range_cuda(tp, a, b, device=dev, **kw) for a, b in ((0, 1), (1, 4))]
    for f in ("keys", "init_keys", "status", "first_fit", "epochs", "loss"):
        assert np.array_equal(np.concatenate([getattr(p, f) for p in parts]), getattr(ref, f)), f
    assert parts[0].params is None


def test_leaked_callback_rule(emu):
    """Runs after a worker's first run stop by that run's first-fit epoch (fastpoly.sgd.plan.run_rule)."""
    tp0 = make_train_plan("4-6-5-1", X4, (ROWS, LABELS), 3, Recipe(lr=0.1, batch_size=3, max_epochs=40,
                                                                     epochs_after_fit=1))
    tp = tp0.with_leak(3, [12, 3, 7], [0, 1, 2**62])
    ref = train_range_reference(tp, 0, 7, params=True)
    got = train_range_cuda(tp, 0, 7, params=True, device=emu.EmuDevice())
    assert_same_train(ref, got)
    plain = _reference("sgd-ce-partial")[1]
    assert not np.array_equal(ref.epochs[:4], plain.epochs)  # the leak changed some runs


def test_loss_math_bit_for_bit(emu):
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_normal(3000) * 20, rng.standard_normal(1000) * 1e-3,
                        [0.0, -0.0, 88.5, 89.5, -103.9, -110.0, 1e-40, -1e-40, 3e38, -3e38, np.inf, -np.inf,
                         15.9, -15.9, 0.5, -0.5]]).astype(np.float32)
    got = loss_math_cuda(x, device=emu.EmuDevice())
    want = [sf.exp32(x), sf.sigmoid32(x), sf.softplus32(x), sf.log1p32(np.abs(x))]
    for i, w in enumerate(want):
        assert np.array_equal(float_bits(w), float_bits(got[i])), i


def test_empty_range_and_errors(emu):
    tp, _ = _reference("sgd-ce-partial")
    b = train_range_cuda(tp, 5, 5, params=True, device=emu.EmuDevice())
    assert b.keys.shape == (0, tp.plan.n_words) and b.params.shape == (0, tp.plan.mlp.n_params)
    with pytest.raises(ValueError):
        train_range_cuda(tp, 0, 2, device=emu.EmuDevice(), warps_per_block=0)
    # deeper than the warp kernel's 16 layers: path="warp" refuses it, "auto" trains it on the tiled kernel
    deep = make_train_plan(MLP(2, (2,) * 17), None, (np.array([0, 1]), np.array([0, 1])), 0, Recipe(max_epochs=2))
    with pytest.raises(ValueError, match="at most 16 layers"):
        train_range_cuda(deep, 0, 1, device=emu.EmuDevice(), path="warp")
    assert_same_train(train_range_reference(deep, 0, 3, params=True),
                      train_range_cuda(deep, 0, 3, params=True, device=emu.EmuDevice()))
    # one warp's shared memory above the device's limit: the warp kernel refuses it (by default such a
    # wide MLP trains on the tiled kernel: test_sgd_cuda_tiled_emu.py)
    wide = make_train_plan(MLP(2, (300, 300)), None, (np.array([0, 1]), np.array([0, 1])), 0,
                           Recipe(optimizer="adam", max_epochs=1))
    with pytest.raises(ValueError, match="shared memory"):
        train_range_cuda(wide, 0, 1, device=emu.EmuDevice(), path="warp")


def test_layout_mismatch_is_a_status_word_not_a_trap(emu, monkeypatch):
    """Host and kernel disagree on the per-warp layout: KernelStatusError, and the next launch works."""
    import importlib

    sc = importlib.import_module("fastpoly.backends.cuda.train")  # (fastpoly.backends is also a function)
    from fastpoly.backends.cuda.source import KernelStatusError

    tp, ref = _reference("sgd-ce-partial")
    real = sc.train_layout
    monkeypatch.setattr(sc, "train_layout", lambda *a, **k: real(*a, **k) - 4)  # 4 floats short
    dev = emu.EmuDevice()
    with pytest.raises(KernelStatusError, match="per-warp shared memory"):
        train_range_cuda(tp, ref.lo, ref.hi, params=True, device=dev)
    monkeypatch.setattr(sc, "train_layout", real)
    assert_same_train(ref, train_range_cuda(tp, ref.lo, ref.hi, params=True, device=emu.EmuDevice()))


def test_nvrtc_ptx_of_train_cu_has_no_ftz():
    """The backend's compile path (NVRTC, --ftz=false, nothing appended) keeps subnormals in train.cu too."""
    import re

    from fastpoly.backends.cuda import source as src
    from fastpoly.backends.cuda import train as sc

    path = src.find_nvrtc_library()
    if path is None:
        pytest.skip("libnvrtc not found (set FASTPOLY_NVRTC_LIB or pip install nvidia-cuda-nvrtc)")
    names = [sc.TRAIN_KERNEL, sc.MATH_KERNEL]
    text, lowered = src.build_ptx(sc.TRAIN_FILE, names, src.CtypesNVRTC(path), arch="90")
    assert src.ptx_ftz_instructions(text) == []
    assert not [ln for ln in text.splitlines() if ".ftz" in ln.split("//")[0]]
    assert len(re.findall(r"\bfma\.rn\.f32\b", text)) > 20
    assert set(lowered) == set(names)


def test_sample_sgd_on_the_cupy_path_through_the_driver(emu):
    """``sample_sgd(backend=TrainBackend("cupy", device=...))``: the driver, the counting and the CUDA trainer."""
    from fastpoly.sgd import sample_sgd
    from fastpoly.sgd.api import TrainBackend

    kw = dict(arch=MLP(4, (6, 6)), X=boolean_inputs(4), train=(np.array([1, 2, 4, 7, 8, 11]), np.array([0, 1, 1, 0, 1, 0])),
              n_runs=24, seed=5, optimizer="adam", lr=0.05, max_epochs=40, minibatch=4, progress=False)
    ref = sample_sgd(backend="numpy", **kw)
    got = sample_sgd(backend=TrainBackend("cupy", device=emu.EmuDevice()), batch_size=10, **kw)
    assert got.info["backend"] == "cupy"
    assert got.to_bytes() == ref.to_bytes()
