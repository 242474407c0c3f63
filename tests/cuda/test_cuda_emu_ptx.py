"""Flush-to-zero guard: the PTX of the backend's own compile path keeps subnormals (no ``.ftz``).

``cupy.RawModule`` appends ``-ftz=true`` after the caller's options and NVRTC honours the
last one, so every float32 instruction would flush subnormals.  The cupy backend therefore
compiles with :func:`fastpoly.backends.cuda.source.build_module` (NVRTC, the options of
:func:`fastpoly.backends.cuda.source.nvrtc_options`, nothing appended) and loads the CUBIN of
the device's architecture itself (the PTX beside it is what this guard reads).
These tests run that very function through ``libnvrtc`` (ctypes), without a GPU or CuPy;
they are skipped, with the reason, where no ``libnvrtc`` is found (CI installs the
``nvidia-cuda-nvrtc`` wheel).  The emulator cannot see FTZ (the host keeps subnormals);
this is the test that does.
"""
from __future__ import annotations

import os
import re

import pytest

from fastpoly.backends.cuda import source as src
from fastpoly.backends.cuda.backend import CupyBackend, CupyDevice

pytestmark = pytest.mark.cuda_emu

SAMPLER_NAMES = [
    src.fixed_kernel_name(7, 40, 40, 4, 0, src.MODE_COUNT),
    src.fixed_kernel_name(7, 40, 40, 4, 1, src.MODE_KEYS),   # tanh
    src.fixed_kernel_name(4, 6, 6, 2, 2, src.MODE_COUNT),    # erf
    src.generic_kernel_name(src.MODE_KEYS),
    src.generic_kernel_name(src.MODE_COUNT),
    *src.AUX_KERNELS,
]
POLY_NAMES = [src.poly_kernel_name(t, f) for t in ("float", "double") for f in (0, 1)]


@pytest.fixture(scope="module")
def nvrtc():
    """libnvrtc through ctypes, else CuPy's NVRTC bindings (what the backend uses on a GPU machine)."""
    path = src.find_nvrtc_library()
    if path is not None:
        return src.CtypesNVRTC(path)
    try:
        from fastpoly.backends.cuda.backend import _CupyNVRTC

        return _CupyNVRTC()
    except ImportError:
        pass
    if os.environ.get("FASTPOLY_REQUIRE_GPU") == "1":
        pytest.fail("FASTPOLY_REQUIRE_GPU=1 but neither libnvrtc nor CuPy's NVRTC bindings were found")
    pytest.skip("libnvrtc not found (set FASTPOLY_NVRTC_LIB or pip install nvidia-cuda-nvrtc)")


@pytest.fixture(scope="module")
def ptx(nvrtc):
    return {f: src.build_ptx(f, names, nvrtc, arch="90")
            for f, names in (("sampler.cu", SAMPLER_NAMES), ("poly.cu", POLY_NAMES))}


@pytest.mark.parametrize("filename", ["sampler.cu", "poly.cu"])
def test_backend_ptx_has_no_ftz(ptx, filename):
    text, lowered = ptx[filename]
    assert src.ptx_ftz_instructions(text) == []
    # the float32 arithmetic is really there (and correctly rounded, not approximate)
    assert len(re.findall(r"\bfma\.rn\.f32\b", text)) > 100
    # only libdevice's internal approximation seeds carry .ftz (independent of the option)
    assert {ln.split()[0] for ln in text.splitlines() if ".ftz" in ln.split("//")[0]} <= {
        "ex2.approx.ftz.f32", "rcp.approx.ftz.f64", "rcp.approx.ftz.f32"}
    assert set(lowered) == set(SAMPLER_NAMES if filename == "sampler.cu" else POLY_NAMES)
    for mangled in lowered.values():
        assert f".entry {mangled}(" in text


def test_cupys_appended_flag_would_flush(nvrtc):
    """The guard can fail: with RawModule's ``-ftz=true`` appended the same source flushes, and build_ptx refuses."""
    class Appending:
        def __getattr__(self, k):
            return getattr(nvrtc, k)

        def compile(self, prog, options):
            return nvrtc.compile(prog, tuple(options) + ("-ftz=true",))

    with pytest.raises(RuntimeError, match="flushes subnormals"):
        src.build_ptx("poly.cu", POLY_NAMES[:1], Appending(), arch="90")


def test_nvrtc_options_keep_ieee():
    opts = src.nvrtc_options("90")
    assert "--ftz=false" in opts and "--fmad=false" in opts and "--prec-div=true" in opts
    assert not any(o.startswith("-ftz") or o.startswith("--ftz=true") for o in opts)
    assert opts[-1] == "-arch=sm_90"  # machine code of the device: no PTX JIT by the driver
    assert src.nvrtc_options("90", virtual=True)[-1] == "-arch=compute_90"


def test_backend_compiles_through_build_module(monkeypatch, tmp_path):
    """CupyDevice.compile hands NVRTC's CUBIN to the module loader (no RawModule, so no -ftz=true)."""
    calls = {}

    def fake_build(filename, names, nvrtc, arch=None, virtual=False):
        calls["build"] = (filename, tuple(names), arch, virtual)
        return src.CompiledModule("// ptx", b"\x7fELF cubin", {n: f"_mangled_{i}" for i, n in enumerate(names)})

    class Module:
        def load(self, data):
            calls["load"] = data

        def get_function(self, name):
            return name

    class FakeCupy:
        class cuda:  # noqa: N801
            function = type("function", (), {"Module": Module})

    class Device:
        id = 0

    class FakeNVRTC:
        v = (13, 0)

        def version(self):
            return self.v

    nv = FakeNVRTC()
    FakeCupy.cuda.Device = Device
    monkeypatch.setattr(src, "build_module", fake_build)
    monkeypatch.setenv("FASTPOLY_CUDA_CACHE", str(tmp_path))
    monkeypatch.setattr(CupyDevice, "_loaded", {})
    dev = CupyDevice.__new__(CupyDevice)
    dev.cp = FakeCupy
    dev.arch = "90"
    dev.ptx = {}
    dev._nvrtc = lambda: nv
    out = dev.compile("poly.cu", POLY_NAMES)
    assert calls["build"] == ("poly.cu", tuple(POLY_NAMES), "90", False)
    assert calls["load"] == b"\x7fELF cubin"
    assert out == {n: f"_mangled_{i}" for i, n in enumerate(POLY_NAMES)}
    assert dev.ptx[("poly.cu", tuple(POLY_NAMES))] == "// ptx"  # kept for the .ftz check
    # a second device reads the on-disk cache (re-checked for .ftz) instead of calling NVRTC
    calls.clear()
    monkeypatch.setattr(CupyDevice, "_loaded", {})
    dev.ptx = {}
    assert dev.compile("poly.cu", POLY_NAMES) == out and "build" not in calls
    assert calls["load"] == b"\x7fELF cubin"
    # another NVRTC version (a downgrade): the cached module is not reused
    calls.clear()
    monkeypatch.setattr(CupyDevice, "_loaded", {})
    nv.v = (12, 9)
    dev.compile("poly.cu", POLY_NAMES)
    assert calls["build"][0] == "poly.cu"
    assert "RawModule" not in CupyBackend._functions.__code__.co_names


def test_cache_key_changes_with_nvrtc_version_and_arch():
    k = src.module_cache_key("sampler.cu", SAMPLER_NAMES, "90", (13, 5))
    assert k == src.module_cache_key("sampler.cu", list(SAMPLER_NAMES), "90", (13, 5))
    assert k != src.module_cache_key("sampler.cu", SAMPLER_NAMES, "90", (13, 0))
    assert k != src.module_cache_key("sampler.cu", SAMPLER_NAMES, "80", (13, 5))
    assert k != src.module_cache_key("sampler.cu", SAMPLER_NAMES[:-1], "90", (13, 5))
    assert k != src.module_cache_key("poly.cu", SAMPLER_NAMES, "90", (13, 5))


@pytest.mark.parametrize("arch", ["80", "90"], ids=lambda a: f"sm_{a}")
def test_compile_path_yields_a_cubin(nvrtc, arch):
    """``-arch=sm_XX``: an ELF CUBIN of that architecture (what the driver loads without PTX JIT) and the PTX."""
    mod = src.build_module("poly.cu", POLY_NAMES[:2], nvrtc, arch=arch)
    assert isinstance(mod.cubin, bytes) and mod.cubin[:4] == b"\x7fELF"
    # ELF header e_flags of a CUBIN hold the SM version (low byte for sm_XX, also in the PTX .target)
    assert f".target sm_{arch}" in mod.ptx
    assert src.ptx_ftz_instructions(mod.ptx) == []
    assert set(mod.lowered) == set(POLY_NAMES[:2])
    virt = src.build_module("poly.cu", POLY_NAMES[:1], nvrtc, arch=arch, virtual=True)
    assert virt.cubin is None and f".target sm_{arch}" in virt.ptx


def test_ctypes_wrapper_preloads_the_builtins(nvrtc):
    """The builtins library beside libnvrtc is loaded RTLD_GLOBAL (the 13.0 wheel has no RPATH to find it)."""
    if not isinstance(nvrtc, src.CtypesNVRTC):
        pytest.skip("CuPy's NVRTC bindings load their own library")
    folder = os.path.dirname(os.path.realpath(nvrtc.path))
    beside = [f for f in os.listdir(folder) if f.startswith("libnvrtc-builtins.so") and ".alt." not in f]
    if not beside:
        pytest.skip(f"no libnvrtc-builtins beside {nvrtc.path}")
    assert {os.path.basename(p) for p in nvrtc.builtins} >= set(beside)
    assert isinstance(nvrtc.version(), tuple) and nvrtc.version()[0] >= 11
    assert src.preload_nvrtc_builtins(None) == []


def test_max_layers_matches_the_kernels():
    text = (src.kernel_dir() / "network.cuh").read_text()
    m = re.search(r"#define FP_MAX_LAYERS (\d+)", text)
    assert m and int(m.group(1)) == src.MAX_LAYERS
