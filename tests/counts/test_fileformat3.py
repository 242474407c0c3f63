"""Counts file format 3 (compressed): byte-exact, streamed, every bit checked, read lazily block by block."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
import fastpoly.counts.fileformat as ff
from fastpoly.cli.main import main
from fastpoly.counts import CountsFileError, FunctionCounts, merge_files
from fastpoly.counts.fileformat import MAGIC3, read_counts_file, write_counts_file


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 7 records, so that small files have many blocks."""
    monkeypatch.setattr(ff, "BLOCK_RECORDS", 7)


@pytest.fixture(scope="module")
def c():
    return fastpoly.sample("3-4-1", n_samples=2000, seed=11, backend="numpy", progress=False)


@pytest.fixture
def whole_decodes(monkeypatch):
    """The names of lazily decoded arrays touched (each touch decodes a whole compressed file)."""
    touched = []
    real = FunctionCounts.__getattr__

    def spy(self, name):
        if self.__dict__.get("_packed") is not None and name in ("keys", "counts", "first_index"):
            touched.append(name)
        return real(self, name)

    monkeypatch.setattr(FunctionCounts, "__getattr__", spy)
    return touched


def _chunks(c, sizes):
    out, a = [], 0
    for s in sizes:
        out.append((c.keys[a:a + s], c.counts[a:a + s], c.first_index[a:a + s]))
        a += s
    out.append((c.keys[a:], c.counts[a:], c.first_index[a:]))
    return out


def test_round_trip_all_load_paths(c, tmp_path, small_blocks):
    data = c.to_bytes(compress=True)
    assert data.startswith(MAGIC3) and len(data) < len(c.to_bytes()) / 2
    assert FunctionCounts.from_bytes(data) == c
    c.save(tmp_path / "c.npz", compress=True)
    assert (tmp_path / "c.npz").read_bytes() == data
    assert FunctionCounts.load(tmp_path / "c.npz") == c
    m = FunctionCounts.load(tmp_path / "c.npz", mmap=True)
    assert m._lazy() is not None
    assert (m.n_distinct, len(m), m.n_words, m.meta, m.n_samples) == (c.n_distinct, len(c), c.n_words, c.meta,
                                                                      c.n_samples)
    assert m.top(5) == c.top(5) and m.hex(3) == c.hex(3)
    k, cnt, f = m.rows([0, 50, 8, 7])
    assert np.array_equal(k, c.keys[[0, 50, 8, 7]]) and np.array_equal(f, c.first_index[[0, 50, 8, 7]])
    got = list(m.iter_blocks(("counts", "keys"), 20))
    assert [a for a, _ in got] == list(range(0, c.n_distinct, 14))
    assert np.array_equal(np.concatenate([x[0] for _, x in got]), c.counts)
    assert m._lazy() is not None  # nothing above decoded the whole file
    assert np.array_equal(m.keys, c.keys) and m._lazy() is None  # first access decodes everything
    assert m == c


def test_bytes_are_a_function_of_the_content(c, tmp_path, small_blocks):
    want = c.to_bytes(compress=True)
    for i, sizes in enumerate([[], [1, 2, 3], [7, 7], [50, 0, 13], [c.n_distinct - 1]]):
        p = tmp_path / f"{i}.npz"
        assert write_counts_file(p, c._payload(), _chunks(c, sizes), c.n_words, compress=True) == c.n_distinct
        assert p.read_bytes() == want
    assert sorted(x.name for x in tmp_path.iterdir()) == [f"{i}.npz" for i in range(5)]  # no side files left


def test_header_is_format_2_header_with_version_3(c):
    h2 = read_counts_file("x", data=c.to_bytes()).header
    h3 = read_counts_file("x", data=c.to_bytes(compress=True)).header
    assert h3 == dict(h2, version=3)


def test_empty_and_wide_keys(tmp_path):
    e = FunctionCounts.empty(2, {"arch": None})
    assert FunctionCounts.from_bytes(e.to_bytes(compress=True)) == e
    e.save(tmp_path / "e.npz", compress=True)
    m = FunctionCounts.load(tmp_path / "e.npz", mmap=True)
    assert len(m) == 0 and m.n_words == 2 and m.top(3) == [] and list(m.iter_blocks()) == []
    w = fastpoly.sample("7-8-1", n_samples=300, seed=3, backend="numpy", progress=False)  # 128-bit keys
    assert w.n_words == 2 and FunctionCounts.from_bytes(w.to_bytes(compress=True)) == w


def test_writer_refuses_unsorted_stream(c, tmp_path):
    chunks = _chunks(c, [10])
    chunks = [chunks[1], chunks[0]]
    with pytest.raises(ValueError, match="strictly increasing"):
        write_counts_file(tmp_path / "x.npz", c._payload(), chunks, c.n_words, compress=True)
    assert list(tmp_path.iterdir()) == []


def _flipped(data, i, bit):
    d = bytearray(data)
    d[i] ^= 1 << bit
    return bytes(d)


@pytest.mark.slow
def test_every_single_bit_flip_and_truncation_is_refused(small_blocks):
    c = fastpoly.sample("2-1", n_samples=50, seed=1, backend="numpy", progress=False)
    data = c.to_bytes(compress=True)
    accepted = []
    for i in range(len(data)):
        for bit in range(8):
            try:
                FunctionCounts.from_bytes(_flipped(data, i, bit))
            except CountsFileError:
                continue
            accepted.append((i, bit))
    assert accepted == []
    for n in range(len(data)):
        with pytest.raises(CountsFileError):
            FunctionCounts.from_bytes(data[:n])
    with pytest.raises(CountsFileError):
        FunctionCounts.from_bytes(data + b"\0")


def test_bit_flips_refused_memory_mapped_with_path(c, tmp_path, small_blocks):
    data = c.to_bytes(compress=True)
    p = tmp_path / "f.npz"
    for i in range(0, len(data), 7):
        p.write_bytes(_flipped(data, i, i % 8))
        with pytest.raises(CountsFileError, match=str(p)):
            FunctionCounts.load(p, mmap=True)


def test_merge_files_reads_and_writes_compressed(tmp_path, small_blocks):
    a = fastpoly.sample("3-4-1", n_samples=700, seed=2, backend="numpy", progress=False)
    b = fastpoly.sample("3-4-1", n_samples=500, start=700, seed=2, backend="numpy", progress=False)
    a.save(tmp_path / "a.npz", compress=True)
    b.save(tmp_path / "b.npz")
    m = merge_files([tmp_path / "a.npz", tmp_path / "b.npz"], tmp_path / "m.npz", memory_budget="2k",
                    compress=True)
    want = a.merge(b)
    assert m == want
    assert (tmp_path / "m.npz").read_bytes() == want.to_bytes(compress=True)
    m2 = merge_files([tmp_path / "a.npz", tmp_path / "b.npz"], tmp_path / "m2.npz", memory_budget="2k")
    assert (tmp_path / "m2.npz").read_bytes() == want.to_bytes()
    assert m2 == want


def test_sample_compress_api_and_validation(tmp_path):
    with pytest.raises(ValueError, match="needs out"):
        fastpoly.sample("2-1", n_samples=10, backend="numpy", progress=False, compress=True)
    with pytest.raises(ValueError, match="True or False"):
        fastpoly.sample("2-1", n_samples=10, backend="numpy", progress=False, compress="yes", out=tmp_path / "x")
    ref = fastpoly.sample("3-4-1", n_samples=1500, seed=4, backend="numpy", progress=False)
    for budget in (None, "2k"):  # in memory, and spilled + streamed into the file
        out = tmp_path / f"c-{budget}.npz"
        r = fastpoly.sample("3-4-1", n_samples=1500, seed=4, backend="numpy", progress=False, out=out,
                            compress=True, memory_budget=budget, batch_size=200)
        assert r == ref
        assert out.read_bytes() == ref.to_bytes(compress=True)


def test_cli_analyze_and_plots_identical_for_both_formats(tmp_path, capsys):
    d2, d3 = tmp_path / "f2", tmp_path / "f3"
    assert main(["sample", "4-5-1", "--samples", "3000", "--backend", "numpy", "--out", str(d2),
                 "--no-progress", "--no-plot"]) == 0
    assert main(["sample", "4-5-1", "--samples", "3000", "--backend", "numpy", "--out", str(d3),
                 "--no-progress", "--no-plot", "--compress", "--memory-budget", "2k"]) == 0
    assert (d3 / "counts.npz").read_bytes()[:len(MAGIC3)] == MAGIC3
    assert FunctionCounts.load(d2 / "counts.npz") == FunctionCounts.load(d3 / "counts.npz")
    outs = {}
    for d in (d2, d3):
        capsys.readouterr()
        assert main(["analyze", str(d / "counts.npz"), "--top", "5", "--csv", str(d / "t.csv")]) == 0
        outs[d] = capsys.readouterr().out.replace(str(d), "DIR")
        for kind in ("rank", "complexity"):
            assert main(["plot", kind, str(d / "counts.npz"), "--out", str(d / f"{kind}.png")]) == 0
    assert outs[d2] == outs[d3]
    for name in ("t.csv", "rank.png", "complexity.png"):
        assert (d2 / name).read_bytes() == (d3 / name).read_bytes(), name


def test_commands_never_decode_a_whole_compressed_file(tmp_path, whole_decodes, small_blocks):
    """The streaming paths (sample's report and rank plot, analyze, --table, plots, merge) decode block by block.

    Touching ``.keys``/``.counts``/``.first_index`` of a lazily loaded compressed file decodes it all
    (the 1e8 run held 0.5 GB more than its budget that way, through a ``hasattr`` in the figures).
    """
    out = tmp_path / "o"
    f = str(out / "counts.npz")
    target = "0110100101101001" * 2
    cmds = [
        ["sample", "5-8-1", "--samples", "20000", "--memory-budget", "64KB", "--compress", "--out", str(out),
         "--no-progress", "--target", target, "--train-size", "4"],
        ["analyze", f],
        ["analyze", f, "--table", str(tmp_path / "t.csv"), "--min-count", "2"],
        ["merge", f, "--out", str(tmp_path / "m.npz"), "--compress"],
        *[["plot", kind, f, "--out", str(tmp_path / f"{kind}.png")] for kind in ("rank", "complexity", "ones", "error")],
    ]
    for cmd in cmds:
        assert main(cmd) == 0, cmd
        assert whole_decodes == [], (cmd, whole_decodes)
    assert FunctionCounts.load(f, mmap=True).n_distinct > 100  # many blocks of 7 records


def test_condition_streams_a_compressed_prior(tmp_path, whole_decodes, small_blocks):
    """``fastpoly condition`` on a compressed prior: block by block, and the same posterior as from format 2."""
    prior = fastpoly.sample("5-8-1", n_samples=20000, seed=5, backend="numba", progress=False)
    f2, f3 = tmp_path / "p2.npz", tmp_path / "p3.npz"
    prior.save(f2)
    prior.save(f3, compress=True)
    target = "0110100101101001" * 2
    outs = []
    for src, extra in ((f2, []), (f3, []), (f3, ["--compress"])):
        out = tmp_path / f"post-{len(outs)}.npz"
        assert main(["condition", str(src), "--target", target, "--train-rows", "1,4,9,30", "--out", str(out),
                     *extra]) == 0
        outs.append(FunctionCounts.load(out))
    assert whole_decodes == []
    assert outs[0] == outs[1] == outs[2] == prior.condition([1, 4, 9, 30], target=target)
    assert outs[0].n_accepted > 0


@pytest.mark.parametrize("n_in", [3, 7, 8], ids=lambda n: f"{2 ** n}-bit keys")
def test_count_finds_keys_by_binary_search_in_every_format(n_in, tmp_path, monkeypatch, small_blocks):
    """``count``/``probability`` of present and absent keys: the same from memory, a mapped file and a compressed one,
    and a compressed file is never decoded whole for it."""
    c = fastpoly.sample(f"{n_in}-6-1", n_samples=3000, seed=2, backend="numba", progress=False)
    c.save(tmp_path / "f2.npz")
    c.save(tmp_path / "f3.npz", compress=True)
    loaded = [c, FunctionCounts.load(tmp_path / "f2.npz", mmap=True), FunctionCounts.load(tmp_path / "f3.npz", mmap=True)]
    monkeypatch.setattr(FunctionCounts, "__getattr__", lambda self, name: (_ for _ in ()).throw(AssertionError(name)))
    rng = np.random.default_rng(0)
    probes = [c.keys[i] for i in [0, c.n_distinct - 1, *rng.integers(0, c.n_distinct, 30)]]
    absent = rng.integers(0, 2**63, (30, c.n_words), dtype=np.uint64)
    if 2 ** n_in < 64:
        absent &= np.uint64((1 << 2 ** n_in) - 1)
    for key in probes + list(absent):
        hit = np.flatnonzero(np.all(c.keys == key[None, :], axis=1))  # the linear scan as the oracle
        want = int(c.counts[hit[0]]) if hit.size else 0
        assert [x.count(key) for x in loaded] == [want] * 3, key
    assert all(c.count(k) > 0 for k in probes)
