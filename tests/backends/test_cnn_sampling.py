"""CNN sampling P(f) and P_B(f|S): the NumPy reference and the Numba layer-sequence kernel agree bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly.backends import get_backend
from fastpoly.backends.reference import sample_keys_reference
from fastpoly.model import parse
from fastpoly.stream.fmath import fma32

F = np.float32
IMAGES = np.random.default_rng(0).normal(size=(23, 6, 6, 2)).astype(F)

SPECS = [
    "6x6x2-c4k3-c4k3-1",            # the benchmark's shape, small
    "6x6x2-c3k2s2p-mp2-gap-1",      # stride, same padding, max pooling, global pooling
    "6x6x2-c2k3p-ap2-5-1",          # average pooling, a hidden dense layer
    "6x6x2-c3k5-c2k2p-gap-1",       # the anchor family's kernels
    "6x6x2-c16k3s2p-c8k2-1",        # the register-blocked kernel (16 and 8 filters), stride 2, same padding
]


@pytest.fixture(scope="module")
def numba_backend():
    be = get_backend("numba")
    ok, why = be.availability()
    if not ok:
        pytest.skip(why)
    return be


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s)
@pytest.mark.parametrize("train", [None, ([1, 4, 7], [1, 1, 0])], ids=["prior", "posterior"])
def test_numba_is_bit_identical_to_the_reference(numba_backend, spec, train):
    arch = parse(spec, sigma_b=0.3)
    plan = fastpoly.make_plan(arch, IMAGES, seed=11, train=train)
    ref = sample_keys_reference(plan, 5, 45, margins=True)
    got = numba_backend.sample_keys(plan, 5, 45, margins=True)
    np.testing.assert_array_equal(got.keys, ref.keys)
    np.testing.assert_array_equal(got.accepted, ref.accepted)
    np.testing.assert_array_equal(got.margins, ref.margins)
    assert len({int(k) for k in ref.keys[:, 0]}) > 1  # the test sees more than one function


@pytest.mark.parametrize("kw", [dict(weights="uniform"), dict(weights="truncated_normal", sigma_w=1.5),
                                dict(bias=False), dict(bias_scaling="fan_in")], ids=lambda d: "-".join(map(str, d.values())))
def test_draw_options_agree(numba_backend, kw):
    plan = fastpoly.make_plan(parse("6x6x2-c8k3p-c3k2-ap2-1", **kw), IMAGES, seed=3)  # both conv kernels
    ref = sample_keys_reference(plan, 0, 30, margins=True)
    got = numba_backend.sample_keys(plan, 0, 30, margins=True)
    np.testing.assert_array_equal(got.keys, ref.keys)
    np.testing.assert_array_equal(got.margins, ref.margins)


def test_reference_output_is_the_layers_by_hand():
    # sample 2's output on image 0 recomputed from the drawn parameters, layer by layer with fma32
    arch = parse("4x4x1-c2k3-1")
    X = IMAGES[:3, :4, :4, :1]
    plan = fastpoly.make_plan(arch, X, seed=5)
    theta = arch.draw_params(5, [2])[0]
    W1, b1, W2, b2 = theta[:18].reshape(2, 3, 3, 1), theta[18:20], theta[20:28].reshape(1, 8), theta[28:29]
    h = np.zeros((2, 2, 2), F)
    for i in range(2):
        for j in range(2):
            for f in range(2):
                acc = b1[f]
                for kh in range(3):
                    for kw in range(3):
                        acc = fma32(X[0, i + kh, j + kw, 0], W1[f, kh, kw, 0], acc)
                h[i, j, f] = max(acc, F(0))
    z = b2[0]
    for k, v in enumerate(h.reshape(-1)):
        z = fma32(v, W2[0, k], z)
    m = sample_keys_reference(plan, 2, 3, margins=True)
    assert int(m.keys[0, 0]) & 1 == int(z > 0)
    out = arch.forward(theta, X)[1]
    assert out[0, 0] == z


def test_counts_through_the_api(numba_backend):
    X = IMAGES[:10]
    a = fastpoly.sample("6x6x2-c2k3-c2k3-1", X, n_samples=200, seed=2, backend="numpy", progress=False)
    b = fastpoly.sample("6x6x2-c2k3-c2k3-1", X.reshape(10, -1), n_samples=200, seed=2, backend="numba",
                        progress=False)
    assert a.n_samples == b.n_samples == 200 and a.counts.sum() == 200
    assert dict(zip(map(int, a.keys[:, 0]), a.counts.tolist())) == dict(zip(map(int, b.keys[:, 0]), b.counts.tolist()))
    tr = ([0, 1], [1, 1])
    c = fastpoly.sample("6x6x2-c2k3-c2k3-1", X, n_samples=200, seed=2, backend="numba", train=tr, progress=False)
    d = fastpoly.sample("6x6x2-c2k3-c2k3-1", X, n_samples=200, seed=2, backend="numpy", train=tr, progress=False)
    assert c.n_accepted == d.n_accepted and np.array_equal(c.keys, d.keys) and np.array_equal(c.counts, d.counts)


@pytest.mark.parametrize("X,match", [
    (np.zeros((4, 6, 6, 3)), "input images must have shape"),
    (np.zeros((4, 35)), "X must have shape|columns|35"),
    (np.full((4, 72), np.nan), "finite"),
])
def test_bad_image_inputs(X, match):
    with pytest.raises(ValueError, match=match):
        fastpoly.make_plan("6x6x2-c2k3-1", X)


def test_cupy_accepts_relu_cnns_and_refuses_other_activations_clearly():
    from fastpoly.backends.cuda.backend import CupyBackend

    CupyBackend.check_plan(fastpoly.make_plan("6x6x2-c2k3-1", IMAGES[:4]))
    plan = fastpoly.make_plan(parse("6x6x2-c2k3-1", activation="tanh"), IMAGES[:4])
    with pytest.raises(ValueError, match="cupy backend cannot sample.*numba"):
        CupyBackend.check_plan(plan)


def test_auto_backend_picks_a_cpu_kernel_for_cnns():
    from fastpoly.run.plans import engine_of

    plan = fastpoly.make_plan("6x6x2-c2k3-1", IMAGES[:4])
    assert engine_of(plan, "auto").name in ("numba", "numpy")


def test_cli_samples_images(tmp_path, capsys):
    from fastpoly.cli.main import main

    np.save(tmp_path / "imgs.npy", IMAGES[:12])
    np.save(tmp_path / "flat.npy", IMAGES[:12].reshape(12, -1))
    for name, be in (("imgs", "numpy"), ("flat", "numba")):
        assert main(["sample", "6x6x2-c2k3-c2k3p-1", "--inputs", str(tmp_path / f"{name}.npy"), "--samples", "300",
                     "--backend", be, "--out", str(tmp_path / name), "--no-progress", "--no-plot"]) == 0
    a = fastpoly.FunctionCounts.load(tmp_path / "imgs" / "counts.npz")
    b = fastpoly.FunctionCounts.load(tmp_path / "flat" / "counts.npz")
    assert np.array_equal(a.keys, b.keys) and np.array_equal(a.counts, b.counts) and a.counts.sum() == 300
    capsys.readouterr()
    assert main(["sample", "5x5x2-c2k3-1", "--inputs", str(tmp_path / "imgs.npy"), "--samples", "10",
                 "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "--inputs images must have shape (m, 5, 5, 2)" in capsys.readouterr().err


def test_trainers_take_cnns():
    """CNN training: tests/test_cnn_train.py (bit identity of the trainers)."""
    X = IMAGES[:6]
    res = fastpoly.sample_sgd("6x6x2-c2k3-1", X, train=(np.arange(3), np.array([0, 1, 0])), n_runs=2,
                              backend="numpy", recipe=dict(max_epochs=3))
    assert res.n_samples == 2
