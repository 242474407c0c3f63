"""Shared fixtures: backends parametrised with readable ids; GPU tests skip (or fail) cleanly."""
from __future__ import annotations

import os

import numpy as np
import pytest
from support import REQUIRE_GPU, backend_or_skip  # noqa: F401  (one definition: tests/support.py)

import fastpoly
from fastpoly.backends import BACKENDS


@pytest.fixture(scope="module")
def require_gpu():
    """Guard of real-GPU test modules (``pytest.mark.usefixtures("require_gpu")``): skip with the reason,
    or fail under ``FASTPOLY_REQUIRE_GPU=1``."""
    backend_or_skip("cupy")


@pytest.fixture(params=list(BACKENDS), ids=lambda n: f"backend={n}")
def backend(request):
    """Every backend in the table (unavailable ones skipped with the reason)."""
    return backend_or_skip(request.param)


@pytest.fixture(params=[n for n in BACKENDS if n != "numpy"], ids=lambda n: f"backend={n}")
def fast_backend(request):
    """Every compiled backend (compared with the NumPy reference)."""
    return backend_or_skip(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def X7():
    return fastpoly.boolean_inputs(7)


@pytest.fixture(scope="session")
def emu():
    """The CPU emulation of CUDA (``tests/cuda_emu``; its library is built on first use).

    Skipped without g++, except under CI, where the emulation tests must run.
    """
    import shutil

    if shutil.which(os.environ.get("CXX") or "g++") is None:
        if os.environ.get("CI"):
            pytest.fail("g++ is required under CI for the CUDA emulation tests")
        pytest.skip("g++ not found: the CUDA emulation cannot be built")
    from cuda_emu import device

    device.load_library()
    return device
