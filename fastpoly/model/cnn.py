"""Constructors of convolutional architectures: :func:`CNN` and the anchor family :func:`anchor_cnn`.

``CNN((8, 8, 1), ["c16k3", "c16k3", 1])`` builds the same :class:`~fastpoly.model.Architecture` as
the string ``"8x8x1-c16k3-c16k3-1"`` (:func:`fastpoly.model.spec.parse`).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastpoly.model.architecture import Architecture
from fastpoly.model.conv import AvgPool, Conv2D, GlobalAvgPool, MaxPool
from fastpoly.model.layers import Activation, Dense, Init
from fastpoly.model.spec import TOKENS, assemble

__all__ = ["CNN", "anchor_cnn"]


def _token_layer(t: Any, init: Init) -> Any:
    if isinstance(t, (int,)) and not isinstance(t, bool):
        return Dense(t, init)
    if isinstance(t, str):
        for tok in TOKENS:
            m = tok.pattern.fullmatch(t.strip())
            if m is not None:
                return tok.factory(m, init)
        raise ValueError(f"unknown layer token {t!r}; known: " + ", ".join(x.example for x in TOKENS))
    return t


def CNN(input_shape: int | Sequence[int], layers: Iterable[Any], activation: str = "relu",
        weights: str = "gaussian", sigma_w: float = 1.0, sigma_b: float = 1.0, bias_scaling: str = "none",
        bias: bool = True) -> Architecture:
    """A convolutional (or any layer-sequence) architecture, the Python form of an architecture string.

    Parameters
    ----------
    input_shape : (H, W, C) or int
        Image shape (or the width of flat inputs).
    layers : iterable
        Layer tokens (``"c16k3"``, ``"mp2"``, ``"gap"``, ...), ints (dense widths) or layer
        objects (:class:`~fastpoly.model.conv.Conv2D`, ...); the last must give one unit.
        ``Flatten`` is inserted before a dense layer on images, the activation after every
        weighted layer but the last, as for strings.
    activation : str
        The hidden activation.
    weights, sigma_w, sigma_b, bias_scaling, bias
        :class:`~fastpoly.model.layers.Init` of the layers given as tokens or ints.

    Returns
    -------
    Architecture
    """
    init = Init(weights, sigma_w, sigma_b, bias_scaling, bias)
    Activation(activation)
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    weighted = [_token_layer(t, init) for t in layers]
    if not weighted:
        raise ValueError("a CNN needs at least one layer")
    return Architecture(shape, assemble(shape, weighted, activation))


def anchor_cnn(input_shape: Sequence[int], n_layers: int, filters: int = 512, pooling: str | None = None,
               pool_after: Iterable[int] | None = None, global_pool: str | None = None,
               activation: str = "relu", sigma_w: float = 1.0, sigma_b: float = 1.0,
               weights: str = "gaussian", bias_scaling: str = "none", bias: bool = True) -> Architecture:
    """The anchor's (nn-pacbayes) CNN family.

    ``n_layers`` convolutions of ``filters`` channels, kernels alternating 5x5 "valid" (layers
    0, 2, ...) and 2x2 "same" (layers 1, 3, ...), stride 1; optional 2x2 pooling after chosen
    layers; optional global average pooling; then flatten and a dense logit of one unit.

    Parameters
    ----------
    input_shape : (H, W, C)
    n_layers : int
        Convolutions.
    filters : int
        Channels of every convolution (anchor default 512; its ICLR 2019 runs used 200).
    pooling : {None, "max", "avg"}
        2x2 pooling (stride 2) after the layers ``pool_after``.
    pool_after : iterable of int, optional
        Indices (0-based) of the convolutions followed by pooling (default: every one, when
        ``pooling`` is given).
    global_pool : {None, "avg"}
        Global average pooling before the logit (global max pooling has no token).
    activation, sigma_w, sigma_b, weights, bias_scaling, bias
        As for :func:`CNN`; ``weights="truncated_normal"`` is the anchor's first-run Keras initialiser.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    if pooling not in (None, "max", "avg"):
        raise ValueError(f"pooling must be None, 'max' or 'avg', got {pooling!r}")
    if global_pool not in (None, "avg"):
        raise ValueError(f"global_pool must be None or 'avg', got {global_pool!r}")
    after = set(range(n_layers) if pool_after is None else pool_after) if pooling else set()
    if any(not 0 <= i < n_layers for i in after):
        raise ValueError(f"pool_after must hold layer indices in [0, {n_layers}), got {sorted(after)}")
    init = Init(weights, sigma_w, sigma_b, bias_scaling, bias)
    layers: list[Any] = []
    for i in range(n_layers):
        layers.append(Conv2D(filters, 5, 1, "valid", init) if i % 2 == 0 else Conv2D(filters, 2, 1, "same", init))
        if i in after:
            layers.append(MaxPool(2) if pooling == "max" else AvgPool(2))
    if global_pool == "avg":
        layers.append(GlobalAvgPool())
    layers.append(Dense(1, init))
    return CNN(tuple(input_shape), layers, activation, weights, sigma_w, sigma_b, bias_scaling, bias)
