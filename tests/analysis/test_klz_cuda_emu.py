"""The CUDA K_LZ kernel (``kernels/klz.cu``) from Python, run by the CPU emulation, against Numba and the reference.

``fastpoly.backends.cuda.klz.complexity_ints_cuda(..., device=EmuDevice())`` runs the real kernel
source through the same host code as on a GPU (chunked uploads, argument types checked against the
kernel's parameters, grid-stride launches, downloads).  Every integer is compared exactly with the
Numba kernel and the Python reference: phrase sums, T and critical inputs, on structured and
random strings of 2..256 characters (up to 4 words), d = 0 and Boolean d = 3..8, empty input and
forced tiny chunks and grids; then the ``backend`` option of the analysis (``complexity_ints``,
``phrase_sums``, ``summarize``, ``fastpoly analyze``): the same numbers on every backend, and the
errors for bad names and a missing GPU.  What the emulator cannot show (NVRTC, the hardware) is for
``tests/analysis/test_klz_cuda.py`` on a GPU.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_klz import LENGTHS, _strings  # the structured strings of the Numba tests (tests/ is on sys.path)

from fastpoly.analysis.complexity import (
    _phrase_sums_py,
    complexity_ints,
    critical_counts,
    klz,
    phrase_sums,
    resolve_analysis_backend,
)
from fastpoly.analysis.histograms import summarize
from fastpoly.backends import BackendUnavailable, availability
from fastpoly.backends.cuda.klz import KLZ_KERNEL, MAX_WORDS, complexity_ints_cuda
from fastpoly.backends.numba import klz as numba_klz
from fastpoly.keys import pack_bits

pytestmark = pytest.mark.cuda_emu


@pytest.fixture
def dev(emu):
    return emu.EmuDevice()


def _boolean_d(n):
    return n.bit_length() - 1 if n >= 8 and n & (n - 1) == 0 else 0


@pytest.mark.parametrize("n", LENGTHS, ids=lambda n: f"n={n}")
def test_structured_strings_equal_numba_and_reference(dev, n):
    bits = _strings(n, np.random.default_rng(300 + n))
    keys = pack_bits(bits.astype(bool))
    for d in sorted({0, _boolean_d(n)}):
        s, t, c = complexity_ints_cuda(keys, n, d, dev)
        assert s.dtype == t.dtype == c.dtype == np.int64
        ns, nt, nc = numba_klz.complexity_ints(keys, n, d)
        assert np.array_equal(s, ns) and np.array_equal(t, nt) and np.array_equal(c, nc)
        assert np.array_equal(s, _phrase_sums_py(bits))
        assert np.array_equal(t, bits.sum(axis=1))
        assert np.array_equal(c, critical_counts(keys, n) if d else np.zeros(len(keys), np.int64))


@pytest.mark.parametrize("n,d", [(128, 7), (256, 8), (64, 6), (8, 3), (100, 0), (200, 0)],
                         ids=lambda v: str(v))
def test_random_keys_equal_numba(dev, n, d):
    rng = np.random.default_rng(n + d)
    W = (n + 63) // 64
    keys = rng.integers(0, 2**64, size=(3000, W), dtype=np.uint64)
    if n % 64:
        keys[:, -1] &= np.uint64((1 << (n % 64)) - 1)
    got = complexity_ints_cuda(keys, n, d, dev)
    ref = numba_klz.complexity_ints(keys, n, d)
    for g, r in zip(got, ref):
        assert np.array_equal(g, r)
    assert np.array_equal(got[0][:300], _phrase_sums_py(np.unpackbits(
        keys[:300].astype("<u8").view(np.uint8), axis=1, bitorder="little")[:, :n]))


def test_empty_input_launches_nothing(dev):
    for W, n in ((1, 64), (2, 128), (4, 256)):
        s, t, c = complexity_ints_cuda(np.zeros((0, W), np.uint64), n, 0, dev)
        assert s.shape == t.shape == c.shape == (0,) and s.dtype == np.int64
    assert dev.launches == []
    for be in (dev, "numba", "numpy"):
        ci = complexity_ints(np.zeros((0, 2), np.uint64), 128, backend=be)
        assert {k: v.shape for k, v in ci.items()} == {"sums": (0,), "ones": (0,), "crit": (0,)}


@pytest.mark.parametrize("chunk,threads,max_blocks", [(37, 32, 2), (1, 32, 1), (1000, 64, 3), (5000, 256, None)],
                         ids=lambda v: str(v))
def test_chunks_and_grids(dev, chunk, threads, max_blocks):
    rng = np.random.default_rng(chunk)
    keys = rng.integers(0, 2**64, size=(1000 if chunk > 1 else 70, 2), dtype=np.uint64)
    keys[::7] = 0  # constants among them
    got = complexity_ints_cuda(keys, 128, 7, dev, chunk=chunk, threads=threads, max_blocks=max_blocks)
    ref = numba_klz.complexity_ints(keys, 128, 7)
    for g, r in zip(got, ref):
        assert np.array_equal(g, r)
    assert len(dev.launches) == -(-len(keys) // chunk)
    for name, grid, block, smem in dev.launches:
        assert name == KLZ_KERNEL and block == (threads, 1, 1) and smem == 0
        if max_blocks:
            assert grid[0] <= max_blocks


def test_bad_input(dev):
    with pytest.raises(ValueError, match="at most 16 words"):
        complexity_ints_cuda(np.zeros((2, MAX_WORDS + 1), np.uint64), 64 * (MAX_WORDS + 1), 0, dev)
    with pytest.raises(ValueError, match="n must be"):
        complexity_ints_cuda(np.zeros((2, 2), np.uint64), 129, 0, dev)
    with pytest.raises(ValueError, match="boolean_d"):
        complexity_ints_cuda(np.zeros((2, 2), np.uint64), 128, 6, dev)
    with pytest.raises(ValueError, match="chunk"):
        complexity_ints_cuda(np.zeros((2, 2), np.uint64), 128, 7, dev, chunk=0)
    with pytest.raises(ValueError, match="threads"):
        complexity_ints_cuda(np.zeros((2, 2), np.uint64), 128, 7, dev, threads=48)
    with pytest.raises(ValueError, match="keys must be"):
        complexity_ints_cuda(np.zeros(4, np.uint64), 128, 7, dev)


# --- the backend option of the analysis ----------------------------------------------------------
BACKENDS = ["numpy", "numba", "cuda-emu"]


@pytest.fixture(params=BACKENDS, ids=lambda b: f"backend={b}")
def ints_backend(request):
    """A value for ``backend=``: a name, or the emulated CUDA device (meaning ``"cupy"`` on it)."""
    if request.param == "cuda-emu":
        return request.getfixturevalue("emu").EmuDevice()
    return request.param


@pytest.mark.parametrize("n", [8, 64, 128, 256], ids=lambda n: f"n={n}")
@pytest.mark.parametrize("order", ["rows", "msb"])
def test_complexity_ints_same_on_every_backend(ints_backend, n, order):
    bits = _strings(n, np.random.default_rng(n + 7), k=150)
    keys = pack_bits(bits.astype(bool))
    got = complexity_ints(keys, n, boolean=True, order=order, backend=ints_backend)
    ref = complexity_ints(keys, n, boolean=True, order=order, backend="numpy")
    assert set(got) == set(ref) == {"sums", "ones", "crit"}
    for k in ref:
        assert got[k].dtype == np.int64 and np.array_equal(got[k], ref[k]), k
    assert np.array_equal(phrase_sums(keys, n, backend=ints_backend), _phrase_sums_py(bits))
    assert np.array_equal(klz(keys, n, order=order, backend=ints_backend), klz(keys, n, order=order, compiled=False))
    nb = complexity_ints(keys, n, boolean=False, backend=ints_backend)
    assert set(nb) == {"sums", "ones"} and np.array_equal(nb["sums"], _phrase_sums_py(bits))


def _counts(n_funcs, seed, conditioned=False):
    import fastpoly
    from fastpoly.counts import FunctionCounts
    from fastpoly.keys import sort_order

    X = fastpoly.boolean_inputs(7)
    prior = fastpoly.sample(fastpoly.MLP(7, [3]), X, 200, seed=3, backend="numpy")
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**64, size=(n_funcs, 2), dtype=np.uint64)
    k = n_funcs // 4
    keys[:k] = np.uint64(1) << rng.integers(0, 64, size=(k, 2), dtype=np.uint64)
    keys[k] = 0
    keys = np.unique(keys, axis=0)
    keys = keys[sort_order(keys)]
    m = keys.shape[0]
    cnt = rng.geometric(0.3, size=m).astype(np.int64)
    cnt[rng.integers(0, m, size=3)] = rng.integers(100, 900, size=3)
    c = FunctionCounts(keys, cnt, rng.permutation(3 * m)[:m].astype(np.uint64), int(cnt.sum()) + 5, int(cnt.sum()),
                       dict(prior.meta))
    if conditioned:
        tgt = (np.arange(128) % 3 == 0).astype(np.int64)
        c = c.condition([4, 9, 77], target=tgt)
    return c


def _same_summary(a, b):
    for f in ("n_samples", "n_accepted", "n_distinct", "n_bits", "order", "boolean", "n_test"):
        assert getattr(a, f) == getattr(b, f), f
    for f in ("ones_weight", "crit_weight", "max_count", "max_first", "top", "error_weight"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), f
    for f in ("count_sum_table", "error_table"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is not None:
            for u, v in zip(x, y):
                assert u.dtype == v.dtype and np.array_equal(u, v), f


@pytest.mark.parametrize("conditioned", [False, True], ids=["prior", "conditioned"])
@pytest.mark.parametrize("order", ["rows", "msb"])
def test_summarize_emulated_cuda_equals_numba(emu, conditioned, order):
    c = _counts(1500, 11, conditioned)
    ref = summarize(c, order=order, block=400, backend="numba")
    got = summarize(c, order=order, block=400, backend=emu.EmuDevice())
    _same_summary(ref, got)
    _same_summary(ref, summarize(c, order=order, block=1 << 20, backend="numpy"))


def test_backend_names_and_errors(monkeypatch):
    monkeypatch.delenv("FASTPOLY_BACKEND", raising=False)
    assert resolve_analysis_backend("auto") == ("numba", None)  # Numba is installed here; never cupy by itself
    assert resolve_analysis_backend("numpy") == ("numpy", None)
    keys = np.zeros((3, 2), np.uint64)
    for bad in ("gpu", "", None, 3):
        with pytest.raises(ValueError, match="valid backends: numpy, numba, cupy, auto"):
            complexity_ints(keys, 128, backend=bad)
        with pytest.raises(ValueError, match="valid backends"):
            phrase_sums(keys, 128, backend=bad)
    with pytest.raises(ValueError, match="valid backends"):
        summarize(_counts(50, 1), backend="cuda")
    with pytest.raises(ValueError, match="not both"):
        phrase_sums(keys, 128, compiled=True, backend="numpy")
    monkeypatch.setenv("FASTPOLY_BACKEND", "numpy")  # the one override of every "auto"
    assert resolve_analysis_backend("auto") == ("numpy", None)


def test_cupy_without_gpu_says_why():
    ok, why = availability("cupy")
    if ok:
        pytest.skip("a GPU is available here (tests/analysis/test_klz_cuda.py runs the cupy backend)")
    keys = np.zeros((3, 2), np.uint64)
    with pytest.raises(BackendUnavailable, match=f"backend 'cupy' is not available: {why}"):
        complexity_ints(keys, 128, backend="cupy")
    with pytest.raises(BackendUnavailable, match="not available"):
        summarize(_counts(50, 1), backend="cupy")
    with pytest.raises(BackendUnavailable, match="not available"):
        complexity_ints_cuda(keys, 128, 7)  # no device given: the default one


def test_cli_backend_option(tmp_path, capsys):
    from fastpoly.cli.main import main

    path = tmp_path / "c.npz"
    _counts(800, 5).save(path)
    outs = {}
    for be in ("numpy", "numba", "auto"):
        assert main(["analyze", str(path), "--top", "5", "--backend", be]) == 0
        outs[be] = capsys.readouterr().out
    assert outs["numpy"] == outs["numba"] == outs["auto"]
    assert "Spearman" in outs["numpy"]
    assert main(["analyze", str(path), "--backend", "gpu"]) == 2
    assert "invalid choice: 'gpu'" in capsys.readouterr().err
    assert main(["plot", "rank", str(path), "--backend", "numpy", "--out", str(tmp_path / "r.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "takes no --backend" in err[0]
    assert main(["plot", "complexity", str(path), "--backend", "numpy", "--out", str(tmp_path / "k.png")]) == 0
    if not availability("cupy")[0]:
        capsys.readouterr()
        assert main(["analyze", str(path), "--backend", "cupy"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "backend 'cupy' is not available" in err[0]
