"""From fitted generative models to class Hamiltonians ``H_y(x) = -ln p(x|y)`` (up to a shared constant).

Lin, Tegmark & Rolnick's classifier computes ``p(y|x) = softmax_y(-H_y(x) + ln p(y))``.
Every function here returns ``(hamiltonians, log_prior)``: one :class:`Polynomial`
per class and the ``(n_classes,)`` float64 array ``ln p(y)``, ready for
:func:`fastpoly.poly.classifier`, such that ``-H_y(x) + log_prior[y]`` is *the
estimator's own log-posterior score* (sklearn's ``_decision_function`` /
``_joint_log_likelihood`` / ``decision_function``), so that the softmax is the
estimator's ``predict_proba``.  Coefficients are the float64 expansion of the
estimator's formula (one rounding per coefficient): the polynomial differs from
scikit-learn's own evaluation order only by float64 rounding.

Formulas (scikit-learn 1.2 .. 1.9 attribute names):

* ``QuadraticDiscriminantAnalysis``: with ``W_y = rotations_[y] * scalings_[y] ** -0.5``
  (``scalings_`` already include ``reg_param``: ``(1 - r) s**2 + r``),
  ``H_y = 0.5 ||(x - means_[y]) W_y||^2 + 0.5 sum log scalings_[y]``,
  ``log_prior = log priors_`` (the common ``(d/2) ln 2 pi`` is dropped, as sklearn does).
* ``LinearDiscriminantAnalysis``: ``H_y = -(coef_[y] . x + intercept_[y]) + log priors_[y]``
  (``intercept_`` contains ``log priors_``; the shared quadratic term ``x' S^-1 x / 2``
  cancels in the softmax and sklearn drops it).  Binary models have one ``coef_`` row
  (class 1 vs class 0, score ``s = coef_ . x + intercept_``): the logits are ``(-s/2, s/2)``,
  whose softmax is sklearn's ``(1 - expit(s), expit(s))``.
* ``GaussianNB``: ``H_y = 0.5 sum_i log(2 pi var_[y, i]) + 0.5 sum_i (x_i - theta_[y, i])^2 / var_[y, i]``
  (``var_`` includes ``var_smoothing * max variance``), ``log_prior = log class_prior_``.
* ``BernoulliNB``: on binary inputs ``x in {0, 1}^d`` (binarise first with the
  estimator's ``binarize`` threshold: ``x > threshold``),
  ``H_y = -sum_i x_i (log p_yi - log(1 - p_yi)) - sum_i log(1 - p_yi)`` with
  ``log p = feature_log_prob_`` -- the multilinear (degree-1) polynomial of the product of
  Bernoullis -- and ``log_prior = class_log_prior_``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fastpoly.poly.polynomial import Polynomial

__all__ = ["from_sklearn", "from_gaussians", "from_bernoulli", "quadratic_polynomial", "linear_polynomial"]


def _unit(n, *idx):
    e = [0] * n
    for i in idx:
        e[i] += 1
    return tuple(e)


def quadratic_polynomial(W: Any, mean: Any, const: float = 0.0) -> Polynomial:
    """``0.5 ||(x - mean) W||^2 + const`` expanded into monomials (float64 coefficients).

    Parameters
    ----------
    W : array (d, k)
        The quadratic form is ``P = W W^T``.
    mean : array (d,)
    const : float

    Returns
    -------
    Polynomial
        ``sum_{i<=j} c_ij x_i x_j + sum_i b_i x_i + c`` over ``d`` variables.
    """
    W = np.asarray(W, dtype=np.float64)
    mu = np.asarray(mean, dtype=np.float64)
    if W.ndim != 2 or mu.shape != (W.shape[0],):
        raise ValueError(f"W must be (d, k) and mean (d,), got {W.shape} and {mu.shape}")
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(mu)) and np.isfinite(const)):
        raise ValueError("the quadratic form, mean and constant must be finite")
    d = W.shape[0]
    P = W @ W.T
    P = 0.5 * (P + P.T)
    lin = -(P @ mu)
    c0 = 0.5 * float(mu @ P @ mu) + float(const)
    terms: dict = {}
    for i in range(d):
        terms[_unit(d, i, i)] = 0.5 * P[i, i]
        for j in range(i + 1, d):
            terms[_unit(d, i, j)] = P[i, j]
    for i in range(d):
        terms[_unit(d, i)] = lin[i]
    terms[(0,) * d] = c0
    return _poly(terms, d)


def linear_polynomial(w: Any, b: float) -> Polynomial:
    """The affine form ``sum_i w_i x_i + b`` as a Polynomial over ``len(w)`` variables."""
    w = np.asarray(w, dtype=np.float64).ravel()
    if not (np.all(np.isfinite(w)) and np.isfinite(b)):
        raise ValueError("weights and bias must be finite")
    d = w.size
    terms = {_unit(d, i): w[i] for i in range(d)}
    terms[(0,) * d] = float(b)
    return _poly(terms, d)


def _poly(terms, d):
    return Polynomial({e: float(c) for e, c in terms.items() if c != 0}, n_vars=d)


def _log_prior(p, what):
    p = np.asarray(p, dtype=np.float64).ravel()
    if p.size < 2:
        raise ValueError(f"{what} needs at least 2 classes, got {p.size}")
    if not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError(f"{what}: class priors must be positive and finite, got {p}")
    return np.log(p)


def from_gaussians(means: Any, covariances: Any, priors: Any) -> tuple[list[Polynomial], np.ndarray]:
    """Hamiltonians of Gaussian class-conditionals ``N(means[y], covariances[y])``.

    ``H_y = 0.5 (x - mu)' S^-1 (x - mu) + 0.5 ln det(2 pi S)`` exactly ``-ln N(x; mu, S)``.

    Parameters
    ----------
    means : array (C, d)
    covariances : array (C, d, d) or (d, d)
        Full covariances (one shared matrix: LDA's model); must be symmetric positive definite.
    priors : array (C,)
        Positive class probabilities (normalised here).

    Returns
    -------
    hamiltonians : list of Polynomial
    log_prior : float64 array (C,)
    """
    mu = np.asarray(means, dtype=np.float64)
    if mu.ndim != 2:
        raise ValueError(f"means must be (n_classes, n_features), got shape {mu.shape}")
    C, d = mu.shape
    S = np.asarray(covariances, dtype=np.float64)
    if S.shape == (d, d):
        S = np.broadcast_to(S, (C, d, d))
    if S.shape != (C, d, d):
        raise ValueError(f"covariances must be ({C}, {d}, {d}) or ({d}, {d}), got {S.shape}")
    pri = np.asarray(priors, dtype=np.float64)
    lp = _log_prior(pri / pri.sum() if np.all(pri > 0) else pri, "from_gaussians")
    hs = []
    for y in range(C):
        if not np.allclose(S[y], S[y].T, rtol=1e-12, atol=0):
            raise ValueError(f"covariance of class {y} is not symmetric")
        evals, evecs = np.linalg.eigh(S[y])
        if not np.all(evals > 0):
            raise ValueError(f"covariance of class {y} is not positive definite")
        W = evecs * evals ** -0.5
        const = 0.5 * (d * np.log(2 * np.pi) + float(np.sum(np.log(evals))))
        hs.append(quadratic_polynomial(W, mu[y], const))
    return hs, lp


def from_bernoulli(probs: Any, priors: Any) -> tuple[list[Polynomial], np.ndarray]:
    """Hamiltonians of products of Bernoullis ``p(x|y) = prod_i p_yi^x_i (1 - p_yi)^(1 - x_i)`` on ``{0,1}^d``.

    Parameters
    ----------
    probs : array (C, d)
        ``p_yi = P(x_i = 1 | y)`` in ``(0, 1)``.
    priors : array (C,)
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or not np.all((p > 0) & (p < 1)):
        raise ValueError("probs must be a (n_classes, n_features) array of values in (0, 1)")
    pri = np.asarray(priors, dtype=np.float64)
    lp = _log_prior(pri / pri.sum() if np.all(pri > 0) else pri, "from_bernoulli")
    return _bernoulli(np.log(p), np.log1p(-p)), lp


def _bernoulli(logp, log1mp):
    return [linear_polynomial(-(logp[y] - log1mp[y]), -float(log1mp[y].sum())) for y in range(logp.shape[0])]


def from_sklearn(est: Any) -> tuple[list[Polynomial], np.ndarray]:
    """``(hamiltonians, log_prior)`` of a fitted scikit-learn generative classifier (see the module docstring).

    Parameters
    ----------
    est : QuadraticDiscriminantAnalysis, LinearDiscriminantAnalysis, GaussianNB or BernoulliNB
        Fitted.  The softmax of ``-H_y + log_prior[y]`` is ``est.predict_proba``
        (BernoulliNB: on binarised inputs).

    Raises
    ------
    ValueError
        Not fitted, or an estimator this bridge does not know.
    """
    name = type(est).__name__
    need = {"QuadraticDiscriminantAnalysis": ("rotations_", "scalings_", "means_", "priors_"),
            "LinearDiscriminantAnalysis": ("coef_", "intercept_", "priors_"),
            "GaussianNB": ("theta_", "var_", "class_prior_"),
            "BernoulliNB": ("feature_log_prob_", "class_log_prior_")}
    if name not in need:
        raise ValueError(f"from_sklearn supports {', '.join(need)}; got {name}")
    missing = [a for a in need[name] if not hasattr(est, a)]
    if missing:
        raise ValueError(f"{name} is not fitted (missing {', '.join(missing)}); call fit() first")
    if name == "QuadraticDiscriminantAnalysis":
        hs = []
        for R, S, mu in zip(est.rotations_, est.scalings_, est.means_):
            R, S = np.asarray(R, np.float64), np.asarray(S, np.float64)
            hs.append(quadratic_polynomial(R * S ** -0.5, mu, 0.5 * float(np.sum(np.log(S)))))
        return hs, np.log(np.asarray(est.priors_, np.float64))
    if name == "LinearDiscriminantAnalysis":
        coef = np.atleast_2d(np.asarray(est.coef_, np.float64))
        icpt = np.atleast_1d(np.asarray(est.intercept_, np.float64))
        lp = np.log(np.asarray(est.priors_, np.float64))
        if coef.shape[0] == 1:  # binary: logits (-s/2, s/2), s = coef . x + intercept; softmax = expit(s)
            return [linear_polynomial(0.5 * coef[0], 0.5 * icpt[0] + lp[0]),
                    linear_polynomial(-0.5 * coef[0], -0.5 * icpt[0] + lp[1])], lp
        return [linear_polynomial(-coef[y], -icpt[y] + lp[y]) for y in range(coef.shape[0])], lp
    if name == "GaussianNB":
        theta = np.asarray(est.theta_, np.float64)
        var = np.asarray(est.var_, np.float64)
        hs = []
        for y in range(theta.shape[0]):
            W = np.diag(var[y] ** -0.5)
            hs.append(quadratic_polynomial(W, theta[y], 0.5 * float(np.sum(np.log(2.0 * np.pi * var[y])))))
        return hs, np.log(np.asarray(est.class_prior_, np.float64))
    flp = np.asarray(est.feature_log_prob_, np.float64)
    neg = np.log(1 - np.exp(flp))  # as sklearn computes it
    return _bernoulli(flp, neg), np.asarray(est.class_log_prior_, np.float64)
