"""Counts file format 2: every byte of a file is covered by its checks (issue 10, case 1)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastpoly
from fastpoly.cli.main import main
from fastpoly.counts import CountsFileError, FunctionCounts
from fastpoly.counts.fileformat import ALIGN, FORMAT_VERSION

V1_FILE = Path(__file__).resolve().parents[1] / "data" / "counts-v1-3-4-1-seed11-n300.npz"


@pytest.fixture(scope="module")
def small():
    c = fastpoly.sample("2-1", n_samples=50, seed=1, backend="numpy", progress=False)
    return c, c.to_bytes()


def _flipped(data, i, bit):
    d = bytearray(data)
    d[i] ^= 1 << bit
    return bytes(d)


def test_format_version_and_numpy_compatibility(small):
    c, data = small
    assert FORMAT_VERSION == 2
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == ["header.npy", "keys.npy", "counts.npy", "first_index.npy", "sha256.npy"]
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        assert np.array_equal(z["keys"], c.keys) and np.array_equal(z["counts"], c.counts)
        assert np.array_equal(z["first_index"], c.first_index)
    assert FunctionCounts.from_bytes(data) == c


def test_memory_mapped_arrays_are_aligned(tmp_path):
    c = fastpoly.sample("3-4-1", n_samples=300, seed=11, backend="numpy", progress=False)
    c.save(tmp_path / "c.npz")
    m = FunctionCounts.load(tmp_path / "c.npz", mmap=True)
    assert m == c
    for a in (m.keys, m.counts, m.first_index):
        assert a.flags.aligned and (a.ctypes.data - m.keys.base.ctypes.data) % 8 == 0
    raw = (tmp_path / "c.npz").read_bytes()
    assert raw.index(np.asarray(c.counts, "<i8").tobytes()) % ALIGN == 0


@pytest.mark.slow
def test_every_single_bit_flip_is_refused_in_memory(small):
    """All 8 x len(file) one-bit changes: each is refused (the format has no free padding)."""
    _, data = small
    accepted = []
    for i in range(len(data)):
        for bit in range(8):
            try:
                FunctionCounts.from_bytes(_flipped(data, i, bit))
            except CountsFileError:
                continue
            accepted.append((i, bit))
    assert accepted == []


@pytest.mark.slow
def test_bit_flips_and_truncations_are_refused_memory_mapped(small, tmp_path):
    """One bit of every byte (rotating bit position) and every 3rd truncation, through the mmap path."""
    _, data = small
    p = tmp_path / "f.npz"
    for i in range(len(data)):
        p.write_bytes(_flipped(data, i, i % 8))
        with pytest.raises(CountsFileError):
            FunctionCounts.load(p, mmap=True)
    for n in range(0, len(data), 3):
        p.write_bytes(data[:n])
        with pytest.raises(CountsFileError):
            FunctionCounts.load(p, mmap=True)


@pytest.mark.slow
def test_every_bit_of_the_npy_headers_is_checked_memory_mapped(small, tmp_path):
    """The 0.1.0 hole: '<' -> '>' in a member's descr (one bit) was accepted by the mmap path."""
    _, data = small
    p = tmp_path / "f.npz"
    starts = [i for i in range(len(data)) if data.startswith(b"\x93NUMPY", i)]
    assert len(starts) == 5
    for s in starts:
        for i in range(s, s + 64):  # magic, length, descr, shape
            for bit in range(8):
                p.write_bytes(_flipped(data, i, bit))
                with pytest.raises(CountsFileError):
                    FunctionCounts.load(p, mmap=True)


@pytest.mark.parametrize("member", ["keys", "counts"])
def test_cli_analyze_and_merge_refuse_a_byte_swapped_member(small, tmp_path, capsys, member):
    c, data = small
    at = data.index(b"'descr': '<", data.index(f"{member}.npy".encode())) + len("'descr': '")
    bad = bytearray(data)
    bad[at] ^= ord("<") ^ ord(">")  # one bit
    p = tmp_path / "bad.npz"
    p.write_bytes(bytes(bad))
    good = tmp_path / "good.npz"
    c.save(good)
    assert main(["analyze", str(p)]) == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err and err.count("\n") == 1 and "checksum verified" not in err
    assert main(["merge", str(p), str(good), "--out", str(tmp_path / "m.npz")]) == 2
    assert not (tmp_path / "m.npz").exists()
    assert main(["condition", str(p), "--target", "0" * 4, "--train-rows", "1", "--out", str(tmp_path / "c.npz")]) == 2
    assert main(["plot", "rank", str(p), "--out", str(tmp_path / "r.png")]) == 2
    assert not (tmp_path / "c.npz").exists() and not (tmp_path / "r.png").exists()


@pytest.mark.parametrize("mmap", [False, True])
def test_version_1_files_are_still_read_and_verified(mmap, tmp_path):
    ref = fastpoly.sample("3-4-1", n_samples=300, seed=11, backend="numpy", progress=False)
    old = FunctionCounts.load(V1_FILE, mmap=mmap)
    assert old == ref and old.meta == ref.meta
    assert old.to_bytes() == ref.to_bytes()  # re-saved as format 2
    data = V1_FILE.read_bytes()
    p = tmp_path / "v1.npz"
    at = data.index(b"'descr': '<", data.index(b"keys.npy")) + len("'descr': '")
    p.write_bytes(_flipped(data, at, 1))  # '<' -> '>' : refused by the dtype check
    with pytest.raises(CountsFileError, match="dtype"):
        FunctionCounts.load(p, mmap=mmap)
    at = data.index(np.asarray(ref.counts, "<i8").tobytes())
    p.write_bytes(_flipped(data, at, 0))
    with pytest.raises(CountsFileError):
        FunctionCounts.load(p, mmap=mmap)
