"""Shared fixtures: backends parametrised with readable ids; GPU tests skip (or fail) cleanly."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from support import REQUIRE_GPU, backend_or_skip  # noqa: F401  (one definition: tests/support.py)

import fastpoly
from fastpoly.backends import BACKENDS

# --- warnings policy of the GPU test modules (marker ``gpu``) ----------------------------------------------
# pyproject's ``filterwarnings = error`` stays in force for fastpoly's own warnings.  Warnings that the GPU
# stack issues from its own modules (CuPy, its backends, Numba, PyTorch: deprecations of their internals,
# performance notes about the driver or the toolkit version) are shown once in pytest's summary instead of
# failing a test on the first real GPU machine: they are not defects of fastpoly.
GPU_STACK_WARNINGS = tuple(f"default::Warning:{mod}" for mod in (r"cupy(\..*)?", r"cupy_backends(\..*)?",
                                                                 r"numba(\..*)?", r"torch(\..*)?"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            for f in GPU_STACK_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(f), append=False)


# --- per-test time limit (no pytest-timeout plugin on the GPU machine) -------------------------------------
# FASTPOLY_TEST_TIMEOUT=S (ci/gpu-check.sh sets it): a test whose setup or call runs longer than S seconds
# fails (SIGALRM) and the session goes on, so one hung test cannot eat the slot of the others.  The check's
# outer ``timeout -s INT`` then still finds a pytest that writes its JUnit XML on KeyboardInterrupt (SIGINT is
# re-enabled below in case the caller started the check with SIGINT ignored).
TEST_TIMEOUT = float(os.environ.get("FASTPOLY_TEST_TIMEOUT") or 0)


def pytest_configure(config):
    if TEST_TIMEOUT > 0:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _time_limited(item, phase):
    if TEST_TIMEOUT <= 0 or not hasattr(signal, "SIGALRM"):
        return None

    def on_alarm(signum, frame):
        pytest.fail(f"{phase} of {item.nodeid} exceeded FASTPOLY_TEST_TIMEOUT={TEST_TIMEOUT:g} s", pytrace=False)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    return old


def _time_limit_end(old):
    if old is not None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    old = _time_limited(item, "setup")
    try:
        yield
    finally:
        _time_limit_end(old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    old = _time_limited(item, "call")
    try:
        yield
    finally:
        _time_limit_end(old)


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
