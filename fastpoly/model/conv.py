"""Spatial layers of the network model: 2-D convolution, average / max / global pooling, flatten.

Images are rows of shape ``(H, W, C)`` (a row axis first: ``(N, H, W, C)``); flat rows
``(N, H*W*C)`` in row-major H, W, C order are the same images (:class:`~fastpoly.model.Architecture`
reshapes its input rows to ``(N, *input_shape)`` before the first layer).

Conventions (every backend follows them bit for bit, ``docs/guide/cnn.md``):

* **Conv2D** ``c{F}k{K}[s{S}][p]``: ``F`` filters of ``K x K``, stride ``S``, padding "valid"
  (output ``floor((H - K) / S) + 1``) or "same" (output ``ceil(H / S)``; TensorFlow's rule:
  ``total = max((ceil(H / S) - 1) * S + K - H, 0)`` zeros, ``total // 2`` before, the rest after).
  Parameters ``W`` (F, K, K, C_in) row-major (the fan-in index is ``(kh, kw, c_in)`` row-major),
  then ``b`` (F,), drawn like a dense layer's (fan_in = K*K*C_in).  The pre-activation at output
  ``(i, j, f)`` is the dense reference (:func:`fastpoly.network.dense_preactivation`) on the patch:
  ``z = b[f]`` (or +0), then ``z = fma(x[i*S + kh - pad, j*S + kw - pad, c], W[f, kh, kw, c], z)``
  for ``(kh, kw, c)`` row-major -- **padding zeros included as zeros** (``fma(0, w, z)``).
* **AvgPool** ``ap{K}``: ``K x K`` windows, stride ``K``, valid; float32 ``s = 0``, ``s = s + x`` in
  ``(kh, kw)`` row-major order, then ``s / float32(K*K)`` (one correctly rounded division).
* **MaxPool** ``mp{K}``: ``K x K``, stride ``K``, valid; the maximum in row-major order (backward:
  the error goes to the first maximal position in row-major order).
* **GlobalAvgPool** ``gap``: per channel the float32 sum over ``(h, w)`` row-major from 0, then
  ``/ float32(H*W)``; output ``(C,)``.
* **Flatten**: ``(H, W, C)`` row-major to ``(H*W*C,)``; implied (inserted by the parser and
  :func:`CNN`) before the first dense layer after spatial layers.

NNGP maps delegate to :mod:`fastpoly.model.nngp_conv` (imported lazily); max pooling has no
closed-form map.
"""
from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fastpoly.model.layers import LAYER_TYPES, Init, NNGPState, ParamBlock, check_width
from fastpoly.network import dense_preactivation
from fastpoly.stream.fmath import fma32

__all__ = ["AvgPool", "Conv2D", "Flatten", "GlobalAvgPool", "MaxPool", "PADDINGS", "conv_geometry", "patches"]

F = np.float32
Shape = tuple[int, ...]
PADDINGS = ("valid", "same")


def _image_shape(in_shape: Shape, what: str) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise ValueError(f"{what} needs image inputs (H, W, C), got shape {tuple(in_shape)}")
    return int(in_shape[0]), int(in_shape[1]), int(in_shape[2])


def conv_geometry(n: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """``(output size, zeros before)`` along one axis of length ``n`` (kernel ``k``, stride ``s``).

    "valid": ``floor((n - k) / s) + 1`` (``ValueError`` if ``k > n``), no padding; "same":
    ``ceil(n / s)``, ``total = max((ceil(n/s) - 1) * s + k - n, 0)`` zeros, ``total // 2`` before.
    """
    if padding == "valid":
        if k > n:
            raise ValueError(f"a {k}x{k} 'valid' convolution does not fit an input of size {n}")
        return (n - k) // s + 1, 0
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2


def _as_images(h: np.ndarray, what: str) -> np.ndarray:
    if h.ndim != 4:
        raise ValueError(f"{what} needs rows of images (N, H, W, C), got shape {h.shape}")
    return h


def patches(layer: Conv2D, h: np.ndarray) -> np.ndarray:
    """The patches ``(N, Ho, Wo, K*K*C)`` of the images ``h`` (padding zeros included), fan-in order."""
    h = _as_images(h, "Conv2D")
    N, H, W, C = h.shape
    K, S = layer.kernel, layer.stride
    Ho, ph = conv_geometry(H, K, S, layer.padding)
    Wo, pw = conv_geometry(W, K, S, layer.padding)
    Hp = max(H + ph, (Ho - 1) * S + K)
    Wp = max(W + pw, (Wo - 1) * S + K)
    xp = np.zeros((N, Hp, Wp, C), h.dtype)
    xp[:, ph:ph + H, pw:pw + W, :] = h
    out = np.empty((N, Ho, Wo, K, K, C), h.dtype)
    for kh in range(K):
        for kw in range(K):
            out[:, :, :, kh, kw, :] = xp[:, kh:kh + S * (Ho - 1) + 1:S, kw:kw + S * (Wo - 1) + 1:S, :]
    return out.reshape(N, Ho, Wo, K * K * C)


def _check_k(k: Any, what: str) -> int:
    return check_width(k, what)


@dataclass(frozen=True)
class Conv2D:
    """A 2-D convolution: ``filters`` filters of ``kernel x kernel``, ``stride``, "valid"/"same" padding.

    Parameters
    ----------
    filters, kernel : int
        Output channels ``F`` and the kernel size ``K``.
    stride : int
        Stride ``S`` (both axes).
    padding : {"valid", "same"}
        TensorFlow's rules (module docstring).
    init : Init
        How ``W`` and ``b`` are drawn (fan_in = K*K*C_in).

    Notes
    -----
    Draw order: ``W`` (F, K, K, C_in) row-major, then ``b`` (F,).  Forward: the dense reference on
    each patch (fan-in order ``(kh, kw, c)``, padding zeros included).  Backward (float32):
    ``gW[f, q] = fma(d[r, f], patch[r, q], gW[f, q])`` over the positions ``r = (n, i, j)`` in
    row-major order; ``gb[f] = gb[f] + d[r, f]`` in the same order; the input's error: for
    ``(kh, kw)`` row-major, for ``f = 0, 1, ...``: ``e[n, i*S+kh-pad, j*S+kw-pad, c] =
    fma(d[n, i, j, f], W[f, kh, kw, c], e[...])`` (errors landing in the padding are dropped).
    """

    filters: int
    kernel: int
    stride: int = 1
    padding: str = "valid"
    init: Init = Init()

    kind: ClassVar[str] = "conv2d"
    activated: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", check_width(self.filters, "conv filters"))
        object.__setattr__(self, "kernel", _check_k(self.kernel, "conv kernel size"))
        object.__setattr__(self, "stride", _check_k(self.stride, "conv stride"))
        if self.padding not in PADDINGS:
            raise ValueError(f"unknown padding {self.padding!r}; valid: {', '.join(PADDINGS)}")
        if not isinstance(self.init, Init):
            raise ValueError(f"init must be an Init, got {type(self.init).__name__}")

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(Ho, Wo, filters)``."""
        H, W, _ = _image_shape(in_shape, "a convolution")
        Ho, _ = conv_geometry(H, self.kernel, self.stride, self.padding)
        Wo, _ = conv_geometry(W, self.kernel, self.stride, self.padding)
        return (Ho, Wo, self.filters)

    def padding_before(self, in_shape: Shape) -> tuple[int, int]:
        """Zeros before the image along H and W."""
        H, W, _ = _image_shape(in_shape, "a convolution")
        return (conv_geometry(H, self.kernel, self.stride, self.padding)[1],
                conv_geometry(W, self.kernel, self.stride, self.padding)[1])

    def fan_in(self, in_shape: Shape) -> int:
        """``K * K * C_in``."""
        return self.kernel * self.kernel * _image_shape(in_shape, "a convolution")[2]

    def param_layout(self, in_shape: Shape) -> tuple[ParamBlock, ...]:
        """``W`` (F, K, K, C_in), then ``b`` (F,) when the init has biases."""
        C = _image_shape(in_shape, "a convolution")[2]
        fan_in = self.fan_in(in_shape)
        ws, bs = self.init.scales(fan_in)
        blocks = [ParamBlock("W", (self.filters, self.kernel, self.kernel, C), fan_in, ws,
                             self.init.weights == "truncated_normal")]
        if self.init.bias:
            blocks.append(ParamBlock("b", (self.filters,), fan_in, bs))
        return tuple(blocks)

    def forward(self, params: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
        """Pre-activations ``(N, Ho, Wo, F)`` (float32: FMA rule; float64: unfused)."""
        P = patches(self, h)
        N, Ho, Wo, q = P.shape
        dtype = h.dtype.type
        W = params[0].reshape(self.filters, q).astype(dtype, copy=False)
        b = params[1].astype(dtype, copy=False) if len(params) > 1 else None
        return dense_preactivation(W, b, P.reshape(-1, q)).reshape(N, Ho, Wo, self.filters)

    def backward(self, params: Sequence[np.ndarray], h: np.ndarray, dout: np.ndarray,
                 input_grad: bool = True) -> tuple[np.ndarray | None, tuple[np.ndarray, ...]]:
        """``(error of h or None, (gW, gb) or (gW,))`` in float32 (see the class notes)."""
        h = _as_images(h, "Conv2D")
        N, H, Wd, C = h.shape
        K, S, Fo = self.kernel, self.stride, self.filters
        P = patches(self, h.astype(F, copy=False))
        Ho, Wo, q = P.shape[1:]
        d = np.asarray(dout, F).reshape(N * Ho * Wo, Fo)
        P = P.reshape(-1, q)
        gW = np.zeros((Fo, q), F)
        gb = np.zeros(Fo, F)
        for r in range(P.shape[0]):
            gW = fma32(d[r][:, None], P[r][None, :], gW)
            gb = np.asarray(gb + d[r], F)
        grads = (gW.reshape(params[0].shape), gb) if len(params) > 1 else (gW.reshape(params[0].shape),)
        if not input_grad:
            return None, grads
        ph, pw = self.padding_before((H, Wd, C))
        Hp = max(H + ph, (Ho - 1) * S + K)
        Wp = max(Wd + pw, (Wo - 1) * S + K)
        e = np.zeros((N, Hp, Wp, C), F)
        d4 = d.reshape(N, Ho, Wo, Fo)
        Wt = np.asarray(params[0], F)
        for kh in range(K):
            for kw in range(K):
                sl = (slice(None), slice(kh, kh + S * (Ho - 1) + 1, S), slice(kw, kw + S * (Wo - 1) + 1, S),
                      slice(None))
                acc = e[sl]
                for f in range(Fo):
                    acc = fma32(d4[:, :, :, f:f + 1], Wt[f, kh, kw][None, None, None, :], acc)
                e[sl] = acc
        return np.ascontiguousarray(e[:, ph:ph + H, pw:pw + Wd, :]), grads

    def nngp(self, state: NNGPState, in_shape: Shape) -> NNGPState:
        """Delegates to :func:`fastpoly.model.nngp_conv.conv2d_nngp`."""
        nngp_conv = importlib.import_module("fastpoly.model.nngp_conv")  # the NNGP maps (lazy)
        return nngp_conv.conv2d_nngp(self, state)

    def token(self) -> str:
        """``c{F}k{K}[s{S}][p]``."""
        return (f"c{self.filters}k{self.kernel}" + (f"s{self.stride}" if self.stride != 1 else "")
                + ("p" if self.padding == "same" else ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description."""
        return {"type": self.kind, "filters": self.filters, "kernel": self.kernel, "stride": self.stride,
                "padding": self.padding, **self.init.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Conv2D:
        """Inverse of :meth:`to_dict`."""
        return cls(d["filters"], d["kernel"], d.get("stride", 1), d.get("padding", "valid"),
                   Init(**{k: d[k] for k in Init.__dataclass_fields__ if k in d}))


class _Parameterless:
    """Shared parts of the layers without parameters."""

    activated: ClassVar[bool] = False
    kind: ClassVar[str]

    def param_layout(self, in_shape: Shape) -> tuple[ParamBlock, ...]:
        """No parameters."""
        return ()


@dataclass(frozen=True)
class AvgPool(_Parameterless):
    """``K x K`` average pooling, stride ``K``, "valid" (module docstring for the float32 order)."""

    size: int

    kind: ClassVar[str] = "avgpool"

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", check_width(self.size, "pooling size"))

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(H // K, W // K, C)``."""
        H, W, C = _image_shape(in_shape, "average pooling")
        if self.size > min(H, W):
            raise ValueError(f"{self.size}x{self.size} pooling does not fit an input of {H}x{W}")
        return (H // self.size, W // self.size, C)

    def forward(self, params: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
        """``sum / K*K`` per window (float32: sums in row-major order from 0, one division)."""
        h = _as_images(h, "AvgPool")
        K = self.size
        Ho, Wo = h.shape[1] // K, h.shape[2] // K
        dtype = h.dtype.type
        s = np.zeros((h.shape[0], Ho, Wo, h.shape[3]), dtype)
        for kh in range(K):
            for kw in range(K):
                s = (s + h[:, kh:kh + K * Ho:K, kw:kw + K * Wo:K, :]).astype(dtype)
        return (s / dtype(K * K)).astype(dtype)

    def backward(self, params: Sequence[np.ndarray], h: np.ndarray, dout: np.ndarray,
                 input_grad: bool = True) -> tuple[np.ndarray | None, tuple[np.ndarray, ...]]:
        """``e = d / float32(K*K)`` on every position of its window (0 outside every window)."""
        if not input_grad:
            return None, ()
        h = _as_images(h, "AvgPool")
        K = self.size
        Ho, Wo = h.shape[1] // K, h.shape[2] // K
        e = np.zeros(h.shape, F)
        g = (np.asarray(dout, F).reshape(h.shape[0], Ho, Wo, h.shape[3]) / F(K * K)).astype(F)
        for kh in range(K):
            for kw in range(K):
                e[:, kh:kh + K * Ho:K, kw:kw + K * Wo:K, :] = g
        return e, ()

    def nngp(self, state: NNGPState, in_shape: Shape) -> NNGPState:
        """Delegates to :func:`fastpoly.model.nngp_conv.avgpool_nngp`."""
        nngp_conv = importlib.import_module("fastpoly.model.nngp_conv")  # the NNGP maps (lazy)
        return nngp_conv.avgpool_nngp(self, state)

    def token(self) -> str:
        """``ap{K}``."""
        return f"ap{self.size}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description."""
        return {"type": self.kind, "size": self.size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AvgPool:
        """Inverse of :meth:`to_dict`."""
        return cls(d["size"])


@dataclass(frozen=True)
class MaxPool(_Parameterless):
    """``K x K`` max pooling, stride ``K``, "valid"; no NNGP map (sampling and training only)."""

    size: int

    kind: ClassVar[str] = "maxpool"

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", check_width(self.size, "pooling size"))

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(H // K, W // K, C)``."""
        H, W, C = _image_shape(in_shape, "max pooling")
        if self.size > min(H, W):
            raise ValueError(f"{self.size}x{self.size} pooling does not fit an input of {H}x{W}")
        return (H // self.size, W // self.size, C)

    def _windows(self, h: np.ndarray) -> np.ndarray:
        K = self.size
        Ho, Wo = h.shape[1] // K, h.shape[2] // K
        return np.stack([h[:, kh:kh + K * Ho:K, kw:kw + K * Wo:K, :] for kh in range(K) for kw in range(K)])

    def forward(self, params: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
        """The window maxima (``m = x[0]``, ``m = x if x > m else m`` in row-major order)."""
        win = self._windows(_as_images(h, "MaxPool"))
        m = win[0].copy()
        for w in win[1:]:
            m = np.where(w > m, w, m)
        return m

    def backward(self, params: Sequence[np.ndarray], h: np.ndarray, dout: np.ndarray,
                 input_grad: bool = True) -> tuple[np.ndarray | None, tuple[np.ndarray, ...]]:
        """The error goes to the first maximal position of each window (row-major), 0 elsewhere."""
        if not input_grad:
            return None, ()
        h = _as_images(h, "MaxPool")
        K = self.size
        win = self._windows(h)
        Ho, Wo = win.shape[2], win.shape[3]
        m = win[0].copy()
        arg = np.zeros(m.shape, np.int64)
        for t in range(1, win.shape[0]):
            gt = win[t] > m
            m = np.where(gt, win[t], m)
            arg = np.where(gt, t, arg)
        d = np.asarray(dout, F).reshape(m.shape)
        e = np.zeros(h.shape, F)
        for t in range(win.shape[0]):
            kh, kw = divmod(t, K)
            e[:, kh:kh + K * Ho:K, kw:kw + K * Wo:K, :] = np.where(arg == t, d, F(0))
        return e, ()

    def nngp(self, state: NNGPState, in_shape: Shape) -> NNGPState:
        """Raises: max pooling has no closed-form NNGP map."""
        raise NotImplementedError(
            "max pooling has no closed-form NNGP map (the max of correlated Gaussians is not Gaussian); "
            "use average pooling (ap{K}) or global average pooling (gap) for NNGP kernels"
        )

    def token(self) -> str:
        """``mp{K}``."""
        return f"mp{self.size}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description."""
        return {"type": self.kind, "size": self.size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MaxPool:
        """Inverse of :meth:`to_dict`."""
        return cls(d["size"])


@dataclass(frozen=True)
class GlobalAvgPool(_Parameterless):
    """Global average pooling: per channel ``sum over (h, w) row-major from 0, / float32(H*W)``; output ``(C,)``."""

    kind: ClassVar[str] = "gap"

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(C,)``."""
        return (_image_shape(in_shape, "global average pooling")[2],)

    def forward(self, params: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
        """The channel means ``(N, C)``."""
        h = _as_images(h, "GlobalAvgPool")
        dtype = h.dtype.type
        s = np.zeros((h.shape[0], h.shape[3]), dtype)
        for i in range(h.shape[1]):
            for j in range(h.shape[2]):
                s = (s + h[:, i, j, :]).astype(dtype)
        return (s / dtype(h.shape[1] * h.shape[2])).astype(dtype)

    def backward(self, params: Sequence[np.ndarray], h: np.ndarray, dout: np.ndarray,
                 input_grad: bool = True) -> tuple[np.ndarray | None, tuple[np.ndarray, ...]]:
        """``e[n, h, w, c] = d[n, c] / float32(H*W)``."""
        if not input_grad:
            return None, ()
        h = _as_images(h, "GlobalAvgPool")
        g = (np.asarray(dout, F).reshape(h.shape[0], 1, 1, h.shape[3]) / F(h.shape[1] * h.shape[2])).astype(F)
        return np.ascontiguousarray(np.broadcast_to(g, h.shape)), ()

    def nngp(self, state: NNGPState, in_shape: Shape) -> NNGPState:
        """Delegates to :func:`fastpoly.model.nngp_conv.gap_nngp`."""
        nngp_conv = importlib.import_module("fastpoly.model.nngp_conv")  # the NNGP maps (lazy)
        return nngp_conv.gap_nngp(self, state)

    def token(self) -> str:
        """``gap``."""
        return "gap"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description."""
        return {"type": self.kind}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GlobalAvgPool:
        """Inverse of :meth:`to_dict`."""
        return cls()


@dataclass(frozen=True)
class Flatten(_Parameterless):
    """``(H, W, C)`` row-major to ``(H*W*C,)``; written implicitly in architecture strings."""

    kind: ClassVar[str] = "flatten"

    def out_shape(self, in_shape: Shape) -> Shape:
        """``(prod(in_shape),)``."""
        return (int(math.prod(in_shape)),)

    def forward(self, params: Sequence[np.ndarray], h: np.ndarray) -> np.ndarray:
        """The rows flattened (row-major)."""
        return h.reshape(h.shape[0], -1)

    def backward(self, params: Sequence[np.ndarray], h: np.ndarray, dout: np.ndarray,
                 input_grad: bool = True) -> tuple[np.ndarray | None, tuple[np.ndarray, ...]]:
        """The error reshaped to the input's shape."""
        return (np.asarray(dout, F).reshape(h.shape) if input_grad else None), ()

    def nngp(self, state: NNGPState, in_shape: Shape) -> NNGPState:
        """The flattened covariance: :func:`fastpoly.model.nngp_conv.flatten_nngp`.

        On the input rows (their Gram matrix is already flat) it is the identity.
        """
        if (state.X is not None and tuple(state.X.shape[1:]) == tuple(in_shape) and state.n == int(math.prod(in_shape))
                and state.K.ndim == 2):
            return state
        nngp_conv = importlib.import_module("fastpoly.model.nngp_conv")  # the NNGP maps (lazy)
        return nngp_conv.flatten_nngp(self, state)

    def token(self) -> str:
        """Implied: ``""``."""
        return ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description."""
        return {"type": self.kind}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Flatten:
        """Inverse of :meth:`to_dict`."""
        return cls()


LAYER_TYPES.update({c.kind: c for c in (Conv2D, AvgPool, MaxPool, GlobalAvgPool, Flatten)})
