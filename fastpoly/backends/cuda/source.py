"""Where the CUDA kernel sources live, and how they are compiled (no CuPy import here).

Installed, the sources are package data ``fastpoly/kernels``; in a source
checkout they are the top-level folder ``kernels/``.  :func:`kernel_dir` finds
either.  The same NVRTC options and template names are used by the CuPy
backend and by the offline compile checks (``ci/nvcc-check.sh``,
``tests/cuda/test_cuda_compile.py``).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
from pathlib import Path

from fastpoly.activations import CODES

__all__ = [
    "kernel_dir", "kernel_sources", "read_source", "source_digest", "NVRTC_OPTIONS", "NVCC_FLAGS",
    "fixed_kernel_name", "generic_kernel_name", "wide_kernel_name", "poly_kernel_name", "fixed_layout_floats",
    "MODE_KEYS", "MODE_COUNT", "MAX_LAYERS", "WIDE_MIN_WIDTH", "SEGMENT_MIN_KERNEL", "AUX_KERNELS", "nvrtc_options",
    "build_ptx", "build_module", "CompiledModule", "module_cache_key", "CtypesNVRTC", "find_nvrtc_library",
    "preload_nvrtc_builtins", "ptx_ftz_instructions", "SharedMemoryPlan", "shared_memory_plan",
    "STATS_WORDS", "STATUS_WORD", "STATUS_BITS", "KernelStatusError", "check_status",
]

#: NVRTC options: C++17, IEEE float32 (no fast math, no contraction of a*b+c, no flush to zero)
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false", "--ftz=false", "--prec-div=true", "--prec-sqrt=true")
#: the matching nvcc flags of the offline compile check
NVCC_FLAGS = ("-std=c++17", "-fmad=false", "-ftz=false", "-prec-div=true", "-prec-sqrt=true")

MODE_KEYS = 0
MODE_COUNT = 1
#: FP_MAX_LAYERS of kernels/network.cuh: the deepest MLP the sampler kernels describe
MAX_LAYERS = 16
#: ``auto`` takes the tiled kernels (the wide sampler, the tiled trainer for flatten + dense nets) from a
#: dense layer this wide on: below it one warp (or thread) per network is not memory-bound
WIDE_MIN_WIDTH = 128
#: the counting helper kernel of sampler.cu (first index of every run of equal keys)
SEGMENT_MIN_KERNEL = "fastpoly_segment_min"
#: non-template kernels of sampler.cu the backend uses besides the samplers
AUX_KERNELS = (SEGMENT_MIN_KERNEL,)
_SUFFIXES = (".cu", ".cuh")


@functools.cache
def kernel_dir():
    """The folder holding ``sampler.cu``, ``poly.cu`` and their headers.

    Order: ``$FASTPOLY_KERNEL_DIR``; the installed package data ``fastpoly/kernels``;
    the source checkout's ``<repo>/kernels``.

    Raises
    ------
    FileNotFoundError
        If no folder with the kernel sources is found.
    """
    cands = []
    env = os.environ.get("FASTPOLY_KERNEL_DIR")
    if env:
        cands.append(Path(env))
    try:
        res = importlib.resources.files("fastpoly") / "kernels"
        cands.append(Path(str(res)))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - namespace oddities
        pass
    cands.append(Path(__file__).resolve().parents[3] / "kernels")  # <repo>/fastpoly/backends/cuda/
    for c in cands:
        if (c / "sampler.cu").is_file() and (c / "network.cuh").is_file():
            return c
    raise FileNotFoundError(
        "fastpoly's CUDA kernel sources were not found (looked in: "
        + ", ".join(str(c) for c in cands) + ")"
    )


def kernel_sources():
    """Every ``.cu`` and ``.cuh`` file of :func:`kernel_dir` (sorted paths)."""
    d = kernel_dir()
    return sorted(p for p in d.iterdir() if p.suffix in _SUFFIXES and p.is_file())


def read_source(name):
    """Text of one kernel source file, e.g. ``"sampler.cu"``."""
    return (kernel_dir() / name).read_text(encoding="utf-8")


def source_digest():
    """sha256 over every kernel source (names and bytes): part of the compiled-module cache key."""
    h = hashlib.sha256()
    for p in kernel_sources():
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def fixed_kernel_name(n0, h1, h2, rows_per_lane, act_code, mode):
    """NVRTC name expression of the specialised sampler ``N0-H1-H2-1``."""
    return f"fastpoly_sample_fixed<{n0}, {h1}, {h2}, {rows_per_lane}, {act_code}, {mode}>"


def generic_kernel_name(mode):
    """Name expression of the generic sampler kernel for ``mode`` (keys or counts)."""
    return f"fastpoly_sample_generic<{mode}>"


def wide_kernel_name(mode):
    """Name expression of the wide (tiled, one block per sample) sampler of ``kernels/sample_wide.cu``."""
    return f"fastpoly_sample_wide<{mode}>"


def poly_kernel_name(dtype_name, fused):
    """``dtype_name`` is ``"float"`` or ``"double"``."""
    return f"fastpoly_csr_layer<{dtype_name}, {int(bool(fused))}>"


def _align4(v):
    return (v + 3) & ~3


def fixed_layout_floats(n0, h1, h2):
    """Shared-memory floats per warp of ``fastpoly_sample_fixed`` (mirrors ``fp_fixed_layout``)."""
    b1 = _align4(n0 * h1)
    w2 = _align4(b1 + h1)
    b2 = _align4(w2 + h1 * h2)
    w3 = _align4(b2 + h2)
    b3 = _align4(w3 + h2)
    return _align4(b3 + 1)


# --- plan -> kernel arguments (shared by the backend and the host-driver tests) -------------
def net_desc(mlp):
    """The ``desc`` (int64) and ``scales`` (float32) arrays of ``kernels/network.cuh`` for an MLP (activation: its table code)."""
    import numpy as np

    widths = list(mlp.widths)
    L = len(widths) - 1
    offs = mlp.param_offsets()
    desc = [L, CODES[mlp.activation], int(mlp.weights == "uniform"), int(mlp.bias), mlp.n_params]
    desc += widths
    desc += [wo for wo, _ in offs]
    desc += [(-1 if bo is None else bo) for _, bo in offs]
    sc = mlp.scales()
    scales = [s[0] for s in sc] + [s[1] for s in sc]
    return np.asarray(desc, dtype=np.int64), np.asarray(scales, dtype=np.float32)


def row_order(plan):
    """Kernel row order: the key rows (ascending) then the train rows; and the train labels in that order.

    Returns
    -------
    order : int64 array (m,)
        ``Xp = X[order]`` is what the kernels see.
    labels : uint8 array (m - nkey,)
    """
    import numpy as np

    order = np.concatenate([plan.key_rows, plan.train_rows]).astype(np.int64)
    labels = np.ascontiguousarray(plan.train_labels, dtype=np.uint8)
    return order, labels


# --- compiling: NVRTC options, PTX, and the flush-to-zero guard -----------------------------
def nvrtc_options(arch=None, virtual=False):
    """The complete NVRTC option list of the backend's compile path.

    ``NVRTC_OPTIONS`` (IEEE float32: ``--ftz=false`` and nothing after it that turns
    flushing back on -- :class:`cupy.RawModule` appends ``-ftz=true``, which is why the
    backend compiles through :func:`build_module` instead), the kernel folder as include path,
    and, when ``arch`` (e.g. ``"90"``) is given, ``-arch=sm_XY``: NVRTC then emits the
    device's machine code (CUBIN) besides the PTX, and the driver loads the CUBIN without
    JIT-compiling PTX -- PTX of a newer NVRTC than the driver (``.version 9.5`` from
    NVRTC 13.5 on a CUDA 13.0 driver) is refused with ``CUDA_ERROR_UNSUPPORTED_PTX_VERSION``,
    a CUBIN for the present architecture is not.  ``virtual=True`` asks for
    ``-arch=compute_XY`` (PTX only).
    """
    opts = list(NVRTC_OPTIONS) + [f"-I{kernel_dir()}"]
    if arch:
        a = str(arch).replace("sm_", "").replace("compute_", "")
        opts.append(f"-arch={'compute' if virtual else 'sm'}_{a}")
    return tuple(opts)


class CompiledModule(tuple):
    """``(ptx, cubin, lowered)`` of one NVRTC compilation (see :func:`build_module`).

    ``cubin`` is ``None`` when the compilation targeted a virtual architecture (or none).
    """

    __slots__ = ()

    def __new__(cls, ptx, cubin, lowered):
        return super().__new__(cls, (ptx, cubin, dict(lowered)))

    ptx = property(lambda self: self[0])
    cubin = property(lambda self: self[1])
    lowered = property(lambda self: self[2])


def build_module(filename, names, nvrtc, arch=None, virtual=False):
    """Compile one kernel file with :func:`nvrtc_options`; instantiate ``names``.

    Parameters
    ----------
    filename : str
        ``"sampler.cu"``, ``"sample_wide.cu"``, ``"poly.cu"``, ``"train.cu"`` or ``"klz.cu"``.
    names : sequence of str
        NVRTC name expressions (template instantiations, plain kernel names).
    nvrtc : object
        The NVRTC API calls ``create(source, name) -> prog``, ``add_name_expression(prog, name)``,
        ``compile(prog, options) -> (ok, log)``, ``ptx(prog) -> str``, ``cubin(prog) -> bytes``
        (used for a real architecture), ``lowered_name(prog, name) -> str``, ``destroy(prog)``
        (:class:`CtypesNVRTC`, or the backend's adapter of CuPy's NVRTC bindings).
    arch : str or None
        Compute capability without the dot (``"90"``); with it (and ``virtual`` false) the
        result holds the CUBIN of ``sm_<arch>``.
    virtual : bool
        Compile for ``compute_<arch>`` (PTX only).

    Returns
    -------
    CompiledModule
        ``(ptx, cubin, lowered)``: the PTX text (always; it is what the flush-to-zero guard
        reads), the CUBIN bytes or ``None``, and name expression -> mangled kernel name.

    Raises
    ------
    RuntimeError
        NVRTC reported an error (the message holds its log), or the PTX flushes
        subnormals to zero (see :func:`ptx_ftz_instructions`).
    """
    code = f"// fastpoly kernel sources {source_digest()}\n" + read_source(filename)
    prog = nvrtc.create(code, filename)
    try:
        for n in names:
            nvrtc.add_name_expression(prog, n)
        ok, log = nvrtc.compile(prog, nvrtc_options(arch, virtual=virtual))
        if not ok:
            raise RuntimeError(f"NVRTC failed to compile {filename}:\n{log}")
        ptx = nvrtc.ptx(prog)
        cubin = bytes(nvrtc.cubin(prog)) if arch and not virtual else None
        lowered = {n: nvrtc.lowered_name(prog, n) for n in names}
    finally:
        nvrtc.destroy(prog)
    ftz = ptx_ftz_instructions(ptx)
    if ftz:
        raise RuntimeError(f"the PTX of {filename} flushes subnormals ({len(ftz)} .ftz instructions, e.g. "
                           f"{ftz[0]!r}); results would differ from the reference")
    return CompiledModule(ptx, cubin, lowered)


def build_ptx(filename, names, nvrtc, arch=None):
    """``(ptx, lowered)`` of :func:`build_module` for the virtual architecture ``compute_<arch>`` (no CUBIN).

    Raises
    ------
    RuntimeError
        As :func:`build_module`.
    """
    mod = build_module(filename, names, nvrtc, arch=arch, virtual=True)
    return mod.ptx, mod.lowered


def module_cache_key(filename, names, arch, nvrtc_version, kind="cubin"):
    """Key (32 hex digits) of one compiled module in the on-disk cache.

    Everything that changes the compiled code is in it: the kernel sources (:func:`source_digest`),
    the file, the device architecture, the NVRTC options, the NVRTC version (a module from a
    newer NVRTC must not survive a downgrade: its PTX/CUBIN may not load on the older driver),
    what is cached (``kind``) and the instantiated names.
    """
    ver = ".".join(str(v) for v in nvrtc_version) if isinstance(nvrtc_version, (tuple, list)) else str(nvrtc_version)
    parts = [source_digest(), filename, str(arch), f"nvrtc {ver}", kind, *nvrtc_options(arch), *names]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def ptx_ftz_instructions(ptx):
    """Instructions of a PTX text that flush subnormals to zero because of the ``-ftz`` option.

    Every ``.ftz`` instruction except the ``.approx`` ones: libdevice's float64 ``tanh``/``erf``
    and ``expf`` seed their iterations with ``ex2.approx.ftz.f32`` / ``rcp.approx.ftz.f64``
    whatever the option (on arguments they have range-reduced; NVRTC 13 with
    ``--ftz=false`` emits only those).  With ``-ftz=true`` the correctly rounded ``fma.rn``,
    ``mul.rn``, ``add.rn``, ``div.rn``, ``sqrt.rn``, ``setp``, ``cvt`` ... get ``.ftz`` too.
    """
    out = []
    for line in ptx.splitlines():
        t = line.strip().split("//")[0].strip()
        if not t:
            continue
        op = t.split()[0]
        if ".ftz" in op and ".approx" not in op:
            out.append(t)
    return out


def find_nvrtc_library():
    """Path of a loadable ``libnvrtc`` or None.

    Order: ``$FASTPOLY_NVRTC_LIB``; the CUDA toolkit of ``nvcc`` (``lib64``, ``targets/*/lib``,
    ``/usr/local/cuda*``); the ``nvidia-cuda-nvrtc`` wheel on ``sys.path``.
    """
    import ctypes
    import glob
    import shutil
    import sys

    cands = []
    if os.environ.get("FASTPOLY_NVRTC_LIB"):
        cands.append(os.environ["FASTPOLY_NVRTC_LIB"])
    bases = {Path("/usr/local/cuda")} | {Path(p) for p in glob.glob("/usr/local/cuda-*")}
    nvcc = shutil.which("nvcc")
    if nvcc:
        bases.add(Path(os.path.realpath(nvcc)).parent.parent)
    for base in sorted(bases):
        cands += sorted(glob.glob(str(base / "lib64" / "libnvrtc.so*")))
        cands += sorted(glob.glob(str(base / "targets" / "*" / "lib" / "libnvrtc.so*")))
    for sp in sys.path:
        cands += sorted(glob.glob(os.path.join(sp, "nvidia", "*", "lib", "libnvrtc.so*")))
        cands += sorted(glob.glob(os.path.join(sp, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
    for c in cands:
        if "builtins" in c or ".alt." in c:
            continue
        try:
            ctypes.CDLL(c)
        except OSError:
            continue
        return c
    return None


def preload_nvrtc_builtins(libnvrtc_path):
    """Load every ``libnvrtc-builtins.so*`` beside ``libnvrtc_path`` with ``RTLD_GLOBAL``; the paths loaded.

    ``libnvrtc`` opens its builtins library by name (``libnvrtc-builtins.so.13.0``) at
    compile time.  The ``nvidia-cuda-nvrtc`` 13.0 wheel carries no ``RPATH``, so unless the
    folder is on the loader's path the compilation fails ("failed to open
    libnvrtc-builtins.so.13.0").  A library already loaded under that name satisfies the
    lookup, hence the preload from libnvrtc's own folder.  Failures are ignored (the
    compilation reports them).
    """
    import ctypes
    import glob

    done = []
    folder = os.path.dirname(os.path.realpath(libnvrtc_path)) if libnvrtc_path else ""
    dirs = {folder, os.path.dirname(os.path.abspath(libnvrtc_path))} if libnvrtc_path else set()
    for d in sorted(x for x in dirs if x):
        for c in sorted(glob.glob(os.path.join(d, "libnvrtc-builtins.so*"))):
            if ".alt." in c or c in done:
                continue
            try:
                ctypes.CDLL(c, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            done.append(c)
    return done


class CtypesNVRTC:
    """The NVRTC calls :func:`build_module` needs, through ctypes on a ``libnvrtc`` shared library.

    The builtins library beside it is preloaded first (:func:`preload_nvrtc_builtins`).
    """

    def __init__(self, path=None):
        import ctypes

        self._ct = ctypes
        path = path or find_nvrtc_library()
        if path is None:
            raise FileNotFoundError("libnvrtc not found (set FASTPOLY_NVRTC_LIB or install nvidia-cuda-nvrtc)")
        self.path = path
        self.builtins = preload_nvrtc_builtins(path)
        self.lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)

    def version(self):
        """``(major, minor)`` of the loaded NVRTC."""
        ct = self._ct
        a, b = ct.c_int(), ct.c_int()
        self._check(self.lib.nvrtcVersion(ct.byref(a), ct.byref(b)), "nvrtcVersion")
        return a.value, b.value

    def _check(self, rc, what):
        if rc != 0:
            raise RuntimeError(f"NVRTC {what} failed with code {rc}")

    def create(self, source, name):
        prog = self._ct.c_void_p()
        self._check(self.lib.nvrtcCreateProgram(self._ct.byref(prog), source.encode(), name.encode(), 0, None,
                                                None), "nvrtcCreateProgram")
        return prog

    def add_name_expression(self, prog, name):
        self._check(self.lib.nvrtcAddNameExpression(prog, name.encode()), "nvrtcAddNameExpression")

    def compile(self, prog, options):
        ct = self._ct
        arr = (ct.c_char_p * len(options))(*[o.encode() for o in options])
        rc = self.lib.nvrtcCompileProgram(prog, len(options), arr)
        size = ct.c_size_t()
        self.lib.nvrtcGetProgramLogSize(prog, ct.byref(size))
        log = ct.create_string_buffer(size.value)
        self.lib.nvrtcGetProgramLog(prog, log)
        return rc == 0, log.value.decode(errors="replace")

    def ptx(self, prog):
        ct = self._ct
        size = ct.c_size_t()
        self._check(self.lib.nvrtcGetPTXSize(prog, ct.byref(size)), "nvrtcGetPTXSize")
        buf = ct.create_string_buffer(size.value)
        self._check(self.lib.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
        return buf.value.decode()

    def cubin(self, prog):
        ct = self._ct
        size = ct.c_size_t()
        self._check(self.lib.nvrtcGetCUBINSize(prog, ct.byref(size)), "nvrtcGetCUBINSize")
        buf = ct.create_string_buffer(size.value)
        self._check(self.lib.nvrtcGetCUBIN(prog, buf), "nvrtcGetCUBIN")
        return buf.raw[: size.value]

    def lowered_name(self, prog, name):
        low = self._ct.c_char_p()
        self._check(self.lib.nvrtcGetLoweredName(prog, name.encode(), self._ct.byref(low)), "nvrtcGetLoweredName")
        return low.value.decode()

    def destroy(self, prog):
        self.lib.nvrtcDestroyProgram(self._ct.byref(prog))


# --- shared memory of a launch ---------------------------------------------------------------
class SharedMemoryPlan(tuple):
    """``(warps_per_block, dynamic_bytes, opt_in)`` of a sampler launch (see :func:`shared_memory_plan`)."""

    __slots__ = ()

    def __new__(cls, warps, dynamic, opt_in):
        return super().__new__(cls, (int(warps), int(dynamic), bool(opt_in)))

    warps = property(lambda self: self[0])
    dynamic = property(lambda self: self[1])
    opt_in = property(lambda self: self[2])


def shared_memory_plan(per_warp, warps, static, limit, limit_optin):
    """Warps per block and dynamic shared memory that a launch can actually get.

    Parameters
    ----------
    per_warp : int
        Dynamic shared-memory bytes one warp needs.
    warps : int
        Warps per block wanted.
    static : int
        Static ``__shared__`` bytes of the kernel (its ``shared_size_bytes`` attribute:
        ``s_tally``, ``s_net``).
    limit : int
        Bytes per block without opting in (48 KiB on every current GPU).
    limit_optin : int
        Bytes per block with ``cudaFuncAttributeMaxDynamicSharedMemorySize`` raised
        (``sharedMemPerBlockOptin``: 227 KiB on sm_90).

    Returns
    -------
    SharedMemoryPlan
        ``warps`` is reduced when even the opt-in limit is too small for all of them;
        ``opt_in`` says that the kernel's dynamic-size attribute must be raised to ``dynamic``.

    Raises
    ------
    ValueError
        Not even one warp fits.
    """
    per_warp, warps, static = int(per_warp), int(warps), int(static)
    if per_warp < 0 or warps < 1 or static < 0:
        raise ValueError("per_warp, static must be >= 0 and warps >= 1")
    top = max(int(limit), int(limit_optin))
    if static + per_warp > top:
        raise ValueError(f"one warp needs {per_warp} bytes of shared memory plus {static} static; the device "
                         f"allows {top} per block")
    if per_warp:
        warps = min(warps, (top - static) // per_warp)
    dyn = warps * per_warp
    return SharedMemoryPlan(warps, dyn, static + dyn > limit)


# --- kernel status words -----------------------------------------------------------------------
#: uint64 words of the sampler's ``stats`` array (both modes); the last one is the status word
STATS_WORDS = 7
#: index of the status word in the sampler's ``stats`` (``FP_STATUS_WORD`` of kernels/sampler.cu)
STATUS_WORD = 6
#: bits of the status words of kernels/sampler.cu (``FP_ERR_*``) and kernels/train.cu (``FP_TR_ERR_*``)
STATUS_BITS = {
    1: "the network descriptor's layer count is not one the kernel handles",
    2: "an activation the trainer cannot differentiate",
    4: "the network has more than one output",
    8: "the host's row capacity or per-warp shared memory does not fit the kernel's layout",
}


class KernelStatusError(RuntimeError):
    """A kernel guard failed and the kernel returned without computing (its status word is nonzero).

    The kernels never ``__trap()``: on a GPU a trap is a sticky error of the whole CUDA
    context, after which every later call of the process fails.  They set bits of a status
    word instead, which the host checks after the launch (:func:`check_status`).
    """

    def __init__(self, code, what):
        self.code = int(code)
        reasons = [why for bit, why in STATUS_BITS.items() if self.code & bit] or [f"unknown code {self.code}"]
        super().__init__(f"{what}: kernel guard failed (status {self.code}: {'; '.join(reasons)}); "
                         "this is a bug of the host code that launched it")


def check_status(code, what):
    """Raise :class:`KernelStatusError` if a kernel's status word ``code`` is nonzero."""
    if int(code):
        raise KernelStatusError(code, what)
