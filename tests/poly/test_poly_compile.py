"""compile_polynomial: certified bounds hold, structured == dense, evaluate(), report, bad input."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly.cli.poly import measure_error
from fastpoly.network import forward_reference
from fastpoly.poly import Polynomial, compile_polynomial

P = "x0*x1*x2 + x3**2 - 0.5*x1 + 2"
ACTS = ["softplus", "exp", "silu", "gelu", "tanh", "sigmoid", "square", "relu"]


def _points(net, n=3000, seed=0):
    dom = net.domain
    g = np.random.default_rng(seed)
    X = g.uniform(dom[:, 0], dom[:, 1], (n, dom.shape[0]))
    k = dom.shape[0]
    corners = (np.arange(2**k)[:, None] >> np.arange(k)[None, :]) & 1
    return np.vstack([X, np.where(corners == 1, dom[:, 1], dom[:, 0])])


def _check_bound(net):
    X = _points(net)
    err = np.abs(fastpoly.evaluate(net, X, backend="numpy") - net.polynomial(X)).max()
    bound = net.report().certified_error
    # p is evaluated in float64 (error ~1e-15 here, far below every bound)
    assert err <= bound, (err, bound)
    return err, bound


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", ACTS)
def test_certified_bound_tree(act, dtype):
    for centered in ([False] if act == "relu" else [False, True]):
        net = compile_polynomial(P, activation=act, dtype=dtype, centered=centered)
        err, bound = _check_bound(net)
        assert net.dtype == np.dtype(dtype)
        # the bound is informative, not vacuous
        assert bound < (1e-3 if dtype == "float64" else 0.5)


@pytest.mark.parametrize("act", ["softplus", "exp", "tanh", "sigmoid", "silu", "gelu"])
def test_certified_bound_shallow_and_depth(act):
    for kw in (dict(construction="shallow"), dict(depth=2), dict(construction="shallow", dtype="float32",
                                                                  centered=True)):
        _check_bound(compile_polynomial("x0*x1*x2 - 2*x1**2*x0 + x2", activation=act, **kw))


def test_fixed_lambda_and_biases():
    for bias in ("paper", "fourth", 0.7):
        for lam in (0.1, 1e-3):
            _check_bound(compile_polynomial(P, lam=lam, bias=bias))


def test_asymmetric_domain_and_per_variable_domain():
    _check_bound(compile_polynomial(P, domain=(0.5, 3.0)))
    _check_bound(compile_polynomial("x0*x1**3", domain=[[-4, 1], [0, 0.25]], dtype="float32"))


def test_relu_tol_controls_teeth():
    a = compile_polynomial("x0*x1 + x1**2", activation="relu", tol=1e-3)
    b = compile_polynomial("x0*x1 + x1**2", activation="relu", tol=1e-8)
    assert a.info["teeth"] < b.info["teeth"]
    ea, _ = _check_bound(a)
    eb, _ = _check_bound(b)
    assert eb < ea


def test_structured_equals_dense_forward():
    for act in ACTS:
        net = compile_polynomial(P, activation=act)
        X = _points(net, 300)
        s = net.evaluate_reference(X, np.float64)
        d = forward_reference(net, X, np.float64)
        assert np.array_equal(s, d), act  # same weights, same order, unfused float64
        net32 = compile_polynomial(P, activation=act, dtype="float32")
        s32 = net32.evaluate_reference(X, np.float32)
        d32 = forward_reference(net32, X, np.float32)  # fused multiply-adds: not bit-identical
        assert s32.dtype == d32.dtype == np.float32
        bound = net32.report().certified_error
        assert np.abs(s32 - d32).max() <= 2 * bound, act
        assert np.abs(d32[:, 0] - net32.polynomial(X)).max() <= bound, act


def test_structured_centered_equals_dense_within_bound():
    net = compile_polynomial(P, centered=True)
    X = _points(net, 300)
    s = net.evaluate_reference(X)[:, 0]
    d = forward_reference(net, X)[:, 0]
    # the dense form is the same function evaluated non-centered (more cancellation, no
    # certified bound for the centered lambdas): it agrees to the non-centered rounding level
    assert np.abs(s - d).max() <= 1e-4
    assert np.abs(s - net.polynomial(X)).max() <= net.report().certified_error
    assert all(L.shift is not None for L in net.structured.layers[:-1])


def test_evaluate_api_shape_and_dtype():
    net = compile_polynomial(P, dtype="float32")
    X = np.zeros((5, 4))
    y = fastpoly.evaluate(net, X, backend="numpy")
    assert y.shape == (5,) and y.dtype == np.float32
    assert fastpoly.evaluate(net, X, backend="numpy", dtype="float64").dtype == np.float64


def test_report_fields():
    net = compile_polynomial("x0*x1*x2*x3", lam=0.01, bias="paper")
    r = net.report()
    assert r.hidden_neurons == 12 and r.hidden_layers == 2 and r.widths == (4, 8, 4, 1)
    assert r.nonzero_weights == sum(L.nnz for L in net.structured.layers)
    assert r.flops_per_point == 2 * r.nonzero_weights
    assert r.max_abs_weight == max(np.abs(L.data).max() for L in net.structured.layers)
    s = str(r)
    assert "certified max error" in s and "hidden neurons" in s
    assert r.as_dict()["hidden_neurons"] == 12
    assert "PolyNetwork" in repr(net)


def test_constant_and_affine_polynomials():
    net = compile_polynomial("2*x0 - x1 + 3")
    assert net.report().hidden_layers == 0
    X = np.random.default_rng(1).uniform(-1, 1, (10, 2))
    np.testing.assert_allclose(net(X), 2 * X[:, 0] - X[:, 1] + 3, rtol=0, atol=1e-14)
    c = compile_polynomial(Polynomial({(0, 0): 5}))
    assert np.all(c(X) == 5)


def test_shared_subproducts():
    shared = compile_polynomial("x0*x1*x2*x3 + x0*x1*x4*x5", lam=0.01, bias="paper").report()
    # x0*x1 is built once: 5 product gates (not 6)
    assert shared.gate_neurons == 4 * 5


def test_lam_auto_beats_papers_fixed_lambda():
    p = "*".join(f"x{i}" for i in range(4))
    auto = compile_polynomial(p, domain=(-2, 2))
    fixed = compile_polynomial(p, domain=(-2, 2), lam=0.1)
    ea, _ = _check_bound(auto)
    ef, _ = _check_bound(fixed)
    assert ea < ef / 100


def test_lambda_depends_on_dtype_and_domain():
    a64 = compile_polynomial("x0*x1", bias="paper")
    a32 = compile_polynomial("x0*x1", bias="paper", dtype="float32")
    big = compile_polynomial("x0*x1", bias="paper", domain=(-10, 10))
    assert a32.info["lam_min"] > 10 * a64.info["lam_min"]
    assert big.info["lam_min"] < a64.info["lam_min"] / 5
    # docs/design.md#polynomial-gates: measured optima ~2e-4 (float64) and ~3e-2 (float32)
    assert 1e-4 < a64.info["lam_min"] < 4e-4 and 1.5e-2 < a32.info["lam_min"] < 6e-2


@pytest.mark.parametrize("dtype, goal", [("float64", 1e-9), ("float32", 1e-4)])
def test_accuracy_goal_product_of_8_on_box(dtype, goal):
    net = compile_polynomial("*".join(f"x{i}" for i in range(8)), domain=(-2, 2), dtype=dtype, centered=True)
    err, pmax = measure_error(net, 4000, seed=3)
    assert pmax == 256.0  # the corners are included
    assert err / pmax <= goal


@pytest.mark.parametrize("kw, msg", [
    (dict(activation="swish"), "unsupported activation"),
    (dict(activation=None), "unsupported activation"),
    (dict(construction="deep"), "unknown construction"),
    (dict(domain=(1, 1)), "lo >= hi"),
    (dict(domain=(2, -2)), "lo >= hi"),
    (dict(domain=(0, np.inf)), "finite"),
    (dict(domain=[[0, 1]] * 3), "shape"),
    (dict(lam=0.0), "positive"),
    (dict(lam=-1.0), "positive"),
    (dict(lam=float("nan")), "positive"),
    (dict(lam="big"), "lam must be"),
    (dict(lam=1e-60, dtype="float32"), "underflows"),
    (dict(bias="middle"), "bias must be"),
    (dict(bias=float("inf")), "finite"),
    (dict(depth=0), "depth"),
    (dict(depth=2.5), "depth"),
    (dict(construction="shallow", depth=2), "depth=1"),
    (dict(dtype="float16"), "dtype"),
    (dict(dtype="int64"), "dtype"),
    (dict(activation="relu", construction="shallow"), "tree"),
    (dict(activation="relu", lam=0.1), "relu"),
    (dict(activation="relu", centered=True), "relu"),
    (dict(activation="relu", tol=2.0), "tol"),
    (dict(tol=1e-3), "relu. only"),
    (dict(centered="yes"), "centered"),
    (dict(activation="tanh", bias=0.0), "degenerate"),
    (dict(activation="square", construction="shallow"), "vanishing Taylor"),
])
def test_bad_configurations_raise(kw, msg):
    with pytest.raises(ValueError, match=msg):
        compile_polynomial(P, **kw)


@pytest.mark.parametrize("bad", ["sin(x0)", "1/x0", "x0**0.5", "y*x0", "", "x0-x0"])
def test_bad_polynomials_raise(bad):
    with pytest.raises(ValueError):
        compile_polynomial(bad)


def test_shallow_block_too_large_raises():
    with pytest.raises(ValueError, match="neurons"):
        compile_polynomial("*".join(f"x{i}" for i in range(17)), construction="shallow")


def test_to_torch():
    torch = pytest.importorskip("torch")
    net = compile_polynomial(P)
    X = _points(net, 100)
    seq = net.to_torch()
    y = seq(torch.as_tensor(X)).detach().numpy()[:, 0]
    np.testing.assert_allclose(y, net(X), rtol=0, atol=2 * net.report().certified_error)


def test_save_load_roundtrip_dense(tmp_path):
    net = compile_polynomial(P)
    net.save(tmp_path / "n.npz")
    back = fastpoly.network.Network.load(tmp_path / "n.npz")
    X = _points(net, 50)
    np.testing.assert_array_equal(forward_reference(back, X), forward_reference(net, X))
