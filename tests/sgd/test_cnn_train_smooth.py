"""Smooth activations and every optimiser on the CNN (generic layer) trainers, bit for bit the reference.

A small CNN (``8x8x1-c4k3-ap2-1`` and a deeper one with a dense head) on a few digit images, tanh / erf /
sigmoid x SGD / Adam / Adagrad / RMSprop subsets: the Numba layer trainer and the CUDA layer kernel
(on the CPU emulation) against :func:`fastpoly.sgd.reference.train_range_reference` -- keys, init keys,
status, first-fit epoch, epochs, losses and parameters, all exactly.
"""
from __future__ import annotations

import numpy as np
import pytest
from support import assert_same_train, float_bits

from fastpoly.model.spec import parse
from fastpoly.sgd import Recipe, make_train_plan
from fastpoly.sgd.reference import train_range_reference

M_ROWS = 24


@pytest.fixture(scope="module")
def digits():
    """24 digit images (8, 8, 1) in [0, 1] and their parity labels."""
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    X = (d.images[:M_ROWS] / 16.0).astype(np.float32)[..., None]
    return X, (d.target[:M_ROWS] % 2).astype(np.uint8)


#: (architecture, activation, recipe fields): readable ids
CASES = {
    "tanh-sgd": ("8x8x1-c4k3-ap2-1", "tanh", dict(optimizer="sgd", lr=0.1)),
    "tanh-adagrad": ("8x8x1-c4k3-ap2-1", "tanh", dict(optimizer="adagrad", lr=0.05)),
    "tanh-rmsprop-momentum-dense": ("8x8x1-c3k3-ap2-4-1", "tanh",
                                    dict(optimizer="rmsprop", lr=0.01, momentum=0.5)),
    "erf-adam": ("8x8x1-c4k3-ap2-1", "erf", dict(optimizer="adam", lr=0.01)),
    "erf-rmsprop": ("8x8x1-c4k3-ap2-1", "erf", dict(optimizer="rmsprop", lr=0.01)),
    "erf-sgd-nesterov-mse": ("8x8x1-c3k2p-mp2-1", "erf", dict(optimizer="sgd", lr=0.05, momentum=0.9,
                                                              nesterov=True, loss="mse")),
    "sigmoid-adagrad-acc-eps-out": ("8x8x1-c4k3-ap2-1", "sigmoid",
                                    dict(optimizer="adagrad", lr=0.1, initial_accumulator=0.5,
                                         eps_in_sqrt=False)),
    "sigmoid-adam-gap": ("8x8x1-c4k3-c3k2p-gap-1", "sigmoid", dict(optimizer="adam", lr=0.01)),
    "relu-adagrad": ("8x8x1-c4k3-ap2-1", "relu", dict(optimizer="adagrad", lr=0.05)),
    "relu-rmsprop": ("8x8x1-c4k3-ap2-1", "relu", dict(optimizer="rmsprop", lr=0.01)),
}


def _plan(digits, case, m=10, seed=3, batch_size=4, max_epochs=3):
    spec, act, rec = CASES[case]
    X, y = digits
    arch = parse(spec, activation=act)
    return make_train_plan(arch, X, (np.arange(m), y[:m]), seed,
                           Recipe(**dict(dict(batch_size=batch_size, max_epochs=max_epochs), **rec)))


_REF: dict = {}


def _reference(digits, case):
    if case not in _REF:
        _REF[case] = train_range_reference(_plan(digits, case), 2, 5, params=True)
    return _REF[case]


@pytest.mark.parametrize("case", list(CASES))
def test_numba_layer_trainer_smooth_matches_reference(digits, case):
    from fastpoly.backends.numba.train_cnn import train_range_layers

    ref = _reference(digits, case)
    # the runs moved: training did something (a test that could not fail otherwise)
    assert ref.params is not None
    tp = _plan(digits, case)
    P0 = tp.plan.mlp.draw_params(tp.plan.seed, np.arange(2, 5, dtype=np.uint64))
    assert not np.array_equal(float_bits(P0), float_bits(ref.params))
    assert_same_train(ref, train_range_layers(tp, 2, 5, params=True, n_threads=2))
    # the optimiser state is fresh per run: one run alone gives its row of the batch
    one = train_range_layers(tp, 3, 4, params=True, n_threads=1)
    assert np.array_equal(float_bits(one.params), float_bits(ref.params[1:2]))


@pytest.mark.cuda_emu
@pytest.mark.parametrize("case", list(CASES))
def test_cuda_layer_trainer_smooth_matches_reference_emulated(emu, digits, case):
    from fastpoly.backends.cuda.train import train_range_cuda

    ref = _reference(digits, case)
    got = train_range_cuda(_plan(digits, case), 2, 5, params=True, device=emu.EmuDevice(), max_blocks=1)
    assert_same_train(ref, got)


def test_generic_trainer_compiles_the_smooth_activations(digits):
    from fastpoly.backends.layer_program import K_ERF, K_SIGMOID, K_TANH, compile_program

    for act, code in (("tanh", K_TANH), ("erf", K_ERF), ("sigmoid", K_SIGMOID)):
        prog, _, _ = compile_program(parse("8x8x1-c2k3-1", activation=act), 4)
        assert code in prog[:, 0]
    with pytest.raises(ValueError, match="not 'sign'"):
        compile_program(parse("8x8x1-c2k3-1", activation="sign"), 4)
