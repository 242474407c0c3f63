"""Interval bounds and the certified error bound of compiled polynomial networks.

Error model (all bounds are worst-case, over every input in ``domain``):

* Each intermediate *value* ``v`` (a sub-product of the polynomial) is carried as a
  linear functional of the neurons of one layer.  We track ``A`` (bound of the exact
  value ``|P_v(x)|``), ``E`` (bound of the error of the network's value, in exact
  arithmetic on the computed neurons), ``S`` (``sum |coef| * H`` over its neurons, the
  magnitude that rounding of a consumer's sum is proportional to), its constant and
  its number of nonzeros.
* Truncation of a smooth block (shallow product block, multiplication / square /
  carry gate): Lagrange remainder of order ``N+2`` (terms of order ``N+1`` cancel by
  parity), or, when smaller, the explicit order-``N+2`` term at ``b`` plus the
  order-``N+4`` remainder (this is what makes the fourth-order bias O(lambda^4)).
  The sup of ``|sigma^(k)|`` over each neuron's pre-activation interval comes from
  :meth:`fastpoly.poly.smooth.SmoothActivation.sup_abs` (rigorous).
* Propagation: ``|prod u~^r - prod u^r| <= prod (A+E)^r - prod A^r``.
* Rounding (unit roundoff ``u`` of the dtype): every pre-activation
  ``z = bias + sum w h`` (stored weights rounded to the dtype) is off by at most
  ``gamma(K+3) * (|bias| + sum |w| H)`` with ``gamma(n) = n u / (1 - n u)``; each
  activation evaluation is off by at most ``KAPPA * u * (|sigma| + |z|)`` (centered:
  ``KAPPA * u * (sup|sigma'| + 1) * |t|``); these pass through ``sup |sigma'|`` and the
  block's output weights (centered even-degree blocks: the rows for ``J`` and ``-J``
  have exactly negated sums, so their pre-activation roundings cancel to first order and
  only ``2 sup|sigma''| |delta| (|t| + |delta|)`` per pair remains).  float32 networks also
  count the rounding of the inputs.

``KAPPA = 8`` ulps covers NumPy's float32/float64 ``exp``, ``log1p``, ``expm1``,
``tanh`` and SciPy's ``erf``; kernels must evaluate activations at least this well.
"""
from __future__ import annotations

import math

import numpy as np

from fastpoly.poly.smooth import get_smooth

__all__ = ["unit_roundoff", "gamma", "KAPPA", "block_bound", "interval_abs_bound",
           "multiply_gate_truncation_bound"]

#: ulps allowed for one activation evaluation (see module docstring)
KAPPA = 8.0


def unit_roundoff(dtype):
    """Unit roundoff ``2**-53`` (float64) or ``2**-24`` (float32)."""
    dt = np.dtype(dtype)
    if dt == np.float64:
        return 2.0**-53
    if dt == np.float32:
        return 2.0**-24
    raise ValueError(f"dtype must be float32 or float64, got {dt.name}")


def gamma(n, u):
    """``n u / (1 - n u)`` (Higham's gamma_n)."""
    n = np.asarray(n, dtype=np.float64)
    return n * u / (1 - n * u)


def interval_abs_bound(domain, exponents):
    """``max |prod x_i^r_i|`` over the box ``domain`` (shape (n, 2)): ``prod max|x_i|^r_i``."""
    M = np.max(np.abs(np.asarray(domain, dtype=np.float64)), axis=1)
    return float(np.prod(M ** np.asarray(exponents, dtype=np.float64)))


def multiply_gate_truncation_bound(u, v, lam, activation="softplus", bias=0.0):
    """Certified ``|m(u, v) - u v|`` of the exact-arithmetic multiplication gate.

    ``M4 lam^2 (u^4 + 6u^2v^2 + v^4) / (24 |sigma''(b)|)`` with ``M4`` the sup of
    ``|sigma''''|`` over ``|z - b| <= lam (|u| + |v|)``; for softplus at ``b = 0`` this is
    the certified ``lam^2 (u^4 + 6 u^2 v^2 + v^4) / 48`` of ``docs/design.md#polynomial-gates``.
    """
    act = get_smooth(activation)
    u, v = np.abs(np.asarray(u, float)), np.abs(np.asarray(v, float))
    s2 = act.deriv_exact(2, bias)
    m4 = act.sup_abs(4, bias, lam * (u + v))
    return m4 * lam**2 * (u**4 + 6 * u**2 * v**2 + v**4) / (24 * abs(s2))


def block_bound(act, b, J, W, scale, U, A, S, C, K, lam, centered, u, odd_exact=False):
    """Error bound of one smooth block for every candidate ``lam`` (vectorised).

    Parameters
    ----------
    act : SmoothActivation
    b : float
        Bias point (the neuron's centre).
    J : int array (n_neurons, n_factors)
        Argument coefficients ``r_i - 2 j_i`` of the *non-constant* neurons.
    W : float array (n_neurons,)
        Integer output weights ``prod (-1)^j_i C(r_i, j_i)``.
    scale : float array (n_lam,)
        Output scale ``1 / (2^N N! c_N lam^N)`` for each candidate.
    U, A, S, C, K : float arrays (n_factors,)
        Per input value: bound of the computed value, bound of the exact value,
        abs-size, constant term, number of nonzeros.
    lam : float array (n_lam,)
    centered : bool
    u : float
        Unit roundoff.
    odd_exact : bool
        The block is an exact identity gate (truncation 0).

    Returns
    -------
    dict of arrays (n_lam,): ``E`` (error bound of the output value), ``trunc``,
    ``round``, ``S`` (abs-size of the output functional), and ``H`` (n_lam, n_neurons).
    """
    lam = np.asarray(lam, dtype=np.float64)[:, None]
    scale = np.abs(np.asarray(scale, dtype=np.float64))[:, None]
    Ja = np.abs(J).astype(np.float64)
    N = int(np.abs(J[0]).sum()) if J.shape[0] else 0
    w = lam * (Ja @ U)[None, :]                         # max |arg - b| per neuron
    bias_c = (0.0 if centered else b) + lam * (J @ C)[None, :]
    Ssum = np.abs(bias_c) + lam * (Ja @ S)[None, :]
    Kj = ((J != 0) * K[None, :]).sum(axis=1)[None, :]
    delta = gamma(Kj + 3, u) * Ssum
    wd = w + delta
    M1 = act.sup_abs(1, b, wd)
    if centered:
        rho = KAPPA * u * (M1 + 1.0) * wd
        H = M1 * wd + rho
    else:
        M0 = act.sup_abs(0, b, wd)
        rho = KAPPA * u * (M0 + abs(b) + wd)
        H = M0 + rho
    Wa = np.abs(W)[None, :]
    if centered and N % 2 == 0 and N > 0:
        # centered rows j and -j have exactly negated sums (bias 0, negated weights, same
        # order), so delta_-j = -delta_j and the pair's first-order effects cancel:
        # |sum_pair| <= 2 M2 |delta| (|t| + |delta|); summing over all rows counts pairs twice.
        M2 = act.sup_abs(2, b, wd)
        d_eff = np.minimum(M2 * delta * wd, M1 * delta)
    else:
        d_eff = M1 * delta
    rnd = (scale * Wa * (d_eff + rho)).sum(axis=1)
    if odd_exact or (act.polynomial_degree is not None and N + 2 > act.polynomial_degree):
        trunc = np.zeros(lam.shape[0])
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            k1 = N + 2
            t1 = (Wa * act.sup_abs(k1, b, w) * w**k1).sum(axis=1) / math.factorial(k1)
            d2 = abs(act.deriv_exact(k1, b))
            k2 = N + 4
            t2 = (Wa * (d2 * w**k1 / math.factorial(k1) + act.sup_abs(k2, b, w) * w**k2
                        / math.factorial(k2))).sum(axis=1)
            trunc = scale[:, 0] * np.fmin(t1, t2)
    S_out = (scale * Wa * H).sum(axis=1)
    return {"trunc": trunc, "round": rnd, "S": S_out, "H": H}
