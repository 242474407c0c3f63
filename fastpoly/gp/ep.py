"""Expectation propagation for Gaussian orthant (one-sided box) probabilities.

Cunningham, Hennig & Lacoste-Julien, "Gaussian probabilities and expectation
propagation" (2011): approximate ``P(h_i > l_i for all i)``, ``h ~ N(0, S)``,
by replacing each truncation factor ``1[h_i > l_i]`` with an unnormalised
Gaussian site ``Z_i exp(-tau_i h_i**2 / 2 + nu_i h_i)`` whose zeroth to second
moments match those of the tilted cavity.  The normaliser of the product is the
EP estimate of the probability.  Everything is in log space; the truncated
normal moments use the Mills ratio (:mod:`fastpoly.gp.normal`), so sites deep
in the tails (log P to -1e3 and beyond) stay finite.

EP is fast and accurate in the bulk but biased (usually low) for strongly
correlated orthants; it reports no error bar (``docs/design.md#gp-posterior``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, special

from fastpoly.gp.normal import truncated_moments

__all__ = ["EPResult", "ep_log_prob"]


@dataclass
class EPResult:
    """Output of :func:`ep_log_prob`: the log normaliser and convergence diagnostics."""

    log_p: float
    converged: bool
    iterations: int
    max_change: float
    diagnostics: dict = field(default_factory=dict)


def _posterior(S: np.ndarray, tau: np.ndarray, nu: np.ndarray, full: bool = True):
    """Posterior covariance (or only its diagonal), mean and ``sum(log diag(chol(I + T^1/2 S T^1/2)))``.

    ``Sig = S - V^T V`` with ``V = chol(B)^-1 T^1/2 S``; with ``full=False`` only
    ``diag(Sig)`` is formed (column sums of ``V**2``), saving the O(d^3) product.
    """
    st = np.sqrt(tau)
    B = np.eye(S.shape[0]) + st[:, None] * S * st[None, :]
    Lb = linalg.cholesky(B, lower=True, check_finite=False)
    V = linalg.solve_triangular(Lb, st[:, None] * S, lower=True, check_finite=False)
    mu = S @ nu - V.T @ (V @ nu)
    logdet_half = float(np.sum(np.log(np.diag(Lb))))
    if full:
        Sig = S - V.T @ V
        return 0.5 * (Sig + Sig.T), mu, logdet_half
    return np.diag(S) - np.einsum("ij,ij->j", V, V), mu, logdet_half


def _match(mu_c: np.ndarray, v_c: np.ndarray, lower: np.ndarray):
    """Moments of ``N(mu_c, v_c)`` restricted to ``(lower, inf)``: log mass, mean, variance."""
    sd = np.sqrt(v_c)
    logz, m1, v1 = truncated_moments((lower - mu_c) / sd)
    return logz, mu_c + sd * m1, v_c * v1


_SQRT_HALF_PI = math.sqrt(math.pi / 2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _match_scalar(mu_c: float, v_c: float, lower: float) -> tuple[float, float]:
    """Scalar :func:`_match` (mean, variance) without array overhead (same formulas)."""
    sd = math.sqrt(v_c)
    a = (lower - mu_c) / sd
    if a < 0:
        lam = math.exp(-0.5 * a * a - _LOG_SQRT_2PI - float(special.log_ndtr(-a)))
        var = 1.0 - lam * (lam - a)
    else:
        R = _SQRT_HALF_PI * float(special.erfcx(a / math.sqrt(2.0)))
        lam = 1.0 / R
        var = 1.0 - (1.0 - a * R) / (R * R)
    var = min(max(var, 1e-300), 1.0)
    return mu_c + sd * lam, v_c * var


def _log_z(tau, nu, lower, d, mu, logdet_half):
    """The EP log normaliser from the sites, the posterior marginal variances ``d`` and mean ``mu``."""
    tau_c = 1.0 / d - tau
    nu_c = mu / d - nu
    m_c = nu_c / tau_c
    logz_hat = special.log_ndtr((m_c - lower) * np.sqrt(tau_c))
    log_zt = (
        logz_hat + 0.5 * np.log1p(tau / tau_c) + 0.5 * m_c * m_c * tau_c
        - 0.5 * (nu_c + nu) ** 2 / (tau_c + tau)
    )
    return float(np.sum(log_zt) - logdet_half + 0.5 * nu @ mu)


def ep_log_prob(
    S: np.ndarray,
    lower: np.ndarray | None = None,
    damping: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 500,
    schedule: str = "auto",
) -> EPResult:
    """EP estimate of ``log P(h > lower)``, ``h ~ N(0, S)`` (``S`` positive definite).

    Parameters
    ----------
    S : (d, d) float64 array
        Covariance (positive definite; see :func:`fastpoly.gp.orthant` for the checks).
    lower : (d,) array or None
        Lower bounds (default 0: the positive orthant).
    damping : float in (0, 1] or None
        Initial fraction of each new site taken (1 = undamped); None: 1 for the
        sequential schedule, 0.5 for the parallel one.  Whenever a sweep changes
        the sites more than the sweep before the previous one did, the damping is halved (down to
        0.01), which stops the period-2 oscillation parallel EP shows on strongly
        correlated kernels.
    tol : float
        Stop when no site's natural parameters change by more than ``tol`` (relative).
    max_iter : int
        Maximum sweeps.
    schedule : {"auto", "sequential", "parallel"}
        ``sequential`` updates one site at a time with rank-one updates (Cunningham's
        schedule; O(d**2) per site); ``parallel`` updates all sites from the current
        marginals and refactorises once per sweep (O(d**3) BLAS per sweep, better for
        d in the hundreds and more).  ``auto``: sequential for d <= 256.

    Returns
    -------
    EPResult
        ``diagnostics`` holds the schedule, damping, the history of the largest
        change per sweep and the number of skipped (non-positive cavity) updates.
    """
    S = np.asarray(S, np.float64)
    dim = S.shape[0]
    lower = np.zeros(dim) if lower is None else np.asarray(lower, np.float64)
    if schedule == "auto":
        schedule = "sequential" if dim <= 256 else "parallel"
    if schedule not in ("sequential", "parallel"):
        raise ValueError(f"unknown EP schedule {schedule!r}; valid: auto, sequential, parallel")
    if damping is None:
        damping = 1.0 if schedule == "sequential" else 0.5
    if not 0 < damping <= 1:
        raise ValueError(f"damping must be in (0, 1], got {damping!r}")
    damping0 = damping
    tau = np.zeros(dim)
    nu = np.zeros(dim)
    Sig = S.copy() if schedule == "sequential" else np.diag(S).copy()
    mu = np.zeros(dim)
    history: list[float] = []
    skipped = 0
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (it is reported after the loop)
        tau_old, nu_old = tau.copy(), nu.copy()
        if schedule == "sequential":
            for i in range(dim):
                s_ii = Sig[i, i]
                tau_c = 1.0 / s_ii - tau[i]
                if tau_c <= 0:
                    skipped += 1
                    continue
                nu_c = mu[i] / s_ii - nu[i]
                mh, vh = _match_scalar(nu_c / tau_c, 1.0 / tau_c, lower[i])
                tau_new = max(1.0 / vh - tau_c, 0.0)
                nu_new = mh / vh - nu_c
                tau_new = (1 - damping) * tau[i] + damping * tau_new
                nu_new = (1 - damping) * nu[i] + damping * nu_new
                dt, dn = tau_new - tau[i], nu_new - nu[i]
                tau[i], nu[i] = tau_new, nu_new
                si = Sig[:, i].copy()
                k = dt / (1.0 + dt * s_ii)
                # Sig' = Sig - k si si^T;  mu' = Sig' nu' = mu + si (dn - k (mu_i + dn s_ii))
                mu += si * (dn - k * (mu[i] + dn * s_ii))
                Sig -= k * np.outer(si, si)
        else:
            d = Sig
            tau_c = 1.0 / d - tau
            ok = tau_c > 0
            skipped += int(np.count_nonzero(~ok))
            nu_c = mu / d - nu
            tc = np.where(ok, tau_c, 1.0)
            _, mh, vh = _match(nu_c / tc, 1.0 / tc, lower)
            tau_new = np.maximum(1.0 / vh - tc, 0.0)
            nu_new = mh / vh - nu_c
            tau = np.where(ok, (1 - damping) * tau + damping * tau_new, tau)
            nu = np.where(ok, (1 - damping) * nu + damping * nu_new, nu)
        # fresh factorisation each sweep (no drift); the parallel schedule needs only the marginals
        Sig, mu, logdet_half = _posterior(S, tau, nu, full=schedule == "sequential")
        change = float(max(
            np.max(np.abs(tau - tau_old) / (np.abs(tau) + 1e-12)),
            np.max(np.abs(nu - nu_old) / (np.abs(nu) + 1e-12)),
        ))
        if len(history) >= 3 and change > history[-2]:
            damping = max(0.5 * damping, 0.01)
        history.append(change)
        if change < tol:
            converged = True
            break
    log_p = _log_z(tau, nu, lower, np.diag(Sig) if Sig.ndim == 2 else Sig, mu, logdet_half)
    return EPResult(
        log_p=log_p,
        converged=converged,
        iterations=it,
        max_change=history[-1] if history else 0.0,
        diagnostics={
            "schedule": schedule,
            "damping": damping0,
            "final_damping": damping,
            "tol": tol,
            "change_history": history,
            "skipped_updates": skipped,
            "site_tau": tau,
            "site_nu": nu,
        },
    )


def _self_check() -> None:  # pragma: no cover - handy when editing
    print(ep_log_prob(np.eye(3)).log_p, 3 * math.log(0.5))
