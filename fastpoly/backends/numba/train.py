"""The fused Numba trainer: parallel over runs, bit-identical to :mod:`fastpoly.sgd.reference`.

One compiled call trains a range of runs.  The range is split into contiguous
*lanes* (``prange``); each lane allocates its scratch once (parameters,
gradient, optimiser state, activations -- a few tens of kB for 7-40-40-1, in
L1/L2) and then trains its runs one after another:

1. Philox words -> normals -> parameters (the sampler's bits: run ``i`` starts
   from ``instantiate(seed, i)``);
2. per epoch: the Fisher--Yates order of the train points (:func:`fastpoly.sgd.reference.epoch_order`),
   per minibatch forward, backward and update, then the divergence check (a parameter that is not
   finite ends the run, status 3; so does a final train loss that is not finite) and the fit check
   on all train points;
3. the function on the key rows (and, first, that of the initialisation).

Every product is a register-blocked tile of :mod:`fastpoly.backends.numba.train_tiles`: SIMD
lanes run *independent* sums side by side while each single sum keeps the
reference's order (one float32 FMA per step), so the bits are the reference's.

* Parameters ``Q``: per layer ``W`` stored transposed (``fan_in`` rows of
  ``wp[l+1] = ceil8(fan_out)`` floats, 32 more where that is a multiple of 512), then the biases (``wp[l+1]`` floats); the pads
  are +0 and stay +0 (their gradients are exact zeros).  Layers ``l >= 1`` keep a
  scratch copy ``WJ`` of ``W`` (``fan_out`` rows of ``wp[l]``), refreshed after each
  update by 8x8 in-register transposes, for the back-propagation.
* Activations and errors are row-major (``H[l][r*wp[l] + k]``, ``D[l][r*wp[l+1] + j]``).
* Forward: tile rows are minibatch rows, lanes neurons: ``z = b`` then
  ``fma(h[r, k], W[j, k], z)``, ``k`` ascending; relu fused into the store.
* Weight gradient: tile rows are inputs ``k``, lanes neurons ``j``, the sum over the
  minibatch rows ``r`` in order; bias gradient: ``fma(1, d, s) == s + d`` exactly.
* Back-propagated error: tile rows are minibatch rows, lanes inputs ``k``, the sum
  over ``j`` in order; the relu mask ``h > 0`` (exactly ``z > 0``) fused into the store.
* Fit check: :data:`_RB` train points at a time through all layers (on wide nets a
  minibatch's worth), starting from the block of the last miss; the first miss ends it
  (``not fitted`` either way, so the results are exact).
* Wide nets (layers of 128 neurons or more, a CPU with AVX-512): 512-bit tiles of 8 rows x 32
  lanes (:func:`~fastpoly.backends.numba.train_tiles.tiles_w`), the same sums in the same order.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from fastpoly.activations import CODES, check_supported
from fastpoly.backends.base import TrainBatch
from fastpoly.backends.numba.epochs import epoch_order, stop_rule
from fastpoly.backends.numba.jit import fma, jit, pjit, prange
from fastpoly.backends.numba.optstep import opt_s1_init, opt_step
from fastpoly.backends.numba.rng import (
    normals_from_words,
    philox_sample_words,
    round_keys,
    uniform_pm1_from_words,
)
from fastpoly.backends.numba.train_tiles import (
    ACT_MASK,
    ACT_NONE,
    ACT_RELU,
    INIT_VEC,
    INIT_ZERO,
    VW,
    WIDE_MIN,
    tiles_w,
    transpose_into,
    wide_tiles_available,
)
from fastpoly.backends.numba.vecmath import d_erf32, d_sigmoid32, d_tanh32, erf32, sigmoid32, softplus32, tanh32
from fastpoly.model.optimizers import RF, RI
from fastpoly.stream.rng import SGD_STREAM, blocks_per_epoch, check_seed

__all__ = ["PreparedTrain", "TrainData", "TrainNet", "TrainOut", "train_range_numba"]

_F = np.float32
_FMAX = np.float32(np.finfo(np.float32).max)
_ZERO = _F(0.0)
_ONE = _F(1.0)
_TWO = _F(2.0)
_MASK32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
#: recipe offsets (fastpoly.model.optimizers; the update itself: fastpoly.backends.numba.optstep)
_RI_LOSS, _RI_BS, _RI_MAXE, _RI_EAF, _RI_MINE = (RI[k] for k in (
    "loss", "batch_size", "max_epochs", "epochs_after_fit", "min_epochs"))
_RF_THR = RF["fit_threshold"]


#: hidden-activation codes (the activation table's)
_A_RELU, _A_IDENTITY, _A_TANH, _A_ERF, _A_SIGMOID = (CODES[k] for k in ("relu", "identity", "tanh", "erf", "sigmoid"))


@jit
def _act_rows(code, Zl, Hl, n, stride, width):
    """``Hl[r*stride + j] = f(Zl[r*stride + j])`` for a smooth activation (``fmath_train``'s bits).

    The switch is outside the loops, so that they vectorise.
    """
    if code == _A_TANH:
        for r in range(n):
            for j in range(width):
                Hl[r * stride + j] = tanh32(Zl[r * stride + j])
    elif code == _A_ERF:
        for r in range(n):
            for j in range(width):
                Hl[r * stride + j] = erf32(Zl[r * stride + j])
    else:
        for r in range(n):
            for j in range(width):
                Hl[r * stride + j] = sigmoid32(Zl[r * stride + j])


@jit
def _dact_rows(code, Zl, Dl, n, stride, width):
    """``Dl[i] = Dl[i] * f'(Zl[i])`` (``i = r*stride + k``) for a smooth activation (``fmath_train``'s bits)."""
    if code == _A_TANH:
        for r in range(n):
            for k in range(width):
                Dl[r * stride + k] = d_tanh32(Zl[r * stride + k], Dl[r * stride + k])
    elif code == _A_ERF:
        for r in range(n):
            for k in range(width):
                Dl[r * stride + k] = d_erf32(Zl[r * stride + k], Dl[r * stride + k])
    else:
        for r in range(n):
            for k in range(width):
                Dl[r * stride + k] = d_sigmoid32(Zl[r * stride + k], Dl[r * stride + k])


@jit
def _smooth(code):
    return code != _A_RELU and code != _A_IDENTITY


#: rows per block of the fit check, the final loss and the key function
_RB = 8


def _ceil(n):
    """``n`` rounded up to a multiple of :data:`VW`."""
    return (int(n) + VW - 1) // VW * VW


#: padded widths that are multiples of this get one 512-bit tile's 32 lanes more: a row stride of
#: 512 or 1,024 floats (2 or 4 KiB) maps the 8 rows of a tile, and the rows of W, to the same cache
#: sets (measured, one thread: 64-1024-1024-1 trained at 10.5 GFLOP/s, 64-1056-1056-1 at 20.3)
STRIDE_AVOID = 512


def _width_stride(n):
    """The row stride of a layer of ``n`` neurons: :func:`_ceil`, plus 32 where that is a multiple of 512."""
    c = _ceil(n)
    return c + 32 if c >= STRIDE_AVOID and c % STRIDE_AVOID == 0 else c


@jit
def _forward(Q, L, widths, wp, qw, qb, act, X0, x0off, H, Z, n, zeros, wide):
    """Forward pass on ``n`` rows, row-major.

    Layer 0 reads ``X0[x0off + r*wp[0] + k]``, layer ``l`` writes ``H[l+1][r*wp[l+1] + j]``
    (the activation ``act`` on hidden layers); the logit of row ``r`` is ``H[L][r*wp[L]]``.

    Tile rows are the rows ``r``, lanes the neurons ``j``: ``z = b[j]`` then
    ``fma(h[r, k], W[j, k], z)`` for ``k`` ascending (``W`` stored transposed).  relu is fused into
    the tile's store; a smooth activation keeps the pre-activations in ``Z[l+1]`` (for the
    backward pass) and writes ``H[l+1] = f(Z[l+1])``.  ``wide``: 512-bit tiles on wide layers
    (:func:`~fastpoly.backends.numba.train_tiles.tiles_w`).
    """
    smooth = _smooth(act)
    for l in range(L):
        hidden = l < L - 1
        tact = ACT_RELU if (act == _A_RELU and hidden) else ACT_NONE
        fop = wp[l + 1]
        out = Z[l + 1] if (smooth and hidden) else H[l + 1]
        if l == 0:
            tiles_w(X0, x0off, wp[0], 1, Q, qw[0], fop, widths[0], out, 0, fop, Q, qb[0], zeros,
                    INIT_VEC, tact, n, fop // VW, wide)
        else:
            tiles_w(H[l], 0, wp[l], 1, Q, qw[l], fop, widths[l], out, 0, fop, Q, qb[l], zeros,
                    INIT_VEC, tact, n, fop // VW, wide)
        if smooth and hidden:
            _act_rows(act, out, H[l + 1], n, fop, widths[l + 1])


class TrainNet(NamedTuple):
    """The architecture and the kernel's parameter layout of a plan (one Numba namedtuple argument).

    Attributes
    ----------
    n_layers : int
        Dense layers ``L``.
    widths : numpy.ndarray
        int64 ``(L + 1,)``: inputs, hidden widths, outputs.
    wofs, bofs : numpy.ndarray
        int64 ``(L,)``: offsets of each layer's weights / biases (``-1``: none) in the MLP parameter order.
    wp : numpy.ndarray
        int64 ``(L + 1,)``: widths rounded up to a multiple of :data:`VW` (row strides).
    qw, qb, qj : numpy.ndarray
        int64 ``(L,)``: offsets of each layer's transposed weights and biases in the kernel's
        parameter vector, and of its scratch copy of ``W`` (back-propagation).
    nq, nj : int
        Lengths of the kernel's parameter vector and of the scratch copy.
    uniform : bool
        Uniform(-1, 1) instead of Gaussian initial parameters.
    pscale : numpy.ndarray
        float32 ``(n_params,)``: per-parameter scale of the initialisation.
    act : int
        Hidden activation (its code in :data:`fastpoly.activations.CODES`): relu and identity fused
        into the tiles, tanh / erf / sigmoid by their float32 functions.
    wide : bool
        512-bit tiles on layers of at least 128 (padded) neurons and minibatch-sized blocks for the fit
        check, the loss and the keys (:func:`~fastpoly.backends.numba.train_tiles.tiles_w`); the bits
        are the same either way.
    """

    n_layers: int
    widths: np.ndarray
    wofs: np.ndarray
    bofs: np.ndarray
    wp: np.ndarray
    qw: np.ndarray
    qb: np.ndarray
    qj: np.ndarray
    nq: int
    nj: int
    uniform: bool
    pscale: np.ndarray
    act: int
    wide: bool


class TrainData(NamedTuple):
    """The train and key rows, the recipe and the leak emulation of a plan (one namedtuple argument).

    Attributes
    ----------
    Xtr_rm, Xkey_rm : numpy.ndarray
        float32: train / key rows, row-major, each padded to ``wp[0]`` floats.
    ytr : numpy.ndarray
        float32 ``(m,)``: train labels.
    nk : int
        Key rows.
    ints, floats : numpy.ndarray
        The recipe's integer and float fields (:meth:`fastpoly.sgd.recipe.Recipe.ints` / ``floats``).
    leak_w : int
        Workers of the leaked-callback emulation (0: none).
    leak_E, leak_from : numpy.ndarray
        int64 ``(max(leak_w, 1),)``: per worker the first-fit epoch and the run that set it.
    """

    Xtr_rm: np.ndarray
    Xkey_rm: np.ndarray
    ytr: np.ndarray
    nk: int
    ints: np.ndarray
    floats: np.ndarray
    leak_w: int
    leak_E: np.ndarray
    leak_from: np.ndarray


class TrainOut(NamedTuple):
    """The per-run output arrays of one kernel call (one row per run of the call).

    Attributes
    ----------
    keys, init_keys : numpy.ndarray
        uint64 ``(n, n_words)``: the reached function and the initialisation's on the key rows.
    status : numpy.ndarray
        int8 ``(n,)``.
    first_fit, epochs : numpy.ndarray
        int32 ``(n,)``.
    losses : numpy.ndarray
        float32 ``(n,)``: final train loss.
    params_out : numpy.ndarray
        float32 ``(n, n_params)`` (``(1, n_params)`` when parameters are not wanted).
    want_params : bool
        Write the final parameters.
    """

    keys: np.ndarray
    init_keys: np.ndarray
    status: np.ndarray
    first_fit: np.ndarray
    epochs: np.ndarray
    losses: np.ndarray
    params_out: np.ndarray
    want_params: bool


@jit
def _train_lane(rk, net, data, out, first, count, out0):
    """Train runs ``first .. first+count-1`` (uint64 indices); results at rows ``out0 ..`` of ``out``.

    ``rk``: Philox round keys; ``net``: :class:`TrainNet`; ``data``: :class:`TrainData`;
    ``out``: :class:`TrainOut`.
    """
    L, widths, wofs, bofs, wp = net.n_layers, net.widths, net.wofs, net.bofs, net.wp
    qw, qb, qj, nq, nj = net.qw, net.qb, net.qj, net.nq, net.nj
    uniform, pscale, act = net.uniform, net.pscale, net.act
    smooth = _smooth(act)
    Xtr_rm, Xkey_rm, ytr, nk, ints, floats = data.Xtr_rm, data.Xkey_rm, data.ytr, data.nk, data.ints, data.floats
    leak_w, leak_E, leak_from = data.leak_w, data.leak_E, data.leak_from
    keys, init_keys, status, first_fit = out.keys, out.init_keys, out.status, out.first_fit
    epochs, losses, params_out, want_params = out.epochs, out.losses, out.params_out, out.want_params
    n_params = pscale.shape[0]
    n_blocks = (n_params + 3) // 4
    m = ytr.shape[0]
    loss_code, batch_size, max_epochs, eaf0, min_ep0 = (
        ints[_RI_LOSS], ints[_RI_BS], ints[_RI_MAXE], ints[_RI_EAF], ints[_RI_MINE])
    thr = floats[_RF_THR]
    s1_init = opt_s1_init(ints, floats)
    bt = np.empty(2, np.float32)  # Adam's beta1^t, beta2^t (from 1 in every run)
    B = min(m, batch_size)
    rows = max(B, _RB)
    maxwp = VW
    for i in range(L + 1):
        maxwp = max(maxwp, wp[i])
    wide = net.wide
    # rows per block of the fit check, the final loss and the key functions: a whole minibatch's buffer
    # on wide nets (each block streams every weight), _RB on narrow ones (a miss ends the fit check early)
    rb = rows if (wide and maxwp >= WIDE_MIN * VW) else _RB
    n_words = keys.shape[1]
    bpe = (m - 1 + 3) // 4
    bpe = max(bpe, 1)
    wp0 = wp[0]
    wpL = wp[L]
    words = np.empty(4 * n_blocks, np.uint32)
    unit = np.empty(4 * n_blocks, np.float32)
    Q = np.zeros(nq, np.float32)
    WJ = np.zeros(max(nj, 1), np.float32)
    G = np.zeros(nq, np.float32)
    S1 = np.zeros(nq, np.float32)
    S2 = np.zeros(nq, np.float32)
    zeros = np.zeros(VW, np.float32)
    ones = np.ones(1, np.float32)
    H = np.zeros((L + 1, maxwp * rows), np.float32)
    Z = np.zeros((L + 1 if smooth else 1, maxwp * rows), np.float32)
    D = np.zeros((L, maxwp * rows), np.float32)
    perm = np.empty(m, np.int64)
    sw = np.empty(4 * bpe, np.uint32)
    nbf = _ONE
    miss_blk = 0
    n_tb = (m + rb - 1) // rb
    for s in range(count):
        o = out0 + s
        index = first + np.uint64(s)
        philox_sample_words(rk, index, 0, n_blocks, words)
        if uniform:
            uniform_pm1_from_words(words, n_params, unit)
        else:
            normals_from_words(words, 2 * n_blocks, unit)
        # parameters into the kernel layout (W transposed, rows padded; pads stay +0)
        for l in range(L):
            fi = widths[l]
            fo = widths[l + 1]
            for j in range(fo):
                for k in range(fi):
                    p = wofs[l] + j * fi + k
                    Q[qw[l] + k * wp[l + 1] + j] = unit[p] * pscale[p]
                if bofs[l] >= 0:
                    p = bofs[l] + j
                    Q[qb[l] + j] = unit[p] * pscale[p]
        for l in range(1, L):
            transpose_into(Q, qw[l], wp[l + 1], widths[l], widths[l + 1], WJ, qj[l], wp[l])
        for p in range(nq):
            S1[p] = s1_init
            S2[p] = _ZERO
        # the function of the initialisation on the key rows
        for w in range(n_words):
            init_keys[o, w] = 0
        for r0 in range(0, nk, rb):
            n = min(rb, nk - r0)
            _forward(Q, L, widths, wp, qw, qb, act, Xkey_rm, r0 * wp0, H, Z, n, zeros, wide)
            for r in range(n):
                if H[L, r * wpL] > _ZERO:
                    init_keys[o, (r0 + r) >> 6] |= np.uint64(1) << np.uint64((r0 + r) & 63)
        # the stopping rule of this run (the leaked callback where it applies)
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
                h0 = H[0]
                for r in range(nb):
                    row = perm[a + r]
                    for k in range(wp0):
                        h0[r * wp0 + k] = Xtr_rm[row * wp0 + k]
                _forward(Q, L, widths, wp, qw, qb, act, h0, 0, H, Z, nb, zeros, wide)
                dl = D[L - 1]
                for r in range(nb):
                    z = H[L, r * wpL]
                    y = ytr[perm[a + r]]
                    if loss_code == 0:
                        dl[r * wpL] = (sigmoid32(z) - y) / nbf
                    else:
                        dl[r * wpL] = (_TWO * (z - y)) / nbf
                for l in range(L - 1, -1, -1):
                    fi = widths[l]
                    fo = widths[l + 1]
                    fi_p = wp[l]
                    fo_p = wp[l + 1]
                    d = D[l]
                    # weight gradient gW[j, k] = sum over r (in order) of d[r, j] * h[r, k]; rows k, lanes j
                    tiles_w(H[l], 0, 1, fi_p, d, 0, fo_p, nb, G, qw[l], fo_p, zeros, 0, zeros,
                            INIT_ZERO, ACT_NONE, fi, fo_p // VW, wide)
                    if bofs[l] >= 0:
                        # bias gradient gb[j] = ((0 + d[0, j]) + d[1, j]) + ...: fma(1, d, s) == s + d exactly
                        tiles_w(ones, 0, 0, 0, d, 0, fo_p, nb, G, qb[l], 0, zeros, 0, zeros,
                                INIT_ZERO, ACT_NONE, 1, fo_p // VW, wide)
                    if l > 0:
                        # back-propagated error e[r, k] = sum over j (in order) of d[r, j] * W[j, k], then the
                        # relu mask h[r, k] > 0 (exactly z > 0) or a smooth f'(z); rows r, lanes k
                        tiles_w(d, 0, fo_p, 1, WJ, qj[l], fi_p, fo, D[l - 1], 0, fi_p, zeros, 0, H[l],
                                INIT_ZERO, ACT_MASK if act == _A_RELU else ACT_NONE, nb, fi_p // VW, wide)
                        if smooth:
                            _dact_rows(act, Z[l], D[l - 1], nb, fi_p, fi)
                # update: the shared optimiser step
                opt_step(ints, floats, bt, Q, G, S1, S2, nq)
                for l in range(1, L):
                    transpose_into(Q, qw[l], wp[l + 1], widths[l], widths[l + 1], WJ, qj[l], wp[l])
            # divergence: a parameter that is not finite ends the run (status 3: diverged, not fitted)
            # (a branch-free OR over all of Q vectorises; NaN fails the comparison too)
            finite = True
            for p in range(nq):
                finite &= np.abs(Q[p]) <= _FMAX
            if not finite:
                st = 3
                break
            # fit check on all train points, block by block, starting with the block of the last
            # miss; a miss ends it (the answer, not fitted, is the same)
            fitted = True
            for bi in range(n_tb):
                blk = miss_blk + bi
                if blk >= n_tb:
                    blk -= n_tb
                r0 = blk * rb
                n = min(rb, m - r0)
                _forward(Q, L, widths, wp, qw, qb, act, Xtr_rm, r0 * wp0, H, Z, n, zeros, wide)
                for r in range(n):
                    if (H[L, r * wpL] > thr) != (ytr[r0 + r] == _ONE):
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
        # final train loss (in train-point order)
        sl = _ZERO
        for r0 in range(0, m, rb):
            n = min(rb, m - r0)
            _forward(Q, L, widths, wp, qw, qb, act, Xtr_rm, r0 * wp0, H, Z, n, zeros, wide)
            for r in range(n):
                z = H[L, r * wpL]
                if loss_code == 0:
                    sl = sl + softplus32(-z if ytr[r0 + r] == _ONE else z)
                else:
                    dz = z - ytr[r0 + r]
                    sl = fma(dz, dz, sl)
        losses[o] = sl / _F(m)
        if not np.isfinite(losses[o]):
            st = 3  # diverged: the final train loss is not finite (logits overflow float32)
        # the reached function on the key rows
        for w in range(n_words):
            keys[o, w] = 0
        for r0 in range(0, nk, rb):
            n = min(rb, nk - r0)
            _forward(Q, L, widths, wp, qw, qb, act, Xkey_rm, r0 * wp0, H, Z, n, zeros, wide)
            for r in range(n):
                if H[L, r * wpL] > _ZERO:
                    keys[o, (r0 + r) >> 6] |= np.uint64(1) << np.uint64((r0 + r) & 63)
        status[o] = st
        first_fit[o] = ff
        epochs[o] = e
        if want_params:
            for l in range(L):
                fi = widths[l]
                fo = widths[l + 1]
                for j in range(fo):
                    for k in range(fi):
                        params_out[o, wofs[l] + j * fi + k] = Q[qw[l] + k * wp[l + 1] + j]
                    if bofs[l] >= 0:
                        params_out[o, bofs[l] + j] = Q[qb[l] + j]


@pjit
def _train_lanes(rk, net, data, out, start, n, n_lanes):
    """Runs ``start .. start+n-1`` split into ``n_lanes`` contiguous lanes, trained in parallel."""
    per = (n + n_lanes - 1) // n_lanes
    for lane in prange(n_lanes):
        a = lane * per
        b = min(n, a + per)
        if b > a:
            _train_lane(rk, net, data, out, start + np.uint64(a), b - a, a)


class PreparedTrain:
    """Kernel-ready arrays of a :class:`~fastpoly.sgd.plan.TrainPlan` (built once per plan): :class:`TrainNet`, :class:`TrainData`.

    ``wide``: the 512-bit tiles on wide layers (:attr:`TrainNet.wide`); ``None``: where the CPU has
    AVX-512.  The bits do not depend on it (the tests run both).
    """

    def __init__(self, tp: Any, wide: bool | None = None):
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
        # the kernel's activation switch: the table's "train" row for numba (relu: fused select / mask,
        # identity: none, tanh / erf / sigmoid: their float32 functions on kept pre-activations)
        self.act = int(check_supported(mlp.activation, "train", "numba").code)
        # the kernel's parameter layout: per layer W transposed (fan_in rows of wp[l+1] = ceil8(fan_out)
        # floats, 32 more where that is a multiple of 512: _width_stride), then the biases (wp[l+1] floats,
        # zeros for bias-free layers); plus a scratch copy of W (fan_out rows of wp[l] floats) for the
        # back-propagation of layers l >= 1
        self.wp = np.array([_width_stride(x) for x in w], np.int64)
        qw, qb, qj, q, qq = [], [], [], 0, 0
        for i in range(self.L):
            qw.append(q)
            q += w[i] * int(self.wp[i + 1])
            qb.append(q)
            q += int(self.wp[i + 1])
            qj.append(qq)
            if i > 0:
                qq += w[i + 1] * int(self.wp[i])
        self.qw = np.array(qw, np.int64)
        self.qb = np.array(qb, np.int64)
        self.qj = np.array(qj, np.int64)
        self.nq = q
        self.nj = qq
        Xtr = np.asarray(plan.X[plan.train_rows], np.float32)
        Xkey = np.asarray(plan.X[plan.key_rows], np.float32)
        n_in = Xtr.shape[1]
        xt = np.zeros((Xtr.shape[0], int(self.wp[0])), np.float32)
        xt[:, :n_in] = Xtr
        self.Xtr_rm = xt.reshape(-1)
        self.nk = int(plan.key_rows.size)
        xk = np.zeros((self.nk, int(self.wp[0])), np.float32)
        xk[:, :n_in] = Xkey
        self.Xkey_rm = xk.reshape(-1)
        self.ytr = np.ascontiguousarray(plan.train_labels, np.float32)
        self.ints = tp.recipe.ints()
        self.floats = tp.recipe.floats()
        self.leak = tp.leak_arrays()
        assert SGD_STREAM == 1 and blocks_per_epoch(2) == 1
        self.net = TrainNet(self.L, self.widths, self.wofs, self.bofs, self.wp, self.qw, self.qb, self.qj,
                            int(self.nq), int(self.nj), bool(self.uniform), self.pscale, self.act,
                            bool(wide_tiles_available() if wide is None else wide))
        lw, lE, lf = self.leak
        self.data = TrainData(self.Xtr_rm, self.Xkey_rm, self.ytr, self.nk, self.ints, self.floats,
                              int(lw), lE, lf)

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
            out = TrainOut(keys, init_keys, status, first_fit, epochs, losses, pout, bool(params))
            _train_lanes(self.rk, self.net, self.data, out, np.uint64(lo), n, n_lanes)
        return TrainBatch(lo, hi, keys, init_keys, status, first_fit, epochs, losses, pout if params else None)


def train_range_numba(tp: Any, lo: int, hi: int, params: bool = False, n_threads: int | None = None,
                      prepared: PreparedTrain | None = None) -> TrainBatch:
    """Train runs ``lo .. hi-1`` with the Numba kernel (bit-identical to the reference)."""
    import numba

    pt = prepared if prepared is not None else PreparedTrain(tp)
    return pt.run(int(lo), int(hi), n_threads or numba.get_num_threads(), params)
