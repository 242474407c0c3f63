"""The Numba layer-sequence sampler: any :class:`~fastpoly.model.Architecture` (convolutional networks).

The fully connected :class:`~fastpoly.MLP` keeps its fused kernels (:mod:`fastpoly.backends.numba.sampler`);
every other architecture is compiled into a small *program* of layer operations (:func:`_program`) run
by one kernel per lane of samples.  Per sample the lane draws the parameter vector (the bits of
:meth:`fastpoly.model.Architecture.draw_params`, truncated normals included), then runs the program on
the input images in groups of ``G`` images, then packs the output signs exactly as the dense sampler.

Layouts: spatial values are image-major ``A[((n*H + h)*W + w)*C + c]`` (the images' own row-major H, W, C
order); flat values (after flatten, global pooling or a dense layer) are row-major ``Z[k*rs + n]`` with
``rs`` padded to a multiple of :data:`ROW_BLOCK`, the layout of the dense micro-kernel.

* A **convolution** whose filter count is a multiple of 16 (or 8) runs a register-blocked micro-kernel
  (:func:`_make_conv_block`): ``nj`` consecutive output positions (row-major) times 16 (8) filters in
  ``<16 x float>`` accumulators, starting from the bias, then ``acc = fma(x[q], Wt[q, f], acc)`` for the
  patch index ``q = (kh, kw, c)`` ascending -- the reference's order, one correctly rounded float32 FMA
  per step.  ``Wt`` is the sample's ``W`` transposed to ``(q, F)``; the patch element ``q`` of a position
  is at a fixed offset ``(kh*Wp + kw)*C + c`` from the position's corner (tables in ``LayerNet.off``).  "same" padding copies the
  images into a zero border first (``Wp``, ``Hp``), so padding zeros are accumulated as zeros exactly
  as in the reference.  Other filter counts use im2col and the dense micro-kernel (the same order).
* Pooling, global average pooling and flatten are plain loops in the reference's order (sums from +0
  in row-major window order, one float32 division; the max in row-major order).
* A dense layer is :func:`~fastpoly.backends.numba.sampler.dense_rows` on the flat values.

The results are bit-identical to the NumPy reference (:func:`fastpoly.backends.reference.forward_layers`)
for relu, sign and identity (smooth activations go through float64 libm as in the dense sampler).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from fastpoly.activations import SAMPLER_CODES
from fastpoly.backends.numba.jit import jit, pjit, prange
from fastpoly.backends.numba.llvmvec import float_vector_ops
from fastpoly.backends.numba.rng import normals_from_words, philox_sample_words, round_keys, uniform_pm1_from_words
from fastpoly.backends.numba.sampler import ROW_BLOCK, _activate, dense_rows
from fastpoly.stream.rng import check_seed

if TYPE_CHECKING:
    from fastpoly.plan import SamplerPlan

__all__ = ["PreparedLayers", "OP_CONV", "OP_DENSE", "OP_ACT", "OP_AVGPOOL", "OP_MAXPOOL", "OP_GAP", "OP_FLATTEN"]

OP_CONV, OP_DENSE, OP_ACT, OP_AVGPOOL, OP_MAXPOOL, OP_GAP, OP_FLATTEN = range(7)
#: columns of a program row
(_C_OP, _C_H, _C_W, _C_C, _C_HO, _C_WO, _C_CO, _C_K, _C_S, _C_PH, _C_PW, _C_WOFF, _C_BOFF, _C_ACT,
 _C_HP, _C_WP, _C_NR, _C_TOFF, _C_POFF) = range(19)
_NCOL = 19

#: target rows (images x positions of the widest layer) per group of images
GROUP_ROWS = 768
#: conv micro-kernel: output positions per register block (and the smaller tails)
_NJ = (8, 4, 2, 1)


def _pad_nb(n: int) -> int:
    return -(-n // ROW_BLOCK) * ROW_BLOCK


_pad = jit(inline="always")(_pad_nb)


def _make_conv_block(nj, nr, from_bias):
    """An intrinsic: ``nj`` output positions x ``nr`` filters accumulated in ``<nr x float>`` registers.

    ``cblock(A, aoff, poff, cnt, Wt, woff, wstride, Z, zoff, zstride, B, boff, Off, ooff)``: for
    ``j < nj`` the accumulator starts from ``B[boff : boff+nr]`` (``from_bias``) or
    ``Z[zoff + j*zstride : +nr]``; then for ``k = 0 .. cnt-1``:
    ``acc_j = fma(A[aoff + Off[poff + j] + Off[ooff + k]], Wt[woff + k*wstride : +nr], acc_j)``
    (``Off[poff + j]``: the corner of position ``j``, ``Off[ooff + k]``: patch element ``k``);
    stored to ``Z[zoff + j*zstride : +nr]``.  ``cnt >= 1``.
    """

    @intrinsic
    def cblock(typingctx, A, aoff, astride, cnt, Wt, woff, wstride, Z, zoff, zstride, B, boff, Off, ooff):
        for a in (A, Wt, Z, B):
            if not (isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"):
                return None
        if not (isinstance(Off, types.Array) and Off.dtype == types.int64 and Off.layout == "C"):
            return None
        i64t = types.int64
        sig = types.void(A, i64t, i64t, i64t, Wt, i64t, i64t, Z, i64t, i64t, B, i64t, Off, i64t)

        def codegen(context, builder, signature, args):
            Aa, aoff_, ast_, cnt_, Wa, woff_, wst_, Za, zoff_, zst_, Ba, boff_, Oa, ooff_ = args
            sa = signature.args
            ap = context.make_array(sa[0])(context, builder, Aa).data
            wp = context.make_array(sa[4])(context, builder, Wa).data
            zp = context.make_array(sa[7])(context, builder, Za).data
            bp = context.make_array(sa[10])(context, builder, Ba).data
            op = context.make_array(sa[12])(context, builder, Oa).data
            i64 = ir.IntType(64)
            vt, vfma, splat = float_vector_ops(builder, nr)


            def vload(base, off):
                return builder.load(builder.bitcast(builder.gep(base, [off]), vt.as_pointer()), align=4)

            zoffs = [builder.add(zoff_, builder.mul(ir.Constant(i64, j), zst_)) for j in range(nj)]
            aoffs = [builder.add(aoff_, builder.load(builder.gep(op, [builder.add(ast_, ir.Constant(i64, j))])))
                     for j in range(nj)]
            if from_bias:
                b = vload(bp, boff_)
                init = [b] * nj
            else:
                init = [vload(zp, zoffs[j]) for j in range(nj)]
            pre = builder.block
            loop = builder.append_basic_block("fp_cblock_loop")
            done = builder.append_basic_block("fp_cblock_done")
            builder.branch(loop)
            builder.position_at_end(loop)
            k = builder.phi(i64)
            k.add_incoming(ir.Constant(i64, 0), pre)
            acc = []
            for j in range(nj):
                a = builder.phi(vt)
                a.add_incoming(init[j], pre)
                acc.append(a)
            w = vload(wp, builder.add(woff_, builder.mul(k, wst_)))
            kk = builder.load(builder.gep(op, [builder.add(ooff_, k)]))
            new = []
            for j in range(nj):
                x = builder.load(builder.gep(ap, [builder.add(aoffs[j], kk)]))
                new.append(builder.call(vfma, [splat(x), w, acc[j]]))
            k1 = builder.add(k, ir.Constant(i64, 1))
            here = builder.block
            k.add_incoming(k1, here)
            for j in range(nj):
                acc[j].add_incoming(new[j], here)
            builder.cbranch(builder.icmp_signed("<", k1, cnt_), loop, done)
            builder.position_at_end(done)
            for j in range(nj):
                builder.store(new[j], builder.bitcast(builder.gep(zp, [zoffs[j]]), vt.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return cblock


_c16_8, _c16_4, _c16_2, _c16_1 = (_make_conv_block(nj, 16, True) for nj in _NJ)
_c8_8, _c8_4, _c8_2, _c8_1 = (_make_conv_block(nj, 8, True) for nj in _NJ)


@jit(inline="always")
def _cblock(nr, nj, A, aoff, ast, cnt, Wt, woff, wst, Z, zoff, zst, B, boff, Off, ooff):
    if nr == 16:
        if nj == 8:
            _c16_8(A, aoff, ast, cnt, Wt, woff, wst, Z, zoff, zst, B, boff, Off, ooff)
        elif nj == 4:
            _c16_4(A, aoff, ast, cnt, Wt, woff, wst, Z, zoff, zst, B, boff, Off, ooff)
        elif nj == 2:
            _c16_2(A, aoff, ast, cnt, Wt, woff, wst, Z, zoff, zst, B, boff, Off, ooff)
        else:
            _c16_1(A, aoff, ast, cnt, Wt, woff, wst, Z, zoff, zst, B, boff, Off, ooff)
    else:
        if nj == 8:
            _c8_8(A, aoff, ast, cnt, Wt, woff, wst, Z, zoff, zst, B, boff, Off, ooff)
        elif nj == 4:
            _c8_4(A, aoff, ast, cnt, Wt, woff, wst, Z, zoff, zst, B, boff, Off, ooff)
        elif nj == 2:
            _c8_2(A, aoff, ast, cnt, Wt, woff, wst, Z, zoff, zst, B, boff, Off, ooff)
        else:
            _c8_1(A, aoff, ast, cnt, Wt, woff, wst, Z, zoff, zst, B, boff, Off, ooff)


def _program(arch, n_params):
    """The architecture as kernel operations: int64 ``(n_ops, 19)`` and the size of the transposed weights."""
    from fastpoly.model.conv import AvgPool, Conv2D, Flatten, GlobalAvgPool, MaxPool
    from fastpoly.model.layers import Activation, Dense

    rows = []
    slots: dict[int, list[int]] = {}
    for s in arch.param_blocks():
        slots.setdefault(s.layer, []).append(s.offset)
    toff = 0
    for li, (layer, shape) in enumerate(zip(arch.layers, arch.shapes)):
        r = [0] * _NCOL
        out = layer.out_shape(shape)
        r[_C_H], r[_C_W], r[_C_C] = tuple(shape) if len(shape) == 3 else (1, 1, shape[0])
        offs = slots.get(li, [])
        if isinstance(layer, Dense) and len(shape) == 3:
            f = [0] * _NCOL
            f[_C_OP] = OP_FLATTEN
            f[_C_H], f[_C_W], f[_C_C] = (int(x) for x in shape)
            f[_C_HO], f[_C_WO], f[_C_CO] = 1, 1, int(np.prod(shape))
            rows.append(f)
            r[_C_H], r[_C_W], r[_C_C] = 1, 1, int(np.prod(shape))
        if isinstance(layer, Conv2D):
            r[_C_OP] = OP_CONV
            r[_C_HO], r[_C_WO], r[_C_CO] = out
            r[_C_K], r[_C_S] = layer.kernel, layer.stride
            r[_C_PH], r[_C_PW] = layer.padding_before(shape)
            r[_C_HP] = max(shape[0] + r[_C_PH], (out[0] - 1) * layer.stride + layer.kernel)
            r[_C_WP] = max(shape[1] + r[_C_PW], (out[1] - 1) * layer.stride + layer.kernel)
            F = layer.filters
            r[_C_NR] = 16 if F % 16 == 0 else 8 if F % 8 == 0 else 0  # 0: the im2col path
            r[_C_TOFF] = toff
            if r[_C_NR]:
                toff += F * layer.kernel * layer.kernel * shape[2]
        elif isinstance(layer, Dense):
            r[_C_OP] = OP_DENSE
            r[_C_HO], r[_C_WO], r[_C_CO] = 1, 1, layer.units
        elif isinstance(layer, Activation):
            r[_C_OP] = OP_ACT
            r[_C_ACT] = SAMPLER_CODES[layer.name]
            r[_C_HO], r[_C_WO], r[_C_CO] = r[_C_H], r[_C_W], r[_C_C]
            r[_C_NR] = 1 if len(shape) == 3 else 0  # spatial (image-major) or flat (row-major) values
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
    return np.array(rows, np.int64).reshape(-1, _NCOL), toff


def _offsets(ops, tbuf):
    """int64 offsets of each register-blocked convolution (sets the ops' ``POFF`` column).

    At ``toff``: the patch offsets ``(kh*Wp + kw)*C + c`` for ``q = (kh, kw, c)``; at ``poff`` (after
    ``tbuf``): the corner ``(i*S*Wp + j*S)*C`` of each output position ``(i, j)`` row-major.
    """
    parts = [np.zeros(max(int(tbuf), 1), np.int64)]
    off = parts[0]
    p = off.size
    for r in ops:
        if r[_C_OP] == OP_CONV and r[_C_NR] > 0:
            K, C, Wp, S = int(r[_C_K]), int(r[_C_C]), int(r[_C_WP]), int(r[_C_S])
            q = np.arange(K * K * C)
            kh, rest = np.divmod(q, K * C)
            kw, c = np.divmod(rest, C)
            off[r[_C_TOFF]: r[_C_TOFF] + q.size] = (kh * Wp + kw) * C + c
            i, j = np.divmod(np.arange(int(r[_C_HO] * r[_C_WO])), int(r[_C_WO]))
            parts.append(((i * S * Wp + j * S) * C).astype(np.int64))
            r[_C_POFF] = p
            p += parts[-1].size
    return np.concatenate(parts)


class LayerNet(NamedTuple):
    """The program and the draw of a layer-sequence plan (one Numba namedtuple argument).

    ``ops``: the program (:func:`_program`); ``pscale``/``trunc``: per-parameter scale and truncation;
    ``mode``: 0 gaussian, 1 uniform, 2 truncated normal; ``group``: images per group; ``buf``, ``qbuf``,
    ``pbuf``, ``tbuf``: float32 scratch sizes (values, padded images, im2col, transposed conv weights);
    ``zpad``: zeros after the parameters (bias-free layers); ``spatial_in``: image input; ``off``: int64
    patch offsets of the register-blocked convolutions (at ``toff``: ``(kh*Wp + kw)*C + c`` for ``q``).
    """

    ops: np.ndarray
    pscale: np.ndarray
    trunc: np.ndarray
    mode: int
    group: int
    buf: int
    qbuf: int
    pbuf: int
    tbuf: int
    zpad: int
    spatial_in: bool
    off: np.ndarray


class LayerRows(NamedTuple):
    """The input images in kernel order: ``X (rows, n_inputs)`` (train rows, then key rows)."""

    X: np.ndarray
    n0: int
    nk: int
    labels: np.ndarray
    n_words: int


@jit
def _draw_truncated(rk, index, trunc, unit, n_params):
    """Unit draws with truncated parameters (|z| <= 2, rejected normals skipped; the model's rule)."""
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
def _transpose_conv_weights(ops, P, Wt):
    """``Wt[toff + q*F + f] = W[f, q]`` for every convolution of the register-blocked path."""
    for o in range(ops.shape[0]):
        if ops[o, _C_OP] == OP_CONV and ops[o, _C_NR] > 0:
            F = ops[o, _C_CO]
            q_n = ops[o, _C_K] * ops[o, _C_K] * ops[o, _C_C]
            woff, toff = ops[o, _C_WOFF], ops[o, _C_TOFF]
            for f in range(F):
                for q in range(q_n):
                    Wt[toff + q * F + f] = P[woff + f * q_n + q]


@jit(inline="always")
def _conv_fast(ops, o, A, gn, P, Wt, Off, Z):
    """Convolution ``o`` on the padded images ``A [n][Hp][Wp][C]`` into ``Z [n][Ho][Wo][F]`` (register blocks)."""
    Hp, Wp, C = ops[o, _C_HP], ops[o, _C_WP], ops[o, _C_C]
    Ho, Wo, F = ops[o, _C_HO], ops[o, _C_WO], ops[o, _C_CO]
    K, nr = ops[o, _C_K], ops[o, _C_NR]
    toff, boff = ops[o, _C_TOFF], ops[o, _C_BOFF]
    q_n = K * K * C
    npos = Ho * Wo
    poff = ops[o, _C_POFF]
    for n in range(gn):
        aoff = n * Hp * Wp * C
        for f0 in range(0, F, nr):
            t = 0
            while t < npos:  # blocks of consecutive output positions (row-major, across output rows)
                nj = 8 if t + 8 <= npos else (4 if t + 4 <= npos else (2 if t + 2 <= npos else 1))
                _cblock(nr, nj, A, aoff, poff + t, q_n, Wt, toff + f0, F, Z, (n * npos + t) * F + f0, F,
                        P, boff + f0, Off, toff)
                t += nj


@jit(inline="always")
def _pad_images(A, gn, H, W, C, Hp, Wp, ph, pw, D):
    """``D [n][Hp][Wp][C]``: the images ``A [n][H][W][C]`` at ``(ph, pw)`` in zeros."""
    zero = np.float32(0.0)
    for t in range(gn * Hp * Wp * C):
        D[t] = zero
    for n in range(gn):
        for h in range(H):
            src = ((n * H + h) * W) * C
            dst = ((n * Hp + h + ph) * Wp + pw) * C
            for t in range(W * C):
                D[dst + t] = A[src + t]


@jit(inline="always")
def _conv_im2col(ops, o, A, gn, P, Pm, T, Z):
    """Convolution ``o`` by im2col ``Pm [q][r]`` and the dense micro-kernel (filters not a multiple of 8)."""
    Hp, Wp, C = ops[o, _C_HP], ops[o, _C_WP], ops[o, _C_C]
    Ho, Wo, F = ops[o, _C_HO], ops[o, _C_WO], ops[o, _C_CO]
    K, S = ops[o, _C_K], ops[o, _C_S]
    nrow = gn * Ho * Wo
    rso = _pad(nrow)
    zero = np.float32(0.0)
    for kh in range(K):
        for kw in range(K):
            for c in range(C):
                base = ((kh * K + kw) * C + c) * rso
                t = 0
                for n in range(gn):
                    for i in range(Ho):
                        for j in range(Wo):
                            Pm[base + t] = A[((n * Hp + i * S + kh) * Wp + j * S + kw) * C + c]
                            t += 1
                for t2 in range(nrow, rso):
                    Pm[base + t2] = zero
    dense_rows(P, ops[o, _C_WOFF], K * K * C, F, Pm, rso, 0, rso, T, rso, P, ops[o, _C_BOFF])
    for r in range(nrow):
        for f in range(F):
            Z[r * F + f] = T[f * rso + r]


@jit(inline="always")
def _pool(A, gn, H, W, C, K, Ho, Wo, Z, is_max):
    inv = np.float32(K * K)
    for n in range(gn):
        for i in range(Ho):
            for j in range(Wo):
                dst = ((n * Ho + i) * Wo + j) * C
                for c in range(C):
                    src = ((n * H + i * K) * W + j * K) * C + c
                    if is_max:
                        m = A[src]
                        for kh in range(K):
                            for kw in range(K):
                                v = A[src + (kh * W + kw) * C]
                                if v > m:
                                    m = v
                        Z[dst + c] = m
                    else:
                        s = np.float32(0.0)
                        for kh in range(K):
                            for kw in range(K):
                                s = s + A[src + (kh * W + kw) * C]
                        Z[dst + c] = s / inv


@jit(inline="always")
def _gap(A, gn, H, W, C, rso, Z):
    """Image-major ``A`` to row-major channel means ``Z[c * rso + n]``."""
    inv = np.float32(H * W)
    for c in range(C):
        for n in range(gn):
            s = np.float32(0.0)
            for p in range(H * W):
                s = s + A[(n * H * W + p) * C + c]
            Z[c * rso + n] = s / inv


@jit(inline="always")
def _flatten(A, gn, d, rso, Z):
    """Image-major ``A [n][d]`` to row-major ``Z[k * rso + n]``.

    The padding rows ``gn .. rso-1`` keep whatever finite values they hold (their outputs are never read).
    """
    for n in range(gn):
        for k in range(d):
            Z[k * rso + n] = A[n * d + k]


@jit
def _run_group(ops, net_off, P, Wt, X, g0, gn, spatial_in, bufs, Q, Pm, T):
    """The program on images ``g0 .. g0+gn-1``; returns the buffer holding the outputs (row-major).

    Spatial values are image-major ``[n][h][w][c]``; flat values row-major ``[k][row]`` (rows padded
    to a multiple of ``ROW_BLOCK``) for the dense micro-kernel.
    """
    d0 = X.shape[1]
    cur = 0
    if spatial_in:
        for n in range(gn):
            for t in range(d0):
                bufs[0, n * d0 + t] = X[g0 + n, t]
    else:
        rs0 = _pad(gn)
        for k in range(d0):
            for n in range(gn):
                bufs[0, k * rs0 + n] = X[g0 + n, k]
            for t in range(gn, rs0):
                bufs[0, k * rs0 + t] = np.float32(0.0)
    rs = _pad(gn)
    for o in range(ops.shape[0]):
        op = ops[o, _C_OP]
        H, W, C = ops[o, _C_H], ops[o, _C_W], ops[o, _C_C]
        Ho, Wo, Co = ops[o, _C_HO], ops[o, _C_WO], ops[o, _C_CO]
        A = bufs[cur]
        Z = bufs[1 - cur]
        if op == OP_ACT:
            if ops[o, _C_NR] == 1:
                _activate(A, 0, 1, 0, gn * H * W * C, ops[o, _C_ACT])
            else:
                _activate(A, rs, C, 0, rs, ops[o, _C_ACT])
            continue
        if op == OP_CONV:
            Hp, Wp = ops[o, _C_HP], ops[o, _C_WP]
            src = A
            if Hp != H or Wp != W or ops[o, _C_PH] != 0 or ops[o, _C_PW] != 0:
                _pad_images(A, gn, H, W, C, Hp, Wp, ops[o, _C_PH], ops[o, _C_PW], Q)
                src = Q
            if ops[o, _C_NR] > 0:
                _conv_fast(ops, o, src, gn, P, Wt, net_off, Z)
            else:
                _conv_im2col(ops, o, src, gn, P, Pm, T, Z)
        elif op == OP_DENSE:
            rso = _pad(gn)
            dense_rows(P, ops[o, _C_WOFF], C, Co, A, rs, 0, rso, Z, rso, P, ops[o, _C_BOFF])
            rs = rso
        elif op == OP_AVGPOOL:
            _pool(A, gn, H, W, C, ops[o, _C_K], Ho, Wo, Z, False)
        elif op == OP_MAXPOOL:
            _pool(A, gn, H, W, C, ops[o, _C_K], Ho, Wo, Z, True)
        elif op == OP_GAP:
            rs = _pad(gn)
            _gap(A, gn, H, W, C, rs, Z)
        else:
            rs = _pad(gn)
            _flatten(A, gn, H * W * C, rs, Z)
        cur = 1 - cur
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
    Wt = np.zeros(net.tbuf, np.float32)
    bufs = np.zeros((2, net.buf), np.float32)
    Q = np.zeros(net.qbuf, np.float32)
    Pm = np.zeros(net.pbuf, np.float32)
    T = np.zeros(net.buf, np.float32)
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
        _transpose_conv_weights(ops, P, Wt)
        ok = True
        mg = np.float32(np.inf)
        g0 = 0
        while g0 < n0:
            gn = min(G, n0 - g0)
            b = _run_group(ops, net.off, P, Wt, X, g0, gn, net.spatial_in, bufs, Q, Pm, T)
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
                b = _run_group(ops, net.off, P, Wt, X, n0 + g0, gn, net.spatial_in, bufs, Q, Pm, T)
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
        ops, tbuf = _program(arch, n)
        pscale = np.empty(n, np.float32)
        trunc = np.zeros(n, np.bool_)
        for s in arch.param_blocks():
            pscale[s.offset:s.offset + s.block.size] = s.block.scale
            trunc[s.offset:s.offset + s.block.size] = s.block.truncated
        mode = {"gaussian": 0, "uniform": 1, "truncated_normal": 2}[arch.weights]
        widest = max(int(max(r[_C_H] * r[_C_W], r[_C_HO] * r[_C_WO], r[_C_HP] * r[_C_WP])) for r in ops)
        m_all = int(plan.train_rows.size + plan.key_rows.size)
        G = int(group or max(1, min(m_all, GROUP_ROWS // max(widest, 1))))
        buf, qbuf, pbuf = _pad_nb(G) * arch.n_inputs, 1, 1
        for r in ops:
            size_in = int(r[_C_H] * r[_C_W] * r[_C_C])
            size_out = int(r[_C_HO] * r[_C_WO] * r[_C_CO])
            buf = max(buf, _pad_nb(G) * size_in, _pad_nb(G) * size_out)  # row-major bounds image-major too
            if r[_C_OP] == OP_CONV:
                qbuf = max(qbuf, G * int(r[_C_HP] * r[_C_WP] * r[_C_C]))
                rso = _pad_nb(G * int(r[_C_HO] * r[_C_WO]))
                if r[_C_NR] == 0:
                    pbuf = max(pbuf, int(r[_C_K] ** 2 * r[_C_C]) * rso)
                    buf = max(buf, int(r[_C_CO]) * rso)
        zpad = max(int(r[_C_CO]) for r in ops) + 16
        off = _offsets(ops, tbuf)  # before ops is frozen into the tuple: sets the POFF column
        self.net = LayerNet(np.ascontiguousarray(ops), pscale, trunc, mode, G, int(buf), int(qbuf), int(pbuf),
                            max(int(tbuf), 1), zpad, len(arch.input_shape) == 3, off)
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
