"""NNGP kernels: the infinite-width covariance of an :class:`~fastpoly.MLP`'s output pre-activation.

For ``W ~ N(0, sigma_w**2 / fan_in)`` and ``b ~ N(0, s_b**2)`` (``s_b = sigma_b``
unscaled, the anchors' default, or ``sigma_b / sqrt(fan_in)`` with
``bias_scaling="fan_in"``; ``s_b = 0`` without biases) the pre-activations of
every layer are, as the hidden widths grow, a Gaussian process with
(``docs/design.md#nngp-maps``)::

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

Convolutional architectures (``"8x8x1-c16k3-c16k3-1"``, image rows) get the spatial kernel of
:mod:`fastpoly.model.nngp_conv` (Garriga-Alonso et al. 2019; Novak et al. 2019), blocked over
pairs of images (``docs/guide/cnn-gp.md``).

The kernel is the composition of the layers' NNGP maps (:meth:`fastpoly.model.Architecture.nngp`:
:meth:`Dense.nngp <fastpoly.model.Dense.nngp>` the affine map, the activation table's
``nngp`` the nonlinear one), so a new layer type brings its own map.

Zero variances are exact: with ``sigma_b = 0`` and {0,1} inputs the row
``x = 0`` has ``K = 0`` in every layer (the network outputs exactly 0 there,
so its output bit is 0); nothing is regularised here (see
:func:`fastpoly.gp.orthant` and :func:`fastpoly.gp.sample` for how such rows
are handled).
"""
from __future__ import annotations

import numpy as np

from fastpoly.activations import TABLE, supported
from fastpoly.model.architecture import Architecture
from fastpoly.model.inputs import all_boolean_inputs, check_input_rows
from fastpoly.model.nngp_conv import VARIANTS, conv_kernel, is_spatial
from fastpoly.model.spec import as_architecture

__all__ = ["as_mlp", "check_inputs", "kernel", "kernel_activations"]


def kernel_activations() -> tuple[str, ...]:
    """The activations with a closed-form NNGP map (the activation table's ``"nngp"`` support)."""
    return supported("nngp")


def as_mlp(arch: Architecture | str) -> Architecture:
    """Accept an architecture (an :class:`~fastpoly.MLP`) or a string such as ``"7-40-40-1"``."""
    return as_architecture(arch)


def check_inputs(arch: Architecture, X: np.ndarray | None) -> np.ndarray:
    """Validate ``X`` for ``arch`` (None: all Boolean inputs, at most 16 bits) as float64 ``(m, n_inputs)``."""
    if X is None:
        return all_boolean_inputs(arch.n_inputs, "gp").astype(np.float64)
    shape = tuple(arch.input_shape)
    if len(shape) == 3:
        try:
            Xa = np.asarray(X)
        except (TypeError, ValueError):
            raise ValueError("X must be a numeric array") from None
        if Xa.ndim == 4:
            if Xa.shape[1:] != shape:
                raise ValueError(f"images must have shape (m, {', '.join(map(str, shape))}), got {Xa.shape}")
            X = Xa.reshape(Xa.shape[0], -1)
    return check_input_rows(X, arch.n_inputs, np.float64)


def _layer(K: np.ndarray, diag: np.ndarray, act: str) -> tuple[np.ndarray, np.ndarray]:
    """``E[phi(u) phi(u')]`` for ``(u, u') ~ N(0, K)`` (matrix and exact diagonal): the table's map."""
    f = TABLE[act].nngp
    if f is None:
        raise ValueError(act)
    return f(K, diag)


def kernel(arch: Architecture | str, X: np.ndarray | None = None, *, variant: str = "fastpoly",
           max_bytes: int = 512 * 2**20) -> np.ndarray:
    """The NNGP covariance of the output pre-activation of ``arch`` on the rows of ``X``.

    Parameters
    ----------
    arch : Architecture (MLP) or str
        Architecture (activations with a closed-form map: relu, erf, sign, identity; gaussian
        weights; any depth, widths, ``sigma_w``, ``sigma_b`` (0 included), ``bias_scaling``
        ``"none"`` or ``"fan_in"``, with or without biases).  The hidden widths
        do not enter: this is the infinite-width limit.  Convolutional architectures (an image
        input ``HxWxC``; Conv2D, average / global average pooling, flatten, dense) too; max
        pooling has no closed form and raises ``NotImplementedError``.
    X : array_like (m, n_inputs), (m, H, W, C) or None
        Any finite input rows (float64 is used as given), images as flat rows (row-major H, W, C)
        or as an (m, H, W, C) array; None: all Boolean inputs.
    variant : {"fastpoly", "nn-pacbayes"}
        ``"nn-pacbayes"``: the anchor's analytic CNN kernel (pooling ignored, filter taps of
        variance ``sigma_w**2`` without the ``1/k**2``; ``docs/guide/cnn-gp.md``); the same as
        ``"fastpoly"`` for networks without convolutions.
    max_bytes : int
        Working-set budget of one block of image pairs (convolutional networks only).

    Returns
    -------
    numpy.ndarray of float64, shape (m, m)
        Symmetric positive semi-definite; exactly symmetric by construction.

    Raises
    ------
    ValueError
        For an activation without a closed form (tanh), uniform weights, bad ``X`` or ``variant``.
    NotImplementedError
        For max pooling (under ``variant="fastpoly"``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown kernel variant {variant!r}; valid: {', '.join(VARIANTS)}")
    arch = as_mlp(arch)
    X = check_inputs(arch, X)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, not warned
        K = conv_kernel(arch, X, variant=variant, max_bytes=max_bytes) if is_spatial(arch) else arch.nngp(X)
    if not np.all(np.isfinite(K)):
        raise ValueError(
            f"the NNGP kernel overflows float64 on these inputs (largest |x| = {float(np.max(np.abs(X))):.3g}, "
            f"sigma_w = {getattr(arch, 'sigma_w', '?')}); rescale X"
        )
    return K
