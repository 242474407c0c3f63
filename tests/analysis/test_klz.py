"""Bit-parallel K_LZ on packed words (Numba and the CUDA header built for the host) against the reference.

The reference is the anchors' ``KC_LZ`` transcribed character by character
(:func:`fastpoly.analysis.complexity.lz76_phrases`); the bit-parallel kernels must give the same
phrase counts on every test string, on structured strings of every length up to 256 bits and on
random keys (uniform and biased, whose long phrases take the kernel's continuation steps).
``tests/cuda_host/klz_driver.cpp`` includes ``kernels/klz.cuh`` (the math of ``kernels/klz.cu``)
and is compiled with g++ and with nvcc as host code; skipped when a compiler is missing, except
under ``CI``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fastpoly.analysis.complexity import (
    _phrase_sums_py,
    complexity_ints,
    critical_sample_ratio,
    klz,
    klz_string,
    lz76_phrases,
    ones,
    phrase_sums,
)
from fastpoly.backends.cuda.source import kernel_dir
from fastpoly.backends.numba import klz as kmod
from fastpoly.keys import bits_to_key, pack_bits, unpack_bits

DRIVER = Path(__file__).resolve().parents[1] / "cuda_host" / "klz_driver.cpp"
LENGTHS = [2, 3, 5, 8, 31, 63, 64, 65, 100, 127, 128, 129, 200, 256]


def _strings(n, rng, k=400):
    """0/1 rows of length n: random densities, periodic, runs, single ones, constants."""
    bits = (rng.random((k, n)) < rng.random((k, 1))).astype(np.uint8)
    for j in range(40):
        period = 1 + j % 9
        pat = rng.integers(0, 2, period)
        bits[j] = np.tile(pat, n // period + 1)[:n]
    bits[40:60] = 0
    for j in range(40, 60):
        bits[j, rng.integers(0, n, 1 + j % 3)] = 1
    bits[60], bits[61] = 0, 1
    half = n // 2
    bits[62, :half], bits[62, half:] = 0, 1
    return bits


@pytest.mark.parametrize("n", LENGTHS)
def test_phrase_sums_equal_reference(n):
    bits = _strings(n, np.random.default_rng(n))
    keys = pack_bits(bits.astype(bool))
    assert np.array_equal(phrase_sums(keys, n), _phrase_sums_py(bits))


def _charwise_kernel():
    """The reference transcription compiled character by character (0.1's kernel): an independent oracle."""
    from fastpoly.analysis.complexity import _phrases_buf
    from fastpoly.backends.numba.jit import jit, pjit, prange

    phr = jit(_phrases_buf)

    def sums(keys, n):
        K = keys.shape[0]
        out = np.empty(K, np.int64)
        for r in prange(K):
            fwd = np.zeros(n + 1, np.uint8)
            rev = np.zeros(n + 1, np.uint8)
            t = 0
            for j in range(n):
                b = np.uint8((keys[r, j >> 6] >> np.uint64(j & 63)) & np.uint64(1))
                fwd[j + 1] = b
                rev[n - j] = b
                t += b
            out[r] = -1 if t == 0 or t == n else phr(fwd, n) + phr(rev, n)
        return out

    return pjit(sums)


@pytest.mark.slow
def test_phrase_sums_on_1e6_random_keys():
    rng = np.random.default_rng(2024)
    keys = rng.integers(0, 2**64, size=(1_000_000, 2), dtype=np.uint64)
    fast = phrase_sums(keys, 128)
    assert np.array_equal(fast, _charwise_kernel()(keys, 128))
    idx = rng.choice(keys.shape[0], 2_000, replace=False)  # and the plain Python reference on a sample
    assert np.array_equal(fast[idx], phrase_sums(keys[idx], 128, compiled=False))
    assert abs(np.mean(7.0 * fast / 2.0) - 149) < 2  # random strings: K_LZ about 149 (docs/design.md#complexity-measures)


@pytest.fixture(scope="module")
def charwise():
    return _charwise_kernel()


def _random_keys(rng, K, n, density=None):
    """K random n-bit keys (bits >= n zero); ``density``: probability of a one (None: uniform words)."""
    W = (n + 63) // 64
    if density is None:
        keys = rng.integers(0, 2**64, size=(K, W), dtype=np.uint64)
        if n % 64:
            keys[:, -1] &= np.uint64((1 << (n % 64)) - 1)
        return keys
    return pack_bits(rng.random((K, n)) < density)


@pytest.mark.parametrize("n,K", [(128, 100_000), (64, 10_000), (65, 10_000), (127, 10_000)])
def test_kernel_on_random_keys(charwise, n, K):
    """All keys against the compiled reference transcription, a sample against the Python reference."""
    rng = np.random.default_rng(1000 + n)
    keys = _random_keys(rng, K, n)
    fast = kmod.phrase_sums(keys, n)
    assert np.array_equal(fast, charwise(keys, n))
    idx = rng.choice(K, 1000, replace=False)
    assert np.array_equal(fast[idx], _phrase_sums_py(unpack_bits(keys[idx], n)))


@pytest.mark.parametrize("n", [13, 17, 52, 53, 64, 76, 100, 128, 129, 192])
def test_kernel_on_biased_keys(charwise, n):
    """Sparse and dense strings: phrases of 12+ characters, masks crossing bit 64, strings ending mid-step."""
    rng = np.random.default_rng(2000 + n)
    keys = np.concatenate([_random_keys(rng, 3000, n, p) for p in (0.02, 0.08, 0.2, 0.5, 0.8, 0.92, 0.98)])
    assert np.array_equal(kmod.phrase_sums(keys, n), charwise(keys, n))


@pytest.mark.parametrize("K", [1, 2, 1023, 1024, 1025, 2500])
def test_kernel_chunk_and_lane_boundaries(charwise, K):
    """Row counts around the 1024-row chunks; constant rows at the ends of chunks and of the array."""
    rng = np.random.default_rng(K)
    keys = _random_keys(rng, K, 128)
    for r in {0, K - 1, min(K - 1, 1023), min(K - 1, 1024)}:
        keys[r] = 0 if r % 2 else np.uint64(2**64 - 1)
    fast = kmod.phrase_sums(keys, 128)
    assert np.array_equal(fast, charwise(keys, 128))
    assert fast[0] == -1 and fast[K - 1] == -1


@pytest.mark.parametrize("n", [2, 5, 12, 13, 63, 64, 65, 100, 127, 128, 200])
def test_kernel_ignores_bits_past_n(n):
    """Garbage in the bits >= n (and an extra word) changes nothing, ones and critical counts included."""
    rng = np.random.default_rng(3000 + n)
    keys = _random_keys(rng, 2000, n)
    W = keys.shape[1]
    dirty = rng.integers(0, 2**64, size=(2000, W + 1), dtype=np.uint64)
    keep = np.zeros(W + 1, np.uint64)
    keep[:W] = np.uint64(2**64 - 1)
    if n % 64:
        keep[W - 1] = np.uint64((1 << (n % 64)) - 1)
    dirty = (dirty & ~keep) | np.pad(keys, ((0, 0), (0, 1)))
    for k in (keys, dirty, dirty[:, :W]):
        assert np.array_equal(kmod.phrase_sums(k, n), kmod.phrase_sums(keys, n))
        assert np.array_equal(kmod.complexity_ints(k, n)[1], unpack_bits(keys, n).sum(axis=1))


def _phrase_starts(bits):
    """Start of every phrase of the reference parse (:func:`_phrases_buf` recording where ``l`` moves)."""
    s = [0] + [int(b) for b in bits]
    n = len(bits)
    starts = [0, 1]
    l, i, k, k_max = 1, 0, 1, 1
    while True:
        if s[i + k] != s[l + k]:
            k_max = max(k, k_max)
            i += 1
            if i == l:
                l += k_max
                if l + 1 > n:
                    break
                starts.append(l)
                i, k, k_max = 0, 1, 1
            else:
                k = 1
        else:
            k += 1
            if l + k > n:
                break
    return starts


def test_prefix_table_against_reference_parse():
    """Every 12-bit prefix: ``c`` phrases start before ``l`` and one starts at ``l``, whatever follows."""
    m = kmod.PREFIX_BITS
    table = kmod.prefix_table()
    assert table.shape == (1 << m,)
    rng = np.random.default_rng(4)
    for v in range(1 << m):
        c, l = int(table[v]) & 255, int(table[v]) >> 8
        assert 1 <= c <= l <= m
        prefix = [(v >> j) & 1 for j in range(m)]
        for tail in (rng.integers(0, 2, 20), [1 - prefix[-1]] * 3):
            starts = _phrase_starts(prefix + list(tail))
            assert l in starts and starts.index(l) == c, (v, tail)
    assert lz76_phrases("0" * 16) == 2 and table[0] == 1 | (1 << 8)


def test_kernel_rejects_bad_shapes_and_lengths():
    keys = np.zeros((3, 2), np.uint64)
    for n in (0, 1, 129):
        with pytest.raises(ValueError, match="2 <= n <= 64"):
            kmod.phrase_sums(keys, n)
        with pytest.raises(ValueError, match="2 <= n <= 64"):
            kmod.complexity_ints(keys, n)
    with pytest.raises(ValueError, match="K, W"):
        kmod.phrase_sums(np.zeros(4, np.uint64), 64)
    with pytest.raises(ValueError, match="boolean_d"):
        kmod.complexity_ints(keys, 128, boolean_d=6)
    assert kmod.phrase_sums(np.zeros((0, 2), np.uint64), 128).shape == (0,)


def test_regression_strings():
    for s, v in {"0" * 128: 7.0, "1" + "0" * 127: 17.5, "01" * 64: 21.0, "0" * 64 + "1" * 64: 21.0,
                 "0011" * 32: 28.0}.items():
        assert klz(bits_to_key(s, 128), 128)[0] == v == klz_string(s)


@pytest.mark.parametrize("n", [4, 8, 64, 128, 256])
def test_complexity_ints_one_pass(n):
    bits = _strings(n, np.random.default_rng(n + 1))
    keys = pack_bits(bits.astype(bool))
    d = n.bit_length() - 1
    for order in ("rows", "msb"):
        ci = complexity_ints(keys, n, boolean=True, order=order)
        assert np.array_equal(klz(keys, n, order=order), np.where(ci["sums"] < 0, np.log2(n), np.log2(n) * ci["sums"] / 2))
        assert np.array_equal(ci["ones"], ones(keys, n))
        assert np.array_equal(ci["crit"] / n, critical_sample_ratio(keys, n))
    assert d >= 2


# --- the CUDA header, built for the host ----------------------------------------------------
def _nvcc():
    return shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)


COMPILERS = {"gxx": lambda: shutil.which("g++"), "nvcc": _nvcc}


@pytest.fixture(scope="module", params=sorted(COMPILERS), ids=lambda k: f"built-with-{k}")
def klz_driver(request, tmp_path_factory):
    exe = COMPILERS[request.param]()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"{request.param} is required under CI but was not found")
        pytest.skip(f"{request.param} not found")
    out = tmp_path_factory.mktemp(f"klz-{request.param}") / "klz_driver"
    inc = f"-I{kernel_dir()}"
    if request.param == "gxx":
        cmd = [exe, "-std=c++17", "-O2", inc, "-x", "c++", str(DRIVER), "-o", str(out)]
    else:
        cmd = [exe, "-std=c++17", "-O2", inc, "-x", "cu", str(DRIVER), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"building the K_LZ host driver failed:\n{' '.join(cmd)}\n{r.stdout}\n{r.stderr}"

    def run(keys, n, d):
        keys = np.ascontiguousarray(keys, "<u8")
        p = subprocess.run([str(out), str(keys.shape[1]), str(n), str(d)], input=keys.tobytes(),
                           capture_output=True, timeout=600)
        assert p.returncode == 0, p.stderr.decode()
        K = keys.shape[0]
        buf = p.stdout
        assert len(buf) == 16 * K
        return (np.frombuffer(buf[:8 * K], "<i8"), np.frombuffer(buf[8 * K:12 * K], "<i4"),
                np.frombuffer(buf[12 * K:], "<i4"))

    return run


@pytest.mark.parametrize("n", LENGTHS)
def test_cuda_header_equals_reference(klz_driver, n):
    bits = _strings(n, np.random.default_rng(100 + n))
    keys = pack_bits(bits.astype(bool))
    d = n.bit_length() - 1 if n & (n - 1) == 0 else 0
    sums, t, crit = klz_driver(keys, n, d)
    assert np.array_equal(sums, _phrase_sums_py(bits))
    assert np.array_equal(t, bits.sum(axis=1))
    if d:
        assert np.array_equal(crit / n, critical_sample_ratio(keys, n))


def test_cuda_header_on_random_keys(klz_driver):
    keys = np.random.default_rng(5).integers(0, 2**64, size=(200_000, 2), dtype=np.uint64)
    sums, t, crit = klz_driver(keys, 128, 7)
    ci = complexity_ints(keys, 128)
    assert np.array_equal(sums, ci["sums"]) and np.array_equal(t, ci["ones"]) and np.array_equal(crit, ci["crit"])
