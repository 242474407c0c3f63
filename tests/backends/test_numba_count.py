"""Exact counting with Numba (:mod:`fastpoly.backends.numba.count`) against :func:`fastpoly.backends.reference.count_keys`."""
from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from fastpoly.backends.counting import count_keys  # noqa: E402


def _nb():
    from fastpoly.backends.numba.count import count_keys as nb_count

    return nb_count


def _check(got, keys, idx, mask=None):
    if mask is not None:
        keys, idx = keys[mask], idx[mask]
    ref = count_keys(keys, idx)
    assert got[0].dtype == np.uint64 and got[1].dtype == np.int64 and got[2].dtype == np.uint64
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        assert np.array_equal(g, r)


@pytest.mark.parametrize("lanes", [1, 2])
@pytest.mark.parametrize("W", [1, 2, 3])
def test_all_distinct_forces_growth(W, lanes):
    # every key distinct: several table doublings, and a big merge for 2 lanes
    n = 300_000
    g = np.random.default_rng(W)
    keys = g.integers(0, 2**63, (n, W), dtype=np.uint64) * np.uint64(2) + g.integers(0, 2, (n, W), np.uint64)
    idx = g.permutation(n).astype(np.uint64)
    _check(_nb()(keys, idx, n_bits=64 * W, n_lanes=lanes), keys, idx)


@pytest.mark.parametrize("lanes", [1, 2, 3])
@pytest.mark.parametrize("W,n_bits", [(1, 5), (1, 64), (2, 70), (2, 128), (3, 130), (3, 192)])
def test_hot_keys_partial_last_word_mask_and_minima(W, n_bits, lanes):
    n = 50_000
    g = np.random.default_rng(n_bits + lanes)
    rem = n_bits - 64 * (W - 1)
    top = np.uint64((1 << rem) - 1)
    keys = g.integers(0, 2**64, (n, W), dtype=np.uint64)
    keys[:, -1] &= top
    keys[g.integers(0, n, 200)] = keys[0]  # a repeated ordinary key
    u = g.random(n)
    keys[u < 0.2] = 0
    ones = np.full(W, np.uint64(2**64 - 1))
    ones[-1] = top
    keys[(u >= 0.2) & (u < 0.45)] = ones
    # near-constant keys that must not be taken for the hot ones
    near = (u >= 0.45) & (u < 0.5)
    keys[near] = ones
    keys[near, 0] ^= np.uint64(1)
    near0 = (u >= 0.5) & (u < 0.52)
    keys[near0] = 0
    keys[near0, W - 1] = np.uint64(1)
    idx = (np.uint64(2**40) + g.permutation(n).astype(np.uint64))  # minima not at the first occurrence
    mask = g.random(n) < 0.7
    nb = _nb()
    _check(nb(keys, idx, n_bits=n_bits, n_lanes=lanes), keys, idx)
    _check(nb(keys, idx, mask=mask, n_bits=n_bits, n_lanes=lanes), keys, idx, mask)


@pytest.mark.parametrize("W", [1, 2, 3])
def test_structured_keys_large_buckets(W):
    # keys differing in few high bits and many low bits: radix buckets overflow -> merge sort path
    n = 100_000
    g = np.random.default_rng(7 + W)
    keys = np.zeros((n, W), np.uint64)
    keys[:, W - 1] = g.integers(0, 4, n).astype(np.uint64) << np.uint64(62)
    keys[:, 0] |= g.integers(0, 3000, n).astype(np.uint64)
    idx = np.arange(n, dtype=np.uint64)[::-1].copy()
    _check(_nb()(keys, idx, n_bits=64 * W, n_lanes=1), keys, idx)
    # keys equal in the top word, differing below (n_bits leaves few top bits)
    keys2 = g.integers(0, 2**64, (n, W), dtype=np.uint64)
    keys2[:, W - 1] &= np.uint64(3)
    keys2[: n // 2] = keys2[n // 2:]
    _check(_nb()(keys2, idx, n_bits=64 * (W - 1) + 2, n_lanes=2), keys2, idx)


def test_single_and_tiny_inputs():
    nb = _nb()
    for n in (1, 2, 3, 17):
        keys = np.zeros((n, 2), np.uint64)
        keys[1::2, 0] = 5
        idx = np.arange(n, dtype=np.uint64)[::-1].copy()
        _check(nb(keys, idx, n_bits=128, n_lanes=2), keys, idx)
    # all keys equal to one ordinary key
    keys = np.tile(np.array([[3, 9]], np.uint64), (1000, 1))
    idx = np.arange(1000, 0, -1).astype(np.uint64)
    _check(nb(keys, idx, n_bits=128), keys, idx)


def test_count_lanes_unsorted_same_entries():
    from fastpoly.backends.numba.count import count_lanes

    g = np.random.default_rng(3)
    keys = g.integers(0, 50, (20_000, 2)).astype(np.uint64)
    idx = g.permutation(20_000).astype(np.uint64)
    k, c, f = count_lanes(keys, idx, n_lanes=2)
    order = np.lexsort(k.T)
    _check((k[order], c[order], f[order]), keys, idx)
