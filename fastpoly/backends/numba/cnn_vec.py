"""Eight-lane float32 helpers of the CNN layer trainer: pooling windows with the channels in SIMD lanes.

Images are stored ``(H, W, C)`` row-major, so the ``C`` channels of one position are contiguous; a
pooling window visits the same positions for every channel.  These intrinsics run eight channels
side by side, each lane its own sum (or maximum) in the scalar rule's order, so the results are
those of the scalar loop bit for bit (no reassociation, no contraction)::

    v8_zero(Y, y)            Y[y + c] = +0
    v8_copy(Y, y, X, x)      Y[y + c] = X[x + c]
    v8_add(Y, y, X, x)       Y[y + c] = Y[y + c] + X[x + c]        (one rounded add per lane)
    v8_max(Y, y, X, x)       Y[y + c] = X[x + c] if X[x + c] > Y[y + c] else Y[y + c]   (strict >)
    v8_fma(Y, y, s, X, x)    Y[y + c] = fma(s, X[x + c], Y[y + c])  (one correctly rounded FMA per lane)

for ``c = 0 .. 7``.  Every operand is a C-contiguous float32 array; the offsets are int64 and the
caller keeps them in bounds (no checks).
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from fastpoly.backends.numba.llvmvec import float_vector_ops

__all__ = ["LANES", "v8_add", "v8_copy", "v8_fma", "v8_max", "v8_zero"]

#: channels per vector
LANES = 8


def _is_f32c(a):
    return isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"


def _vptr(context, builder, aty, arr, off):
    data = context.make_array(aty)(context, builder, arr).data
    vt = ir.VectorType(ir.FloatType(), LANES)
    return builder.bitcast(builder.gep(data, [off]), vt.as_pointer())


def _binary(op):
    """The intrinsic ``f(Y, y, X, x)``: ``Y[y ..] = op(Y[y ..], X[x ..])`` on eight lanes."""

    @intrinsic
    def f(typingctx, Y, y, X, x):
        if not (_is_f32c(Y) and _is_f32c(X) and isinstance(y, types.Integer) and isinstance(x, types.Integer)):
            return None
        sig = types.void(Y, types.int64, X, types.int64)

        def codegen(context, builder, signature, args):
            Y_, y_, X_, x_ = args
            py = _vptr(context, builder, signature.args[0], Y_, y_)
            px = _vptr(context, builder, signature.args[2], X_, x_)
            a = builder.load(py, align=4)
            b = builder.load(px, align=4)
            if op == "add":
                r = builder.fadd(a, b)
            elif op == "max":
                r = builder.select(builder.fcmp_ordered(">", b, a), b, a)
            else:  # copy
                r = b
            builder.store(r, py, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return f


v8_add = _binary("add")
v8_max = _binary("max")
v8_copy = _binary("copy")


@intrinsic
def v8_zero(typingctx, Y, y):
    """``Y[y + c] = +0`` for ``c < 8``."""
    if not (_is_f32c(Y) and isinstance(y, types.Integer)):
        return None
    sig = types.void(Y, types.int64)

    def codegen(context, builder, signature, args):
        py = _vptr(context, builder, signature.args[0], args[0], args[1])
        builder.store(ir.Constant(ir.VectorType(ir.FloatType(), LANES), [0.0] * LANES), py, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def v8_fma(typingctx, Y, y, s, X, x):
    """``Y[y + c] = fma(s, X[x + c], Y[y + c])`` for ``c < 8`` (``llvm.fma``: one rounding per lane)."""
    if not (_is_f32c(Y) and _is_f32c(X) and s == types.float32 and isinstance(y, types.Integer)
            and isinstance(x, types.Integer)):
        return None
    sig = types.void(Y, types.int64, types.float32, X, types.int64)

    def codegen(context, builder, signature, args):
        Y_, y_, s_, X_, x_ = args
        _, vfma, splat = float_vector_ops(builder, LANES)
        py = _vptr(context, builder, signature.args[0], Y_, y_)
        px = _vptr(context, builder, signature.args[3], X_, x_)
        acc = builder.load(py, align=4)
        w = builder.load(px, align=4)
        builder.store(builder.call(vfma, [splat(s_), w, acc]), py, align=4)
        return context.get_dummy_value()

    return sig, codegen
