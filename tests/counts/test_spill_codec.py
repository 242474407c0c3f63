"""Spilled runs in the block codec: round trips across block boundaries, one-pass stream runs, old runs, damage."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpoly.backends.counting import count_keys
from fastpoly.counts import spill
from fastpoly.counts.spill import RunReader, _write_stream_run, merge_runs, run_sha256, write_run


def _triple(rng, n, W):
    k = rng.integers(0, 2**63, (n, W), dtype=np.uint64)
    keys, counts, first = count_keys(k, np.arange(n, dtype=np.uint64))
    counts[::5] = 2**63 - 1
    first[::7] = 2**64 - 1
    return keys, counts, first


@pytest.mark.parametrize("W", [1, 2])
def test_run_round_trip_in_any_chunks(tmp_path, monkeypatch, W):
    monkeypatch.setattr(spill, "RUN_BLOCK", 16)
    monkeypatch.setattr(spill, "_RUN_GROUP", 3)
    t = _triple(np.random.default_rng(W), 200, W)
    p = tmp_path / "a.run"
    info = write_run(p, *t)
    assert info["n"] == t[0].shape[0] and info["sha256"] == run_sha256(p)
    assert os.path.getsize(p) < 24 + t[0].shape[0] * spill.record_bytes(W)
    for chunk in (1, 15, 16, 17, 1000):
        r = RunReader(p, chunk)
        parts = []
        while r.remaining:
            parts.append(r.read())
            assert parts[-1][0].shape[0] <= chunk
        assert r.read()[0].shape == (0, W)
        for j in range(3):
            assert np.array_equal(np.concatenate([x[j] for x in parts]), t[j])
    # a stream run (multi-pass merges) has the same bytes, whatever the chunking of the stream
    q = tmp_path / "b.run"
    _write_stream_run(q, [(t[0][a:a + 7], t[1][a:a + 7], t[2][a:a + 7]) for a in range(0, t[0].shape[0], 7)], W)
    assert q.read_bytes() == p.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["a.run", "b.run"]


def test_version_1_runs_are_still_read(tmp_path):
    k, c, f = _triple(np.random.default_rng(0), 50, 2)
    p = tmp_path / "old.run"
    p.write_bytes(spill.RUN_MAGIC_V1 + np.array([2, k.shape[0]], "<u8").tobytes() + k.astype("<u8").tobytes()
                  + c.astype("<i8").tobytes() + f.astype("<u8").tobytes())
    got = list(merge_runs([str(p)], 4096, 2))
    assert all(np.array_equal(np.concatenate([x[j] for x in got]), (k, c, f)[j]) for j in range(3))


def test_damaged_runs_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(spill, "RUN_BLOCK", 16)
    t = _triple(np.random.default_rng(1), 100, 1)
    p = tmp_path / "x.run"
    write_run(p, *t)
    raw = p.read_bytes()
    for bad, match in ((raw[:-1], "truncated"), (raw + b"\0", "truncated|damaged"),
                       (raw[:16] + np.array([5], "<u8").tobytes() + raw[24:], "damaged")):
        p.write_bytes(bad)
        with pytest.raises(ValueError, match=match):
            list(merge_runs([str(p)], 4096, 1))
    d = bytearray(raw)
    d[24 + 32] = 0xFF  # the first key's length byte
    p.write_bytes(bytes(d))
    with pytest.raises(ValueError, match="damaged run file"):
        list(merge_runs([str(p)], 4096, 1))


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), max_size=12), block=st.integers(1, 9))
def test_block_aligned_recuts_without_losing_or_reordering(sizes, block):
    from fastpoly.counts.spill import block_aligned

    n = sum(sizes)
    keys = np.arange(2 * n, dtype=np.uint64).reshape(n, 2)
    counts = np.arange(1, n + 1, dtype=np.int64)
    first = np.arange(n, dtype=np.uint64) * 3
    chunks, a = [], 0
    for s in sizes:
        chunks.append((keys[a:a + s], counts[a:a + s], first[a:a + s]))
        a += s
    pieces = list(block_aligned(iter(chunks), block))
    lens = [p[0].shape[0] for p in pieces]
    assert all(m > 0 for m in lens)
    assert all(m % block == 0 for m in lens[:-1]), lens
    got = [np.concatenate([p[j] for p in pieces]) if pieces else x[:0] for j, x in enumerate((keys, counts, first))]
    assert np.array_equal(got[0], keys) and np.array_equal(got[1], counts) and np.array_equal(got[2], first)
