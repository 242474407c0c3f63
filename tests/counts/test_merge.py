"""Merging sorted count triples: the compiled linear merge equals the NumPy reference exactly."""
from __future__ import annotations

import numpy as np
import pytest

from fastpoly.backends.counting import count_keys
from fastpoly.counts import merge as counts_mod


def _part(g, n, W, pool):
    keys = pool[g.integers(0, pool.shape[0], n)]
    return count_keys(keys, g.integers(0, 2**63, n, dtype=np.uint64))


@pytest.mark.parametrize("W", [1, 2, 3], ids=lambda w: f"words={w}")
@pytest.mark.parametrize("n_parts", [2, 3, 7], ids=lambda k: f"parts={k}")
def test_compiled_merge_equals_numpy(monkeypatch, W, n_parts):
    pytest.importorskip("numba")
    g = np.random.default_rng(W * 10 + n_parts)
    pool = g.integers(0, 2**64, (500, W), dtype=np.uint64)
    pool[:50, W - 1] = 0  # keys sharing their top word: the comparison must reach lower words
    pool[50:60] = np.iinfo(np.uint64).max
    parts = [_part(g, int(g.integers(0, 400)), W, pool) for _ in range(n_parts)]
    parts.append((np.zeros((0, W), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64)))
    want = counts_mod.merge_sorted_counts_reference([p for p in parts if p[0].shape[0]])
    monkeypatch.setattr(counts_mod, "_NUMBA_MERGE_MIN", 0)
    got = counts_mod.merge_sorted_counts(list(parts))
    for x, y in zip(want, got):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_merge2_rejects_mismatched_words():
    pytest.importorskip("numba")
    from fastpoly.backends.numba.merge import merge2

    a = (np.zeros((1, 1), np.uint64), np.ones(1, np.int64), np.zeros(1, np.uint64))
    b = (np.zeros((1, 2), np.uint64), np.ones(1, np.int64), np.zeros(1, np.uint64))
    with pytest.raises(ValueError, match="different lengths"):
        merge2(a, b)
