"""Build the CUDA CPU emulation library: the real ``kernels/*.cu`` compiled for the host with g++.

The library (``libfastpoly_cuda_emu.so``) is built once into a cache folder keyed by a
sha256 of everything that goes into it (kernel sources, the shim, the runtime, the list of
template instantiations, compiler and flags), so a test session compiles at most once and
later sessions reuse it.  Folder: ``$FASTPOLY_CUDA_EMU_CACHE`` or
``<tempdir>/fastpoly-cuda-emu-<uid>``.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastpoly.backends.cuda import source as src

HERE = Path(__file__).resolve().parent

#: template instantiations of sampler.cu compiled into the emulator (the tests' plans need these)
FIXED_SHAPES = [
    # (N0, H1, H2, R, ACT) -- ACT: 0 relu, 1 tanh, 2 erf, 3 sign, 4 identity
    (7, 40, 40, 4, 0),   # the anchor, 128 Boolean rows
    (5, 8, 8, 1, 3),     # sign, 32 rows
    (3, 5, 5, 1, 4),     # identity, H1 % 4 != 0, 8 rows
    (6, 9, 9, 3, 1),     # tanh, 70 rows (R = 3, m not a multiple of 32)
    (4, 6, 6, 2, 2),     # erf, 40 rows (R = 2)
    (3, 4, 4, 2, 0),     # relu, 64 rows after a train split, R = 2, subnormal inputs
    (3, 4, 4, 1, 4),     # identity, subnormal intermediates
]


def instances():
    """Name expressions of every kernel the emulator library exposes."""
    names = []
    for n0, h1, h2, r, act in FIXED_SHAPES:
        for mode in (src.MODE_KEYS, src.MODE_COUNT):
            names.append(src.fixed_kernel_name(n0, h1, h2, r, act, mode))
    names += [src.generic_kernel_name(m) for m in (src.MODE_KEYS, src.MODE_COUNT)]
    names += [src.wide_kernel_name(m) for m in (src.MODE_KEYS, src.MODE_COUNT)]
    names += [src.poly_kernel_name(t, f) for t in ("float", "double") for f in (0, 1)]
    names += list(src.AUX_KERNELS)
    names += list(TRAIN_KERNELS)
    names += list(LAYER_TRAIN_KERNELS)
    names += list(WIDE_TRAIN_KERNELS)
    names += list(LAYER_SAMPLE_KERNELS)
    names += list(KLZ_KERNELS)
    return names


#: kernels of kernels/train.cu (the P_SGD trainer, fastpoly/backends/cuda/train.py)
TRAIN_KERNELS = ("fastpoly_train", "fastpoly_train_math")
#: kernels of kernels/train_cnn.cu (the generic layer trainer, CNNs)
LAYER_TRAIN_KERNELS = ("fastpoly_train_layers",)
#: kernels of kernels/train_wide.cu (the tiled wide-MLP trainer, one block per run)
WIDE_TRAIN_KERNELS = ("fastpoly_train_wide",)
#: kernels of kernels/sample_layers.cu (the layer-sequence sampler, CNNs)
LAYER_SAMPLE_KERNELS = ("fastpoly_sample_layers",)
#: kernels of kernels/klz.cu (K_LZ, T and critical inputs, fastpoly/backends/cuda/klz.py)
KLZ_KERNELS = ("fastpoly_klz_ints",)


def _file_of(name):
    base = name.split("<")[0]
    if base in TRAIN_KERNELS:
        return "train.cu"
    if base in LAYER_TRAIN_KERNELS:
        return "train_cnn.cu"
    if base in WIDE_TRAIN_KERNELS:
        return "train_wide.cu"
    if base in LAYER_SAMPLE_KERNELS:
        return "sample_layers.cu"
    if base in KLZ_KERNELS:
        return "klz.cu"
    if base == "fastpoly_sample_wide":
        return "sample_wide.cu"
    return "poly.cu" if base.startswith("fastpoly_csr") else "sampler.cu"


def _kernel_facts(text, base):
    """(static __shared__ bytes as a C++ expression, __launch_bounds__ or 1024) of kernel ``base``."""
    m = re.search(r"__global__\s+void\s+(?:__launch_bounds__\((\d+)(?:\s*,\s*\d+)*\)\s*)?" + re.escape(base) + r"\s*\(",
                  text)
    if not m:
        raise RuntimeError(f"kernel {base} not found in the sources")
    bound = int(m.group(1)) if m.group(1) else 1024
    # body: from the signature to the matching closing brace
    i = text.index("{", m.end())
    depth, j = 0, i
    while True:
        c = text[j]
        depth += (c == "{") - (c == "}")
        j += 1
        if depth == 0:
            break
    body = text[i:j]
    parts = []
    decl = r"(?<!extern )__shared__\s+(?:__align__\(\d+\)\s+)?([\w:]+)\s+(\w+)\s*(\[[^\]]+\])?\s*;"
    for d in re.finditer(decl, body):
        ty, _name, dim = d.groups()
        parts.append(f"sizeof({ty})" + (f" * ({dim[1:-1]})" if dim else ""))
    return (" + ".join(parts) if parts else "0"), bound


def _kdir(kernel_dir=None):
    return Path(kernel_dir) if kernel_dir else src.kernel_dir()


def _source_files(kernel_dir=None):
    d = _kdir(kernel_dir)
    return sorted(p for p in d.iterdir() if p.suffix in (".cu", ".cuh") and p.is_file())


def _sources(kernel_dir=None):
    return {p.name: p.read_text(encoding="utf-8") for p in _source_files(kernel_dir)}


def _units(names, kernel_dir=None):
    """Translation units: (file name, C++ text). Fixed instantiations are spread for parallel builds."""
    texts = _sources(kernel_dir)
    groups = {}
    for n in names:
        f = _file_of(n)
        key = (f, n) if n.startswith("fastpoly_sample_fixed") else (f, "other")
        groups.setdefault(key, []).append(n)
    units = []
    # pair the keys/count modes of one fixed shape; everything else of a file together
    merged = {}
    for (f, k), ns in groups.items():
        if k == "other":
            merged.setdefault((f, "other"), []).extend(ns)
        else:
            shape = k.rsplit(",", 1)[0]
            merged.setdefault((f, shape), []).extend(ns)
    for i, ((f, _k), ns) in enumerate(sorted(merged.items())):
        lines = ['#include "cuda_emu.h"', f'#include "{f}"', '#include "emu_registry.h"', ""]
        for j, n in enumerate(ns):
            base = n.split("<")[0]
            smem, bound = _kernel_facts(texts[f], base)
            lines.append(f"static emu::Registrar r{j}(\"{n}\", &emu::thunk<&{n}>, emu::signature(&{n}), "
                         f"{smem}, {bound});")
        units.append((f"k{i:02d}.cpp", "\n".join(lines) + "\n"))
    units.append(("runtime.cpp", '#include "emu_runtime.cpp"\n'))
    return units


def _cxx():
    return os.environ.get("CXX") or shutil.which("g++")


def _flags(kernel_dir=None):
    flags = ["-std=c++17", "-O2", "-fPIC", "-ffp-contract=off", "-fno-fast-math", "-fno-strict-aliasing",
             "-fno-math-errno", "-fno-extern-tls-init", "-w", f"-I{HERE}", f"-I{_kdir(kernel_dir)}"]
    try:  # a hardware FMA makes fmaf an instruction (same correctly rounded result, much faster)
        if " fma " in Path("/proc/cpuinfo").read_text() + " ":
            flags.append("-mfma")
    except OSError:
        pass
    return flags


def library_key(names=None, kernel_dir=None):
    """sha256 of everything that determines the built library."""
    names = instances() if names is None else names
    h = hashlib.sha256()
    for p in _source_files(kernel_dir):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    for p in sorted(HERE.glob("*.h")) + sorted(HERE.glob("*.cpp")) + [Path(__file__)]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update("\n".join(names).encode())
    cxx = _cxx() or ""
    h.update(cxx.encode())
    try:
        h.update(subprocess.run([cxx, "--version"], capture_output=True, timeout=60).stdout)
    except (OSError, subprocess.SubprocessError):
        pass
    h.update(" ".join(_flags(kernel_dir)).replace(str(_kdir(kernel_dir)), "").encode())
    return h.hexdigest()


def cache_root():
    env = os.environ.get("FASTPOLY_CUDA_EMU_CACHE")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"fastpoly-cuda-emu-{os.getuid()}"


def build_library(names=None, jobs=None, timeout=900, kernel_dir=None):
    """Path of the emulator library for ``names`` (default :func:`instances`), compiling it if needed.

    ``kernel_dir`` (default: the project's ``kernels/``) lets a test build modified sources.

    Raises
    ------
    FileNotFoundError
        No C++ compiler (``$CXX`` or ``g++``).
    RuntimeError
        The compile failed (the message holds the compiler's output).
    """
    names = instances() if names is None else list(names)
    cxx = _cxx()
    if cxx is None:
        raise FileNotFoundError("no C++ compiler (g++ or $CXX) for the CUDA emulation")
    key = library_key(names, kernel_dir)
    out_dir = cache_root() / key[:24]
    lib = out_dir / "libfastpoly_cuda_emu.so"
    if lib.is_file():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if lib.is_file():
            return lib
        work = Path(tempfile.mkdtemp(dir=out_dir, prefix="build-"))
        try:
            units = _units(names, kernel_dir)
            for fname, text in units:
                (work / fname).write_text(text)
            flags = _flags(kernel_dir)

            def compile_one(fname):
                obj = work / (fname + ".o")
                cmd = [cxx, *flags, "-c", str(work / fname), "-o", str(obj)]
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                if r.returncode:
                    raise RuntimeError(f"CUDA emulation: compiling {fname} failed:\n{' '.join(cmd)}\n"
                                       f"{r.stdout}\n{r.stderr[-6000:]}")
                return obj

            jobs = jobs or max(1, min(len(units), os.cpu_count() or 1))
            with ThreadPoolExecutor(jobs) as ex:
                objs = list(ex.map(compile_one, [u[0] for u in units]))
            tmp = work / lib.name
            cmd = [cxx, "-shared", "-o", str(tmp), *map(str, objs), "-lm"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if r.returncode:
                raise RuntimeError(f"CUDA emulation: linking failed:\n{r.stdout}\n{r.stderr}")
            os.replace(tmp, lib)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return lib
