"""The :class:`Architecture`: an input shape and a tuple of layers.

An architecture is frozen and hashable, serialises with :meth:`Architecture.to_dict` /
:meth:`Architecture.from_dict`, and is parsed from strings such as ``"7-40-40-1"`` by
:func:`fastpoly.model.spec.parse`.

Parameters are drawn layer by layer, block by block (:meth:`Architecture.param_blocks`), each
block row-major, as ``float32(z_p * scale)`` with ``z_p`` the ``p``-th unit draw of
:mod:`fastpoly.stream.rng` (see ``docs/design.md#parameter-order``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from fastpoly.model.layers import Layer, NNGPState, ParamBlock, check_width, layer_from_dict
from fastpoly.stream.rng import stream_normals, stream_uniform_pm1

__all__ = ["Architecture", "ParamSlot"]

Shape = tuple[int, ...]


def _truncated_units(seed: int, index: int, truncated: np.ndarray) -> np.ndarray:
    """The unit draws of one sample when some parameters are truncated normals (``weights="truncated_normal"``).

    The Philox rule: the sample's normals ``z_0, z_1, ...`` are consumed in order; parameter ``p``
    takes the next unused normal, and when ``p`` is truncated, normals with ``|z| > 2`` are skipped
    (redrawn) first.  Deterministic per ``(seed, index)``; untruncated parameters (biases) take the
    next normal as it comes.
    """
    n = truncated.size
    have = max(2 * n, 64)
    while True:
        z = stream_normals(seed, [index], have)[0]
        out = np.empty(n, np.float32)
        q = 0
        for p in range(n):
            if truncated[p]:
                while q < have and abs(z[q]) > 2.0:
                    q += 1
            if q >= have:
                break
            out[p] = z[q]
            q += 1
        else:
            return out
        have *= 2


class ParamSlot(NamedTuple):
    """Where a parameter block lives: layer index, block, offset in the flat parameter vector."""

    layer: int
    block: ParamBlock
    offset: int


class Architecture:
    """A network: input shape (without the row axis) and a tuple of layers; frozen and hashable.

    Parameters
    ----------
    input_shape : int or tuple of int
        ``n`` features, or ``(H, W, C)``.
    layers : sequence of Layer
        Applied in order; the last one's output must have one unit (one output bit per input row).

    Raises
    ------
    ValueError
        Empty layers, a layer that is not a :class:`~fastpoly.model.layers.Layer`, or an output
        of more than one unit.
    """

    _frozen = False

    def __init__(self, input_shape: int | Sequence[int], layers: Sequence[Any]) -> None:
        if isinstance(input_shape, (int, np.integer)) and not isinstance(input_shape, bool):
            input_shape = (input_shape,)
        try:
            shape = tuple(check_width(s, "input size") for s in input_shape)  # type: ignore[union-attr]
        except TypeError:
            raise ValueError(f"input_shape must be an int or a tuple of ints, got {input_shape!r}") from None
        if len(shape) not in (1, 3):
            raise ValueError(f"input_shape must be (n,) or (H, W, C), got {shape}")
        layers = tuple(layers)
        if not layers:
            raise ValueError("an architecture needs at least one layer")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise ValueError(f"not a layer: {layer!r}")
        shapes = [shape]
        for layer in layers:
            shapes.append(tuple(layer.out_shape(shapes[-1])))
        if shapes[-1] != (1,):
            raise ValueError(f"the output must be one unit (one output bit per input), got shape {shapes[-1]}")
        families = {layer.init.weights for layer in layers if hasattr(layer, "init")}
        if len(families) > 1:
            raise ValueError("all layers must draw their weights from one family (gaussian or uniform)")
        self.input_shape: Shape = shape
        self.layers: tuple[Any, ...] = layers
        self.shapes: tuple[Shape, ...] = tuple(shapes)
        #: the hidden activation (the first activation layer's; "identity" without one)
        self.activation: str = next((x.name for x in layers if getattr(x, "kind", "") == "activation"), "identity")
        self._frozen = True

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen:
            raise AttributeError(f"{type(self).__name__} is frozen")
        object.__setattr__(self, name, value)

    # --- description -----------------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        """Input size (features, or H*W*C: images are rows of H*W*C values, row-major H, W, C)."""
        return int(np.prod(self.input_shape))

    @property
    def weights(self) -> str:
        """The weight family of every layer (``"gaussian"`` or ``"uniform"``)."""
        for layer in self.layers:
            if hasattr(layer, "init"):
                return str(layer.init.weights)
        return "gaussian"

    @property
    def spec(self) -> str:
        """The architecture as a string (activations implied), e.g. ``"7-40-40-1"``."""
        head = "x".join(str(s) for s in self.input_shape)
        return "-".join([head] + [t for t in (layer.token() for layer in self.layers) if t])

    def param_blocks(self) -> tuple[ParamSlot, ...]:
        """Every parameter block in draw order, with its layer and offset."""
        out, p = [], 0
        for i, (layer, shape) in enumerate(zip(self.layers, self.shapes)):
            for b in layer.param_layout(shape):
                out.append(ParamSlot(i, b, p))
                p += b.size
        return tuple(out)

    @property
    def n_params(self) -> int:
        """Number of random parameters per network."""
        return int(sum(s.block.size for s in self.param_blocks()))

    def split_params(self, theta: np.ndarray) -> list[list[np.ndarray]]:
        """Per layer, views of its parameter blocks (their shapes) into the flat vector ``theta``."""
        out: list[list[np.ndarray]] = [[] for _ in self.layers]
        for s in self.param_blocks():
            out[s.layer].append(theta[s.offset: s.offset + s.block.size].reshape(s.block.shape))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (inverse: :meth:`from_dict`)."""
        return {"input": list(self.input_shape), "layers": [layer.to_dict() for layer in self.layers]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Architecture:
        """Rebuild from :meth:`to_dict`.

        :func:`fastpoly.model.spec.architecture_from_dict` also reads an :class:`~fastpoly.MLP`'s
        ``{"widths": ...}`` form.
        """
        return cls(tuple(d["input"]), [layer_from_dict(x) for x in d["layers"]])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Architecture) and type(other) is type(self) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def __repr__(self) -> str:
        return f"Architecture({self.input_shape}, {list(self.layers)!r})"

    # --- sampling and references -------------------------------------------------------------------
    def draw_params(self, seed: int, indices: ArrayLike) -> np.ndarray:
        """Parameter vectors (float32, ``(len(indices), n_params)``) of samples ``indices`` of stream ``seed``."""
        indices = np.asarray(indices, dtype=np.uint64).reshape(-1)
        n = self.n_params
        scale = np.empty(n, dtype=np.float32)
        trunc = np.zeros(n, dtype=bool)
        for s in self.param_blocks():
            scale[s.offset: s.offset + s.block.size] = s.block.scale
            trunc[s.offset: s.offset + s.block.size] = s.block.truncated
        if self.weights == "truncated_normal":
            z = np.stack([_truncated_units(seed, int(i), trunc) for i in indices]) if indices.size else \
                np.zeros((0, n), np.float32)
        elif self.weights == "gaussian":
            z = stream_normals(seed, indices, n)
        else:
            z = stream_uniform_pm1(seed, indices, n)
        return (z * scale).astype(np.float32)

    def forward(self, theta: np.ndarray, X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """``(inputs of every layer, output)`` of the network ``theta`` on the rows ``X`` (reference)."""
        params = self.split_params(theta)
        hs, h = [], X.reshape((X.shape[0],) + self.input_shape)
        for layer, p in zip(self.layers, params):
            hs.append(h)
            h = layer.forward(p, h)
        return hs, h

    def backward(self, theta: np.ndarray, hs: list[np.ndarray], dout: np.ndarray) -> np.ndarray:
        """The flat float32 gradient (parameter order) by the reference trainers' arithmetic.

        ``hs`` are the layer inputs of :meth:`forward`, ``dout`` the error of the output.
        """
        params = self.split_params(theta)
        g = np.zeros_like(theta)
        gparts = self.split_params(g)
        d = dout
        first_weighted = min((i for i, p in enumerate(params) if p), default=0)
        for i in range(len(self.layers) - 1, -1, -1):
            d, grads = self.layers[i].backward(params[i], hs[i], d, input_grad=i > first_weighted)
            for dst, src in zip(gparts[i], grads):
                dst[...] = src
            if d is None:
                break
        return g

    def nngp(self, X: np.ndarray) -> np.ndarray:
        """The NNGP covariance of the output on the rows ``X`` (float64): the layers' maps composed."""
        state = NNGPState.of_inputs(X)
        for layer, shape in zip(self.layers, self.shapes):
            state = layer.nngp(state, shape)
        K = state.K / state.n if state.n != 1 else state.K
        return np.ascontiguousarray(K)
