"""NNGP maps of convolutional networks: the spatial covariance state and the layers' maps on it.

As the channel counts grow, the pre-activations of a CNN with ``W ~ N(0, sigma_w**2 / (k*k*C_in))``
and ``b ~ N(0, s_b**2)`` are a Gaussian process, independent across channels (Garriga-Alonso et
al., ICLR 2019; Novak et al., ICLR 2019).  The state of one channel between the rows ``a`` (a
block ``A`` of inputs) and ``b`` (a block ``B``) is :class:`ConvNNGPState`: for positions ``p, q``
of the current ``H x W`` grid

* ``mode="full"``: ``K[a, b, p, q]`` (shape ``(mA, mB, H, W, H, W)``), the full spatial covariance,
  needed when average pooling (``ap{K}``) or global average pooling (``gap``) follows;
* ``mode="diag"``: ``K[a, b, p] = K[a, b, p, p]`` (``(mA, mB, H, W)``): the same-location
  covariances, all a flatten + dense readout needs (a convolution's map of the diagonal reads only
  the diagonal, because the weights of different kernel offsets are independent);
* ``mode="flat"``: ``K[a, b]`` after flatten / global pooling (``(mA, mB)``), for the dense tail,

plus the self covariances ``va`` (``(mA, *spatial)``) and ``vb`` of the two blocks (``vb=None``:
``B`` is ``A`` and ``K`` is square), which the nonlinear maps need for their variances.

The maps (float64, ``c = sigma_w**2``; ``s_b**2`` the bias variance, ``sigma_b**2`` or
``sigma_b**2 / fan_in`` with ``bias_scaling="fan_in"``, 0 without biases):

* input ``x`` (H, W, C): ``K0[a, b, p, q] = sum_c x_a[p, c] x_b[q, c] / C``;
* Conv2D ``k x k``, stride ``S``, padding: ``K'[o, o'] = s_b**2 + c / k**2 sum_delta Kpad[S o + delta,
  S o' + delta]`` over the ``k*k`` offsets ``delta``, ``Kpad`` the state with zero rows/columns at
  the padding positions (the network pads its inputs with zeros, which contribute 0);
* activation: ``E[phi(u) phi(v)]``, ``(u, v) ~ N(0, [[Va(p, p), K(p, q)], [K(p, q), Vb(q, q)]])``
  (relu: arc-cosine kernel; erf: Williams' arcsin; sign; identity), with the exact diagonal;
* AvgPool ``k``: the mean of ``K[p, q]`` over the windows of ``p`` and ``q`` (linear, full mode);
* GlobalAvgPool: ``K[a, b] = mean_{p, q} K[a, b, p, q]``;
* Flatten: ``K[a, b] = mean_p K[a, b, p, p]`` (a dense layer of fan-in ``H*W*C`` then gives
  ``s_b**2 + c * mean_p K[p, p]``: the readout averages the same-location covariances);
* Dense: ``s_b**2 + c K``; MaxPool: no closed form (``NotImplementedError``, raised by the layer).

Cost and memory per pair of inputs (``P = H*W`` positions, ``L`` layers): diag mode
``O(P k**2 L)`` time and ``P`` floats; full mode ``O(P**2 k**2 L)`` time and ``P**2`` floats.
:func:`conv_kernel` works on blocks of pairs so the working set stays below ``max_bytes`` (default
512 MiB) whatever ``m``: for ``m = 1000`` 8x8 images the output kernel (8 MB) plus one block.

``variant="nn-pacbayes"`` reproduces the analytic kernel the anchor (nn-pacbayes, calling
Garriga-Alonso's ``DeepKernel``) computes for its CNNs: pooling layers are ignored (average and
max pooling are skipped, global pooling acts as a flatten) and every convolution tap has variance
``sigma_w**2`` (weight variance ``sigma_w**2 / C_in``, the map ``s_b**2 + c sum_delta K``) instead of the
network's ``sigma_w**2 / (k*k*C_in)``.  It is the kernel of a different network; fastpoly's
default follows the network it describes (``docs/guide/cnn-gp.md``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from fastpoly.activations import check_supported
from fastpoly.model.layers import NNGPState

__all__ = [
    "VARIANTS", "ConvNNGPState", "avgpool_nngp", "conv2d_nngp", "conv_kernel", "flatten_nngp", "gap_nngp",
    "is_spatial", "pair_floats",
]

Shape = tuple[int, ...]
Array = np.ndarray

#: kernel variants: the network's own kernel, or the anchor's analytic CNN kernel
VARIANTS = ("fastpoly", "nn-pacbayes")

_UNIFORM = ("the NNGP kernel needs gaussian weights: with uniform weights the first layer's "
            "pre-activations are not Gaussian at any width")

#: layer kinds that make an architecture need this module's kernel
SPATIAL_KINDS = ("conv2d", "avgpool", "maxpool", "gap", "flatten")


def _check_variant(variant: Any) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown kernel variant {variant!r}; valid: {', '.join(VARIANTS)}")
    return str(variant)


# --- activation maps on broadcast variances ----------------------------------------------------------
def _corr(K: Array, vx: Array, vy: Array) -> tuple[Array, Array, Array]:
    norm = np.sqrt(vx * vy)
    pos = norm > 0
    rho = np.zeros(np.broadcast_shapes(K.shape, norm.shape))
    np.divide(K, norm, out=rho, where=pos)
    np.clip(rho, -1.0, 1.0, out=rho)
    return np.broadcast_to(norm, rho.shape), np.broadcast_to(pos, rho.shape), rho


def _relu(K: Array, vx: Array, vy: Array) -> Array:
    norm, _, rho = _corr(K, vx, vy)
    t = np.arccos(rho)
    return norm * (np.sin(t) + (math.pi - t) * rho) / (2.0 * math.pi)


def _relu_self(v: Array) -> Array:
    return v / 2.0


def _erf(K: Array, vx: Array, vy: Array) -> Array:
    arg = np.clip(2.0 * K / np.sqrt((1.0 + 2.0 * vx) * (1.0 + 2.0 * vy)), -1.0, 1.0)
    return (2.0 / math.pi) * np.arcsin(arg)


def _erf_self(v: Array) -> Array:
    return (2.0 / math.pi) * np.arcsin(2.0 * v / (1.0 + 2.0 * v))


def _sign(K: Array, vx: Array, vy: Array) -> Array:
    _, pos, rho = _corr(K, vx, vy)
    return np.where(pos, (2.0 / math.pi) * np.arcsin(rho), 0.0)


def _sign_self(v: Array) -> Array:
    return (v > 0).astype(np.float64)


def _identity(K: Array, vx: Array, vy: Array) -> Array:
    return K


def _identity_self(v: Array) -> Array:
    return v


#: activation -> (cross map ``(K, var_x, var_y)``, self-variance map): the closed forms of
#: :mod:`fastpoly.activations` (same formulas) on broadcast variances
_MAPS = {
    "relu": (_relu, _relu_self),
    "erf": (_erf, _erf_self),
    "sign": (_sign, _sign_self),
    "identity": (_identity, _identity_self),
}


def _self_diag(v: Array, mode: str) -> Array:
    """The variances ``V[p, p]`` of a self state ``v`` ((m, *spatial)) as (m, H, W) or (m,)."""
    if mode == "full":
        m, H, W = v.shape[:3]
        return np.ascontiguousarray(v.reshape(m, H * W, H * W).diagonal(axis1=1, axis2=2)).reshape(m, H, W)
    return v


def _geometry(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """``(output size, zeros before, padded length)`` along one axis (the Conv2D rule, docs/guide/cnn.md)."""
    if padding == "valid":
        if k > n:
            raise ValueError(f"a {k}x{k} 'valid' convolution does not fit an input of size {n}")
        out, before = (n - k) // s + 1, 0
    else:
        out = -(-n // s)
        before = max((out - 1) * s + k - n, 0) // 2
    return out, before, max(n + before, (out - 1) * s + k)


class ConvNNGPState(NamedTuple):
    """The per-channel covariance state of a convolutional network between two blocks of rows.

    Attributes
    ----------
    K : numpy.ndarray of float64
        ``(mA, mB, H, W, H, W)`` (full), ``(mA, mB, H, W)`` (diag) or ``(mA, mB)`` (flat).
    va, vb : numpy.ndarray or None
        The self states of the two blocks, ``(m, H, W, H, W)`` / ``(m, H, W)`` / ``(m,)``
        (full / diag / flat); ``vb=None``: the second block is the first.
    mode : {"full", "diag", "flat"}
        What ``K`` holds (module docstring).
    variant : {"fastpoly", "nn-pacbayes"}
        Whose kernel is computed (module docstring).
    channels : int
        Channels of the layer output it describes (they set the fan-in of the next convolution's
        ``bias_scaling="fan_in"`` bias); the covariance is the same for every channel.
    n : int
        Always 1 (per-channel normalisation), as :class:`~fastpoly.model.layers.NNGPState` after a layer.
    X : None
        Always None (an :class:`~fastpoly.model.layers.NNGPState` field: no input rows kept).
    """

    K: Array
    va: Array
    vb: Array | None
    mode: str
    variant: str = "fastpoly"
    channels: int = 1
    n: int = 1
    X: None = None

    @property
    def diag(self) -> Array:
        """The self variances of block A (flat mode: ``(mA,)``)."""
        return _self_diag(self.va, self.mode)

    @classmethod
    def of_images(cls, XA: Array, XB: Array | None, mode: str, variant: str = "fastpoly") -> ConvNNGPState:
        """The input state of images ``XA`` ((mA, H, W, C)) and ``XB`` (None: ``XA``), float64."""
        XA = np.asarray(XA, dtype=np.float64)
        C = XA.shape[-1]
        if mode == "full":
            def cross(x: Array, y: Array) -> Array:
                return np.einsum("aijc,bklc->abijkl", x, y, optimize=True) / C

            def own(x: Array) -> Array:
                return np.einsum("aijc,aklc->aijkl", x, x, optimize=True) / C
        elif mode == "diag":
            def cross(x: Array, y: Array) -> Array:
                return np.einsum("aijc,bijc->abij", x, y, optimize=True) / C

            def own(x: Array) -> Array:
                return np.einsum("aijc,aijc->aij", x, x) / C
        else:
            raise ValueError(f"an image state is 'full' or 'diag', got {mode!r}")
        if XB is None:
            return cls(cross(XA, XA), own(XA), None, mode, _check_variant(variant), C)
        XB = np.asarray(XB, dtype=np.float64)
        return cls(cross(XA, XB), own(XA), own(XB), mode, _check_variant(variant), C)

    def _map(self, f: Any) -> ConvNNGPState:
        """Apply a linear map ``f(array, n_row_axes)`` to K and the self states."""
        vb = None if self.vb is None else f(self.vb, 1)
        return self._replace(K=f(self.K, 2), va=f(self.va, 1), vb=vb)

    def to_diag(self) -> ConvNNGPState:
        """Keep only the same-location covariances (full -> diag)."""
        if self.mode != "full":
            return self

        def d(a: Array, r: int) -> Array:
            H, W = a.shape[r:r + 2]
            lead = a.shape[:r]
            return np.ascontiguousarray(a.reshape(*lead, H * W, H * W).diagonal(axis1=r, axis2=r + 1)).reshape(
                *lead, H, W)
        return self._map(d)._replace(mode="diag")

    def flatten(self) -> ConvNNGPState:
        """``mean_p K[p, p]``: the per-feature covariance of the flattened grid."""
        if self.mode == "flat":
            return self
        s = self.to_diag()
        return s._map(lambda a, r: a.reshape(*a.shape[:r], -1).mean(axis=-1))._replace(mode="flat")

    def activate(self, name: str) -> ConvNNGPState:
        """``E[phi(u) phi(v)]`` position by position, the diagonal exact (any mode)."""
        check_supported(name, "nngp")
        if name not in _MAPS:
            raise ValueError(f"activation {name!r} has no closed-form NNGP map for convolutional networks; "
                             f"valid: {', '.join(_MAPS)}")
        f, fself = _MAPS[name]
        da = _self_diag(self.va, self.mode)
        db = da if self.vb is None else _self_diag(self.vb, self.mode)
        if self.mode == "full":
            K = f(self.K, da[:, None, :, :, None, None], db[None, :, None, None, :, :])
            va = self._own_full(f, fself, self.va, da)
            vb = None if self.vb is None else self._own_full(f, fself, self.vb, db)
        elif self.mode == "diag":
            K = f(self.K, da[:, None], db[None, :])
            va, vb = fself(self.va), (None if self.vb is None else fself(self.vb))
        else:
            K = f(self.K, da[:, None], db[None, :])
            va, vb = fself(self.va), (None if self.vb is None else fself(self.vb))
            if self.vb is None:
                K = 0.5 * (K + K.T)
                np.fill_diagonal(K, va)
        return self._replace(K=K, va=va, vb=vb)

    @staticmethod
    def _own_full(f: Any, fself: Any, v: Array, d: Array) -> Array:
        m, H, W = d.shape
        out = np.array(f(v, d[:, :, :, None, None], d[:, None, None, :, :]))
        flat = out.reshape(m, H * W, H * W)
        idx = np.arange(H * W)
        flat[:, idx, idx] = fself(d).reshape(m, H * W)
        return out

    def dense(self, layer: Any, in_shape: Shape) -> ConvNNGPState:
        """A dense layer ``s_b**2 + sigma_w**2 K`` (flattening a spatial state first)."""
        init = layer.init
        if init.weights == "uniform" and self.variant == "fastpoly":
            raise ValueError(_UNIFORM)
        s = self.flatten()
        bv = init.bias_var(int(np.prod(in_shape)))
        c = init.sigma_w**2
        out = s._map(lambda a, r: bv + c * a)
        if out.vb is None:
            K = 0.5 * (out.K + out.K.T)
            np.fill_diagonal(K, out.va)
            out = out._replace(K=K)
        return out


def _as_conv_state(state: NNGPState | ConvNNGPState, in_shape: Shape | None, what: str) -> ConvNNGPState:
    """A :class:`ConvNNGPState` (full mode) from the input state of :meth:`Architecture.nngp` if needed."""
    if isinstance(state, ConvNNGPState):
        return state
    X = None if state.X is None else np.asarray(state.X, dtype=np.float64)
    if X is not None and X.ndim != 4 and in_shape is not None and len(in_shape) == 3:
        X = X.reshape(-1, *in_shape)
    if X is None or X.ndim != 4:
        raise ValueError(f"{what} needs image rows (m, H, W, C) in the NNGP state "
                         "(or use fastpoly.gp.kernel, which accepts flat rows)")
    return ConvNNGPState.of_images(X, None, "full")


def _pad(a: Array, r: int, mode: str, ph: int, pw: int, Hp: int, Wp: int) -> Array:
    H, W = a.shape[r:r + 2]
    if ph == 0 and pw == 0 and Hp == H and Wp == W:
        return a
    if mode == "full":
        out = np.zeros((*a.shape[:r], Hp, Wp, Hp, Wp))
        out[..., ph:ph + H, pw:pw + W, ph:ph + H, pw:pw + W] = a
    else:
        out = np.zeros((*a.shape[:r], Hp, Wp))
        out[..., ph:ph + H, pw:pw + W] = a
    return out


def conv2d_nngp(layer: Any, state: NNGPState | ConvNNGPState, in_shape: Shape | None = None) -> ConvNNGPState:
    """The map of a Conv2D layer: ``s_b**2 + sigma_w**2 / k**2 sum_delta Kpad[S o + delta, S o' + delta]``.

    Parameters
    ----------
    layer : Conv2D
        ``kernel``, ``stride``, ``padding`` and ``init`` (gaussian weights).
    state : NNGPState or ConvNNGPState
        The covariance of the layer's input (an :class:`NNGPState` carrying the input images, or a
        spatial state in "full" or "diag" mode; the mode is kept).
    in_shape : tuple, optional
        ``(H, W, C_in)``, used only to shape flat input rows; the grid and ``C_in`` (the fan-in of a
        ``bias_scaling="fan_in"`` bias) are the state's (under ``variant="nn-pacbayes"`` skipped
        pooling leaves the grid larger than the network's).

    Returns
    -------
    ConvNNGPState
        The pre-activation covariance per output channel.  ``variant="nn-pacbayes"``: the sum over
        the ``k*k`` taps is not divided by ``k**2``.
    """
    s = _as_conv_state(state, in_shape, "a convolution's NNGP map")
    if s.mode == "flat":
        raise ValueError("a convolution needs a spatial NNGP state, got a flattened one")
    init = layer.init
    if init.weights == "uniform" and s.variant == "fastpoly":
        raise ValueError(_UNIFORM)
    k, S = int(layer.kernel), int(layer.stride)
    H, W = s.va.shape[1:3]
    Ho, ph, Hp = _geometry(H, k, S, layer.padding)
    Wo, pw, Wp = _geometry(W, k, S, layer.padding)
    bv = init.bias_var(k * k * s.channels)
    c = init.sigma_w**2 / (k * k if s.variant == "fastpoly" else 1)
    full = s.mode == "full"

    def f(a: Array, r: int) -> Array:
        ap = _pad(a, r, s.mode, ph, pw, Hp, Wp)
        out = np.zeros((*a.shape[:r], Ho, Wo, Ho, Wo) if full else (*a.shape[:r], Ho, Wo))
        for kh in range(k):
            hs = slice(kh, kh + S * (Ho - 1) + 1, S)
            for kw in range(k):
                ws = slice(kw, kw + S * (Wo - 1) + 1, S)
                out += ap[(Ellipsis, hs, ws, hs, ws) if full else (Ellipsis, hs, ws)]
        out *= c
        out += bv
        return out

    return s._map(f)._replace(channels=int(layer.filters))


def avgpool_nngp(layer: Any, state: NNGPState | ConvNNGPState, in_shape: Shape | None = None) -> ConvNNGPState:
    """The map of ``ap{K}``: the mean of ``K[p, q]`` over the ``K x K`` windows of ``p`` and ``q`` (full mode).

    Under ``variant="nn-pacbayes"`` the state passes unchanged (the anchor's kernel ignores pooling).
    """
    s = _as_conv_state(state, in_shape, "average pooling's NNGP map")
    if s.variant == "nn-pacbayes":
        return s
    if s.mode != "full":
        raise ValueError("average pooling needs the full spatial covariance (a 'full' NNGP state)")
    k = int(layer.size)
    H, W = s.va.shape[1:3]
    Ho, Wo = H // k, W // k

    def f(a: Array, r: int) -> Array:
        lead = a.shape[:r]
        a = a[..., :Ho * k, :Wo * k, :Ho * k, :Wo * k].reshape(*lead, Ho, k, Wo, k, Ho, k, Wo, k)
        return a.mean(axis=tuple(r + i for i in (1, 3, 5, 7)))

    return s._map(f)


def _plain(s: ConvNNGPState) -> NNGPState | ConvNNGPState:
    """A flat state of one block (``vb=None``) as an ordinary :class:`NNGPState` (exactly symmetric)."""
    if s.vb is not None:
        return s
    K = 0.5 * (s.K + s.K.T)
    np.fill_diagonal(K, s.va)
    return NNGPState(K, np.array(s.va), 1)


def gap_nngp(layer: Any, state: NNGPState | ConvNNGPState,
             in_shape: Shape | None = None) -> NNGPState | ConvNNGPState:
    """The map of ``gap``: ``mean_{p, q} K[p, q]`` (full mode); ``variant="nn-pacbayes"``: a flatten."""
    s = _as_conv_state(state, in_shape, "global average pooling's NNGP map")
    if s.variant == "nn-pacbayes":
        return _plain(s.flatten())
    if s.mode != "full":
        raise ValueError("global average pooling needs the full spatial covariance (a 'full' NNGP state)")
    return _plain(s._map(lambda a, r: a.reshape(*a.shape[:r], -1).mean(axis=-1))._replace(mode="flat"))


def flatten_nngp(layer: Any, state: NNGPState | ConvNNGPState,
                 in_shape: Shape | None = None) -> NNGPState | ConvNNGPState:
    """The map of a flatten: ``mean_p K[p, p]``; an input :class:`NNGPState` passes unchanged.

    A flat state of one block of rows comes back as an ordinary :class:`NNGPState` (so the dense
    tail runs the MLP maps); a state between two blocks stays a :class:`ConvNNGPState`.
    """
    if isinstance(state, ConvNNGPState):
        return _plain(state.flatten())
    return state


def is_spatial(arch: Any) -> bool:
    """True when ``arch`` has a convolution, a pooling layer or a flatten (this module's kernel)."""
    return any(getattr(layer, "kind", "") in SPATIAL_KINDS for layer in arch.layers)


def _full_until(arch: Any, variant: str) -> int:
    """Index of the last layer that needs a full state (average / global pooling), -1 if none."""
    if variant == "nn-pacbayes":
        return -1
    last = -1
    for i, layer in enumerate(arch.layers):
        if getattr(layer, "kind", "") in ("avgpool", "gap"):
            last = i
    return last


def pair_floats(arch: Any, variant: str = "fastpoly") -> int:
    """The largest number of float64 values one pair of inputs holds in any layer's state."""
    last = _full_until(arch, _check_variant(variant))
    best = 0
    shapes: Sequence[Shape] = arch.shapes
    first = 1 if getattr(arch.layers[0], "kind", "") == "conv2d" else 0  # computed from the patches
    for i, shape in enumerate(shapes[:len(arch.layers)]):
        if i < first:
            continue
        P = int(np.prod(shape[:2])) if len(shape) == 3 else 1
        best = max(best, P * P if i <= last else P)
    return best


#: working arrays per pair of a layer's map (the padded copy, the output, the activation's temporaries)
_WORK = 8


def _patches(X: Array, k: int, S: int, padding: str) -> Array:
    """The zero-padded ``k x k`` patches ``(m, Ho*Wo, k*k*C)`` of images ``X`` (fan-in order (kh, kw, c))."""
    m, H, W, C = X.shape
    Ho, ph, Hp = _geometry(H, k, S, padding)
    Wo, pw, Wp = _geometry(W, k, S, padding)
    xp = np.zeros((m, Hp, Wp, C))
    xp[:, ph:ph + H, pw:pw + W] = X
    out = np.empty((m, Ho, Wo, k, k, C))
    for kh in range(k):
        for kw in range(k):
            out[:, :, :, kh, kw] = xp[:, kh:kh + S * (Ho - 1) + 1:S, kw:kw + S * (Wo - 1) + 1:S]
    return out.reshape(m, Ho * Wo, k * k * C)


def _first_conv(layer: Any, XA: Array, XB: Array | None, mode: str, variant: str) -> ConvNNGPState:
    """The state after a first convolution, from patch dot products.

    What :func:`conv2d_nngp` of the input state computes, without the input's ``(H*W)**2`` covariances.
    """
    init = layer.init
    if init.weights == "uniform" and variant == "fastpoly":
        raise ValueError(_UNIFORM)
    k, S = int(layer.kernel), int(layer.stride)
    m, H, W, C = XA.shape
    Ho = _geometry(H, k, S, layer.padding)[0]
    Wo = _geometry(W, k, S, layer.padding)[0]
    bv = init.bias_var(k * k * C)
    c = init.sigma_w**2 / ((k * k if variant == "fastpoly" else 1) * C)
    PA = _patches(XA, k, S, layer.padding)
    PB = PA if XB is None else _patches(XB, k, S, layer.padding)
    mB, P = PB.shape[0], Ho * Wo

    def own(Q: Array) -> Array:
        if mode == "full":
            return np.matmul(Q, Q.transpose(0, 2, 1)).reshape(-1, Ho, Wo, Ho, Wo)
        return np.einsum("apq,apq->ap", Q, Q).reshape(-1, Ho, Wo)

    if mode == "full":
        K = (PA.reshape(m * P, -1) @ PB.reshape(mB * P, -1).T).reshape(m, P, mB, P).transpose(0, 2, 1, 3)
        K = np.ascontiguousarray(K).reshape(m, mB, Ho, Wo, Ho, Wo)
    else:
        K = np.matmul(PA.transpose(1, 0, 2), PB.transpose(1, 2, 0)).transpose(1, 2, 0).reshape(m, mB, Ho, Wo)
        K = np.ascontiguousarray(K)
    va = own(PA)
    vb = None if XB is None else own(PB)
    s = ConvNNGPState(K, va, vb, mode, variant, int(layer.filters))
    return s._map(lambda a, r: bv + c * a)


def conv_kernel(arch: Any, X: Array, *, variant: str = "fastpoly", max_bytes: int = 512 * 2**20) -> Array:
    """The NNGP covariance of a convolutional architecture's output on the images ``X``, blocked over pairs.

    Parameters
    ----------
    arch : Architecture
        Image input ``(H, W, C)``; Conv2D / AvgPool / GlobalAvgPool / Flatten / Dense layers and
        activations with a closed form (relu, erf, sign, identity); gaussian weights.
    X : numpy.ndarray
        ``(m, H*W*C)`` or ``(m, H, W, C)`` rows (float64 is used).
    variant : {"fastpoly", "nn-pacbayes"}
        The network's kernel, or the anchor's analytic CNN kernel (module docstring).
    max_bytes : int
        Budget of the working set of one block of pairs (the block size follows from it).

    Returns
    -------
    numpy.ndarray of float64, shape (m, m)
        Exactly symmetric.

    Notes
    -----
    Cost ``O(m**2 P k**2 L)`` without average / global pooling (only same-location covariances),
    ``O(m**2 P**2 k**2 L)`` with it (``P`` = positions of the largest grid up to the last pooling
    layer); memory ``8 m**2`` bytes for the result plus one block of about ``max_bytes``.
    Layers after the last pooling layer run on the diagonal only.
    """
    variant = _check_variant(variant)
    X = np.asarray(X, dtype=np.float64)
    m = X.shape[0]
    X = X.reshape(m, *arch.input_shape)
    if len(arch.input_shape) != 3:
        raise ValueError(f"a convolutional kernel needs image inputs (H, W, C), got {arch.input_shape}")
    last = _full_until(arch, variant)
    per_pair = 8 * _WORK * pair_floats(arch, variant)
    b = int(max(1, min(m, math.isqrt(max(1, int(max_bytes) // per_pair)))))
    first_conv = getattr(arch.layers[0], "kind", "") == "conv2d"
    out = np.empty((m, m))
    starts = list(range(0, m, b))
    for bi, i0 in enumerate(starts):
        for j0 in starts[bi:]:
            XA = X[i0:i0 + b]
            XB = None if j0 == i0 else X[j0:j0 + b]
            mode = "full" if last >= 0 else "diag"
            if first_conv:  # the first convolution straight from the patches (one matrix product)
                state: Any = _first_conv(arch.layers[0], XA, XB, mode, variant)
            else:
                state = ConvNNGPState.of_images(XA, XB, mode, variant)
            for li, (layer, shape) in enumerate(zip(arch.layers, arch.shapes)):
                if li == 0 and first_conv:
                    continue
                kind = getattr(layer, "kind", "")
                if variant == "nn-pacbayes" and kind in ("avgpool", "maxpool"):
                    continue
                if isinstance(state, ConvNNGPState) and kind == "dense":
                    state = state.dense(layer, shape)
                elif isinstance(state, ConvNNGPState) and kind == "activation":
                    state = state.activate(layer.name)
                else:
                    state = layer.nngp(state, shape)
                if li >= last and isinstance(state, ConvNNGPState) and state.mode == "full":
                    state = state.to_diag()
            K = state.K if XB is not None else 0.5 * (state.K + state.K.T)
            out[i0:i0 + b, j0:j0 + b] = K
            if j0 != i0:
                out[j0:j0 + b, i0:i0 + b] = K.T
    return out
