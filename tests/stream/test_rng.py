"""The random stream: Philox known answers, stream layout, the float32 math, uniform and normal draws."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from fastpoly.stream import fmath, rng

KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("ctr,key,expected", KAT, ids=["zeros", "ones", "pi"])
def test_philox_known_answers(ctr, key, expected):
    out = rng.philox4x32(ctr, key)
    assert tuple(int(x) for x in out) == expected


def _philox_scalar(ctr, key):
    """Independent pure-Python Philox4x32-10 (the test's oracle)."""
    c = list(ctr)
    k0, k1 = key
    for r in range(10):
        if r:
            k0 = (k0 + 0x9E3779B9) & 0xFFFFFFFF
            k1 = (k1 + 0xBB67AE85) & 0xFFFFFFFF
        p0 = 0xD2511F53 * c[0]
        p1 = 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & 0xFFFFFFFF, (p0 >> 32) ^ c[3] ^ k1, p0 & 0xFFFFFFFF]
    return c


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, 2**32 + 7, 0x299F31D0A4093822, 2**64 - 1],
                         ids=lambda s: f"seed={s:#x}")
@pytest.mark.parametrize("index", [0, 5, 2**32 + 3, 2**64 - 1], ids=lambda i: f"index={i:#x}")
def test_stream_layout(seed, index):
    words = rng.stream_words(seed, [index], 3)[0]
    for j in range(3):
        ctr = (j, 0, index & 0xFFFFFFFF, index >> 32)
        key = (seed & 0xFFFFFFFF, seed >> 32)
        assert [int(w) for w in words[4 * j : 4 * j + 4]] == _philox_scalar(ctr, key)


def test_first_words_of_seed0_index0_are_the_zero_known_answer():
    w = rng.stream_words(0, [0], 1)[0]
    assert [int(x) for x in w] == list(KAT[0][2])


def test_stream_is_a_function_of_seed_and_index_only():
    a = rng.stream_normals(7, np.arange(10, 20, dtype=np.uint64), 13)
    b = rng.stream_normals(7, np.arange(0, 30, dtype=np.uint64), 13)[10:20]
    np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))
    c = rng.stream_normals(8, np.arange(10, 20, dtype=np.uint64), 13)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, "3", None, True], ids=repr)
def test_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed"):
        rng.check_seed(bad)


def test_uniform_never_zero_or_one_and_exact():
    edge = np.array([0, 1, 511, 512, 2**31 - 1, 2**31, 2**32 - 512, 2**32 - 1], dtype=np.uint32)
    rand = np.random.default_rng(0).integers(0, 2**32, 10**6, dtype=np.uint64).astype(np.uint32)
    for x in (edge, rand):
        u = fmath.uniform_from_word(x)
        assert u.dtype == np.float32
        assert np.all(u > 0) and np.all(u < 1)
        exact = ((x >> 9).astype(np.float64) * 2 + 1) * 2.0**-24
        np.testing.assert_array_equal(u.astype(np.float64), exact)
    assert fmath.uniform_from_word(np.uint32(2**32 - 1)) == np.float32(1 - 2.0**-24)
    assert fmath.uniform_from_word(np.uint32(0)) == np.float32(2.0**-24)


def test_uniform_pm1_exact_and_open():
    u = rng.stream_uniform_pm1(3, np.arange(1000, dtype=np.uint64), 17)
    assert np.all(np.abs(u) < 1) and np.all(u != 0)
    n = u.astype(np.float64) * 2**23
    np.testing.assert_array_equal(n, np.round(n))
    assert np.all(np.round(n) % 2 == 1)


def _fma_exact(a, b, c):
    """Correctly rounded float32 of a*b + c via exact rationals."""
    x = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    cand = np.float32(float(x))  # within one ulp
    nb = [np.nextafter(cand, np.float32(-np.inf)), cand, np.nextafter(cand, np.float32(np.inf))]

    def key(v):
        return (abs(Fraction(float(v)) - x), int(np.float32(v).view(np.int32)) & 1)

    return min(nb, key=key)


def test_fma32_matches_exact_rounding_on_random_operands():
    g = np.random.default_rng(1)
    n = 4000
    a = g.standard_normal(n).astype(np.float32)
    b = (g.standard_normal(n) * np.exp2(g.integers(-20, 20, n))).astype(np.float32)
    c = (g.standard_normal(n) * np.exp2(g.integers(-40, 40, n))).astype(np.float32)
    got = fmath.fma32(a, b, c)
    for i in range(n):
        assert got[i] == _fma_exact(a[i], b[i], c[i]), (a[i], b[i], c[i])


@pytest.mark.parametrize(
    "a,b,c",
    [
        # a*b = 1 + 2^-11 + 2^-24 is a float32 midpoint; c decides the rounding (double rounding trap)
        (1 + 2.0**-12, 1 + 2.0**-12, 2.0**-60),
        (1 + 2.0**-12, 1 + 2.0**-12, -(2.0**-60)),
        (-(1 + 2.0**-12), 1 + 2.0**-12, 2.0**-60),
        (1 + 2.0**-12, 1 + 2.0**-12, 0.0),
        # results in the float32 subnormal range
        (2.0**-70, 2.0**-70, 2.0**-149),
        (2.0**-75, 1.5, -(2.0**-126)),
        (3.0, 2.0**-130, 2.0**-149),
    ],
    ids=["midpoint+tiny", "midpoint-tiny", "neg-midpoint", "exact-tie", "subnormal", "sub2", "sub3"],
)
def test_fma32_hard_cases(a, b, c):
    a, b, c = np.float32(a), np.float32(b), np.float32(c)
    got = fmath.fma32(np.array([a]), np.array([b]), np.array([c]))[0]
    assert got.view(np.int32) == np.float32(_fma_exact(a, b, c)).view(np.int32)


def test_log_accuracy_exhaustive():
    n = np.arange(1, 2**24, 2, dtype=np.int64)
    got = fmath.log_odd24(n).astype(np.float64)
    ref = np.log(n * 2.0**-24)
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - ref) / ulp) < 2.5
    assert np.all(got < 0)


def test_sincos_accuracy_exhaustive():
    n = np.arange(1, 2**24, 2, dtype=np.int64)
    s, c = fmath.sincos2pi_odd24(n)
    u = n * 2.0**-24
    assert np.max(np.abs(s - np.sin(2 * np.pi * u))) < 1.2e-7
    assert np.max(np.abs(c - np.cos(2 * np.pi * u))) < 1.2e-7


def test_normals_distribution():
    z = rng.stream_normals(2024, np.arange(250_000, dtype=np.uint64), 4).ravel().astype(np.float64)
    assert z.size == 10**6
    ks = stats.kstest(z, "norm")
    assert ks.pvalue > 1e-3, ks
    se = 1 / np.sqrt(z.size)
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1) < 5 * np.sqrt(2) * se
    assert abs(stats.skew(z)) < 5 * np.sqrt(6) * se
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24) * se
    # cos and sin halves are each N(0, 1) and uncorrelated
    zz = z.reshape(-1, 4)
    assert abs(np.corrcoef(zz[:, 0], zz[:, 1])[0, 1]) < 5 * np.sqrt(4) * se


def test_box_muller_matches_float64_formula():
    w = np.random.default_rng(3).integers(0, 2**32, (2, 10**5), dtype=np.uint64).astype(np.uint32)
    z0, z1 = fmath.box_muller_words(w[0], w[1])
    u1 = fmath.uniform_from_word(w[0]).astype(np.float64)
    u2 = fmath.uniform_from_word(w[1]).astype(np.float64)
    r = np.sqrt(-2 * np.log(u1))
    tol = 4e-7 * np.maximum(r, 1)
    assert np.all(np.abs(z0 - r * np.cos(2 * np.pi * u2)) < tol)
    assert np.all(np.abs(z1 - r * np.sin(2 * np.pi * u2)) < tol)
