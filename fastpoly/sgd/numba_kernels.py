"""The fused Numba trainer: parallel over runs, bit-identical to :mod:`fastpoly.sgd.reference`.

One compiled call trains a range of runs.  The range is split into contiguous
*lanes* (``prange``); each lane allocates its scratch once (parameters,
gradient, optimiser state, activations -- a few tens of kB for 7-40-40-1, in
L1/L2) and then trains its runs one after another:

1. Philox words -> normals -> parameters (the sampler's bits: run ``i`` starts
   from ``instantiate(seed, i)``);
2. per epoch: the Fisher--Yates order of the train points (:func:`fastpoly.sgd.reference.epoch_order`),
   per minibatch forward, backward and update, then the fit check on all train points;
3. the function on the key rows (and, first, that of the initialisation).

Layouts: activations are feature-major (``H[k*ld + r]``, the batch in the SIMD
lanes) for the forward pass and the back-propagated error; a transposed copy
(``HT[r*fi + k]``) makes the weight gradient a loop over ``k`` with the
reduction over the batch sequential, as in the reference.  Every multiply-add
is :func:`fastpoly.backends.numba.jit.fma`; the summation orders are the reference's.
"""
from __future__ import annotations

import numpy as np

from fastpoly.backends.numba.jit import fma, jit, pjit, prange
from fastpoly.backends.numba.rng import (
    normals_from_words,
    philox_block,
    philox_sample_words,
    round_keys,
    uniform_pm1_from_words,
)
from fastpoly.backends.numba.vecmath import sigmoid32, softplus32
from fastpoly.sgd.plan import SGD_STREAM, TrainPlan, blocks_per_epoch
from fastpoly.sgd.reference import TrainBatch
from fastpoly.stream.rng import check_seed

__all__ = ["PreparedTrain", "train_range_numba"]

_F = np.float32
_ZERO = _F(0.0)
_ONE = _F(1.0)
_TWO = _F(2.0)
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@jit(inline="always")
def _forward(P, L, widths, wofs, bofs, relu, H, Z, n, ld):
    """Pre-activations ``Z[l]`` and layer inputs ``H[l]`` (feature-major, ``n`` rows, stride ``ld``)."""
    for l in range(L):
        fi = widths[l]
        fo = widths[l + 1]
        wo = wofs[l]
        bo = bofs[l]
        for j in range(fo):
            bj = P[bo + j] if bo >= 0 else _ZERO
            zb = j * ld
            for r in range(n):
                Z[l, zb + r] = bj
            for k in range(fi):
                w = P[wo + j * fi + k]
                hb = k * ld
                for r in range(n):
                    Z[l, zb + r] = fma(w, H[l, hb + r], Z[l, zb + r])
        if l < L - 1:
            for t in range(fo * ld):
                v = Z[l, t]
                H[l + 1, t] = _ZERO if (relu and v < _ZERO) else v


@jit(inline="always")
def _load_rows(X, rows, n, n_in, H, ld):
    for r in range(n):
        for k in range(n_in):
            H[0, k * ld + r] = X[rows[r], k]


@jit
def _train_lane(rk, first, count, L, widths, wofs, bofs, uniform, pscale, relu, Xtr, ytr, Xkey, nk,
                ints, floats, leak_w, leak_E, leak_from, keys, init_keys, status, first_fit, epochs,
                losses, params_out, want_params, out0):
    n_params = pscale.shape[0]
    n_blocks = (n_params + 3) // 4
    n_in = widths[0]
    m = Xtr.shape[0]
    opt, loss_code, nesterov, batch_size, max_epochs, eaf0, min_ep0 = (
        ints[0], ints[1], ints[2], ints[3], ints[4], ints[5], ints[6])
    lr, mu, b1, b2, eps, thr, c1, c2 = (floats[0], floats[1], floats[2], floats[3], floats[4], floats[5],
                                        floats[6], floats[7])
    nlr = -lr
    B = min(m, batch_size)
    ld = max(nk, m)
    maxw = 1
    for i in range(L + 1):
        maxw = max(maxw, widths[i])
    n_words = keys.shape[1]
    bpe = (m - 1 + 3) // 4
    bpe = max(bpe, 1)
    words = np.empty(4 * n_blocks, np.uint32)
    unit = np.empty(4 * n_blocks, np.float32)
    P = np.empty(n_params, np.float32)
    G = np.empty(n_params, np.float32)
    S1 = np.empty(n_params, np.float32)
    S2 = np.empty(n_params, np.float32)
    H = np.zeros((L, maxw * ld), np.float32)
    Z = np.zeros((L, maxw * ld), np.float32)
    D = np.zeros(maxw * ld, np.float32)
    E = np.zeros(maxw * ld, np.float32)
    HT = np.zeros(maxw * B, np.float32)
    perm = np.empty(m, np.int64)
    allrows = np.arange(m)
    keyrows = np.arange(nk)
    sw = np.empty(4 * bpe, np.uint32)
    nbf = _ONE
    for s in range(count):
        o = out0 + s
        index = first + np.uint64(s)
        philox_sample_words(rk, index, 0, n_blocks, words)
        if uniform:
            uniform_pm1_from_words(words, n_params, unit)
        else:
            normals_from_words(words, 2 * n_blocks, unit)
        for p in range(n_params):
            P[p] = unit[p] * pscale[p]
            S1[p] = _ZERO
            S2[p] = _ZERO
        # the function of the initialisation on the key rows
        _load_rows(Xkey, keyrows, nk, n_in, H, ld)
        _forward(P, L, widths, wofs, bofs, relu, H, Z, nk, ld)
        for w in range(n_words):
            init_keys[o, w] = 0
        for r in range(nk):
            if Z[L - 1, r] > _ZERO:
                init_keys[o, r >> 6] |= np.uint64(1) << np.uint64(r & 63)
        # the stopping rule of this run (the leaked callback where it applies)
        min_ep = min_ep0
        eaf = eaf0
        if leak_w > 0:
            wk = np.int64(index % np.uint64(leak_w))
            if np.int64(index) > leak_from[wk]:
                v = leak_E[wk] + eaf0
                min_ep = max(min_ep0, v)
                eaf = 0
        b1t = _ONE
        b2t = _ONE
        ff = -1
        st = 2
        fitted = False
        e = 0
        lo32 = np.uint64(index) & _MASK32
        hi32 = np.uint64(index) >> _S32
        while e < max_epochs:
            # Fisher-Yates order of the train points for epoch e (0-based)
            for jb in range(bpe):
                c0, c1w, c2w, c3 = philox_block(np.uint64(e * bpe + jb), np.uint64(1), lo32, hi32, rk)
                sw[4 * jb] = np.uint32(c0)
                sw[4 * jb + 1] = np.uint32(c1w)
                sw[4 * jb + 2] = np.uint32(c2w)
                sw[4 * jb + 3] = np.uint32(c3)
            for t in range(m):
                perm[t] = t
            for t in range(m - 1, 0, -1):
                u = np.int64((np.uint64(sw[m - 1 - t]) * np.uint64(t + 1)) >> _S32)
                tmp = perm[t]
                perm[t] = perm[u]
                perm[u] = tmp
            e += 1
            for a in range(0, m, B):
                nb = B if a + B <= m else m - a
                nbf = _F(nb)
                for r in range(nb):
                    for k in range(n_in):
                        H[0, k * ld + r] = Xtr[perm[a + r], k]
                _forward(P, L, widths, wofs, bofs, relu, H, Z, nb, ld)
                for r in range(nb):
                    z = Z[L - 1, r]
                    y = ytr[perm[a + r]]
                    if loss_code == 0:
                        D[r] = (sigmoid32(z) - y) / nbf
                    else:
                        D[r] = (_TWO * (z - y)) / nbf
                for l in range(L - 1, -1, -1):
                    fi = widths[l]
                    fo = widths[l + 1]
                    wo = wofs[l]
                    bo = bofs[l]
                    for k in range(fi):
                        for r in range(nb):
                            HT[r * fi + k] = H[l, k * ld + r]
                    for j in range(fo):
                        gb = _ZERO
                        for r in range(nb):
                            gb = gb + D[j * ld + r]
                        if bo >= 0:
                            G[bo + j] = gb
                        gw = wo + j * fi
                        for k in range(fi):
                            G[gw + k] = _ZERO
                        for r in range(nb):
                            d = D[j * ld + r]
                            hb = r * fi
                            for k in range(fi):
                                G[gw + k] = fma(d, HT[hb + k], G[gw + k])
                    if l > 0:
                        for t in range(fi * ld):
                            E[t] = _ZERO
                        for j in range(fo):
                            for k in range(fi):
                                w = P[wo + j * fi + k]
                                for r in range(nb):
                                    E[k * ld + r] = fma(D[j * ld + r], w, E[k * ld + r])
                        for k in range(fi):
                            for r in range(nb):
                                t = k * ld + r
                                D[t] = E[t] if (not relu or Z[l - 1, t] > _ZERO) else _ZERO
                # update
                if opt == 1:
                    b1t = b1t * b1
                    b2t = b2t * b2
                    bc1 = _ONE - b1t
                    bc2 = _ONE - b2t
                    for p in range(n_params):
                        g = G[p]
                        mm = fma(b1, S1[p], c1 * g)
                        vv = fma(b2, S2[p], (c2 * g) * g)
                        S1[p] = mm
                        S2[p] = vv
                        stp = (mm / bc1) / (np.sqrt(vv / bc2) + eps)
                        P[p] = fma(nlr, stp, P[p])
                elif mu == _ZERO:
                    for p in range(n_params):
                        P[p] = fma(nlr, G[p], P[p])
                else:
                    for p in range(n_params):
                        bf = fma(mu, S1[p], G[p])
                        S1[p] = bf
                        stp = fma(mu, bf, G[p]) if nesterov else bf
                        P[p] = fma(nlr, stp, P[p])
            # fit check on all train points
            _load_rows(Xtr, allrows, m, n_in, H, ld)
            _forward(P, L, widths, wofs, bofs, relu, H, Z, m, ld)
            fitted = True
            for r in range(m):
                if (Z[L - 1, r] > thr) != (ytr[r] == _ONE):
                    fitted = False
                    break
            if fitted:
                if ff < 0:
                    ff = e
                if e - ff >= eaf and e >= min_ep:
                    st = 0
                    break
        if st != 0:
            st = 1 if fitted else 2
        # final train loss (the last fit check left the train outputs in Z unless it broke early)
        _load_rows(Xtr, allrows, m, n_in, H, ld)
        _forward(P, L, widths, wofs, bofs, relu, H, Z, m, ld)
        sl = _ZERO
        for r in range(m):
            z = Z[L - 1, r]
            if loss_code == 0:
                sl = sl + softplus32(-z if ytr[r] == _ONE else z)
            else:
                dz = z - ytr[r]
                sl = fma(dz, dz, sl)
        losses[o] = sl / _F(m)
        # the reached function on the key rows
        _load_rows(Xkey, keyrows, nk, n_in, H, ld)
        _forward(P, L, widths, wofs, bofs, relu, H, Z, nk, ld)
        for w in range(n_words):
            keys[o, w] = 0
        for r in range(nk):
            if Z[L - 1, r] > _ZERO:
                keys[o, r >> 6] |= np.uint64(1) << np.uint64(r & 63)
        status[o] = st
        first_fit[o] = ff
        epochs[o] = e
        if want_params:
            for p in range(n_params):
                params_out[o, p] = P[p]


@pjit
def _train_lanes(rk, start, n, n_lanes, L, widths, wofs, bofs, uniform, pscale, relu, Xtr, ytr, Xkey, nk,
                 ints, floats, leak_w, leak_E, leak_from, keys, init_keys, status, first_fit, epochs, losses,
                 params_out, want_params):
    per = (n + n_lanes - 1) // n_lanes
    for lane in prange(n_lanes):
        a = lane * per
        b = min(n, a + per)
        if b > a:
            _train_lane(rk, start + np.uint64(a), b - a, L, widths, wofs, bofs, uniform, pscale, relu, Xtr,
                        ytr, Xkey, nk, ints, floats, leak_w, leak_E, leak_from, keys, init_keys, status,
                        first_fit, epochs, losses, params_out, want_params, a)


class PreparedTrain:
    """Kernel-ready arrays of a :class:`~fastpoly.sgd.plan.TrainPlan` (built once per plan)."""

    def __init__(self, tp: TrainPlan):
        plan = tp.plan
        mlp = plan.mlp
        self.tp = tp
        self.rk = round_keys(check_seed(plan.seed))
        self.L = int(mlp.n_layers)
        self.widths = np.asarray(mlp.widths, np.int64)
        offs = mlp.param_offsets()
        self.wofs = np.array([o[0] for o in offs], np.int64)
        self.bofs = np.array([o[1] if o[1] is not None else -1 for o in offs], np.int64)
        self.uniform = mlp.weights == "uniform"
        scale = np.empty(mlp.n_params, np.float32)
        w = mlp.widths
        for i, ((wo, bo), (ws, bs)) in enumerate(zip(offs, mlp.scales())):
            scale[wo: wo + w[i] * w[i + 1]] = ws
            if bo is not None:
                scale[bo: bo + w[i + 1]] = bs
        self.pscale = scale
        self.relu = mlp.activation == "relu"
        self.Xtr = np.ascontiguousarray(plan.X[plan.train_rows], np.float32)
        self.ytr = np.ascontiguousarray(plan.train_labels, np.float32)
        self.Xkey = np.ascontiguousarray(plan.X[plan.key_rows], np.float32)
        self.nk = int(plan.key_rows.size)
        self.ints = tp.recipe.ints()
        self.floats = tp.recipe.floats()
        self.leak = tp.leak_arrays()
        assert SGD_STREAM == 1 and blocks_per_epoch(2) == 1

    def run(self, lo, hi, n_threads, params=False):
        """Train runs ``lo .. hi-1`` on ``n_threads`` threads; a :class:`TrainBatch` (with parameters if asked)."""
        n = hi - lo
        W = self.tp.plan.n_words
        keys = np.zeros((n, W), np.uint64)
        init_keys = np.zeros((n, W), np.uint64)
        status = np.zeros(n, np.int8)
        first_fit = np.zeros(n, np.int32)
        epochs = np.zeros(n, np.int32)
        losses = np.zeros(n, np.float32)
        pout = np.zeros((n if params else 1, self.pscale.size), np.float32)
        n_lanes = max(1, min(n, 4 * n_threads))
        if n:
            lw, lE, lf = self.leak
            _train_lanes(self.rk, np.uint64(lo), n, n_lanes, self.L, self.widths, self.wofs, self.bofs,
                         self.uniform, self.pscale, self.relu, self.Xtr, self.ytr, self.Xkey, self.nk,
                         self.ints, self.floats, np.int64(lw), lE, lf, keys, init_keys, status, first_fit,
                         epochs, losses, pout, bool(params))
        return TrainBatch(lo, hi, keys, init_keys, status, first_fit, epochs, losses, pout if params else None)


def train_range_numba(tp: TrainPlan, lo: int, hi: int, params: bool = False, n_threads: int | None = None,
                      prepared: PreparedTrain | None = None) -> TrainBatch:
    """Train runs ``lo .. hi-1`` with the Numba kernel (bit-identical to the reference)."""
    import numba

    pt = prepared if prepared is not None else PreparedTrain(tp)
    return pt.run(int(lo), int(hi), n_threads or numba.get_num_threads(), params)
