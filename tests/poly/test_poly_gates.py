"""Gate oracles (docs/design.md#polynomial-gates, #network-sizes): symmetries, exact cases, closed forms, error laws, counts."""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest

from fastpoly.poly import gates
from fastpoly.poly.bounds import multiply_gate_truncation_bound
from fastpoly.poly.compile import compile_polynomial
from fastpoly.poly.smooth import get_smooth

RNG = np.random.default_rng(7)
UV = RNG.uniform(-1, 1, (200, 2))
SMOOTH_ACTS = ["softplus", "exp", "silu", "gelu", "tanh", "sigmoid", "square"]


# ---------------------------------------------------------------------------- symmetries
@pytest.mark.parametrize("act", SMOOTH_ACTS)
def test_gate_symmetries_exact_in_reference(act):
    u, v = UV[:, 0], UV[:, 1]
    b = get_smooth(act).paper_bias
    m = gates.multiply_value(u, v, act, 0.05, b)
    assert np.array_equal(m, gates.multiply_value(v, u, act, 0.05, b))
    assert np.array_equal(m, gates.multiply_value(-u, -v, act, 0.05, b))
    assert np.array_equal(-m, gates.multiply_value(-u, v, act, 0.05, b))
    assert np.array_equal(-m, gates.multiply_value(u, -v, act, 0.05, b))
    assert np.all(gates.multiply_value(u, 0 * v, act, 0.05, b) == 0)


@pytest.mark.parametrize("act", ["softplus", "tanh", "gelu"])
def test_gate_network_symmetries(act):
    net = gates.multiply(act, lam=0.05, centered=True)
    u, v = UV[:, :1], UV[:, 1:]
    m = net(np.hstack([u, v]))
    tol = 1e-12
    np.testing.assert_allclose(net(np.hstack([v, u])), m, rtol=0, atol=tol)
    np.testing.assert_allclose(net(np.hstack([-u, -v])), m, rtol=0, atol=tol)
    np.testing.assert_allclose(net(np.hstack([-u, v])), -m, rtol=0, atol=tol)
    # centered gate at (u, 0): every neuron pair cancels exactly
    assert np.all(net(np.hstack([u, 0 * v])) == 0)


# ------------------------------------------------------------------------ exact / closed forms
@pytest.mark.parametrize("lam", [2.0**-10, 0.25, 1.0, 8.0])
def test_square_activation_gate_exact_in_rationals(lam):
    net = gates.multiply("square", lam=lam, bias=0.0)
    pts = np.vstack([UV[:20], [[1, -1], [0.5, 0.25]]])
    exact = gates.evaluate_structured_exact(net.structured, pts)
    for (x, y), (out,) in zip(pts, exact):
        assert out == Fraction(float(x)) * Fraction(float(y))


def test_square_activation_whole_polynomial_exact():
    net = compile_polynomial("3*x0*x1**2 - x2 + x0**3*x2 + 1", activation="square")
    pts = UV[:10, :1] * np.array([[1.0, 0.5, -0.25]])
    got = gates.evaluate_structured_exact(net.structured, pts)
    want = net.polynomial.evaluate_exact(pts)
    assert [g[0] for g in got] == want
    assert net.report().certified_error < 1e-12  # rounding only: no truncation


def test_exp_closed_form():
    lam = 0.3
    u, v = UV[:, 0], UV[:, 1]
    want = np.sinh(lam * u) * np.sinh(lam * v) / lam**2
    np.testing.assert_allclose(gates.multiply_value(u, v, "exp", lam, 0.0), want, rtol=1e-12, atol=1e-14)
    net = gates.multiply("exp", lam=lam, bias="paper", centered=True)
    np.testing.assert_allclose(net(UV), want, rtol=1e-12, atol=1e-14)


def test_softplus_closed_form():
    lam = 0.3
    u, v = UV[:, 0], UV[:, 1]
    lc = lambda t: np.log(np.cosh(t))  # noqa: E731
    want = 2 / lam**2 * (lc(lam * (u + v) / 2) - lc(lam * (u - v) / 2))
    np.testing.assert_allclose(gates.multiply_value(u, v, "softplus", lam, 0.0), want, rtol=1e-11, atol=1e-13)
    net = gates.multiply("softplus", lam=lam, bias="paper", centered=True)
    np.testing.assert_allclose(net(UV), want, rtol=1e-11, atol=1e-13)


# -------------------------------------------------------------------------- error laws
_MP = {
    "softplus": lambda z: mp.log1p(mp.exp(z)),
    "exp": mp.exp,
    "silu": lambda z: z / (1 + mp.exp(-z)),
    "gelu": lambda z: z * mp.ncdf(z),
    "tanh": mp.tanh,
    "sigmoid": lambda z: 1 / (1 + mp.exp(-z)),
}


def _mp_gate(act, u, v, lam, b):
    f = _MP[act]
    b = mp.mpf(b)
    s2 = mp.diff(f, b, 2)
    p, q = lam * (u + v), lam * (u - v)
    return (f(b + p) + f(b - p) - f(b + q) - f(b - q)) / (4 * s2 * lam**2)


@pytest.mark.parametrize("act, c4", [("softplus", -1 / 12), ("exp", 1 / 6), ("silu", -1 / 6),
                                     ("gelu", -1 / 3)])
def test_leading_error_coefficient(act, c4):
    with mp.workdps(50):
        u, v, lam = mp.mpf("0.7"), mp.mpf("-0.4"), mp.mpf("1e-4")
        m = _mp_gate(act, u, v, lam, 0)
        coef = (m / (u * v) - 1) / (lam**2 * (u**2 + v**2))
    assert abs(float(coef) - c4) < 1e-6


@pytest.mark.parametrize("act", ["softplus", "tanh", "sigmoid"])
def test_convergence_orders(act):
    a = get_smooth(act)
    with mp.workdps(50):
        u, v = mp.mpf("0.9"), mp.mpf("0.6")
        for b, order in ((a.paper_bias, 2), (a.fourth_bias, 4)):
            e1 = abs(_mp_gate(act, u, v, mp.mpf("0.01"), b) - u * v)
            e2 = abs(_mp_gate(act, u, v, mp.mpf("0.005"), b) - u * v)
            assert abs(float(mp.log(e1 / e2, 2)) - order) < 0.05, (b, order)


def test_convergence_order_in_network_float64():
    X = np.vstack([UV, [[1, 1]]])
    ref = X[:, 0] * X[:, 1]
    for bias, order in (("paper", 2), ("fourth", 4)):
        errs = [np.abs(gates.multiply("softplus", lam=lam, bias=bias)(X) - ref).max()
                for lam in (0.4, 0.2, 0.1)]
        slopes = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
        assert np.all(np.abs(slopes - order) < 0.2), (bias, slopes)


def test_softplus_certified_gate_bound_formula_and_validity():
    lam = 0.2
    u, v = UV[:, 0], UV[:, 1]
    bound = multiply_gate_truncation_bound(u, v, lam, "softplus", 0.0)
    ref = lam**2 * (u**4 + 6 * u**2 * v**2 + v**4) / 48
    assert np.all(bound >= ref) and np.all(bound <= ref * 1.01 + 1e-300)
    err = np.abs(gates.multiply_value(u, v, "softplus", lam, 0.0) - u * v)
    assert np.all(err <= bound)


# -------------------------------------------------------------------------- bias points
def test_bias_points_match_reference():
    t, s, sp = get_smooth("tanh"), get_smooth("sigmoid"), get_smooth("softplus")
    assert t.paper_bias == pytest.approx(0.658479, abs=1e-6)
    assert t.deriv_exact(2, t.paper_bias) == pytest.approx(-0.769800, abs=1e-6)
    assert s.paper_bias == pytest.approx(1.316958, abs=1e-6)
    assert sp.fourth_bias == pytest.approx(math.log(2 + math.sqrt(3)))
    assert sp.deriv_exact(2, sp.fourth_bias) == pytest.approx(1 / 6)
    assert t.fourth_bias == pytest.approx(1.146216, abs=1e-6)
    assert t.deriv_exact(2, t.fourth_bias) == pytest.approx(-0.544331, abs=1e-6)
    assert s.fourth_bias == pytest.approx(2.292432, abs=1e-6)
    assert s.deriv_exact(2, s.fourth_bias) == pytest.approx(-0.0680414, abs=1e-7)
    for a in (t, s, sp, get_smooth("silu"), get_smooth("gelu")):
        assert abs(a.deriv_exact(4, a.fourth_bias)) < 1e-12
        assert abs(a.deriv_exact(2, a.fourth_bias)) > 1e-3


def test_derivatives_match_finite_differences():
    z = np.linspace(-3, 3, 13)
    for name in SMOOTH_ACTS:
        a = get_smooth(name)
        for k in range(1, 6):
            with mp.workdps(30):
                for zi in z[::4]:
                    assert a.deriv(k, np.array(zi)) == pytest.approx(a.deriv_exact(k, zi), rel=1e-9, abs=1e-12)


def test_sup_abs_is_an_upper_bound():
    for name in ("softplus", "tanh", "gelu", "silu", "sigmoid"):
        a = get_smooth(name)
        for k in (0, 1, 2, 4, 6):
            for w in (0.0, 0.3, 2.0, 100.0):
                zs = np.linspace(-w, w, 2001)
                true = np.abs(a.deriv(k, 0.5 + zs)).max()
                sup = a.sup_abs(k, 0.5, np.array([w]))[0]
                assert sup >= true and sup <= true * 1.25 + 0.05


# --------------------------------------------------------------------------- degenerate
@pytest.mark.parametrize("kw, msg", [
    (dict(activation="tanh", bias=0.0), "degenerate"),
    (dict(activation="sigmoid", bias=0.0), "degenerate"),
    (dict(activation="exp", bias="fourth"), "no fourth-order"),
    (dict(activation="square", bias="fourth"), "no fourth-order"),
])
def test_degenerate_gate_bias_raises(kw, msg):
    with pytest.raises(ValueError, match=msg):
        gates.multiply(**kw)


def test_degenerate_shallow_blocks_raise():
    with pytest.raises(ValueError, match="vanishes"):
        gates.shallow_product(3, "softplus", bias="paper")  # sigma'''(0) = 0
    with pytest.raises(ValueError, match="vanishes"):
        gates.shallow_product(2, "tanh", bias=0.0)
    with pytest.raises(ValueError, match="vanishing Taylor"):
        gates.shallow_product(3, "square")
    with pytest.raises(ValueError, match="vanishes"):
        gates.shallow_monomial((3,), "silu", bias=0.0)
    # auto picks a non-degenerate point
    net = gates.shallow_product(3, "softplus", bias="auto")
    X = UV[:50, :1] * np.ones((1, 3))
    assert np.abs(net(X) - X.prod(axis=1)).max() <= net.report().certified_error


# --------------------------------------------------------------------------- neuron counts
@pytest.mark.parametrize("n", range(1, 7))
def test_shallow_product_has_2_to_the_n_neurons(n):
    r = gates.shallow_product(n, lam=0.05).report()
    assert r.hidden_neurons == r.hidden_neurons_bias_free == 2**n and r.hidden_layers == 1


@pytest.mark.parametrize("n", range(2, 10))
def test_tree_product_counts(n):
    net = compile_polynomial("*".join(f"x{i}" for i in range(n)), lam=0.05, bias="paper")
    r = net.report()
    assert r.gate_neurons == 4 * (n - 1)
    assert r.hidden_layers == math.ceil(math.log2(n))
    if n & (n - 1) == 0:
        assert r.carry_neurons == 0 and r.hidden_neurons == 4 * (n - 1)


def test_ltr_erratum_n32():
    r = compile_polynomial("*".join(f"x{i}" for i in range(32)), lam=0.05, bias="paper").report()
    assert r.hidden_neurons == 124 and r.hidden_layers == 5


@pytest.mark.parametrize("r", [(2,), (3,), (4,), (2, 1), (1, 1, 1), (2, 2), (3, 1, 2)])
def test_shallow_monomial_counts(r):
    rep = gates.shallow_monomial(r, lam=0.05).report()
    assert rep.hidden_neurons_bias_free == math.prod(x + 1 for x in r)
    assert rep.hidden_neurons == math.prod(x + 1 for x in r) - (1 if all(x % 2 == 0 for x in r) else 0)


@pytest.mark.parametrize("d", range(2, 17))
def test_power_tree_counts(d):
    r = compile_polynomial(f"x0**{d}", lam=0.05, bias="paper").report()
    assert r.hidden_neurons <= 7 * math.ceil(math.log2(d))
    assert r.hidden_layers == math.ceil(math.log2(d))


def test_square_gate_counts():
    r = gates.square().report()
    assert (r.hidden_neurons, r.hidden_neurons_bias_free) == (2, 3)
    assert gates.multiply().report().hidden_neurons == 4
    assert gates.identity().report().hidden_neurons == 2


@pytest.mark.parametrize("n, k", [(8, 2), (9, 2), (16, 2), (8, 3), (27, 3), (6, 2), (12, 2)])
def test_depth_k_grouping_size(n, k):
    net = compile_polynomial("*".join(f"x{i}" for i in range(n)), depth=k, lam=0.05, bias="auto")
    r = net.report()
    assert r.hidden_layers == k
    # R&T Thm III.1: sizes b_1 ... b_k (product >= n) give at most sum_i (prod_{j>i} b_j) 2^{b_i}
    m, sizes = n, []
    for i in range(1, k + 1):
        g = 1
        while g ** (k - i + 1) < m:
            g += 1
        sizes.append(g)
        m = -(-m // g)
    bound = sum(math.prod(sizes[i + 1:]) * 2 ** sizes[i] for i in range(k))
    assert r.hidden_neurons <= bound


def test_shallow_vs_tree_neuron_counts_helper():
    assert gates.neuron_counts(5, "shallow")[0] == 32
    assert gates.neuron_counts(8, "tree")[0] == 28


# ------------------------------------------------------------------------------ Yarotsky
@pytest.mark.parametrize("m", [0, 1, 2, 3, 5])
def test_yarotsky_square_bound_and_knots(m):
    net = gates.relu_square(m)
    x = np.linspace(-1, 1, 2001)
    err = net(x[:, None]) - x**2
    assert err.min() >= -1e-14 and err.max() <= 2.0 ** (-2 * m - 2) + 1e-14
    assert err.max() >= 0.9 * 2.0 ** (-2 * m - 2)  # the bound is attained (between knots)
    knots = np.arange(-(2**m), 2**m + 1) / 2**m
    exact = gates.evaluate_structured_exact(net.structured, knots[:, None])
    assert [e[0] for e in exact] == [Fraction(float(k)) ** 2 for k in knots]
    for k in knots[knots >= 0]:
        assert gates.yarotsky_square_value(Fraction(float(k)), m) == Fraction(float(k)) ** 2
    assert net.report().certified_error >= 2.0 ** (-2 * m - 2)


@pytest.mark.parametrize("m, M", [(2, 1.0), (4, 2.0), (6, 0.5)])
def test_yarotsky_product_bound_and_axes(m, M):
    net = gates.relu_product(m, M)
    X = RNG.uniform(-M, M, (2000, 2))
    err = np.abs(net(X) - X[:, 0] * X[:, 1])
    assert err.max() <= M * M * 2.0 ** (-2 * m - 2) + 1e-13
    assert err.max() <= net.report().certified_error
    axes = np.array([[t, 0.0] for t in np.linspace(-M, M, 9)] + [[0.0, t] for t in np.linspace(-M, M, 9)])
    exact = gates.evaluate_structured_exact(net.structured, axes)
    assert all(e[0] == 0 for e in exact)


def test_relu_identity_exact():
    net = gates.identity("relu")
    x = RNG.uniform(-1, 1, (50, 1))
    assert [e[0] for e in gates.evaluate_structured_exact(net.structured, x)] == [Fraction(float(v)) for v in x[:, 0]]


# ------------------------------------------------------------------------------ bit gate
@pytest.mark.parametrize("k, D", [(2, 3), (3, 6), (5, 10)])
def test_bit_gate_bound(k, D):
    B = np.array(list(itertools.product([0.0, 1.0], repeat=k)))
    net = gates.bit_gate(k, decimals=D)
    err = np.abs(net(B) - B.prod(axis=1))
    beta = net.info["beta"]
    assert beta > 2 * D * math.log(10)
    assert err.max() <= 1 / (1 + math.exp(beta / 2)) * (1 + 1e-9) + 1e-15
    assert err.max() < 10.0**-D
    # the paper's beta = D ln 10 is an erratum: it misses D decimals
    paper = gates.bit_gate(k, beta=D * math.log(10))
    assert np.abs(paper(B) - B.prod(axis=1)).max() > 10.0**-D


def test_bit_gate_bad_input():
    with pytest.raises(ValueError):
        gates.bit_gate(0)
    with pytest.raises(ValueError):
        gates.bit_gate(3, beta=1.0, decimals=2)
    with pytest.raises(ValueError):
        gates.bit_gate(3, beta=-1.0)
