"""The ``"cupy"`` backend: fused CUDA sampler with exact counting, and structured-network evaluation.

Kernels live in ``kernels/`` (package data ``fastpoly/kernels`` once installed;
see :mod:`fastpoly.backends.cuda.source`).  They are compiled on first use with NVRTC
through :func:`fastpoly.backends.cuda.source.build_module` -- not :class:`cupy.RawModule`,
which appends ``-ftz=true`` and would flush subnormals -- for ``sm_XY`` of the present
device, and the CUBIN is loaded as a module (memoised per process; cached on disk under a
key holding the sources, architecture, options and NVRTC version).  The driver never
JIT-compiles PTX, so PTX newer than the driver (NVRTC 13.5 on a CUDA 13.0 driver) is no
obstacle; the PTX is kept for the flush-to-zero check.  Templates are instantiated through
name expressions:

* ``fastpoly_sample_fixed<N0, H1, H2, R, ACT, MODE>`` for ``N0-H1-H2-1``
  networks on at most 128 rows (the anchor ``7-40-40-1`` on 128 Boolean inputs),
* ``fastpoly_sample_wide<MODE>`` (``kernels/sample_wide.cu``) for wide MLPs: a hidden layer of at
  least ``WIDE_MIN_WIDTH`` neurons on at least ``WIDE_MIN_ROWS`` rows (one block per sample, tiled
  matrix products, the weights generated on chip),
* ``fastpoly_sample_generic<MODE>`` for everything else,
* ``fastpoly_csr_layer<T, FUSED>`` for :meth:`CupyBackend.evaluate`.

Importing this module does not import CuPy; :meth:`CupyBackend.availability`
reports why the backend cannot run (no CuPy, no device) without raising.

Every device call goes through a narrow *device interface* (:class:`CupyDevice`:
compile, attributes, launch, alloc/upload/download, reserve, stable argsort; array
expressions through its ``xp`` namespace), so the same glue runs over the CPU
emulation of the CUDA execution model in the tests (``tests/cuda_emu``).

Counting (``count_range``): each GPU sub-batch tallies the two constant
functions per block before one global atomic per block, appends every other
accepted ``(key, index)`` to a buffer, sorts it by key on the GPU (one stable
radix argsort per 64-bit key word, least significant first), checks that the
result is sorted, run-length encodes it and takes the first (smallest) index of
every run with a segmented minimum (``fastpoly_segment_min``); the sorted runs are
copied to the host, bracketed by the two constant keys without sorting, and merged
across sub-batches linearly in a worker thread while the device draws the next
sub-batch (:class:`fastpoly.backends.cuda.hostmerge.SortedRunMerger`).  A kernel guard
that fails sets a status word (never ``__trap()``, a sticky error of the CUDA context)
that the host raises as :class:`fastpoly.backends.cuda.source.KernelStatusError`.
Sub-batches are sized from a device-memory budget and the sort's peak memory is
reserved before it starts; an out-of-memory error (CuPy's ``OutOfMemoryError``
or the plain ``MemoryError`` that a failed Thrust workspace allocation raises)
halves the sub-batch (with a ``RuntimeWarning``) and redoes it, so no sample is
ever lost or counted twice.
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from fastpoly.activations import CODES, SAMPLER_CODES, codes_for
from fastpoly.backends.base import Backend, CountBatch, SampleBatch, TrainBatch, check_range, structured_of
from fastpoly.backends.cuda import device as _device_memo
from fastpoly.backends.cuda import source as src
from fastpoly.backends.cuda.hostmerge import SortedRunMerger, concat_ordered
from fastpoly.backends.cuda.source import check_status
from fastpoly.network import Network, forward_reference

if TYPE_CHECKING:
    from fastpoly.plan import SamplerPlan

__all__ = [
    "CupyBackend", "CupyDevice", "default_device", "POLY_ACT_CODES", "sort_peak_bytes",
    "FixedSampler", "GenericSampler", "WideSampler", "DevicePlan", "WIDE_MIN_WIDTH", "WIDE_MIN_ROWS",
]

#: activation name -> code of kernels/poly.cu (FP_ACT_*, generated from the activation table)
POLY_ACT_CODES = dict(CODES)
#: dense-network activations the evaluation kernel supports (fastpoly.activations names)
_DENSE_ACT_CODES = codes_for("evaluate", "cupy")  # the activation table's support column

_MAX_SUB_BATCH = 1 << 26
_MIN_SUB_BATCH = 1 << 10
_SMEM_DEFAULT_LIMIT = 48 * 1024
#: upper bound of the static __shared__ bytes of any sampler kernel (used when the driver cannot say)
_STATIC_SMEM_BOUND = 1024
_SEGMENT_THREADS = 256
_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)
#: ``kernel="auto"`` takes the wide sampler for an MLP with a hidden layer this wide ...
WIDE_MIN_WIDTH = src.WIDE_MIN_WIDTH
#: ... on at least this many rows (key rows + train rows); smaller nets keep the fixed / generic kernels
WIDE_MIN_ROWS = 64
# constants of kernels/sample_wide.cu: threads per block, neurons per tile, k per staged chunk
_WIDE_THREADS = 256
_WIDE_TN = 64
_WIDE_KC = 16


def _round_up(a, b):
    return -(-a // b) * b


def sort_peak_bytes(n, n_words):
    """Upper bound of the device memory that sorting ``n`` appended ``(key, index)`` pairs allocates.

    Per pair: the permutation and one gathered key column (8 + 8 bytes), the radix sort's
    output and its double buffers (8 + 32), the sorted keys (8 W), run starts, run ids and
    first indices (24) and the run flags (1); plus 64 KiB for the sort's fixed workspace.
    The count path reserves this much before sorting, so a failure is an ordinary
    out-of-memory error that halves the sub-batch, never a failure inside the sort.
    """
    return int(n) * (81 + 8 * int(n_words)) + (1 << 16)


# --------------------------------------------------------------------------------------------------
# Per-plan device data: which sampler kernel, its launch constants, the uploaded inputs
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FixedSampler:
    """The specialised sampler ``fastpoly_sample_fixed<N0, H1, H2, R, ACT, MODE>`` (``N0-H1-H2-1``, <= 128 rows).

    Attributes
    ----------
    wpb : int
        Warps per block asked for (the launch may get fewer, see :func:`fastpoly.backends.cuda.source.shared_memory_plan`).
    smem_per_warp : int
        Dynamic shared memory bytes per warp (the network's parameters and activations).
    shape : tuple of int
        ``(N0, H1, H2)``: inputs and the two hidden widths.
    R : int
        Rows per lane (``ceil(m / 32)``).
    act : int
        Sampler code of the hidden activation (:data:`fastpoly.activations.SAMPLER_CODES`).
    """

    wpb: int
    smem_per_warp: int
    shape: tuple[int, int, int]
    R: int
    act: int
    #: the kernel source file
    filename: ClassVar[str] = "sampler.cu"

    def kernel_names(self) -> list[str]:
        """Name expressions of the keys and count instantiations, then the auxiliary kernels."""
        n0, h1, h2 = self.shape
        return [src.fixed_kernel_name(n0, h1, h2, self.R, self.act, md)
                for md in (src.MODE_KEYS, src.MODE_COUNT)] + list(src.AUX_KERNELS)


@dataclass(frozen=True)
class GenericSampler:
    """The generic sampler ``fastpoly_sample_generic<MODE>`` (any depth and width; per-warp scratch in global memory).

    Attributes
    ----------
    wpb : int
        Warps per block asked for.
    smem_per_warp : int
        Dynamic shared memory bytes per warp (one chunk of ``wchunk`` weights).
    maxw : int
        Widest layer after the inputs.
    stride : int
        Floats of global scratch per warp (two activation buffers and the key words).
    """

    wpb: int
    smem_per_warp: int
    maxw: int
    stride: int
    #: the kernel source file
    filename: ClassVar[str] = "sampler.cu"

    def kernel_names(self) -> list[str]:
        """Name expressions of the keys and count instantiations, then the auxiliary kernels."""
        return [src.generic_kernel_name(md) for md in (src.MODE_KEYS, src.MODE_COUNT)] + list(src.AUX_KERNELS)


@dataclass(frozen=True)
class WideSampler:
    """The tiled sampler ``fastpoly_sample_wide<MODE>`` (``kernels/sample_wide.cu``): one block of 256 threads per sample.

    Each layer is a matrix product over tiles of 64 neurons x 128 rows; the weights of a neuron
    tile are generated on chip into shared memory ``kseg`` inputs at a time (``kseg * 64`` floats
    of dynamic shared memory) and reused by every row tile; the activations live in a per-block
    global scratch area.

    Attributes
    ----------
    kseg : int
        Fan-in weights per neuron per segment (a multiple of 16); the launch may lower it to fit
        the device's shared memory.
    maxw : int
        Widest layer after the inputs.
    stride : int
        Floats of global scratch per block (two activation buffers and the key words).
    """

    kseg: int
    maxw: int
    stride: int
    #: the kernel source file
    filename: ClassVar[str] = "sample_wide.cu"

    def kernel_names(self) -> list[str]:
        """Name expressions of the keys and count instantiations (the counting helper is in ``sampler.cu``)."""
        return [src.wide_kernel_name(md) for md in (src.MODE_KEYS, src.MODE_COUNT)]


@dataclass(frozen=True)
class DevicePlan:
    """A sampler plan on the device: the uploaded inputs and the kernel that runs it (cached per plan).

    Attributes
    ----------
    desc : device array
        int64 network descriptor (:func:`fastpoly.backends.cuda.source.net_desc`).
    scales : device array
        float32 per-parameter scales.
    Xt : device array
        float32 ``(n_inputs, m)``: inputs transposed, rows in kernel order (train rows first).
    labels : device array
        uint8 train labels in kernel order (one dummy byte when unconditioned).
    m : int
        Rows.
    nkey : int
        Key rows.
    n_words : int
        64-bit words of a key.
    kernel : FixedSampler, GenericSampler or WideSampler
        The chosen sampler kernel and its launch constants.
    """

    desc: Any
    scales: Any
    Xt: Any
    labels: Any
    m: int
    nkey: int
    n_words: int
    kernel: FixedSampler | GenericSampler | WideSampler


# --------------------------------------------------------------------------------------------------
# The device interface: CuPy implementation (the emulator's lives in tests/cuda_emu/device.py)
# --------------------------------------------------------------------------------------------------
class _CupyNVRTC:
    """:func:`fastpoly.backends.cuda.source.build_module`'s NVRTC calls through CuPy's bindings."""

    def __init__(self):
        from cupy_backends.cuda.libs import nvrtc

        self.n = nvrtc
        if not hasattr(nvrtc, "getCUBIN"):
            raise AttributeError("CuPy's NVRTC bindings have no getCUBIN")

    def version(self):
        return tuple(int(v) for v in self.n.getVersion())

    def create(self, source, name):
        return self.n.createProgram(source, name, (), ())

    def add_name_expression(self, prog, name):
        self.n.addNameExpression(prog, name)

    def compile(self, prog, options):
        try:
            self.n.compileProgram(prog, list(options))
            ok = True
        except self.n.NVRTCError:
            ok = False
        log = self.n.getProgramLog(prog)
        return ok, log.decode(errors="replace") if isinstance(log, bytes) else str(log)

    def ptx(self, prog):
        p = self.n.getPTX(prog)
        return p.decode() if isinstance(p, bytes) else str(p)

    def cubin(self, prog):
        return bytes(self.n.getCUBIN(prog))

    def lowered_name(self, prog, name):
        low = self.n.getLoweredName(prog, name)
        return low.decode() if isinstance(low, bytes) else str(low)

    def destroy(self, prog):
        self.n.destroyProgram(prog)


class CupyDevice:
    """The backend's device interface on a CUDA GPU through CuPy (one non-blocking stream).

    Methods: ``properties``, ``memory_free``, ``free_cached``, ``stream``, ``synchronize``,
    ``compile``, ``attributes``, ``set_max_dynamic_smem``, ``launch``, ``empty``, ``zeros``,
    ``full``, ``upload``, ``download``, ``reserve``, ``argsort_stable``; attributes ``xp``
    (the array namespace) and ``oom_errors``.
    """

    name = "cupy"

    def __init__(self):
        import cupy

        self.cp = self.xp = cupy
        self._stream = cupy.cuda.Stream(non_blocking=True)
        dev = cupy.cuda.Device()
        p = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = p.get("name", b"")
        self.props = {
            "name": name.decode() if isinstance(name, bytes) else str(name),
            "sm_count": int(p.get("multiProcessorCount", 1)),
            "cc": f"{p.get('major', '?')}.{p.get('minor', '?')}",
            "smem_per_sm": int(p.get("sharedMemPerMultiprocessor", 100 * 1024)),
            "smem_per_block": int(p.get("sharedMemPerBlock", _SMEM_DEFAULT_LIMIT)),
            "smem_per_block_optin": int(p.get("sharedMemPerBlockOptin", p.get("sharedMemPerBlock",
                                                                                _SMEM_DEFAULT_LIMIT))),
        }
        self.arch = f"{p.get('major', 8)}{p.get('minor', 0)}"
        self.oom_errors = (cupy.cuda.memory.OutOfMemoryError, MemoryError)
        self.ptx = {}  # (filename, names) -> PTX text (tests check it for .ftz)

    def availability(self):
        return True, ""

    def properties(self):
        return dict(self.props)

    def memory_free(self):
        free, _total = self.cp.cuda.runtime.memGetInfo()
        return int(free + self.cp.get_default_memory_pool().free_bytes())

    def free_cached(self):
        self.cp.get_default_memory_pool().free_all_blocks()

    def stream(self):
        return self._stream

    def synchronize(self):
        self._stream.synchronize()

    _builtins_preloaded = False

    def _nvrtc(self):
        """CuPy's NVRTC bindings (libnvrtc-builtins preloaded from the libnvrtc found), else ctypes on libnvrtc."""
        try:
            n = _CupyNVRTC()
        except (ImportError, AttributeError):
            return src.CtypesNVRTC()
        if not CupyDevice._builtins_preloaded:  # the 13.0 wheel's libnvrtc has no RPATH to find its builtins
            CupyDevice._builtins_preloaded = True
            src.preload_nvrtc_builtins(src.find_nvrtc_library())
        return n

    #: (device id, arch, filename, names) -> (module, PTX, lowered names): shared by every backend
    _loaded: dict = {}

    def _cache_path(self, filename, names, nvrtc_version):
        d = os.environ.get("FASTPOLY_CUDA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fastpoly",
                                                                     "cuda")
        key = src.module_cache_key(filename, names, self.arch, nvrtc_version)
        return os.path.join(d, f"{key}.json")

    def _build(self, filename, names):
        """:class:`~fastpoly.backends.cuda.source.CompiledModule` (PTX, CUBIN of ``sm_<arch>``, lowered names).

        From the on-disk cache (keyed by :func:`fastpoly.backends.cuda.source.module_cache_key`:
        sources, architecture, options and NVRTC version; the PTX re-checked for ``.ftz``), else
        NVRTC (:func:`fastpoly.backends.cuda.source.build_module`).
        """
        nvrtc = self._nvrtc()
        try:
            version = nvrtc.version()
        except Exception:  # noqa: BLE001 - unknown version: never reuse a cached module
            version = ("unknown", os.getpid(), time.time())
        path = self._cache_path(filename, names, version)
        try:
            with open(path, encoding="utf-8") as fh:
                c = json.load(fh)
            if not src.ptx_ftz_instructions(c["ptx"]) and set(c["lowered"]) == set(names):
                return src.CompiledModule(c["ptx"], base64.b64decode(c["cubin"]), c["lowered"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        try:
            mod = src.build_module(filename, names, nvrtc, arch=self.arch)
        except (TypeError, AttributeError):  # CuPy's NVRTC bindings changed: use libnvrtc directly
            mod = src.build_module(filename, names, src.CtypesNVRTC(), arch=self.arch)
        except RuntimeError as exc:  # CuPy's libnvrtc without its builtins: ours preloads them
            if "builtins" not in str(exc) or isinstance(nvrtc, src.CtypesNVRTC):
                raise
            mod = src.build_module(filename, names, src.CtypesNVRTC(), arch=self.arch)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"ptx": mod.ptx, "cubin": base64.b64encode(mod.cubin).decode("ascii"),
                           "lowered": mod.lowered, "nvrtc": list(version)}, fh)
            os.replace(tmp, path)
        except OSError:  # a read-only home: compile again next time
            pass
        return mod

    def compile(self, filename, names):
        """Kernel handles of ``names`` (NVRTC name expressions) of one kernel file (the CUBIN of the device)."""
        names = list(names)
        key = (self.cp.cuda.Device().id, self.arch, filename, tuple(names))
        hit = CupyDevice._loaded.get(key)
        if hit is None:
            built = self._build(filename, names)
            mod = self.cp.cuda.function.Module()
            mod.load(built.cubin)  # cuModuleLoadData: machine code of this architecture, no PTX JIT
            hit = CupyDevice._loaded[key] = (mod, built.ptx, built.lowered)
        mod, ptx, lowered = hit
        self.ptx[(filename, tuple(names))] = ptx
        return {n: mod.get_function(lowered[n]) for n in names}

    def attributes(self, kern):
        drv = self.cp.cuda.driver
        try:
            return {"num_regs": int(drv.funcGetAttribute(4, kern.ptr)),         # CU_FUNC_ATTRIBUTE_NUM_REGS
                    "static_smem": int(drv.funcGetAttribute(1, kern.ptr)),      # ..._SHARED_SIZE_BYTES
                    "max_dynamic_smem": int(drv.funcGetAttribute(8, kern.ptr))}  # ..._MAX_DYNAMIC_SHARED_SIZE
        except Exception:  # pragma: no cover - older bindings
            return {"num_regs": 64, "static_smem": _STATIC_SMEM_BOUND,
                    "max_dynamic_smem": _SMEM_DEFAULT_LIMIT - _STATIC_SMEM_BOUND}

    def set_max_dynamic_smem(self, kern, nbytes):
        self.cp.cuda.driver.funcSetAttribute(kern.ptr, 8, int(nbytes))

    def launch(self, kern, grid, block, args, smem=0):
        kern(tuple(grid), tuple(block), tuple(args), shared_mem=int(smem), stream=self._stream)

    def empty(self, shape, dtype):
        with self._stream:
            return self.cp.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        with self._stream:
            return self.cp.zeros(shape, dtype=dtype)

    def full(self, shape, value, dtype):
        with self._stream:
            return self.cp.full(shape, value, dtype=dtype)

    def upload(self, a):
        with self._stream:
            return self.cp.asarray(np.ascontiguousarray(a))

    def download(self, a):
        return a.get(stream=self._stream)

    def reserve(self, nbytes):
        """Allocate and release ``nbytes`` (they stay in CuPy's pool for the next allocations)."""
        with self._stream:
            buf = self.cp.empty(int(nbytes), dtype=self.cp.uint8)
        del buf

    def argsort_stable(self, a):
        with self._stream:
            return self.cp.argsort(a)  # CuPy sorts with a stable radix sort (Thrust/CUB)


# --------------------------------------------------------------------------------------------------
class CupyBackend(Backend):
    """NVIDIA GPUs through CuPy.

    Parameters
    ----------
    threads_per_block : int
        Threads per block (a multiple of 32; the fixed-size sampler uses at
        most 128).  Tests shrink it to 32 so tiny inputs span several blocks.
    max_blocks : int or None
        Cap on the grid (None: enough blocks to fill the device a few times).
        Small values make every warp loop over many samples.
    memory_budget : int or None
        Bytes of device memory a sub-batch may use; None: ``memory_fraction``
        of the free memory at first use (``$FASTPOLY_CUPY_MEMORY`` overrides).
    memory_fraction : float
    kernel : {"auto", "fixed", "generic", "wide"}
        Force the generic sampler, the wide (tiled) one, or, where possible, the fixed-size one.
        ``"auto"``: the fixed-size sampler for ``N0-H1-H2-1`` nets on <= 128 rows, the wide one for
        an MLP with a hidden layer of >= :data:`WIDE_MIN_WIDTH` neurons on >= :data:`WIDE_MIN_ROWS`
        rows, else the generic one.  All give the same bits.
    wchunk : int
        Weights per warp per chunk of the generic sampler (shared memory).
    wide_kseg : int
        Fan-in weights per neuron and segment of the wide sampler (a multiple of 16; shared memory
        ``wide_kseg * 256`` bytes per block).
    max_sub_batch : int or None
        Upper bound on the samples of one kernel launch.
    device : object or None
        The device interface (default: :class:`CupyDevice`, created on first use); the
        tests pass the CPU emulation's (``tests/cuda_emu/device.py``).
    """

    name = "cupy"
    lacks: dict[str, str] = {
        "gp_values": "no CUDA kernel for GP draws yet (use numba or numpy)",
        "tally": "the histogram tables run on the CPU (numba or numpy)",
        "codec": "the block codec runs on the CPU (numba)",
        "merge": "merging counted runs runs on the CPU (numba or numpy)",
    }

    def __init__(self, threads_per_block: int = 128, max_blocks: int | None = None, memory_budget: int | None = None,
                 memory_fraction: float = 0.5, kernel: str = "auto", wchunk: int = 256,
                 max_sub_batch: int | None = None, device: Any = None, wide_kseg: int = 256) -> None:
        if threads_per_block % 32 or not 32 <= threads_per_block <= 1024:
            raise ValueError("threads_per_block must be a multiple of 32 in [32, 1024]")
        if kernel not in ("auto", "fixed", "generic", "wide"):
            raise ValueError(f"unknown kernel {kernel!r}; valid: auto, fixed, generic, wide")
        if int(wchunk) < 1:
            raise ValueError("wchunk must be >= 1")
        if int(wide_kseg) < _WIDE_KC or int(wide_kseg) % _WIDE_KC:
            raise ValueError(f"wide_kseg must be a positive multiple of {_WIDE_KC}, got {wide_kseg}")
        self.threads_per_block = int(threads_per_block)
        self.max_blocks = None if max_blocks is None else int(max_blocks)
        self._budget = None if memory_budget is None else int(memory_budget)
        self.memory_fraction = float(memory_fraction)
        self.kernel = kernel
        self.wchunk = int(wchunk)
        self.wide_kseg = int(wide_kseg)
        self.max_sub_batch = int(max_sub_batch) if max_sub_batch else _MAX_SUB_BATCH
        self._lock = threading.RLock()
        self._modules: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
        self._plan_cache: dict[tuple, DevicePlan] = {}
        self._layers_cache: dict[tuple, Any] = {}  # PreparedSampleLayers of CNN plans
        self._dev = device
        self._device_given = device is not None
        self._props: dict[str, Any] | None = None
        self._shrunk: dict[str, int] = {}  # kind -> sub-batch cap learnt from OOM
        #: wall seconds of count_range: device work (launches, sorts, copies) and the host merge
        self.timings: dict[str, float] = {"device_s": 0.0, "merge_s": 0.0, "sub_batches": 0}

    # --- availability and set-up --------------------------------------------------------
    def availability(self) -> tuple[bool, str]:
        """``(True, "")`` or ``(False, reason)``."""
        if self._device_given:
            return self._dev.availability()
        return _device_memo.availability()

    def _device(self):
        if self._props is None:
            with self._lock:
                if self._dev is None:
                    self._dev = default_device()  # the process's one device
                if self._props is None:
                    self._props = self._dev.properties()
        return self._dev

    def device(self) -> Any:
        """The device interface this backend runs on (the process's one CUDA device unless one was given)."""
        return self._device()

    def _properties(self) -> dict[str, Any]:
        """The device's properties (``name``, ``sm_count``, ``cc``, shared-memory limits), read once."""
        self._device()
        assert self._props is not None
        return self._props

    def memory_budget(self) -> int:
        """Bytes of device memory one sub-batch may use."""
        if self._budget is not None:
            return self._budget
        env = os.environ.get("FASTPOLY_CUPY_MEMORY")
        if env:
            return int(float(env))
        return int(self.memory_fraction * self._device().memory_free())

    def _functions(self, filename, names):
        """Memoised kernel handles of one kernel file with the given instantiations."""
        key = (filename, tuple(names))
        fns = self._modules.get(key)
        if fns is None:
            fns = self._device().compile(filename, list(names))
            self._modules[key] = fns
        return fns

    def describe(self) -> str:
        """One line for the CLI (device, threads)."""
        ok, why = self.availability()
        if not ok:
            return f"cupy (unavailable: {why})"
        p = self._properties()
        return f"cupy on {p['name']} (compute capability {p['cc']}, {p['sm_count']} SMs)"

    # --- training and K_LZ on the same device ------------------------------------------
    def train_range(self, tp: Any, lo: int, hi: int, params: bool = False) -> TrainBatch:
        """P_SGD runs ``lo .. hi-1`` with the CUDA trainer (:mod:`fastpoly.backends.cuda.train`) on this device."""
        from fastpoly.backends.cuda.train import train_range_cuda

        return train_range_cuda(tp, lo, hi, params=params, device=self._device())

    def complexity_ints(self, keys: np.ndarray, n: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(phrase sums, ones, critical counts)`` on this device (:mod:`fastpoly.backends.cuda.klz`)."""
        from fastpoly.backends.cuda.klz import complexity_ints_cuda

        return complexity_ints_cuda(keys, n, d, self._device())

    def default_batch_size(self, plan: SamplerPlan) -> int:
        """Samples per batch when the user gives none."""
        flops = plan.flops_per_sample()
        return int(min(1 << 25, max(1 << 14, 2e13 / max(flops, 1))))

    # --- per-plan device data -----------------------------------------------------------
    @staticmethod
    def check_plan(plan: SamplerPlan) -> None:
        """Raise ``ValueError`` if no sampler kernel can run ``plan`` (deeper than ``MAX_LAYERS``)."""
        if not plan.is_mlp:  # a layer sequence (CNN): kernels/sample_layers.cu
            from fastpoly.backends.cuda.sample_layers import check_layers

            check_layers(plan.mlp)
            return
        L = plan.dense.n_layers
        if L > src.MAX_LAYERS:
            raise ValueError(f"the cupy backend samples MLPs of at most {src.MAX_LAYERS} layers "
                             f"(FP_MAX_LAYERS of kernels/network.cuh); {plan.mlp.spec} has {L}")

    def _plan_data(self, plan: SamplerPlan) -> DevicePlan:
        """The :class:`DevicePlan` of ``plan`` (inputs uploaded once; the last four plans are cached)."""
        self.check_plan(plan)
        key = (plan.digest, plan.seed, plan.train_rows.tobytes(), plan.train_labels.tobytes(), repr(plan.mlp))
        d = self._plan_cache.get(key)
        if d is not None:
            return d
        dev = self._device()
        desc, scales = src.net_desc(plan.mlp)
        order, labels = src.row_order(plan)
        Xt = np.ascontiguousarray(plan.X[order].T, dtype=np.float32)
        d = DevicePlan(
            desc=dev.upload(desc),
            scales=dev.upload(scales),
            Xt=dev.upload(Xt),
            labels=dev.upload(labels if labels.size else np.zeros(1, np.uint8)),
            m=int(plan.m),
            nkey=int(plan.key_rows.size),
            n_words=int(plan.n_words),
            kernel=self._choose_kernel(plan),
        )
        if len(self._plan_cache) >= 4:
            self._plan_cache.pop(next(iter(self._plan_cache)))
        self._plan_cache[key] = d
        return d

    @staticmethod
    def wide_by_size(plan: SamplerPlan) -> bool:
        """Whether ``kernel="auto"`` samples this MLP with the wide (tiled) sampler.

        A hidden layer of at least :data:`WIDE_MIN_WIDTH` neurons on at least :data:`WIDE_MIN_ROWS`
        rows: there the generic sampler (one warp per sample, one global load per FMA) is
        memory-bound and the tiled products pay off; smaller nets keep their kernels.
        """
        w = plan.dense.widths
        return len(w) >= 3 and max(w[1:-1]) >= WIDE_MIN_WIDTH and plan.m >= WIDE_MIN_ROWS

    def _choose_kernel(self, plan: SamplerPlan) -> FixedSampler | GenericSampler | WideSampler:
        """The sampler ``kernel`` asks for; with ``"auto"``: fixed where it fits, wide by size, else generic."""
        w = plan.dense.widths
        m = plan.m
        R = max(1, -(-m // 32))
        fits = (
            len(w) == 4 and m <= 128 and w[0] <= 32 and w[1] <= 64 and w[2] <= 64 and R * w[1] <= 160
            and plan.mlp.n_params < 2**31
        )
        if self.kernel == "wide" or (self.kernel == "auto" and not fits and self.wide_by_size(plan)):
            maxw = max(w[1:])
            kseg = min(self.wide_kseg, _round_up(max(w[:-1]), _WIDE_KC))
            return WideSampler(kseg=int(kseg), maxw=int(maxw), stride=int(_round_up(2 * maxw * m + 2 * plan.n_words, 4)))
        if self.kernel == "generic" or not fits:
            if self.kernel == "fixed" and not fits:
                warnings.warn("kernel='fixed' does not fit this architecture; using the generic sampler",
                              RuntimeWarning, stacklevel=3)
            maxw = max(w[1:])
            W = plan.n_words
            stride = _round_up(2 * maxw * m + 2 * W, 4)
            return GenericSampler(wpb=min(self.threads_per_block, 256) // 32, smem_per_warp=4 * self.wchunk,
                                  maxw=int(maxw), stride=int(stride))
        total = src.fixed_layout_floats(w[0], w[1], w[2])
        return FixedSampler(wpb=min(self.threads_per_block, 128) // 32, smem_per_warp=4 * total,
                            shape=(int(w[0]), int(w[1]), int(w[2])), R=int(R),
                            act=SAMPLER_CODES[plan.mlp.activation])

    def _kernel(self, k: FixedSampler | GenericSampler | WideSampler, mode: int) -> Any:
        names = k.kernel_names()
        return self._functions(k.filename, names)[names[mode]]

    def _wide_launch_config(self, k: WideSampler, kern: Any, n: int) -> tuple[int, int, int]:
        """(blocks, dynamic shared bytes, kseg) of the wide sampler for n samples; opts in above 48 KiB.

        ``kseg`` is lowered (in steps of 16) where the card's shared memory per block cannot hold
        ``kseg * 64`` floats; the grid is capped so the scratch of the blocks takes at most half the
        memory budget.
        """
        dev = self._device()
        props = self._properties()
        attrs = dev.attributes(kern)
        static = int(attrs["static_smem"])
        top = max(props.get("smem_per_block", _SMEM_DEFAULT_LIMIT), props.get("smem_per_block_optin", 0))
        fit = ((top - static) // (4 * _WIDE_TN)) // _WIDE_KC * _WIDE_KC
        if fit < _WIDE_KC:
            raise ValueError(f"the wide sampler needs {4 * _WIDE_TN * _WIDE_KC + static} bytes of shared memory "
                             f"per block; the device allows {top}")
        kseg = min(k.kseg, fit)
        smem = 4 * _WIDE_TN * kseg
        if static + smem > props.get("smem_per_block", _SMEM_DEFAULT_LIMIT) and smem > attrs["max_dynamic_smem"]:
            dev.set_max_dynamic_smem(kern, smem)
        regs = max(int(attrs["num_regs"]), 16)
        blocks_sm = max(1, min(32, 65536 // (_round_up(regs, 8) * _WIDE_THREADS),
                               props["smem_per_sm"] // (smem + static + 1024)))
        cap = props["sm_count"] * blocks_sm * 2
        if self.max_blocks:
            cap = min(cap, self.max_blocks)
        cap = min(cap, max(1, (self.memory_budget() // 2) // (k.stride * 4)))
        return max(1, min(n, cap)), smem, kseg

    def _launch_config(self, k: FixedSampler | GenericSampler, kern: Any, n: int) -> tuple[int, int, int]:
        """(blocks, warps per block, dynamic shared bytes) for n samples; opts the kernel in above 48 KiB."""
        dev = self._device()
        props = self._properties()
        attrs = dev.attributes(kern)
        sp = src.shared_memory_plan(k.smem_per_warp, k.wpb, attrs["static_smem"],
                                    props.get("smem_per_block", _SMEM_DEFAULT_LIMIT),
                                    props.get("smem_per_block_optin", _SMEM_DEFAULT_LIMIT))
        if sp.opt_in and sp.dynamic > attrs["max_dynamic_smem"]:
            dev.set_max_dynamic_smem(kern, sp.dynamic)
        wpb, smem = sp.warps, sp.dynamic
        need = -(-n // wpb)
        regs = max(int(attrs["num_regs"]), 16)
        warps_sm = max(1, min(64, 65536 // (_round_up(regs, 8) * 32)))
        smem_block = smem + attrs["static_smem"] + 1024
        blocks_sm = max(1, min(32, warps_sm // wpb, props["smem_per_sm"] // smem_block))
        cap = props["sm_count"] * blocks_sm * 2
        if self.max_blocks:
            cap = min(cap, self.max_blocks)
        if isinstance(k, GenericSampler):  # scratch of every warp within half the memory budget
            cap = min(cap, max(1, (self.memory_budget() // 2) // (wpb * k.stride * 4)))
        return max(1, min(need, cap)), wpb, smem

    # --- launches ------------------------------------------------------------------------
    def _launch(self, d: DevicePlan, mode: int, seed: int, start: int, n: int, outs: list[Any]) -> None:
        dev = self._dev
        k = d.kernel
        kern = self._kernel(k, mode)
        args = [np.uint64(seed), np.uint64(start), np.uint64(n), d.desc, d.scales, d.Xt,
                np.int32(d.m), np.int32(d.nkey), d.labels] + list(outs)
        if isinstance(k, WideSampler):
            grid, smem, kseg = self._wide_launch_config(k, kern, n)
            scratch = dev.empty(grid * k.stride, np.float32)
            args += [scratch, np.int64(k.stride), np.int32(k.maxw), np.int32(kseg)]
            dev.launch(kern, (grid,), (_WIDE_THREADS,), args, smem)
            return
        grid, wpb, smem = self._launch_config(k, kern, n)
        if isinstance(k, GenericSampler):
            scratch = dev.empty(grid * wpb * k.stride, np.float32)
            args += [scratch, np.int64(k.stride), np.int32(k.maxw), np.int32(self.wchunk)]
        dev.launch(kern, (grid,), (32 * wpb,), args, smem)

    def _sub_batch(self, d: DevicePlan | None, per_sample: int, kind: str) -> int:
        budget = self.memory_budget()
        if d is not None and isinstance(d.kernel, (GenericSampler, WideSampler)):
            budget //= 2  # the other half is for the scratch of the warps / blocks (see _launch_config)
        sb = max(_MIN_SUB_BATCH, budget // max(per_sample, 1))
        sb = min(sb, self.max_sub_batch, self._shrunk.get(kind, _MAX_SUB_BATCH))
        return int(max(1, sb))

    def _run_chunked(self, kind: str, d: DevicePlan | None, per_sample: int, start: int, stop: int,
                     work: Callable[[int, int], Any], consume: Callable[[Any], None] | None = None) -> list[Any]:
        """Call ``work(a, b)`` over [start, stop) in sub-batches; on OOM halve and redo (never lose samples).

        ``d`` is the plan of a sampler (None for evaluation): the generic sampler's scratch takes
        half of the memory budget.

        A sub-batch's results are kept only once ``work`` returned for all of it, so a
        failed sub-batch is redone from its first sample with half the size.  They are
        returned in order, or handed to ``consume`` one by one as they arrive (then the
        returned list is empty).  The device pool is freed only after the exception is gone:
        its traceback holds the failed sub-batch's device arrays.
        """
        dev = self._device()
        oom = tuple(dev.oom_errors)
        sb = self._sub_batch(d, per_sample, kind)
        out = []
        a = start
        while a < stop:
            b = min(stop, a + sb)
            failed = None
            try:
                with dev.stream():
                    res = work(a, b)
                    dev.synchronize()
            except oom as exc:
                if b - a <= 1:
                    raise
                failed = f"{type(exc).__name__}: {exc}"
                del exc  # (the except clause drops it too; nothing may keep the traceback alive)
            if failed is not None:
                dev.free_cached()  # outside the except clause: the failed sub-batch's arrays are released
                sb = max(1, (b - a) // 2)
                self._shrunk[kind] = sb
                warnings.warn(
                    f"cupy backend: out of device memory with {b - a} samples per launch ({failed}); "
                    f"retrying with {sb}",
                    RuntimeWarning, stacklevel=3,
                )
                continue
            if consume is None:
                out.append(res)
            else:
                consume(res)
            del res
            a = b
        return out

    # --- the Backend API ---------------------------------------------------------------------
    def sample_keys(self, plan: SamplerPlan, start: int, stop: int, margins: bool = False) -> SampleBatch:
        """Keys (and acceptance, optional margins) of samples ``start..stop-1`` in index order."""
        start, stop = check_range(start, stop)
        W = plan.n_words
        if stop == start:
            return SampleBatch(np.zeros((0, W), np.uint64), np.zeros(0, bool),
                               np.zeros(0, np.float32) if margins else None)
        if not plan.is_mlp:
            return self._sample_keys_layers(plan, start, stop, margins)
        d = self._plan_data(plan)
        dev = self._dev

        def work(a, b):
            n = b - a
            keys = dev.empty((n, W), np.uint64)
            acc = dev.empty(n, np.uint8)
            marg = dev.empty(n, np.float32)
            dummy64 = dev.zeros(1, np.uint64)
            stats = dev.zeros(src.STATS_WORDS, np.uint64)  # only the status word is used in this mode
            self._launch(d, src.MODE_KEYS, plan.seed, a, n, [keys, acc, marg, dummy64, dummy64, stats])
            check_status(int(dev.download(stats)[src.STATUS_WORD]), "the keys kernel")
            return dev.download(keys), dev.download(acc), dev.download(marg)

        parts = self._run_chunked("keys", d, 8 * W + 5 + 16, start, stop, work)
        keys = np.concatenate([p[0] for p in parts]).reshape(-1, W)
        acc = np.concatenate([p[1] for p in parts]).astype(bool)
        marg = np.concatenate([p[2] for p in parts]) if margins else None
        return SampleBatch(keys, acc, marg)

    def count_range(self, plan: SamplerPlan, start: int, stop: int) -> CountBatch:
        """Draw, reject and count samples ``start..stop-1``; returns a :class:`CountBatch`."""
        start, stop = check_range(start, stop)
        W = plan.n_words
        nkey = int(plan.key_rows.size)
        empty = CountBatch(np.zeros((0, W), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64),
                           stop - start, 0)
        if stop == start:
            return empty
        if not plan.is_mlp:
            return self._count_range_layers(plan, start, stop)
        d = self._plan_data(plan)
        dev = self._dev
        ones = np.full((1, W), _U64_MAX, dtype=np.uint64)
        if nkey % 64:
            ones[0, -1] = np.uint64((1 << (nkey % 64)) - 1)
        zero = np.zeros((1, W), np.uint64)

        def work(a, b):
            n = b - a
            stats = dev.upload(np.array([0, 0, 0, 0, _U64_MAX, _U64_MAX, 0], np.uint64))  # src.STATS_WORDS
            bkeys = dev.empty((n, W), np.uint64)
            bidx = dev.empty(n, np.uint64)
            dummy8 = dev.zeros(1, np.uint8)
            dummyf = dev.zeros(1, np.float32)
            dummy64 = dev.zeros(1, np.uint64)
            self._launch(d, src.MODE_COUNT, plan.seed, a, n, [dummy64, dummy8, dummyf, bkeys, bidx, stats])
            st = dev.download(stats)
            check_status(int(st[src.STATUS_WORD]), "the count kernel")
            n_out = int(st[0])
            if n_out > n or int(st[1]) > n:
                raise RuntimeError(f"cupy backend: the count kernel reported {n_out} appended / {int(st[1])} "
                                   f"accepted samples out of {n}")
            parts = []
            if st[2]:  # the all-zero key: smaller than every appended key
                parts.append((zero.copy(), np.array([st[2]], np.int64), np.array([st[4]], np.uint64)))
            if n_out:
                parts.append(self._sort_rle(d, bkeys[:n_out], bidx[:n_out]))
            if st[3]:  # the all-one key: larger than every appended key
                parts.append((ones.copy(), np.array([st[3]], np.int64), np.array([st[5]], np.uint64)))
            return parts, int(st[1])

        merger = SortedRunMerger(threaded=True)
        n_acc = 0
        n_sub = 0

        def consume(res):
            nonlocal n_acc, n_sub
            parts, acc = res
            n_acc += acc
            n_sub += 1
            joined = concat_ordered(parts)  # O(n): the device sorted the runs, the constants bracket them
            if joined is None:
                for p in parts:
                    merger.add(p)
            else:
                merger.add(joined)

        per_sample = (8 * W + 8) + sort_peak_bytes(1, W) - sort_peak_bytes(0, W)
        t0 = time.perf_counter()
        try:
            self._run_chunked("count", d, per_sample, start, stop, work, consume)
        except BaseException:
            merger.close()
            raise
        t1 = time.perf_counter()
        merged = merger.result()  # waits for the merges still running behind the device work
        self.timings["device_s"] += t1 - t0
        self.timings["merge_s"] += time.perf_counter() - t1
        self.timings["sub_batches"] += n_sub
        self.timings["merge_records"] = self.timings.get("merge_records", 0) + merger.records_written
        if merged is None:
            empty.n_accepted = n_acc
            return empty
        k, c, f = merged
        return CountBatch(k, c, f, stop - start, n_acc)

    # --- layer sequences (CNNs): kernels/sample_layers.cu, one thread per sample -------------------
    def _layers_data(self, plan: SamplerPlan) -> Any:
        """The memoised :class:`~fastpoly.backends.cuda.sample_layers.PreparedSampleLayers` of ``plan``."""
        from fastpoly.backends.cuda.sample_layers import PreparedSampleLayers

        self.check_plan(plan)
        key = (plan.digest, plan.seed, plan.train_rows.tobytes(), plan.train_labels.tobytes(),
               repr(plan.mlp))
        d = self._layers_cache.get(key)
        if d is None:
            d = PreparedSampleLayers(plan, self._device(), self.max_blocks)
            if len(self._layers_cache) >= 4:
                self._layers_cache.pop(next(iter(self._layers_cache)))
            self._layers_cache[key] = d
        return d

    def _layers_chunk(self, prep: Any) -> int:
        """Samples per launch of the layer sampler (its outputs within the memory budget)."""
        return int(max(1, min(self.max_sub_batch, self.memory_budget() // (8 * prep.W + 8))))

    def _sample_keys_layers(self, plan: SamplerPlan, start: int, stop: int, margins: bool) -> SampleBatch:
        prep = self._layers_data(plan)
        step = self._layers_chunk(prep)
        parts = [prep.run(a, min(stop, a + step) - a, early_exit=False) for a in range(start, stop, step)]
        keys = np.concatenate([p[0] for p in parts]).reshape(-1, plan.n_words)
        acc = np.concatenate([p[1] for p in parts])
        return SampleBatch(keys, acc, np.concatenate([p[2] for p in parts]) if margins else None)

    def _count_range_layers(self, plan: SamplerPlan, start: int, stop: int) -> CountBatch:
        from fastpoly.backends.counting import count_keys

        prep = self._layers_data(plan)
        step = self._layers_chunk(prep)
        keys, idx = [], []
        for a in range(start, stop, step):
            k, acc, _ = prep.run(a, min(stop, a + step) - a, early_exit=True)
            keys.append(k[acc])
            idx.append(np.arange(a, a + acc.size, dtype=np.uint64)[acc])
        kk = np.concatenate(keys).reshape(-1, plan.n_words)
        k, c, f = count_keys(kk, np.concatenate(idx))
        return CountBatch(k, c, f, stop - start, int(kk.shape[0]))

    def _sort_rle(self, d, keys, idx):
        """Unique keys (big-integer order), their counts and first sample index, as host arrays.

        One stable radix argsort per key word, least significant first (the index is not
        sorted: the first index of a run is a segmented minimum), a check that the result is
        sorted (a sort that failed silently raises ``MemoryError`` and the sub-batch is
        redone smaller), run-length encoding, ``fastpoly_segment_min``.
        """
        dev = self._dev
        xp = dev.xp
        n, W = keys.shape
        dev.reserve(sort_peak_bytes(n, W))
        order = dev.argsort_stable(keys[:, 0])
        for w in range(1, W):
            order = order[dev.argsort_stable(keys[:, w][order])]
        order = order.astype(xp.int64, copy=False)
        sk = keys[order]
        new = xp.ones(n, dtype=xp.bool_)
        if n > 1:
            lo, hi = sk[:-1], sk[1:]
            eq = xp.ones(n - 1, dtype=xp.bool_)
            bad = xp.zeros(n - 1, dtype=xp.bool_)
            for w in range(W - 1, -1, -1):  # most significant word first
                bad |= eq & (hi[:, w] < lo[:, w])
                eq &= hi[:, w] == lo[:, w]
            if bool(xp.any(bad)):
                raise MemoryError("cupy backend: the device sort returned unsorted keys (a failed workspace "
                                  "allocation?)")
            new[1:] = ~eq
        starts = xp.flatnonzero(new)
        run = (xp.cumsum(new) - 1).astype(xp.int64)
        first = dev.full(int(starts.shape[0]), _U64_MAX, np.uint64)
        names = d.kernel.kernel_names() if d.kernel.filename == "sampler.cu" else list(src.AUX_KERNELS)
        kern = self._functions("sampler.cu", names)[src.SEGMENT_MIN_KERNEL]
        grid = max(1, min(-(-n // _SEGMENT_THREADS), 4 * self._properties()["sm_count"] * 8))
        dev.launch(kern, (grid,), (_SEGMENT_THREADS,), [np.int64(n), order, run, idx, first], 0)
        counts = xp.diff(xp.concatenate([starts, xp.asarray([n], dtype=starts.dtype)])).astype(xp.int64)
        return dev.download(sk[starts]), dev.download(counts), dev.download(first)

    # --- evaluation --------------------------------------------------------------------------
    def evaluate(self, net: Any, X: np.ndarray, dtype: npt.DTypeLike) -> np.ndarray:
        """Outputs ``(N, n_outputs)`` of ``net`` on every row of ``X`` in ``dtype``."""
        dtype = np.dtype(dtype).type
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype).name}")
        snet = structured_of(net)
        if snet is not None:
            layers = [self._csr_layer(L.indptr, L.indices, L.data, L.bias, L.activation, L.shift, POLY_ACT_CODES)
                      for L in snet.layers]
            fused = False
        elif isinstance(net, Network):
            if any(layer.activation not in _DENSE_ACT_CODES for layer in net.layers):
                warnings.warn("cupy backend: an activation has no CUDA kernel; evaluating with NumPy",
                              RuntimeWarning, stacklevel=2)
                return forward_reference(net, X, dtype)
            layers = []
            for layer in net.layers:
                fo, fi = layer.W.shape
                indptr = np.arange(fo + 1, dtype=np.int64) * fi
                indices = np.tile(np.arange(fi, dtype=np.int64), fo)
                layers.append(self._csr_layer(indptr, indices, np.asarray(layer.W, np.float64).ravel(),
                                              layer.b, layer.activation, None, _DENSE_ACT_CODES))
            fused = dtype == np.float32  # the FMA rule of dense float32 networks
        else:
            raise ValueError(f"cannot evaluate a {type(net).__name__} on the cupy backend")
        return self._eval_layers(layers, np.asarray(X), dtype, fused)

    @staticmethod
    def _csr_layer(indptr, indices, data, bias, act, shift, table):
        if act not in table:
            raise ValueError(f"activation {act!r} has no CUDA kernel; valid: {', '.join(table)}")
        return {"indptr": np.ascontiguousarray(indptr, np.int64), "indices": np.ascontiguousarray(indices, np.int64),
                "data": np.asarray(data, np.float64), "bias": np.asarray(bias, np.float64),
                "act": table[act], "shift": None if shift is None else np.asarray(shift, np.float64),
                "fan_out": int(len(bias))}

    def _eval_layers(self, layers, X, dtype, fused):
        dev = self._device()
        tname = "float" if dtype == np.float32 else "double"
        names = [src.poly_kernel_name(t, f) for t in ("float", "double") for f in (0, 1)]
        kern = self._functions("poly.cu", names)[src.poly_kernel_name(tname, fused)]
        N = X.shape[0]
        n_out = layers[-1]["fan_out"]
        if N == 0:
            return np.zeros((0, n_out), dtype)
        need = int(layers[0]["indices"].max()) + 1 if layers[0]["indices"].size else 0
        if X.ndim != 2 or X.shape[1] < need:
            raise ValueError(f"X must be a matrix with at least {need} columns, got shape {X.shape}")
        itemsize = np.dtype(dtype).itemsize
        maxw = max([X.shape[1]] + [L["fan_out"] for L in layers])
        dev_layers = [{k: (dev.upload(v.astype(dtype) if k in ("data", "bias", "shift") else v)
                           if isinstance(v, np.ndarray) else v) for k, v in L.items()} for L in layers]
        tpb = min(self.threads_per_block, 256)
        null = np.uint64(0)  # a null pointer means no centering shift

        def work(a, b):
            n = b - a
            h = dev.upload(np.ascontiguousarray(X[a:b].T, dtype=dtype))
            for L in dev_layers:
                out = dev.empty((L["fan_out"], n), dtype)
                gy = min(L["fan_out"], 65535)
                args = (np.int64(n), np.int32(L["fan_out"]), L["indptr"], L["indices"], L["data"], L["bias"],
                        L["shift"] if L["shift"] is not None else null, np.int32(L["act"]), h, out)
                dev.launch(kern, (-(-n // tpb), gy), (tpb,), args, 0)
                h = out
            return dev.download(dev.xp.ascontiguousarray(h.T))

        per_row = 3 * maxw * itemsize + 16
        parts = self._run_chunked("eval", None, per_row, 0, N, work)
        return np.concatenate(parts).reshape(N, n_out)


def default_device() -> CupyDevice:
    """The process's one :class:`CupyDevice` (memoised in :mod:`fastpoly.backends.cuda.device`).

    Raises
    ------
    fastpoly.backends.BackendUnavailable
        CuPy or a CUDA device is missing (the message says which).
    """
    return _device_memo.default_device(CupyDevice)
