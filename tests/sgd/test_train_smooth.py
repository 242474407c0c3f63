"""Smooth hidden activations in training (tanh, erf, sigmoid): fastpoly's own float32 functions and derivatives.

Accuracy against float64 math in ulps (the bounds of :mod:`fastpoly.stream.fmath_train`), the NumPy
twins equal to the Numba functions bit for bit, the reference gradient against a float64 gradient,
and the Numba trainer bit for bit the NumPy reference trainer.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from fastpoly import MLP, boolean_inputs
from fastpoly.activations import TABLE, check_supported, supported
from fastpoly.sgd import Recipe, make_train_plan
from fastpoly.sgd.reference import _gradient, train_range_reference
from fastpoly.stream import fmath_train as T
from fastpoly.tolerances import assert_close_to_reference

F = np.float32
X4 = boolean_inputs(4)
ROWS = np.array([3, 0, 7, 12, 5, 9, 14, 1])
LABELS = ((ROWS >> 1) & 1).astype(np.uint8)
SMOOTH = ("tanh", "erf", "sigmoid")


def _points():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-12, 12, 480001), rng.standard_normal(200000) * 3,
                        10.0 ** rng.uniform(-44, 1.5, 100000), [0.5, 1.0, 2.46, 3.92, 3.9199998, 0.99999994]])
    x = x.astype(F)
    return np.concatenate([x, -x])


def _ulps(got, ref):
    """|got - ref| in units of the float32 spacing at ref (ref float64)."""
    sp = np.spacing(np.abs(ref).astype(F)).astype(np.float64)
    return np.abs(np.float64(got) - ref) / sp


def _sigmoid64(x):
    return 1 / (1 + np.exp(-x))


# name -> (float32 function, float64 reference, ulp bound)
FORWARD = {
    "tanh": (T.tanh32, np.tanh, 3.0),
    "erf": (T.erf32, erf, 2.0),
    "sigmoid": (T.sigmoid32, _sigmoid64, 3.0),
    "expm1": (T.expm1_32, np.expm1, 2.0),
}
DERIVATIVE = {
    "tanh": (T.d_tanh32, lambda x: 1 / np.cosh(x) ** 2, 5.0),
    "erf": (T.d_erf32, lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x), 3.0),
    "sigmoid": (T.d_sigmoid32, lambda x: np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))) ** 2, 4.0),
}


@pytest.mark.parametrize("name", sorted(FORWARD))
def test_forward_accuracy_in_ulps(name):
    f, ref, bound = FORWARD[name]
    x = _points()
    if name == "expm1":
        x = x[np.abs(x) < 80]
    with np.errstate(over="ignore"):
        r = ref(np.float64(x))
    got = f(x)
    assert got.dtype == F
    u = _ulps(got, r)
    assert u.max() <= bound, (name, float(u.max()), x[np.argmax(u)])
    assert u.max() > 0.5  # not a correctly rounded libm in disguise: the measured error is the documented one


@pytest.mark.parametrize("name", sorted(DERIVATIVE))
def test_derivative_accuracy_in_ulps(name):
    f, ref, bound = DERIVATIVE[name]
    x = _points()
    r = ref(np.float64(x))
    e = np.ones_like(x)
    got = f(x, e)
    normal = r >= np.finfo(F).tiny
    u = _ulps(got[normal], r[normal])
    assert u.max() <= bound, (name, float(u.max()))
    assert np.all(np.abs(np.float64(got[~normal]) - r[~normal]) <= 2.0 ** -126)
    # the error of the output scales it (one more rounding)
    e = np.random.default_rng(1).standard_normal(x.size).astype(F)
    np.testing.assert_array_equal(f(x, e), (e * f(x, np.ones_like(x))).astype(F))


@pytest.mark.parametrize("name", ["tanh", "erf", "sigmoid"])
def test_special_values(name):
    f = {"tanh": T.tanh32, "erf": T.erf32, "sigmoid": T.sigmoid32}[name]
    x = np.array([0.0, np.inf, -np.inf, 1e-45, -1e-45, 40.0, -40.0], F)
    y = f(x)
    lim = {"tanh": (0, 1, -1), "erf": (0, 1, -1), "sigmoid": (0.5, 1, 0)}[name]
    assert y[0] == lim[0] and y[1] == lim[1] and y[2] == lim[2]
    assert y[5] == lim[1] and abs(y[6] - lim[2]) < 1e-17
    assert np.isnan(f(np.array([np.nan], F))[0])
    if name != "sigmoid":  # odd functions, nonzero on the smallest subnormal
        assert y[3] > 0 and y[4] == -y[3]


def test_twins_equal_numba_bits():
    numba = pytest.importorskip("numba")
    from fastpoly.backends.numba import vecmath as V

    @numba.njit
    def run(x, e, out):
        for i in range(x.size):
            out[0, i] = V.tanh32(x[i])
            out[1, i] = V.erf32(x[i])
            out[2, i] = V.sigmoid32(x[i])
            out[3, i] = V.d_tanh32(x[i], e[i])
            out[4, i] = V.d_erf32(x[i], e[i])
            out[5, i] = V.d_sigmoid32(x[i], e[i])
            out[6, i] = V.expm1_32(x[i])

    x = np.concatenate([_points()[::7], np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45], F)])
    e = np.random.default_rng(2).standard_normal(x.size).astype(F)
    out = np.empty((7, x.size), F)
    run(x, e, out)
    twins = (T.tanh32(x), T.erf32(x), T.sigmoid32(x), T.d_tanh32(x, e), T.d_erf32(x, e), T.d_sigmoid32(x, e),
             T.expm1_32(x))
    for i, t in enumerate(twins):
        nan = np.isnan(t)
        assert np.array_equal(nan, np.isnan(out[i])), i  # NaN in, NaN out (the payload's sign is not specified)
        assert np.array_equal(t[~nan].view(np.uint32), out[i][~nan].view(np.uint32)), i
    assert T.d_erf32(np.array([np.inf, -np.inf, 1e20], F), np.ones(3, F)).tolist() == [0, 0, 0]


def test_table_support_column():
    for name in SMOOTH:
        a = TABLE[name]
        assert a.train is not None and all(a.supports("train", b) for b in ("numpy", "numba", "cupy"))
    for b in ("numpy", "numba", "cupy"):
        assert supported("train", b) == ("relu", "tanh", "erf", "identity", "sigmoid")
    with pytest.raises(ValueError, match="not supported for training"):
        check_supported("sign", "train", "cupy")
    # sampling keeps float64 libm tanh / erf (the golden digests): the reference is not the trainers' function
    z = np.linspace(-3, 3, 1001).astype(F)
    assert np.array_equal(TABLE["tanh"].reference(z, F), np.tanh(np.float64(z)).astype(F))


def _grad64(mlp, p, X, y, name):
    f = {"tanh": np.tanh, "erf": erf, "sigmoid": _sigmoid64}[name]
    df = {k: v[1] for k, v in DERIVATIVE.items()}[name]
    offs, w = mlp.param_offsets(), mlp.widths
    L = len(offs)
    Ws = [p[o: o + w[i] * w[i + 1]].reshape(w[i + 1], w[i]) for i, (o, _) in enumerate(offs)]
    bs = [p[b: b + w[i + 1]] for i, (_, b) in enumerate(offs)]
    hs, zs = [X], []
    for i in range(L):
        z = hs[-1] @ Ws[i].T + bs[i]
        zs.append(z)
        hs.append(f(z) if i < L - 1 else z)
    d = (_sigmoid64(zs[-1][:, 0]) - y)[:, None] / X.shape[0]
    g = np.zeros_like(p)
    for i in range(L - 1, -1, -1):
        o, b = offs[i]
        g[o: o + w[i] * w[i + 1]] = (d.T @ hs[i]).reshape(-1)
        g[b: b + w[i + 1]] = d.sum(0)
        if i:
            d = (d @ Ws[i]) * df(zs[i - 1])
    return g


@pytest.mark.parametrize("name", SMOOTH)
def test_reference_gradient_against_float64(name):
    mlp = MLP(4, (6, 5), activation=name)
    rng = np.random.default_rng(4)
    for i in range(3):
        p = mlp.draw_params(7, [i])[0].astype(F)
        bt = rng.choice(ROWS.size, 5, replace=False)
        X, y = X4[ROWS[bt]].astype(F), LABELS[bt]
        g = _gradient(mlp, p, X, y, Recipe().loss_code)
        want = _grad64(mlp, np.float64(p), np.float64(X), np.float64(y), name)
        assert_close_to_reference(g, want, F)


RECIPES = {
    "sgd": Recipe(lr=0.3, batch_size=3, max_epochs=30, epochs_after_fit=1),
    "adam-mse": Recipe(optimizer="adam", lr=0.02, loss="mse", batch_size=5, max_epochs=20, fit_threshold=0.5),
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("act", SMOOTH)
def test_numba_trainer_bit_for_bit(act, recipe):
    pytest.importorskip("numba")
    from fastpoly.backends.numba.train import train_range_numba

    tp = make_train_plan(MLP(4, (6, 5), activation=act), X4, (ROWS, LABELS), seed=3, recipe=RECIPES[recipe])
    ref = train_range_reference(tp, 0, 4, params=True)
    got = train_range_numba(tp, 0, 4, params=True)
    for f in ("keys", "init_keys", "status", "first_fit", "epochs"):
        assert np.array_equal(getattr(ref, f), getattr(got, f)), f
    assert np.array_equal(ref.loss.view(np.uint32), got.loss.view(np.uint32))
    assert np.array_equal(ref.params.view(np.uint32), got.params.view(np.uint32))
    assert np.all(np.any(ref.params != tp.plan.mlp.draw_params(3, list(range(4))), axis=1))  # training moved them
    if act != "sigmoid" or recipe != "sgd":  # (sigmoid networks fit slowly under plain SGD)
        assert np.any(ref.first_fit > 0)  # some runs fit S


@pytest.mark.cuda_emu
@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("act", SMOOTH)
def test_cuda_trainer_bit_for_bit_emulated(emu, act, recipe):
    from fastpoly.backends.cuda.train import train_range_cuda

    tp = make_train_plan(MLP(4, (6, 5), activation=act), X4, (ROWS, LABELS), seed=3, recipe=RECIPES[recipe])
    ref = train_range_reference(tp, 0, 4, params=True)
    got = train_range_cuda(tp, 0, 4, params=True, device=emu.EmuDevice())
    for f in ("keys", "init_keys", "status", "first_fit", "epochs"):
        assert np.array_equal(getattr(ref, f), getattr(got, f)), f
    assert np.array_equal(ref.loss.view(np.uint32), got.loss.view(np.uint32))
    assert np.array_equal(ref.params.view(np.uint32), got.params.view(np.uint32))


def test_sigmoid_trains_but_does_not_sample():
    import fastpoly

    mlp = MLP(4, (3,), activation="sigmoid")  # a training architecture
    with pytest.raises(ValueError, match="'sigmoid' is not supported for sampling; supported activations: relu"):
        fastpoly.sample(mlp, n_samples=2, backend="numpy")
    with pytest.raises(ValueError, match="not supported for sampling"):
        MLP(4, (3,), activation="softplus")  # neither trains nor samples


def test_api_and_cli_train_tanh(tmp_path, capsys):
    from fastpoly.cli.main import main
    from fastpoly.sgd import sample_sgd

    res = sample_sgd(MLP(4, (6,), activation="erf"), X4, (ROWS, LABELS), 8, seed=2, backend="numpy",
                     lr=0.5, max_epochs=20, progress=False)
    assert res.meta["arch"]["activation"] == "erf" and res.n_accepted > 0
    assert main(["train", "3-4-1", "--activation", "tanh", "--train", "0,3,5", "--target", "01101001", "--runs", "4",
                 "--max-epochs", "5", "--backend", "numpy", "--no-progress", "--out", str(tmp_path / "t")]) == 0


def test_wide_layers_bit_for_bit():
    """Widths past one SIMD tile (the Numba trainer's padded rows) and a full batch of 16."""
    pytest.importorskip("numba")
    from fastpoly.backends.numba.train import train_range_numba

    X = np.random.default_rng(5).standard_normal((40, 5)).astype(F)
    rows = np.arange(0, 40, 2)
    labels = (X[rows, 0] > 0).astype(np.uint8)
    tp = make_train_plan(MLP(5, (19, 9), activation="erf"), X, (rows, labels), seed=1,
                         recipe=Recipe(optimizer="rmsprop", lr=0.01, batch_size=16, max_epochs=4))
    ref = train_range_reference(tp, 0, 2, params=True)
    got = train_range_numba(tp, 0, 2, params=True)
    assert np.array_equal(ref.params.view(np.uint32), got.params.view(np.uint32))
    assert np.array_equal(ref.keys, got.keys)
