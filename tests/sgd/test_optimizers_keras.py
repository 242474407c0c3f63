"""Adagrad and RMSprop with Keras 3 semantics: closed-form steps, a short run re-derived in float64, trainers bit-identical.

The formulas (``keras/src/optimizers/adagrad.py`` and ``rmsprop.py`` of Keras 3; also in ``docs/design.md``):

* Adagrad: ``acc = acc + g**2`` (``acc`` starts at ``initial_accumulator_value = 0.1``),
  ``p = p - lr * g / sqrt(acc + eps)``; defaults ``lr = 0.001``, ``eps = 1e-7``.
* RMSprop (not centered): ``v = rho * v + (1 - rho) * g**2``, ``inc = lr * g / sqrt(v + eps)``,
  ``p = p - inc``, or with momentum ``mu > 0``: ``mom = mu * mom + inc``, ``p = p - mom``;
  defaults ``lr = 0.001``, ``rho = 0.9``, ``eps = 1e-7``, ``momentum = 0``.

Both put ``eps`` *inside* the square root in Keras 3; tf.keras 2.x (``optimizer_v2``: Adagrad, and
RMSprop without momentum) put it outside, ``sqrt(v) + eps`` -- ``Recipe(eps_in_sqrt=False)``.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastpoly import MLP, boolean_inputs
from fastpoly.model.optimizers import OPTIMIZERS
from fastpoly.sgd import Recipe, make_train_plan
from fastpoly.sgd.reference import epoch_order, train_range_reference, train_run
from fastpoly.tolerances import assert_close_to_reference

F = np.float32
X4 = boolean_inputs(4)
ROWS = np.array([3, 0, 7, 12, 5, 9, 14, 1])
LABELS = ((ROWS >> 1) & 1).astype(np.uint8)


def test_keras_defaults():
    ada, rms = Recipe(optimizer="adagrad"), Recipe(optimizer="rmsprop")
    assert ada.lr == rms.lr == 0.001 == OPTIMIZERS["adagrad"].default_lr == OPTIMIZERS["rmsprop"].default_lr
    assert ada.eps == rms.eps == 1e-7
    assert ada.initial_accumulator == 0.1 and rms.rho == 0.9 and rms.momentum == 0.0
    assert Recipe(optimizer="adam").eps == Recipe().eps == 1e-8  # PyTorch's, unchanged
    # the recipe descriptions of sgd / adam are those of earlier versions (no Keras-only fields)
    assert "rho" not in Recipe(optimizer="adam").to_dict() and "initial_accumulator" not in Recipe().to_dict()
    assert Recipe.from_dict(rms.to_dict()) == rms and Recipe.from_dict(ada.to_dict()) == ada


@pytest.mark.parametrize("kw, match", [
    (dict(optimizer="adam", rho=0.8), "rho is an option of optimizer='rmsprop'"),
    (dict(optimizer="rmsprop", initial_accumulator=0.5), "initial_accumulator is an option of optimizer='adagrad'"),
    (dict(optimizer="adagrad", momentum=0.9), "momentum is an option"),
    (dict(optimizer="rmsprop", rho=1.0), "rho must be < 1"),
    (dict(optimizer="adagrad", initial_accumulator=-0.1), "initial_accumulator must be >= 0"),
    (dict(optimizer="rmsprop", eps=0.0), "eps must be > 0"),
    (dict(optimizer="rmsprop", momentum=0.5, nesterov=True), "nesterov=True needs optimizer='sgd'"),
    (dict(optimizer="adam", eps_in_sqrt=False), "eps_in_sqrt is an option of optimizer='adagrad' or 'rmsprop'"),
    (dict(optimizer="rmsprop", eps_in_sqrt=1), "eps_in_sqrt must be True or False"),
], ids=["rho-adam", "acc-rmsprop", "momentum-adagrad", "rho-1", "acc-negative", "eps-0", "nesterov-rmsprop",
        "eps-placement-adam", "eps-placement-int"])
def test_bad_options_are_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        Recipe(**kw)


def _den(v, eps, inside):
    return np.sqrt(v + eps) if inside else np.sqrt(v) + eps


def _keras_adagrad(p, gs, lr, acc0, eps, inside):
    p, acc = np.float64(p), np.full_like(np.float64(p), acc0)
    for g in gs:
        acc = acc + np.float64(g) ** 2
        p = p - lr * np.float64(g) / _den(acc, eps, inside)
    return p


def _keras_rmsprop(p, gs, lr, rho, eps, mu, inside):
    p = np.float64(p)
    v, mom = np.zeros_like(p), np.zeros_like(p)
    for g in gs:
        g = np.float64(g)
        v = rho * v + (1 - rho) * g ** 2
        inc = lr * g / _den(v, eps, inside)
        if mu > 0:
            mom = mu * mom + inc
            p = p - mom
        else:
            p = p - inc
    return p


KERAS = {
    "adagrad": dict(optimizer="adagrad"),
    "adagrad-lr0.1-acc0.01-eps1e-4": dict(optimizer="adagrad", lr=0.1, initial_accumulator=0.01, eps=1e-4),
    "adagrad-acc0": dict(optimizer="adagrad", lr=0.05, initial_accumulator=0.0),
    "adagrad-tfkeras2-eps-outside": dict(optimizer="adagrad", lr=0.01, eps=1e-3, eps_in_sqrt=False),
    "rmsprop": dict(optimizer="rmsprop"),
    "rmsprop-rho0.5-eps1e-3": dict(optimizer="rmsprop", lr=0.02, rho=0.5, eps=1e-3),
    "rmsprop-momentum0.9": dict(optimizer="rmsprop", lr=0.01, momentum=0.9),
    "rmsprop-tfkeras2-eps-outside": dict(optimizer="rmsprop", lr=0.01, eps=1e-3, eps_in_sqrt=False),
}


def _keras(r, p, gs):
    if r.optimizer == "adagrad":
        return _keras_adagrad(p, gs, r.lr, r.initial_accumulator, r.eps, r.eps_in_sqrt)
    return _keras_rmsprop(p, gs, r.lr, r.rho, r.eps, r.momentum, r.eps_in_sqrt)


def _steps(r, p, gs):
    opt = OPTIMIZERS[r.optimizer]
    hp = r.hyper()
    st = opt.init(p.size, hp)
    for g in gs:
        p = opt.step(hp, st, p, g)
    return p


@pytest.mark.parametrize("name", sorted(KERAS))
def test_single_step_closed_form(name):
    """One step from fresh state, written out: Adagrad ``p - lr g / sqrt(acc0 + g^2 + eps)``,
    RMSprop ``p - lr g / sqrt((1-rho) g^2 + eps)`` (momentum: the same, ``mom = inc``)."""
    r = Recipe(**KERAS[name])
    rng = np.random.default_rng(1)
    p = rng.normal(size=64).astype(F)
    g = np.concatenate([rng.normal(size=60) * 10.0 ** rng.integers(-4, 2, 60), [0.0, -0.0, 1e-6, -3.0]]).astype(F)
    g64, p64 = np.float64(g), np.float64(p)
    v = r.initial_accumulator + g64 ** 2 if r.optimizer == "adagrad" else (1 - r.rho) * g64 ** 2
    want = p64 - r.lr * g64 / (np.sqrt(v + r.eps) if r.eps_in_sqrt else np.sqrt(v) + r.eps)
    got = _steps(r, p, [g])
    assert got.dtype == F
    assert_close_to_reference(got, want, F)
    assert np.array_equal(got[60:62], p[60:62])  # zero gradients leave the parameter as it is
    # a step of at most lr / sqrt(1 - rho) (RMSprop) or lr (Adagrad, |g| / sqrt(acc0 + g^2) < 1): the
    # normalisation that makes these optimizers scale-free
    bound = r.lr / np.sqrt(1 - r.rho) if r.optimizer == "rmsprop" else r.lr
    assert np.all(np.abs(np.float64(got) - p64) <= bound * (1 + 1e-5))


@pytest.mark.parametrize("name", sorted(KERAS))
def test_ten_steps_match_keras_in_float64(name):
    r = Recipe(**KERAS[name])
    rng = np.random.default_rng(2)
    p = rng.normal(size=200).astype(F)
    gs = [(rng.normal(size=200) * 0.3).astype(F) for _ in range(10)]
    assert_close_to_reference(_steps(r, p, gs), _keras(r, p, gs), F)


def test_eps_placement_matters():
    """The two placements differ where v is small against eps (so the tests above can tell them apart)."""
    g = [np.array([1e-3, 1e-2, 1.0], F)]
    a = _steps(Recipe(optimizer="rmsprop", eps=1e-4), np.zeros(3, F), g)
    b = _steps(Recipe(optimizer="rmsprop", eps=1e-4, eps_in_sqrt=False), np.zeros(3, F), g)
    assert np.all(np.abs(a[:2] - b[:2]) > 1e-2 * np.abs(a[:2]))


def test_fresh_state_every_run():
    """Run i's result does not depend on which runs were trained before it (in this process or range)."""
    tp = make_train_plan("4-6-5-1", X4, (ROWS, LABELS), seed=3,
                         recipe=Recipe(optimizer="adagrad", lr=0.05, batch_size=3, max_epochs=5))
    a = train_range_reference(tp, 0, 3, params=True)
    b = train_range_reference(tp, 2, 3, params=True)
    assert np.array_equal(a.params[2], b.params[0])


# --- a short run: the float32 reference trainer against a float64 re-derivation with the Keras formulas --------
def _grad64(mlp, p, X, y):
    """Gradient of the mean binary cross-entropy on the logit, float64, relu hidden layers (MLP parameter order)."""
    offs, w = mlp.param_offsets(), mlp.widths
    L = len(offs)
    Ws = [p[o: o + w[i] * w[i + 1]].reshape(w[i + 1], w[i]) for i, (o, _) in enumerate(offs)]
    bs = [p[b: b + w[i + 1]] for i, (_, b) in enumerate(offs)]
    hs, zs = [X], []
    for i in range(L):
        z = hs[-1] @ Ws[i].T + bs[i]
        zs.append(z)
        hs.append(np.maximum(z, 0) if i < L - 1 else z)
    d = (1 / (1 + np.exp(-zs[-1][:, 0])) - y)[:, None] / X.shape[0]
    g = np.zeros_like(p)
    for i in range(L - 1, -1, -1):
        o, b = offs[i]
        g[o: o + w[i] * w[i + 1]] = (d.T @ hs[i]).reshape(-1)
        g[b: b + w[i + 1]] = d.sum(0)
        if i:
            d = (d @ Ws[i]) * (zs[i - 1] > 0)
    return g


@pytest.mark.parametrize("name", ["adagrad-lr0.1-acc0.01-eps1e-4", "rmsprop-rho0.5-eps1e-3", "rmsprop-momentum0.9",
                                  "rmsprop-tfkeras2-eps-outside"])
def test_short_run_matches_float64_keras(name):
    recipe = Recipe(**KERAS[name], batch_size=3, max_epochs=3, min_epochs=3)
    mlp = MLP(4, (6, 5))
    tp = make_train_plan(mlp, X4, (ROWS, LABELS), seed=3, recipe=recipe)
    for index in range(2):
        got = train_run(tp, index)["params"]
        p = np.float64(mlp.draw_params(3, [index])[0])
        X, y = np.float64(X4[ROWS]), np.float64(LABELS)
        if recipe.optimizer == "adagrad":
            acc = np.full_like(p, recipe.initial_accumulator)
        v, mom = np.zeros_like(p), np.zeros_like(p)
        for e in range(3):
            order = epoch_order(3, index, e, ROWS.size)
            for a in range(0, ROWS.size, 3):
                bt = order[a: a + 3]
                g = _grad64(mlp, p, X[bt], y[bt])
                if recipe.optimizer == "adagrad":
                    acc = acc + g * g
                    p = p - recipe.lr * g / _den(acc, recipe.eps, recipe.eps_in_sqrt)
                else:
                    v = recipe.rho * v + (1 - recipe.rho) * g * g
                    inc = recipe.lr * g / _den(v, recipe.eps, recipe.eps_in_sqrt)
                    if recipe.momentum > 0:
                        mom = recipe.momentum * mom + inc
                        inc = mom
                    p = p - inc
        assert_close_to_reference(got, p, F)


# --- every trainer: bit for bit the reference ---------------------------------------------------------------
TRAIN = {
    "adagrad": Recipe(optimizer="adagrad", lr=0.1, batch_size=3, max_epochs=30, epochs_after_fit=1),
    "adagrad-mse-acc0": Recipe(optimizer="adagrad", lr=0.05, initial_accumulator=0.0, loss="mse", batch_size=5,
                               max_epochs=20, fit_threshold=0.5),
    "rmsprop": Recipe(optimizer="rmsprop", lr=0.01, batch_size=4, max_epochs=30),
    "adagrad-eps-outside": Recipe(optimizer="adagrad", lr=0.1, eps=1e-4, eps_in_sqrt=False, batch_size=8,
                                  max_epochs=15),
    "rmsprop-momentum-eps-outside": Recipe(optimizer="rmsprop", lr=0.01, momentum=0.5, eps=1e-4, eps_in_sqrt=False,
                                           batch_size=2, max_epochs=10),
    "rmsprop-momentum-rho0.8": Recipe(optimizer="rmsprop", lr=0.005, momentum=0.9, rho=0.8, eps=1e-6, batch_size=3,
                                      max_epochs=25, min_epochs=4),
}
_REF: dict = {}


def _reference(name):
    if name not in _REF:
        tp = make_train_plan("4-6-5-1", X4, (ROWS, LABELS), seed=3, recipe=TRAIN[name])
        _REF[name] = (tp, train_range_reference(tp, 0, 4, params=True))
    return _REF[name]


def _same(a, b):
    for f in ("keys", "init_keys", "status", "first_fit", "epochs"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert np.array_equal(a.loss.view(np.uint32), b.loss.view(np.uint32))
    assert np.array_equal(a.params.view(np.uint32), b.params.view(np.uint32))


@pytest.mark.parametrize("name", sorted(TRAIN))
def test_numba_trainer_bit_for_bit(name):
    pytest.importorskip("numba")
    from fastpoly.backends.numba.train import train_range_numba

    tp, ref = _reference(name)
    _same(ref, train_range_numba(tp, 0, 4, params=True))


@pytest.mark.cuda_emu
@pytest.mark.parametrize("name", sorted(TRAIN))
def test_cuda_trainer_bit_for_bit_emulated(emu, name):
    from fastpoly.backends.cuda.train import train_range_cuda

    tp, ref = _reference(name)
    _same(ref, train_range_cuda(tp, 0, 4, params=True, device=emu.EmuDevice()))


def test_recipes_train():
    """The trainer recipes above are not vacuous: some runs fit S, and training moved every run's parameters."""
    fitted = 0
    for name in TRAIN:
        tp, ref = _reference(name)
        fitted += int(np.sum(ref.first_fit > 0))
        init = tp.plan.mlp.draw_params(3, list(range(4)))
        assert np.all(np.any(ref.params != init, axis=1)), name
    assert fitted > 0


def test_cli_options(tmp_path, capsys):
    from fastpoly.cli.main import main

    base = ["train", "3-4-1", "--train", "0,3,5", "--target", "01101001", "--runs", "4", "--max-epochs", "5",
            "--backend", "numpy", "--no-progress"]
    assert main(base + ["--optimizer", "rmsprop", "--rho", "0.8", "--momentum", "0.5", "--eps", "1e-5",
                        "--eps-outside-sqrt", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "'optimizer': 'rmsprop'" in out and "'rho': 0.8" in out and "'eps_in_sqrt': False" in out
    assert "'momentum': 0.5" in out and "'eps': 1e-05" in out
    assert main(base + ["--optimizer", "adagrad", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "'initial_accumulator': 0.1" in out and "'eps': 1e-07" in out and "'lr': 0.001" in out
    assert main(base + ["--optimizer", "adam", "--initial-accumulator", "0.2", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "initial_accumulator is an option of optimizer='adagrad'" in err[0]


@pytest.mark.parametrize("opt", ["adagrad", "rmsprop", "adam"])
def test_sample_sgd_keyword_optimizer_takes_its_defaults(opt):
    from fastpoly.sgd import sample_sgd

    res = sample_sgd("3-4-1", boolean_inputs(3), ([0, 3, 5], [0, 1, 1]), 2, seed=1, backend="numpy",
                     optimizer=opt, max_epochs=2, progress=False)
    r = res.meta["sgd_recipe"]
    assert r["optimizer"] == opt and r["lr"] == OPTIMIZERS[opt].default_lr and r["eps"] == OPTIMIZERS[opt].default_eps
