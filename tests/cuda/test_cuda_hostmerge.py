"""The CUDA backend's host merge of per-sub-batch counts: exact, never sorting, linear in the records.

``fastpoly.backends.cuda.hostmerge`` replaces the concatenate + ``lexsort`` merge (6.8 s for the
~9e6 keys of one default GPU batch) with an ordered concatenation inside a sub-batch and the
linear ``merge2`` across sub-batches.  The cost is checked by counting operations (records
written by pairwise merges), not by timing: it must grow linearly with the records for a given
number of sub-batches and stay within ``(1 + ceil(log2 S))`` passes over them.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from fastpoly.backends import counting
from fastpoly.backends.counting import count_keys, merge_sorted_counts_reference
from fastpoly.backends.cuda import hostmerge
from fastpoly.backends.cuda.hostmerge import SortedRunMerger, concat_ordered

pytestmark = pytest.mark.cuda_emu


def _part(g, n, W, pool):
    keys = pool[g.integers(0, pool.shape[0], n)]
    return count_keys(keys, g.integers(0, 2**63, n, dtype=np.uint64))


def _disjoint_parts(S, k, W=2):
    """S sorted unique parts of k keys each, interleaved (every merge is a real merge), no key shared."""
    parts = []
    for s in range(S):
        keys = np.zeros((k, W), np.uint64)
        keys[:, W - 1] = np.arange(k, dtype=np.uint64) * np.uint64(S) + np.uint64(s)
        parts.append((keys, np.ones(k, np.int64), np.full(k, s, np.uint64)))
    return parts


@pytest.mark.parametrize("threaded", [False, True], ids=["inline", "threaded"])
@pytest.mark.parametrize("compiled_min", [0, None], ids=["compiled", "default-threshold"])
@pytest.mark.parametrize("W", [1, 3], ids=lambda w: f"words={w}")
def test_merger_equals_the_reference(threaded, compiled_min, W):
    if compiled_min == 0:
        pytest.importorskip("numba")
    g = np.random.default_rng(W + 7 * threaded)
    pool = g.integers(0, 2**64, (400, W), dtype=np.uint64)
    pool[:40, W - 1] = 0  # keys sharing their top word
    parts = [_part(g, int(g.integers(0, 300)), W, pool) for _ in range(9)]
    parts.insert(3, (np.zeros((0, W), np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint64)))
    m = SortedRunMerger(threaded=threaded, compiled_min=compiled_min)
    for p in parts:
        m.add(p)
    got = m.result()
    want = merge_sorted_counts_reference([p for p in parts if p[0].shape[0]])
    for x, y in zip(want, got):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    assert SortedRunMerger(threaded=threaded).result() is None


def test_merge_cost_is_linear_in_the_records():
    """Records written by merges: exactly proportional to the part size for a given number of
    sub-batches, and at most (1 + ceil(log2 S)) passes over all records."""
    pytest.importorskip("numba")
    written = {}
    for S in (1, 2, 5, 16):
        for k in (1000, 2000, 8000):
            m = SortedRunMerger(threaded=False, compiled_min=0)
            for p in _disjoint_parts(S, k):
                m.add(p)
            out = m.result()
            assert out[0].shape[0] == S * k and np.all(np.diff(out[0][:, -1].astype(np.int64)) == 1)
            written[S, k] = m.records_written
            assert m.records_written <= S * k * (1 + math.ceil(math.log2(S))) if S > 1 else m.records_written == 0
        # linear: twice (eight times) the records per sub-batch, twice (eight times) the work
        assert written[S, 2000] == 2 * written[S, 1000]
        assert written[S, 8000] == 8 * written[S, 1000]


def test_no_host_sort_on_the_compiled_path(monkeypatch):
    """The compiled path never sorts on the host (the reference sorts through keys.sort_order)."""
    pytest.importorskip("numba")

    def boom(*a, **k):
        raise AssertionError("host sort called")

    monkeypatch.setattr(counting, "sort_order", boom)
    m = SortedRunMerger(threaded=True, compiled_min=0)
    for p in _disjoint_parts(7, 300, W=1):
        m.add(p)
    assert m.result()[0].shape[0] == 2100


def test_one_sub_batch_is_concatenated_without_merging():
    """The constant keys bracket the device's sorted runs: a sub-batch is joined by concatenation (O(n))."""
    W = 2
    zero = (np.zeros((1, W), np.uint64), np.array([5], np.int64), np.array([3], np.uint64))
    ones = (np.full((1, W), np.iinfo(np.uint64).max, np.uint64), np.array([2], np.int64), np.array([9], np.uint64))
    mid = _disjoint_parts(1, 50, W)[0]
    mid[0][:, 0] = 1  # never the zero key
    joined = concat_ordered([zero, mid, ones])
    assert joined is not None and joined[0].shape[0] == 52
    np.testing.assert_array_equal(joined[1], np.r_[5, np.ones(50, np.int64), 2])
    assert concat_ordered([mid, zero]) is None  # not ordered: the caller merges instead
    assert concat_ordered([mid, mid]) is None  # a shared key is not "strictly increasing"
    assert concat_ordered([]) is None
    m = SortedRunMerger(threaded=False, compiled_min=0)
    m.add(joined)
    assert m.result() is joined and m.merges == 0


def test_worker_error_surfaces():
    m = SortedRunMerger(threaded=True, compiled_min=0)
    m.add(_disjoint_parts(1, 10, 1)[0])
    m.add(_disjoint_parts(1, 20, 2)[0])  # different key lengths: the merge fails in the worker
    with pytest.raises(ValueError):
        m.result()


def test_backend_count_range_merges_without_a_host_sort(emu, monkeypatch):
    """count_range over many sub-batches on the CUDA emulation: exact counts, and the host never sorts."""
    pytest.importorskip("numba")
    from fastpoly import MLP, make_plan
    from fastpoly.backends.cuda.backend import CupyBackend
    from fastpoly.backends.reference import count_range_reference

    plan = make_plan(MLP(3, (5, 5), activation="identity", weights="uniform", bias=False), None, seed=2)
    ref = count_range_reference(plan, 0, 900)
    monkeypatch.setattr(hostmerge, "COMPILED_MIN", 0)
    monkeypatch.setattr(counting, "sort_order", lambda *a, **k: (_ for _ in ()).throw(AssertionError("sorted")))
    be = CupyBackend(threads_per_block=32, max_blocks=2, max_sub_batch=97, device=emu.EmuDevice())
    got = be.count_range(plan, 0, 900)
    assert be.timings["sub_batches"] == 10 and be.timings["merge_records"] > 0
    assert (got.n_samples, got.n_accepted) == (ref.n_samples, ref.n_accepted)
    for f in ("keys", "counts", "first_index"):
        np.testing.assert_array_equal(getattr(got, f), getattr(ref, f))
