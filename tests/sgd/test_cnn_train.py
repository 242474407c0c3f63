"""Training CNNs: the Numba and CUDA (emulated) layer trainers bit for bit against the NumPy reference.

Every output is compared exactly: keys and init keys, status, first-fit epoch, epochs and the
bits of the final loss and parameters.  The networks are small CNNs on 8x8 digit images
(scikit-learn's digits): convolutions ("valid" and "same", stride 1 and 2), average, max and global
pooling, dense heads; SGD, momentum, Nesterov and Adam; cross-entropy and MSE.
"""
from __future__ import annotations

import numpy as np
import pytest
from support import assert_same_train, float_bits

from fastpoly.model.spec import parse
from fastpoly.sgd import Recipe, make_train_plan, sample_sgd
from fastpoly.sgd.reference import train_range_reference

M_ROWS = 30


@pytest.fixture(scope="module")
def digits():
    """30 digit images (8, 8, 1) in [0, 1] and their parity labels."""
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    X = (d.images[:M_ROWS] / 16.0).astype(np.float32)[..., None]
    return X, (d.target[:M_ROWS] % 2).astype(np.uint8)


#: (architecture, recipe fields, init fields): readable ids below
CASES = {
    "c4k3-sgd": ("8x8x1-c4k3-1", dict(optimizer="sgd", lr=0.1), {}),
    "c3k3p-ap2-dense-adam": ("8x8x1-c3k3p-ap2-5-1", dict(optimizer="adam"), {}),
    "c3k2s2-mp2-nesterov-mse": ("8x8x1-c3k2s2-mp2-1", dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                                                          loss="mse"), {}),
    "c4k3-c3k2p-gap-adam": ("8x8x1-c4k3-c3k2p-gap-1", dict(optimizer="adam", lr=0.01), {}),
    "c2k3-identity-nobias-momentum": ("8x8x1-c2k3-ap2-1", dict(optimizer="sgd", lr=0.05, momentum=0.5),
                                      dict(activation="identity", bias=False)),
}


def _plan(digits, case, m=10, seed=5, batch_size=4, max_epochs=6, flat=False):
    spec, rec, init = CASES[case]
    X, y = digits
    arch = parse(spec, **init)
    rec = dict(dict(batch_size=batch_size, max_epochs=max_epochs), **rec)
    XX = X.reshape(X.shape[0], -1) if flat else X
    return make_train_plan(arch, XX, (np.arange(m), y[:m]), seed, Recipe(**rec))


_REF: dict = {}


def _reference(digits, case, lo, hi):
    key = (case, lo, hi)
    if key not in _REF:
        _REF[key] = train_range_reference(_plan(digits, case), lo, hi, params=True)
    return _REF[key]


@pytest.mark.parametrize("case", list(CASES))
def test_numba_layer_trainer_matches_reference(digits, case):
    from fastpoly.backends.numba.train_cnn import train_range_layers

    ref = _reference(digits, case, 3, 6)
    tp = _plan(digits, case)
    assert_same_train(ref, train_range_layers(tp, 3, 6, params=True, n_threads=2))
    # any split of the runs gives the same results
    a = train_range_layers(tp, 3, 4, params=True, n_threads=1)
    b = train_range_layers(tp, 4, 6, params=True, n_threads=2)
    assert np.array_equal(np.concatenate([a.keys, b.keys]), ref.keys)
    assert np.array_equal(float_bits(np.concatenate([a.params, b.params])), float_bits(ref.params))


@pytest.mark.cuda_emu
@pytest.mark.parametrize("case", list(CASES))
def test_cuda_layer_trainer_matches_reference_emulated(emu, digits, case):
    from fastpoly.backends.cuda.train import train_range_cuda

    ref = _reference(digits, case, 3, 6)
    got = train_range_cuda(_plan(digits, case), 3, 6, params=True, device=emu.EmuDevice(), max_blocks=1)
    assert_same_train(ref, got)


def test_the_trainers_reach_a_fit(digits):
    """A run long enough to fit: the status and epochs say so on both trainers (the tests above mostly fail)."""
    from fastpoly.backends.numba.train_cnn import train_range_layers

    spec, _, _ = CASES["c3k3p-ap2-dense-adam"]
    X, y = digits
    tp = make_train_plan(spec, X, (np.arange(6), y[:6]), 5,
                         Recipe(optimizer="adam", lr=0.1, batch_size=6, max_epochs=60))
    ref = train_range_reference(tp, 1, 2, params=True)
    assert ref.status[0] == 0 and 1 <= ref.first_fit[0] == ref.epochs[0] < 60
    assert_same_train(ref, train_range_layers(tp, 1, 2, params=True))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_sample_sgd_cnn_images_and_flat_rows(digits, backend):
    """``sample_sgd`` takes CNN strings with images (N, H, W, C) or flat rows: the same counts."""
    X, y = digits
    rec = Recipe(optimizer="adam", batch_size=5, max_epochs=4)
    train = (np.arange(8), y[:8])
    a = sample_sgd("8x8x1-c2k3-ap2-1", X[:12], train, n_runs=2, seed=1, backend=backend, recipe=rec)
    b = sample_sgd("8x8x1-c2k3-ap2-1", X[:12].reshape(12, -1), train, n_runs=2, seed=1, backend=backend,
                   recipe=rec)
    assert a == b and a.n_samples == 2


def test_generic_trainer_refuses_what_it_cannot_train(digits):
    from fastpoly.backends.layer_program import compile_program

    arch = parse("8x8x1-c2k3-1", activation="sign")
    with pytest.raises(ValueError, match="relu and identity"):
        compile_program(arch, 4)


def test_cli_trains_cnns_on_images(digits, tmp_path, capsys):
    from fastpoly.cli.main import main

    X, y = digits
    np.save(tmp_path / "imgs.npy", X)
    np.save(tmp_path / "y.npy", y)
    args = ["train", "8x8x1-c2k3-ap2-1", "--inputs", str(tmp_path / "imgs.npy"), "--labels", str(tmp_path / "y.npy"),
            "--train-size", "8", "--runs", "3", "--max-epochs", "4", "--backend", "numba", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "ok")]) == 0
    assert "architecture   8x8x1-c2k3-ap2-1" in capsys.readouterr().out
    np.save(tmp_path / "flat.npy", X.reshape(X.shape[0], -1)[:, :10])
    bad = ["--inputs" if a == str(tmp_path / "imgs.npy") else a for a in args]
    bad[bad.index("--inputs") + 1] = str(tmp_path / "flat.npy")
    assert main(bad + ["--out", str(tmp_path / "bad")]) == 2
    assert "--inputs" in capsys.readouterr().err
