"""The fused Numba sampler: Philox -> normals -> forward pass on every row -> key bits -> rejection.

One compiled call handles a range of sample indices.  The range is split into
one contiguous *lane* per thread (``prange``); each lane allocates its scratch
once and then, per sample,

1. draws the Philox words of the sample (:mod:`fastpoly.backends.numba.rng`) and turns
   them into the parameter vector (Box--Muller or uniform, times the per-layer
   scale, all float32 and bit-identical to :meth:`fastpoly.MLP.draw_params`);
2. runs the forward pass on every input row with a register-blocked
   micro-kernel (:func:`dense_rows`): a block of ``ROW_BLOCK`` rows times up to
   4 neurons is accumulated in SIMD registers, ``z = fma(W[j, k], h[k], z)``
   for ``k = 0, 1, ...`` starting from the bias -- exactly the reference's
   summation order, one correctly rounded float32 FMA per step;
3. packs the output signs (``z > 0``) into the key words and compares the
   train rows with the train labels.

Rows are permuted once per plan so that the train rows come first (phase 0)
and the key rows follow in ascending order (phase 1), each phase padded to a
multiple of ``ROW_BLOCK`` with zero rows whose outputs are ignored.  When
counting, a sample that misfits the train set is rejected right after phase
0, so conditioning makes sampling *faster*.

Boolean lattice fast path: when ``X`` is :func:`fastpoly.boolean_inputs`
(unconditioned, at least 32 rows and -- by default -- at least
:data:`SUBSET_MIN_BITS` inputs), layer 1 is computed by subset sums: row ``i`` with highest set bit ``k`` is
``z[i] = z[i - 2**k] + W[:, k]``.  The reference computes ``z = fma(W[j, k'],
x[k'], z)`` for ``k' = 0..n-1`` where ``fma(w, 0, z) = z`` and ``fma(w, 1, z) =
RN(z + w)``: the same rounded additions in the same (ascending) order, so the
bits are identical (the only possible difference is the sign of an exact zero,
which never changes an output bit).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from fastpoly.activations import CODES
from fastpoly.backends.numba.jit import jit, pjit, prange
from fastpoly.backends.numba.llvmvec import float_vector_ops
from fastpoly.backends.numba.rng import (
    normals_from_words,
    philox_sample_words,
    round_keys,
    uniform_pm1_from_words,
)
from fastpoly.backends.numba.train_tiles import wide_tiles_available
from fastpoly.stream.rng import check_seed

if TYPE_CHECKING:
    from fastpoly.plan import SamplerPlan

__all__ = [
    "ROW_BLOCK", "SUBSET_MIN_BITS", "WIDE_MIN", "WIDE_ROWS", "prepare", "sample_range", "dense_rows", "dense_rows_w",
    "PreparedPlan",
    "SamplerNet", "SamplerRows", "SamplerOut", "row_stride",
]

#: smallest number of Boolean inputs for which layer 1 uses subset sums by default (below it the
#: register-blocked dense kernel is faster: 0.49 us vs 0.75 us per 7-input, 40-neuron layer here)
SUBSET_MIN_BITS = 8

#: rows per register block of the dense micro-kernel (a multiple of the SIMD width)
ROW_BLOCK = 32

#: padded row counts that are multiples of this get a row stride one ROW_BLOCK longer: a stride of
#: 512 or 1,024 floats (2 or 4 KiB) maps every neuron's rows to the same L1/L2 cache sets, and the
#: blocks that walk k over ``H[k * stride + r]`` then evict each other (measured on 64-512-512-1:
#: 1,000 rows, padded to 1,024, sampled at 0.44-0.58 us per row against 0.29-0.35 us at 1,040 rows)
STRIDE_AVOID = 512


def row_stride(m_pad: int) -> int:
    """Row stride of the sampler's buffers for ``m_pad`` padded rows (see :data:`STRIDE_AVOID`)."""
    return m_pad + ROW_BLOCK if m_pad >= STRIDE_AVOID and m_pad % STRIDE_AVOID == 0 else m_pad


ACT_RELU, ACT_TANH, ACT_ERF, ACT_SIGN, ACT_IDENTITY = (CODES[n] for n in ("relu", "tanh", "erf", "sign", "identity"))


def _make_block_kernel(nj, nr):
    """Build an intrinsic computing ``nj`` neurons on ``nr`` consecutive rows, accumulated in registers.

    Signature of the intrinsic::

        block(W, woff, fi, H, hoff, hstride, Z, zoff, zstride, B, boff)

    For ``j < nj`` and ``t < nr``:
    ``Z[zoff + j*zstride + t] = B[boff + j]`` followed by, for ``k = 0 .. fi-1``,
    ``Z[...] = fma(W[woff + j*fi + k], H[hoff + k*hstride + t], Z[...])`` (float32).
    ``fi`` must be >= 1.  The accumulators are LLVM vectors ``<nr x float>`` carried
    through the ``k`` loop (no loads or stores of Z inside it).
    """

    @intrinsic
    def block(typingctx, W, woff, fi, H, hoff, hstride, Z, zoff, zstride, B, boff):
        for a in (W, H, Z, B):
            if not (isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"):
                return None
        sig = types.void(W, types.int64, types.int64, H, types.int64, types.int64, Z,
                         types.int64, types.int64, B, types.int64)

        def codegen(context, builder, signature, args):
            Wa, woff_, fi_, Ha, hoff_, hstride_, Za, zoff_, zstride_, Ba, boff_ = args
            sa = signature.args
            wp = context.make_array(sa[0])(context, builder, Wa).data
            hp = context.make_array(sa[3])(context, builder, Ha).data
            zp = context.make_array(sa[6])(context, builder, Za).data
            bp = context.make_array(sa[9])(context, builder, Ba).data
            i64 = ir.IntType(64)
            vt, vfma, splat = float_vector_ops(builder, nr)


            wrow = [builder.add(woff_, builder.mul(ir.Constant(i64, j), fi_)) for j in range(nj)]
            init = [splat(builder.load(builder.gep(bp, [builder.add(boff_, ir.Constant(i64, j))])))
                    for j in range(nj)]
            pre = builder.block
            loop = builder.append_basic_block("fp_block_loop")
            done = builder.append_basic_block("fp_block_done")
            builder.branch(loop)
            builder.position_at_end(loop)
            k = builder.phi(i64)
            k.add_incoming(ir.Constant(i64, 0), pre)
            acc = []
            for j in range(nj):
                a = builder.phi(vt)
                a.add_incoming(init[j], pre)
                acc.append(a)
            hptr = builder.gep(hp, [builder.add(hoff_, builder.mul(k, hstride_))])
            h = builder.load(builder.bitcast(hptr, vt.as_pointer()), align=4)
            new = []
            for j in range(nj):
                w = builder.load(builder.gep(wp, [builder.add(wrow[j], k)]))
                new.append(builder.call(vfma, [splat(w), h, acc[j]]))
            k1 = builder.add(k, ir.Constant(i64, 1))
            here = builder.block
            k.add_incoming(k1, here)
            for j in range(nj):
                acc[j].add_incoming(new[j], here)
            builder.cbranch(builder.icmp_signed("<", k1, fi_), loop, done)
            builder.position_at_end(done)
            for j in range(nj):
                zptr = builder.gep(zp, [builder.add(zoff_, builder.mul(ir.Constant(i64, j), zstride_))])
                builder.store(new[j], builder.bitcast(zptr, vt.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return block


_block4 = _make_block_kernel(4, ROW_BLOCK)
_block2 = _make_block_kernel(2, ROW_BLOCK)
_block1 = _make_block_kernel(1, ROW_BLOCK)
_block8 = _make_block_kernel(8, ROW_BLOCK)

#: rows per chunk of the wide dense path (every neuron of a layer passes over a chunk before the next)
WIDE_ROWS = 128
#: smallest fan-in and fan-out of a layer on the wide dense path
WIDE_MIN = 64


@jit(inline="always")
def dense_rows(W, woff, fi, fo, H, hstride, lo, hi, Z, zstride, B, boff):
    """Pre-activations of one dense layer on rows ``lo..hi-1`` (multiples of :data:`ROW_BLOCK`).

    ``Z[j*zstride + r] = B[boff+j]``, then ``fma(W[woff + j*fi + k], H[k*hstride + r], .)``
    for ``k`` ascending.  All arrays are flat float32.
    """
    j = 0
    while j + 4 <= fo:
        for r in range(lo, hi, ROW_BLOCK):
            _block4(W, woff + j * fi, fi, H, r, hstride, Z, j * zstride + r, zstride, B, boff + j)
        j += 4
    if j + 2 <= fo:
        for r in range(lo, hi, ROW_BLOCK):
            _block2(W, woff + j * fi, fi, H, r, hstride, Z, j * zstride + r, zstride, B, boff + j)
        j += 2
    if j < fo:
        for r in range(lo, hi, ROW_BLOCK):
            _block1(W, woff + j * fi, fi, H, r, hstride, Z, j * zstride + r, zstride, B, boff + j)


@jit(inline="always")
def dense_rows_w(W, woff, fi, fo, H, hstride, lo, hi, Z, zstride, B, boff, wide):
    """:func:`dense_rows`, on wide layers (``wide`` and ``fi, fo >= WIDE_MIN``) with 8-neuron blocks.

    Rows in chunks of :data:`WIDE_ROWS` (the chunk's inputs stay in cache while every neuron passes),
    8 neurons x :data:`ROW_BLOCK` rows per register block (16 registers of 16 floats: AVX-512); the
    same sums in the same order as :func:`dense_rows`, so the same bits.
    """
    if not (wide and fi >= WIDE_MIN and fo >= WIDE_MIN):
        dense_rows(W, woff, fi, fo, H, hstride, lo, hi, Z, zstride, B, boff)
        return
    j8 = fo - fo % 8
    for r0 in range(lo, hi, WIDE_ROWS):
        r1 = min(hi, r0 + WIDE_ROWS)
        for j in range(0, j8, 8):
            for r in range(r0, r1, ROW_BLOCK):
                _block8(W, woff + j * fi, fi, H, r, hstride, Z, j * zstride + r, zstride, B, boff + j)
    j = j8
    while j + 4 <= fo:
        for r in range(lo, hi, ROW_BLOCK):
            _block4(W, woff + j * fi, fi, H, r, hstride, Z, j * zstride + r, zstride, B, boff + j)
        j += 4
    if j + 2 <= fo:
        for r in range(lo, hi, ROW_BLOCK):
            _block2(W, woff + j * fi, fi, H, r, hstride, Z, j * zstride + r, zstride, B, boff + j)
        j += 2
    if j < fo:
        for r in range(lo, hi, ROW_BLOCK):
            _block1(W, woff + j * fi, fi, H, r, hstride, Z, j * zstride + r, zstride, B, boff + j)


@jit(inline="always")
def _relu_rows(Z, zstride, fo, lo, hi):
    zero = np.float32(0.0)
    for j in range(fo):
        base = np.uint64(j * zstride)
        for r in range(np.uint64(lo), np.uint64(hi)):
            v = Z[base + r]
            Z[base + r] = zero if v < zero else v


@jit(inline="always")
def _sign_rows(Z, zstride, fo, lo, hi):
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for j in range(fo):
        base = np.uint64(j * zstride)
        for r in range(np.uint64(lo), np.uint64(hi)):
            v = Z[base + r]
            # numpy.sign semantics: -1, 0 (keeps the zero), +1
            Z[base + r] = one if v > zero else (-one if v < zero else v)


@jit(inline="always")
def _libm_rows(Z, zstride, fo, lo, hi, act):
    # float32(libm_f64(z)): the convention of fastpoly.activations
    for j in range(fo):
        base = j * zstride
        for r in range(base + lo, base + hi):
            if act == ACT_TANH:
                Z[r] = np.float32(math.tanh(np.float64(Z[r])))
            else:
                Z[r] = np.float32(math.erf(np.float64(Z[r])))


@jit(inline="always")
def _activate(Z, zstride, fo, lo, hi, act):
    """Apply the hidden activation in place on rows ``lo..hi-1`` of ``fo`` neurons (dispatch outside the loops)."""
    if act == ACT_RELU:
        _relu_rows(Z, zstride, fo, lo, hi)
    elif act == ACT_SIGN:
        _sign_rows(Z, zstride, fo, lo, hi)
    elif act == ACT_TANH or act == ACT_ERF:
        _libm_rows(Z, zstride, fo, lo, hi, act)


@jit(inline="always")
def _subset_sums(P, woff, boff, nbits, fo, Z, zstride):
    """Layer 1 on the Boolean lattice by subset sums, rows in natural order.

    ``Z[j*zstride + i]`` for ``i < 2**nbits``: row 0 is the bias; the rows
    ``2**k .. 2**(k+1)-1`` (highest set bit ``k``) are the rows ``0 .. 2**k - 1``
    plus ``W[j, k]``, one rounded float32 addition each.  Unsigned indices let
    LLVM vectorise the copy-add loops.
    """
    zs = np.uint64(zstride)
    for j in range(fo):
        base = np.uint64(j) * zs
        Z[base] = P[boff + j]
        for k in range(nbits):
            w = P[woff + j * nbits + k]
            half = np.uint64(1) << np.uint64(k)
            dst = base + half
            for t in range(half):
                Z[dst + t] = Z[base + t] + w


class SamplerNet(NamedTuple):
    """The architecture of a plan as the fused kernel reads it (one Numba namedtuple argument).

    Attributes
    ----------
    n_layers : int
        Dense layers ``L`` (hidden layers + the output layer).
    widths : numpy.ndarray
        int64 ``(L + 1,)``: inputs, hidden widths, outputs.
    wofs : numpy.ndarray
        int64 ``(L,)``: offset of the weights of each layer in the parameter vector.
    bofs : numpy.ndarray
        int64 ``(L,)``: offset of the biases of each layer (``-1``: no bias).
    has_bias : bool
        Whether the layers have biases.
    uniform : bool
        Uniform(-1, 1) instead of Gaussian parameters.
    pscale : numpy.ndarray
        float32 ``(n_params,)``: per-parameter scale (``sigma_w / sqrt(fan_in)`` or ``sigma_b``).
    act : int
        Code of the hidden activation (:data:`fastpoly.activations.CODES`).
    wide : bool
        Wide layers by :func:`dense_rows_w`'s 8-neuron blocks (the same bits).
    """

    n_layers: int
    widths: np.ndarray
    wofs: np.ndarray
    bofs: np.ndarray
    has_bias: bool
    uniform: bool
    pscale: np.ndarray
    act: int
    wide: bool


class SamplerRows(NamedTuple):
    """The input rows of a plan in kernel order (train rows first, then key rows, each padded).

    Attributes
    ----------
    Xp : numpy.ndarray
        float32 ``(n_inputs * m_pad,)``: inputs, transposed, rows permuted and padded with zeros.
    subset : bool
        Layer 1 by subset sums on the Boolean lattice (rows in natural order, no train rows).
    n0 : int
        Train rows.
    p0 : int
        Train rows padded to a multiple of :data:`ROW_BLOCK` (first key row).
    nk : int
        Key rows.
    m_pad : int
        All padded rows.
    stride : int
        Row stride of ``Xp`` and of the layer buffers: ``m_pad``, or ``m_pad + ROW_BLOCK`` where
        ``m_pad`` is a multiple of :data:`STRIDE_AVOID` (see :func:`row_stride`).
    labels : numpy.ndarray
        uint8 ``(n0,)``: train labels in phase order.
    n_words : int
        64-bit words of a key.
    """

    Xp: np.ndarray
    subset: bool
    n0: int
    p0: int
    nk: int
    m_pad: int
    stride: int
    labels: np.ndarray
    n_words: int


class SamplerOut(NamedTuple):
    """The output arrays of one kernel call (one entry per sample of the call).

    Attributes
    ----------
    keys : numpy.ndarray
        uint64 ``(n, n_words)``: output-sign bits of the key rows (zero for rejected samples
        when rejecting early).
    acc : numpy.ndarray
        bool ``(n,)``: the sample fits the train set.
    marg : numpy.ndarray
        float32 ``(n,)`` (or ``(0,)`` when margins are not wanted): smallest ``|output|``.
    """

    keys: np.ndarray
    acc: np.ndarray
    marg: np.ndarray


@jit
def _sample_lane(rk, net, rows, first, count, early_exit, want_margins, out, out0):
    """Samples ``first .. first+count-1`` (uint64 indices); results at ``out0 ..`` in ``out``.

    ``rk``: Philox round keys; ``net``: :class:`SamplerNet`; ``rows``: :class:`SamplerRows`;
    ``out``: :class:`SamplerOut`.
    """
    L = net.n_layers
    widths, wofs, bofs, pscale = net.widths, net.wofs, net.bofs, net.pscale
    has_bias, act = net.has_bias, net.act
    Xp, subset, m_pad, stride = rows.Xp, rows.subset, rows.m_pad, rows.stride
    n0, p0, nk, labels, n_words = rows.n0, rows.p0, rows.nk, rows.labels, rows.n_words
    keys, acc, marg = out.keys, out.acc, out.marg
    n_params = pscale.shape[0]
    n_blocks = (n_params + 3) // 4
    maxw = 1
    for i in range(1, L + 1):
        if widths[i] > maxw:
            maxw = widths[i]
    words = np.empty(4 * n_blocks, np.uint32)
    unit = np.empty(4 * n_blocks, np.float32)
    P = np.empty(n_params + maxw, np.float32)  # parameters, then maxw zeros (bias-free layers)
    P[n_params:] = 0.0
    bufs = np.empty((2, maxw * stride), np.float32)
    bufs[:] = 0.0
    start_layer = 1 if subset else 0
    for s in range(count):
        o = out0 + s
        index = first + np.uint64(s)
        philox_sample_words(rk, index, 0, n_blocks, words)
        if net.uniform:
            uniform_pm1_from_words(words, n_params, unit)
        else:
            normals_from_words(words, 2 * n_blocks, unit)
        for p in range(n_params):
            P[p] = unit[p] * pscale[p]
        if subset:
            fo = widths[1]
            bo = bofs[0] if has_bias else n_params
            _subset_sums(P, wofs[0], bo, widths[0], fo, bufs[0], stride)
            if L > 1:
                _activate(bufs[0], stride, fo, 0, m_pad, act)
        ok = True
        mg = np.float32(np.inf)
        for ph in range(2):
            if ph == 0:
                lo, hi, nreal = 0, p0, n0
            else:
                lo, hi, nreal = p0, m_pad, nk
            if nreal == 0:
                continue
            for li in range(start_layer, L):
                fi = widths[li]
                fo = widths[li + 1]
                H = Xp if li == 0 else bufs[(li - 1) % 2]
                Z = bufs[li % 2]
                bo = bofs[li] if has_bias else n_params
                dense_rows_w(P, wofs[li], fi, fo, H, stride, lo, hi, Z, stride, P, bo, net.wide)
                if li < L - 1:
                    _activate(Z, stride, fo, lo, hi, act)
            z = bufs[(L - 1) % 2]
            if want_margins:
                for r in range(lo, lo + nreal):
                    a = abs(z[r])
                    if a < mg:
                        mg = a
            if ph == 0:
                for r in range(n0):
                    bit = z[r] > np.float32(0.0)
                    if bit != (labels[r] != 0):
                        ok = False
                if early_exit and not ok:
                    break
            else:
                for w in range(n_words):
                    word = np.uint64(0)
                    r0 = p0 + 64 * w
                    r1 = min(r0 + 64, p0 + nk)
                    for r in range(r0, r1):
                        word |= np.uint64(z[r] > np.float32(0.0)) << np.uint64(r - r0)
                    keys[o, w] = word
        if not ok and early_exit:
            for w in range(n_words):
                keys[o, w] = 0
        acc[o] = ok
        if want_margins:
            marg[o] = mg


@pjit
def _sample_lanes(rk, net, rows, start, n, n_lanes, early_exit, want_margins, out):
    """Samples ``start .. start+n-1`` split into ``n_lanes`` contiguous lanes run in parallel."""
    for lane in prange(n_lanes):
        lo = (n * lane) // n_lanes
        hi = (n * (lane + 1)) // n_lanes
        if hi > lo:
            _sample_lane(rk, net, rows, start + np.uint64(lo), hi - lo, early_exit, want_margins, out, lo)


def _param_scales(mlp, ws, bs):
    """float32 per-parameter scale: ``ws[i]`` on the weights and ``bs[i]`` on the biases of layer ``i``."""
    offs = mlp.param_offsets()
    scale = np.empty(mlp.n_params, np.float32)
    w = mlp.widths
    for i, (wo, bo) in enumerate(offs):
        scale[wo : wo + w[i] * w[i + 1]] = ws[i]
        if bo is not None:
            scale[bo : bo + w[i + 1]] = bs[i]
    return scale


class PreparedPlan:
    """Kernel-ready arrays of a :class:`fastpoly.plan.SamplerPlan` (built once per plan).

    Parameters
    ----------
    plan : fastpoly.plan.SamplerPlan
        The plan.
    subset : bool or None
        Force the Boolean-lattice subset-sum path for layer 1 on or off (None: on for
        at least :data:`SUBSET_MIN_BITS` Boolean inputs, where the plan allows it).
    wide : bool or None
        Wide layers by :func:`dense_rows_w`'s 8-neuron blocks on or off (None: where the CPU has AVX-512);
        the bits are the same.

    Attributes
    ----------
    rk : numpy.ndarray
        uint64 ``(10, 2)`` Philox round keys of the plan's seed.
    net : SamplerNet
        The architecture.
    rows : SamplerRows
        The rows in kernel order.
    prow : numpy.ndarray
        int64 ``(m_pad,)``: original row of each padded position (``-1`` for padding).
    boolean : bool
        The inputs are the Boolean lattice.
    """

    def __init__(self, plan: SamplerPlan, subset: bool | None = None, wide: bool | None = None) -> None:
        mlp = plan.dense
        widths, act, ws, bs = plan.layer_arrays()
        self.rk = round_keys(check_seed(plan.seed))
        offs = mlp.param_offsets()
        self.net = SamplerNet(
            n_layers=int(mlp.n_layers),
            widths=np.ascontiguousarray(widths, dtype=np.int64),
            wofs=np.array([o[0] for o in offs], np.int64),
            bofs=np.array([o[1] if o[1] is not None else -1 for o in offs], np.int64),
            has_bias=bool(mlp.bias),
            uniform=mlp.weights == "uniform",
            pscale=_param_scales(mlp, ws, bs),
            act=int(act),
            wide=bool(wide_tiles_available() if wide is None else wide),
        )
        n0 = int(plan.train_rows.size)
        nk = int(plan.key_rows.size)
        p0 = -(-n0 // ROW_BLOCK) * ROW_BLOCK
        p1 = -(-nk // ROW_BLOCK) * ROW_BLOCK
        m_pad = p0 + p1
        prow = np.full(m_pad, -1, np.int64)
        prow[:n0] = plan.train_rows
        prow[p0 : p0 + nk] = plan.key_rows
        self.prow = prow
        stride = row_stride(m_pad)
        Xp = np.zeros((mlp.n_inputs, stride), np.float32)
        real = prow >= 0
        Xp[:, :m_pad][:, real] = plan.X[prow[real]].T
        self.boolean = bool(plan.boolean)
        identity = n0 == 0 and m_pad == plan.m
        if subset is None:
            subset = mlp.n_inputs >= SUBSET_MIN_BITS
        self.rows = SamplerRows(
            Xp=np.ascontiguousarray(Xp).reshape(-1),
            subset=bool(subset) and self.boolean and identity,
            n0=n0, p0=p0, nk=nk, m_pad=m_pad, stride=stride,
            labels=np.ascontiguousarray(plan.train_labels, dtype=np.uint8),
            n_words=int(plan.n_words),
        )

    @property
    def subset(self) -> bool:
        """Whether layer 1 uses the Boolean-lattice subset-sum path."""
        return self.rows.subset

    @property
    def n_words(self) -> int:
        """64-bit words of a key."""
        return self.rows.n_words

    def run(self, start: int, n: int, n_lanes: int, early_exit: bool,
            want_margins: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Run the fused kernel on samples ``start .. start+n-1``.

        Parameters
        ----------
        start, n : int
            First sample index and number of samples.
        n_lanes : int
            Contiguous lanes (parallel tasks) the range is split into.
        early_exit : bool
            Reject a sample right after the train rows (its key is then zero).
        want_margins : bool
            Also return the smallest ``|output|`` over the rows of each sample.

        Returns
        -------
        keys : numpy.ndarray
            uint64 ``(n, n_words)``; zero for rejected samples when ``early_exit``.
        accepted : numpy.ndarray
            bool ``(n,)``.
        margins : numpy.ndarray or None
            float32 ``(n,)`` when ``want_margins``.
        """
        out = SamplerOut(
            keys=np.zeros((n, self.n_words), np.uint64),
            acc=np.zeros(n, np.bool_),
            marg=np.empty(n if want_margins else 0, np.float32),
        )
        if n:
            _sample_lanes(self.rk, self.net, self.rows, np.uint64(start), np.int64(n),
                          np.int64(max(1, min(n_lanes, n))), bool(early_exit), bool(want_margins), out)
        return out.keys, out.acc, (out.marg if want_margins else None)


def prepare(plan: SamplerPlan, subset: bool | None = None, wide: bool | None = None) -> PreparedPlan:
    """Build the :class:`PreparedPlan` of ``plan``.

    ``subset``: force the subset-sum path on/off; ``wide``: the 8-neuron blocks of :func:`dense_rows_w` on
    wide layers on/off (default: where the CPU has AVX-512).
    """
    return PreparedPlan(plan, subset, wide)


def sample_range(plan: SamplerPlan, start: int, stop: int, n_lanes: int | None = None, early_exit: bool = False,
                 margins: bool = False, prepared: PreparedPlan | None = None,
                 subset: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Keys, acceptance and (optionally) margins of samples ``start .. stop-1`` (see :meth:`PreparedPlan.run`)."""
    import numba

    pp = prepared if prepared is not None else PreparedPlan(plan, subset)
    n_lanes = n_lanes or numba.get_num_threads()
    return pp.run(int(start), int(stop) - int(start), int(n_lanes), early_exit, margins)
