"""The Numba layer-sequence sampler: any :class:`~fastpoly.model.Architecture` (convolutional networks).

The fully connected :class:`~fastpoly.MLP` keeps its fused kernels (:mod:`fastpoly.backends.numba.sampler`);
every other architecture is compiled into a small *program* of layer operations run by one kernel
per lane of samples.  Per sample the lane draws the parameter vector (the bits of
:meth:`fastpoly.model.Architecture.draw_params`), then runs the program on the input images in groups
of ``G`` images, then packs the output signs exactly as the dense sampler does.

Layout of a layer's values for a group of ``G`` images: channel-major, ``A[c * rs + (n*H + h)*W + w]``
(flat values ``A[k * rs + n]``), ``rs`` padded to a multiple of :data:`ROW_BLOCK`.  So

* a **convolution** is an im2col copy ``P[q * rs + (n*Ho + i)*Wo + j]`` with ``q = (kh, kw, c)``
  row-major (padding positions hold +0), followed by the register-blocked dense micro-kernel
  :func:`~fastpoly.backends.numba.sampler.dense_rows` with the weights ``W (F, K*K*C)`` as they lie in
  the parameter vector: ``z = b``, then ``z = fma(P[q], W[f, q], z)`` for ``q`` ascending -- the
  reference's order, one correctly rounded float32 FMA per step, padding zeros included;
* pooling, global average pooling and flatten are plain loops in the reference's order (sums from
  +0 in row-major window order, one float32 division; the max in row-major order);
* a dense layer is ``dense_rows`` on the flat values.

The results are bit-identical to the NumPy reference (:func:`fastpoly.backends.reference.forward_layers`)
for relu, sign and identity (smooth activations go through float64 libm as in the dense sampler).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fastpoly.activations import SAMPLER_CODES
from fastpoly.backends.numba.jit import jit, pjit, prange
from fastpoly.backends.numba.rng import normals_from_words, philox_sample_words, round_keys, uniform_pm1_from_words
from fastpoly.backends.numba.sampler import ROW_BLOCK, _activate, dense_rows
from fastpoly.stream.rng import check_seed

if TYPE_CHECKING:
    from fastpoly.plan import SamplerPlan

__all__ = ["PreparedLayers", "OP_CONV", "OP_DENSE", "OP_ACT", "OP_AVGPOOL", "OP_MAXPOOL", "OP_GAP", "OP_FLATTEN"]

OP_CONV, OP_DENSE, OP_ACT, OP_AVGPOOL, OP_MAXPOOL, OP_GAP, OP_FLATTEN = range(7)
#: columns of a program row
(_C_OP, _C_H, _C_W, _C_C, _C_HO, _C_WO, _C_CO, _C_K, _C_S, _C_PH, _C_PW, _C_WOFF, _C_BOFF, _C_ACT) = range(14)
_NCOL = 14

#: target rows (images x positions of the widest layer) per group of images
GROUP_ROWS = 768


def _pad_nb(n: int) -> int:
    return -(-n // ROW_BLOCK) * ROW_BLOCK


_pad = jit(inline="always")(_pad_nb)


def _program(arch, n_params):
    """``(ops int64 (n_ops, 14), final width)``: the architecture as kernel operations."""
    from fastpoly.model.conv import AvgPool, Conv2D, Flatten, GlobalAvgPool, MaxPool
    from fastpoly.model.layers import Activation, Dense

    rows = []
    slots = {}
    for s in arch.param_blocks():
        slots.setdefault(s.layer, []).append(s.offset)
    for li, (layer, shape) in enumerate(zip(arch.layers, arch.shapes)):
        r = [0] * _NCOL
        out = layer.out_shape(shape)
        r[_C_H], r[_C_W], r[_C_C] = tuple(shape) if len(shape) == 3 else (1, 1, shape[0])
        offs = slots.get(li, [])
        if isinstance(layer, Dense) and len(shape) == 3:
            f = [0] * _NCOL
            f[_C_OP] = OP_FLATTEN
            f[_C_H], f[_C_W], f[_C_C] = (int(x) for x in shape)
            rows.append(f)
            r[_C_H], r[_C_W], r[_C_C] = 1, 1, int(np.prod(shape))
        if isinstance(layer, Conv2D):
            r[_C_OP] = OP_CONV
            r[_C_HO], r[_C_WO], r[_C_CO] = out
            r[_C_K], r[_C_S] = layer.kernel, layer.stride
            r[_C_PH], r[_C_PW] = layer.padding_before(shape)
        elif isinstance(layer, Dense):
            r[_C_OP] = OP_DENSE
            r[_C_HO], r[_C_WO], r[_C_CO] = 1, 1, layer.units
        elif isinstance(layer, Activation):
            r[_C_OP] = OP_ACT
            r[_C_ACT] = SAMPLER_CODES[layer.name]
            r[_C_HO], r[_C_WO], r[_C_CO] = r[_C_H], r[_C_W], r[_C_C]
        elif isinstance(layer, (AvgPool, MaxPool)):
            r[_C_OP] = OP_AVGPOOL if isinstance(layer, AvgPool) else OP_MAXPOOL
            r[_C_HO], r[_C_WO], r[_C_CO] = out
            r[_C_K] = layer.size
        elif isinstance(layer, GlobalAvgPool):
            r[_C_OP] = OP_GAP
            r[_C_HO], r[_C_WO], r[_C_CO] = 1, 1, out[0]
        elif isinstance(layer, Flatten):
            if len(shape) != 3:
                continue
            r[_C_OP] = OP_FLATTEN
            r[_C_HO], r[_C_WO], r[_C_CO] = 1, 1, out[0]
        else:
            raise ValueError(f"the numba sampler has no kernel for layer {type(layer).__name__}")
        if r[_C_OP] in (OP_CONV, OP_DENSE):
            r[_C_WOFF] = offs[0]
            r[_C_BOFF] = offs[1] if len(offs) > 1 else n_params  # the zeros after the parameters
        rows.append(r)
    return np.array(rows, np.int64).reshape(-1, _NCOL)


class LayerNet(NamedTuple):
    """The program and the draw of a layer-sequence plan (one Numba namedtuple argument)."""

    ops: np.ndarray
    pscale: np.ndarray
    trunc: np.ndarray
    mode: int  # 0 gaussian, 1 uniform, 2 truncated normal
    group: int
    buf: int
    pbuf: int
    zpad: int


class LayerRows(NamedTuple):
    """The input images in kernel order: ``X (rows, n_inputs)`` (train rows, then key rows)."""

    X: np.ndarray
    n0: int
    nk: int
    labels: np.ndarray
    n_words: int


@jit
def _draw_truncated(rk, index, trunc, unit, n_params):
    """Unit draws with truncated parameters (|z| <= 2, rejected normals skipped; module rule)."""
    cap = 2 * n_params + 64
    while True:
        nb = (cap + 3) // 4
        words = np.empty(4 * nb, np.uint32)
        z = np.empty(4 * nb, np.float32)
        philox_sample_words(rk, index, 0, nb, words)
        normals_from_words(words, 2 * nb, z)
        q = 0
        ok = True
        for p in range(n_params):
            if trunc[p]:
                while q < 4 * nb and abs(z[q]) > np.float32(2.0):
                    q += 1
            if q >= 4 * nb:
                ok = False
                break
            unit[p] = z[q]
            q += 1
        if ok:
            return
        cap *= 2


@jit(inline="always")
def _load_group(X, g0, gn, H, W, C, rs, A):
    """Images ``g0 .. g0+gn-1`` of ``X`` into the channel-major buffer ``A`` (padding rows zero)."""
    hw = H * W
    for c in range(C):
        base = c * rs
        for n in range(gn):
            for p in range(hw):
                A[base + n * hw + p] = X[g0 + n, p * C + c]
        for t in range(gn * hw, rs):
            A[base + t] = np.float32(0.0)


@jit(inline="always")
def _im2col(A, H, W, C, rs, gn, K, S, ph, pw, Ho, Wo, rso, Pm):
    zero = np.float32(0.0)
    for kh in range(K):
        for kw in range(K):
            for c in range(C):
                q = (kh * K + kw) * C + c
                base = q * rso
                src = c * rs
                t = 0
                for n in range(gn):
                    for i in range(Ho):
                        y = i * S + kh - ph
                        for j in range(Wo):
                            x = j * S + kw - pw
                            if 0 <= y < H and 0 <= x < W:
                                Pm[base + t] = A[src + (n * H + y) * W + x]
                            else:
                                Pm[base + t] = zero
                            t += 1
                for t2 in range(t, rso):
                    Pm[base + t2] = zero


@jit(inline="always")
def _pool(A, H, W, C, rs, gn, K, Ho, Wo, rso, Z, is_max):
    inv = np.float32(K * K)
    for c in range(C):
        for n in range(gn):
            for i in range(Ho):
                for j in range(Wo):
                    src = c * rs + (n * H + i * K) * W + j * K
                    if is_max:
                        m = A[src]
                        for kh in range(K):
                            for kw in range(K):
                                v = A[src + kh * W + kw]
                                if v > m:
                                    m = v
                        Z[c * rso + (n * Ho + i) * Wo + j] = m
                    else:
                        s = np.float32(0.0)
                        for kh in range(K):
                            for kw in range(K):
                                s = s + A[src + kh * W + kw]
                        Z[c * rso + (n * Ho + i) * Wo + j] = s / inv
        for t in range(gn * Ho * Wo, rso):
            Z[c * rso + t] = np.float32(0.0)


@jit(inline="always")
def _gap(A, H, W, C, rs, gn, rso, Z):
    inv = np.float32(H * W)
    for c in range(C):
        for n in range(gn):
            s = np.float32(0.0)
            base = c * rs + n * H * W
            for p in range(H * W):
                s = s + A[base + p]
            Z[c * rso + n] = s / inv
        for t in range(gn, rso):
            Z[c * rso + t] = np.float32(0.0)


@jit(inline="always")
def _flatten(A, H, W, C, rs, gn, rso, Z):
    for h in range(H):
        for w in range(W):
            for c in range(C):
                k = (h * W + w) * C + c
                src = c * rs + h * W + w
                for n in range(gn):
                    Z[k * rso + n] = A[src + n * H * W]
                for t in range(gn, rso):
                    Z[k * rso + t] = np.float32(0.0)


@jit
def _run_group(ops, P, X, g0, gn, bufs, Pm):
    """The program on images ``g0 .. g0+gn-1``; returns the index of the buffer holding the outputs."""
    H0, W0, C0 = ops[0, _C_H], ops[0, _C_W], ops[0, _C_C]
    rs = _pad(gn * H0 * W0)
    _load_group(X, g0, gn, H0, W0, C0, rs, bufs[0])
    cur = 0
    for o in range(ops.shape[0]):
        op = ops[o, _C_OP]
        H, W, C = ops[o, _C_H], ops[o, _C_W], ops[o, _C_C]
        Ho, Wo, Co = ops[o, _C_HO], ops[o, _C_WO], ops[o, _C_CO]
        rso = _pad(gn * Ho * Wo)
        A = bufs[cur]
        Z = bufs[1 - cur]
        if op == OP_ACT:
            _activate(A, rs, C, 0, rs, ops[o, _C_ACT])
            continue
        if op == OP_CONV:
            K = ops[o, _C_K]
            _im2col(A, H, W, C, rs, gn, K, ops[o, _C_S], ops[o, _C_PH], ops[o, _C_PW], Ho, Wo, rso, Pm)
            dense_rows(P, ops[o, _C_WOFF], K * K * C, Co, Pm, rso, 0, rso, Z, rso, P, ops[o, _C_BOFF])
        elif op == OP_DENSE:
            dense_rows(P, ops[o, _C_WOFF], C, Co, A, rs, 0, rso, Z, rso, P, ops[o, _C_BOFF])
        elif op == OP_AVGPOOL:
            _pool(A, H, W, C, rs, gn, ops[o, _C_K], Ho, Wo, rso, Z, False)
        elif op == OP_MAXPOOL:
            _pool(A, H, W, C, rs, gn, ops[o, _C_K], Ho, Wo, rso, Z, True)
        elif op == OP_GAP:
            _gap(A, H, W, C, rs, gn, rso, Z)
        else:
            _flatten(A, H, W, C, rs, gn, rso, Z)
        cur = 1 - cur
        rs = rso
    return cur


@jit
def _lane(rk, net, rows, first, count, early_exit, want_margins, keys, acc, marg, out0):
    ops, pscale, trunc, mode, G = net.ops, net.pscale, net.trunc, net.mode, net.group
    X, n0, nk, labels, n_words = rows.X, rows.n0, rows.nk, rows.labels, rows.n_words
    n_params = pscale.shape[0]
    n_blocks = (n_params + 3) // 4
    words = np.empty(4 * n_blocks, np.uint32)
    unit = np.empty(4 * n_blocks, np.float32)
    P = np.zeros(n_params + net.zpad, np.float32)
    bufs = np.zeros((2, net.buf), np.float32)
    Pm = np.zeros(net.pbuf, np.float32)
    zk = np.empty(max(nk, 1), np.float32)
    for s in range(count):
        o = out0 + s
        index = first + np.uint64(s)
        if mode == 2:
            _draw_truncated(rk, index, trunc, unit, n_params)
        else:
            philox_sample_words(rk, index, 0, n_blocks, words)
            if mode == 1:
                uniform_pm1_from_words(words, n_params, unit)
            else:
                normals_from_words(words, 2 * n_blocks, unit)
        for p in range(n_params):
            P[p] = unit[p] * pscale[p]
        ok = True
        mg = np.float32(np.inf)
        g0 = 0
        while g0 < n0:
            gn = min(G, n0 - g0)
            b = _run_group(ops, P, X, g0, gn, bufs, Pm)
            for n in range(gn):
                z = bufs[b, n]
                if want_margins and abs(z) < mg:
                    mg = abs(z)
                if (z > np.float32(0.0)) != (labels[g0 + n] != 0):
                    ok = False
            if early_exit and not ok:
                break
            g0 += gn
        if ok or not early_exit:
            g0 = 0
            while g0 < nk:
                gn = min(G, nk - g0)
                b = _run_group(ops, P, X, n0 + g0, gn, bufs, Pm)
                for n in range(gn):
                    z = bufs[b, n]
                    zk[g0 + n] = z
                    if want_margins and abs(z) < mg:
                        mg = abs(z)
                g0 += gn
            for w in range(n_words):
                word = np.uint64(0)
                r0 = 64 * w
                r1 = min(r0 + 64, nk)
                for r in range(r0, r1):
                    word |= np.uint64(zk[r] > np.float32(0.0)) << np.uint64(r - r0)
                keys[o, w] = word
        else:
            for w in range(n_words):
                keys[o, w] = 0
        acc[o] = ok
        if want_margins:
            marg[o] = mg


@pjit
def _lanes(rk, net, rows, start, n, n_lanes, early_exit, want_margins, keys, acc, marg):
    for lane in prange(n_lanes):
        lo = (n * lane) // n_lanes
        hi = (n * (lane + 1)) // n_lanes
        if hi > lo:
            _lane(rk, net, rows, start + np.uint64(lo), hi - lo, early_exit, want_margins, keys, acc, marg, lo)


class PreparedLayers:
    """Kernel-ready arrays of a layer-sequence :class:`~fastpoly.plan.SamplerPlan` (built once per plan).

    The same interface as :class:`fastpoly.backends.numba.sampler.PreparedPlan` (:meth:`run`).
    """

    subset = False

    def __init__(self, plan: SamplerPlan, group: int | None = None) -> None:
        arch = plan.mlp
        n = arch.n_params
        ops = _program(arch, n)
        pscale = np.empty(n, np.float32)
        trunc = np.zeros(n, np.bool_)
        for s in arch.param_blocks():
            pscale[s.offset:s.offset + s.block.size] = s.block.scale
            trunc[s.offset:s.offset + s.block.size] = s.block.truncated
        mode = {"gaussian": 0, "uniform": 1, "truncated_normal": 2}[arch.weights]
        widest = max(int(max(r[_C_H] * r[_C_W], r[_C_HO] * r[_C_WO])) for r in ops)
        m_all = int(plan.train_rows.size + plan.key_rows.size)
        G = group or max(1, min(m_all, GROUP_ROWS // max(widest, 1)))
        buf = 0
        pbuf = 1
        for r in ops:
            buf = max(buf, int(r[_C_C]) * _pad_nb(G * int(r[_C_H] * r[_C_W])),
                      int(r[_C_CO]) * _pad_nb(G * int(r[_C_HO] * r[_C_WO])))
            if r[_C_OP] == OP_CONV:
                pbuf = max(pbuf, int(r[_C_K] ** 2 * r[_C_C]) * _pad_nb(G * int(r[_C_HO] * r[_C_WO])))
        zpad = max(int(r[_C_CO]) for r in ops)
        self.net = LayerNet(np.ascontiguousarray(ops), pscale, trunc, mode, int(G), int(buf), int(pbuf), zpad)
        order = np.concatenate([plan.train_rows, plan.key_rows]).astype(np.int64)
        self.rows = LayerRows(np.ascontiguousarray(plan.X[order], np.float32), int(plan.train_rows.size),
                              int(plan.key_rows.size), np.ascontiguousarray(plan.train_labels, np.uint8),
                              int(plan.n_words))
        self.rk = round_keys(check_seed(plan.seed))
        self.boolean = bool(plan.boolean)

    @property
    def n_words(self) -> int:
        """64-bit words of a key."""
        return self.rows.n_words

    def run(self, start: int, n: int, n_lanes: int, early_exit: bool,
            want_margins: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Keys, acceptance and (optionally) margins of samples ``start .. start+n-1`` (as the dense sampler)."""
        keys = np.zeros((n, self.n_words), np.uint64)
        acc = np.zeros(n, np.bool_)
        marg = np.empty(n if want_margins else 0, np.float32)
        if n:
            _lanes(self.rk, self.net, self.rows, np.uint64(start), np.int64(n), np.int64(max(1, min(n_lanes, n))),
                   bool(early_exit), bool(want_margins), keys, acc, marg)
        return keys, acc, (marg if want_margins else None)
