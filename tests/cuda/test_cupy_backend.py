"""The CuPy backend against the NumPy reference: bit-identical keys and counts, margins, evaluation.

Needs a CUDA GPU and CuPy: skipped (with the reason) without them, and FAILS
instead when ``FASTPOLY_REQUIRE_GPU=1`` (``ci/gpu-check.sh`` sets it), so a GPU
run can never silently pass by skipping.

Sized for the check's slot on a fresh machine: the NumPy reference only on at most
2,000 samples (700 per range here); the large runs (many sub-batches, the out-of-memory
retry) are compared with the Numba backend, bit-identical to the reference by design
and by its own tests.
"""
from __future__ import annotations

import os
import warnings
import zlib

import numpy as np
import pytest

import fastpoly
from fastpoly import MLP, Layer, Network, make_plan
from fastpoly.backends.cuda import source as src
from fastpoly.backends.reference import count_range_reference, sample_keys_reference
from fastpoly.poly.structured import (
    ACT,
    SparseLayer,
    StructuredNetwork,
    evaluate_structured_reference,
)
from fastpoly.tolerances import assert_close_to_reference

pytestmark = pytest.mark.gpu
REQUIRE = os.environ.get("FASTPOLY_REQUIRE_GPU") == "1"


def _available():
    from fastpoly.backends.cuda.backend import CupyBackend

    return CupyBackend().availability()


@pytest.fixture(scope="module", autouse=True)
def _gpu_or_skip():
    ok, why = _available()
    if not ok:
        if REQUIRE:
            pytest.fail(f"FASTPOLY_REQUIRE_GPU=1 but the cupy backend is unavailable: {why}")
        pytest.skip(f"cupy backend unavailable: {why}")


# backend configurations: tiny launches make small inputs cross block, warp-loop and launch boundaries
CONFIGS = {
    "default": dict(),
    "tiny-fixed": dict(threads_per_block=32, max_blocks=2, max_sub_batch=37),
    "tiny-generic": dict(kernel="generic", threads_per_block=64, max_blocks=3, max_sub_batch=53, wchunk=16),
    "generic": dict(kernel="generic"),
    "tiny-wide": dict(kernel="wide", wide_kseg=16, max_blocks=3, max_sub_batch=53),  # kernels/sample_wide.cu
}


@pytest.fixture(scope="module", params=sorted(CONFIGS), ids=lambda k: f"cfg-{k}")
def be(request):
    from fastpoly.backends.cuda.backend import CupyBackend

    return CupyBackend(**CONFIGS[request.param])


def _rng_X(m, n, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal((m, n)) * scale).astype(np.float32)


def _train(m, k, seed):
    rng = np.random.default_rng(seed)
    return rng.choice(m, size=k, replace=False), rng.integers(0, 2, size=k)


def _accepting_train(arch, X, rows, seed, index=7):
    """Train labels = the outputs of sample ``index`` on ``rows``: a conditioned plan that accepts."""
    base = make_plan(arch, X, seed=seed)
    z = sample_keys_reference(base, index, index + 1)
    bits = np.unpackbits(z.keys.view(np.uint8), bitorder="little")[: base.m]
    return np.asarray(rows), bits[np.asarray(rows)].astype(np.int64)


PLANS = {
    "7-40-40-1-relu-boolean": lambda: make_plan(MLP(7, (40, 40)), None, seed=0),
    "7-40-40-1-relu-bigseed": lambda: make_plan(MLP(7, (40, 40)), None, seed=2**63 + 12345),
    "7-40-40-1-relu-train3": lambda: make_plan(MLP(7, (40, 40)), None, seed=5, train=_train(128, 3, 1)),
    "7-40-40-1-relu-hot-constants": lambda: make_plan(MLP(7, (40, 40), sigma_w=0.05), None, seed=9),
    "5-8-8-1-sign-boolean": lambda: make_plan(MLP(5, (8, 8), activation="sign"), None, seed=1),
    "3-5-5-1-identity-uniform-nobias": lambda: make_plan(
        MLP(3, (5, 5), activation="identity", weights="uniform", bias=False), None, seed=2),
    "4-6-6-6-1-relu-randX100-train-accepting": lambda: make_plan(
        MLP(4, (6, 6, 6)), _rng_X(100, 4, 2), seed=3,
        train=_accepting_train(MLP(4, (6, 6, 6)), _rng_X(100, 4, 2), [0, 17, 50, 99], 3)),
    "6-9-9-1-tanh-randX70-R3": lambda: make_plan(MLP(6, (9, 9), activation="tanh"), _rng_X(70, 6, 4), seed=4),
    "4-6-6-1-relu-randX40-R2": lambda: make_plan(MLP(4, (6, 6)), _rng_X(40, 4, 5), seed=5),
    "5-9-9-1-relu-randX90-R3-train-accepting": lambda: make_plan(
        MLP(5, (9, 9)), _rng_X(90, 5, 6), seed=6, train=_accepting_train(MLP(5, (9, 9)), _rng_X(90, 5, 6),
                                                                          [2, 40, 89], 6)),
    # flush-to-zero would change these keys (subnormal inputs / intermediates; the reference keeps them)
    "3-4-4-1-relu-subnormal-inputs": lambda: make_plan(MLP(3, (4, 4), bias=False), _rng_X(64, 3, 11, 1e-39),
                                                       seed=12),
    "3-4-4-1-identity-subnormal-intermediates": lambda: make_plan(
        MLP(3, (4, 4), activation="identity", bias=False, sigma_w=1e-13), None, seed=13),
    "6-9-1-relu-faninbias-randX70": lambda: make_plan(MLP(6, (9,), sigma_b=0.5, bias_scaling="fan_in"),
                                                     _rng_X(70, 6, 4), seed=4),
    "2-3-3-1-relu-randX130-train1": lambda: make_plan(MLP(2, (3, 3)), _rng_X(130, 2, 5), seed=6,
                                                     train=_train(130, 1, 6)),
    "8-12-12-1-relu-boolean256": lambda: make_plan(MLP(8, (12, 12)), None, seed=7),
}


@pytest.fixture(scope="module", params=sorted(PLANS))
def named_plan(request):
    return request.param, PLANS[request.param]()


_REF = {}


def _ref_keys(name, plan, start, stop):
    k = ("keys", name, start, stop)  # keyed by the parameters, never id(plan) (ids are reused)
    if k not in _REF:
        _REF[k] = sample_keys_reference(plan, start, stop, margins=True)
    return _REF[k]


def _ref_counts(name, plan, start, stop):
    k = ("counts", name, start, stop)
    if k not in _REF:
        _REF[k] = count_range_reference(plan, start, stop)
    return _REF[k]


def test_sample_keys_bit_identical(be, named_plan):
    name, plan = named_plan
    start, stop = 2**32 - 45, 2**32 + 36  # crosses the lo32 word of the counter
    got = be.sample_keys(plan, start, stop, margins=True)
    ref = _ref_keys(name, plan, start, stop)
    assert be._modules, "no kernel was compiled: the GPU path did not run"
    for ptx in be._dev.ptx.values():
        assert src.ptx_ftz_instructions(ptx) == []
    assert np.array_equal(got.keys, ref.keys)
    assert np.array_equal(got.accepted, ref.accepted)
    assert np.array_equal(got.margins.view(np.uint32), ref.margins.view(np.uint32))


@pytest.mark.parametrize("start", [1000, 2**32 - 350], ids=["low", "across-2**32"])
def test_count_range_identical(be, named_plan, start):
    name, plan = named_plan
    stop = start + 700
    got = be.count_range(plan, start, stop)
    ref = _ref_counts(name, plan, start, stop)
    if plan.conditioned:
        assert ref.n_accepted > 0, "a conditioned plan must accept samples, or the comparison is empty"
    assert (got.n_samples, got.n_accepted) == (ref.n_samples, ref.n_accepted)
    assert np.array_equal(got.keys, ref.keys)
    assert np.array_equal(got.counts, ref.counts)
    assert np.array_equal(got.first_index, ref.first_index)


def test_sample_api_matches_numpy_backend():
    from fastpoly.backends.cuda.backend import CupyBackend

    be = CupyBackend(threads_per_block=32, max_blocks=4)
    a = fastpoly.sample("7-40-40-1", n_samples=1500, seed=11, backend=be, batch_size=600, progress=False,
                        check=True)
    b = fastpoly.sample("7-40-40-1", n_samples=1500, seed=11, backend="numpy", batch_size=1500, progress=False)
    assert np.array_equal(a.keys, b.keys) and np.array_equal(a.counts, b.counts)
    assert np.array_equal(a.first_index, b.first_index)
    assert (a.n_samples, a.n_accepted) == (b.n_samples, b.n_accepted)


@pytest.mark.parametrize("act", ["tanh", "erf"])
def test_smooth_activation_margin_rule(act):
    from fastpoly.backends.cuda.backend import CupyBackend

    plan = make_plan(MLP(7, (40, 40), activation=act), None, seed=8)
    got = CupyBackend().sample_keys(plan, 0, 300, margins=True)
    ref = sample_keys_reference(plan, 0, 300, margins=True)
    diff = np.any(got.keys != ref.keys, axis=1) | (got.accepted != ref.accepted)
    assert np.all(ref.margins[diff] < 1e-4), ref.margins[diff]
    np.testing.assert_allclose(got.margins, ref.margins, rtol=1e-4, atol=1e-5)


def _numba_counts(plan, start, stop):
    """Counts of the Numba backend: the oracle of the large GPU runs (the NumPy reference stays <= 2,000)."""
    from fastpoly.backends.numba.backend import NumbaBackend

    return NumbaBackend().count_range(plan, start, stop)


def test_small_memory_budget_many_sub_batches():
    """Sub-batches sized from memory_budget (no pool limit): many launches, exact counts."""
    from fastpoly.backends.cuda.backend import CupyBackend

    plan = make_plan(MLP(7, (40, 40)), None, seed=22)
    n = 50_000
    ref = _numba_counts(plan, 0, n)
    be = CupyBackend(memory_budget=1 << 20)
    got = be.count_range(plan, 0, n)
    assert be.timings["sub_batches"] > 10  # the linear host merge across many sub-batches
    assert got.n_samples == n and got.n_accepted == ref.n_accepted
    assert np.array_equal(got.keys, ref.keys) and np.array_equal(got.counts, ref.counts)
    assert np.array_equal(got.first_index, ref.first_index)


def test_out_of_memory_shrinks_the_batch_and_loses_nothing():
    """A pool limit far below the planned sub-batch: the buffers or the sort's reservation fail, never the sort."""
    import cupy

    from fastpoly.backends.cuda.backend import CupyBackend

    plan = make_plan(MLP(3, (5, 5)), None, seed=21)  # 8 rows, 1 key word: 16 bytes per buffered sample
    n = 200_000
    ref = _numba_counts(plan, 0, n)
    pool = cupy.get_default_memory_pool()
    old = pool.get_limit()
    be = CupyBackend(memory_budget=1 << 40)  # plans one launch for everything; the pool allows far less
    be._plan_data(plan)  # inputs on the device before the limit
    be.count_range(plan, 0, 64)  # compile the kernels before the limit
    pool.free_all_blocks()
    try:
        pool.set_limit(size=pool.used_bytes() + (1 << 20))
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            got = be.count_range(plan, 0, n)
    finally:
        pool.set_limit(size=old)
    assert any("out of device memory" in str(x.message) for x in w)
    assert got.n_samples == n and got.n_accepted == ref.n_accepted
    assert np.array_equal(got.keys, ref.keys) and np.array_equal(got.counts, ref.counts)
    assert np.array_equal(got.first_index, ref.first_index)


# --- evaluation ------------------------------------------------------------------------------------
def test_dense_float32_is_bit_identical_to_the_sampler():
    from fastpoly.backends.cuda.backend import CupyBackend

    mlp = MLP(7, (40, 40))
    net = mlp.instantiate(3, 12345)
    X = fastpoly.boolean_inputs(7)
    got = CupyBackend(threads_per_block=32).evaluate(net, X, np.float32)
    ref = fastpoly.network.forward_reference(net, X, np.float32)
    assert np.array_equal(np.asarray(got, np.float32).view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_dense_evaluate_within_tolerance(dtype):
    from fastpoly.backends.cuda.backend import CupyBackend

    rng = np.random.default_rng(0)
    net = Network([Layer(rng.standard_normal((9, 5)), rng.standard_normal(9), "tanh"),
                   Layer(rng.standard_normal((4, 9)), rng.standard_normal(4), "sign"),
                   Layer(rng.standard_normal((2, 4)), rng.standard_normal(2), "identity")])
    X = rng.standard_normal((1000, 5))
    got = CupyBackend().evaluate(net, X, dtype)
    ref = fastpoly.network.forward_reference(net, X, dtype)
    assert_close_to_reference(got, ref, dtype)


def _random_structured(rng, act, centered, widths=(3, 17, 9, 1)):
    layers = []
    for i, (fi, fo) in enumerate(zip(widths[:-1], widths[1:])):
        W = rng.standard_normal((fo, fi)) * (rng.random((fo, fi)) < 0.6) * 0.5
        last = i == len(widths) - 2
        a = "identity" if last else act
        shift = rng.standard_normal(fo) * 0.3 if (centered and not last) else None
        layers.append(SparseLayer.from_dense(W, rng.standard_normal(fo) * 0.1, a, shift))
    return StructuredNetwork(layers)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("centered", [False, True], ids=["plain", "centered"])
@pytest.mark.parametrize("act", sorted(ACT))
def test_structured_evaluate_within_tolerance(act, centered, dtype):
    from fastpoly.backends.cuda.backend import CupyBackend

    rng = np.random.default_rng(zlib.crc32(f"{act}-{centered}".encode()))  # not hash(): PYTHONHASHSEED
    snet = _random_structured(rng, act, centered)
    X = rng.uniform(-1, 1, (4099, 3))  # not a multiple of any block size
    got = CupyBackend(threads_per_block=64).evaluate(snet, X, dtype)
    ref = evaluate_structured_reference(snet, X, dtype)
    assert_close_to_reference(got, ref, dtype)


def test_structured_evaluate_chunks_on_oom_like_budget():
    from fastpoly.backends.cuda.backend import CupyBackend

    rng = np.random.default_rng(5)
    snet = _random_structured(rng, "softplus", True)
    X = rng.uniform(-1, 1, (20000, 3))
    got = CupyBackend(memory_budget=1 << 16).evaluate(snet, X, np.float64)  # many small chunks
    assert_close_to_reference(got, evaluate_structured_reference(snet, X, np.float64), np.float64)
