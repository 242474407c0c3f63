"""The generic layer-sequence Numba trainer (CNNs): bit-identical to :mod:`fastpoly.sgd.reference`.

The fused MLP trainer (:mod:`fastpoly.backends.numba.train`) stays the fast path of dense
networks; an architecture with any other layer (a 2-D convolution, average / max / global
pooling, flatten) trains here.  The network is compiled into a *program*: one int64 row per
layer (:data:`fastpoly.backends.layer_program.COLUMNS`: kind, input and output shapes, kernel, stride, padding, parameter
offsets, buffer offsets), which one Numba kernel interprets per layer and per row.  Runs are
parallel (``prange`` over contiguous lanes, like the MLP trainer); each lane trains its runs one
after another with its own scratch (activations and errors of every layer for a minibatch).

Arithmetic: every sum keeps the order of the layers' NumPy references
(:mod:`fastpoly.model.layers`, :mod:`fastpoly.model.conv`), one float32 FMA per step:

* Dense: ``z[j] = b[j]`` (or +0), ``z = fma(h[k], W[j, k], z)`` for ``k`` ascending; gradients
  ``gW[j, k] = fma(d[r, j], h[r, k], gW)`` and ``gb[j] = gb[j] + d[r, j]`` over the minibatch rows
  ``r`` in order; input error ``e[r, k] = fma(d[r, j], W[j, k], e)`` over ``j`` ascending.
* Conv2D (a dense layer on patches, W of shape (F, K, K, C) row-major): ``z[i, j, f] = b[f]`` then
  ``fma(x[i*S+kh-pt, j*S+kw-pl, c], W[f, kh, kw, c], z)`` over ``(kh, kw, c)`` row-major, padding
  positions included as zeros; gradients over the patch rows ``(r, i, j)`` in row-major order
  (padding zeros included); the input error starts at 0 and, for ``(kh, kw)`` row-major, then
  ``f`` ascending, ``e[i*S+kh-pt, j*S+kw-pl, c] = fma(d[r, i, j, f], W[f, kh, kw, c], e)``
  (errors landing in the padding are dropped).
* AvgPool ``ap{K}``: ``s = 0; s = s + x`` over ``(kh, kw)`` row-major, ``s / float32(K*K)``; the
  error ``d / float32(K*K)`` to every window position (0 to positions no window covers).
* MaxPool ``mp{K}``: the first maximum in row-major order (strict ``>``); the error goes to it.
* GAP: ``s = s + x`` over ``(h, w)`` row-major per channel, ``s / float32(H*W)``; error
  ``d / float32(H*W)`` everywhere.
* Flatten: a copy (row-major H, W, C).  relu: ``z < 0 ? 0 : z``, error ``z > 0 ? e : 0``.
* tanh, erf, sigmoid: the training float32 functions (:mod:`fastpoly.backends.numba.vecmath`
  ``tanh32`` / ``erf32`` / ``sigmoid32``), error ``d_tanh32(z, e)`` etc. from the pre-activation ``z``
  (the activation layer's input, which stays in its buffer).

Speed without other bits: the layers run on all rows of the minibatch at once; elementwise layers
are one long (vectorised) loop; pooling runs eight channels per SIMD vector
(:mod:`fastpoly.backends.numba.cnn_vec`) when the channel count is a multiple of 8; the dense
layers run four rows side by side (four independent FMA chains); a convolution builds its patch
rows from a precomputed index table (:func:`patch_table`) once per minibatch (the gradient reuses
the forward's rows) and, without padded lanes, its tiles store straight into the activations; its
input error runs eight input channels per vector FMA when the channel count is a multiple of 8.
Each of these only changes the order in which *independent* sums are visited.

Divergence as in the reference: a parameter that is not finite at an epoch end stops the run
(status 3), and so does a final train loss that is not finite.

The optimiser update is the shared :func:`fastpoly.backends.numba.optstep.opt_step` (SGD with or
without (Nesterov) momentum, Adam, Adagrad from its initial accumulator, RMSprop; state fresh per run).

The initial parameters are the architecture's own draws (:meth:`~fastpoly.model.Architecture.draw_params`
of the run indices, whatever the weight family), so run ``i`` starts from ``instantiate(seed, i)``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fastpoly.backends.base import TrainBatch
from fastpoly.backends.layer_program import (
    C_AIN,
    C_AOUT,
    C_BOFF,
    C_IC,
    C_IH,
    C_ISZ,
    C_IW,
    C_K,
    C_KIND,
    C_OC,
    C_OH,
    C_OSZ,
    C_OW,
    C_PL,
    C_PT,
    C_S,
    C_WOFF,
    K_AVG,
    K_CONV,
    K_DENSE,
    K_ERF,
    K_GAP,
    K_MAX,
    K_RELU,
    K_SIGMOID,
    K_TANH,
    compile_program,
    is_generic,
)
from fastpoly.backends.numba.cnn_vec import LANES, v8_add, v8_copy, v8_fma, v8_max, v8_zero
from fastpoly.backends.numba.epochs import epoch_order, stop_rule
from fastpoly.backends.numba.jit import fma, jit, pjit, prange
from fastpoly.backends.numba.optstep import opt_s1_init, opt_step
from fastpoly.backends.numba.rng import round_keys
from fastpoly.backends.numba.train_tiles import ACT_NONE, INIT_VEC, INIT_ZERO, VW, tiles
from fastpoly.backends.numba.vecmath import d_erf32, d_sigmoid32, d_tanh32, erf32, sigmoid32, softplus32, tanh32
from fastpoly.model.optimizers import OPTIMIZERS, RF, RI
from fastpoly.stream.rng import SGD_STREAM, blocks_per_epoch, check_seed

__all__ = ["PreparedLayerTrain", "compile_program", "is_generic", "train_range_layers"]

_F = np.float32
_ZERO = _F(0.0)
_ONE = _F(1.0)
_TWO = _F(2.0)
_FMAX = _F(np.finfo(np.float32).max)
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_OPT_CODES = frozenset(o.code for o in OPTIMIZERS.values())
_RI_OPT, _RI_LOSS, _RI_BS, _RI_MAXE, _RI_EAF, _RI_MINE = (RI[k] for k in (
    "optimizer", "loss", "batch_size", "max_epochs", "epochs_after_fit", "min_epochs"))
_RF_THR = RF["fit_threshold"]

# --- one layer, all rows of the scratch ------------------------------------------------------------
# Each loop nest keeps every output's sum in the order of the rules above; only the order in which
# *independent* sums are visited changes (rows side by side, channels innermost), so the bits do not.
@jit
def _fwd_layer(pr, P, A, n):
    """Layer ``pr`` (not a convolution) forward on rows ``0 .. n-1``: ``A[ain ..]`` -> ``A[aout ..]``."""
    kind = pr[C_KIND]
    isz = pr[C_ISZ]
    osz = pr[C_OSZ]
    ain = pr[C_AIN]
    aout = pr[C_AOUT]
    X = A[ain:ain + n * isz]
    Y = A[aout:aout + n * osz]
    if kind == K_DENSE:
        wo = pr[C_WOFF]
        bo = pr[C_BOFF]
        r8 = n - n % 4
        for j in range(osz):
            b = P[bo + j] if bo >= 0 else _ZERO
            w0 = wo + j * isz
            # four rows side by side (four independent FMA chains, k ascending in each)
            for r in range(0, r8, 4):
                x0 = r * isz
                z0 = b
                z1 = b
                z2 = b
                z3 = b
                for k in range(isz):
                    w = P[w0 + k]
                    z0 = fma(X[x0 + k], w, z0)
                    z1 = fma(X[x0 + isz + k], w, z1)
                    z2 = fma(X[x0 + 2 * isz + k], w, z2)
                    z3 = fma(X[x0 + 3 * isz + k], w, z3)
                Y[r * osz + j] = z0
                Y[(r + 1) * osz + j] = z1
                Y[(r + 2) * osz + j] = z2
                Y[(r + 3) * osz + j] = z3
            for r in range(r8, n):
                z = b
                for k in range(isz):
                    z = fma(X[r * isz + k], P[w0 + k], z)
                Y[r * osz + j] = z
    elif kind == K_AVG or kind == K_MAX:
        iw, ic = pr[C_IW], pr[C_IC]
        oh, ow = pr[C_OH], pr[C_OW]
        K = pr[C_K]
        for r in range(n if ic % LANES == 0 else 0):  # eight channels per vector
            for i in range(oh):
                for j in range(ow):
                    y0 = aout + r * osz + (i * ow + j) * ic
                    xw = ain + r * isz + ((i * K) * iw + j * K) * ic
                    for c in range(0, ic, LANES):
                        if kind == K_AVG:
                            v8_zero(A, y0 + c)
                            for kh in range(K):
                                for kw in range(K):
                                    v8_add(A, y0 + c, A, xw + (kh * iw + kw) * ic + c)
                        else:
                            v8_copy(A, y0 + c, A, xw + c)
                            for kh in range(K):
                                for kw in range(K):
                                    v8_max(A, y0 + c, A, xw + (kh * iw + kw) * ic + c)
        for r in range(n if ic % LANES != 0 else 0):
            for i in range(oh):
                for j in range(ow):
                    y0 = r * osz + (i * ow + j) * ic
                    xw = r * isz + ((i * K) * iw + j * K) * ic
                    for c in range(ic):
                        if kind == K_AVG:
                            s = _ZERO
                            for kh in range(K):
                                for kw in range(K):
                                    s = s + X[xw + (kh * iw + kw) * ic + c]
                        else:
                            s = X[xw + c]
                            for kh in range(K):
                                for kw in range(K):
                                    v = X[xw + (kh * iw + kw) * ic + c]
                                    if v > s:
                                        s = v
                        Y[y0 + c] = s
        if kind == K_AVG:  # the means, in one long (vector) loop
            div = _F(K * K)
            for u in range(n * osz):
                Y[u] = Y[u] / div
    elif kind == K_GAP:
        ih, iw, ic = pr[C_IH], pr[C_IW], pr[C_IC]
        div = _F(ih * iw)
        if ic % LANES == 0:  # eight channels per vector, then the means in one long loop
            for r in range(n):
                for c in range(0, ic, LANES):
                    v8_zero(A, aout + r * osz + c)
                    for p in range(ih * iw):
                        v8_add(A, aout + r * osz + c, A, ain + r * isz + p * ic + c)
            for u in range(n * osz):
                Y[u] = Y[u] / div
        else:
            for r in range(n):
                for c in range(ic):
                    s = _ZERO
                    for p in range(ih * iw):
                        s = s + X[r * isz + p * ic + c]
                    Y[r * osz + c] = s / div
    elif kind == K_RELU:
        for k in range(n * isz):
            z = X[k]
            Y[k] = _ZERO if z < _ZERO else z
    elif kind == K_TANH:
        for k in range(n * isz):
            Y[k] = tanh32(X[k])
    elif kind == K_ERF:
        for k in range(n * isz):
            Y[k] = erf32(X[k])
    elif kind == K_SIGMOID:
        for k in range(n * isz):
            Y[k] = sigmoid32(X[k])
    else:  # flatten, identity
        for k in range(n * isz):
            Y[k] = X[k]


@jit
def _bwd_layer(pr, P, G, A, E, n, want_input):
    """Layer ``pr`` backward on rows ``0 .. n-1``: its gradients into ``G`` and (if asked) the input error.

    The output error of row ``r`` is ``E[aout + r*osz ..]``, the input error ``E[ain + r*isz ..]``.
    A convolution's gradients come from :func:`_conv_grad_tiles`; here only its input error.
    """
    kind = pr[C_KIND]
    isz = pr[C_ISZ]
    osz = pr[C_OSZ]
    ain = pr[C_AIN]
    aout = pr[C_AOUT]
    X = A[ain:ain + n * isz]
    D = E[aout:aout + n * osz]
    EI = E[ain:ain + n * isz]
    if kind == K_DENSE:
        wo = pr[C_WOFF]
        bo = pr[C_BOFF]
        GW = G[wo:wo + osz * isz]
        for p in range(osz * isz):
            GW[p] = _ZERO
        if bo >= 0:
            for j in range(osz):
                G[bo + j] = _ZERO
        for r in range(n):
            for j in range(osz):
                dj = D[r * osz + j]
                g0 = j * isz
                x0 = r * isz
                for k in range(isz):
                    GW[g0 + k] = fma(dj, X[x0 + k], GW[g0 + k])
                if bo >= 0:
                    G[bo + j] = G[bo + j] + dj
        if want_input:
            W = P[wo:wo + osz * isz]
            for r in range(n):
                e0 = r * isz
                for k in range(isz):
                    EI[e0 + k] = _ZERO
                for j in range(osz):
                    dj = D[r * osz + j]
                    w0 = j * isz
                    for k in range(isz):
                        EI[e0 + k] = fma(dj, W[w0 + k], EI[e0 + k])
    elif not want_input:
        return
    elif kind == K_CONV:
        ih, iw, ic = pr[C_IH], pr[C_IW], pr[C_IC]
        oh, ow, nf = pr[C_OH], pr[C_OW], pr[C_OC]
        K, S, pt, pl = pr[C_K], pr[C_S], pr[C_PT], pr[C_PL]
        wo = pr[C_WOFF]
        W = P[wo:wo + nf * K * K * ic]
        for k in range(n * isz):
            EI[k] = _ZERO
        for r in range(n):
            eo = r * isz
            do = r * osz
            # per input element the order is (kh, kw) then f; for one (kh, kw, f) the output
            # positions (i, j) reach distinct input elements, so they run side by side
            for kh in range(K):
                for kw in range(K):
                    for f in range(nf):
                        w0 = ((f * K + kh) * K + kw) * ic
                        for i in range(oh):
                            hh = i * S + kh - pt
                            if hh < 0 or hh >= ih:
                                continue
                            for j in range(ow):
                                ww = j * S + kw - pl
                                if ww < 0 or ww >= iw:
                                    continue
                                df = D[do + (i * ow + j) * nf + f]
                                e0 = eo + (hh * iw + ww) * ic
                                if ic % LANES == 0:  # eight channels per vector
                                    for c in range(0, ic, LANES):
                                        v8_fma(E, ain + e0 + c, df, P, wo + w0 + c)
                                else:
                                    for c in range(ic):
                                        EI[e0 + c] = fma(df, W[w0 + c], EI[e0 + c])
    elif kind == K_AVG or kind == K_MAX:
        iw, ic = pr[C_IW], pr[C_IC]
        oh, ow = pr[C_OH], pr[C_OW]
        K = pr[C_K]
        for k in range(n * isz):
            EI[k] = _ZERO
        if kind == K_AVG:  # d / K^2 in place (the output error is not read again), one long loop
            div = _F(K * K)
            for u in range(n * osz):
                D[u] = D[u] / div
        for r in range(n if kind == K_AVG and ic % LANES == 0 else 0):  # eight channels per vector
            for i in range(oh):
                for j in range(ow):
                    d0 = aout + r * osz + (i * ow + j) * ic
                    xw = ain + r * isz + ((i * K) * iw + j * K) * ic
                    for c in range(0, ic, LANES):
                        for kh in range(K):
                            for kw in range(K):
                                v8_copy(E, xw + (kh * iw + kw) * ic + c, E, d0 + c)
        for r in range(0 if kind == K_AVG and ic % LANES == 0 else n):
            for i in range(oh):
                for j in range(ow):
                    d0 = r * osz + (i * ow + j) * ic
                    xw = r * isz + ((i * K) * iw + j * K) * ic
                    for c in range(ic):
                        if kind == K_AVG:
                            v = D[d0 + c]
                            for kh in range(K):
                                for kw in range(K):
                                    EI[xw + (kh * iw + kw) * ic + c] = v
                        else:
                            best = xw + c
                            mx = X[best]
                            for kh in range(K):
                                for kw in range(K):
                                    q = xw + (kh * iw + kw) * ic + c
                                    if X[q] > mx:
                                        mx = X[q]
                                        best = q
                            EI[best] = D[d0 + c]
    elif kind == K_GAP:
        ih, iw, ic = pr[C_IH], pr[C_IW], pr[C_IC]
        div = _F(ih * iw)
        for u in range(n * osz):  # d / (H*W) in place (the output error is not read again)
            D[u] = D[u] / div
        for r in range(n):
            for p in range(ih * iw):
                x0 = r * isz + p * ic
                if ic % LANES == 0:
                    for c in range(0, ic, LANES):
                        v8_copy(E, ain + x0 + c, E, aout + r * osz + c)
                else:
                    for c in range(ic):
                        EI[x0 + c] = D[r * osz + c]
    elif kind == K_RELU:
        for k in range(n * isz):
            EI[k] = D[k] if X[k] > _ZERO else _ZERO
    elif kind == K_TANH:
        # e * f'(z) from the pre-activation z (the layer's input, kept in A)
        for k in range(n * isz):
            EI[k] = d_tanh32(X[k], D[k])
    elif kind == K_ERF:
        for k in range(n * isz):
            EI[k] = d_erf32(X[k], D[k])
    elif kind == K_SIGMOID:
        for k in range(n * isz):
            EI[k] = d_sigmoid32(X[k], D[k])
    else:  # flatten, identity
        for k in range(n * isz):
            EI[k] = D[k]


# --- convolutions as register tiles (the fast path of K_CONV) ----------------------------------------
# Per lane: WT (per conv layer its W transposed, fan rows of Fp = ceil8(F) floats, pads +0), BT (its
# bias, Fp floats), PT (the patches of the rows, fan floats each, padding zeros included), Z and Dp
# (rows x Fp: pre-activations / output errors with padded rows), GT (fan x Fp) and GB (Fp): the
# gradients before they go back to the parameter order.  Every sum is one tile lane: the order of
# the scalar rule above (fan-in (kh, kw, c) ascending; patch rows (r, i, j) ascending).
@jit
def _patches(pr, cw, pix, A, n, PT):
    """The patch rows ``(r, i, j)`` of the conv layer ``pr`` into ``PT`` (``fan`` floats each, zeros for padding).

    ``pix[cw[3] ..]``: the layer's patch table (:func:`patch_table`), the input offset of every
    patch element of one image (``-1``: padding).
    """
    isz = pr[C_ISZ]
    npe = pr[C_OH] * pr[C_OW] * pr[C_K] * pr[C_K] * pr[C_IC]
    ain = pr[C_AIN]
    T = pix[cw[3]:cw[3] + npe]
    if cw[4] == 0:  # no padding in the table: a plain gather
        for r in range(n):
            Xr = A[ain + r * isz:ain + (r + 1) * isz]
            Pr = PT[r * npe:(r + 1) * npe]
            for u in range(npe):
                Pr[u] = Xr[T[u]]
    else:
        X = A[ain:ain + n * isz]
        for r in range(n):
            xo = r * isz
            q = r * npe
            for u in range(npe):
                v = T[u]
                PT[q + u] = X[xo + v] if v >= 0 else _ZERO


@jit
def _refresh_conv(prog, cofs, P, WT, BT):
    """WT / BT from the parameters (after every update)."""
    for l in range(prog.shape[0]):
        if cofs[l, 0] >= 0:
            pr = prog[l]
            nf = pr[C_OC]
            fan = pr[C_K] * pr[C_K] * pr[C_IC]
            fp = cofs[l, 2]
            wo = pr[C_WOFF]
            for f in range(nf):
                for k in range(fan):
                    WT[cofs[l, 0] + k * fp + f] = P[wo + f * fan + k]
            if pr[C_BOFF] >= 0:
                for f in range(nf):
                    BT[cofs[l, 1] + f] = P[pr[C_BOFF] + f]


@jit
def _conv_fwd_tiles(pr, cw, pix, A, n, S):
    WT, BT, PT, Z = S[0], S[1], S[2], S[3]
    fan = pr[C_K] * pr[C_K] * pr[C_IC]
    _patches(pr, cw, pix, A, n, PT)
    nf = pr[C_OC]
    fp = cw[2]
    rows = n * pr[C_OH] * pr[C_OW]
    init = INIT_VEC if pr[C_BOFF] >= 0 else INIT_ZERO
    yo = pr[C_AOUT]
    # no padded lanes: the tiles store straight into the layer's output
    O, oo = (A, yo) if fp == nf else (Z, 0)
    tiles(PT, 0, fan, 1, WT, cw[0], fp, fan, O, oo, fp, BT, cw[1], O, init, ACT_NONE, rows, fp // VW)
    if fp != nf:
        for q in range(rows):
            for f in range(nf):
                A[yo + q * nf + f] = Z[q * fp + f]


@jit
def _conv_grad_tiles(pr, cw, pix, G, A, E, n, S, ones, have_patches):
    """The conv layer's weight and bias gradients (``have_patches``: ``S[2]`` holds its patch rows already)."""
    PT, Dp, GT, GB = S[2], S[4], S[5], S[6]
    nf = pr[C_OC]
    fan = pr[C_K] * pr[C_K] * pr[C_IC]
    if not have_patches:
        _patches(pr, cw, pix, A, n, PT)
    fp = cw[2]
    rows = n * pr[C_OH] * pr[C_OW]
    do = pr[C_AOUT]
    if fp == nf:  # the output errors are the tile's vectors as they are
        V, vo = E, do
    else:
        for q in range(rows):
            for f in range(nf):
                Dp[q * fp + f] = E[do + q * nf + f]
            for f in range(nf, fp):
                Dp[q * fp + f] = _ZERO
        V, vo = Dp, 0
    # gW[f, k] = sum over patch rows q (in order) of d[q, f] * patch[q, k]: tile rows k, lanes f
    tiles(PT, 0, 1, fan, V, vo, fp, rows, GT, 0, fp, GT, 0, GT, INIT_ZERO, ACT_NONE, fan, fp // VW)
    wo = pr[C_WOFF]
    for f in range(nf):
        for k in range(fan):
            G[wo + f * fan + k] = GT[k * fp + f]
    bo = pr[C_BOFF]
    if bo >= 0:
        # gb[f] = ((0 + d[0, f]) + d[1, f]) + ...: fma(1, d, s) == s + d exactly
        tiles(ones, 0, 0, 0, V, vo, fp, rows, GB, 0, 0, GB, 0, GB, INIT_ZERO, ACT_NONE, 1, fp // VW)
        for f in range(nf):
            G[bo + f] = GB[f]


@jit
def _forward(prog, cofs, pix, P, A, n, S):
    for l in range(prog.shape[0]):
        pr = prog[l]
        if cofs[l, 0] >= 0:
            _conv_fwd_tiles(pr, cofs[l], pix, A, n, S)
        else:
            _fwd_layer(pr, P, A, n)


@jit
def _eval_block(prog, cofs, pix, P, A, X, r0, n, nin, S):
    """Forward rows ``r0 .. r0+n-1`` of ``X`` (flat rows of ``nin``) through scratch rows ``0 .. n-1``."""
    a0 = prog[0, C_AIN]
    for k in range(n * nin):
        A[a0 + k] = X[r0 * nin + k]
    _forward(prog, cofs, pix, P, A, n, S)


@jit
def _train_lane(rk, prog, cofs, pix, csz, first_w, alen, P0, Xtr, ytr, Xkey, ints, floats, leak_w, leak_E, leak_from,
                keys, init_keys, status, first_fit, epochs, losses, params_out, want_params, first, count, out0):
    """Train runs ``first .. first+count-1`` (their initial parameters: rows ``out0 ..`` of ``P0``)."""
    n_params = P0.shape[1]
    m = ytr.shape[0]
    nin = prog[0, C_ISZ]
    nk = Xkey.shape[0] // nin
    L = prog.shape[0]
    aout = prog[L - 1, C_AOUT]
    a0 = prog[0, C_AIN]
    last_conv = -1
    for l in range(L):
        if cofs[l, 0] >= 0:
            last_conv = l
    loss_code, batch_size, max_epochs, eaf0, min_ep0 = (
        ints[_RI_LOSS], ints[_RI_BS], ints[_RI_MAXE], ints[_RI_EAF], ints[_RI_MINE])
    thr = floats[_RF_THR]
    s1_init = opt_s1_init(ints, floats)
    bt = np.empty(2, np.float32)
    B = min(m, batch_size)
    cap = B  # rows of the scratch (compile_program's rows)
    n_tb = (m + cap - 1) // cap  # blocks of the fit check
    n_words = keys.shape[1]
    bpe = max((m - 1 + 3) // 4, 1)
    P = np.empty(n_params, np.float32)
    G = np.zeros(n_params, np.float32)
    S1 = np.zeros(n_params, np.float32)
    S2 = np.zeros(n_params, np.float32)
    A = np.zeros(alen, np.float32)
    E = np.zeros(alen, np.float32)
    S = (np.zeros(max(csz[0], 1), np.float32), np.zeros(max(csz[1], VW), np.float32),
         np.zeros(max(csz[2], 1), np.float32), np.zeros(max(csz[3], 1), np.float32),
         np.zeros(max(csz[3], 1), np.float32), np.zeros(max(csz[4], 1), np.float32),
         np.zeros(max(csz[5], VW), np.float32))
    ones = np.ones(1, np.float32)
    perm = np.empty(m, np.int64)
    sw = np.empty(4 * bpe, np.uint32)
    for s in range(count):
        o = out0 + s
        index = first + np.uint64(s)
        for p in range(n_params):
            P[p] = P0[o, p]
            S1[p] = s1_init
            S2[p] = _ZERO
        _refresh_conv(prog, cofs, P, S[0], S[1])
        for w in range(n_words):
            init_keys[o, w] = 0
        for r0 in range(0, nk, cap):
            nn = min(cap, nk - r0)
            _eval_block(prog, cofs, pix, P, A, Xkey, r0, nn, nin, S)
            for r in range(nn):
                if A[aout + r] > _ZERO:
                    init_keys[o, (r0 + r) >> 6] |= np.uint64(1) << np.uint64((r0 + r) & 63)
        min_ep, eaf = stop_rule(index, leak_w, leak_from, leak_E, min_ep0, eaf0)
        bt[0] = _ONE
        bt[1] = _ONE
        ff = -1
        st = 2
        miss_blk = 0
        fitted = False
        e = 0
        lo32 = np.uint64(index) & _MASK32
        hi32 = np.uint64(index) >> _S32
        while e < max_epochs:
            epoch_order(e, bpe, m, lo32, hi32, rk, sw, perm)  # Fisher-Yates order of epoch e (0-based)
            e += 1
            for a in range(0, m, B):
                nb = B if a + B <= m else m - a
                nbf = _F(nb)
                for r in range(nb):
                    row = perm[a + r]
                    for k in range(nin):
                        A[a0 + r * nin + k] = Xtr[row * nin + k]
                _forward(prog, cofs, pix, P, A, nb, S)
                for r in range(nb):
                    z = A[aout + r]
                    y = ytr[perm[a + r]]
                    if loss_code == 0:
                        E[aout + r] = (sigmoid32(z) - y) / nbf
                    else:
                        E[aout + r] = (_TWO * (z - y)) / nbf
                for l in range(L - 1, first_w - 1, -1):
                    if cofs[l, 0] >= 0:  # the gradients by tiles, the input error in _bwd_layer
                        # the last convolution of the forward pass left its patch rows in S[2]
                        _conv_grad_tiles(prog[l], cofs[l], pix, G, A, E, nb, S, ones, l == last_conv)
                    _bwd_layer(prog[l], P, G, A, E, nb, l > first_w)
                opt_step(ints, floats, bt, P, G, S1, S2, n_params)
                _refresh_conv(prog, cofs, P, S[0], S[1])
            # divergence: a parameter that is not finite ends the run (status 3: diverged, not fitted)
            finite = True
            for p in range(n_params):
                finite &= np.abs(P[p]) <= _FMAX
            if not finite:
                st = 3
                break
            # the fit check, ``cap`` train points at a time, starting with the block of the last
            # miss; the first miss ends it (the answer, not fitted, is the same)
            fitted = True
            for bi in range(n_tb):
                blk = miss_blk + bi
                if blk >= n_tb:
                    blk -= n_tb
                r0 = blk * cap
                nn = min(cap, m - r0)
                _eval_block(prog, cofs, pix, P, A, Xtr, r0, nn, nin, S)
                for r in range(nn):
                    if (A[aout + r] > thr) != (ytr[r0 + r] == _ONE):
                        fitted = False
                        break
                if not fitted:
                    miss_blk = blk
                    break
            if fitted:
                if ff < 0:
                    ff = e
                if e - ff >= eaf and e >= min_ep:
                    st = 0
                    break
        if st != 0 and st != 3:
            st = 1 if fitted else 2
        sl = _ZERO
        for r0 in range(0, m, cap):
            nn = min(cap, m - r0)
            _eval_block(prog, cofs, pix, P, A, Xtr, r0, nn, nin, S)
            for r in range(nn):
                z = A[aout + r]
                if loss_code == 0:
                    sl = sl + softplus32(-z if ytr[r0 + r] == _ONE else z)
                else:
                    dz = z - ytr[r0 + r]
                    sl = fma(dz, dz, sl)
        losses[o] = sl / _F(m)
        if not np.isfinite(losses[o]):
            st = 3  # diverged: the final train loss is not finite (logits overflow float32)
        for w in range(n_words):
            keys[o, w] = 0
        for r0 in range(0, nk, cap):
            nn = min(cap, nk - r0)
            _eval_block(prog, cofs, pix, P, A, Xkey, r0, nn, nin, S)
            for r in range(nn):
                if A[aout + r] > _ZERO:
                    keys[o, (r0 + r) >> 6] |= np.uint64(1) << np.uint64((r0 + r) & 63)
        status[o] = st
        first_fit[o] = ff
        epochs[o] = e
        if want_params:
            for p in range(n_params):
                params_out[o, p] = P[p]


@pjit
def _train_lanes(rk, prog, cofs, pix, csz, first_w, alen, P0, Xtr, ytr, Xkey, ints, floats, leak_w, leak_E, leak_from,
                 keys, init_keys, status, first_fit, epochs, losses, params_out, want_params, start, n, n_lanes):
    per = (n + n_lanes - 1) // n_lanes
    for lane in prange(n_lanes):
        a = lane * per
        b = min(n, a + per)
        if b > a:
            _train_lane(rk, prog, cofs, pix, csz, first_w, alen, P0, Xtr, ytr, Xkey, ints, floats, leak_w, leak_E, leak_from,
                        keys, init_keys, status, first_fit, epochs, losses, params_out, want_params,
                        start + np.uint64(a), b - a, a)


def patch_table(pr: np.ndarray) -> np.ndarray:
    """The input offset of every patch element ``(i, j, kh, kw, c)`` of conv layer ``pr`` in one image (-1: padding)."""
    ih, iw, ic, oh, ow = (int(pr[c]) for c in (C_IH, C_IW, C_IC, C_OH, C_OW))
    K, S, pt, pl = (int(pr[c]) for c in (C_K, C_S, C_PT, C_PL))
    hh = (np.arange(oh) * S - pt)[:, None, None, None, None] + np.arange(K)[None, None, :, None, None]
    ww = (np.arange(ow) * S - pl)[None, :, None, None, None] + np.arange(K)[None, None, None, :, None]
    c = np.arange(ic)[None, None, None, None, :]
    off = (hh * iw + ww) * ic + c
    inside = (hh >= 0) & (hh < ih) & (ww >= 0) & (ww < iw) & (c >= 0)
    return np.where(inside, off, -1).astype(np.int64).reshape(-1)


def conv_scratch(prog: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cofs, csz, pix)`` of the tile path of the convolutions.

    ``cofs``: per layer ``(WT offset, BT offset, Fp, patch table offset, 1 if the table has
    padding else 0)`` (``-1`` for layers that are not convolutions); ``csz``: the lengths of WT, BT, PT, Z (= Dp), GT, GB; ``pix``: the
    layers' patch tables (:func:`patch_table`) one after another.
    """
    cofs = np.full((prog.shape[0], 5), -1, np.int64)
    nwt = nbt = npt = nz = ngt = ngb = 0
    tables = []
    npix = 0
    for l, pr in enumerate(prog):
        if pr[C_KIND] != K_CONV:
            continue
        fan = int(pr[C_K] * pr[C_K] * pr[C_IC])
        fp = (int(pr[C_OC]) + VW - 1) // VW * VW
        pos = int(rows * pr[C_OH] * pr[C_OW])
        tables.append(patch_table(pr))
        cofs[l] = (nwt, nbt, fp, npix, int(np.any(tables[-1] < 0)))
        npix += tables[-1].size
        nwt += fan * fp
        nbt += fp
        npt = max(npt, pos * fan)
        nz = max(nz, pos * fp)
        ngt = max(ngt, fan * fp)
        ngb = max(ngb, fp)
    pix = np.concatenate(tables) if tables else np.zeros(1, np.int64)
    return cofs, np.array([nwt, nbt, npt, nz, ngt, ngb], np.int64), pix


class PreparedLayerTrain:
    """Kernel-ready arrays of a :class:`~fastpoly.sgd.plan.TrainPlan` for the generic layer trainer."""

    def __init__(self, tp: Any):
        plan = tp.plan
        arch = plan.mlp
        self.tp = tp
        self.arch = arch
        self.rk = round_keys(check_seed(plan.seed))
        m = int(plan.train_rows.size)
        rows = max(1, min(m, int(tp.recipe.batch_size)))
        self.prog, self.alen, self.first_w = compile_program(arch, rows)
        self.cofs, self.csz, self.pix = conv_scratch(self.prog, rows)
        X = np.asarray(plan.X, np.float32).reshape(plan.X.shape[0], -1)
        self.Xtr = np.ascontiguousarray(X[plan.train_rows]).reshape(-1)
        self.Xkey = np.ascontiguousarray(X[plan.key_rows]).reshape(-1)
        self.ytr = np.ascontiguousarray(plan.train_labels, np.float32)
        self.ints = tp.recipe.ints()
        self.floats = tp.recipe.floats()
        if int(self.ints[_RI_OPT]) not in _OPT_CODES:
            raise ValueError(f"the generic layer trainer has no optimizer {tp.recipe.optimizer!r}")
        self.leak = tp.leak_arrays()
        assert SGD_STREAM == 1 and blocks_per_epoch(2) == 1

    def run(self, lo: int, hi: int, n_threads: int, params: bool = False) -> TrainBatch:
        """Train runs ``lo .. hi-1`` on ``n_threads`` threads; a :class:`TrainBatch`."""
        n = hi - lo
        W = self.tp.plan.n_words
        npar = int(self.arch.n_params)
        keys = np.zeros((n, W), np.uint64)
        init_keys = np.zeros((n, W), np.uint64)
        status = np.zeros(n, np.int8)
        first_fit = np.zeros(n, np.int32)
        epochs = np.zeros(n, np.int32)
        losses = np.zeros(n, np.float32)
        pout = np.zeros((n if params else 1, npar), np.float32)
        if n:
            P0 = np.ascontiguousarray(self.arch.draw_params(self.tp.plan.seed, np.arange(lo, hi, dtype=np.uint64)),
                                      np.float32)
            lw, lE, lf = self.leak
            n_lanes = max(1, min(n, 4 * n_threads))
            _train_lanes(self.rk, self.prog, self.cofs, self.pix, self.csz, self.first_w, self.alen, P0, self.Xtr, self.ytr, self.Xkey,
                         self.ints, self.floats, int(lw), lE, lf, keys, init_keys, status, first_fit, epochs,
                         losses, pout, bool(params), np.uint64(lo), n, n_lanes)
        return TrainBatch(lo, hi, keys, init_keys, status, first_fit, epochs, losses, pout if params else None)


def train_range_layers(tp: Any, lo: int, hi: int, params: bool = False, n_threads: int | None = None,
                       prepared: PreparedLayerTrain | None = None) -> TrainBatch:
    """Train runs ``lo .. hi-1`` with the generic layer kernel (bit-identical to the reference)."""
    import numba

    pt = prepared if prepared is not None else PreparedLayerTrain(tp)
    return pt.run(int(lo), int(hi), n_threads or numba.get_num_threads(), params)
