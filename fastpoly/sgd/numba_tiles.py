"""Register-blocked float32 FMA tiles for the SGD trainer (hand-written LLVM IR, like the sampler's blocks).

One primitive serves the forward pass, the weight gradient and the back-propagated error:
a tile of ``nI`` rows times ``nV`` SIMD vectors of :data:`VW` floats, accumulated in
registers over a *sequential* loop ``t = 0 .. T-1``::

    O[ooff + i*oI + VW*v + c] = B[boff + i]                         (start)
    O[...] = fma(S[soff + i*sI + t*sT], V[voff + t*vT + VW*v + c], O[...])   for t = 0, 1, ..., T-1

for ``i < nI``, ``v < nV``, lanes ``c < VW``.  Each output element is one sum in the
order ``t = 0, 1, ...`` -- one correctly rounded float32 FMA per step, exactly the
reference's order; the vectors only run *independent* sums side by side.  The
accumulators are LLVM vectors carried through the ``t`` loop (no loads or stores of
``O`` inside it).  :func:`tiles` covers a whole ``nI x (nV*VW)`` block with tiles.
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from fastpoly.backends.numba.jit import jit

__all__ = ["VW", "tiles"]

#: floats per SIMD vector of a tile (the minibatch of 8 fills one)
VW = 8


def _make_tile(nI, nV):
    """The intrinsic ``tile(S, soff, sI, sT, V, voff, vT, T, O, ooff, oI, B, boff)`` (see the module doc)."""

    @intrinsic
    def tile(typingctx, S, soff, sI, sT, V, voff, vT, T, O, ooff, oI, B, boff):
        for a in (S, V, O, B):
            if not (isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"):
                return None
        i64t = types.int64
        sig = types.void(S, i64t, i64t, i64t, V, i64t, i64t, i64t, O, i64t, i64t, B, i64t)

        def codegen(context, builder, signature, args):
            sa = signature.args
            S_, soff_, sI_, sT_, V_, voff_, vT_, T_, O_, ooff_, oI_, B_, boff_ = args
            sp = context.make_array(sa[0])(context, builder, S_).data
            vp = context.make_array(sa[4])(context, builder, V_).data
            op = context.make_array(sa[8])(context, builder, O_).data
            bp = context.make_array(sa[11])(context, builder, B_).data
            i32 = ir.IntType(32)
            i64 = ir.IntType(64)
            vt = ir.VectorType(ir.FloatType(), VW)
            vfma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{VW}f32"
            )
            mask0 = ir.Constant(ir.VectorType(i32, VW), [0] * VW)
            undef = ir.Constant(vt, ir.Undefined)

            def c64(x):
                return ir.Constant(i64, x)

            def splat(x):
                v = builder.insert_element(undef, x, ir.Constant(i32, 0))
                return builder.shuffle_vector(v, undef, mask0)

            srow = [builder.add(soff_, builder.mul(c64(i), sI_)) for i in range(nI)]
            init = []
            for i in range(nI):
                b = splat(builder.load(builder.gep(bp, [builder.add(boff_, c64(i))])))
                init.append([b] * nV)
            pre = builder.block
            loop = builder.append_basic_block("fp_tile_loop")
            done = builder.append_basic_block("fp_tile_done")
            builder.cbranch(builder.icmp_signed(">", T_, c64(0)), loop, done)
            builder.position_at_end(loop)
            t = builder.phi(i64)
            t.add_incoming(c64(0), pre)
            acc = [[builder.phi(vt) for _ in range(nV)] for _ in range(nI)]
            for i in range(nI):
                for v in range(nV):
                    acc[i][v].add_incoming(init[i][v], pre)
            vrow = builder.add(voff_, builder.mul(t, vT_))
            hv = []
            for v in range(nV):
                ptr = builder.gep(vp, [builder.add(vrow, c64(VW * v))])
                hv.append(builder.load(builder.bitcast(ptr, vt.as_pointer()), align=4))
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
                    res[i][v].add_incoming(init[i][v], pre)
                    res[i][v].add_incoming(new[i][v], body)
            for i in range(nI):
                orow = builder.add(ooff_, builder.mul(c64(i), oI_))
                for v in range(nV):
                    ptr = builder.gep(op, [builder.add(orow, c64(VW * v))])
                    builder.store(res[i][v], builder.bitcast(ptr, vt.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_t8x1 = _make_tile(8, 1)
_t4x1 = _make_tile(4, 1)
_t2x1 = _make_tile(2, 1)
_t1x1 = _make_tile(1, 1)
_t2x5 = _make_tile(2, 5)
_t1x5 = _make_tile(1, 5)


@jit(inline="always")
def tiles(S, soff, sI, sT, V, voff, vT, T, O, ooff, oI, B, boff, nI, nV):
    """The ``nI x (nV*VW)`` block of the module doc, covered with register tiles."""
    c = 0
    while c + 5 <= nV:
        vo = voff + c * VW
        oo = ooff + c * VW
        i = 0
        while i + 2 <= nI:
            _t2x5(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, boff + i)
            i += 2
        if i < nI:
            _t1x5(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, boff + i)
        c += 5
    while c < nV:
        vo = voff + c * VW
        oo = ooff + c * VW
        i = 0
        while i + 8 <= nI:
            _t8x1(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, boff + i)
            i += 8
        if i + 4 <= nI:
            _t4x1(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, boff + i)
            i += 4
        if i + 2 <= nI:
            _t2x1(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, boff + i)
            i += 2
        if i < nI:
            _t1x1(S, soff + i * sI, sI, sT, V, vo, vT, T, O, oo + i * oI, oI, B, boff + i)
        c += 1
