"""K_LZ (exact reference semantics, docs/design.md#complexity-measures), entropy, T and critical sample ratio."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastpoly
from fastpoly.analysis.complexity import (
    critical_sample_ratio,
    entropy,
    klz,
    klz_string,
    lz76_phrases,
    msb_permutation,
    ones,
)
from fastpoly.keys import bits_to_key, key_to_bits, pack_bits

REGRESSION = {
    "0" * 128: 7.0,
    "1" * 128: 7.0,
    "1" + "0" * 127: 17.5,
    "0" * 127 + "1": 17.5,
    "0" + "1" * 127: 17.5,
    "01" * 64: 21.0,
    "0" * 64 + "1" * 64: 21.0,
    "0011" * 32: 28.0,
}


def _anchor_kc_lz(string):
    """Verbatim semantics of the anchors' KC_LZ (independent transcription, string indexing)."""
    n = len(string)
    s = "0" + string
    c, l, i, k, k_max, stop = 1, 1, 0, 1, 1, 0
    while stop == 0:
        if s[i + k] != s[l + k]:
            if k > k_max:
                k_max = k
            i = i + 1
            if i == l:
                c = c + 1
                l = l + k_max
                if l + 1 > n:
                    stop = 1
                else:
                    i, k, k_max = 0, 1, 1
            else:
                k = 1
        else:
            k = k + 1
            if l + k > n:
                c = c + 1
                stop = 1
    return c


def _anchor_calc_kc(s):
    L = len(s)
    if s == "0" * L or s == "1" * L:
        return math.log2(L)
    return math.log2(L) * (_anchor_kc_lz(s) + _anchor_kc_lz(s[::-1])) / 2.0


@pytest.mark.parametrize("s,value", list(REGRESSION.items()))
def test_regression_values(s, value):
    assert klz_string(s) == value
    key = bits_to_key(s, 128)
    assert klz(key, 128)[0] == value
    assert klz(key, 128, compiled=False)[0] == value


def test_random_strings_range():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**64, size=(2000, 2), dtype=np.uint64)
    k = klz(keys, 128)
    assert 129.5 <= np.median(k) <= 168 and abs(np.mean(k) - 149) < 5


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="01", min_size=2, max_size=70))
def test_matches_anchor_code_on_any_string(s):
    assert klz_string(s) == _anchor_calc_kc(s)
    if s not in ("0" * len(s), "1" * len(s)):
        assert lz76_phrases(s) == _anchor_kc_lz(s)
    key = bits_to_key(s, len(s)) if len(s) > 1 else None
    assert klz(key, len(s))[0] == _anchor_calc_kc(s)
    assert klz(key, len(s), compiled=False)[0] == _anchor_calc_kc(s)


def test_compiled_equals_python_on_many_keys():
    rng = np.random.default_rng(7)
    # mixture of random and structured (low-complexity) keys, 128 and 200 bits
    for n in (128, 200):
        W = (n + 63) // 64
        keys = rng.integers(0, 2**64, size=(600, W), dtype=np.uint64)
        keys[::3] &= np.uint64(0xFF00FF00FF00FF00)
        keys[:, -1] &= np.uint64(2 ** (n - 64 * (W - 1)) - 1) if n % 64 else np.uint64(2**64 - 1)
        a = klz(keys, n)
        b = klz(keys, n, compiled=False)
        np.testing.assert_array_equal(a, b)
        for i in range(0, 600, 37):
            assert a[i] == _anchor_calc_kc(key_to_bits(keys[i], n))


def test_reversal_symmetry_and_msb_order():
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 2**64, size=(50, 2), dtype=np.uint64)
    for k in keys:
        s = key_to_bits(k, 128)
        assert klz(k, 128)[0] == _anchor_calc_kc(s[::-1])  # the C++ anchor's reversed string
        perm = msb_permutation(128)
        s_msb = "".join(s[perm[i]] for i in range(128))  # the Python anchors' MSB-first string
        assert klz(k, 128, order="msb")[0] == _anchor_calc_kc(s_msb)
    # msb permutation: input i = format(i, '07b') -> features x_0..x_6 -> fastpoly row
    perm = msb_permutation(128)
    for i in (1, 2, 5, 64, 100):
        feats = [int(ch) for ch in format(i, "07b")]
        assert perm[i] == sum(b << j for j, b in enumerate(feats))


def test_entropy_ones_csr_hand_examples():
    n = 8  # 3 inputs, row i has x_j = (i >> j) & 1
    cases = {
        "00000000": (0, 0.0, 0.0),
        "11111111": (8, 0.0, 0.0),
        "01010101": (4, 1.0, 1.0),  # f = x_0: every input's x_0-neighbour differs
        "00000001": (1, None, 4 / 8),  # f = 1 only on row 0: row 0 and its 3 neighbours
        "00001111": (4, 1.0, 1.0),  # f = NOT x_2
        "00010111": (4, 1.0, 6 / 8),  # majority-like
    }
    for s, (t, h, csr) in cases.items():
        key = bits_to_key(s, n)
        assert ones(key, n)[0] == t
        if h is not None:
            assert entropy(key, n)[0] == pytest.approx(h)
        assert critical_sample_ratio(key, n)[0] == pytest.approx(csr)
    p = 1 / 8
    assert entropy(bits_to_key("00000001", 8), 8)[0] == pytest.approx(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)))


def test_bad_input():
    with pytest.raises(ValueError):
        klz_string("0120")
    with pytest.raises(ValueError):
        klz(np.zeros((3, 2), np.uint64), 64)  # 2 words do not fit 64 bits
    with pytest.raises(ValueError):
        critical_sample_ratio(np.zeros((1, 1), np.uint64), 12)  # not 2**d rows
    with pytest.raises(ValueError):
        klz(np.zeros((1, 1), np.uint64), 8, order="lsb")


def test_counts_complexity_uses_full_functions():
    arch = fastpoly.MLP(3, (4,))
    prior = fastpoly.sample(arch, n_samples=800, seed=2, backend="numpy", progress=False)
    cx = prior.complexity()
    assert set(cx) == {"klz", "entropy", "ones", "csr"}
    assert np.array_equal(cx["ones"], prior.ones())
    post = prior.condition([0, 5], [0, 1])
    fk = post.full_keys()
    # the full function has the train labels on the train rows
    from fastpoly.keys import unpack_bits

    bits = unpack_bits(fk, 8)
    assert np.all(bits[:, 0] == 0) and np.all(bits[:, 5] == 1)
    np.testing.assert_array_equal(post.complexity()["klz"], klz(fk, 8))
    assert pack_bits(bits.astype(bool)).shape == fk.shape
