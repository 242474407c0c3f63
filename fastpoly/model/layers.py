"""Layers of the network model: each carries its parameters, reference forward/backward and NNGP map.

A layer is a small frozen object.  Given the shape of its input (``in_shape``, without the
row axis) it states

* :meth:`~Layer.out_shape` -- the shape of its output;
* :meth:`~Layer.param_layout` -- its parameter blocks (:class:`ParamBlock`: name, shape, fan-in,
  float32 scale of the unit draws) **in the Philox draw order**: the blocks are drawn one after
  the other, each in row-major order, continuing the stream of the layers before it
  (see ``docs/design.md#parameter-order``);
* :meth:`~Layer.forward` ``(params, h)`` -- the NumPy reference on the rows ``h`` (row axis
  first), float32 by the project's FMA rule (``docs/design.md#fma-rule``), float64 unfused;
* :meth:`~Layer.backward` ``(params, h, dout)`` -- the reference gradients (float32, the
  trainers' order of operations) and the error of its input;
* :meth:`~Layer.nngp` ``(state, in_shape)`` -- the infinite-width map of the covariance
  (:class:`NNGPState`), raising ``ValueError`` where there is no closed form.

:class:`Dense` and :class:`Activation` are the first two layer types; a new type (a 2-D
convolution, pooling, flatten) is one more class with these five methods plus a token of the
architecture parser (:func:`fastpoly.model.spec.register_token`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from fastpoly.activations import TABLE, check_supported
from fastpoly.network import dense_preactivation
from fastpoly.stream.fmath import fma32

__all__ = ["Activation", "Dense", "Init", "Layer", "NNGPState", "ParamBlock", "layer_from_dict", "LAYER_TYPES"]

F = np.float32
Shape = tuple[int, ...]

WEIGHT_DISTRIBUTIONS = ("gaussian", "uniform", "truncated_normal")
#: Keras' std correction of a unit normal truncated at +-2 (the std of N(0, 1) | |z| <= 2)
TRUNCATED_STD = 0.87962566103423978
BIAS_SCALINGS = ("none", "fan_in")


def _check_sigma(s: Any, what: str) -> float:
    try:
        s = float(s)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a finite number >= 0, got {s!r}") from None
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {s!r}")
    return s


def check_width(w: Any, what: str) -> int:
    """A positive integer (not a bool), or ``ValueError`` naming ``what``."""
    if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)) or w < 1:
        raise ValueError(f"{what} must be a positive integer, got {w!r}")
    return int(w)


@dataclass(frozen=True)
class Init:
    """How a layer's parameters are drawn.

    Parameters
    ----------
    weights : {"gaussian", "uniform", "truncated_normal"}
        ``gaussian``: ``W ~ N(0, sigma_w**2 / fan_in)``; ``uniform``: the same variance,
        ``U(+-sqrt(3) sigma_w / sqrt(fan_in))`` (biases follow the same family);
        ``truncated_normal``: Keras ``VarianceScaling(sigma_w**2, "fan_in", "truncated_normal")``,
        a unit normal truncated at +-2 (redrawn) times ``sigma_w / sqrt(fan_in) / 0.8796...``
        (biases stay untruncated gaussian; draw rule in :meth:`Architecture.draw_params`).
    sigma_w, sigma_b : float
        Weight and bias scales (default 1, the anchors' "LeCun with unit bias").
    bias_scaling : {"none", "fan_in"}
        ``none``: ``b ~ N(0, sigma_b**2)``; ``fan_in``: ``b ~ N(0, sigma_b**2 / fan_in)``.
    bias : bool
        False: no biases (nothing is drawn for them).
    """

    weights: str = "gaussian"
    sigma_w: float = 1.0
    sigma_b: float = 1.0
    bias_scaling: str = "none"
    bias: bool = True

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_DISTRIBUTIONS:
            raise ValueError(
                f"unknown weight distribution {self.weights!r}; valid: {', '.join(WEIGHT_DISTRIBUTIONS)}"
            )
        object.__setattr__(self, "sigma_w", _check_sigma(self.sigma_w, "sigma_w"))
        object.__setattr__(self, "sigma_b", _check_sigma(self.sigma_b, "sigma_b"))
        if self.bias_scaling not in BIAS_SCALINGS:
            raise ValueError(f"unknown bias_scaling {self.bias_scaling!r}; valid: {', '.join(BIAS_SCALINGS)}")
        if not isinstance(self.bias, (bool, np.bool_)):
            raise ValueError(f"bias must be True or False, got {self.bias!r}")
        object.__setattr__(self, "bias", bool(self.bias))

    def scales(self, fan_in: int) -> tuple[np.float32, np.float32]:
        """float32 ``(weight_scale, bias_scale)`` applied to the unit draws of a layer of this fan-in.

        The unit draw is N(0, 1) for gaussian weights and U(-1, 1) for uniform ones (the scale
        then carries the factor sqrt(3) so the variances match).
        """
        k = math.sqrt(3.0) if self.weights == "uniform" else 1.0
        ws = k * self.sigma_w / math.sqrt(fan_in)
        if self.weights == "truncated_normal":
            ws = ws / TRUNCATED_STD
        bs = k * self.sigma_b / (math.sqrt(fan_in) if self.bias_scaling == "fan_in" else 1.0)
        return np.float32(ws), np.float32(bs)

    def bias_var(self, fan_in: int) -> float:
        """Variance of one bias (0 without biases), for the NNGP maps."""
        if not self.bias:
            return 0.0
        s2 = self.sigma_b**2
        return s2 / fan_in if self.bias_scaling == "fan_in" else s2

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)


class ParamBlock(NamedTuple):
    """One parameter array of a layer: drawn as ``float32(z * scale)`` from ``prod(shape)`` unit draws.

    ``truncated``: the unit draws are normals truncated at +-2 (``weights="truncated_normal"``).
    """

    name: str
    shape: Shape
    fan_in: int
    scale: np.float32
    truncated: bool = False

    @property
    def size(self) -> int:
        """Number of parameters."""
        return int(np.prod(self.shape, dtype=np.int64))


class NNGPState(NamedTuple):
    """The infinite-width covariance between the rows of a layer's input, per unit.

    ``K / n`` (float64, (m, m)) is the covariance of one unit (the mean over the ``n`` units of
    the products); ``diag / n`` its exact diagonal.  The input layer has ``K = X X^T`` and
    ``n = d`` (so the first dense map computes ``s_b**2 + sigma_w**2 (X X^T) / d`` in that
    order), every later state ``n = 1``.  ``X`` keeps the input rows (float64, shape
    ``(m, *input_shape)``) for layers whose first map needs more than the Gram matrix (a
    convolution's patch covariances); dense and activation layers do not read it.
    """

    K: np.ndarray
    diag: np.ndarray
    n: int = 1
    X: np.ndarray | None = None

    @classmethod
    def of_inputs(cls, X: np.ndarray) -> NNGPState:
        """The state of the input rows ``X`` (float64, (m, d) or (m, *input_shape))."""
        X = np.asarray(X, dtype=np.float64)
        flat = X.reshape(X.shape[0], -1)
        return cls(flat @ flat.T, np.einsum("ij,ij->i", flat, flat), flat.shape[1], X)


@runtime_checkable
class Layer(Protocol):
    """What every layer type implements (see the module docstring)."""

    kind: ClassVar[str]
    #: a hidden activation follows it when an architecture string is parsed (weighted layers)
    activated: ClassVar[bool]

    def out_shape(self, in_shape: Shape) -> Shape:
        """The output shape (without the row axis) for inputs of shape ``in_shape``."""

    def param_layout(self, in_shape: Shape) -> tuple[ParamBlock, ...]:
        """The parameter blocks in Philox draw order."""

    def forward(self, params: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
        """The reference output on the rows ``h`` (row axis first)."""

    def backward(self, params: Sequence[np.ndarray], h: np.ndarray, dout: np.ndarray,
                 input_grad: bool = True) -> tuple[np.ndarray | None, tuple[np.ndarray, ...]]:
        """``(error of the input or None, gradients of the blocks)`` from the output error ``dout``."""

    def nngp(self, state: NNGPState, in_shape: Shape) -> NNGPState:
        """The infinite-width covariance after the layer."""

    def token(self) -> str:
        """Its token in architecture strings ("" for none)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description with a ``"type"`` key."""


def _size(shape: Shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


@dataclass(frozen=True)
class Dense:
    """A fully connected layer ``z = W h + b`` (``W``: (units, fan_in)); its input is flattened.

    Parameters
    ----------
    units : int
        Output width.
    init : Init
        How ``W`` and ``b`` are drawn.

    Notes
    -----
    Draw order: ``W`` row-major (row ``j`` = the weights of unit ``j``), then ``b`` (if any).
    Forward (float32): ``z[r, j] = b[j]`` (or +0), then ``z = fma(h[r, k], W[j, k], z)`` for
    ``k = 0, 1, ...``.  Backward (float32, the trainers' order): ``gW[j, k] = fma(d[r, j], h[r, k],
    gW[j, k])`` over rows ``r`` in order from 0; ``gb[j] = gb[j] + d[r, j]``; the input's error
    ``e[r, k] = fma(d[r, j], W[j, k], e[r, k])`` over ``j`` in order from 0.
    NNGP: ``K' = s_b**2 + sigma_w**2 K / n`` (gaussian weights only).
    """

    units: int
    init: Init = Init()

    kind: ClassVar[str] = "dense"
    activated: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", check_width(self.units, "dense width"))
        if not isinstance(self.init, Init):
            raise ValueError(f"init must be an Init, got {type(self.init).__name__}")

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(units,)``."""
        return (self.units,)

    def param_layout(self, in_shape: Shape) -> tuple[ParamBlock, ...]:
        """``W`` (units, fan_in), then ``b`` (units,) when the init has biases."""
        fan_in = _size(in_shape)
        ws, bs = self.init.scales(fan_in)
        blocks = [ParamBlock("W", (self.units, fan_in), fan_in, ws, self.init.weights == "truncated_normal")]
        if self.init.bias:
            blocks.append(ParamBlock("b", (self.units,), fan_in, bs))
        return tuple(blocks)

    def forward(self, params: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
        """Pre-activations ``(N, units)`` of the rows ``h`` (float32: FMA rule; float64: unfused)."""
        h = h.reshape(h.shape[0], -1)
        dtype = h.dtype.type
        b = params[1].astype(dtype, copy=False) if len(params) > 1 else None
        return dense_preactivation(params[0].astype(dtype, copy=False), b, h)

    def backward(self, params: Sequence[np.ndarray], h: np.ndarray, dout: np.ndarray,
                 input_grad: bool = True) -> tuple[np.ndarray | None, tuple[np.ndarray, ...]]:
        """``(error of h or None, (gW, gb) or (gW,))`` in float32 (see the class notes)."""
        h = h.reshape(h.shape[0], -1)
        W = params[0]
        fo, fi = W.shape
        gW = np.zeros((fo, fi), F)
        gb = np.zeros(fo, F)
        for r in range(h.shape[0]):
            gW = fma32(dout[r][:, None], h[r][None, :], gW)
            gb = (gb + dout[r]).astype(F)
        grads = (gW, gb) if len(params) > 1 else (gW,)
        if not input_grad:
            return None, grads
        e = np.zeros((h.shape[0], fi), F)
        for j in range(fo):
            e = fma32(dout[:, j:j + 1], W[None, j, :], e)
        return e, grads

    def nngp(self, state: NNGPState, in_shape: Shape) -> NNGPState:
        """``s_b**2 + sigma_w**2 K / n``, exactly symmetric, with the exact diagonal."""
        if self.init.weights == "uniform":
            raise ValueError(
                "the NNGP kernel needs gaussian weights: with uniform weights the first layer's "
                "pre-activations are not Gaussian at any width"
            )
        bv = self.init.bias_var(_size(in_shape))
        sw2 = self.init.sigma_w**2
        K = bv + sw2 * state.K / state.n
        diag = bv + sw2 * state.diag / state.n
        K = 0.5 * (K + K.T)
        np.fill_diagonal(K, diag)
        return NNGPState(K, diag, 1)

    def token(self) -> str:
        """Its architecture-string token: the width."""
        return str(self.units)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (inverse: :func:`layer_from_dict`)."""
        return {"type": self.kind, "units": self.units, **self.init.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Dense:
        """Inverse of :meth:`to_dict`."""
        return cls(d["units"], Init(**{k: d[k] for k in Init.__dataclass_fields__ if k in d}))


@dataclass(frozen=True)
class Activation:
    """An elementwise activation (a row of :data:`fastpoly.activations.TABLE`); no parameters.

    Forward: float32 uses the trainers' operations where the table has them (relu: ``z < 0 ? 0 : z``,
    the compiled kernels' select), else the table's reference (``reference(z, dtype)``).  Backward:
    the table's :class:`~fastpoly.activations.TrainOps` (``ValueError`` for an activation no trainer
    supports).  NNGP: the table's map (``ValueError`` where there is no closed form).
    """

    name: str

    kind: ClassVar[str] = "activation"
    activated: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.name not in TABLE:
            raise ValueError(f"unknown activation {self.name!r}; valid: {', '.join(sorted(TABLE))}")

    def out_shape(self, in_shape: Shape) -> Shape:
        """The input's shape."""
        return tuple(in_shape)

    def param_layout(self, in_shape: Shape) -> tuple[ParamBlock, ...]:
        """No parameters."""
        return ()

    def forward(self, params: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
        """``phi(h)`` elementwise."""
        a = TABLE[self.name]
        if h.dtype == np.float32 and a.train is not None:
            return a.train.forward(h)
        return a.reference(h, h.dtype.type)

    def backward(self, params: Sequence[np.ndarray], h: np.ndarray, dout: np.ndarray,
                 input_grad: bool = True) -> tuple[np.ndarray | None, tuple[np.ndarray, ...]]:
        """``(phi'(h) dout, ())`` by the trainers' float32 operations."""
        a = check_supported(self.name, "train")
        assert a.train is not None
        return (a.train.backward(h, dout) if input_grad else None), ()

    def nngp(self, state: NNGPState, in_shape: Shape) -> NNGPState:
        """``E[phi(u) phi(u')]`` (the table's closed form)."""
        a = check_supported(self.name, "nngp")
        assert a.nngp is not None
        K, diag = (state.K, state.diag) if state.n == 1 else (state.K / state.n, state.diag / state.n)
        E, dE = a.nngp(K, diag)
        return NNGPState(E, dE, 1)

    def token(self) -> str:
        """Activations are not written in architecture strings (they follow the ``activation`` option)."""
        return ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description."""
        return {"type": self.kind, "name": self.name}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Activation:
        """Inverse of :meth:`to_dict`."""
        return cls(d["name"])


#: layer ``type`` -> class with ``from_dict`` (register new layer types here)
LAYER_TYPES: dict[str, Any] = {"dense": Dense, "activation": Activation}


def layer_from_dict(d: dict[str, Any]) -> Any:
    """Rebuild a layer from its ``to_dict()``."""
    try:
        cls = LAYER_TYPES[d["type"]]
    except (KeyError, TypeError):
        raise ValueError(f"unknown layer description {d!r}; types: {', '.join(LAYER_TYPES)}") from None
    return cls.from_dict(d)
