"""The CUDA layer-sequence sampler (``kernels/sample_layers.cu``) run on the CPU emulation: keys, acceptance,
margins, counts and first indices bit-identical to the NumPy reference for small CNNs."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly.backends.reference import count_range_reference, sample_keys_reference
from fastpoly.model import parse

pytestmark = pytest.mark.cuda_emu

F = np.float32
IMAGES = np.random.default_rng(3).normal(size=(21, 6, 6, 2)).astype(F)

SPECS = [
    "6x6x2-c3k3-c2k3-1",            # valid padding, two convolutions
    "6x6x2-c3k2s2p-mp2-gap-1",      # stride 2, same padding, max pooling, global average pooling
    "6x6x2-c2k3p-ap2-5-1",          # same padding, average pooling, a hidden dense layer
    "6x6x2-c2k5-c2k2p-gap-1",       # the anchor family's kernels
]
TRAIN = {"prior": None, "posterior": ([1, 4, 7], [1, 1, 0])}


@pytest.fixture(scope="module")
def cupy_emu(emu):
    from fastpoly.backends.cuda.backend import CupyBackend

    return CupyBackend(device=emu.EmuDevice(), threads_per_block=64, max_blocks=2)


def _plan(spec, train, **kw):
    return fastpoly.make_plan(parse(spec, sigma_b=0.3, **kw), IMAGES, seed=11, train=TRAIN[train])


@pytest.mark.parametrize("train", list(TRAIN), ids=list(TRAIN))
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s)
def test_keys_are_bit_identical_to_the_reference(cupy_emu, spec, train):
    plan = _plan(spec, train)
    ref = sample_keys_reference(plan, 5, 37, margins=True)
    got = cupy_emu.sample_keys(plan, 5, 37, margins=True)
    np.testing.assert_array_equal(got.keys, ref.keys)
    np.testing.assert_array_equal(got.accepted, ref.accepted)
    np.testing.assert_array_equal(got.margins.view(np.uint32), ref.margins.view(np.uint32))


@pytest.mark.parametrize("train", list(TRAIN), ids=list(TRAIN))
@pytest.mark.parametrize("spec", SPECS[1:3], ids=lambda s: s)
def test_counts_and_first_indices_match_the_reference(cupy_emu, spec, train):
    plan = _plan(spec, train)
    ref = count_range_reference(plan, 3, 83)
    got = cupy_emu.count_range(plan, 3, 83)
    np.testing.assert_array_equal(got.keys, ref.keys)
    np.testing.assert_array_equal(got.counts, ref.counts)
    np.testing.assert_array_equal(got.first_index, ref.first_index)
    assert (got.n_samples, got.n_accepted) == (ref.n_samples, ref.n_accepted)
    assert got.n_accepted > 0


@pytest.mark.parametrize("weights", ["truncated_normal", "uniform"])
def test_weight_families_are_drawn_on_the_device_as_the_reference(cupy_emu, weights):
    plan = _plan("6x6x2-c3k3s2-ap2-1", "posterior", weights=weights)
    ref = sample_keys_reference(plan, 0, 24, margins=True)
    got = cupy_emu.sample_keys(plan, 0, 24, margins=True)
    np.testing.assert_array_equal(got.keys, ref.keys)
    np.testing.assert_array_equal(got.accepted, ref.accepted)
    np.testing.assert_array_equal(got.margins.view(np.uint32), ref.margins.view(np.uint32))


def test_unsupported_activation_is_refused_clearly(cupy_emu):
    plan = _plan("6x6x2-c2k3-1", "prior", activation="tanh")
    with pytest.raises(ValueError, match="cupy backend cannot sample.*numba"):
        cupy_emu.count_range(plan, 0, 4)
