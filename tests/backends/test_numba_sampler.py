"""Numba backend: bit-exact RNG/FMA, fused sampler vs the NumPy reference, counting, hash-table stress."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import numba  # noqa: E402

import fastpoly  # noqa: E402
from fastpoly.arch import boolean_inputs  # noqa: E402
from fastpoly.backends import get_backend  # noqa: E402
from fastpoly.backends.counting import count_keys  # noqa: E402
from fastpoly.backends.reference import count_range_reference, sample_keys_reference
from fastpoly.plan import make_plan  # noqa: E402
from fastpoly.stream import fmath, rng  # noqa: E402


@pytest.fixture(scope="module")
def nb():
    return get_backend("numba")


@pytest.fixture(params=[1, 2], ids=lambda n: f"threads={n}")
def threads(request):
    old = numba.get_num_threads()
    n = min(request.param, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    yield n
    numba.set_num_threads(old)


# --- arithmetic building blocks --------------------------------------------------------------


def test_fma_intrinsic_correctly_rounded():
    from fastpoly.backends.numba.jit import fma, jit

    @jit(cache=False)
    def fma_arr(a, b, c, out):
        for i in range(a.shape[0]):
            out[i] = fma(a[i], b[i], c[i])

    f32 = np.float32
    g = np.random.default_rng(0)
    a = g.standard_normal(200_000).astype(f32)
    b = g.standard_normal(200_000).astype(f32)
    c = (g.standard_normal(200_000) * 10.0 ** g.integers(-8, 8, 200_000)).astype(f32)
    # midpoint cases: a*b = 1 + 2**-11 + 2**-24 exactly; c tips the tie
    one = f32(1 + 2**-12)
    a = np.concatenate([a, [one, one, one, f32(2**-70), f32(3.0)]]).astype(f32)
    b = np.concatenate([b, [one, one, one, f32(2**-70), f32(1 / 3)]]).astype(f32)
    c = np.concatenate([c, [f32(2**-60), f32(-(2**-60)), f32(0.0), f32(2**-140), f32(-1.0)]]).astype(f32)
    out = np.empty_like(a)
    fma_arr(a, b, c, out)
    assert np.array_equal(out.view(np.uint32), fmath.fma32(a, b, c).view(np.uint32))
    assert out[-5] == f32(1 + 2**-11 + 2**-23)  # rounds up only because of c = 2**-60
    assert out[-4] == f32(1 + 2**-11)


def test_log_and_sincos_exhaustive():
    from fastpoly.backends.numba.rng import log_odd24_array, sincos2pi_odd24_array

    n = np.arange(2**23, dtype=np.uint32) * 2 + 1
    assert np.array_equal(log_odd24_array(n).view(np.uint32), fmath.log_odd24(n).view(np.uint32))
    s, c = sincos2pi_odd24_array(n)
    sr, cr = fmath.sincos2pi_odd24(n)
    assert np.array_equal(s.view(np.uint32), sr.view(np.uint32))
    assert np.array_equal(c.view(np.uint32), cr.view(np.uint32))


@pytest.mark.parametrize("seed", [0, 12345, 2**32 + 7, 2**64 - 1], ids=lambda s: f"seed={s}")
def test_philox_words_and_normals(seed):
    from fastpoly.backends.numba.rng import normals_array, philox_words_array

    idx = np.array([0, 1, 2**32 - 1, 2**32, 2**40 + 3, 2**64 - 1], np.uint64)
    w = philox_words_array(seed, idx, 9)
    assert np.array_equal(w, rng.stream_words(seed, idx, 9))
    big = np.random.default_rng(seed % 2**32).integers(0, 2**32, size=(1000, 2000), dtype=np.uint32)
    z = normals_array(big)
    z0, z1 = fmath.box_muller_words(big[:, 0::2], big[:, 1::2])
    assert np.array_equal(z[:, 0::2].view(np.uint32), z0.view(np.uint32))
    assert np.array_equal(z[:, 1::2].view(np.uint32), z1.view(np.uint32))


def test_philox_known_answer():
    from fastpoly.backends.numba.rng import philox_words_array

    w = philox_words_array(0, np.array([0], np.uint64), 1)[0]
    assert [hex(x) for x in w] == ["0x6627e8d5", "0xe169c58d", "0xbc57ac4c", "0x9b00dbd8"]


# --- sampler exactness -------------------------------------------------------------------------

_X_REAL = np.random.default_rng(7).standard_normal((77, 6)).astype(np.float32)

ARCHS = {
    "7-40-40-1-relu": (fastpoly.MLP(7, (40, 40), "relu"), None),
    "7-40-40-1-sign": (fastpoly.MLP(7, (40, 40), "sign"), None),
    "perceptron-5": (fastpoly.MLP(5, (), "relu"), None),
    "depth3-identity-uniform-nobias": (
        fastpoly.MLP(5, (13, 7, 3), "identity", weights="uniform", bias=False), None),
    "relu-sigmab0-fanin": (fastpoly.MLP(6, (9, 5), "relu", sigma_b=0.0, bias_scaling="fan_in"), _X_REAL),
    "sign-real-X-77rows": (fastpoly.MLP(6, (11,), "sign"), _X_REAL),
    "relu-centered-8bit": (fastpoly.MLP(8, (17, 6), "relu"), boolean_inputs(8, centered=True)),
    "relu-boolean-8bit-subset": (fastpoly.MLP(8, (21, 3), "relu", sigma_w=2.0), None),
    "uniform-relu-3rows": (fastpoly.MLP(3, (5,), "relu", weights="uniform"), boolean_inputs(3)[:3]),
    "identity-130rows-3words": (
        fastpoly.MLP(4, (6,), "identity"),
        np.random.default_rng(3).uniform(-2, 2, (130, 4)).astype(np.float32)),
    # 1,000 rows pad to 1,024: the buffers get the longer row stride (row_stride)
    "relu-1000rows-padded-stride": (
        fastpoly.MLP(5, (9, 4), "relu"),
        np.random.default_rng(4).uniform(-1, 1, (1000, 5)).astype(np.float32)),
}


@pytest.mark.parametrize("name", list(ARCHS), ids=list(ARCHS))
def test_sample_keys_bit_identical(nb, threads, name):
    mlp, X = ARCHS[name]
    n = 40 if max(mlp.widths) >= 40 else 150
    for seed, start in ((0, 0), (2**33 + 5, 2**32 - n // 2)):
        plan = make_plan(mlp, X, seed)
        got = nb.sample_keys(plan, start, start + n, margins=True)
        ref = sample_keys_reference(plan, start, start + n, margins=True)
        assert np.array_equal(got.keys, ref.keys)
        assert np.array_equal(got.accepted, ref.accepted)
        assert np.array_equal(got.margins, ref.margins)


def test_row_stride_avoids_multiples_of_512_floats():
    from fastpoly.backends.numba.sampler import ROW_BLOCK, prepare, row_stride

    assert [row_stride(m) for m in (32, 128, 480, 992, 1056)] == [32, 128, 480, 992, 1056]
    assert [row_stride(m) for m in (512, 1024, 2048)] == [512 + ROW_BLOCK, 1024 + ROW_BLOCK, 2048 + ROW_BLOCK]
    X = np.random.default_rng(5).uniform(-1, 1, (1030, 3)).astype(np.float32)
    train = (np.arange(500), np.ones(500, np.uint8))  # 512 train + 512 key rows padded; all-positive nets fit
    plan = make_plan(fastpoly.MLP(3, (6,), "relu"), X[:1012], 7, train)
    pp = prepare(plan)
    assert pp.rows.m_pad == 1024 and pp.rows.stride == 1024 + ROW_BLOCK
    keys, acc, marg = pp.run(0, 300, 2, early_exit=False, want_margins=True)
    ref = sample_keys_reference(plan, 0, 300, margins=True)
    assert acc.any() and np.array_equal(acc, ref.accepted)
    assert np.array_equal(keys, ref.keys) and np.array_equal(marg, ref.margins)


@pytest.mark.parametrize("subset", [True, False], ids=["subset-sums", "dense-layer1"])
def test_boolean_subset_sum_path(subset):
    from fastpoly.backends.numba.sampler import prepare

    plan = make_plan(fastpoly.MLP(9, (7, 5), "relu"), None, 11)
    pp = prepare(plan, subset=subset)
    assert pp.subset == subset
    keys, acc, marg = pp.run(100, 60, 2, early_exit=False, want_margins=True)
    ref = sample_keys_reference(plan, 100, 160, margins=True)
    assert np.array_equal(keys, ref.keys) and np.array_equal(marg, ref.margins)



def test_kernel_arguments_are_named_and_compile_once():
    """Plan constants travel as SamplerNet / SamplerRows; every plan shape shares one compiled specialisation."""
    from fastpoly.backends.numba import sampler as S

    plans = [make_plan("7-40-40-1", None, 1), make_plan(fastpoly.MLP(9, (7, 5), "relu"), None, 11),
             make_plan("7-40-40-1", None, 1, (np.arange(3), np.array([1, 0, 1], np.uint8))),
             make_plan(fastpoly.MLP(5, (4,), "tanh", bias=False, weights="uniform"), None, 3)]
    for plan in plans:
        pp = S.prepare(plan)
        assert isinstance(pp.net, S.SamplerNet) and isinstance(pp.rows, S.SamplerRows)
        assert pp.net.n_layers == plan.mlp.n_layers and pp.rows.n_words == plan.n_words
        for early_exit, margins in ((True, False), (False, True)):
            keys, acc, marg = pp.run(3, 40, 2, early_exit, margins)
            ref = sample_keys_reference(plan, 3, 43, margins=margins)
            assert np.array_equal(acc, ref.accepted)
            assert np.array_equal(keys[acc], ref.keys[acc])
    assert len(S._sample_lanes.signatures) == 1, S._sample_lanes.signatures

def test_any_chunking_same_keys(nb):
    from fastpoly.backends.numba.sampler import prepare

    plan = make_plan(fastpoly.MLP(7, (12, 12), "relu"), None, 99)
    pp = prepare(plan)
    whole, _, _ = pp.run(2**32 - 50, 100, 1, False, False)
    for lanes in (2, 3, 7):
        k, _, _ = pp.run(2**32 - 50, 100, lanes, False, False)
        assert np.array_equal(k, whole)
    parts = [pp.run(2**32 - 50 + a, b - a, 2, False, False)[0] for a, b in ((0, 13), (13, 64), (64, 100))]
    assert np.array_equal(np.concatenate(parts), whole)


TRAINS = {
    "64-even-rows-zeros": (np.arange(0, 128, 2), np.zeros(64, np.uint8)),
    "3-rows-mixed": (np.array([5, 0, 127]), np.array([1, 0, 1], np.uint8)),
    "33-rows-parity": (np.arange(33) * 3, (np.arange(33) % 2).astype(np.uint8)),
}


@pytest.mark.parametrize("tname", list(TRAINS), ids=list(TRAINS))
def test_train_set_sampling_and_counting(nb, threads, tname):
    train = TRAINS[tname]
    plan = make_plan(fastpoly.MLP(7, (20, 20), "relu"), None, 2**40 + 1, train)
    got = nb.sample_keys(plan, 2**32 - 100, 2**32 + 100, margins=True)
    ref = sample_keys_reference(plan, 2**32 - 100, 2**32 + 100, margins=True)
    assert np.array_equal(got.keys, ref.keys)
    assert np.array_equal(got.accepted, ref.accepted)
    assert np.array_equal(got.margins, ref.margins)
    a = nb.count_range(plan, 2**32 - 100, 2**32 + 100)
    r = count_range_reference(plan, 2**32 - 100, 2**32 + 100)
    assert (a.n_samples, a.n_accepted) == (r.n_samples, r.n_accepted)
    assert np.array_equal(a.keys, r.keys)
    assert np.array_equal(a.counts, r.counts)
    assert np.array_equal(a.first_index, r.first_index)


def test_count_range_matches_reference(nb, threads):
    plan = make_plan(fastpoly.MLP(3, (4,), "sign"), None, 5)  # few functions: many repeats
    a = nb.count_range(plan, 2**32 - 700, 2**32 + 700)
    r = count_range_reference(plan, 2**32 - 700, 2**32 + 700)
    assert np.array_equal(a.keys, r.keys)
    assert np.array_equal(a.counts, r.counts)
    assert np.array_equal(a.first_index, r.first_index)
    assert a.counts.sum() == 1400


def test_sample_api_any_batch_size():
    kw = dict(arch="5-8-1", n_samples=3000, seed=4, progress=False)
    a = fastpoly.sample(backend="numba", batch_size=3000, **kw)
    b = fastpoly.sample(backend="numba", batch_size=777, **kw)
    c = fastpoly.sample(backend="numpy", **kw)
    for x in (a, b):
        assert np.array_equal(x.keys, c.keys) and np.array_equal(x.counts, c.counts)


@pytest.mark.parametrize("act", ["tanh", "erf"])
def test_smooth_activations_disagree_only_at_tiny_margins(nb, act):
    plan = make_plan(fastpoly.MLP(7, (16, 16), act), None, 8)
    n = 400
    got = nb.sample_keys(plan, 0, n)
    ref = sample_keys_reference(plan, 0, n, margins=True)
    diff = np.any(got.keys != ref.keys, axis=1)
    assert np.all(ref.margins[diff] < 1e-4)
    assert diff.mean() <= 0.01


# --- counting -------------------------------------------------------------------------------


def _zipf_keys(n, W, seed, hot=0.3, distinct=10**6):
    g = np.random.default_rng(seed)
    r = (g.zipf(1.2, n) % distinct).astype(np.uint64)
    keys = np.empty((n, W), np.uint64)
    with np.errstate(over="ignore"):
        for w in range(W):
            x = r * np.uint64(0x9E3779B97F4A7C15) + np.uint64(w + 1)
            x ^= x >> np.uint64(31)
            keys[:, w] = x * np.uint64(0xBF58476D1CE4E5B9)
    u = g.random(n)
    keys[u < hot / 2] = 0
    keys[(u >= hot / 2) & (u < hot)] = np.uint64(2**64 - 1)
    return keys


@pytest.mark.parametrize("W", [1, 2, 3], ids=lambda w: f"words={w}")
def test_count_keys_zipf_with_hot_keys(threads, W):
    from fastpoly.backends.numba.count import count_keys as nb_count

    keys = _zipf_keys(200_000, W, W)
    idx = np.random.default_rng(1).permutation(2**33 + np.arange(200_000, dtype=np.uint64))
    got = nb_count(keys, idx, n_bits=64 * W)
    ref = count_keys(keys, idx)
    for g_, r_ in zip(got, ref):
        assert np.array_equal(g_, r_)


def test_count_keys_collisions_and_growth():
    from fastpoly.backends.numba.count import count_keys as nb_count
    from fastpoly.backends.numba.count import hash_key

    # many distinct keys (forces several doublings), plus keys differing only in the high word
    n = 150_000
    g = np.random.default_rng(2)
    keys = np.zeros((n, 2), np.uint64)
    keys[:, 0] = np.arange(n, dtype=np.uint64) % 5000
    keys[:, 1] = g.integers(0, 40, n).astype(np.uint64) << np.uint64(60)
    idx = g.permutation(n).astype(np.uint64)
    mask = g.random(n) < 0.8
    got = nb_count(keys, idx, mask=mask, n_bits=128, n_lanes=3)
    ref = count_keys(keys[mask], idx[mask])
    for g_, r_ in zip(got, ref):
        assert np.array_equal(g_, r_)
    assert hash_key.py_func is not None


def test_count_keys_partial_last_word_hot_key():
    from fastpoly.backends.numba.count import count_keys as nb_count

    n_bits = 70  # last word holds 6 bits: the all-ones key is (2**64-1, 63)
    keys = np.tile(np.array([[2**64 - 1, 63]], np.uint64), (1000, 1))
    keys[::3] = 0
    keys[1::7, 1] = 5
    idx = np.arange(1000, dtype=np.uint64)[::-1].copy()
    got = nb_count(keys, idx, n_bits=n_bits)
    ref = count_keys(keys, idx)
    for g_, r_ in zip(got, ref):
        assert np.array_equal(g_, r_)


def test_empty_inputs(nb):
    from fastpoly.backends.numba.count import count_keys as nb_count

    k, c, f = nb_count(np.zeros((0, 2), np.uint64), np.zeros(0, np.uint64))
    assert k.shape == (0, 2) and c.size == 0 and f.size == 0
    plan = make_plan("3-4-1", None, 0)
    b = nb.count_range(plan, 10, 10)
    assert b.n_samples == 0 and b.keys.shape == (0, 1)


def test_backend_reports(nb):
    assert nb.availability() == (True, "")
    assert "numba" in nb.describe()
    assert fastpoly.backends()["numba"]["available"]
    assert nb.default_batch_size(make_plan("7-40-40-1")) >= 4096


def test_env_thread_count(monkeypatch):
    from fastpoly.backends.numba.jit import configure_threads

    old = numba.get_num_threads()
    try:
        monkeypatch.setenv("FASTPOLY_NUM_THREADS", "1")
        assert configure_threads() == 1
        monkeypatch.setenv("FASTPOLY_NUM_THREADS", "zero")
        with pytest.raises(ValueError, match="FASTPOLY_NUM_THREADS"):
            configure_threads()
    finally:
        numba.set_num_threads(old)
