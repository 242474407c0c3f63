"""Lin-Tegmark-Rolnick classifiers: multi-output networks, the softmax head and its certified bound,
the bridge from fitted generative models, checked against exact Bayes posteriors and scikit-learn."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastpoly
from fastpoly.poly import (
    Polynomial,
    classifier,
    compile_polynomial,
    compile_polynomials,
    from_bernoulli,
    from_gaussians,
    from_sklearn,
)
from fastpoly.poly.classifiers import proba_bound, softmax
from fastpoly.poly.smooth import ALL_ACTIVATIONS
from fastpoly.tolerances import assert_close_to_reference, network_atol

DTYPES = ["float64", "float32"]

#: scikit-learn evaluates its own formula in float64 in another order (e.g. QDA's ``(x - mu) W``
#: before squaring): its probabilities differ from the exact value of our (float64-expanded)
#: polynomials by rounding, far below every bound checked here
SKLEARN_SLACK = 1e-9


# --- the inequality ----------------------------------------------------------------------------------
def test_proba_bound_holds_and_is_nearly_tight():
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(300):
        C = int(rng.integers(2, 7))
        z = rng.normal(0, 3, (50, C))
        eps = rng.uniform(0, 0.5, C) * rng.choice([1e-3, 1e-1, 1.0, 5.0])
        dz = rng.uniform(-1, 1, (50, C)) * eps
        dz[:, 0] = np.sign(dz[:, 0]) * eps[0]
        diff = np.abs(softmax(z + dz) - softmax(z))
        b = proba_bound(eps)
        assert np.all(diff <= b * (1 + 1e-12) + 1e-15)
        worst = max(worst, float(np.max(diff / b)))
    # tight to first order: two classes at z = 0, logits moved by -eps and +eps
    eps = 1e-4
    d = softmax(np.array([[eps, -eps]]))[0, 0] - 0.5
    assert d == pytest.approx(proba_bound([eps, eps])[0], rel=1e-6)
    assert worst > 0.5


# --- synthetic Gaussian mixture: the exact Bayes posterior ------------------------------------------
def _mixture(seed=1, C=3, d=3):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-1, 1, (C, d))
    A = rng.standard_normal((C, d, d)) * 0.5
    S = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(d)
    pri = rng.dirichlet(np.ones(C) * 3)
    return mu, S, pri


def _exact_posterior(mu, S, pri, X):
    from scipy.stats import multivariate_normal

    lj = np.stack([multivariate_normal(mu[y], S[y]).logpdf(X) + np.log(pri[y]) for y in range(len(pri))], 1)
    return softmax(lj)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_gaussian_mixture_within_certified_bound(activation, dtype):
    mu, S, pri = _mixture()
    hs, lp = from_gaussians(mu, S, pri)
    net = classifier(hs, lp, activation=activation, dtype=dtype, domain=(-2, 2))
    rng = np.random.default_rng(2)
    X = np.clip(np.concatenate([rng.multivariate_normal(mu[y], S[y], 300) for y in range(3)]), -2, 2)
    X = np.vstack([X, rng.uniform(-2, 2, (500, 3))])
    exact = _exact_posterior(mu, S, pri, X)
    for backend in ("numpy", "numba"):
        p = fastpoly.evaluate(net, X, backend=backend, output="proba")
        assert p.dtype == np.dtype(dtype) and p.shape == (X.shape[0], 3)
        assert np.all(np.abs(p - exact) <= net.proba_error()[None, :])
        z = fastpoly.evaluate(net, X, backend=backend, output="logits")
        ze = np.stack([-h(X) for h in hs], 1) + lp
        assert np.all(np.abs(z - ze) <= net.logit_errors[None, :])
        lo, hi = net.proba_interval(z)
        assert np.all((lo <= exact) & (exact <= hi))
    # the softmax's own rounding adds a few units of roundoff
    np.testing.assert_allclose(net.proba_error(), np.minimum(1, proba_bound(net.logit_errors)), rtol=1e-6,
                               atol=4 * 2.0**-24 if dtype == "float32" else 1e-14)


# --- scikit-learn ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X / 16.0, y  # pixel intensities in [0, 1]


@pytest.fixture(scope="module")
def digits_qda(digits):
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

    X, y = digits
    est = QuadraticDiscriminantAnalysis(reg_param=0.1).fit(X, y)
    return est, classifier(*from_sklearn(est), dtype="float64", domain=(0, 1), classes=est.classes_)


def _check_against_sklearn(net, est, X, backend="numba"):
    p = fastpoly.evaluate(net, X, backend=backend, output="proba")
    ps = est.predict_proba(X)
    b = net.proba_error()
    assert np.all(np.abs(p - ps) <= b[None, :] + SKLEARN_SLACK)
    top2 = np.sort(p, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    sure = margin > 2 * b.max()
    assert np.array_equal(net.classes[np.argmax(p[sure], axis=1)], est.predict(X[sure]))
    return int(np.count_nonzero(~sure))


def test_digits_qda_matches_sklearn_within_bound(digits, digits_qda, capsys):
    X, _ = digits
    est, net = digits_qda
    assert net.n_inputs == 64 and net.n_outputs == 10
    small = _check_against_sklearn(net, est, X)
    with capsys.disabled():
        print(f"\n  digits QDA (reg_param=0.1, float64): certified proba bound {net.proba_error().max():.2e}; "
              f"{small} of {len(X)} points have margin <= 2x bound")
    assert "certified proba" in str(net.report())


def test_digits_qda_shares_every_monomial(digits_qda):
    _, net = digits_qda
    r = net.report()
    # 64*65/2 = 2080 quadratic monomials computed once (64 squares x 2 + 2016 products x 4 neurons)
    # and 64 linear terms carried (x 2): 8320; compiled one class at a time, each class needs almost all
    # of them (a pixel that is 0 throughout a class drops a few), so sharing saves about 9 networks
    assert r.hidden_neurons == 64 * 2 + 2016 * 4 + 64 * 2
    sep = net.info["separate_hidden_neurons"]
    assert len(sep) == 10 and max(sep) <= r.hidden_neurons and sum(sep) > 9 * r.hidden_neurons
    assert net.info["distinct_monomials"] == 2080 + 64


@pytest.mark.parametrize("dtype", DTYPES)
def test_digits_lda_matches_sklearn_within_bound(digits, dtype):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y = digits
    est = LinearDiscriminantAnalysis().fit(X, y)
    net = classifier(*from_sklearn(est), dtype=dtype, domain=(0, 1), classes=est.classes_)
    assert net.report().hidden_neurons == 0  # linear logits: the output layer alone
    _check_against_sklearn(net, est, X)


def test_binary_lda_and_naive_bayes(digits):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.naive_bayes import BernoulliNB, GaussianNB

    X, y = digits
    two = y < 2
    est = LinearDiscriminantAnalysis().fit(X[two], y[two])
    net = classifier(*from_sklearn(est), domain=(0, 1), classes=est.classes_)
    _check_against_sklearn(net, est, X[two])
    est = GaussianNB(var_smoothing=1e-2).fit(X[:600], y[:600])
    net = classifier(*from_sklearn(est), domain=(0, 1), classes=est.classes_)
    _check_against_sklearn(net, est, X[:300])
    est = BernoulliNB(binarize=0.5).fit(X, y)
    net = classifier(*from_sklearn(est), domain=(0, 1), classes=est.classes_)
    Xb = (X > 0.5).astype(np.float64)  # the estimator's binarisation
    _check_against_sklearn(net, est, Xb)


def test_from_bernoulli_is_the_product_of_bernoullis():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, (3, 5))
    pri = np.array([0.2, 0.5, 0.3])
    hs, lp = from_bernoulli(p, pri)
    X = rng.integers(0, 2, (40, 5)).astype(float)
    lik = np.stack([np.prod(np.where(X == 1, p[y], 1 - p[y]), axis=1) for y in range(3)], 1) * pri
    np.testing.assert_allclose(np.exp(np.stack([-h(X) for h in hs], 1) + lp), lik, rtol=1e-12)


def test_from_sklearn_errors():
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(ValueError, match="not fitted"):
        from_sklearn(QuadraticDiscriminantAnalysis())
    with pytest.raises(ValueError, match="supports"):
        from_sklearn(LogisticRegression())
    with pytest.raises(ValueError, match="positive definite"):
        from_gaussians(np.zeros((2, 2)), np.array([[1.0, 2.0], [2.0, 1.0]]), [0.5, 0.5])


# --- shared gates ------------------------------------------------------------------------------------
POLYS = ["x0*x1*x2 + x1**2 - 1", "x0*x1*x2*x3 + 3*x1", "x1**2 + x0*x1", "x2*x3 - x0"]


@pytest.mark.parametrize("activation", ["softplus", "tanh", "relu"])
def test_shared_vs_separate_neuron_counts(activation):
    net = compile_polynomials(POLYS, activation=activation)
    separate = [compile_polynomial(p, activation=activation).report().hidden_neurons for p in POLYS]
    assert net.info["separate_hidden_neurons"] == separate
    shared = net.report().hidden_neurons
    assert "sharing" in net.report().extra
    # sharing must pay off here: x0*x1, x1**2, x0*x1*x2 ... are common sub-products
    assert shared < sum(separate)


def test_single_output_is_bit_identical_to_compile_polynomial():
    for act in ("softplus", "relu", "gelu"):
        a = compile_polynomial(POLYS[1], activation=act, dtype="float32")
        b = compile_polynomials([POLYS[1]], activation=act, dtype="float32")
        for La, Lb in zip(a.structured.layers, b.structured.layers):
            for f in ("indptr", "indices", "data", "bias"):
                assert np.array_equal(getattr(La, f), getattr(Lb, f))
        assert a.report().certified_error == b.report().certified_error


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["softplus", "relu", "exp", "tanh"])
def test_multi_output_bounds_and_backends(activation, dtype):
    net = compile_polynomials(POLYS, activation=activation, dtype=dtype, centered=activation == "exp")
    X = np.random.default_rng(4).uniform(-1, 1, (777, 4))
    ref = net.evaluate_reference(X)
    exact = np.stack([Polynomial(p, n_vars=4)(X) for p in POLYS], 1)
    assert np.all(np.abs(ref - exact) <= np.asarray(net.info["certified_errors"])[None, :])
    got = fastpoly.evaluate(net, X, backend="numba")
    assert got.shape == (777, 4)
    if activation == "relu":
        assert np.array_equal(got, ref)
    else:
        assert_close_to_reference(got, ref, np.dtype(dtype), extra_atol=network_atol(net))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["softplus", "relu", "silu", "gelu", "square"])
def test_numba_fused_output_layer_is_bit_identical_to_unfused(activation, dtype):
    from fastpoly.backends.numba.poly import _StructuredArrays, evaluate_structured

    net = compile_polynomials(POLYS, activation=activation, dtype=dtype, centered=activation == "gelu")
    X = np.random.default_rng(5).uniform(-1, 1, (300, 4)).astype(dtype)
    arr = _StructuredArrays(net.structured, np.dtype(dtype))
    assert arr.fused
    fused = evaluate_structured(net.structured, X, dtype, prepared=arr, block=64)
    plain = _StructuredArrays(net.structured, np.dtype(dtype))
    plain.fused = False
    plain.maxw = int(max([net.n_inputs] + list(plain.fan_out)))
    unfused = evaluate_structured(net.structured, X, dtype, prepared=plain, block=64)
    assert np.array_equal(fused.view(np.uint8), unfused.view(np.uint8))


@pytest.mark.cuda_emu
@pytest.mark.parametrize("activation,dtype", [("relu", "float64"), ("softplus", "float32"), ("tanh", "float64")])
def test_cuda_emulated_multi_output_classifier(emu, activation, dtype):
    from fastpoly.backends.cuda.backend import CupyBackend

    mu, S, pri = _mixture(seed=7, C=4, d=3)
    net = classifier(*from_gaussians(mu, S, pri), activation=activation, dtype=dtype, domain=(-2, 2))
    X = np.random.default_rng(6).uniform(-2, 2, (203, 3))
    be = CupyBackend(device=emu.EmuDevice(), threads_per_block=64)
    got = be.evaluate(net, X, np.dtype(dtype).type)
    ref = net.evaluate_reference(X)
    assert got.shape == (203, 4)
    if activation == "relu":
        assert np.array_equal(got, ref)
    else:
        assert_close_to_reference(got, ref, np.dtype(dtype), extra_atol=network_atol(net))
    p = net.apply_output(got, "proba")
    assert np.all(np.abs(p - _exact_posterior(mu, S, pri, X)) <= net.proba_error()[None, :])


# --- refusals ----------------------------------------------------------------------------------------
def test_shallow_construction_refuses_sizes_it_cannot_build():
    big = "*".join(f"x{i}" for i in range(17))  # one shallow block of 2**17 neurons
    with pytest.raises(ValueError, match="would need 131072 neurons"):
        classifier([big, "x0 + 1"], [0.0, 0.0], construction="shallow")
    with pytest.raises(ValueError, match="cannot build a degree-60 block"):  # 21**3 neurons, but degree 60
        compile_polynomials(["x0**2", "x0**20*x1**20*x2**20"], construction="shallow")
    net = classifier([big, "x0 + 1"], [0.0, 0.0])  # the tree builds it
    assert net.report().hidden_layers == 5


def test_classifier_name_is_the_function_after_importing_its_module():
    # importing the submodule (fastpoly.poly.classifiers) leaves fastpoly.poly.classifier the exported function
    code = ("from fastpoly.poly.classifiers import softmax\n"
            "from fastpoly.poly import classifier\n"
            "import fastpoly.poly\n"
            "assert callable(classifier) and callable(fastpoly.poly.classifier), classifier\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_classifier_errors():
    with pytest.raises(ValueError, match="at least 2 classes"):
        classifier(["x0**2"], [0.0])
    with pytest.raises(ValueError, match="one entry per class"):
        classifier(["x0**2", "x0"], [0.0])
    with pytest.raises(ValueError, match="finite"):
        classifier(["x0**2", "x0"], [0.0, -np.inf])
    with pytest.raises(ValueError, match="sequence"):
        classifier("x0**2", [0.0])
    with pytest.raises(ValueError, match="identically 0"):
        classifier(["x0**2", "1"], [0.0, 1.0])
    with pytest.raises(ValueError, match="empty"):
        compile_polynomials([])
    net = classifier(["x0**2", "x0"], [0.0, 0.0])
    with pytest.raises(ValueError, match="output must be"):
        fastpoly.evaluate(net, [[0.5]], output="probabilities")
    with pytest.raises(ValueError, match="classifier networks"):
        fastpoly.evaluate(compile_polynomial("x0*x1"), [[0.5, 0.5]], output="proba")
    assert net.predict([[0.5], [-0.5]]).tolist() == [0, 1]  # logits (-x0**2, -x0)


# --- CLI ---------------------------------------------------------------------------------------------
def _cli(argv, capsys):
    import argparse

    from fastpoly.cli import poly as pcli

    p = argparse.ArgumentParser()
    pcli.register(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    try:
        rc = args.func(args)
    except ValueError as e:
        return 2, str(e)
    return rc, capsys.readouterr().out


def test_cli_compile_classifier(tmp_path, capsys):
    mu, S, pri = _mixture()
    f = tmp_path / "model.npz"
    np.savez(f, means=mu, covariances=S, priors=pri)
    rc, out = _cli(["compile", "--classifier", str(f), "--domain", "-2", "2", "--points", "300"], capsys)
    assert rc == 0 and "certified proba" in out and "measured proba error" in out
    g = tmp_path / "h.npz"
    np.savez(g, hamiltonians=np.array(["x0**2 + x1**2", "(x0 - 1)**2 + x1**2"]), log_prior=np.log([0.5, 0.5]))
    rc, out = _cli(["compile", "--classifier", str(g), "--dtype", "float32", "--points", "100"], capsys)
    assert rc == 0
    bad = tmp_path / "bad.npz"
    np.savez(bad, foo=np.zeros(2))
    for argv, msg in [(["compile", "--classifier", str(bad)], "expected means"),
                      (["compile", "--classifier", str(tmp_path / "missing.npz")], "cannot read"),
                      (["compile", "x0", "--classifier", str(f)], "not both"),
                      (["compile"], "give a polynomial")]:
        rc, err = _cli(argv, capsys)
        assert rc == 2 and msg in err


# --- hierarchy ---------------------------------------------------------------------------------------
INNER = ["x0*x1 + x2", "x1*x2 - x0*x3", "x0**2 + x3 - 0.5"]
OUTER = ["x0*x1*x2", "x0**2 - x1 + 2"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["softplus", "tanh", "relu", "square"])
def test_composition_bounds_and_neurons(activation, dtype):
    from fastpoly.poly import compose_polynomials, flatten_composition

    net = compose_polynomials(OUTER, INNER, activation=activation, dtype=dtype)
    X = np.random.default_rng(8).uniform(-1, 1, (2000, 4))
    flat = flatten_composition(OUTER, INNER)
    g = np.stack([Polynomial(q, n_vars=4)(X) for q in INNER], 1)
    exact = np.stack([g[:, 0] * g[:, 1] * g[:, 2], g[:, 0] ** 2 - g[:, 1] + 2], 1)
    np.testing.assert_allclose(np.stack([q(X) for q in flat], 1), exact, rtol=1e-12, atol=1e-12)
    y = net.evaluate_reference(X)
    assert np.all(np.abs(y - exact) <= np.asarray(net.info["certified_errors"])[None, :])
    got = fastpoly.evaluate(net, X, backend="numba")
    if activation in ("relu",):
        assert np.array_equal(got, y)
    else:
        assert_close_to_reference(got, y, np.dtype(dtype), extra_atol=network_atol(net))
    # the paper's point: the composition is much smaller than the flattened degree-6 polynomial
    assert net.report().hidden_neurons < net.info["flattened_hidden_neurons"]
    assert "hierarchy" in net.report().extra


def test_composition_errors():
    from fastpoly.poly import compose_polynomials

    with pytest.raises(ValueError, match="3 variables but the inner map has 2 outputs"):
        compose_polynomials(["x0*x1*x2"], ["x0", "x1"])
    with pytest.raises(ValueError, match="non-empty"):
        compose_polynomials([], ["x0"])
    with pytest.raises(ValueError, match="identically zero"):
        compose_polynomials(["x0 - x1"], ["x0", "x0"])


def test_evaluate_output_on_every_backend(backend):
    mu, S, pri = _mixture(seed=9, C=4, d=2)
    net = classifier(*from_gaussians(mu, S, pri), dtype="float32", domain=(-2, 2), centered=True)
    X = np.random.default_rng(10).uniform(-2, 2, (300, 2))
    p = fastpoly.evaluate(net, X, backend=backend, output="proba")
    z = fastpoly.evaluate(net, X, backend=backend, output="logits", check=True)
    assert p.shape == z.shape == (300, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    assert np.array_equal(p, net.apply_output(z, "proba"))
    assert np.all(np.abs(p - _exact_posterior(mu, S, pri, X)) <= net.proba_error()[None, :])
