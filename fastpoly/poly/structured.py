"""Structured (sparse, layered) networks: the form compiled polynomial networks take and kernels evaluate.

A :class:`StructuredNetwork` is a list of :class:`SparseLayer` objects.  Layer
``l`` maps its input vector ``h`` (length ``fan_in``) to

* ``z[j] = bias[j] + sum_{p in indptr[j]..indptr[j+1]-1} data[p] * h[indices[p]]``
  (summed in storage order, starting from the bias), then
* ``out[j] = act(z[j])`` if ``shift is None``, else the *centered* form
  ``out[j] = act(shift[j] + z[j]) - act(shift[j])`` evaluated without
  cancellation (see :data:`CENTERED`).

Activation codes (:data:`STRUCT_CODES`) are shared with the Numba and CUDA
kernels.  The final layer normally has activation ``identity``.

Notes for kernel authors (compiled polynomial networks, :mod:`fastpoly.poly`)
--------------------------------------------------------------------------
* Hidden layers of a compiled network all use one activation: ``softplus``,
  ``exp``, ``silu``, ``gelu``, ``tanh``, ``sigmoid``, ``square`` or ``relu``; the last
  layer is ``identity``.  ``relu`` networks never have a ``shift``.
* ``centered=True`` networks set ``shift`` on every hidden layer (the gate's bias
  point b, per neuron) and then ``bias`` is 0 in practice; all of ``CENTERED`` may
  appear except ``relu``/``identity``.  Cancellation-free formulas (t = z):
  exp ``e^b expm1(t)``; softplus ``log1p(sigmoid(b) expm1(t))``; sigmoid
  ``sigmoid(b+t) sigmoid(-b) (-expm1(-t))``; tanh ``tanh t (1 - tanh^2 b) / (1 + tanh b tanh t)``;
  square ``t (2b + t)``; silu ``t sigmoid(b+t) + b (sigmoid(b+t) - sigmoid(b))`` with the
  sigmoid difference as above; gelu ``t Phi(b+t) + b (Phi(b+t) - Phi(b))`` with the
  Phi difference by 10-point Gauss-Legendre of the normal density over [b, b+t]
  when ``|t| <= 1`` (a plain difference otherwise).  (Changed: silu and gelu used
  the cancelling ``act(b+t) - act(b)`` before.)
* float32: weights, biases and shifts of compiled networks are float32-representable
  (stored exactly in float64).  The reference evaluates ``exp, log1p, expm1, tanh``
  in float32 and ``gelu`` / the centered gelu in float64 rounded once to float32
  (SciPy's ``ndtr``); kernels may use any implementation whose error is at most a
  few ulps (the certified bound of :mod:`fastpoly.poly.bounds` allows 8 ulps per
  activation).  Sums: ``z = bias; z += w*h`` in storage order, fused or not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastpoly.activations import CODES, TABLE
from fastpoly.network import LayerChain

__all__ = [
    "SparseLayer", "StructuredNetwork", "STRUCT_CODES", "ACT", "CENTERED", "evaluate_structured_reference",
]


def _sigmoid(z):
    return TABLE["sigmoid"].elementwise(z)


#: name -> elementwise function (NumPy reference, computed in the input's dtype), from the activation table
ACT = {n: a.elementwise for n, a in TABLE.items() if a.elementwise is not None}


def _c_exp(t, b):
    return np.exp(b) * np.expm1(t)


def _c_softplus(t, b):
    # softplus(b+t) - softplus(b) = log1p(sigmoid(b) * expm1(t))
    return np.log1p(_sigmoid(b) * np.expm1(t))


def _c_tanh(t, b):
    tb, tt = np.tanh(b), np.tanh(t)
    return tt * (1 - tb * tb) / (1 + tb * tt)


def _c_sigmoid(t, b):
    # sigmoid(b+t) - sigmoid(b) = sigmoid(b+t) * (1 - sigmoid(b)) * (-expm1(-t))
    return _sigmoid(b + t) * _sigmoid(-b) * (-np.expm1(-t))


def _c_square(t, b):
    return t * (2 * b + t)


def _c_generic(name):
    f = ACT[name]
    return lambda t, b: f(b + t) - f(b)


def _c_silu(t, b):
    # silu(b+t) - silu(b) = t*sigmoid(b+t) + b*(sigmoid(b+t) - sigmoid(b))
    return t * _sigmoid(b + t) + b * _c_sigmoid(t, b)


#: 10-point Gauss-Legendre nodes / weights on [-1, 1] (for the centered GELU)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(10)


def _c_ndtr(t, b):
    """Phi(b+t) - Phi(b) without cancellation: Gauss-Legendre for |t| <= 1, else a difference."""
    from scipy.special import ndtr

    t64 = np.asarray(t, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    t64, b64 = np.broadcast_arrays(t64, b64)
    half = 0.5 * t64
    mid = b64 + half
    quad = np.zeros(t64.shape)
    for x, w in zip(_GL_X, _GL_W):
        s = mid + half * x
        quad += w * np.exp(-0.5 * s * s)
    quad *= half / np.sqrt(2 * np.pi)
    direct = ndtr(b64 + t64) - ndtr(b64)
    return np.where(np.abs(t64) <= 1.0, quad, direct)


def _c_gelu(t, b):
    # gelu(b+t) - gelu(b) = t*Phi(b+t) + b*(Phi(b+t) - Phi(b)); evaluated in float64
    from scipy.special import ndtr

    t64 = np.asarray(t, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    return t64 * ndtr(b64 + t64) + b64 * _c_ndtr(t64, b64)


#: name -> f(t, b) = act(b + t) - act(b), computed without catastrophic cancellation where a formula exists
CENTERED = {
    "identity": lambda t, b: t,
    "relu": _c_generic("relu"),
    "square": _c_square,
    "softplus": _c_softplus,
    "exp": _c_exp,
    "sigmoid": _c_sigmoid,
    "tanh": _c_tanh,
    "silu": _c_silu,
    "gelu": _c_gelu,
}

#: activation name -> integer code used by compiled kernels (:data:`fastpoly.activations.CODES`)
STRUCT_CODES = {name: CODES[name] for name in ACT}


@dataclass
class SparseLayer:
    """One sparse layer in CSR form (rows = output neurons), see the module docstring."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    bias: np.ndarray
    activation: str = "identity"
    shift: np.ndarray | None = None
    fan_in: int = -1

    def __post_init__(self):
        self.indptr = np.ascontiguousarray(self.indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(self.indices, dtype=np.int64)
        self.data = np.ascontiguousarray(self.data, dtype=np.float64)
        self.bias = np.ascontiguousarray(self.bias, dtype=np.float64)
        if self.activation not in ACT:
            raise ValueError(f"unknown structured activation {self.activation!r}; valid: {', '.join(ACT)}")
        n = self.bias.shape[0]
        if self.indptr.shape != (n + 1,) or self.indptr[0] != 0 or self.indptr[-1] != self.data.size:
            raise ValueError("inconsistent CSR indptr")
        if self.indices.shape != self.data.shape:
            raise ValueError("CSR indices and data differ in length")
        if self.fan_in < 0:
            self.fan_in = int(self.indices.max()) + 1 if self.indices.size else 0
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= self.fan_in):
            raise ValueError("CSR column index out of range")
        if self.shift is not None:
            self.shift = np.ascontiguousarray(self.shift, dtype=np.float64)
            if self.shift.shape != (n,):
                raise ValueError("shift must have one value per neuron")

    @property
    def fan_out(self):
        """Outputs of the layer."""
        return self.bias.shape[0]

    @property
    def nnz(self):
        """Number of stored (nonzero) weights."""
        return int(self.data.size)

    @classmethod
    def from_dense(cls, W, b, activation="identity", shift=None):
        """CSR layer from a dense ``(fan_out, fan_in)`` matrix (zeros dropped, column order kept)."""
        W = np.asarray(W, dtype=np.float64)
        rows, cols = np.nonzero(W)
        indptr = np.zeros(W.shape[0] + 1, np.int64)
        np.add.at(indptr, rows + 1, 1)
        return cls(np.cumsum(indptr), cols, W[rows, cols], b, activation, shift, W.shape[1])

    def to_dense(self):
        """``(W, b)`` dense float64 arrays (the centered shift is *not* folded in)."""
        W = np.zeros((self.fan_out, self.fan_in))
        rows = np.repeat(np.arange(self.fan_out), np.diff(self.indptr))
        W[rows, self.indices] = self.data
        return W, self.bias.copy()


@dataclass
class StructuredNetwork(LayerChain):
    """A list of :class:`SparseLayer` objects with matching widths."""

    layers: list

    def __post_init__(self):
        self._check_chain()


def evaluate_structured_reference(snet, X, dtype=np.float64):
    """NumPy reference: outputs ``(N, n_outputs)`` of a :class:`StructuredNetwork` in ``dtype``.

    Sums run in CSR storage order starting from the bias, unfused multiply-add
    (``z = z + w*h``) in ``dtype``.  (Internally feature-major, ``(width, N)``, so that
    gathering a neuron's inputs reads contiguous rows; the arithmetic is unchanged.)
    """
    dtype = np.dtype(dtype).type
    h = np.ascontiguousarray(np.asarray(X, dtype=dtype).T)
    n = h.shape[1]
    for L in snet.layers:
        z = np.empty((L.fan_out, n), dtype=dtype)
        z[...] = L.bias.astype(dtype)[:, None]
        data = L.data.astype(dtype)
        counts = np.diff(L.indptr)
        # process the p-th nonzero of every row together (keeps per-row storage order)
        for p in range(int(counts.max()) if counts.size else 0):
            rows = np.flatnonzero(counts > p)
            pos = L.indptr[rows] + p
            if rows.size == L.fan_out:
                z += data[pos][:, None] * h[L.indices[pos]]
            else:
                z[rows] += data[pos][:, None] * h[L.indices[pos]]
        if L.shift is None:
            h = np.asarray(ACT[L.activation](z)).astype(dtype, copy=False)
        else:
            h = np.asarray(CENTERED[L.activation](z, L.shift.astype(dtype)[:, None])).astype(dtype, copy=False)
    return np.ascontiguousarray(h.T)
