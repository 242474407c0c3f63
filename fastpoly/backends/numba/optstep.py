"""One optimiser step of a parameter vector, float32 bit for bit :mod:`fastpoly.sgd.reference`.

The update of the optimiser table (:mod:`fastpoly.model.optimizers`, Keras semantics), written once
for the Numba trainers that interpret their network (the generic layer trainer,
:mod:`fastpoly.backends.numba.train_cnn`).  Every multiply-add is one float32 FMA, every other
operation one correctly rounded float32 operation, in the order of ``kernels/train.cuh``'s
``fp_opt_step``:

* SGD: ``p = fma(-lr, g, p)``; with momentum ``b = fma(mu, b, g)``, step ``b`` (Nesterov:
  ``fma(mu, b, g)``), ``p = fma(-lr, step, p)``.
* Adam: ``m = fma(b1, m, c1*g)``, ``v = fma(b2, v, (c2*g)*g)``,
  ``p = fma(-lr, (m / bc1) / (sqrt(v / bc2) + eps), p)`` with ``bc = 1 - beta^t``.
* Adagrad: ``acc = fma(g, g, acc)`` (from the initial accumulator),
  ``p = p - (lr*g) / den(acc)``.
* RMSprop: ``v = fma(rho, v, crho*(g*g))``, ``inc = (lr*g) / den(v)``, with momentum
  ``inc = fma(mu, s2, inc)`` (kept in ``s2``), ``p = p - inc``.

``den(v)`` is ``sqrt(v + eps)`` with ``eps_in_sqrt`` (Keras 3) and ``sqrt(v) + eps`` without.
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.numba.jit import fma, jit
from fastpoly.model.optimizers import OPTIMIZERS, RF, RI

__all__ = ["opt_s1_init", "opt_step"]

_F = np.float32
_ZERO = _F(0.0)
_ONE = _F(1.0)
_ADAM = OPTIMIZERS["adam"].code
_ADAGRAD = OPTIMIZERS["adagrad"].code
_RMSPROP = OPTIMIZERS["rmsprop"].code
_RI_OPT, _RI_NEST, _RI_EIS = RI["optimizer"], RI["nesterov"], RI["eps_in_sqrt"]
_RF_LR, _RF_MU, _RF_B1, _RF_B2, _RF_EPS, _RF_C1, _RF_C2, _RF_RHO, _RF_CRHO, _RF_ACC0 = (RF[k] for k in (
    "lr", "momentum", "beta1", "beta2", "eps", "one_minus_beta1", "one_minus_beta2", "rho", "one_minus_rho",
    "initial_accumulator"))


@jit
def opt_s1_init(ints, floats):
    """The value the first state vector starts from in every run (Adagrad: its initial accumulator; else 0)."""
    return floats[_RF_ACC0] if ints[_RI_OPT] == _ADAGRAD else _ZERO


@jit
def opt_step(ints, floats, bt, P, G, S1, S2, n):
    """One step of the optimiser of the recipe arrays ``ints`` / ``floats`` on ``P[:n]``.

    ``G`` is the gradient, ``S1`` / ``S2`` the optimiser state (fresh per run: ``S1`` at
    :func:`opt_s1_init`, ``S2`` at 0) and ``bt`` two float32 (Adam's ``beta1^t``, ``beta2^t``:
    1 at the start of a run, multiplied by the betas in float32 at every step, as the reference keeps
    them).
    """
    opt = ints[_RI_OPT]
    lr = floats[_RF_LR]
    nlr = -lr
    mu = floats[_RF_MU]
    eps = floats[_RF_EPS]
    eps_in_sqrt = ints[_RI_EIS] != 0
    if opt == _ADAM:
        b1, b2, c1, c2 = floats[_RF_B1], floats[_RF_B2], floats[_RF_C1], floats[_RF_C2]
        b1t = bt[0] * b1
        b2t = bt[1] * b2
        bt[0] = b1t
        bt[1] = b2t
        bc1 = _ONE - b1t
        bc2 = _ONE - b2t
        for p in range(n):
            g = G[p]
            mm = fma(b1, S1[p], c1 * g)
            vv = fma(b2, S2[p], (c2 * g) * g)
            S1[p] = mm
            S2[p] = vv
            stp = (mm / bc1) / (np.sqrt(vv / bc2) + eps)
            P[p] = fma(nlr, stp, P[p])
    elif opt == _ADAGRAD:
        for p in range(n):
            g = G[p]
            acc = fma(g, g, S1[p])
            S1[p] = acc
            den = np.sqrt(acc + eps) if eps_in_sqrt else np.sqrt(acc) + eps
            P[p] = P[p] - (lr * g) / den
    elif opt == _RMSPROP:
        rho, crho = floats[_RF_RHO], floats[_RF_CRHO]
        for p in range(n):
            g = G[p]
            vv = fma(rho, S1[p], crho * (g * g))
            S1[p] = vv
            den = np.sqrt(vv + eps) if eps_in_sqrt else np.sqrt(vv) + eps
            inc = (lr * g) / den
            if mu != _ZERO:
                inc = fma(mu, S2[p], inc)
                S2[p] = inc
            P[p] = P[p] - inc
    elif mu == _ZERO:
        for p in range(n):
            P[p] = fma(nlr, G[p], P[p])
    else:
        nesterov = ints[_RI_NEST] != 0
        for p in range(n):
            bf = fma(mu, S1[p], G[p])
            S1[p] = bf
            stp = fma(mu, bf, G[p]) if nesterov else bf
            P[p] = fma(nlr, stp, P[p])
