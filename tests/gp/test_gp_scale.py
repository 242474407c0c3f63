"""GP at scale: blocked kernels, in-place parallel EP, P_B^GP(f|S) (joint, shared, MSE) against direct formulas."""
from __future__ import annotations

import itertools
import math
import sys
import types

import numpy as np
import pytest
import scipy.linalg
from scipy.stats import multivariate_normal, norm

import fastpoly
from fastpoly.gp import kernel, orthant
from fastpoly.gp.ep import _posterior
from fastpoly.gp.scale import (
    condition_ep,
    gaussian_orthants,
    kernel_blocked,
    mse_predictive,
    posterior_gp,
)

ARCHS = [
    fastpoly.MLP(5, (30, 30)),
    fastpoly.MLP(5, (10,), activation="erf", sigma_b=0.3),
    fastpoly.MLP(5, (10, 10, 10), activation="sign", bias_scaling="fan_in"),
    fastpoly.MLP(5, (10,), activation="identity", bias=False),
    fastpoly.MLP(5, (10, 10), sigma_b=0.0),
]


def _problem(m=40, k=4, seed=0, arch=None):
    rng = np.random.default_rng(seed)
    arch = arch or fastpoly.MLP(5, (30, 30))
    X = rng.standard_normal((m + k, 5))
    w = rng.standard_normal(5)
    y = (X @ w > 0).astype(np.uint8)
    return arch, X[:m], y[:m], X[m:], y[m:]


@pytest.mark.parametrize("arch", ARCHS, ids=["relu", "erf", "sign-fanin", "identity-nobias", "relu-sb0"])
@pytest.mark.parametrize("block", [7, 64], ids=["block7", "block64"])
def test_kernel_blocked_matches_dense(arch, block):
    X = np.random.default_rng(1).standard_normal((50, 5))
    X[3] = 0.0  # a zero row (zero variance without biases)
    K = kernel(arch, X)
    Kb = kernel_blocked(arch, X, block=block)
    np.testing.assert_allclose(Kb, K, rtol=1e-12, atol=1e-14)
    assert np.array_equal(Kb, Kb.T)
    np.testing.assert_array_equal(np.diag(Kb), np.diag(K))


def test_kernel_blocked_refuses_what_kernel_refuses():
    with pytest.raises(ValueError, match="tanh"):
        kernel_blocked(fastpoly.MLP(5, (10,), activation="tanh"), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="block"):
        kernel_blocked("5-10-1", np.zeros((3, 5)), block=0)
    with pytest.raises(ValueError, match="out must"):
        kernel_blocked("5-10-1", np.zeros((3, 5)), out=np.zeros((2, 2)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_condition_ep_equals_the_dense_ep(seed):
    arch, Xtr, ytr, _, _ = _problem(60, 0, seed)
    K = kernel(arch, Xtr)
    c = condition_ep(K, ytr, linalg="numpy", tol=1e-10)
    ref = orthant(K, ytr, "ep", tol=1e-10, schedule="parallel")
    assert c.diagnostics["converged"]
    assert abs(c.log_p_S - ref.log_p) < 1e-7


def test_condition_ep_vs_exact_orthant():
    # equicorrelated rho = 1/2: P(all > 0) = 1/(d+1) exactly; EP's bias there is small (< 0.05 nats at d = 16)
    d = 16
    S = np.full((d, d), 0.5) + 0.5 * np.eye(d)
    c = condition_ep(S, np.ones(d, np.uint8))
    assert abs(c.log_p_S + math.log(d + 1)) < 0.05
    # a relu kernel: EP vs minimax tilting within 10 % of P (EP runs low on correlated orthants)
    arch, Xtr, ytr, _, _ = _problem(30, 0, 3)
    K = kernel(arch, Xtr)
    t = orthant(K, ytr, "tilting", n_samples=20000, seed=1)
    assert abs(condition_ep(K, ytr).log_p_S - t.log_p) < 0.1 + 5 * t.stderr


def test_shared_predictive_matches_the_dense_formula():
    arch, Xtr, ytr, Xte, _ = _problem(40, 5, 4)
    m = Xtr.shape[0]
    K = kernel(arch, np.vstack([Xtr, Xte]))
    c = condition_ep(K[:m, :m], ytr, tol=1e-10)
    mean, cov = c.predictive(K[:m, m:], K[m:, m:])
    # dense: q(h_S) from the sites, g_S = sign * h_S, then the Gaussian conditional on E
    s = c.signs
    Sig_h, mu_h, _ = _posterior(K[:m, :m] * np.outer(s, s), c.tau, c.nu)
    Sig_g, mu_g = Sig_h * np.outer(s, s), s * mu_h
    A = np.linalg.solve(K[:m, :m], K[:m, m:])
    np.testing.assert_allclose(mean, A.T @ mu_g, rtol=1e-6, atol=1e-8)
    cov_ref = K[m:, m:] - A.T @ (K[:m, :m] - Sig_g) @ A
    np.testing.assert_allclose(cov, cov_ref, rtol=1e-6, atol=1e-8)


def test_joint_equals_the_ratio_of_dense_eps():
    arch, Xtr, ytr, Xte, yte = _problem(40, 4, 5)
    m, k = 40, 4
    K = kernel(arch, np.vstack([Xtr, Xte]))
    fs = np.array([yte, 1 - yte, [1, 0, 1, 0]])
    p = posterior_gp(arch, Xtr, ytr, Xte, fs, mode="joint", linalg="numpy", tol=1e-10)
    ref_S = orthant(K[:m, :m], ytr, "ep", tol=1e-10, schedule="parallel").log_p
    assert abs(p.log_p_S - ref_S) < 1e-7
    for f, lp in zip(fs, p.log_p):
        full = orthant(K, np.r_[ytr, f], "ep", tol=1e-10, schedule="parallel").log_p
        assert abs(lp - (full - ref_S)) < 1e-6
    assert p.meta["gp"]["mode"] == "joint" and p.meta["n_key_bits"] == k and p.method == "ep-joint"


def test_dataset_meta_recorded():
    pytest.importorskip("sklearn")
    import fastpoly.data as D

    d = D.load("digits", binarize="lt5", n_train=30, n_test=3, seed=1)
    p = posterior_gp("64-20-1", d.X_train, d.y_train, d.X_test, d.y_test[None, :], data_meta=d.meta)
    assert p.meta["data"]["source_digest"] == d.meta["source_digest"]
    assert p.meta["inputs_digest"] and np.isfinite(p.log_p[0])


def test_joint_vs_tilting_on_small_problems():
    """EP's P_B^GP(f|S) vs the ratio of two unbiased tilting estimates (within 0.15 nats + 5 s.e.)."""
    arch, Xtr, ytr, Xte, yte = _problem(20, 3, 6)
    m = 20
    K = kernel(arch, np.vstack([Xtr, Xte]))
    tS = orthant(K[:m, :m], ytr, "tilting", n_samples=20000, seed=2)
    fs = np.array(list(itertools.product([0, 1], repeat=3)))
    p = posterior_gp(arch, Xtr, ytr, Xte, fs)
    for f, lp in zip(fs, p.log_p):
        t = orthant(K, np.r_[ytr, f], "tilting", n_samples=20000, seed=3)
        assert abs(lp - (t.log_p - tS.log_p)) < 0.15 + 5 * math.hypot(t.stderr, tS.stderr), f


@pytest.mark.parametrize("mode", ["joint", "shared"])
def test_posterior_sums_to_one_over_all_functions(mode):
    """Over all 2^|E| functions the exact P_B^GP sums to 1; EP's numerator and denominator are
    separate approximations, so its sum is 1 only to EP's accuracy (1.009 on this kernel)."""
    arch, Xtr, ytr, Xte, _ = _problem(30, 3, 7)
    fs = np.array(list(itertools.product([0, 1], repeat=3)))
    p = posterior_gp(arch, Xtr, ytr, Xte, fs, mode=mode)
    total = float(np.exp(p.log_p).sum())
    assert abs(total - 1.0) < 0.03, total
    if mode == "shared":  # the predictive is one Gaussian: tilting's orthants add up to 1
        t = posterior_gp(arch, Xtr, ytr, Xte, fs, mode=mode, orthant_method="tilting", n_samples=20000)
        assert abs(np.exp(t.log_p).sum() - 1.0) < 0.02
        assert np.all(np.isfinite(t.stderr))


def test_shared_is_close_to_joint_for_the_likely_function():
    arch, Xtr, ytr, Xte, yte = _problem(60, 6, 8)
    j = posterior_gp(arch, Xtr, ytr, Xte, yte[None, :], mode="joint")
    s = posterior_gp(arch, Xtr, ytr, Xte, yte[None, :], mode="shared", check=True)
    assert abs(j.log_p[0] - s.log_p[0]) < 0.1
    assert s.diagnostics[0]["check"] == "agrees" and abs(s.diagnostics[0]["check_diff"]) < 0.01


def test_mse_route_vs_direct_formula():
    arch, Xtr, ytr, Xte, _ = _problem(25, 2, 9)
    m = 25
    K = kernel(arch, np.vstack([Xtr, Xte]))
    s2 = 0.05
    mean, cov, thr = mse_predictive(K[:m, :m], K[:m, m:], K[m:, m:], ytr, noise_var=s2)
    A = K[:m, :m] + s2 * np.eye(m)
    t = 2.0 * ytr - 1.0
    np.testing.assert_allclose(mean, K[m:, :m] @ np.linalg.solve(A, t), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cov, K[m:, m:] - K[m:, :m] @ np.linalg.solve(A, K[:m, m:]), rtol=1e-9, atol=1e-12)
    assert thr == 0.0
    # |E| = 1: Phi(mean / sd);  |E| = 2: the bivariate normal CDF
    p1 = posterior_gp(arch, Xtr, ytr, Xte[:1], np.array([[1], [0]]), route="mse", noise_var=s2)
    z = mean[0] / math.sqrt(cov[0, 0])
    np.testing.assert_allclose(p1.log_p, [norm.logcdf(z), norm.logcdf(-z)], atol=1e-9)
    p2 = posterior_gp(arch, Xtr, ytr, Xte, np.array([[1, 1], [0, 1]]), route="mse", noise_var=s2,
                      orthant_method="tilting", n_samples=50000)
    for f, lp, se in zip([[1, 1], [0, 1]], p2.log_p, p2.stderr):
        sg = np.where(np.array(f) == 1, 1.0, -1.0)
        ref = multivariate_normal(mean=np.zeros(2), cov=cov * np.outer(sg, sg)).cdf(sg * mean)
        assert abs(lp - math.log(ref)) < 5 * se + 1e-3
    # 0/1 targets: threshold 1/2
    mean01, _, thr01 = mse_predictive(K[:m, :m], K[:m, m:], K[m:, m:], ytr, noise_var=s2, targets="01")
    np.testing.assert_allclose(mean01, K[m:, :m] @ np.linalg.solve(A, ytr.astype(float)), rtol=1e-9)
    assert thr01 == 0.5 and math.isnan(p1.log_p_S) and p1.meta["gp"]["route"] == "mse"


def test_gaussian_orthants_check_reports():
    cov = np.array([[1.0, 0.3], [0.3, 1.0]])
    lp, se, d = gaussian_orthants(np.zeros(2), cov, np.array([[1, 1]]), check=True)
    assert abs(lp[0] - math.log(0.25 + math.asin(0.3) / (2 * math.pi))) < 1e-3
    assert d[0]["check"] == "agrees" and math.isnan(se[0])


def _fake_cupy(monkeypatch):
    """A NumPy-backed stand-in for CuPy's API surface used by the cuSOLVER path."""
    cp = types.ModuleType("cupy")
    for name in ("asarray", "arange", "eye", "diagonal", "float64", "int64", "zeros", "sqrt"):
        setattr(cp, name, getattr(np, name))
    cp.asnumpy = np.asarray
    cp.linalg = types.SimpleNamespace(cholesky=np.linalg.cholesky)
    cp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    cx = types.ModuleType("cupyx")
    cxs = types.ModuleType("cupyx.scipy")
    cxl = types.ModuleType("cupyx.scipy.linalg")
    cxl.solve_triangular = scipy.linalg.solve_triangular
    cx.scipy, cxs.linalg = cxs, cxl
    for name, mod in (("cupy", cp), ("cupyx", cx), ("cupyx.scipy", cxs), ("cupyx.scipy.linalg", cxl)):
        monkeypatch.setitem(sys.modules, name, mod)


def test_cupy_path_through_a_fake(monkeypatch):
    arch, Xtr, ytr, Xte, yte = _problem(30, 3, 10)
    ref = posterior_gp(arch, Xtr, ytr, Xte, np.array([yte, 1 - yte]), linalg="numpy")
    _fake_cupy(monkeypatch)
    got = posterior_gp(arch, Xtr, ytr, Xte, np.array([yte, 1 - yte]), linalg="cupy")
    assert got.meta["gp"]["conditioning"]["linalg"] == "cupy"
    assert abs(got.log_p_S - ref.log_p_S) < 1e-9
    np.testing.assert_allclose(got.log_p, ref.log_p, atol=1e-8)
    sh = posterior_gp(arch, Xtr, ytr, Xte, np.array([yte]), linalg="cupy", mode="shared")
    sh_ref = posterior_gp(arch, Xtr, ytr, Xte, np.array([yte]), linalg="numpy", mode="shared")
    np.testing.assert_allclose(sh.log_p, sh_ref.log_p, atol=1e-8)


def test_cupy_on_a_real_gpu(require_gpu):
    arch, Xtr, ytr, Xte, yte = _problem(200, 10, 11)
    ref = posterior_gp(arch, Xtr, ytr, Xte, np.array([yte]), linalg="numpy")
    got = posterior_gp(arch, Xtr, ytr, Xte, np.array([yte]), linalg="cupy")
    assert abs(got.log_p_S - ref.log_p_S) < 1e-7
    np.testing.assert_allclose(got.log_p, ref.log_p, atol=1e-6)


def test_bad_inputs():
    arch, Xtr, ytr, Xte, yte = _problem(10, 2, 12)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        condition_ep(np.eye(3), [0, 2, 1])
    with pytest.raises(ValueError, match="square"):
        condition_ep(np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="zero variances"):
        condition_ep(np.diag([1.0, 0.0]), [0, 1])
    with pytest.raises(ValueError, match="damping"):
        condition_ep(np.eye(2), [0, 1], damping=0)
    with pytest.raises(ValueError, match="unknown route"):
        posterior_gp(arch, Xtr, ytr, Xte, yte[None], route="laplace")
    with pytest.raises(ValueError, match="unknown mode"):
        posterior_gp(arch, Xtr, ytr, Xte, yte[None], mode="sequential")
    with pytest.raises(ValueError, match="unknown linalg"):
        posterior_gp(arch, Xtr, ytr, Xte, yte[None], linalg="torch")
    with pytest.raises(ValueError, match=r"K must have shape \(12, 12\)"):
        posterior_gp(arch, Xtr, ytr, Xte, yte[None], K=np.eye(3))
    with pytest.raises(ValueError, match=r"shape \(k, 2\)"):
        posterior_gp(arch, Xtr, ytr, Xte, np.zeros((1, 3), np.uint8))
    with pytest.raises(ValueError, match="noise_var"):
        posterior_gp(arch, Xtr, ytr, Xte, yte[None], route="mse", noise_var=-1.0)
    with pytest.raises(ValueError, match="targets"):
        posterior_gp(arch, Xtr, ytr, Xte, yte[None], route="mse", targets="logits")
    with pytest.raises(ValueError, match="not positive definite"):
        mse_predictive(np.ones((2, 2)), np.ones((2, 1)), np.ones((1, 1)), [0, 1], noise_var=0.0)


def test_gaussian_orthants_check_says_when_tilting_cannot_judge():
    d = 20
    cov = np.full((d, d), 0.9) + 0.1 * np.eye(d)
    _, _, diags = gaussian_orthants(np.zeros(d), cov, np.ones((1, d), np.uint8), check=True, n_samples=10)
    assert diags[0]["check"].startswith("unreliable: effective sample size")


def test_the_exported_function_does_not_depend_on_import_order():
    """``from fastpoly.gp import posterior_gp`` is the function even after its module was imported first
    (the module once had the function's name, and importing it shadowed the lazy export)."""
    import subprocess
    import sys

    code = ("import fastpoly.gp.scale, fastpoly.gp\n"
            "from fastpoly.gp import posterior_gp, condition_ep, kernel_blocked\n"
            "assert all(callable(f) for f in (posterior_gp, condition_ep, kernel_blocked))\n")
    subprocess.run([sys.executable, "-c", code], check=True)
