"""Flush-to-zero guard: the PTX of the backend's own compile path keeps subnormals (no ``.ftz``).

``cupy.RawModule`` appends ``-ftz=true`` after the caller's options and NVRTC honours the
last one, so every float32 instruction would flush subnormals.  The cupy backend therefore
compiles with :func:`fastpoly.backends.cuda.source.build_ptx` (NVRTC, the options of
:func:`fastpoly.backends.cuda.source.nvrtc_options`, nothing appended) and loads the PTX itself.
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
    assert opts[-1] == "-arch=compute_90"


def test_backend_compiles_through_build_ptx(monkeypatch, tmp_path):
    """CupyDevice.compile hands NVRTC's PTX to the module loader (no RawModule, so no -ftz=true)."""
    calls = {}

    def fake_build(filename, names, nvrtc, arch=None):
        calls["build"] = (filename, tuple(names), arch)
        return "// ptx", {n: f"_mangled_{i}" for i, n in enumerate(names)}

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

    FakeCupy.cuda.Device = Device
    monkeypatch.setattr(src, "build_ptx", fake_build)
    monkeypatch.setenv("FASTPOLY_CUDA_CACHE", str(tmp_path))
    monkeypatch.setattr(CupyDevice, "_loaded", {})
    dev = CupyDevice.__new__(CupyDevice)
    dev.cp = FakeCupy
    dev.arch = "90"
    dev.ptx = {}
    dev._nvrtc = lambda: object()
    out = dev.compile("poly.cu", POLY_NAMES)
    assert calls["build"] == ("poly.cu", tuple(POLY_NAMES), "90")
    assert calls["load"] == b"// ptx"
    assert out == {n: f"_mangled_{i}" for i, n in enumerate(POLY_NAMES)}
    # a second device reads the on-disk cache (re-checked for .ftz) instead of calling NVRTC
    calls.clear()
    monkeypatch.setattr(CupyDevice, "_loaded", {})
    dev.ptx = {}
    assert dev.compile("poly.cu", POLY_NAMES) == out and "build" not in calls
    assert "RawModule" not in CupyBackend._functions.__code__.co_names


def test_max_layers_matches_the_kernels():
    text = (src.kernel_dir() / "network.cuh").read_text()
    m = re.search(r"#define FP_MAX_LAYERS (\d+)", text)
    assert m and int(m.group(1)) == src.MAX_LAYERS
