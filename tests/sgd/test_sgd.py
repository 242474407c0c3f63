"""P_SGD trainers: NumPy reference vs Numba bit for bit, partitions, init, gradients, stopping rules, errors."""
from __future__ import annotations

import numpy as np
import pytest
from support import float_bits

import fastpoly
from fastpoly import MLP, boolean_inputs
from fastpoly.keys import pack_bits
from fastpoly.sgd import Recipe, compare, make_train_plan, sample_sgd
from fastpoly.sgd.plan import run_rule
from fastpoly.sgd.reference import (
    STATUS_FAILED,
    _gradient,
    epoch_order,
    train_range_reference,
    train_run,
)
from fastpoly.stream import fmath_train as sf

numba = pytest.importorskip("numba")
from fastpoly.backends.numba.train import train_range_numba  # noqa: E402

X4 = boolean_inputs(4)
ROWS = np.array([3, 0, 7, 12, 5, 9, 14, 1])
LABELS = ((ROWS >> 1) & 1).astype(np.uint8)

RECIPES = {
    "sgd": Recipe(lr=0.1, batch_size=3, max_epochs=40, epochs_after_fit=1),
    "momentum": Recipe(lr=0.05, momentum=0.9, batch_size=4, max_epochs=30),
    "nesterov-mse": Recipe(lr=0.02, momentum=0.5, nesterov=True, loss="mse", batch_size=8, max_epochs=30),
    "adam": Recipe(optimizer="adam", lr=0.01, batch_size=5, max_epochs=30, fit_threshold=0.5),
    "adam-mse": Recipe(optimizer="adam", lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, loss="mse", batch_size=3,
                       max_epochs=25, min_epochs=4),
}


def _same(a, b):
    for f in ("keys", "init_keys", "status", "first_fit", "epochs"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert np.array_equal(float_bits(a.loss), float_bits(b.loss))
    if a.params is not None and b.params is not None:
        assert np.array_equal(float_bits(a.params), float_bits(b.params))


def test_loss_math_numpy_equals_numba_bits():
    from fastpoly.backends.numba import vecmath as V

    @numba.njit
    def run(x, out):
        for i in range(x.size):
            out[0, i] = V.exp32(x[i])
            out[1, i] = V.sigmoid32(x[i])
            out[2, i] = V.softplus32(x[i])
            out[3, i] = V.log1p32(abs(x[i]))

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(20000) * 20, rng.standard_normal(5000) * 1e-3,
                        [0, -0.0, 88.5, 89.5, -103.9, -110, 1e-40]]).astype(np.float32)
    out = np.empty((4, x.size), np.float32)
    run(x, out)
    for i, f in enumerate((sf.exp32, sf.sigmoid32, sf.softplus32)):
        assert np.array_equal(float_bits(f(x)), float_bits(out[i]))
    assert np.array_equal(float_bits(sf.log1p32(np.abs(x))), float_bits(out[3]))
    assert np.allclose(sf.sigmoid32(x), 1 / (1 + np.exp(-x.astype(np.float64))), rtol=3e-7, atol=1e-37)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_numba_equals_reference_bit_for_bit(name):
    tp = make_train_plan("4-6-5-1", X4, (ROWS, LABELS), seed=3, recipe=RECIPES[name])
    ref = train_range_reference(tp, 0, 4, params=True)
    got = train_range_numba(tp, 0, 4, params=True)
    _same(ref, got)


#: wide layers and large minibatches exercise the register-blocked tiles of the Numba trainer
WIDE = {
    "5-17-9-1-batch11": (MLP(5, (17, 9)), dict(optimizer="sgd", lr=0.05, batch_size=11, max_epochs=6)),
    "8-24-1-batch40": (MLP(8, (24,)), dict(optimizer="sgd", momentum=0.9, lr=0.02, batch_size=40, max_epochs=5)),
    "6-9-33-2-1-adam-mse-batch17": (MLP(6, (9, 33, 2)), dict(optimizer="adam", lr=0.01, loss="mse", batch_size=17,
                                                            max_epochs=5)),
    "7-40-40-1-nobias-nesterov": (MLP(7, (40, 40), bias=False), dict(optimizer="sgd", momentum=0.9, nesterov=True,
                                                                      lr=0.01, batch_size=8, max_epochs=4)),
}


@pytest.mark.parametrize("name", sorted(WIDE))
def test_numba_equals_reference_on_wide_layers(name):
    arch, opts = WIDE[name]
    X = boolean_inputs(arch.n_inputs)
    rows = np.random.default_rng(7).choice(X.shape[0], min(44, X.shape[0] - 2), replace=False)
    labels = ((rows * 2654435761) >> 7) & 1
    tp = make_train_plan(arch, X, (rows, labels), seed=11, recipe=Recipe(**opts))
    ref = train_range_reference(tp, 2**32 - 1, 2**32 + 2, params=True)
    for threads in (1, 2):
        _same(ref, train_range_numba(tp, 2**32 - 1, 2**32 + 2, params=True, n_threads=threads))


def test_no_bias_identity_and_one_layer():
    for arch in (MLP(4, (5,), bias=False), MLP(4, (3, 4), activation="identity"), MLP(4, ())):
        tp = make_train_plan(arch, X4, (ROWS, LABELS), seed=7, recipe=Recipe(lr=0.05, batch_size=3, max_epochs=15))
        _same(train_range_reference(tp, 5, 8, params=True), train_range_numba(tp, 5, 8, params=True))


def test_partition_and_threads_invariance():
    tp = make_train_plan("4-6-5-1", X4, (ROWS, LABELS), seed=11, recipe=RECIPES["momentum"])
    whole = train_range_numba(tp, 0, 12, params=True)
    parts = [train_range_numba(tp, a, b, params=True, n_threads=t) for a, b, t in ((0, 5, 1), (5, 6, 2), (6, 12, 2))]
    for f in ("keys", "status", "epochs", "params"):
        assert np.array_equal(getattr(whole, f), np.concatenate([getattr(p, f) for p in parts]))
    one = train_range_reference(tp, 9, 10, params=True)
    assert np.array_equal(float_bits(one.params[0]), float_bits(whole.params[9]))


def test_init_is_instantiate():
    tp = make_train_plan("4-6-5-1", X4, (ROWS, LABELS), seed=5, recipe=Recipe(max_epochs=1))
    b = train_range_numba(tp, 0, 6)
    keyrows = tp.plan.key_rows
    for i in range(6):
        net = tp.plan.mlp.instantiate(5, i)
        out = fastpoly.evaluate(net, X4[keyrows], backend="numpy")
        assert np.array_equal(b.init_keys[i], pack_bits(out > 0))


def test_init_params_equal_instantiate_in_reference():
    tp = make_train_plan("4-6-5-1", X4, (ROWS, LABELS), seed=5, recipe=Recipe(lr=1e-30, max_epochs=1))
    p = train_run(tp, 2)["params"]  # lr so small that the one epoch cannot move any parameter
    net = tp.plan.mlp.instantiate(5, 2)
    flat = np.concatenate([np.concatenate([l.W.reshape(-1), l.b]) for l in net.layers])
    assert np.array_equal(float_bits(p), float_bits(flat))


def test_epoch_order_is_a_permutation_and_varies():
    orders = [epoch_order(9, 4, e, 13) for e in range(5)]
    for o in orders:
        assert sorted(o.tolist()) == list(range(13))
    assert len({tuple(o) for o in orders}) == 5
    assert not np.array_equal(epoch_order(9, 5, 0, 13), orders[0])


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_gradient_against_finite_differences(loss):
    mlp = MLP(3, (4, 3))
    rng = np.random.default_rng(2)
    p = mlp.draw_params(1, [0])[0]
    X = rng.standard_normal((5, 3)).astype(np.float32)
    y = np.array([1, 0, 1, 1, 0], np.uint8)
    g = _gradient(mlp, p, X, y, 0 if loss == "ce" else 1).astype(np.float64)

    def L(q):
        h = X.astype(np.float64)
        offs = mlp.param_offsets()
        w = mlp.widths
        for i, (wo, bo) in enumerate(offs):
            W = q[wo:wo + w[i] * w[i + 1]].reshape(w[i + 1], w[i])
            h = h @ W.T + q[bo:bo + w[i + 1]]
            if i < len(offs) - 1:
                h = np.maximum(h, 0)
        z = h[:, 0]
        if loss == "ce":
            return np.mean(np.logaddexp(0, z) - y * z)
        return np.mean((z - y) ** 2)

    q = p.astype(np.float64)
    fd = np.empty_like(q)
    for i in range(q.size):
        e = np.zeros_like(q)
        e[i] = 1e-6
        fd[i] = (L(q + e) - L(q - e)) / 2e-6
    assert np.allclose(g, fd, rtol=1e-3, atol=1e-5)


def test_stopping_rules_and_leak_rule():
    r = Recipe(lr=0.1, batch_size=3, max_epochs=60, epochs_after_fit=2)
    tp = make_train_plan("4-6-5-1", X4, (ROWS, LABELS), seed=3, recipe=r)
    b = train_range_numba(tp, 0, 8)
    ok = b.status == 0
    assert ok.any()
    assert np.all(b.epochs[ok] >= b.first_fit[ok] + 2)
    r2 = r.replace(epochs_after_fit=0, min_epochs=50)
    b2 = train_range_numba(make_train_plan("4-6-5-1", X4, (ROWS, LABELS), seed=3, recipe=r2), 0, 8)
    assert np.all(b2.epochs[b2.status == 0] >= 50)
    # leak: runs after the worker's first fitting run use E + epochs_after_fit as min_epochs
    tpl = tp.with_leak(2, np.array([30, 40]), np.array([0, 1]))
    assert run_rule(tpl, 0) == (0, 2) and run_rule(tpl, 1) == (0, 2)
    assert run_rule(tpl, 2) == (32, 0) and run_rule(tpl, 5) == (42, 0)
    bl = train_range_numba(tpl, 0, 8)
    _same(bl, train_range_reference(tpl, 0, 8))
    sel = (bl.status == 0) & (np.arange(8) >= 2)
    assert np.all(bl.epochs[sel] >= np.where(np.arange(8) % 2 == 0, 32, 42)[sel])


def test_sample_sgd_counts_records_and_backends():
    kw = dict(arch="4-6-5-1", X=X4, train=(ROWS, LABELS), n_runs=10, seed=3, recipe=RECIPES["sgd"])
    a = sample_sgd(backend="numba", records=True, batch_size=3, **kw)
    b = sample_sgd(backend="numpy", **kw)
    assert a == b
    assert a.n_samples == 10 and a.n_accepted + a.info["n_failed"] == 10
    assert a.meta["sgd_recipe"]["lr"] == 0.1 and a.meta["key_rows"] == [r for r in range(16) if r not in ROWS]
    rec = a.info["records"]
    assert np.array_equal(rec["index"], np.arange(10))
    fitted = rec["status"] != STATUS_FAILED
    assert int(fitted.sum()) == a.n_accepted
    for i in np.flatnonzero(fitted):
        assert a.count(rec["keys"][i]) >= 1
    # P_SGD and P_B are keyed alike but never merge
    pb = fastpoly.sample("4-6-5-1", X4, 2000, seed=3, train=(ROWS, LABELS), backend="numpy", progress=False)
    assert np.array_equal(pb.key_rows(), a.key_rows())
    with pytest.raises(ValueError, match="sgd_recipe"):
        a.merge(pb)
    c = compare(a, pb, k=1, target=np.array([(i >> 1) & 1 for i in range(16)]))
    assert c.errors is not None and abs(sum(v[0] for v in c.mass_by_errors.values()) - 1) < 1e-12


def test_recipe_that_cannot_fit_counts_failed():
    X = np.array([[0, 0], [0, 0], [1, 0], [0, 1]], np.float32)  # rows 0 and 1 identical, labels differ
    res = sample_sgd("2-3-1", X, train=([0, 1], [0, 1]), n_runs=4, backend="numba", max_epochs=5)
    assert res.n_accepted == 0 and res.info["n_failed"] == 4 and res.n_distinct == 0


@pytest.mark.parametrize("kw, match", [
    (dict(train=([], [])), "empty"),
    (dict(train=None), "train set"),
    (dict(train=([1, 2], [0, 2])), "0 or 1"),
    (dict(train=([1, 2], [0])), "equal length"),
    (dict(train=([1, 1], [0, 1])), "duplicates"),
    (dict(train=([1, 99], [0, 1])), r"\[0, 16\)"),
    (dict(lr=0), "lr"),
    (dict(lr=-1), "lr"),
    (dict(optimizer="adadelta"), "optimizer"),
    (dict(loss="hinge"), "loss"),
    (dict(nesterov=True), "nesterov"),
    (dict(momentum=1.0), "momentum"),
    (dict(minibatch=0), "batch_size"),
    (dict(max_epochs=0), "max_epochs"),
    (dict(eps=0), "eps"),
    (dict(fit_threshold=float("nan")), "fit_threshold"),
    (dict(arch="4-3-1", activation="sign"), None),
    (dict(bogus=1), "unknown recipe"),
    (dict(n_runs=0), "n_runs"),
])
def test_bad_inputs(kw, match):
    kw = dict(kw)
    args = dict(arch="4-6-5-1", X=X4, train=(ROWS, LABELS), n_runs=1, backend="numpy", max_epochs=1)
    if kw.pop("activation", None):
        args["arch"] = MLP(4, (3,), activation="sign")
        match = "activations"
        kw.pop("arch")
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        sample_sgd(**args)


def test_compare_refuses_different_test_rows():
    a = sample_sgd("4-6-5-1", X4, (ROWS, LABELS), n_runs=3, backend="numba", max_epochs=20, lr=0.1)
    b = sample_sgd("4-6-5-1", X4, (ROWS[:-1], LABELS[:-1]), n_runs=3, backend="numba", max_epochs=20, lr=0.1)
    with pytest.raises(ValueError, match="test rows"):
        compare(a, b)


def test_anchor_train_set_and_target():
    from fastpoly.sgd.anchor import anchor_problem, anchor_train_set

    r32, y32 = anchor_train_set(32)
    r64, _ = anchor_train_set(64)
    assert np.array_equal(r64[:32], r32) and len(set(r64.tolist())) == 64
    assert np.array_equal(y32, (r32 >> 1) & 1)
    _, _, _, t = anchor_problem(32)
    from fastpoly.keys import convert_string, hex_to_key, key_to_bits

    # the target in fastpoly rows is 0011 x 32, the anchor's MSB-first string with the same row indices
    s = key_to_bits(hex_to_key(t, 128), 128)
    assert s == "0011" * 32
    assert convert_string("0011" * 32, "python", "rows") != s  # converting conventions is not the identity


def test_cli_train_and_plot_compare(tmp_path, capsys):
    from fastpoly.cli.main import main

    tgt = "0011" * 4
    rows = ",".join(map(str, ROWS))
    assert main(["train", "4-6-5-1", "--train", rows, "--target", tgt, "--runs", "20", "--lr", "0.1",
                 "--max-epochs", "40", "--records", "--no-progress", "--out", str(tmp_path / "t")]) == 0
    assert main(["sample", "4-6-5-1", "--train", rows, "--target", tgt, "--samples", "20000", "--backend", "numba",
                 "--no-plot", "--no-progress", "--out", str(tmp_path / "s")]) == 0
    a = fastpoly.FunctionCounts.load(tmp_path / "t" / "counts.npz")
    b = fastpoly.FunctionCounts.load(tmp_path / "s" / "counts.npz")
    assert a.meta["train_rows"] == b.meta["train_rows"] == ROWS.tolist()
    assert np.load(tmp_path / "t" / "records.npz")["epochs"].shape == (20,)
    assert main(["plot", "compare", str(tmp_path / "t" / "counts.npz"), str(tmp_path / "s" / "counts.npz"),
                 "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000 and "log P correlation" in (tmp_path / "c.txt").read_text()
    assert main(["train", "4-6-5-1", "--runs", "2", "--out", str(tmp_path / "x")]) == 2  # no train set


def test_import_fastpoly_stays_light():
    import subprocess
    import sys

    code = "import sys, fastpoly, fastpoly.sgd; fastpoly.sample_sgd; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
