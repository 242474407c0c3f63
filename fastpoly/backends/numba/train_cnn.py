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
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_OPT_CODES = frozenset(o.code for o in OPTIMIZERS.values())
_RI_OPT, _RI_LOSS, _RI_BS, _RI_MAXE, _RI_EAF, _RI_MINE = (RI[k] for k in (
    "optimizer", "loss", "batch_size", "max_epochs", "epochs_after_fit", "min_epochs"))
_RF_THR = RF["fit_threshold"]

# --- one layer, one row ------------------------------------------------------------------------------
@jit
def _fwd_row(pr, P, A, r):
    """Layer ``pr`` forward on row ``r``: ``A[ain + r*isz ..]`` -> ``A[aout + r*osz ..]``."""
    kind = pr[C_KIND]
    isz = pr[C_ISZ]
    osz = pr[C_OSZ]
    xo = pr[C_AIN] + r * isz
    yo = pr[C_AOUT] + r * osz
    if kind == K_DENSE:
        wo = pr[C_WOFF]
        bo = pr[C_BOFF]
        for j in range(osz):
            z = P[bo + j] if bo >= 0 else _ZERO
            w0 = wo + j * isz
            for k in range(isz):
                z = fma(A[xo + k], P[w0 + k], z)
            A[yo + j] = z
    elif kind == K_CONV:
        ih, iw, ic = pr[C_IH], pr[C_IW], pr[C_IC]
        oh, ow, nf = pr[C_OH], pr[C_OW], pr[C_OC]
        K, S, pt, pl = pr[C_K], pr[C_S], pr[C_PT], pr[C_PL]
        wo = pr[C_WOFF]
        bo = pr[C_BOFF]
        fan = K * K * ic
        for i in range(oh):
            for j in range(ow):
                # the filters' sums side by side (each in its own (kh, kw, c) order)
                y0 = yo + (i * ow + j) * nf
                for f in range(nf):
                    A[y0 + f] = P[bo + f] if bo >= 0 else _ZERO
                for kh in range(K):
                    hh = i * S + kh - pt
                    for kw in range(K):
                        ww = j * S + kw - pl
                        inb = 0 <= hh < ih and 0 <= ww < iw
                        x0 = xo + (hh * iw + ww) * ic
                        for c in range(ic):
                            xv = A[x0 + c] if inb else _ZERO
                            wk = wo + (kh * K + kw) * ic + c
                            for f in range(nf):
                                A[y0 + f] = fma(xv, P[wk + f * fan], A[y0 + f])
    elif kind == K_AVG or kind == K_MAX:
        iw, ic = pr[C_IW], pr[C_IC]
        oh, ow = pr[C_OH], pr[C_OW]
        K = pr[C_K]
        div = _F(K * K)
        for i in range(oh):
            for j in range(ow):
                for c in range(ic):
                    if kind == K_AVG:
                        s = _ZERO
                        for kh in range(K):
                            for kw in range(K):
                                s = s + A[xo + ((i * K + kh) * iw + j * K + kw) * ic + c]
                        A[yo + (i * ow + j) * ic + c] = s / div
                    else:
                        mx = A[xo + ((i * K) * iw + j * K) * ic + c]
                        for kh in range(K):
                            for kw in range(K):
                                v = A[xo + ((i * K + kh) * iw + j * K + kw) * ic + c]
                                if v > mx:
                                    mx = v
                        A[yo + (i * ow + j) * ic + c] = mx
    elif kind == K_GAP:
        ih, iw, ic = pr[C_IH], pr[C_IW], pr[C_IC]
        div = _F(ih * iw)
        for c in range(ic):
            s = _ZERO
            for p in range(ih * iw):
                s = s + A[xo + p * ic + c]
            A[yo + c] = s / div
    elif kind == K_RELU:
        for k in range(isz):
            z = A[xo + k]
            A[yo + k] = _ZERO if z < _ZERO else z
    elif kind == K_TANH:
        for k in range(isz):
            A[yo + k] = tanh32(A[xo + k])
    elif kind == K_ERF:
        for k in range(isz):
            A[yo + k] = erf32(A[xo + k])
    elif kind == K_SIGMOID:
        for k in range(isz):
            A[yo + k] = sigmoid32(A[xo + k])
    else:  # flatten, identity
        for k in range(isz):
            A[yo + k] = A[xo + k]


@jit
def _bwd_layer(pr, P, G, A, E, n, want_input, want_grads):
    """Layer ``pr`` backward on rows ``0 .. n-1``: its gradients into ``G`` and (if asked) the input error.

    The output error of row ``r`` is ``E[aout + r*osz ..]``, the input error ``E[ain + r*isz ..]``.
    """
    kind = pr[C_KIND]
    isz = pr[C_ISZ]
    osz = pr[C_OSZ]
    ain = pr[C_AIN]
    aout = pr[C_AOUT]
    if kind == K_DENSE:
        wo = pr[C_WOFF]
        bo = pr[C_BOFF]
        for p in range(osz * isz):
            G[wo + p] = _ZERO
        if bo >= 0:
            for j in range(osz):
                G[bo + j] = _ZERO
        for r in range(n):
            xo = ain + r * isz
            do = aout + r * osz
            for j in range(osz):
                dj = E[do + j]
                g0 = wo + j * isz
                for k in range(isz):
                    G[g0 + k] = fma(dj, A[xo + k], G[g0 + k])
                if bo >= 0:
                    G[bo + j] = G[bo + j] + dj
        if want_input:
            for r in range(n):
                eo = ain + r * isz
                do = aout + r * osz
                for k in range(isz):
                    E[eo + k] = _ZERO
                for j in range(osz):
                    dj = E[do + j]
                    w0 = wo + j * isz
                    for k in range(isz):
                        E[eo + k] = fma(dj, P[w0 + k], E[eo + k])
    elif kind == K_CONV:
        ih, iw, ic = pr[C_IH], pr[C_IW], pr[C_IC]
        oh, ow, nf = pr[C_OH], pr[C_OW], pr[C_OC]
        K, S, pt, pl = pr[C_K], pr[C_S], pr[C_PT], pr[C_PL]
        wo = pr[C_WOFF]
        bo = pr[C_BOFF]
        fan = K * K * ic
        for p in range(nf * fan if want_grads else 0):
            G[wo + p] = _ZERO
        if bo >= 0 and want_grads:
            for f in range(nf):
                G[bo + f] = _ZERO
        for r in range(n if want_grads else 0):
            xo = ain + r * isz
            do = aout + r * osz
            for i in range(oh):
                for j in range(ow):
                    d0 = do + (i * ow + j) * nf
                    for kh in range(K):
                        hh = i * S + kh - pt
                        for kw in range(K):
                            ww = j * S + kw - pl
                            inb = 0 <= hh < ih and 0 <= ww < iw
                            x0 = xo + (hh * iw + ww) * ic
                            for c in range(ic):
                                xv = A[x0 + c] if inb else _ZERO
                                gk = wo + (kh * K + kw) * ic + c
                                for f in range(nf):
                                    G[gk + f * fan] = fma(E[d0 + f], xv, G[gk + f * fan])
                    if bo >= 0:
                        for f in range(nf):
                            G[bo + f] = G[bo + f] + E[d0 + f]
        if want_input:
            for r in range(n):
                eo = ain + r * isz
                do = aout + r * osz
                for k in range(isz):
                    E[eo + k] = _ZERO
                # per input element the order is (kh, kw) then f; for one (kh, kw, f) the output
                # positions (i, j) reach distinct input elements, so they run side by side
                for kh in range(K):
                    for kw in range(K):
                        for f in range(nf):
                            w0 = wo + ((f * K + kh) * K + kw) * ic
                            for i in range(oh):
                                hh = i * S + kh - pt
                                if hh < 0 or hh >= ih:
                                    continue
                                for j in range(ow):
                                    ww = j * S + kw - pl
                                    if ww < 0 or ww >= iw:
                                        continue
                                    df = E[do + (i * ow + j) * nf + f]
                                    e0 = eo + (hh * iw + ww) * ic
                                    for c in range(ic):
                                        E[e0 + c] = fma(df, P[w0 + c], E[e0 + c])
    elif not want_input:
        return
    elif kind == K_AVG or kind == K_MAX:
        iw, ic = pr[C_IW], pr[C_IC]
        oh, ow = pr[C_OH], pr[C_OW]
        K = pr[C_K]
        div = _F(K * K)
        for r in range(n):
            xo = ain + r * isz
            do = aout + r * osz
            for k in range(isz):
                E[xo + k] = _ZERO
            for i in range(oh):
                for j in range(ow):
                    for c in range(ic):
                        d = E[do + (i * ow + j) * ic + c]
                        if kind == K_AVG:
                            v = d / div
                            for kh in range(K):
                                for kw in range(K):
                                    E[xo + ((i * K + kh) * iw + j * K + kw) * ic + c] = v
                        else:
                            best = xo + ((i * K) * iw + j * K) * ic + c
                            mx = A[best]
                            for kh in range(K):
                                for kw in range(K):
                                    q = xo + ((i * K + kh) * iw + j * K + kw) * ic + c
                                    if A[q] > mx:
                                        mx = A[q]
                                        best = q
                            E[best] = d
    elif kind == K_GAP:
        ih, iw, ic = pr[C_IH], pr[C_IW], pr[C_IC]
        div = _F(ih * iw)
        for r in range(n):
            xo = ain + r * isz
            do = aout + r * osz
            for c in range(ic):
                v = E[do + c] / div
                for p in range(ih * iw):
                    E[xo + p * ic + c] = v
    elif kind == K_RELU:
        for r in range(n):
            xo = ain + r * isz
            do = aout + r * osz
            for k in range(isz):
                E[xo + k] = E[do + k] if A[xo + k] > _ZERO else _ZERO
    elif kind == K_TANH or kind == K_ERF or kind == K_SIGMOID:
        # e * f'(z) from the pre-activation z (the layer's input, kept in A)
        for r in range(n):
            xo = ain + r * isz
            do = aout + r * osz
            if kind == K_TANH:
                for k in range(isz):
                    E[xo + k] = d_tanh32(A[xo + k], E[do + k])
            elif kind == K_ERF:
                for k in range(isz):
                    E[xo + k] = d_erf32(A[xo + k], E[do + k])
            else:
                for k in range(isz):
                    E[xo + k] = d_sigmoid32(A[xo + k], E[do + k])
    else:  # flatten, identity
        for r in range(n):
            for k in range(isz):
                E[ain + r * isz + k] = E[aout + r * osz + k]


# --- convolutions as register tiles (the fast path of K_CONV) ----------------------------------------
# Per lane: WT (per conv layer its W transposed, fan rows of Fp = ceil8(F) floats, pads +0), BT (its
# bias, Fp floats), PT (the patches of the rows, fan floats each, padding zeros included), Z and Dp
# (rows x Fp: pre-activations / output errors with padded rows), GT (fan x Fp) and GB (Fp): the
# gradients before they go back to the parameter order.  Every sum is one tile lane: the order of
# the scalar rule above (fan-in (kh, kw, c) ascending; patch rows (r, i, j) ascending).
@jit
def _patches(pr, A, n, PT):
    ih, iw, ic = pr[C_IH], pr[C_IW], pr[C_IC]
    oh, ow = pr[C_OH], pr[C_OW]
    K, S, pt, pl = pr[C_K], pr[C_S], pr[C_PT], pr[C_PL]
    isz = pr[C_ISZ]
    fan = K * K * ic
    q = 0
    for r in range(n):
        xo = pr[C_AIN] + r * isz
        for i in range(oh):
            for j in range(ow):
                for kh in range(K):
                    hh = i * S + kh - pt
                    for kw in range(K):
                        ww = j * S + kw - pl
                        if 0 <= hh < ih and 0 <= ww < iw:
                            x0 = xo + (hh * iw + ww) * ic
                            for c in range(ic):
                                PT[q + c] = A[x0 + c]
                        else:
                            for c in range(ic):
                                PT[q + c] = _ZERO
                        q += ic
    return fan


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
def _conv_fwd_tiles(pr, cw, A, n, S):
    WT, BT, PT, Z = S[0], S[1], S[2], S[3]
    fan = _patches(pr, A, n, PT)
    nf = pr[C_OC]
    fp = cw[2]
    rows = n * pr[C_OH] * pr[C_OW]
    init = INIT_VEC if pr[C_BOFF] >= 0 else INIT_ZERO
    tiles(PT, 0, fan, 1, WT, cw[0], fp, fan, Z, 0, fp, BT, cw[1], Z, init, ACT_NONE, rows, fp // VW)
    yo = pr[C_AOUT]
    for q in range(rows):
        for f in range(nf):
            A[yo + q * nf + f] = Z[q * fp + f]


@jit
def _conv_grad_tiles(pr, cw, G, A, E, n, S, ones):
    PT, Dp, GT, GB = S[2], S[4], S[5], S[6]
    fan = _patches(pr, A, n, PT)
    nf = pr[C_OC]
    fp = cw[2]
    rows = n * pr[C_OH] * pr[C_OW]
    do = pr[C_AOUT]
    for q in range(rows):
        for f in range(nf):
            Dp[q * fp + f] = E[do + q * nf + f]
        for f in range(nf, fp):
            Dp[q * fp + f] = _ZERO
    # gW[f, k] = sum over patch rows q (in order) of d[q, f] * patch[q, k]: tile rows k, lanes f
    tiles(PT, 0, 1, fan, Dp, 0, fp, rows, GT, 0, fp, GT, 0, GT, INIT_ZERO, ACT_NONE, fan, fp // VW)
    wo = pr[C_WOFF]
    for f in range(nf):
        for k in range(fan):
            G[wo + f * fan + k] = GT[k * fp + f]
    bo = pr[C_BOFF]
    if bo >= 0:
        # gb[f] = ((0 + d[0, f]) + d[1, f]) + ...: fma(1, d, s) == s + d exactly
        tiles(ones, 0, 0, 0, Dp, 0, fp, rows, GB, 0, 0, GB, 0, GB, INIT_ZERO, ACT_NONE, 1, fp // VW)
        for f in range(nf):
            G[bo + f] = GB[f]


@jit
def _forward(prog, cofs, P, A, n, S):
    for l in range(prog.shape[0]):
        pr = prog[l]
        if cofs[l, 0] >= 0:
            _conv_fwd_tiles(pr, cofs[l], A, n, S)
        else:
            for r in range(n):
                _fwd_row(pr, P, A, r)


@jit
def _eval_block(prog, cofs, P, A, X, r0, n, nin, S):
    """Forward rows ``r0 .. r0+n-1`` of ``X`` (flat rows of ``nin``) through scratch rows ``0 .. n-1``."""
    a0 = prog[0, C_AIN]
    for k in range(n * nin):
        A[a0 + k] = X[r0 * nin + k]
    _forward(prog, cofs, P, A, n, S)


@jit
def _train_lane(rk, prog, cofs, csz, first_w, alen, P0, Xtr, ytr, Xkey, ints, floats, leak_w, leak_E, leak_from,
                keys, init_keys, status, first_fit, epochs, losses, params_out, want_params, first, count, out0):
    """Train runs ``first .. first+count-1`` (their initial parameters: rows ``out0 ..`` of ``P0``)."""
    n_params = P0.shape[1]
    m = ytr.shape[0]
    nin = prog[0, C_ISZ]
    nk = Xkey.shape[0] // nin
    L = prog.shape[0]
    aout = prog[L - 1, C_AOUT]
    a0 = prog[0, C_AIN]
    loss_code, batch_size, max_epochs, eaf0, min_ep0 = (
        ints[_RI_LOSS], ints[_RI_BS], ints[_RI_MAXE], ints[_RI_EAF], ints[_RI_MINE])
    thr = floats[_RF_THR]
    s1_init = opt_s1_init(ints, floats)
    bt = np.empty(2, np.float32)
    B = min(m, batch_size)
    cap = B  # rows of the scratch (compile_program's rows)
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
            _eval_block(prog, cofs, P, A, Xkey, r0, nn, nin, S)
            for r in range(nn):
                if A[aout + r] > _ZERO:
                    init_keys[o, (r0 + r) >> 6] |= np.uint64(1) << np.uint64((r0 + r) & 63)
        min_ep, eaf = stop_rule(index, leak_w, leak_from, leak_E, min_ep0, eaf0)
        bt[0] = _ONE
        bt[1] = _ONE
        ff = -1
        st = 2
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
                _forward(prog, cofs, P, A, nb, S)
                for r in range(nb):
                    z = A[aout + r]
                    y = ytr[perm[a + r]]
                    if loss_code == 0:
                        E[aout + r] = (sigmoid32(z) - y) / nbf
                    else:
                        E[aout + r] = (_TWO * (z - y)) / nbf
                for l in range(L - 1, first_w - 1, -1):
                    if cofs[l, 0] >= 0:  # the gradients by tiles, the input error by the scalar rule
                        _conv_grad_tiles(prog[l], cofs[l], G, A, E, nb, S, ones)
                        if l > first_w:
                            _bwd_layer(prog[l], P, G, A, E, nb, True, False)
                    else:
                        _bwd_layer(prog[l], P, G, A, E, nb, l > first_w, True)
                opt_step(ints, floats, bt, P, G, S1, S2, n_params)
                _refresh_conv(prog, cofs, P, S[0], S[1])
            # the fit check, ``cap`` train points at a time; the first miss ends it (same answer)
            fitted = True
            for r0 in range(0, m, cap):
                nn = min(cap, m - r0)
                _eval_block(prog, cofs, P, A, Xtr, r0, nn, nin, S)
                for r in range(nn):
                    if (A[aout + r] > thr) != (ytr[r0 + r] == _ONE):
                        fitted = False
                        break
                if not fitted:
                    break
            if fitted:
                if ff < 0:
                    ff = e
                if e - ff >= eaf and e >= min_ep:
                    st = 0
                    break
        if st != 0:
            st = 1 if fitted else 2
        sl = _ZERO
        for r0 in range(0, m, cap):
            nn = min(cap, m - r0)
            _eval_block(prog, cofs, P, A, Xtr, r0, nn, nin, S)
            for r in range(nn):
                z = A[aout + r]
                if loss_code == 0:
                    sl = sl + softplus32(-z if ytr[r0 + r] == _ONE else z)
                else:
                    dz = z - ytr[r0 + r]
                    sl = fma(dz, dz, sl)
        losses[o] = sl / _F(m)
        for w in range(n_words):
            keys[o, w] = 0
        for r0 in range(0, nk, cap):
            nn = min(cap, nk - r0)
            _eval_block(prog, cofs, P, A, Xkey, r0, nn, nin, S)
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
def _train_lanes(rk, prog, cofs, csz, first_w, alen, P0, Xtr, ytr, Xkey, ints, floats, leak_w, leak_E, leak_from,
                 keys, init_keys, status, first_fit, epochs, losses, params_out, want_params, start, n, n_lanes):
    per = (n + n_lanes - 1) // n_lanes
    for lane in prange(n_lanes):
        a = lane * per
        b = min(n, a + per)
        if b > a:
            _train_lane(rk, prog, cofs, csz, first_w, alen, P0, Xtr, ytr, Xkey, ints, floats, leak_w, leak_E, leak_from,
                        keys, init_keys, status, first_fit, epochs, losses, params_out, want_params,
                        start + np.uint64(a), b - a, a)


def conv_scratch(prog: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(cofs, csz)`` of the tile path of the convolutions.

    ``cofs``: per layer ``(WT offset, BT offset, Fp)`` (``-1`` for layers that are not
    convolutions); ``csz``: the lengths of WT, BT, PT, Z (= Dp), GT, GB.
    """
    cofs = np.full((prog.shape[0], 3), -1, np.int64)
    nwt = nbt = npt = nz = ngt = ngb = 0
    for l, pr in enumerate(prog):
        if pr[C_KIND] != K_CONV:
            continue
        fan = int(pr[C_K] * pr[C_K] * pr[C_IC])
        fp = (int(pr[C_OC]) + VW - 1) // VW * VW
        pos = int(rows * pr[C_OH] * pr[C_OW])
        cofs[l] = (nwt, nbt, fp)
        nwt += fan * fp
        nbt += fp
        npt = max(npt, pos * fan)
        nz = max(nz, pos * fp)
        ngt = max(ngt, fan * fp)
        ngb = max(ngb, fp)
    return cofs, np.array([nwt, nbt, npt, nz, ngt, ngb], np.int64)


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
        self.cofs, self.csz = conv_scratch(self.prog, rows)
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
            _train_lanes(self.rk, self.prog, self.cofs, self.csz, self.first_w, self.alen, P0, self.Xtr, self.ytr, self.Xkey,
                         self.ints, self.floats, int(lw), lE, lf, keys, init_keys, status, first_fit, epochs,
                         losses, pout, bool(params), np.uint64(lo), n, n_lanes)
        return TrainBatch(lo, hi, keys, init_keys, status, first_fit, epochs, losses, pout if params else None)


def train_range_layers(tp: Any, lo: int, hi: int, params: bool = False, n_threads: int | None = None,
                       prepared: PreparedLayerTrain | None = None) -> TrainBatch:
    """Train runs ``lo .. hi-1`` with the generic layer kernel (bit-identical to the reference)."""
    import numba

    pt = prepared if prepared is not None else PreparedLayerTrain(tp)
    return pt.run(int(lo), int(hi), n_threads or numba.get_num_threads(), params)
