"""Counting beyond RAM: sorted runs, bounded-memory k-way merge, streamed counts files, bad files."""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import fastpoly
from fastpoly import MLP, FunctionCounts
from fastpoly.counts import spill
from fastpoly.counts.merge import merge_sorted_counts
from fastpoly.counts.spill import (
    CountAccumulator,
    SpillError,
    merge_runs,
    parse_memory,
    write_run,
)
from fastpoly.counts.store import CountsFileError, merge_files

TINY = MLP(3, (4,))


def _sample(arch=TINY, n=3000, seed=5, **kw):
    kw.setdefault("backend", "numpy")
    kw.setdefault("progress", False)
    return fastpoly.sample(arch, n_samples=n, seed=seed, **kw)


def _random_runs(rng, n_runs, W, n_keys=200, space=400):
    """Sorted unique runs drawn from a small key space (so runs share keys)."""
    runs = []
    for _ in range(n_runs):
        k = rng.integers(0, space, size=(n_keys, W)).astype(np.uint64)
        k[:, 0] |= rng.integers(0, 2**63, size=n_keys).astype(np.uint64) & np.uint64(0x8000000000000000)
        idx = rng.integers(0, 10**6, size=n_keys).astype(np.uint64)
        from fastpoly.backends.counting import count_keys

        runs.append(count_keys(k, idx))
    return runs


@pytest.mark.parametrize("W", [1, 2, 3])
@pytest.mark.parametrize("budget", [1024, 4096, 1 << 20])
def test_kway_merge_equals_in_memory_merge(tmp_path, W, budget):
    rng = np.random.default_rng(W * 1000 + budget)
    runs = _random_runs(rng, 23, W)
    expect = merge_sorted_counts(runs)
    paths = []
    for i, r in enumerate(runs[:-3]):
        p = tmp_path / f"r{i}.run"
        write_run(p, *r)
        paths.append(str(p))
    srcs = paths + runs[-3:]  # files and in-memory parts mixed
    chunks = list(merge_runs(srcs, budget, W, tmpdir=str(tmp_path)))
    got = tuple(np.concatenate([c[j] for c in chunks]) for j in range(3))
    for a, b in zip(got, expect):
        np.testing.assert_array_equal(a, b)
    # bounded memory: no chunk is larger than the budget's worth of records
    rb = spill.record_bytes(W)
    assert max(c[0].shape[0] for c in chunks) <= max(8, budget // rb)
    # intermediate runs of multi-pass merges are removed
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)


@pytest.mark.parametrize("arch,n", [(TINY, 3000), (MLP(5, (6,)), 2000), (MLP(7, (4,)), 1500)])
def test_tiny_memory_budget_gives_identical_counts_file(tmp_path, arch, n):
    ref = _sample(arch, n)
    got = _sample(arch, n, memory_budget=1024, batch_size=64)
    assert got.info["spilled_runs"] > 5
    assert got.to_bytes() == ref.to_bytes()
    out = tmp_path / "c.npz"
    streamed = _sample(arch, n, memory_budget="1k", batch_size=64, out=out)
    assert isinstance(streamed.keys, np.memmap)
    assert out.read_bytes() == ref.to_bytes()
    assert streamed == ref


def test_accumulator_spills_and_respects_budget(tmp_path):
    rng = np.random.default_rng(1)
    acc = CountAccumulator(1, memory_budget=2048, spill_dir=str(tmp_path))
    runs = _random_runs(rng, 10, 1, n_keys=150, space=10**6)
    for i, r in enumerate(runs):
        acc.add(*r, 150, 150, i * 150, (i + 1) * 150)
        assert acc.mem_records * spill.record_bytes(1) <= 2048 or acc.pending
    assert len(acc.runs) >= 5
    k, c, f = acc.result_arrays()
    ek, ec, ef = merge_sorted_counts(runs)
    np.testing.assert_array_equal(k, ek)
    np.testing.assert_array_equal(c, ec)
    np.testing.assert_array_equal(f, ef)
    assert acc.ranges == [[0, 1500]]
    acc.cleanup()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".run")]


def test_parse_memory():
    assert parse_memory("2GB") == 2 * 2**30
    assert parse_memory("64k") == 65536
    assert parse_memory(4096) == 4096
    assert parse_memory(None) is None
    for bad in ("lots", -5, 10, True, "1.5.3MB"):
        with pytest.raises(ValueError):
            parse_memory(bad)


def test_disk_full_while_spilling_is_clear_and_keeps_checkpoint(tmp_path, monkeypatch):
    ck = tmp_path / "ck"
    ref = _sample(TINY, 3000)
    # a first, partial run leaves a valid checkpoint
    first = _sample(TINY, 3000, batch_size=100, checkpoint=ck, checkpoint_every=0, memory_budget=1024,
                    checkpoint_samples=100)
    assert first == ref
    # a new job: checkpoint after every batch; the disk "fills up" after some writes
    ck2 = tmp_path / "ck2"
    real = spill._write_chunks
    calls = {"n": 0}

    def full(fh, arrays):
        calls["n"] += 1
        if calls["n"] > 12:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fh, arrays)

    monkeypatch.setattr(spill, "_write_chunks", full)
    with pytest.raises(SpillError, match="disk full"):
        _sample(TINY, 3000, batch_size=100, checkpoint=ck2, checkpoint_every=0, memory_budget=1024)
    assert not [p for p in os.listdir(ck2) if p.startswith(".tmp-")]
    monkeypatch.setattr(spill, "_write_chunks", real)
    from fastpoly.run.checkpoint import Checkpoint

    saved = Checkpoint.open(ck2)
    assert saved.state is not None and 0 < saved.state["n_samples"] < 3000
    again = _sample(TINY, 3000, batch_size=100, checkpoint=ck2, resume=True, memory_budget=1024)
    assert again.to_bytes() == ref.to_bytes()


def test_merge_files_and_cli_merge(tmp_path):
    whole = _sample(TINY, 3000)
    a = _sample(TINY, 1000)
    b = _sample(TINY, 1200, start=1000)
    c = _sample(TINY, 800, start=2200)
    paths = []
    for i, part in enumerate((c, a, b)):
        p = tmp_path / f"p{i}.npz"
        part.save(p)
        paths.append(str(p))
    m = merge_files(paths, tmp_path / "m.npz", memory_budget=1024)
    assert (tmp_path / "m.npz").read_bytes() == whole.to_bytes()
    assert m == whole
    from fastpoly.cli.main import main

    assert main(["merge", *paths, "--out", str(tmp_path / "m2.npz"), "--memory-budget", "2k"]) == 0
    assert (tmp_path / "m2.npz").read_bytes() == whole.to_bytes()
    # overlap refused
    with pytest.raises(ValueError, match="overlap"):
        merge_files([paths[1], paths[1]], tmp_path / "bad.npz")


def test_merge_incompatible_raises():
    a = _sample(TINY, 200)
    with pytest.raises(ValueError, match="arch"):
        a.merge(_sample(MLP(3, (5,)), 200, start=200))
    with pytest.raises(ValueError, match="train"):
        a.merge(_sample(TINY, 200, start=200, train=([0], [1])))
    with pytest.raises(ValueError, match="overlap"):
        a.merge(_sample(TINY, 200, start=100))
    other_inputs = _sample(TINY, 200, start=200, X=fastpoly.boolean_inputs(3, centered=True))
    with pytest.raises(ValueError, match="inputs_digest"):
        a.merge(other_inputs)


@pytest.mark.parametrize("mmap", [False, True])
def test_truncated_or_tampered_counts_file_raises(tmp_path, mmap):
    c = _sample(TINY, 500)
    p = tmp_path / "c.npz"
    c.save(p)
    data = p.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CountsFileError):
        FunctionCounts.load(tmp_path / "trunc.npz", mmap=mmap)
    # flip one byte inside the counts array: caught (zip CRC or checksum)
    bad = bytearray(data)
    pos = data.index(np.asarray(c.counts, "<i8").tobytes())
    bad[pos] ^= 1
    (tmp_path / "flip.npz").write_bytes(bytes(bad))
    with pytest.raises(CountsFileError):
        FunctionCounts.load(tmp_path / "flip.npz", mmap=mmap)
    # the counts edited in place: the sha256 digest is checked before the zip framing (CRCs)
    bad = bytearray(data)
    bad[pos:pos + 8] = np.asarray([c.counts[0] + 1], "<i8").tobytes()
    (tmp_path / "edit.npz").write_bytes(bytes(bad))
    with pytest.raises(CountsFileError, match="checksum"):
        FunctionCounts.load(tmp_path / "edit.npz", mmap=mmap)
    # a well-formed zip (valid CRCs) whose counts were edited
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["counts"] = arrays["counts"].copy()
    arrays["counts"][0] += 1
    np.savez(tmp_path / "tamper.npz", **arrays)
    with pytest.raises(CountsFileError):
        FunctionCounts.load(tmp_path / "tamper.npz", mmap=mmap)
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(CountsFileError):
        FunctionCounts.load(tmp_path / "junk.npz", mmap=mmap)
    assert FunctionCounts.load(p, mmap=mmap) == c


def test_corrupt_run_file_refused(tmp_path):
    k, cnt, f = _random_runs(np.random.default_rng(3), 1, 1)[0]
    p = tmp_path / "x.run"
    write_run(p, k, cnt, f)
    raw = p.read_bytes()
    p.write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="truncated"):
        list(merge_runs([str(p)], 4096, 1))
    p.write_bytes(b"XXXXXXXX" + raw[8:])
    with pytest.raises(ValueError, match="not a fastpoly run"):
        list(merge_runs([str(p)], 4096, 1))
