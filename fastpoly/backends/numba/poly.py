"""Numba evaluation of networks: structured (sparse, layered) polynomial networks and dense ``Network`` s.

Structured networks (:class:`fastpoly.poly.structured.StructuredNetwork`) are
evaluated in float32 or float64, parallel over blocks of :data:`POINT_BLOCK`
points.  Each block keeps its activations in two scratch buffers laid out
``[neuron, point]`` (points contiguous, so the multiply-add loops vectorise
over points); no per-layer array for the whole batch is ever materialised.
Sums run in CSR storage order from the bias with unfused ``z = z + w*h``, as
in :func:`fastpoly.poly.structured.evaluate_structured_reference`; activations use
the same formulas (including the centered forms) and agree within
:mod:`fastpoly.tolerances`.  The activation dispatch is hoisted out of the
per-point loops (one branch-free loop per activation, per-neuron terms of the
centered forms computed once), and float32 ``exp``/``expm1``/``log1p``/``tanh``
come from :mod:`fastpoly.backends.numba.vecmath` (vectorisable, within a few ulp), so
LLVM vectorises those loops; float64 ``exp``/``expm1``/``log1p`` too (``tanh`` keeps libm).
Networks ending in an identity layer evaluate their last hidden layer fused into the
output layer (:func:`_fused_block`): same arithmetic, the hidden layer is never stored.

Dense networks follow :func:`fastpoly.network.forward_reference`: in float32
every step is the exact FMA ``z = fma(W[j, k], x[k], z)`` (bit-identical to the
reference for relu/sign/identity), in float64 the unfused ``z = z + x*W``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba.core import types
from numba.extending import overload

from fastpoly.activations import TABLE, codes_for
from fastpoly.backends.numba.jit import JIT_OPTIONS, fma, jit, pjit, prange
from fastpoly.backends.numba.vecmath import (
    exp_neg64,
    log1p_exp_neg32,
    log1p_small64,
    vexp,
    vexpm1,
    vlog1p,
    vsigmoid,
    vsoftplus,
    vtanh,
)

__all__ = ["POINT_BLOCK", "evaluate_structured", "evaluate_dense", "DENSE_CODES"]

#: activation name -> kernel code of the structured layers: every activation of the table with an
#: elementwise form (the names :data:`fastpoly.poly.structured.ACT` accepts; the same codes)
STRUCT_CODES = {name: a.code for name, a in TABLE.items() if a.elementwise is not None}

#: points per block (per scratch buffer row)
POINT_BLOCK = 256

_C = STRUCT_CODES
A_IDENTITY = _C["identity"]
A_RELU = _C["relu"]
A_SQUARE = _C["square"]
A_SOFTPLUS = _C["softplus"]
A_EXP = _C["exp"]
A_SIGMOID = _C["sigmoid"]
A_TANH = _C["tanh"]
A_SILU = _C["silu"]
A_GELU = _C["gelu"]

#: activations of dense layers the compiled dense path supports (others fall back to the reference)
DENSE_CODES = codes_for("evaluate", "numba")  # the activation table's support column

_SQRT2 = math.sqrt(2.0)


@jit(inline="always")
def _act(code, z):
    """Plain activation (same type in and out; float32 exp/log1p/tanh from :mod:`fastpoly.backends.numba.vecmath`)."""
    if code == A_IDENTITY:
        return z
    if code == A_RELU:
        return z if z > 0 else z * 0
    if code == A_SQUARE:
        return z * z
    if code == A_SOFTPLUS:
        return vsoftplus(z)
    if code == A_EXP:
        return vexp(z)
    if code == A_SIGMOID:
        return vsigmoid(z)
    if code == A_TANH:
        return vtanh(z)
    if code == A_SILU:
        return z * vsigmoid(z)
    # gelu = z * Phi(z), in float64 as the reference computes it (scipy's ndtr)
    zd = np.float64(z)
    return zd * _ndtr(zd)


@jit(inline="always")
def _ndtr(x):
    """Standard normal CDF in float64 (erfc form: accurate in both tails)."""
    return 0.5 * math.erfc(-x / _SQRT2)


#: 10-point Gauss-Legendre rule on [-1, 1] (the same nodes as fastpoly.poly.structured)
_GL_X = tuple(float(v) for v in np.polynomial.legendre.leggauss(10)[0])
_GL_W = tuple(float(v) for v in np.polynomial.legendre.leggauss(10)[1])
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@jit(inline="always")
def _c_ndtr(t, b):
    """Phi(b+t) - Phi(b) in float64 without cancellation (Gauss-Legendre for |t| <= 1)."""
    if abs(t) > 1.0:
        return _ndtr(b + t) - _ndtr(b)
    half = 0.5 * t
    mid = b + half
    q = 0.0
    for i in range(10):
        s = mid + half * _GL_X[i]
        q += _GL_W[i] * math.exp(-0.5 * s * s)
    return q * half * _INV_SQRT_2PI


@jit(inline="always")
def _centered(code, t, b):
    """``act(b + t) - act(b)`` with the cancellation-free formulas of :data:`fastpoly.poly.structured.CENTERED`."""
    if code == A_IDENTITY:
        return t
    if code == A_SQUARE:
        return t * ((b + b) + t)
    if code == A_SOFTPLUS:
        return vlog1p(vsigmoid(b) * vexpm1(t))
    if code == A_EXP:
        return vexp(b) * vexpm1(t)
    if code == A_SIGMOID:
        return vsigmoid(b + t) * vsigmoid(-b) * (-vexpm1(-t))
    if code == A_TANH:
        tb = vtanh(b)
        tt = vtanh(t)
        one = tb * 0 + 1
        return tt * (one - tb * tb) / (one + tb * tt)
    if code == A_SILU:
        # t*sigmoid(b+t) + b*(sigmoid(b+t) - sigmoid(b)), as fastpoly.poly.structured._c_silu
        sig_s = vsigmoid(b + t)
        dsig = sig_s * vsigmoid(-b) * (-vexpm1(-t))
        return t * sig_s + b * dsig
    if code == A_GELU:
        # t*Phi(b+t) + b*(Phi(b+t) - Phi(b)) in float64, as fastpoly.poly.structured._c_gelu
        td = np.float64(t)
        bd = np.float64(b)
        return td * _ndtr(bd + td) + bd * _c_ndtr(td, bd)
    return _act(code, b + t) - _act(code, b)


#: jit options of the overloads below (the policy without ``cache``, which overloads do not take)
_OV_OPTS: Any = {k: v for k, v in JIT_OPTIONS.items() if k != "cache"}


def _softplus_rows(z, z2, nb, tmp, pair):
    """``z[:nb] = softplus(z[:nb])``; with ``pair``, also ``z2[:nb] = softplus(-z[:nb])`` (jitted code only).

    ``softplus(v) = max(v, 0) + log1p(exp(-|v|))``, the second term computed once for ``v`` and
    ``-v`` (:func:`_softplus_pairs`); ``max(v, 0)`` as ``v if v > 0 else v * 0``.  See
    :func:`_ov_softplus_rows`.
    """
    raise NotImplementedError("_softplus_rows is only callable from jitted code")


@overload(_softplus_rows, jit_options=_OV_OPTS)
def _ov_softplus_rows(z, z2, nb, tmp, pair):
    """Implementation of :func:`_softplus_rows` by dtype.

    float32: one loop with :func:`~fastpoly.backends.numba.vecmath.log1p_exp_neg32`; float64:
    :func:`~fastpoly.backends.numba.vecmath.exp_neg64` then
    :func:`~fastpoly.backends.numba.vecmath.log1p_small64` (the bits of ``log1p_exp_neg64``) in
    two loops: LLVM vectorises each, not their composition.
    """
    if z.dtype == types.float32:
        def impl32(z, z2, nb, tmp, pair):
            for t in range(nb):
                tmp[t] = log1p_exp_neg32(abs(z[t]))
            if pair:
                for t in range(nb):
                    v = z[t]
                    u = -v
                    z2[t] = (u if u > 0 else u * 0) + tmp[t]
                    z[t] = (v if v > 0 else v * 0) + tmp[t]
            else:
                for t in range(nb):
                    v = z[t]
                    z[t] = (v if v > 0 else v * 0) + tmp[t]
        return impl32

    def impl64(z, z2, nb, tmp, pair):
        for t in range(nb):
            tmp[t] = exp_neg64(abs(z[t]))
        if pair:
            for t in range(nb):
                v = z[t]
                lg = log1p_small64(tmp[t])
                u = -v
                z2[t] = (u if u > 0 else u * 0) + lg
                z[t] = (v if v > 0 else v * 0) + lg
        else:
            for t in range(nb):
                v = z[t]
                z[t] = (v if v > 0 else v * 0) + log1p_small64(tmp[t])
    return impl64


@jit(inline="always")
def _act_loop(code, z, nb, tmp):
    """``z[:nb] = act(z[:nb])`` with the activation dispatch hoisted out of the (vectorised) point loop.

    Softplus is :func:`_softplus_rows`: ``max(z, 0) + log1p(exp(-|z|))`` with the second term in
    one piece (:func:`~fastpoly.backends.numba.vecmath.log1p_exp_neg32` / ``log1p_exp_neg64``,
    within 3 ulp; the whole within 4 ulp of softplus, inside the ``KAPPA = 8`` ulps the
    certified bounds allow).
    """
    if code == A_IDENTITY:
        return
    if code == A_RELU:
        for t in range(nb):
            v = z[t]
            z[t] = v if v > 0 else v * 0
    elif code == A_SOFTPLUS:
        _softplus_rows(z, z, nb, tmp, False)
    elif code == A_EXP:
        for t in range(nb):
            z[t] = vexp(z[t])
    elif code == A_SIGMOID:
        for t in range(nb):
            z[t] = vsigmoid(z[t])
    elif code == A_SILU:
        for t in range(nb):
            v = z[t]
            z[t] = v * vsigmoid(v)
    elif code == A_TANH:
        for t in range(nb):
            z[t] = vtanh(z[t])
    elif code == A_SQUARE:
        for t in range(nb):
            v = z[t]
            z[t] = v * v
    else:
        for t in range(nb):
            z[t] = _act(code, z[t])


@jit(inline="always")
def _centered_loop(code, z, nb, b):
    """``z[:nb] = act(b + z[:nb]) - act(b)`` (centered forms) with the per-neuron terms hoisted."""
    if code == A_SOFTPLUS:
        sb = vsigmoid(b)
        for t in range(nb):
            z[t] = sb * vexpm1(z[t])
        for t in range(nb):
            z[t] = vlog1p(z[t])
    elif code == A_EXP:
        eb = vexp(b)
        for t in range(nb):
            z[t] = eb * vexpm1(z[t])
    elif code == A_SIGMOID:
        snb = vsigmoid(-b)
        for t in range(nb):
            v = z[t]
            z[t] = vsigmoid(b + v) * snb * (-vexpm1(-v))
    elif code == A_SILU:
        snb = vsigmoid(-b)
        for t in range(nb):
            v = z[t]
            sig_s = vsigmoid(b + v)
            z[t] = v * sig_s + b * (sig_s * snb * (-vexpm1(-v)))
    elif code == A_TANH:
        tb = vtanh(b)
        one = tb * 0 + 1
        c = one - tb * tb
        for t in range(nb):
            tt = vtanh(z[t])
            z[t] = tt * c / (one + tb * tt)
    elif code == A_SQUARE:
        b2 = b + b
        for t in range(nb):
            v = z[t]
            z[t] = v * (b2 + v)
    elif code != A_IDENTITY:
        for t in range(nb):
            z[t] = _centered(code, z[t], b)


@jit(inline="always")
def _presum(z, nb, bj, p0, p1, data, indices, hin):
    """``z[:nb] = bj + sum_p data[p] * hin[indices[p]]`` over ``p0 .. p1-1``, summed in storage order.

    One or two terms (every neuron of a gate layer) run in a single pass: the same roundings.
    """
    n = p1 - p0
    if n == 1:
        w = data[p0]
        src = hin[indices[p0]]
        for t in range(nb):
            z[t] = bj + w * src[t]
    elif n == 2:
        w = data[p0]
        src = hin[indices[p0]]
        w2 = data[p0 + 1]
        src2 = hin[indices[p0 + 1]]
        for t in range(nb):
            z[t] = (bj + w * src[t]) + w2 * src2[t]
    else:
        for t in range(nb):
            z[t] = bj
        for p in range(p0, p1):
            w = data[p]
            src = hin[indices[p]]
            for t in range(nb):
                z[t] = z[t] + w * src[t]


@jit(inline="always")
def _presum_paired(z, nb, bj, p0, p1, data, indices, hin, epair):
    """Like :func:`_presum`, with each flagged pair of entries ``(p, p + 1)`` added as ``w_p * (h - h')``."""
    for t in range(nb):
        z[t] = bj
    p = p0
    while p < p1:
        w = data[p]
        src = hin[indices[p]]
        if epair[p] != 0:
            src2 = hin[indices[p + 1]]
            for t in range(nb):
                z[t] = z[t] + w * (src[t] - src2[t])
            p += 2
        else:
            for t in range(nb):
                z[t] = z[t] + w * src[t]
            p += 1


@jit(inline="always")
def _hidden_layer(li, hin, hout, nb, offs, indptr, indices, data, bias, shift, has_shift, fan_out, codes, tmp,
                  epair):
    """Hidden layer ``li`` of a structured network on ``nb`` points: ``hout[j] = act(b_j + sum_p w_p hin[i_p])``.

    In the output layer, entries flagged in ``epair`` (:func:`_output_pairs`) add
    ``w * (h_j - h_{j+1})`` for the two terms ``w h_j - w h_{j+1}``, as the fused kernel does.
    """
    pb = offs[li, 0]  # first row of this layer in the concatenated indptr
    nb_off = offs[li, 1]  # offset into bias/shift/codes arrays (neurons)
    code = codes[li]
    centered = has_shift[li]
    for j in range(fan_out[li]):
        z = hout[j]
        if epair.size and li == offs.shape[0] - 1:
            _presum_paired(z, nb, bias[nb_off + j], indptr[pb + j], indptr[pb + j + 1], data, indices, hin, epair)
        else:
            _presum(z, nb, bias[nb_off + j], indptr[pb + j], indptr[pb + j + 1], data, indices, hin)
        if centered:
            _centered_loop(code, z, nb, shift[nb_off + j])
        else:
            _act_loop(code, z, nb, tmp)


@jit(inline="always")
def _structured_block(X, r0, nb, n_layers, offs, indptr, indices, data, bias, shift, has_shift, fan_out,
                      codes, bufs, tmp, epair, out):
    """Evaluate rows ``r0 .. r0+nb-1`` of ``X`` through every layer; write the outputs."""
    n_in = X.shape[1]
    h = bufs[0]
    for k in range(n_in):
        for t in range(nb):
            h[k, t] = X[r0 + t, k]
    cur = 0
    for li in range(n_layers):
        hin = bufs[cur]
        hout = bufs[1 - cur]
        _hidden_layer(li, hin, hout, nb, offs, indptr, indices, data, bias, shift, has_shift, fan_out, codes, tmp,
                      epair)
        cur = 1 - cur
    h = bufs[cur]
    for j in range(out.shape[1]):
        for t in range(nb):
            out[r0 + t, j] = h[j, t]


@pjit
def _structured_kernel(X, n_layers, offs, indptr, indices, data, bias, shift, has_shift, fan_out, codes,
                       maxw, block, epair, out):
    N = X.shape[0]
    n_blocks = (N + block - 1) // block
    n_lanes = min(n_blocks, 4 * 64)
    for lane in prange(n_lanes):
        bufs = np.empty((2, maxw, block), X.dtype)
        tmp = np.empty(block, X.dtype)
        for bi in range(lane, n_blocks, n_lanes):
            r0 = bi * block
            nb = min(block, N - r0)
            _structured_block(X, r0, nb, n_layers, offs, indptr, indices, data, bias, shift, has_shift,
                              fan_out, codes, bufs, tmp, epair, out)


@jit(inline="always")
def _accumulate(acc, z, nb, q0, q1, rowidx, cvals):
    """``acc[rowidx[q]] += cvals[q] * z`` for ``q`` in ``q0 .. q1-1`` (one neuron's output weights)."""
    for q in range(q0, q1):
        w = cvals[q]
        a = acc[rowidx[q]]
        for t in range(nb):
            a[t] = a[t] + w * z[t]


@jit(inline="always")
def _fused_block(X, r0, nb, n_layers, offs, indptr, indices, data, bias, shift, has_shift, fan_out, codes,
                 bufs, zrow, zrow2, tmp, acc, colptr, rowidx, cvals, pair, opair, out):
    """Like :func:`_structured_block`, with the last hidden layer fused into the (identity) output layer.

    The last hidden layer is never stored: each of its neurons is computed into ``zrow`` and
    at once added, with its output weights, to the output accumulators ``acc`` (the output
    layer in CSC form).  Every output row's columns are increasing (checked when the arrays
    are built), so each output still sums its terms in CSR storage order from its bias:
    the same arithmetic as :func:`_structured_block`.  Softplus pairs (``pair[j] != 0``, see
    :func:`_softplus_pairs`) evaluate ``exp`` and ``log1p`` once for both neurons, with the
    same bits as evaluating them one by one.
    """
    n_in = X.shape[1]
    h = bufs[0]
    for k in range(n_in):
        for t in range(nb):
            h[k, t] = X[r0 + t, k]
    cur = 0
    for li in range(n_layers - 2):
        hin = bufs[cur]
        hout = bufs[1 - cur]
        _hidden_layer(li, hin, hout, nb, offs, indptr, indices, data, bias, shift, has_shift, fan_out, codes, tmp,
                      opair[:0])
        cur = 1 - cur
    hin = bufs[cur]
    lo = n_layers - 1
    ob = offs[lo, 1]
    for o in range(acc.shape[0]):
        bo = bias[ob + o]
        a = acc[o]
        for t in range(nb):
            a[t] = bo
    li = n_layers - 2
    pb = offs[li, 0]
    nb_off = offs[li, 1]
    code = codes[li]
    centered = has_shift[li]
    z = zrow
    nj = fan_out[li]
    j = 0
    while j < nj:
        _presum(z, nb, bias[nb_off + j], indptr[pb + j], indptr[pb + j + 1], data, indices, hin)
        if pair[j] != 0:
            # softplus pair (see _softplus_pairs): neuron j+1's pre-activation is -z, bit for bit,
            # and both share log1p(exp(-|z|))
            z2 = zrow2
            _softplus_rows(z, z2, nb, tmp, True)
        else:
            if centered:
                _centered_loop(code, z, nb, shift[nb_off + j])
            else:
                _act_loop(code, z, nb, tmp)
            if opair[j] != 0:
                z2 = zrow2
                _presum(z2, nb, bias[nb_off + j + 1], indptr[pb + j + 1], indptr[pb + j + 2], data, indices, hin)
                if centered:
                    _centered_loop(code, z2, nb, shift[nb_off + j + 1])
                else:
                    _act_loop(code, z2, nb, tmp)
        if opair[j] != 0:
            # output pair (see _output_pairs): w h_j - w h_{j+1} as w (h_j - h_{j+1})
            for t in range(nb):
                z[t] = z[t] - zrow2[t]
            _accumulate(acc, z, nb, colptr[j], colptr[j + 1], rowidx, cvals)
            j += 2
        elif pair[j] != 0:
            n1 = colptr[j + 1] - colptr[j]
            if pair[j] == 2:  # same output rows: one pass, each row still adds z before z2
                for q in range(colptr[j], colptr[j + 1]):
                    w = cvals[q]
                    w2 = cvals[q + n1]
                    a = acc[rowidx[q]]
                    for t in range(nb):
                        a[t] = (a[t] + w * z[t]) + w2 * zrow2[t]
            else:
                _accumulate(acc, z, nb, colptr[j], colptr[j + 1], rowidx, cvals)
                _accumulate(acc, zrow2, nb, colptr[j + 1], colptr[j + 2], rowidx, cvals)
            j += 2
        else:
            _accumulate(acc, z, nb, colptr[j], colptr[j + 1], rowidx, cvals)
            j += 1
    for o in range(acc.shape[0]):
        a = acc[o]
        for t in range(nb):
            out[r0 + t, o] = a[t]


@pjit
def _structured_fused_kernel(X, n_layers, offs, indptr, indices, data, bias, shift, has_shift, fan_out, codes,
                             maxw, block, colptr, rowidx, cvals, pair, opair, out):
    N = X.shape[0]
    n_blocks = (N + block - 1) // block
    n_lanes = min(n_blocks, 4 * 64)
    n_out = out.shape[1]
    for lane in prange(n_lanes):
        bufs = np.empty((2, maxw, block), X.dtype)
        zrow = np.empty(block, X.dtype)
        zrow2 = np.empty(block, X.dtype)
        tmp = np.empty(block, X.dtype)
        acc = np.empty((n_out, block), X.dtype)
        for bi in range(lane, n_blocks, n_lanes):
            r0 = bi * block
            nb = min(block, N - r0)
            _fused_block(X, r0, nb, n_layers, offs, indptr, indices, data, bias, shift, has_shift, fan_out,
                         codes, bufs, zrow, zrow2, tmp, acc, colptr, rowidx, cvals, pair, opair, out)


class _StructuredArrays:
    """Concatenated kernel arrays of a structured network in one dtype."""

    def __init__(self, snet, dtype, pairs=True):
        layers = snet.layers
        self.n_layers = len(layers)
        ip, ix, da, bi, sh, hs, fo, co, offs = [], [], [], [], [], [], [], [], []
        row0 = nnz0 = neu0 = 0
        for L in layers:
            offs.append((row0, neu0))
            ip.append(L.indptr[:-1] + nnz0)
            row0 += L.fan_out
            nnz0 += L.nnz
            neu0 += L.fan_out
            ix.append(L.indices)
            da.append(L.data)
            bi.append(L.bias)
            sh.append(L.shift if L.shift is not None else np.zeros(L.fan_out))
            hs.append(L.shift is not None)
            fo.append(L.fan_out)
            co.append(STRUCT_CODES[L.activation])
        ip.append(np.array([nnz0]))
        self.indptr = np.ascontiguousarray(np.concatenate(ip), dtype=np.int64)
        self.indices = np.ascontiguousarray(np.concatenate(ix), dtype=np.int64)
        self.data = np.ascontiguousarray(np.concatenate(da), dtype=dtype)
        self.bias = np.ascontiguousarray(np.concatenate(bi), dtype=dtype)
        self.shift = np.ascontiguousarray(np.concatenate(sh), dtype=dtype)
        self.has_shift = np.array(hs, np.bool_)
        self.fan_out = np.array(fo, np.int64)
        self.codes = np.array(co, np.int64)
        self.offs = np.array(offs, np.int64).reshape(-1, 2)
        self.maxw = int(max([snet.n_inputs] + fo))
        self.n_out = int(fo[-1])
        self.fused = _fusable(layers)
        self.epair = np.zeros(0, np.int8)
        if self.fused:
            last = layers[-1]
            rows = np.repeat(np.arange(last.fan_out), np.diff(last.indptr))
            order = np.lexsort((rows, last.indices))  # by column, then row
            self.colptr = np.zeros(last.fan_in + 1, np.int64)
            np.add.at(self.colptr, last.indices + 1, 1)
            self.colptr = np.cumsum(self.colptr)
            self.rowidx = np.ascontiguousarray(rows[order], dtype=np.int64)
            self.cvals = np.ascontiguousarray(last.data[order], dtype=dtype)
            # the last hidden layer is not stored: scratch rows for the layers before it only
            self.maxw = int(max([snet.n_inputs] + fo[:-2]))
            self.opair = _output_pairs(layers[-2], self.colptr, self.rowidx, self.cvals)
            self.pair = _softplus_pairs(layers[-2], self.colptr, self.rowidx, self.opair) if pairs else \
                np.zeros(layers[-2].fan_out, np.int8)
            if self.opair.any():
                # the same pairs, flagged on the first entry of each pair in the output rows (unfused path)
                first = np.zeros(last.nnz, np.int8)
                first[self.opair[last.indices] != 0] = 1
                self.epair = np.concatenate([np.zeros(nnz0 - last.nnz, np.int8), first])


#: hidden activations whose networks may sum paired output terms as ``w (h_j - h_{j+1})``: those whose
#: kernels agree with the reference within tolerance only (identity, relu and square stay bit-identical)
PAIRED_OUTPUT_ACTS = frozenset(STRUCT_CODES) - {"identity", "relu", "square"}


def _output_pairs(layer, colptr, rowidx, cvals):
    """Per neuron of the fused layer: 1 where neurons ``j`` and ``j + 1`` are an output pair, else 0.

    An output pair: the two neurons feed the same outputs with exactly negated weights (the
    ``+-`` halves of a multiplication gate, ``w (s(b+u) - s(b-u))`` ...).  Each output then adds
    ``w * (h_j - h_{j+1})`` (one subtraction, one product) in place of ``w h_j`` and
    ``(-w) h_{j+1}``: half the output multiply-adds.  Only for activations in
    :data:`PAIRED_OUTPUT_ACTS`.

    Rounding: the reference sums ``bias + sum_i w_i h_i`` left to right, and the certified
    bound charges every term ``gamma(K + 3)`` relative (``K`` terms; :mod:`fastpoly.poly.bounds`).
    With pairs each of the two original terms goes through the subtraction, the product and
    at most ``K / 2 + 1`` additions, ``K / 2 + 3 <= K + 3`` roundings: the computed sum is
    still ``bias (1 + t_0) + sum_i w_i h_i (1 + t_i)`` with ``|t_i| <= gamma(K + 3)``, so the
    certified bound holds unchanged (the fused and unfused kernels pair the same terms and
    agree bit for bit; ``tests/poly`` checks both against the reference and the bounds).
    """
    n = layer.fan_out
    pair = np.zeros(n, np.int8)
    if layer.activation not in PAIRED_OUTPUT_ACTS:
        return pair
    j = 0
    while j + 1 < n:
        q0, q1, q2 = colptr[j], colptr[j + 1], colptr[j + 2]
        if (q1 > q0 and q1 - q0 == q2 - q1 and np.array_equal(rowidx[q0:q1], rowidx[q1:q2])
                and np.array_equal(cvals[q1:q2], -cvals[q0:q1])):
            pair[j] = 1
            j += 2
        else:
            j += 1
    return pair


def _softplus_pairs(layer, colptr, rowidx, opair):
    """Per neuron of the fused layer: 1 or 2 where neurons ``j`` and ``j + 1`` are a softplus pair, else 0.

    A pair is two uncentered softplus neurons whose biases and weights (same inputs, same
    order) are exactly negated, as the compiler emits them for the ``+-`` halves of a gate.
    Their sums are computed in the same order, and rounding to nearest is odd-symmetric, so
    neuron ``j + 1``'s pre-activation is ``-z`` with ``z`` neuron ``j``'s (at most the sign of
    a zero differs, which ``max(., 0) + log1p(...)`` does not see).  With
    ``softplus(z) = max(z, 0) + log1p(exp(-|z|))`` the two share ``log1p(exp(-|z|))``: one
    ``exp`` and one ``log1p`` for two neurons, the same bits as evaluating both.  (In real
    arithmetic this is ``softplus(-z) = softplus(z) - z``; the kernel keeps the float form, so
    the certified bounds, which assume each neuron is evaluated, hold unchanged.)  ``2``:
    the two neurons also feed the same outputs (one accumulation pass for both).  A pair
    never straddles an output pair (:func:`_output_pairs`): both step over the same ``j``.
    """
    n = layer.fan_out
    pair = np.zeros(n, np.int8)
    if layer.activation != "softplus" or layer.shift is not None:
        return pair
    ip, ix, da, bi = layer.indptr, layer.indices, np.asarray(layer.data), np.asarray(layer.bias)
    j = 0
    while j + 1 < n:
        if opair[j + 1] != 0:  # j + 1 starts an output pair: j stays single
            j += 1
            continue
        a0, a1, b1 = ip[j], ip[j + 1], ip[j + 2]
        if (a1 - a0 == b1 - a1 and bi[j + 1] == -bi[j] and np.array_equal(ix[a0:a1], ix[a1:b1])
                and np.array_equal(da[a1:b1], -da[a0:a1])):
            same = (colptr[j + 1] - colptr[j] == colptr[j + 2] - colptr[j + 1]
                    and np.array_equal(rowidx[colptr[j]:colptr[j + 1]], rowidx[colptr[j + 1]:colptr[j + 2]]))
            pair[j] = 2 if same else 1
            j += 2
        else:
            j += 2 if opair[j] != 0 else 1
    return pair


def _fusable(layers):
    """Whether the last hidden layer can be fused into the output layer (see :func:`_fused_block`).

    Needs at least one hidden layer, an identity output layer without shift, and every output
    row's column indices strictly increasing (so CSC order keeps each row's storage order).
    """
    if len(layers) < 2:
        return False
    last = layers[-1]
    if last.activation != "identity" or last.shift is not None:
        return False
    for j in range(last.fan_out):
        cols = last.indices[last.indptr[j]:last.indptr[j + 1]]
        if cols.size > 1 and not np.all(np.diff(cols) > 0):
            return False
    return True


def evaluate_structured(snet, X, dtype, block=POINT_BLOCK, prepared=None):
    """Outputs ``(N, n_outputs)`` of a structured network on the rows of ``X`` in ``dtype``.

    Parameters
    ----------
    snet : fastpoly.poly.structured.StructuredNetwork
    X : array_like (N, n_inputs)
    dtype : numpy.float32 or numpy.float64
    block : int
        Points per block.
    prepared : _StructuredArrays or None
        Reuse arrays built for the same network and dtype.
    """
    dtype = np.dtype(dtype)
    arr = prepared if prepared is not None else _StructuredArrays(snet, dtype)
    X = np.ascontiguousarray(X, dtype=dtype)
    out = np.empty((X.shape[0], arr.n_out), dtype)
    if X.shape[0] and arr.fused:
        _structured_fused_kernel(X, arr.n_layers, arr.offs, arr.indptr, arr.indices, arr.data, arr.bias,
                                 arr.shift, arr.has_shift, arr.fan_out, arr.codes, arr.maxw, int(block),
                                 arr.colptr, arr.rowidx, arr.cvals, arr.pair, arr.opair, out)
    elif X.shape[0]:
        _structured_kernel(X, arr.n_layers, arr.offs, arr.indptr, arr.indices, arr.data, arr.bias, arr.shift,
                           arr.has_shift, arr.fan_out, arr.codes, arr.maxw, int(block), arr.epair, out)
    return out


# --- dense networks -------------------------------------------------------------------------


@jit(inline="always")
def _dense_act(code, v):
    if code == 0:
        return v if not v < 0 else v * 0
    if code == 3:
        if v > 0:
            return v * 0 + 1
        if v < 0:
            return v * 0 - 1
        return v
    if code == 1:
        return math.tanh(np.float64(v))
    if code == 2:
        return math.erf(np.float64(v))
    return v


@pjit
def _dense_kernel(X, Ws, woffs, bs, boffs, fan_in, fan_out, codes, maxw, block, use_fma, out):
    N = X.shape[0]
    n_layers = fan_in.shape[0]
    n_blocks = (N + block - 1) // block
    for bi in prange(n_blocks):
        r0 = bi * block
        nb = min(block, N - r0)
        bufs = np.empty((2, maxw, block), X.dtype)
        h = bufs[0]
        for k in range(X.shape[1]):
            for t in range(nb):
                h[k, t] = X[r0 + t, k]
        cur = 0
        for li in range(n_layers):
            hin = bufs[cur]
            hout = bufs[1 - cur]
            fi = fan_in[li]
            for j in range(fan_out[li]):
                z = hout[j]
                bj = bs[boffs[li] + j]
                for t in range(nb):
                    z[t] = bj
                for k in range(fi):
                    w = Ws[woffs[li] + j * fi + k]
                    src = hin[k]
                    if use_fma:
                        for t in range(nb):
                            z[t] = fma(src[t], w, z[t])
                    else:
                        for t in range(nb):
                            z[t] = z[t] + src[t] * w
                if codes[li] != 4:
                    for t in range(nb):
                        z[t] = _dense_act(codes[li], z[t])
            cur = 1 - cur
        h = bufs[cur]
        for j in range(out.shape[1]):
            for t in range(nb):
                out[r0 + t, j] = h[j, t]


def evaluate_dense(net, X, dtype, block=POINT_BLOCK):
    """Outputs of a dense :class:`fastpoly.Network` following :func:`fastpoly.network.forward_reference`.

    Returns None when a layer's activation has no compiled form (the caller then uses the reference).
    """
    dtype = np.dtype(dtype)
    if any(L.activation not in DENSE_CODES for L in net.layers):
        return None
    Ws = np.ascontiguousarray(np.concatenate([L.W.astype(dtype).reshape(-1) for L in net.layers]))
    bs = np.ascontiguousarray(np.concatenate([L.b.astype(dtype).reshape(-1) for L in net.layers]))
    woffs = np.cumsum([0] + [L.W.size for L in net.layers])[:-1].astype(np.int64)
    boffs = np.cumsum([0] + [L.b.size for L in net.layers])[:-1].astype(np.int64)
    fan_in = np.array([L.fan_in for L in net.layers], np.int64)
    fan_out = np.array([L.fan_out for L in net.layers], np.int64)
    codes = np.array([DENSE_CODES[L.activation] for L in net.layers], np.int64)
    X = np.ascontiguousarray(X, dtype=dtype)
    out = np.empty((X.shape[0], net.n_outputs), dtype)
    maxw = int(max(net.widths))
    if X.shape[0]:
        _dense_kernel(X, Ws, woffs, bs, boffs, fan_in, fan_out, codes, maxw, int(block),
                      dtype == np.float32, out)
    return out
