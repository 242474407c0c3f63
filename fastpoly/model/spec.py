"""Architecture strings and descriptions: the parser with its token registry, and ``as_architecture``.

``"7-40-40-1"``: the first token is the input (``7`` features, or ``8x8x1`` = H x W x C), every
later token one layer.  Tokens are matched against a registry (:func:`register_token`): a bare
number is a :class:`~fastpoly.model.layers.Dense` layer, and the next layer types
(``c16k3`` convolutions, ``ap2`` pooling, ...) are one registration each (in the module that
defines the layer).  The hidden activation follows every *weighted* layer but the last
(``Layer.activated``).  An all-dense string on a flat input is an :class:`~fastpoly.MLP`.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from fastpoly.model.architecture import Architecture
from fastpoly.model.conv import AvgPool, Conv2D, Flatten, GlobalAvgPool, MaxPool
from fastpoly.model.layers import Activation, Dense, Init
from fastpoly.model.mlp import MLP, mlp_from_dict

__all__ = ["TOKENS", "architecture_from_dict", "as_architecture", "assemble", "parse", "register_token"]

#: a token's factory: ``(regex match, init) -> layer``
TokenFactory = Callable[["re.Match[str]", Init], Any]


class _Token(NamedTuple):
    pattern: re.Pattern[str]
    factory: TokenFactory
    example: str


#: the registry of layer tokens of architecture strings, tried in order
TOKENS: list[_Token] = []


def register_token(pattern: str, factory: TokenFactory, example: str) -> None:
    r"""Teach the parser a layer token: ``pattern`` (a full-match regex) -> ``factory(match, init)``.

    Example (what the convolution of the next issue will add)::

        register_token(r"c(\\d+)k(\\d+)", lambda m, init: Conv2D(int(m[1]), int(m[2]), init=init), "c16k3")
    """
    TOKENS.append(_Token(re.compile(pattern), factory, example))


register_token(r"\d+", lambda m, init: Dense(int(m[0]), init), "40")
register_token(
    r"c(\d+)k(\d+)(?:s(\d+))?(p?)",
    lambda m, init: Conv2D(int(m[1]), int(m[2]), int(m[3] or 1), "same" if m[4] else "valid", init),
    "c16k3[s2][p]",
)
register_token(r"ap(\d+)", lambda m, init: AvgPool(int(m[1])), "ap2")
register_token(r"mp(\d+)", lambda m, init: MaxPool(int(m[1])), "mp2")
register_token(r"gap", lambda m, init: GlobalAvgPool(), "gap")
register_token(r"flatten", lambda m, init: Flatten(), "flatten")


def assemble(input_shape: tuple[int, ...], weighted: list[Any], activation: str) -> list[Any]:
    """The layer list of a parsed string.

    ``Flatten`` before a dense layer on images; the activation after every activated (weighted)
    layer but the last one.
    """
    last = max((i for i, x in enumerate(weighted) if x.activated), default=-1)
    layers: list[Any] = []
    shape = tuple(input_shape)
    for i, x in enumerate(weighted):
        if isinstance(x, Dense) and len(shape) != 1:
            layers.append(Flatten())
            shape = layers[-1].out_shape(shape)
        layers.append(x)
        shape = x.out_shape(shape)
        if x.activated and i < last:
            layers.append(Activation(activation))
    return layers

_INPUT = re.compile(r"(\d+)(?:x(\d+)x(\d+))?")


def as_architecture(arch: Any) -> Architecture:
    """Accept an :class:`Architecture` (an :class:`~fastpoly.MLP`) or an architecture string (:func:`parse`)."""
    if isinstance(arch, Architecture):
        return arch
    if isinstance(arch, str):
        return parse(arch)
    raise ValueError(f"arch must be an MLP or a string like '7-40-40-1', got {type(arch).__name__}")


def parse(spec: str, activation: str = "relu", **init: Any) -> Architecture:
    """Parse an architecture string such as ``"7-40-40-1"``.

    Parameters
    ----------
    spec : str
        ``input-layer-...-layer``: the input ``n`` or ``HxWxC``, then registered layer tokens
        (:data:`TOKENS`): a bare number = a dense layer, ``c{F}k{K}[s{S}][p]`` a convolution,
        ``ap{K}`` / ``mp{K}`` pooling, ``gap`` global average pooling, ``flatten`` (implied
        before the first dense layer on images).  The output has one unit.
    activation : str
        The hidden activation, inserted after every weighted layer but the last.
    **init
        :class:`~fastpoly.model.layers.Init` fields for every weighted layer.

    Returns
    -------
    Architecture
        An :class:`~fastpoly.MLP` when the input is flat and every layer dense (so
        ``"7-40-40-1"`` keeps meaning exactly what it meant).
    """
    if not isinstance(spec, str):
        raise ValueError(f"architecture must be a string like '7-40-40-1', got {type(spec).__name__}")
    toks = [t.strip() for t in spec.strip().split("-")]
    m = _INPUT.fullmatch(toks[0]) if toks else None
    if m is None or len(toks) < 2 or not all(toks):
        raise ValueError(f"architecture must look like '7-40-40-1' (inputs-hidden...-1), got {spec!r}")
    shape = tuple(int(g) for g in m.groups() if g is not None)
    if any(s < 1 for s in shape):
        raise ValueError(f"all widths must be >= 1 in {spec!r}")
    ini = Init(**init)
    weighted: list[Any] = []
    for t in toks[1:]:
        for tok in TOKENS:
            mm = tok.pattern.fullmatch(t)
            if mm is not None:
                if t.isdigit() and int(t) < 1:
                    raise ValueError(f"all widths must be >= 1 in {spec!r}")
                weighted.append(tok.factory(mm, ini))
                break
        else:
            raise ValueError(
                f"unknown layer token {t!r} in architecture {spec!r}; known: " + ", ".join(x.example for x in TOKENS)
            )
    if len(shape) == 1 and all(isinstance(x, Dense) for x in weighted) and ini.weights != "truncated_normal":
        if weighted[-1].units != 1:
            raise ValueError(f"the output width must be 1 (one output bit per input), got {spec!r}")
        return MLP(shape[0], tuple(x.units for x in weighted[:-1]), activation=activation, **init)
    Activation(activation)  # an unknown activation name: the table's message
    try:
        return Architecture(shape, assemble(shape, weighted, activation))
    except ValueError as e:
        raise ValueError(f"architecture {spec!r}: {e}") from None


def architecture_from_dict(d: dict[str, Any]) -> Architecture:
    """Rebuild any architecture from its ``to_dict()`` (an :class:`~fastpoly.MLP`'s ``{"widths": ...}`` included)."""
    if "widths" in d:
        return mlp_from_dict(d)
    return Architecture.from_dict(d)
