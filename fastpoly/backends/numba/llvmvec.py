"""LLVM IR helpers of the register-blocked FMA micro-kernels.

The Numba intrinsics of the sampler, the CNN layer sampler and the trainer tiles share the float32
vector type, its ``llvm.fma`` and a broadcast.
"""
from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba.core import cgutils

__all__ = ["float_vector_ops"]


def float_vector_ops(builder: Any, lanes: int) -> tuple[Any, Any, Any]:
    """``(vt, vfma, splat)`` for ``lanes``-lane float32 vectors in ``builder``'s module.

    ``vt`` is the vector type, ``vfma`` the declared ``llvm.fma.v{lanes}f32`` (one correctly rounded
    fused multiply-add per lane: the FMA rule), ``splat(x)`` the vector with ``x`` in every lane.
    """
    i32 = ir.IntType(32)
    vt = ir.VectorType(ir.FloatType(), lanes)
    vfma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{lanes}f32")
    mask0 = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
    undef = ir.Constant(vt, ir.Undefined)

    def splat(x: Any) -> Any:
        v = builder.insert_element(undef, x, ir.Constant(i32, 0))
        return builder.shuffle_vector(v, undef, mask0)

    return vt, vfma, splat
