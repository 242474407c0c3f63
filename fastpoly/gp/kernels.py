"""NNGP kernels: the infinite-width covariance of an :class:`~fastpoly.MLP`'s output pre-activation.

For ``W ~ N(0, sigma_w**2 / fan_in)`` and ``b ~ N(0, s_b**2)`` (``s_b = sigma_b``
unscaled, the anchors' default, or ``sigma_b / sqrt(fan_in)`` with
``bias_scaling="fan_in"``; ``s_b = 0`` without biases) the pre-activations of
every layer are, as the hidden widths grow, a Gaussian process with
(REFERENCE.md §11)::

    K0(x, x') = s_b**2 + sigma_w**2 * (x . x') / d
    K(l+1)    = s_b**2 + sigma_w**2 * E[phi(u) phi(u')],   (u, u') ~ N(0, K(l) on {x, x'})

with the closed forms

* relu (arc-cosine kernel of degree 1, Cho & Saul 2009):
  ``E = sqrt(K_xx K_x'x') (sin t + (pi - t) cos t) / (2 pi)``, ``t = arccos(rho)``;
  on the diagonal ``E = K_xx / 2``;
* erf (Williams 1997): ``E = (2/pi) arcsin(2 K_xx' / sqrt((1 + 2 K_xx)(1 + 2 K_x'x')))``;
* sign (``numpy.sign`` semantics, 0 at 0): ``E = (2/pi) arcsin(rho)``, 1 on the diagonal,
  0 on a row of zero variance;
* identity: ``E = K_xx'``.

``tanh`` has no closed form and uniform weights make the first layer
non-Gaussian at any width; both raise ``ValueError``.

Zero variances are exact: with ``sigma_b = 0`` and {0,1} inputs the row
``x = 0`` has ``K = 0`` in every layer (the network outputs exactly 0 there,
so its output bit is 0); nothing is regularised here (see
:func:`fastpoly.gp.orthant` and :func:`fastpoly.gp.sample` for how such rows
are handled).
"""
from __future__ import annotations

import math

import numpy as np

from fastpoly.arch import MLP, boolean_inputs, parse_arch

__all__ = ["KERNEL_ACTIVATIONS", "as_mlp", "check_inputs", "kernel"]

#: activations with a closed-form NNGP layer map
KERNEL_ACTIVATIONS = ("relu", "erf", "sign", "identity")


def as_mlp(arch: MLP | str) -> MLP:
    """Accept an :class:`~fastpoly.MLP` or an architecture string such as ``"7-40-40-1"``."""
    if isinstance(arch, MLP):
        return arch
    if isinstance(arch, str):
        n, hidden = parse_arch(arch)
        return MLP(n, hidden)
    raise ValueError(f"arch must be an MLP or a string such as '7-40-40-1', got {type(arch).__name__}")


def check_inputs(arch: MLP, X: np.ndarray | None) -> np.ndarray:
    """Validate ``X`` for ``arch`` (None: all Boolean inputs) and return it as float64 ``(m, n_inputs)``."""
    if X is None:
        if arch.n_inputs > 16:
            raise ValueError(f"X=None means all 2**{arch.n_inputs} Boolean inputs; pass X explicitly")
        X = boolean_inputs(arch.n_inputs)
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("X must be a numeric array of shape (m, n_inputs)") from None
    if X.ndim != 2 or X.shape[1] != arch.n_inputs or X.shape[0] < 1:
        raise ValueError(f"X must have shape (m, {arch.n_inputs}) with m >= 1, got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains non-finite values (nan or inf)")
    return X


def _bias_var(arch: MLP, fan_in: int) -> float:
    if not arch.bias:
        return 0.0
    s2 = arch.sigma_b**2
    return s2 / fan_in if arch.bias_scaling == "fan_in" else s2


def _layer(K: np.ndarray, diag: np.ndarray, act: str) -> tuple[np.ndarray, np.ndarray]:
    """``E[phi(u) phi(u')]`` for ``(u, u') ~ N(0, K)`` (matrix and exact diagonal)."""
    if act == "identity":
        return K, diag
    if act == "erf":
        s = np.sqrt(1.0 + 2.0 * diag)
        arg = np.clip(2.0 * K / np.outer(s, s), -1.0, 1.0)
        E = (2.0 / math.pi) * np.arcsin(arg)
        dE = (2.0 / math.pi) * np.arcsin(2.0 * diag / (1.0 + 2.0 * diag))
        np.fill_diagonal(E, dE)
        return E, dE
    sd = np.sqrt(diag)
    norm = np.outer(sd, sd)
    pos = norm > 0
    rho = np.zeros_like(K)
    np.divide(K, norm, out=rho, where=pos)
    np.clip(rho, -1.0, 1.0, out=rho)
    if act == "relu":
        t = np.arccos(rho)
        E = norm * (np.sin(t) + (math.pi - t) * rho) / (2.0 * math.pi)
        dE = diag / 2.0
    elif act == "sign":
        E = np.where(pos, (2.0 / math.pi) * np.arcsin(rho), 0.0)
        dE = (diag > 0).astype(np.float64)
    else:  # pragma: no cover - guarded by kernel()
        raise ValueError(act)
    np.fill_diagonal(E, dE)
    return E, dE


def kernel(arch: MLP | str, X: np.ndarray | None = None) -> np.ndarray:
    """The NNGP covariance of the output pre-activation of ``arch`` on the rows of ``X``.

    Parameters
    ----------
    arch : MLP or str
        Architecture (activation relu, erf, sign or identity; gaussian weights;
        any depth, widths, ``sigma_w``, ``sigma_b`` (0 included), ``bias_scaling``
        ``"none"`` or ``"fan_in"``, with or without biases).  The hidden widths
        do not enter: this is the infinite-width limit.
    X : array_like (m, n_inputs) or None
        Any finite input rows (float64 is used as given); None: all Boolean inputs.

    Returns
    -------
    numpy.ndarray of float64, shape (m, m)
        Symmetric positive semi-definite; exactly symmetric by construction.

    Raises
    ------
    ValueError
        For an activation without a closed form (tanh), uniform weights, or bad ``X``.
    """
    arch = as_mlp(arch)
    if arch.activation not in KERNEL_ACTIVATIONS:
        raise ValueError(
            f"no closed-form NNGP kernel for activation {arch.activation!r}; "
            f"supported: {', '.join(KERNEL_ACTIVATIONS)}"
        )
    if arch.weights != "gaussian":
        raise ValueError(
            "the NNGP kernel needs gaussian weights: with uniform weights the first layer's "
            "pre-activations are not Gaussian at any width"
        )
    X = check_inputs(arch, X)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, not warned
        sw2 = arch.sigma_w**2
        d = X.shape[1]
        K = _bias_var(arch, d) + sw2 * (X @ X.T) / d
        diag = _bias_var(arch, d) + sw2 * np.einsum("ij,ij->i", X, X) / d
        K = 0.5 * (K + K.T)
        np.fill_diagonal(K, diag)
        for fan_in in arch.hidden:
            E, dE = _layer(K, diag, arch.activation)
            bv = _bias_var(arch, fan_in)
            K = bv + sw2 * E
            diag = bv + sw2 * dE
            K = 0.5 * (K + K.T)
            np.fill_diagonal(K, diag)
    if not np.all(np.isfinite(K)):
        raise ValueError(
            f"the NNGP kernel overflows float64 on these inputs (largest |x| = {float(np.max(np.abs(X))):.3g}, "
            f"sigma_w = {arch.sigma_w}); rescale X"
        )
    return np.ascontiguousarray(K)
