"""The CUDA K_LZ kernel (``kernels/klz.cu``) on a GPU: the same integers as the Numba kernel and the reference.

Needs a CUDA GPU and CuPy: skipped (with the reason) without them, and FAILS instead when
``FASTPOLY_REQUIRE_GPU=1`` (``ci/gpu-check.sh`` sets it).  The emulator tests
(``tests/analysis/test_klz_cuda_emu.py``) run the same kernel and host code on the CPU in CI; here the real
compile path (NVRTC, the PTX cache) and the hardware's popcount / bit reversal are checked.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastpoly.analysis.complexity import _phrase_sums_py, complexity_ints
from fastpoly.analysis.histograms import summarize
from fastpoly.backends.numba import klz as numba_klz
from fastpoly.keys import pack_bits

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("require_gpu")]




@pytest.mark.parametrize("n", [2, 3, 8, 31, 63, 64, 65, 100, 127, 128, 129, 200, 256], ids=lambda n: f"n={n}")
def test_structured_strings_equal_reference(n):
    from test_klz import _strings  # tests/ is on sys.path

    from fastpoly.backends.cuda.klz import complexity_ints_cuda

    bits = _strings(n, np.random.default_rng(500 + n))
    keys = pack_bits(bits.astype(bool))
    d = n.bit_length() - 1 if n >= 8 and n & (n - 1) == 0 else 0
    got = complexity_ints_cuda(keys, n, d)
    assert np.array_equal(got[0], _phrase_sums_py(bits))
    for g, r in zip(got, numba_klz.complexity_ints(keys, n, d)):
        assert np.array_equal(g, r)


@pytest.mark.parametrize("n,d", [(128, 7), (256, 8), (64, 6)], ids=lambda v: str(v))
def test_random_keys_equal_numba(n, d):
    from fastpoly.backends.cuda.klz import complexity_ints_cuda

    keys = np.random.default_rng(n).integers(0, 2**64, size=(300_000, n // 64), dtype=np.uint64)
    ref = numba_klz.complexity_ints(keys, n, d)
    for kw in ({}, {"chunk": 65_537, "threads": 64, "max_blocks": 7}):
        for g, r in zip(complexity_ints_cuda(keys, n, d, **kw), ref):
            assert np.array_equal(g, r)


def test_backend_option_and_summarize():
    from test_klz_cuda_emu import _counts, _same_summary

    keys = np.random.default_rng(1).integers(0, 2**64, size=(5000, 2), dtype=np.uint64)
    for order in ("rows", "msb"):
        a = complexity_ints(keys, 128, order=order, backend="cupy")
        b = complexity_ints(keys, 128, order=order, backend="numba")
        assert all(np.array_equal(a[k], b[k]) for k in b)
    c = _counts(20_000, 3)
    _same_summary(summarize(c, block=3000, backend="numba"), summarize(c, block=3000, backend="cupy"))
