"""Every kernels/*.cu compiles (nvcc, sm_80 and sm_90, ptxas -v) and through NVRTC with the backend's options.

No GPU needed.  nvcc missing: skipped, except under ``CI`` (which has nvcc), where it fails.
The NVRTC check needs ``libnvrtc`` (the CUDA toolkit's, ``$FASTPOLY_NVRTC_LIB``, or the
``nvidia-cuda-nvrtc`` wheel); it is skipped, with the reason, when none is found.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastpoly.backends.cuda import source as src

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ci" / "nvcc-check.sh"


def _need_nvcc():
    exe = os.environ.get("NVCC") or shutil.which("nvcc")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("nvcc is required under CI but was not found")
        pytest.skip("nvcc not found")
    return exe


def test_kernel_dir_found_and_complete():
    d = src.kernel_dir()
    names = {p.name for p in src.kernel_sources()}
    assert {"philox.cuh", "fp_math.cuh", "network.cuh", "sampler.cu", "poly.cu"} <= names, (d, names)
    assert len(src.source_digest()) == 64


@pytest.fixture(scope="module")
def nvcc_check(tmp_path_factory):
    nvcc = _need_nvcc()
    out = tmp_path_factory.mktemp("nvcc-check")
    r = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True,
                       env=dict(os.environ, NVCC=nvcc), timeout=1200)
    return r, out


@pytest.mark.slow
def test_nvcc_sm80_sm90(nvcc_check):
    r, out = nvcc_check
    sys.stdout.write(r.stdout)  # registers and spills per kernel (shown with pytest -s / -rA)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in src.kernel_sources():
        if f.suffix == ".cu":
            for arch in ("sm_80", "sm_90"):
                assert (out / f"{f.stem}.{arch}.cubin").stat().st_size > 0
    assert "regs=" in r.stdout


def test_anchor_kernel_does_not_spill(nvcc_check):
    """The 7-40-40-1 ReLU counting kernel keeps the first hidden layer in registers (no local memory)."""
    r, _ = nvcc_check
    assert r.returncode == 0, r.stdout + r.stderr
    mangled = "_Z21fastpoly_sample_fixedILi7ELi40ELi40ELi4ELi0ELi1E"
    lines = [ln for ln in r.stdout.splitlines() if mangled in ln]
    assert len(lines) == 2, r.stdout  # sm_80 and sm_90
    for ln in lines:
        assert "spill_st=0 " in ln and ln.rstrip().endswith("spill_ld=0"), ln


@pytest.mark.parametrize("act", [1, 2], ids=["tanh", "erf"])
def test_smooth_anchor_kernels_do_not_spill(nvcc_check, act):
    """Smooth activations are called, not inlined into the unrolled first layer (was: 255 regs, 1.4 KB spills)."""
    r, _ = nvcc_check
    assert r.returncode == 0, r.stdout + r.stderr
    mangled = f"_Z21fastpoly_sample_fixedILi7ELi40ELi40ELi4ELi{act}ELi1E"
    lines = [ln for ln in r.stdout.splitlines() if mangled in ln]
    assert len(lines) == 2, r.stdout  # sm_80 and sm_90
    for ln in lines:
        assert "spill_st=0 " in ln and ln.rstrip().endswith("spill_ld=0"), ln


def test_train_kernel_does_not_spill(nvcc_check):
    """The P_SGD trainer (kernels/train.cu, __launch_bounds__(256, 2)): at most 128 registers, no local memory."""
    r, _ = nvcc_check
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "_Z14fastpoly_train" in ln]
    assert len(lines) == 2, r.stdout  # sm_80 and sm_90
    for ln in lines:
        assert "spill_st=0 " in ln and ln.rstrip().endswith("spill_ld=0"), ln
        assert int(ln.split("regs=")[1].split()[0]) <= 128, ln


def test_wide_sampler_does_not_spill_on_sm90(nvcc_check):
    """kernels/sample_wide.cu (__launch_bounds__(256, 2)): its 4 x 8 register tile fits 128 registers on sm_90."""
    r, _ = nvcc_check
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "_Z20fastpoly_sample_wide" in ln]
    assert len(lines) == 4, r.stdout  # keys and count, sm_80 and sm_90 (in that order)
    for ln in lines[2:]:
        assert "spill_st=0 " in ln and ln.rstrip().endswith("spill_ld=0"), ln
        assert int(ln.split("regs=")[1].split()[0]) <= 128, ln


def test_wide_trainer_products_do_not_spill(nvcc_check):
    """The tiled wide trainer's products (``tw_gemm`` of kernels/train_wide.cu, three instantiations): no local
    memory, within the 128 registers of ``__launch_bounds__(256, 2)``."""
    import re

    r, out = nvcc_check
    assert r.returncode == 0, r.stdout + r.stderr
    for arch in ("sm_80", "sm_90"):
        log = (out / f"train_wide.{arch}.ptxas.log").read_text()
        props = re.findall(r"Function properties for (_Z\d+tw_gemm\w*)\s+(\d+) bytes stack frame, (\d+) bytes spill "
                           r"stores, (\d+) bytes spill loads", log)
        assert len(props) == 3, log
        for name, *sizes in props:
            assert sizes == ["0", "0", "0"], (arch, name, sizes)
        regs = [int(x) for x in re.findall(r"Used (\d+) registers", log)]
        assert regs and max(regs) <= 128, (arch, regs)


# --- NVRTC (what cupy.RawModule does at run time) ------------------------------------------------
def _find_nvrtc():
    """The NVRTC library the backend's own search finds (``src.find_nvrtc_library``), loaded."""
    path = src.find_nvrtc_library()
    return (None, None) if path is None else (ctypes.CDLL(path), path)


def _nvrtc_compile(lib, filename, names, arch):
    code = src.read_source(filename).encode()
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), code, filename.encode(), 0, None, None) == 0
    try:
        for n in names:
            assert lib.nvrtcAddNameExpression(prog, n.encode()) == 0
        opts = list(src.NVRTC_OPTIONS) + [f"-I{src.kernel_dir()}", f"-arch={arch}"]
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        lowered = {}
        if rc == 0:
            for n in names:
                low = ctypes.c_char_p()
                assert lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(low)) == 0
                lowered[n] = low.value.decode()
        return rc, log.value.decode(errors="replace"), lowered
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


SAMPLER_NAMES = [
    src.fixed_kernel_name(7, 40, 40, 4, 0, src.MODE_COUNT),
    src.fixed_kernel_name(7, 40, 40, 4, 0, src.MODE_KEYS),
    src.fixed_kernel_name(5, 8, 8, 1, 3, src.MODE_COUNT),   # sign
    src.fixed_kernel_name(3, 5, 5, 1, 4, src.MODE_KEYS),    # identity, H1 % 4 != 0
    src.fixed_kernel_name(6, 12, 12, 3, 1, src.MODE_COUNT),  # tanh, odd R
    src.generic_kernel_name(src.MODE_KEYS),
    src.generic_kernel_name(src.MODE_COUNT),
]
POLY_NAMES = [src.poly_kernel_name(t, f) for t in ("float", "double") for f in (0, 1)]
WIDE_NAMES = [src.wide_kernel_name(md) for md in (src.MODE_KEYS, src.MODE_COUNT)]


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("filename,names", [("sampler.cu", SAMPLER_NAMES), ("poly.cu", POLY_NAMES),
                                            ("klz.cu", ["fastpoly_klz_ints"]), ("sample_wide.cu", WIDE_NAMES),
                                            ("train_wide.cu", ["fastpoly_train_wide"])],
                         ids=["sampler", "poly", "klz", "sample_wide", "train_wide"])
def test_nvrtc_name_expressions(filename, names, arch):
    lib, path = _find_nvrtc()
    if lib is None:
        pytest.skip("libnvrtc not found (set FASTPOLY_NVRTC_LIB or install nvidia-cuda-nvrtc)")
    rc, log, lowered = _nvrtc_compile(lib, filename, names, arch)
    assert rc == 0, f"NVRTC ({path}) failed:\n{log}"
    assert set(lowered) == set(names)
    assert "warning" not in log.lower(), log
