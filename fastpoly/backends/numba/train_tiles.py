"""Register-blocked float32 FMA tiles for the SGD trainer (hand-written LLVM IR, like the sampler's blocks).

One primitive serves the forward pass, the weight and bias gradients and the
back-propagated error: a tile of ``nI`` rows times ``nV`` SIMD vectors of :data:`VW`
floats, accumulated in registers over a *sequential* loop ``t = 0 .. T-1``::

    acc[i, c] = start                                   (see ``init``)
    acc[i, c] = fma(S[soff + i*sI + t*sT], V[voff + t*vT + c], acc[i, c])   for t = 0, 1, ..., T-1
    O[ooff + i*oI + c] = act(acc[i, c])

for ``i < nI`` and ``c < nV*VW``.  Each output element is one sum in the order
``t = 0, 1, ...`` -- one correctly rounded float32 FMA per step; the SIMD lanes only
run *independent* sums side by side, so the results are those of a scalar loop.
The accumulators are LLVM vectors carried through the ``t`` loop (no loads or stores
of ``O`` inside it).

``init``: :data:`INIT_ZERO` (+0), :data:`INIT_ROW` (``B[boff + i]`` in every lane) or
:data:`INIT_VEC` (``B[boff + c]``, the same for every row).
``act``: :data:`ACT_NONE`, :data:`ACT_RELU` (``0 if acc < 0 else acc``) or
:data:`ACT_MASK` (``acc if M[same index as O] > 0 else 0``).

:func:`tiles` covers a whole ``nI x (nV*VW)`` block with tiles; :func:`tiles_w` does the same
with 512-bit tiles (8 rows x 32 lanes, 16 accumulator registers) on blocks of at least
:data:`WIDE_MIN` vectors when asked (wide layers on a CPU with AVX-512: about three times the
256-bit tiles' rate on 128 x 512 @ 512 x 512); the bits are the same, since the lanes are
independent sums either way.  :func:`transpose_into` copies a matrix transposed (8x8 blocks in
registers).
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from fastpoly.backends.numba.jit import jit
from fastpoly.backends.numba.llvmvec import float_vector_ops

__all__ = ["ACT_MASK", "ACT_NONE", "ACT_RELU", "INIT_ROW", "INIT_VEC", "INIT_ZERO", "VW", "WIDE_MIN", "tiles",
           "tiles_w", "transpose_into", "wide_tiles_available"]

#: floats per SIMD vector of a tile (the minibatch of 8 fills one)
VW = 8
INIT_ZERO, INIT_ROW, INIT_VEC = 0, 1, 2
ACT_NONE, ACT_RELU, ACT_MASK = 0, 1, 2


def _is_f32c(a):
    return isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"


def _make_tile(nI, nV, vw=VW):
    """The intrinsic ``tile(S, soff, sI, sT, V, voff, vT, T, O, ooff, oI, B, boff, M, init, act)``.

    ``vw`` floats per vector (8: 256-bit registers; 16: 512-bit ones where the CPU has them).
    """

    @intrinsic
    def tile(typingctx, S, soff, sI, sT, V, voff, vT, T, O, ooff, oI, B, boff, M, init, act):
        if not all(_is_f32c(a) for a in (S, V, O, B, M)):
            return None
        i64t = types.int64
        sig = types.void(S, i64t, i64t, i64t, V, i64t, i64t, i64t, O, i64t, i64t, B, i64t, M, i64t, i64t)

        def codegen(context, builder, signature, args):
            sa = signature.args
            S_, soff_, sI_, sT_, V_, voff_, vT_, T_, O_, ooff_, oI_, B_, boff_, M_, init_, act_ = args

            def data(k, a):
                return context.make_array(sa[k])(context, builder, a).data

            sp, vp, op, bp, mp = data(0, S_), data(4, V_), data(8, O_), data(11, B_), data(13, M_)
            i64 = ir.IntType(64)
            vt, vfma, splat = float_vector_ops(builder, vw)
            vpt = vt.as_pointer()
            vzero = ir.Constant(vt, [0.0] * vw)

            def c64(x):
                return ir.Constant(i64, x)


            def vload(base, idx):
                return builder.load(builder.bitcast(builder.gep(base, [idx]), vpt), align=4)

            # start values: three blocks joined by phis
            b_zero = builder.append_basic_block("fp_tile_zero")
            b_row = builder.append_basic_block("fp_tile_row")
            b_vec = builder.append_basic_block("fp_tile_vec")
            b_pre = builder.append_basic_block("fp_tile_pre")
            sw = builder.switch(init_, b_zero)
            sw.add_case(c64(INIT_ROW), b_row)
            sw.add_case(c64(INIT_VEC), b_vec)
            builder.position_at_end(b_zero)
            builder.branch(b_pre)
            builder.position_at_end(b_row)
            row_init = [splat(builder.load(builder.gep(bp, [builder.add(boff_, c64(i))]))) for i in range(nI)]
            b_row_end = builder.block
            builder.branch(b_pre)
            builder.position_at_end(b_vec)
            vec_init = [vload(bp, builder.add(boff_, c64(vw * v))) for v in range(nV)]
            b_vec_end = builder.block
            builder.branch(b_pre)
            builder.position_at_end(b_pre)
            init = [[builder.phi(vt) for _ in range(nV)] for _ in range(nI)]
            for i in range(nI):
                for v in range(nV):
                    init[i][v].add_incoming(vzero, b_zero)
                    init[i][v].add_incoming(row_init[i], b_row_end)
                    init[i][v].add_incoming(vec_init[v], b_vec_end)
            srow = [builder.add(soff_, builder.mul(c64(i), sI_)) for i in range(nI)]
            loop = builder.append_basic_block("fp_tile_loop")
            done = builder.append_basic_block("fp_tile_done")
            builder.cbranch(builder.icmp_signed(">", T_, c64(0)), loop, done)
            # the sequential loop over t
            builder.position_at_end(loop)
            t = builder.phi(i64)
            t.add_incoming(c64(0), b_pre)
            acc = [[builder.phi(vt) for _ in range(nV)] for _ in range(nI)]
            for i in range(nI):
                for v in range(nV):
                    acc[i][v].add_incoming(init[i][v], b_pre)
            vrow = builder.add(voff_, builder.mul(t, vT_))
            hv = [vload(vp, builder.add(vrow, c64(vw * v))) for v in range(nV)]
            st = builder.mul(t, sT_)
            new = []
            for i in range(nI):
                s = splat(builder.load(builder.gep(sp, [builder.add(srow[i], st)])))
                new.append([builder.call(vfma, [s, hv[v], acc[i][v]]) for v in range(nV)])
            t1 = builder.add(t, c64(1))
            body = builder.block
            t.add_incoming(t1, body)
            for i in range(nI):
                for v in range(nV):
                    acc[i][v].add_incoming(new[i][v], body)
            builder.cbranch(builder.icmp_signed("<", t1, T_), loop, done)
            builder.position_at_end(done)
            res = [[builder.phi(vt) for _ in range(nV)] for _ in range(nI)]
            for i in range(nI):
                for v in range(nV):
                    res[i][v].add_incoming(init[i][v], b_pre)
                    res[i][v].add_incoming(new[i][v], body)
            idx = [[builder.add(builder.add(ooff_, builder.mul(c64(i), oI_)), c64(vw * v)) for v in range(nV)]
                   for i in range(nI)]
            # stores: plain, relu or masked
            s_none = builder.append_basic_block("fp_tile_store")
            s_relu = builder.append_basic_block("fp_tile_relu")
            s_mask = builder.append_basic_block("fp_tile_mask")
            exit_ = builder.append_basic_block("fp_tile_exit")
            sw = builder.switch(act_, s_none)
            sw.add_case(c64(ACT_RELU), s_relu)
            sw.add_case(c64(ACT_MASK), s_mask)

            def store(i, v, x):
                builder.store(x, builder.bitcast(builder.gep(op, [idx[i][v]]), vpt), align=4)

            builder.position_at_end(s_none)
            for i in range(nI):
                for v in range(nV):
                    store(i, v, res[i][v])
            builder.branch(exit_)
            builder.position_at_end(s_relu)
            for i in range(nI):
                for v in range(nV):
                    x = res[i][v]
                    store(i, v, builder.select(builder.fcmp_ordered("<", x, vzero), vzero, x))
            builder.branch(exit_)
            builder.position_at_end(s_mask)
            for i in range(nI):
                for v in range(nV):
                    mv = vload(mp, idx[i][v])
                    store(i, v, builder.select(builder.fcmp_ordered(">", mv, vzero), res[i][v], vzero))
            builder.branch(exit_)
            builder.position_at_end(exit_)
            return context.get_dummy_value()

        return sig, codegen

    return tile


#: vectors of :data:`VW` floats from which :func:`tiles_w` uses its 512-bit tiles (128 lanes: wide layers)
WIDE_MIN = 16


def wide_tiles_available() -> bool:
    """True when the host CPU has AVX-512 (32 registers of 16 floats: the 8x2 tiles of :func:`tiles_w` fit)."""
    from llvmlite import binding

    return bool(binding.get_host_cpu_features().get("avx512f", False))


_u8x2 = _make_tile(8, 2, 16)
_u4x2 = _make_tile(4, 2, 16)
_u2x2 = _make_tile(2, 2, 16)
_u1x2 = _make_tile(1, 2, 16)
_t2x5 = _make_tile(2, 5)
_t1x5 = _make_tile(1, 5)
_t2x4 = _make_tile(2, 4)
_t1x4 = _make_tile(1, 4)
_t2x3 = _make_tile(2, 3)
_t1x3 = _make_tile(1, 3)
_t4x2 = _make_tile(4, 2)
_t2x2 = _make_tile(2, 2)
_t1x2 = _make_tile(1, 2)
_t8x1 = _make_tile(8, 1)
_t4x1 = _make_tile(4, 1)
_t2x1 = _make_tile(2, 1)
_t1x1 = _make_tile(1, 1)


@jit(inline="always")
def tiles(S, soff, sI, sT, V, voff, vT, T, O, ooff, oI, B, boff, M, init, act, nI, nV):
    """The ``nI x (nV*VW)`` block of the module doc, covered with register tiles.

    ``init == INIT_VEC`` reads ``B[boff + c]`` for every lane ``c`` of the block.
    """
    c = 0
    while c < nV:
        g = min(5, nV - c)
        vo = voff + c * VW
        oo = ooff + c * VW
        bo = boff + c * VW if init == INIT_VEC else boff
        i = 0
        if g == 5:
            while i + 2 <= nI:
                _t2x5(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
                i += 2
            if i < nI:
                _t1x5(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
        elif g == 4:
            while i + 2 <= nI:
                _t2x4(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
                i += 2
            if i < nI:
                _t1x4(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
        elif g == 3:
            while i + 2 <= nI:
                _t2x3(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
                i += 2
            if i < nI:
                _t1x3(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
        elif g == 2:
            while i + 4 <= nI:
                _t4x2(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
                i += 4
            if i + 2 <= nI:
                _t2x2(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
                i += 2
            if i < nI:
                _t1x2(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
        else:
            while i + 8 <= nI:
                _t8x1(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
                i += 8
            if i + 4 <= nI:
                _t4x1(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
                i += 4
            if i + 2 <= nI:
                _t2x1(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
                i += 2
            if i < nI:
                _t1x1(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
        c += g


@jit(inline="always")
def tiles_w(S, soff, sI, sT, V, voff, vT, T, O, ooff, oI, B, boff, M, init, act, nI, nV, wide):
    """:func:`tiles`, with 512-bit tiles of 8 (4, 2, 1) rows x 32 lanes when ``wide`` and ``nV >= WIDE_MIN``.

    Groups of 32 lanes first, the remaining lanes (fewer than 32) by :func:`tiles`; the same sums in
    the same order, so the same bits.
    """
    if not (wide and nV >= WIDE_MIN):
        tiles(S, soff, sI, sT, V, voff, vT, T, O, ooff, oI, B, boff, M, init, act, nI, nV)
        return
    ng = nV // 4
    for g in range(ng):
        c = g * 4 * VW
        vo = voff + c
        oo = ooff + c
        bo = boff + c if init == INIT_VEC else boff
        i = 0
        while i + 8 <= nI:
            _u8x2(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
            i += 8
        if i + 4 <= nI:
            _u4x2(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
            i += 4
        if i + 2 <= nI:
            _u2x2(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
            i += 2
        if i < nI:
            _u1x2(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, bo + (i if init == INIT_ROW else 0), M, init, act)
    rest = nV - 4 * ng
    if rest > 0:
        c = 4 * ng * VW
        tiles(S, soff, sI, sT, V, voff + c, vT, T, O, ooff + c, oI, B, boff + c if init == INIT_VEC else boff, M,
              init, act, nI, rest)


@intrinsic
def _tr8(typingctx, A, aoff, ast, Bm, boff, bst):
    """``Bm[boff + c*bst + r] = A[aoff + r*ast + c]`` for ``r, c < 8`` (an 8x8 block, in registers)."""
    if not (_is_f32c(A) and _is_f32c(Bm)):
        return None
    i64t = types.int64
    sig = types.void(A, i64t, i64t, Bm, i64t, i64t)

    def codegen(context, builder, signature, args):
        A_, aoff_, ast_, B_, boff_, bst_ = args
        ap = context.make_array(signature.args[0])(context, builder, A_).data
        bp = context.make_array(signature.args[3])(context, builder, B_).data
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        vt = ir.VectorType(ir.FloatType(), 8)
        vpt = vt.as_pointer()

        def shuf(a, b, m):
            return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, 8), m))

        rows = []
        for r in range(8):
            ptr = builder.gep(ap, [builder.add(aoff_, builder.mul(ir.Constant(i64, r), ast_))])
            rows.append(builder.load(builder.bitcast(ptr, vpt), align=4))
        lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
        t = []
        for p in range(4):
            t += [shuf(rows[2 * p], rows[2 * p + 1], lo), shuf(rows[2 * p], rows[2 * p + 1], hi)]
        a2, b2 = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        s = [shuf(t[0], t[2], a2), shuf(t[0], t[2], b2), shuf(t[1], t[3], a2), shuf(t[1], t[3], b2),
             shuf(t[4], t[6], a2), shuf(t[4], t[6], b2), shuf(t[5], t[7], a2), shuf(t[5], t[7], b2)]
        lo128, hi128 = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
        out = [None] * 8
        for q in range(4):
            out[q] = shuf(s[q], s[q + 4], lo128)
            out[q + 4] = shuf(s[q], s[q + 4], hi128)
        for c in range(8):
            ptr = builder.gep(bp, [builder.add(boff_, builder.mul(ir.Constant(i64, c), bst_))])
            builder.store(out[c], builder.bitcast(ptr, vpt), align=4)
        return context.get_dummy_value()

    return sig, codegen


@jit(inline="always")
def transpose_into(A, aoff, ast, nr, nc, Bm, boff, bst):
    """``Bm[boff + c*bst + r] = A[aoff + r*ast + c]`` for ``r < nr``, ``c < nc`` (nothing else is written)."""
    r8 = nr - nr % 8
    c8 = nc - nc % 8
    for r0 in range(0, r8, 8):
        for c0 in range(0, c8, 8):
            _tr8(A, aoff + r0 * ast + c0, ast, Bm, boff + c0 * bst + r0, bst)
    for r in range(nr):
        for c in range(c8 if r < r8 else 0, nc):
            Bm[boff + c * bst + r] = A[aoff + r * ast + c]
