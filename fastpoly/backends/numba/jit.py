"""The one Numba jit policy of fastpoly, the fused multiply-add intrinsic and thread-count handling.

Importing this module imports Numba; :mod:`fastpoly` itself never does so at
import time (the Numba backend imports the kernel modules on first use).

Policy
------
* ``cache=True``: compiled machine code is cached on disk (``NUMBA_CACHE_DIR``).  Numba keys a
  cache entry by the stamp of the kernel's *own* source file only, so an edit to a helper it calls
  in another module (``vecmath``, ``rng``, a constant table) would load stale machine code; every
  fastpoly kernel's stamp therefore also carries :func:`source_digest` (all of the package's
  Python sources), and any source change recompiles.
* ``nogil=True``: kernels release the GIL.
* ``error_model="numpy"``: no Python-style ``ZeroDivisionError`` checks in
  inner loops.
* **No fastmath**: LLVM must neither contract ``a*b + c`` into an FMA nor
  reassociate sums, or the bit-exact FMA rule of :mod:`fastpoly.stream.fmath` would
  break.  Every fused multiply-add is explicit, through :func:`fma`.
* ``boundscheck=False``.

Threads
-------
Parallel kernels use ``prange`` and honour :func:`numba.set_num_threads`.
:func:`configure_threads` applies the ``FASTPOLY_NUM_THREADS`` environment
variable (clipped to ``numba.config.NUMBA_NUM_THREADS``).
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = [
    "JIT_OPTIONS", "jit", "pjit", "fma", "prefetch", "f32_to_bits", "bits_to_f32",
    "configure_threads", "get_num_threads", "set_num_threads", "prange", "compilations", "source_digest",
]

#: the keyword arguments every fastpoly kernel is compiled with
JIT_OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath=False, boundscheck=False)

prange = numba.prange


#: every kernel decorated by :func:`jit` / :func:`pjit` (for :func:`compilations`)
_DISPATCHERS: list = []


@functools.cache
def source_digest(root: str | None = None) -> str:
    """SHA-256 (hex) over the names and contents of the ``*.py`` files under ``root`` (default: the package).

    Part of every kernel's disk-cache stamp (see the module docstring); computed once per process.
    """
    base = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for p in sorted(base.rglob("*.py")):
        h.update(p.relative_to(base).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _stamp_with_sources(d) -> None:
    """Extend the disk-cache stamp of dispatcher ``d`` by :func:`source_digest` (no-op without a cache)."""
    cf = getattr(getattr(d, "_cache", None), "_cache_file", None)
    if cf is not None and hasattr(cf, "_source_stamp"):
        cf._source_stamp = (cf._source_stamp, source_digest())


def jit(func=None, **overrides):
    """Decorate a serial kernel with the fastpoly jit policy (:data:`JIT_OPTIONS`)."""
    if func is None:
        return lambda f: jit(f, **overrides)
    d = numba.njit(**dict(JIT_OPTIONS, **overrides))(func)
    _stamp_with_sources(d)
    _DISPATCHERS.append(d)
    return d


def compilations() -> int:
    """How many kernel signatures this process compiled (not loaded from the disk cache) so far.

    The difference before and after a step tells whether it compiled anything, so the CLI
    reports compilation time only when compilation happened.
    """
    return sum(sum(d.stats.cache_misses.values()) for d in _DISPATCHERS)


def pjit(func=None, **overrides):
    """Like :func:`jit`, with ``parallel=True`` (for kernels with a ``prange`` loop)."""
    return jit(func, parallel=True, **overrides)


@intrinsic
def fma(typingctx, a, b, c):
    """Correctly rounded fused multiply-add ``RN(a*b + c)`` (``llvm.fma``), float32 or float64.

    All three operands must have the same floating type.  On x86 with FMA this
    is one ``vfmadd`` instruction; it vectorises inside loops.
    """
    if not (isinstance(a, types.Float) and a == b == c):
        return None
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


@intrinsic
def f32_to_bits(typingctx, x):
    """The IEEE-754 bit pattern of a float32 as a uint32 (exact bit cast)."""
    if x != types.float32:
        return None
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def bits_to_f32(typingctx, x):
    """The float32 with IEEE-754 bit pattern ``x`` (a uint32; exact bit cast)."""
    if x != types.uint32:
        return None
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def prefetch(typingctx, arr, index):
    """Hint the CPU to fetch element ``index`` of a C-contiguous array into cache (``llvm.prefetch``).

    A pure performance hint: it never faults and has no effect on results.
    """
    if not (isinstance(arr, types.Array) and isinstance(index, types.Integer)):
        return None
    sig = types.void(arr, index)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i64 = ir.IntType(64)
        idx = args[1]
        if idx.type != i64:
            idx = builder.zext(idx, i64) if not signature.args[1].signed else builder.sext(idx, i64)
        ptr = builder.gep(ary.data, [idx])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0"
        )
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


def get_num_threads():
    """The number of threads parallel kernels use now."""
    return numba.get_num_threads()


def set_num_threads(n):
    """Set the number of threads for parallel kernels (1 .. ``NUMBA_NUM_THREADS``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def configure_threads():
    """Apply ``FASTPOLY_NUM_THREADS`` (if set) and return the thread count in use.

    Raises
    ------
    ValueError
        If ``FASTPOLY_NUM_THREADS`` is not a positive integer.
    """
    env = os.environ.get("FASTPOLY_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"FASTPOLY_NUM_THREADS must be a positive integer, got {env!r}")
        set_num_threads(n)
    return numba.get_num_threads()
