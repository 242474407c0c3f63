"""The emulator implementation of the cupy backend's device interface (NumPy arrays + ctypes).

``CupyBackend(device=EmuDevice())`` runs the backend's real glue -- plan, kernel choice,
argument packing, launches, sort and run-length encoding, merge -- with the real kernels
executed by the CPU emulation (:mod:`tests.cuda_emu.build`).  "Device arrays" are NumPy
arrays; a launch hands their data pointers to the kernels.  The emulator is stricter than
CuPy where it can be: it checks every scalar argument's type and size against the kernel's
parameter list, that pointer arguments are C-contiguous arrays of the pointee's size, the
shared-memory limits of a launch (48 KiB without the opt-in attribute) and the kernel's
``__launch_bounds__``.  Failure injection (for the out-of-memory logic): ``alloc_limit``
(any allocation above it raises :class:`EmuOutOfMemoryError`), ``fail_sort`` (the n-th
sorts raise a plain ``MemoryError``, as newer CuPy does when Thrust's workspace allocation
fails) and ``unsorted_sort`` (the n-th sorts return garbage, as older CuPy did).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools

import numpy as np

from .build import build_library

__all__ = ["EmuDevice", "EmuKernel", "EmuLaunchError", "EmuOutOfMemoryError", "load_library"]


class EmuLaunchError(RuntimeError):
    """A launch the emulator refused or that failed (deadlock, trap, shared-memory overrun, ...)."""


class EmuOutOfMemoryError(MemoryError):
    """Injected allocation failure (the emulator's ``cupy.cuda.memory.OutOfMemoryError``)."""


class _Library:
    def __init__(self, path):
        self.path = str(path)
        lib = ctypes.CDLL(self.path)
        lib.emu_num_kernels.restype = ctypes.c_int
        for f in ("emu_kernel_name", "emu_kernel_signature", "emu_last_error"):
            getattr(lib, f).restype = ctypes.c_char_p
        lib.emu_kernel_name.argtypes = lib.emu_kernel_signature.argtypes = [ctypes.c_int]
        lib.emu_kernel_static_smem.restype = ctypes.c_longlong
        lib.emu_kernel_static_smem.argtypes = [ctypes.c_int]
        lib.emu_kernel_max_threads.restype = ctypes.c_int
        lib.emu_kernel_max_threads.argtypes = [ctypes.c_int]
        lib.emu_max_dynamic_smem.restype = ctypes.c_longlong
        lib.emu_set_order.argtypes = [ctypes.c_int]
        lib.emu_launch.restype = ctypes.c_int
        lib.emu_launch.argtypes = [ctypes.c_int] + [ctypes.c_uint] * 6 + [ctypes.c_ulonglong,
                                                                          ctypes.POINTER(ctypes.c_void_p)]
        self.lib = lib
        self.kernels = {}
        for i in range(lib.emu_num_kernels()):
            name = lib.emu_kernel_name(i).decode()
            self.kernels[name] = dict(kid=i, signature=lib.emu_kernel_signature(i).decode().split(","),
                                      static_smem=int(lib.emu_kernel_static_smem(i)),
                                      max_threads=int(lib.emu_kernel_max_threads(i)))
        self.max_dynamic = int(lib.emu_max_dynamic_smem())


@functools.cache
def load_library(path=None):
    """The emulator library (built on first use, see :func:`tests.cuda_emu.build.build_library`)."""
    return _Library(path or build_library())


class EmuKernel:
    """One kernel instantiation of the emulator library (the analogue of a CUDA function handle)."""

    def __init__(self, name, info, default_dynamic):
        self.name = name
        self.kid = info["kid"]
        self.signature = info["signature"]
        self.static_smem = info["static_smem"]
        self.max_threads = info["max_threads"]
        # cudaFuncAttributeMaxDynamicSharedMemorySize starts at 48 KiB - static
        self.max_dynamic_smem = max(0, default_dynamic - self.static_smem)

    def __repr__(self):
        return f"EmuKernel({self.name!r})"


_SCALAR_KINDS = {"i": "i", "u": "u", "f": "f"}


class EmuDevice:
    """Device interface of :class:`fastpoly.backends.cuda.backend.CupyBackend` over the CPU emulation.

    Parameters
    ----------
    sm_count : int
        Multiprocessors reported (the backend sizes grids from it; small = tiny grids).
    smem_per_block, smem_per_block_optin, smem_per_sm : int
        Shared-memory limits reported and enforced (defaults: an H100).
    memory : int
        Free device memory reported (bytes).
    order : {"forward", "reverse"}
        Order in which ready threads of a block run between barriers.
    alloc_limit : int or None
        Allocations above this many bytes raise :class:`EmuOutOfMemoryError`.
    fail_sort, unsorted_sort : collection of int
        0-based numbers of the ``argsort_stable`` calls that raise ``MemoryError`` / return garbage.
    library : path or None
    """

    name = "cuda-emu"
    xp = np

    def __init__(self, sm_count=2, smem_per_block=48 * 1024, smem_per_block_optin=227 * 1024,
                 smem_per_sm=228 * 1024, memory=1 << 30, order="forward", alloc_limit=None, fail_sort=(),
                 unsorted_sort=(), library=None):
        if order not in ("forward", "reverse"):
            raise ValueError("order must be 'forward' or 'reverse'")
        self.lib = load_library(library)
        self.props = {"name": "CUDA CPU emulation", "sm_count": int(sm_count), "cc": "9.0",
                      "smem_per_sm": int(smem_per_sm), "smem_per_block": int(smem_per_block),
                      "smem_per_block_optin": int(smem_per_block_optin)}
        self.memory = int(memory)
        self.order = order
        self.alloc_limit = alloc_limit
        self.fail_sort = set(fail_sort)
        self.unsorted_sort = set(unsorted_sort)
        self.oom_errors = (EmuOutOfMemoryError, MemoryError)
        self.launches = []  # (kernel name, grid, block, dynamic smem)
        self.n_sorts = 0
        self.n_free_cached = 0
        self.n_opt_in = 0

    # --- set-up ------------------------------------------------------------------------------------
    def availability(self):
        return True, ""

    def properties(self):
        return dict(self.props)

    def memory_free(self):
        return self.memory

    def free_cached(self):
        self.n_free_cached += 1

    def stream(self):
        return contextlib.nullcontext()

    def synchronize(self):
        pass

    def compile(self, filename, names):
        out = {}
        for n in names:
            info = self.lib.kernels.get(n)
            if info is None:
                raise EmuLaunchError(f"{n} ({filename}) is not instantiated in the emulator library; add its "
                                     "shape to tests/cuda_emu/build.py FIXED_SHAPES")
            out[n] = EmuKernel(n, info, self.props["smem_per_block"])
        return out

    def attributes(self, kern):
        return {"num_regs": 64, "static_smem": kern.static_smem, "max_dynamic_smem": kern.max_dynamic_smem}

    def set_max_dynamic_smem(self, kern, nbytes):
        if kern.static_smem + nbytes > self.props["smem_per_block_optin"]:
            raise EmuLaunchError(f"{kern.name}: {nbytes} bytes of dynamic shared memory exceed the opt-in limit")
        kern.max_dynamic_smem = int(nbytes)
        self.n_opt_in += 1

    # --- memory -------------------------------------------------------------------------------------
    def _alloc(self, nbytes):
        if self.alloc_limit is not None and nbytes > self.alloc_limit:
            raise EmuOutOfMemoryError(f"injected: allocation of {nbytes} bytes above {self.alloc_limit}")

    def empty(self, shape, dtype):
        a = np.empty(shape, dtype)
        self._alloc(a.nbytes)
        a.view(np.uint8).fill(0xA5)  # device memory is not zeroed: make reliance on it visible
        return a

    def zeros(self, shape, dtype):
        a = np.zeros(shape, dtype)
        self._alloc(a.nbytes)
        return a

    def full(self, shape, value, dtype):
        a = np.full(shape, value, dtype)
        self._alloc(a.nbytes)
        return a

    def upload(self, a):
        a = np.array(a, copy=True, order="C")
        self._alloc(a.nbytes)
        return a

    def download(self, a):
        return np.array(a, copy=True)

    def reserve(self, nbytes):
        self._alloc(int(nbytes))

    def argsort_stable(self, a):
        k = self.n_sorts
        self.n_sorts += 1
        self._alloc(16 * a.shape[0])
        if k in self.fail_sort:
            raise MemoryError("injected: Thrust workspace allocation failed")
        if k in self.unsorted_sort:
            return np.random.default_rng(k).permutation(a.shape[0]).astype(np.int64)
        return np.argsort(a, kind="stable").astype(np.int64)

    # --- launches -----------------------------------------------------------------------------------
    def launch(self, kern, grid, block, args, smem=0):
        grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
        block = tuple(int(b) for b in block) + (1,) * (3 - len(block))
        smem = int(smem)
        if smem > kern.max_dynamic_smem:
            raise EmuLaunchError(
                f"{kern.name}: {smem} bytes of dynamic shared memory above the kernel's limit "
                f"{kern.max_dynamic_smem} (static {kern.static_smem}; opt in above "
                f"{self.props['smem_per_block']} bytes per block): a GPU refuses this launch")
        if len(args) != len(kern.signature):
            raise EmuLaunchError(f"{kern.name} takes {len(kern.signature)} arguments, got {len(args)}")
        slots = (ctypes.c_uint64 * max(1, len(args)))()
        keep = []
        for i, (code, a) in enumerate(zip(kern.signature, args)):
            if code.startswith("p"):
                size = int(code[1:])
                if isinstance(a, np.ndarray):
                    if not a.flags.c_contiguous:
                        raise EmuLaunchError(f"{kern.name} argument {i}: array is not C-contiguous")
                    if size and a.dtype.itemsize != size:
                        raise EmuLaunchError(f"{kern.name} argument {i}: {a.dtype} array for a pointer to "
                                             f"{size}-byte values")
                    slots[i] = a.ctypes.data if a.size else 0
                    keep.append(a)
                elif isinstance(a, np.uint64) and int(a) == 0:
                    slots[i] = 0
                else:
                    raise EmuLaunchError(f"{kern.name} argument {i}: expected an array (pointer), got {type(a)}")
            else:
                kind, size = code[0], int(code[1:])
                if not isinstance(a, np.generic) or a.dtype.kind != _SCALAR_KINDS.get(kind) or \
                        a.dtype.itemsize != size:
                    raise EmuLaunchError(f"{kern.name} argument {i}: parameter type {code}, got {a!r} "
                                         f"({type(a).__name__}); pass a NumPy scalar of that type")
                slots[i] = int.from_bytes(a.tobytes().ljust(8, b"\0"), "little")
        base = ctypes.addressof(slots)
        argv = (ctypes.c_void_p * max(1, len(args)))(*[base + 8 * i for i in range(len(args))])
        self.lib.lib.emu_set_order(1 if self.order == "reverse" else 0)
        self.launches.append((kern.name, grid, block, smem))
        rc = self.lib.lib.emu_launch(kern.kid, *grid, *block, smem, argv)
        if rc != 0:
            raise EmuLaunchError(f"{kern.name}: {self.lib.lib.emu_last_error().decode()}")
