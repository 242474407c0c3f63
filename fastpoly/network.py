"""Plain feed-forward networks: an ordered list of dense layers, and the NumPy reference forward pass."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fastpoly.activations import get_activation
from fastpoly.stream.fmath import fma32

__all__ = ["Layer", "Network", "dense_preactivation", "forward_reference"]


@dataclass
class Layer:
    """One dense layer ``a = activation(W @ x + b)``.

    Attributes
    ----------
    W : numpy.ndarray, shape (fan_out, fan_in)
    b : numpy.ndarray, shape (fan_out,)
    activation : str
        Name in :data:`fastpoly.activations.ACTIVATIONS` (``"identity"`` for an output layer).
    """

    W: np.ndarray
    b: np.ndarray
    activation: str = "identity"

    def __post_init__(self):
        self.W = np.asarray(self.W)
        self.b = np.asarray(self.b)
        if self.W.ndim != 2:
            raise ValueError(f"layer weight matrix must be 2-D, got shape {self.W.shape}")
        if self.b.shape != (self.W.shape[0],):
            raise ValueError(
                f"layer bias must have shape ({self.W.shape[0]},), got {self.b.shape}"
            )
        get_activation(self.activation)

    @property
    def fan_in(self) -> int:
        """Inputs of the layer."""
        return self.W.shape[1]

    @property
    def fan_out(self) -> int:
        """Outputs of the layer."""
        return self.W.shape[0]


class LayerChain:
    """Mixin for an ordered list ``self.layers`` whose items have ``fan_in`` / ``fan_out``."""

    def _check_chain(self):
        self.layers = list(self.layers)
        if not self.layers:
            raise ValueError(f"a {type(self).__name__} needs at least one layer")
        for i, (a, b) in enumerate(zip(self.layers, self.layers[1:])):
            if a.fan_out != b.fan_in:
                raise ValueError(
                    f"layer {i} has {a.fan_out} outputs but layer {i + 1} expects {b.fan_in} inputs"
                )

    @property
    def n_inputs(self) -> int:
        return self.layers[0].fan_in

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].fan_out


@dataclass
class Network(LayerChain):
    """An ordered list of :class:`Layer` objects: plain NumPy arrays, readable and serialisable.

    Parameters
    ----------
    layers : list of Layer
        Consecutive layers; ``layers[i].fan_out == layers[i+1].fan_in``.
    meta : dict, optional
        Free-form JSON-serialisable metadata (e.g. where a sampled network came from).

    Examples
    --------
    >>> import numpy as np, fastpoly
    >>> net = fastpoly.Network([fastpoly.Layer(np.eye(2), np.zeros(2), "relu"),
    ...                         fastpoly.Layer(np.ones((1, 2)), np.zeros(1))])
    >>> fastpoly.evaluate(net, np.array([[1.0, -2.0]]), backend="numpy")
    array([1.])
    """

    layers: list
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self._check_chain()

    @property
    def widths(self) -> tuple[int, ...]:
        """Widths ``(n_inputs, ..., n_outputs)``."""
        return (self.n_inputs,) + tuple(layer.fan_out for layer in self.layers)

    @property
    def n_params(self) -> int:
        """Number of weights and biases."""
        return int(sum(layer.W.size + layer.b.size for layer in self.layers))

    def __call__(self, X, dtype=None):
        """Outputs on every row of ``X`` (NumPy reference)."""
        return forward_reference(self, X, dtype)

    # --- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (weights as nested lists, exact for float32/float64)."""
        return {
            "layers": [
                {
                    "W": layer.W.tolist(),
                    "b": layer.b.tolist(),
                    "activation": layer.activation,
                    "dtype": str(layer.W.dtype),
                }
                for layer in self.layers
            ],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Network:
        """Inverse of :meth:`to_dict`."""
        layers = [
            Layer(
                np.asarray(ld["W"], dtype=ld.get("dtype", "float64")).reshape(
                    len(ld["b"]), -1
                ),
                np.asarray(ld["b"], dtype=ld.get("dtype", "float64")),
                ld["activation"],
            )
            for ld in d["layers"]
        ]
        return cls(layers, dict(d.get("meta", {})))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the network as a ``.npz`` file (arrays + JSON header)."""
        arrays = {}
        for i, layer in enumerate(self.layers):
            arrays[f"W{i}"] = layer.W
            arrays[f"b{i}"] = layer.b
        header = {"activations": [layer.activation for layer in self.layers], "meta": self.meta}
        with open(path, "wb") as fh:
            np.savez(fh, header=np.array(json.dumps(header)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Network:
        """Read a network written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            layers = [
                Layer(z[f"W{i}"], z[f"b{i}"], act)
                for i, act in enumerate(header["activations"])
            ]
        return cls(layers, header.get("meta", {}))


def forward_reference(net: Any, X: ArrayLike, dtype: Any = None) -> np.ndarray:
    """NumPy reference forward pass with a fixed summation order.

    Each pre-activation starts from the bias and adds the inputs in index order:
    ``z = b; z = fma(W[j, k], x[k], z) for k = 0, 1, ...``.  In float32 every
    step is an exact fused multiply-add (the project's FMA rule, see
    :mod:`fastpoly.stream.fmath`), so this reproduces the sampler's bits exactly.  In
    float64 the steps are unfused ``z = z + W[j,k]*x[k]`` (other backends agree
    within the tolerance table of :mod:`fastpoly.tolerances`).  No BLAS.

    Parameters
    ----------
    net : Network
    X : array_like, shape (N, n_inputs)
    dtype : {None, numpy.float32, numpy.float64}
        Arithmetic type; default: the dtype of the first weight matrix if it is
        float32, else float64.

    Returns
    -------
    numpy.ndarray, shape (N, n_outputs)
    """
    dtype = resolve_dtype(net, dtype)
    h = np.asarray(X, dtype=dtype)
    for layer in net.layers:
        z = dense_preactivation(layer.W.astype(dtype, copy=False), layer.b.astype(dtype, copy=False), h)
        h = get_activation(layer.activation)(z, dtype)
    return h


def dense_preactivation(W: np.ndarray, b: np.ndarray | None, h: np.ndarray) -> np.ndarray:
    """``z = W h + b`` on the rows ``h`` (``(N, fan_in)``) in the reference order, in ``h``'s dtype.

    ``z = b`` (or +0 without bias), then for ``k = 0, 1, ...``: float32 ``z = fma(h[:, k], W[:, k], z)``
    (the FMA rule), float64 ``z = z + h[:, k] * W[:, k]``.  The one dense reference of the sampler's
    networks (:func:`forward_reference`) and of the network model (:class:`fastpoly.model.Dense`).
    """
    dtype = h.dtype.type
    if b is not None:
        z = np.broadcast_to(b, (h.shape[0], W.shape[0])).astype(dtype, copy=True)
    else:
        z = np.zeros((h.shape[0], W.shape[0]), dtype)
    for k in range(W.shape[1]):
        if dtype == np.float32:
            z = fma32(h[:, k : k + 1], W[None, :, k], z)
        else:
            z = z + h[:, k : k + 1] * W[None, :, k]
    return z


def resolve_dtype(net: Any, dtype: Any) -> type:
    """The arithmetic type for evaluating ``net``: ``dtype`` (float32/float64) or the network's own."""
    if dtype is None:
        dtype = np.float32 if net.layers[0].W.dtype == np.float32 else np.float64
    dtype = np.dtype(dtype).type
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype).name}")
    return dtype
