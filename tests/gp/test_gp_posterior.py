"""GP posterior: log P(S), P_B^GP(f|S) normalisation, FunctionCounts interplay, PAC-Bayes bound."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastpoly
from fastpoly.gp import (
    GPPosterior,
    kernel,
    log_marginal,
    orthant,
    pac_bayes_bound,
    posterior,
)

ARCH = fastpoly.MLP(3, (16,))
X3 = fastpoly.boolean_inputs(3)
TRAIN = (np.array([0, 2, 3, 5, 6]), np.array([0, 1, 1, 0, 1]))
TEST = np.array([1, 4, 7])
ALL = ["".join(str((f >> i) & 1) for i in range(3)) for f in range(8)]  # every function on the 3 test rows


def test_pac_bayes_bound_formula():
    for lp, m in [(-10.0, 32), (-100.0, 1000), (0.0, 5)]:
        x = (-lp + 2 * math.log(m) + 1 + 10 * math.log(2)) / m
        assert pac_bayes_bound(lp, m) == pytest.approx(1 - math.exp(-x), rel=1e-14)
    assert pac_bayes_bound(-10.0, 32, delta=0.05) < pac_bayes_bound(-10.0, 32)
    assert pac_bayes_bound(-math.inf, 10) == 1.0
    for bad in [{"log_p_S": 0.5, "m": 3}, {"log_p_S": -1, "m": 0}, {"log_p_S": -1, "m": 3, "delta": 1.5},
                {"log_p_S": float("nan"), "m": 3}]:
        with pytest.raises(ValueError):
            pac_bayes_bound(**bad)


def test_log_marginal_is_the_train_orthant():
    K = kernel(ARCH, X3)
    r = log_marginal(ARCH, X3, TRAIN, seed=3)
    ref = orthant(K[np.ix_(TRAIN[0], TRAIN[0])], TRAIN[1], seed=3)
    assert r.log_p == ref.log_p and r.stderr == ref.stderr
    assert log_marginal(ARCH, X3, TRAIN, "ep").stderr is None


@pytest.mark.parametrize("method,tol", [("tilting", None), ("ep", 0.05)])
def test_posterior_over_all_test_functions_sums_to_one(method, tol):
    t = posterior(ARCH, X3, TRAIN, ALL, method, n_samples=20000 if method != "ep" else None)
    assert isinstance(t, GPPosterior) and len(t) == 8
    total = float(np.sum(t.probabilities()))
    if tol is None:
        se = math.sqrt(float(np.sum((t.probabilities() * t.stderr) ** 2)))
        assert abs(total - 1) < 5 * se + 1e-3
    else:
        assert abs(total - 1) < tol
    assert t.meta["key_rows"] == TEST.tolist() and t.meta["n_key_bits"] == 3
    assert t.meta["train_rows"] == TRAIN[0].tolist() and t.meta["arch"]["limit"] == "nngp"
    assert t.meta["gp"]["pac_bayes_bound"] == pac_bayes_bound(t.log_p_S, 5)


def test_function_formats_agree():
    bits = np.array([[1, 0, 1], [0, 0, 0]])
    a = posterior(ARCH, X3, TRAIN, bits, "ep")
    b = posterior(ARCH, X3, TRAIN, ["101", "000"], "ep")
    c = posterior(ARCH, X3, TRAIN, a.keys, "ep")
    d = posterior(ARCH, X3, TRAIN, ["5", "0"], "ep")  # hex keys: bit i = i-th test row
    for o in (b, c, d):
        assert np.array_equal(o.keys, a.keys) and np.array_equal(o.log_p, a.log_p)
    assert a.hex(0) == "5" and np.all(np.isnan(a.stderr))


def test_posterior_of_a_conditioned_counts_file():
    prior = fastpoly.sample(ARCH, X3, 4000, seed=1, backend="numpy", progress=False)
    post = prior.condition(*TRAIN)
    t = posterior(ARCH, X3, None, post, "ep")  # train set taken from the counts
    assert np.array_equal(t.keys, post.keys)
    t2 = posterior(ARCH, X3, TRAIN, post, "ep")
    assert np.array_equal(t2.log_p, t.log_p)
    with pytest.raises(ValueError, match="train set"):
        posterior(ARCH, X3, (TRAIN[0], 1 - TRAIN[1]), post, "ep")
    with pytest.raises(ValueError, match="differs"):
        posterior(ARCH, X3, (np.array([0, 2]), np.array([0, 1])), post, "ep")
    prior_gp = fastpoly.gp.sample(ARCH, X3, 100, seed=1, backend="numpy")  # keys over all 8 rows
    with pytest.raises(ValueError, match="cover"):
        posterior(ARCH, X3, TRAIN, prior_gp, "ep")


def test_to_counts_and_text_roundtrip(tmp_path):
    t = posterior(ARCH, X3, TRAIN, ALL, "ep")
    c = t.to_counts(scale=2**40)
    for i in range(len(t)):
        assert c.probability(t.hex(i)) == pytest.approx(math.exp(t.log_p[i]), abs=2**-39)
    assert c.meta["gp"]["pseudo_counts_scale"] == 2**40 and c.conditioned
    assert t.top(1)[0]["probability"] == pytest.approx(float(np.max(t.probabilities())))
    t.save(tmp_path / "t.tsv")
    lines = (tmp_path / "t.tsv").read_text().splitlines()
    assert lines[2] == "key\tlog_p\tstderr\tprobability" and len(lines) == 3 + 8
    with pytest.raises(ValueError, match="duplicate"):
        posterior(ARCH, X3, TRAIN, ["101", "101"], "ep").to_counts()
    with pytest.raises(ValueError, match="scale"):
        t.to_counts(scale=0)


@pytest.mark.parametrize("train,msg", [
    ((np.array([0, 9]), np.array([0, 1])), r"\[0, 8\)"),
    ((np.array([0, 1]), np.array([0, 2])), "0 or 1"),
    ((np.array([0, 0]), np.array([0, 0])), "duplicates"),
    (None, "train"),
])
def test_bad_train_sets_raise(train, msg):
    with pytest.raises(ValueError, match=msg):
        log_marginal(ARCH, X3, train)


def test_bad_functions_raise():
    with pytest.raises(ValueError, match="shape"):
        posterior(ARCH, X3, TRAIN, np.array([[1, 0]]), "ep")
    with pytest.raises(ValueError, match="0 or 1"):
        posterior(ARCH, X3, TRAIN, np.array([[1, 0, 2]]), "ep")
    with pytest.raises(ValueError):
        posterior(ARCH, X3, TRAIN, ["10"], "ep")
    with pytest.raises(ValueError, match="functions"):
        posterior(ARCH, X3, TRAIN, None)
    with pytest.raises(ValueError, match="shape"):
        posterior(ARCH, X3, TRAIN, ALL, "ep", K=np.eye(3))


def test_gp_posterior_matches_gp_sampling_conditioned():
    """P_B^GP from orthants equals the conditioned frequencies of GP draws (same Gaussian)."""
    c = fastpoly.gp.sample(ARCH, X3, 200000, seed=2, backend="numba").condition(*TRAIN)
    t = posterior(ARCH, X3, TRAIN, c, "tilting", n_samples=20000)
    p_hat = c.counts / c.n_accepted
    se = np.sqrt(p_hat * (1 - p_hat) / c.n_accepted) + t.probabilities() * t.stderr
    assert np.all(np.abs(t.probabilities() - p_hat) < 5 * se + 1e-4)
    assert abs(math.log(c.n_accepted / c.n_samples) - t.log_p_S) < 0.05


@pytest.mark.slow
def test_digits_example_small():
    pytest.importorskip("sklearn")
    from fastpoly.experiments.gp_digits import digits_example, load_digits_binary

    Xtr, _ytr, Xte, _yte = load_digits_binary(150, 20, seed=1)
    assert Xtr.shape == (150, 64) and Xte.shape == (20, 64) and 0 <= Xtr.min() and Xtr.max() <= 1
    r = digits_example(150, ("ep",), seed=1)
    assert r["ep"]["diagnostics"]["converged"] and -150 * math.log(2) < r["ep"]["log_p_S"] < 0
    assert r["ep"]["bound"] == pac_bayes_bound(r["ep"]["log_p_S"], 150)
    with pytest.raises(ValueError, match="at most"):
        load_digits_binary(1800, 10)


def test_digits_sgd_functions_get_a_gp_posterior():
    pytest.importorskip("sklearn")
    pytest.importorskip("numba")
    from fastpoly.experiments.gp_digits import digits_sgd_vs_gp

    d = digits_sgd_vs_gp(n_train=100, n_test=20, n_runs=12, hidden=(16,), top=3, max_epochs=200, lr=1e-2)
    assert d["n_fitted"] > 0 and d["rows"]
    assert np.isfinite(d["log_p_S"]) and d["log_p_S"] < 0
    ps = [r["p_sgd"] for r in d["rows"]]
    assert ps == sorted(ps, reverse=True) and 0 < sum(ps) <= 1 + 1e-12
    for r in d["rows"]:
        assert r["log_p_gp"] <= 0 and 0 <= r["test_errors"] <= 20
