"""The real CUDA kernels and the cupy backend's glue, run by a CPU emulation, against the NumPy reference.

``kernels/sampler.cu`` and ``kernels/poly.cu`` are compiled for the host with g++ and a
small shim (``tests/cuda_emu/cuda_emu.h``): every CUDA thread is a fiber, ``__syncthreads``
and ``__syncwarp`` are barriers, ballots and shuffles exchange values through per-warp
buffers, atomics are compiler builtins, ``__shared__`` is per block, blocks run in turn.
``CupyBackend(device=EmuDevice())`` then runs the backend's real code path -- plan, kernel
choice, argument packing, launch configuration, launches, sort, run-length encoding,
segmented minimum, merge into counts -- with only the device calls swapped
(``tests/cuda_emu/device.py``), and every integer result is compared exactly (keys,
acceptance, counts, first indices) and margins bit for bit.

What this can and cannot catch
------------------------------
* It checks indexing, launch configurations (block, warp and 64-bit word boundaries,
  rows per lane R = 1..4, m not a multiple of 32, sample indices across 2**32),
  synchronisation (a fiber runs until its next barrier, so a missing barrier reads
  stale or poisoned data; deadlocks and collectives on exited lanes are errors),
  reductions, shared-memory sizing (poisoned before every block, canary after it) and
  the argument lists (types and sizes checked against the kernels' parameters).
* Host IEEE arithmetic cannot show flush-to-zero or differences of CUDA's intrinsics
  and libm (``tanh``, ``erf``, ``expf`` ...): FTZ is guarded by the PTX test
  (``tests/cuda/test_cuda_emu_ptx.py``), smooth activations use the margin rule on a GPU.
* Barriers act as full memory fences and blocks do not run concurrently, so weak memory
  ordering and inter-block races are out of reach.

The library is compiled once per set of sources into a cache folder (see
``tests/cuda_emu/build.py``); g++ missing: skipped, except under ``CI`` (which has it).
"""
from __future__ import annotations

import shutil
import warnings
import zlib

import numpy as np
import pytest

import fastpoly
from fastpoly import MLP, Layer, Network, make_plan
from fastpoly.backends.cuda import source as src
from fastpoly.backends.cuda.backend import CupyBackend, sort_peak_bytes
from fastpoly.backends.reference import count_range_reference, sample_keys_reference
from fastpoly.poly.structured import ACT, SparseLayer, StructuredNetwork, evaluate_structured_reference
from fastpoly.tolerances import assert_close_to_reference, network_atol

pytestmark = pytest.mark.cuda_emu



def _backend(emu, dev_kw=None, **kw):
    return CupyBackend(device=emu.EmuDevice(**(dev_kw or {})), **kw)


# --- plans ---------------------------------------------------------------------------------------
def _rng_X(m, n, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal((m, n)) * scale).astype(np.float32)


def _accepting_train(arch, X, rows, seed, index=7):
    """Train labels = the outputs of sample ``index`` on ``rows``: a conditioned plan that accepts."""
    base = make_plan(arch, X, seed=seed)
    z = sample_keys_reference(base, index, index + 1)
    bits = np.unpackbits(z.keys.view(np.uint8), bitorder="little")[: base.m]
    return np.asarray(rows), bits[np.asarray(rows)].astype(np.int64)


def _plan_subnormal_inputs():
    # subnormal inputs, no biases: every pre-activation and hidden value is subnormal (FTZ would zero them)
    arch = MLP(3, (4, 4), bias=False)
    X = _rng_X(64, 3, 11, scale=1e-39)
    return make_plan(arch, X, seed=12, train=_accepting_train(arch, X, [1, 9, 33, 40, 63], 12))


def _plan_subnormal_intermediates():
    # normal inputs, tiny weights: layer outputs ~1e-13, 1e-26, 1e-39 (the last is subnormal)
    return make_plan(MLP(3, (4, 4), activation="identity", bias=False, sigma_w=1e-13), None, seed=13)


PLANS = {
    # fixed kernel (N0-H1-H2-1, m <= 128): R = rows per lane
    "7-40-40-1-relu-boolean-R4": lambda: make_plan(MLP(7, (40, 40)), None, seed=0),
    "7-40-40-1-relu-bigseed": lambda: make_plan(MLP(7, (40, 40)), None, seed=2**63 + 12345),
    "7-40-40-1-relu-train-accepting": lambda: make_plan(
        MLP(7, (40, 40)), None, seed=5, train=_accepting_train(MLP(7, (40, 40)), None, [3, 64, 100], 5)),
    "7-40-40-1-relu-hot-constants": lambda: make_plan(MLP(7, (40, 40), sigma_w=0.05), None, seed=9),
    "5-8-8-1-sign-boolean-R1": lambda: make_plan(MLP(5, (8, 8), activation="sign"), None, seed=1),
    "3-5-5-1-identity-uniform-nobias": lambda: make_plan(
        MLP(3, (5, 5), activation="identity", weights="uniform", bias=False), None, seed=2),
    "6-9-9-1-tanh-randX70-R3": lambda: make_plan(MLP(6, (9, 9), activation="tanh"), _rng_X(70, 6, 4), seed=4),
    "4-6-6-1-erf-randX40-R2": lambda: make_plan(MLP(4, (6, 6), activation="erf"), _rng_X(40, 4, 5), seed=5),
    "3-4-4-1-relu-subnormal-inputs-R2": _plan_subnormal_inputs,
    "3-4-4-1-identity-subnormal-intermediates": _plan_subnormal_intermediates,
    # generic kernel
    "4-6-6-6-1-relu-randX100-train-accepting": lambda: make_plan(
        MLP(4, (6, 6, 6)), _rng_X(100, 4, 2), seed=3,
        train=_accepting_train(MLP(4, (6, 6, 6)), _rng_X(100, 4, 2), [0, 17, 50, 99], 3)),
    "6-9-1-relu-faninbias-randX70": lambda: make_plan(MLP(6, (9,), sigma_b=0.5, bias_scaling="fan_in"),
                                                     _rng_X(70, 6, 4), seed=4),
    "2-3-3-1-relu-randX130-train1-W3": lambda: make_plan(MLP(2, (3, 3)), _rng_X(130, 2, 5), seed=6,
                                                        train=([7], [1])),
    "8-12-12-1-relu-boolean256-W4": lambda: make_plan(MLP(8, (12, 12)), None, seed=7),
    "3-6-6-6-1-tanh-randX40": lambda: make_plan(MLP(3, (6, 6, 6), activation="tanh"), _rng_X(40, 3, 8), seed=8),
    "3-5-5-5-1-sign-randX33": lambda: make_plan(MLP(3, (5, 5, 5), activation="sign"), _rng_X(33, 3, 9), seed=9),
}

# backend configurations: tiny launches make small inputs cross block, warp-loop and launch boundaries
CONFIGS = {
    "tiny-fixed": dict(threads_per_block=32, max_blocks=2, max_sub_batch=37),
    "tiny-generic": dict(kernel="generic", threads_per_block=64, max_blocks=3, max_sub_batch=53, wchunk=4),
    "wide": dict(threads_per_block=128),
}

_PLAN_OBJ = {}
_REF = {}


def _plan(name):
    if name not in _PLAN_OBJ:
        _PLAN_OBJ[name] = PLANS[name]()
    return _PLAN_OBJ[name]


def _ref(kind, name, start, stop):
    """Reference results cached by (kind, plan name, range): the parameters, never id(plan)."""
    k = (kind, name, start, stop)
    if k not in _REF:
        p = _plan(name)
        _REF[k] = (sample_keys_reference(p, start, stop, margins=True) if kind == "keys"
                   else count_range_reference(p, start, stop))
    return _REF[k]


KEYS_RANGE = (2**32 - 45, 2**32 + 36)     # crosses the lo32 word of the Philox counter
COUNT_RANGE = (2**32 - 150, 2**32 + 150)  # count_range across 2**32


def _assert_keys_equal(got, ref):
    assert np.array_equal(got.keys, ref.keys)
    assert np.array_equal(got.accepted, ref.accepted)
    assert np.array_equal(got.margins.view(np.uint32), ref.margins.view(np.uint32))


def _assert_counts_equal(got, ref):
    assert (got.n_samples, got.n_accepted) == (ref.n_samples, ref.n_accepted)
    assert np.array_equal(got.keys, ref.keys)
    assert np.array_equal(got.counts, ref.counts)
    assert np.array_equal(got.first_index, ref.first_index)


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
@pytest.mark.parametrize("name", sorted(PLANS))
def test_sample_keys_bit_identical(emu, name, cfg):
    be = _backend(emu, **CONFIGS[cfg])
    plan = _plan(name)
    got = be.sample_keys(plan, *KEYS_RANGE, margins=True)
    kinds = {ln[0].split("<")[0] for ln in be._dev.launches}
    expect = "fastpoly_sample_generic" if (cfg == "tiny-generic" or plan.mlp.n_layers != 3 or plan.m > 128) \
        else "fastpoly_sample_fixed"
    assert kinds == {expect}, kinds
    _assert_keys_equal(got, _ref("keys", name, *KEYS_RANGE))


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
@pytest.mark.parametrize("name", sorted(PLANS))
def test_count_range_identical(emu, name, cfg):
    be = _backend(emu, **CONFIGS[cfg])
    got = be.count_range(_plan(name), *COUNT_RANGE)
    ref = _ref("counts", name, *COUNT_RANGE)
    assert ref.n_accepted > 0, "the plan must accept samples, or the comparison is empty"
    _assert_counts_equal(got, ref)
    assert any(ln[0] == src.SEGMENT_MIN_KERNEL for ln in be._dev.launches) or ref.keys.shape[0] <= 2


def test_plans_cover_the_boundaries():
    """The plan list really crosses what it claims (a guard against silently weakened plans)."""
    ms = {name: _plan(name).m for name in PLANS}
    fixed = [n for n in PLANS if _plan(n).mlp.n_layers == 3 and _plan(n).m <= 128]
    assert {max(1, -(-ms[n] // 32)) for n in fixed} == {1, 2, 3, 4}        # rows per lane R
    assert any(m % 32 for m in ms.values())                                   # m not a multiple of 32
    assert {_plan(n).n_words for n in PLANS} >= {1, 2, 3, 4}                  # 64-bit key words
    assert {_plan(n).mlp.activation for n in fixed} == {"relu", "tanh", "erf", "sign", "identity"}
    assert sum(_plan(n).conditioned for n in PLANS) >= 3
    assert KEYS_RANGE[0] < 2**32 < KEYS_RANGE[1] and COUNT_RANGE[0] < 2**32 < COUNT_RANGE[1]
    for n in PLANS:
        if _plan(n).conditioned:
            assert _ref("counts", n, *COUNT_RANGE).n_accepted > 0, n
    hot = _ref("counts", "7-40-40-1-relu-hot-constants", *COUNT_RANGE)
    assert hot.counts.max() > 10  # the constant functions are tallied by the block reduction


def test_subnormal_plans_depend_on_subnormals():
    """Flushing subnormals to zero would change these plans' keys (so their bit-identity tests mean something)."""
    for name in ("3-4-4-1-relu-subnormal-inputs-R2", "3-4-4-1-identity-subnormal-intermediates"):
        ref = _ref("keys", name, *KEYS_RANGE)
        assert np.count_nonzero(ref.keys) > 0, name
        assert np.all(ref.margins < np.float32(2.0**-126)), name  # every output is subnormal


def test_reverse_thread_order_same_results(emu):
    """The results do not depend on the order in which the emulated threads run between barriers."""
    name = "7-40-40-1-relu-train-accepting"
    be = _backend(emu, dev_kw=dict(order="reverse"), threads_per_block=64, max_blocks=2, max_sub_batch=41)
    _assert_counts_equal(be.count_range(_plan(name), *COUNT_RANGE), _ref("counts", name, *COUNT_RANGE))
    be = _backend(emu, dev_kw=dict(order="reverse"), kernel="generic", threads_per_block=64, max_blocks=2,
                  wchunk=16)
    _assert_keys_equal(be.sample_keys(_plan(name), *KEYS_RANGE, margins=True), _ref("keys", name, *KEYS_RANGE))


def test_sample_api_matches_numpy_backend(emu):
    be = _backend(emu, threads_per_block=32, max_blocks=4)
    arch = MLP(5, (8, 8), activation="sign")
    a = fastpoly.sample(arch, n_samples=700, seed=11, backend=be, batch_size=300, progress=False,
                        check=True)
    b = fastpoly.sample(arch, n_samples=700, seed=11, backend="numpy", batch_size=700, progress=False)
    assert np.array_equal(a.keys, b.keys) and np.array_equal(a.counts, b.counts)
    assert np.array_equal(a.first_index, b.first_index)
    assert (a.n_samples, a.n_accepted) == (b.n_samples, b.n_accepted)


# --- defect 2: out of memory in the sort ---------------------------------------------------------
OOM_PLAN = "5-8-8-1-sign-boolean-R1"
OOM_RANGE = (1000, 1600)


class _FailBigBuffers:
    """Mixin: kernel output buffers above ``limit`` bytes fail to allocate (CuPy's OutOfMemoryError)."""

    limit = 8 * 150

    def empty(self, shape, dtype):
        if np.prod(shape) * np.dtype(dtype).itemsize > self.limit:
            raise self.oom_errors[0](f"injected: buffer {shape} {np.dtype(dtype)}")
        return super().empty(shape, dtype)


@pytest.mark.parametrize("inject", ["launch-buffers", "sort-raises-MemoryError", "sort-returns-garbage",
                                    "sort-reservation"])
def test_out_of_memory_halves_and_loses_nothing(emu, inject):
    plan = _plan(OOM_PLAN)
    n = OOM_RANGE[1] - OOM_RANGE[0]
    if inject == "launch-buffers":
        dev = type("Dev", (_FailBigBuffers, emu.EmuDevice), {})()
    else:
        dev = emu.EmuDevice(**{
            "sort-raises-MemoryError": dict(fail_sort={0, 1}),             # newer CuPy: plain MemoryError
            "sort-returns-garbage": dict(unsorted_sort={0}),               # older CuPy: null workspace
            "sort-reservation": dict(alloc_limit=sort_peak_bytes(100, 1)),  # buffers fit, the sort would not
        }[inject])
    be = CupyBackend(device=dev, memory_budget=1 << 40, threads_per_block=64, max_blocks=2)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = be.count_range(plan, *OOM_RANGE)
    assert any("out of device memory" in str(x.message) for x in w)
    assert 0 < be._shrunk["count"] < n
    assert be._dev.n_free_cached >= 1
    _assert_counts_equal(got, _ref("counts", OOM_PLAN, *OOM_RANGE))


def test_out_of_memory_frees_the_pool_after_the_exception_is_gone(emu):
    """The failed sub-batch's device arrays are referenced by the exception's traceback: the pool is freed
    only once no exception is being handled (and nothing references the failed buffers)."""
    import gc
    import sys
    import weakref

    seen = []
    buffers = []

    class Dev(emu.EmuDevice):
        def empty(self, shape, dtype):
            a = super().empty(shape, dtype)
            if a.size > 1:  # the append buffers of a count launch (alive while its frame is)
                buffers.append(weakref.ref(a))
            return a

        def free_cached(self):
            gc.disable()  # only reference counting may free the failed buffers
            try:
                seen.append((sys.exc_info()[0], sum(r() is not None for r in buffers)))
            finally:
                gc.enable()
            super().free_cached()

    # the buffers fit, the sort's reservation does not: the failure is raised deep inside the sub-batch
    be = CupyBackend(device=Dev(alloc_limit=sort_peak_bytes(100, 1)), memory_budget=1 << 40, threads_per_block=64,
                     max_blocks=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = be.count_range(_plan(OOM_PLAN), *OOM_RANGE)
    _assert_counts_equal(got, _ref("counts", OOM_PLAN, *OOM_RANGE))
    assert seen and all(exc is None for exc, _ in seen), seen
    assert all(alive == 0 for _, alive in seen), seen


def test_out_of_memory_on_one_sample_raises(emu):
    be = _backend(emu, dev_kw=dict(alloc_limit=4), memory_budget=1 << 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MemoryError):
            be.count_range(_plan(OOM_PLAN), 0, 10)


def test_sort_peak_is_reserved_before_sorting(emu):
    """With room for the buffers but not for the sort, no sort starts: the reservation fails first."""
    calls = []

    class Dev(emu.EmuDevice):
        def reserve(self, nbytes):
            try:
                super().reserve(nbytes)
            except MemoryError:
                calls.append(("reserve-failed", nbytes))
                raise
            calls.append(("reserved", nbytes))

        def argsort_stable(self, a):
            calls.append(("sort", a.shape[0]))
            return super().argsort_stable(a)

    be = CupyBackend(device=Dev(alloc_limit=sort_peak_bytes(64, 1)), memory_budget=1 << 40, max_blocks=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = be.count_range(_plan(OOM_PLAN), *OOM_RANGE)
    _assert_counts_equal(got, _ref("counts", OOM_PLAN, *OOM_RANGE))
    assert any(c[0] == "reserve-failed" for c in calls)
    last = None
    for kind, v in calls:
        if kind == "sort":
            assert last is not None and last[0] == "reserved" and last[1] >= sort_peak_bytes(v, 1), (last, v)
        else:
            last = (kind, v)


# --- defect 3: deep networks --------------------------------------------------------------------
def test_deep_network_refused_clearly(emu):
    plan = make_plan(MLP(2, (3,) * 16), _rng_X(5, 2, 0), seed=1)  # 17 layers
    be = _backend(emu)
    with pytest.raises(ValueError, match="at most 16 layers"):
        be.sample_keys(plan, 0, 4)
    with pytest.raises(ValueError, match="at most 16 layers"):
        be.count_range(plan, 0, 4)
    ok = make_plan(MLP(2, (3,) * 15), _rng_X(5, 2, 0), seed=1)  # 16 layers: fine, exact
    _assert_keys_equal(be.sample_keys(ok, 0, 20, margins=True), sample_keys_reference(ok, 0, 20, margins=True))


def _raw_args(emu_dev, plan, n, mode, desc=None, generic=False, stride=None):
    desc0, scales = src.net_desc(plan.mlp)
    order, labels = src.row_order(plan)
    Xt = np.ascontiguousarray(plan.X[order].T, dtype=np.float32)
    W = plan.n_words
    args = [np.uint64(plan.seed), np.uint64(0), np.uint64(n), desc0 if desc is None else desc, scales, Xt,
            np.int32(plan.m), np.int32(plan.key_rows.size), labels if labels.size else np.zeros(1, np.uint8),
            np.zeros((n, W), np.uint64), np.zeros(n, np.uint8), np.zeros(n, np.float32),
            np.zeros((n, W), np.uint64), np.zeros(n, np.uint64), np.zeros(src.STATS_WORDS, np.uint64)]
    if generic:
        args += [np.zeros(64 * stride, np.float32), np.int64(stride), np.int32(max(plan.mlp.widths[1:])),
                 np.int32(16)]
    return args


def test_kernels_report_a_wrong_layer_count_in_the_status_word(emu):
    """A failed guard sets the status word and draws nothing (no __trap(): on a GPU it poisons the context)."""
    dev = emu.EmuDevice()
    plan = _plan("3-5-5-1-identity-uniform-nobias")
    desc, _ = src.net_desc(plan.mlp)
    bad = desc.copy()
    bad[0] = src.MAX_LAYERS + 1
    k = dev.compile("sampler.cu", [src.generic_kernel_name(0)])[src.generic_kernel_name(0)]
    stride = 2 * 5 * plan.m + 8
    good = _raw_args(dev, plan, 4, 0, generic=True, stride=stride)
    dev.launch(k, (1,), (32,), good, 4 * 16)  # fine
    assert good[-5][src.STATUS_WORD] == 0 and good[10].any()
    args = _raw_args(dev, plan, 4, 0, desc=bad, generic=True, stride=stride)
    dev.launch(k, (1,), (32,), args, 4 * 16)  # returns normally
    assert args[-5][src.STATUS_WORD] == 1 and not args[10].any()  # status set, nothing accepted/written
    name = src.fixed_kernel_name(3, 5, 5, 1, 4, 0)
    kf = dev.compile("sampler.cu", [name])[name]
    bad = desc.copy()
    bad[0] = 4
    smem = 4 * src.fixed_layout_floats(3, 5, 5)
    args = _raw_args(dev, plan, 4, 0, desc=bad)
    dev.launch(kf, (2,), (64,), args, 2 * smem)
    assert args[-1][src.STATUS_WORD] == 1 and not args[10].any()
    with pytest.raises(src.KernelStatusError, match="layer count"):
        src.check_status(args[-1][src.STATUS_WORD], "the keys kernel")


@pytest.mark.parametrize("mode", ["keys", "count"])
def test_backend_raises_on_a_kernel_status_word(emu, monkeypatch, mode):
    """The backend turns the status word into KernelStatusError, and the next call works (nothing sticky)."""
    plan = _plan("3-5-5-1-identity-uniform-nobias")
    be = _backend(emu)
    real = src.net_desc

    def broken(mlp):
        desc, scales = real(mlp)
        desc = desc.copy()
        desc[0] = 7  # not the fixed sampler's 3 layers
        return desc, scales

    monkeypatch.setattr(src, "net_desc", broken)
    call = (lambda b: b.sample_keys(plan, 0, 40)) if mode == "keys" else (lambda b: b.count_range(plan, 0, 40))
    with pytest.raises(src.KernelStatusError, match="kernel guard failed"):
        call(be)
    monkeypatch.setattr(src, "net_desc", real)
    ok = _backend(emu)
    if mode == "keys":
        _assert_keys_equal(ok.sample_keys(plan, 0, 40, margins=True), sample_keys_reference(plan, 0, 40, margins=True))
    else:
        got, ref = ok.count_range(plan, 0, 40), count_range_reference(plan, 0, 40)
        assert np.array_equal(got.keys, ref.keys) and np.array_equal(got.counts, ref.counts)


# --- defect 4: dynamic shared memory --------------------------------------------------------------
def test_shared_memory_plan():
    sp = src.shared_memory_plan(8016, 4, 40, 48 * 1024, 227 * 1024)
    assert tuple(sp) == (4, 4 * 8016, False)
    # exactly at the limit without the static part, over it with it: opt in (the old check missed s_tally)
    sp = src.shared_memory_plan(12288, 4, 40, 48 * 1024, 227 * 1024)
    assert tuple(sp) == (4, 4 * 12288, True)
    # the generic kernel, wchunk=2048 with 8 warps: 64 KiB -> opt in
    sp = src.shared_memory_plan(4 * 2048, 8, 520, 48 * 1024, 227 * 1024)
    assert sp.opt_in and sp.dynamic == 64 * 1024 and sp.warps == 8
    # no opt-in possible (older cards): fewer warps
    sp = src.shared_memory_plan(4 * 2048, 8, 520, 48 * 1024, 48 * 1024)
    assert sp.warps == 5 and not sp.opt_in and 520 + sp.dynamic <= 48 * 1024
    with pytest.raises(ValueError, match="one warp needs"):
        src.shared_memory_plan(60 * 1024, 1, 520, 48 * 1024, 48 * 1024)



def test_kernel_choice_is_a_typed_frozen_record():
    """The per-plan kernel choice: FixedSampler for N0-H1-H2-1 on <= 128 rows, else GenericSampler."""
    import dataclasses

    from fastpoly.activations import SAMPLER_CODES
    from fastpoly.backends.cuda.backend import FixedSampler, GenericSampler

    fixed = CupyBackend()._choose_kernel(make_plan("7-40-40-1", None, 1))
    assert fixed == FixedSampler(wpb=4, smem_per_warp=4 * src.fixed_layout_floats(7, 40, 40), shape=(7, 40, 40),
                                 R=4, act=SAMPLER_CODES["relu"])
    assert fixed.kernel_names()[:2] == [src.fixed_kernel_name(7, 40, 40, 4, SAMPLER_CODES["relu"], md)
                                        for md in (src.MODE_KEYS, src.MODE_COUNT)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fixed.R = 2  # type: ignore[misc]
    deep = CupyBackend(threads_per_block=64, wchunk=8)._choose_kernel(make_plan("7-40-40-40-1", None, 1))
    assert deep == GenericSampler(wpb=2, smem_per_warp=32, maxw=40, stride=2 * 40 * 128 + 4)
    assert deep.kernel_names()[:2] == [src.generic_kernel_name(md) for md in (src.MODE_KEYS, src.MODE_COUNT)]
    forced = CupyBackend(kernel="generic")._choose_kernel(make_plan("7-40-40-1", None, 1))
    assert isinstance(forced, GenericSampler) and forced.wpb == 4

def test_generic_kernel_opts_in_above_48k(emu):
    name = "4-6-6-6-1-relu-randX100-train-accepting"
    be = _backend(emu, kernel="generic", threads_per_block=256, wchunk=2048, max_blocks=1)
    _assert_keys_equal(be.sample_keys(_plan(name), *KEYS_RANGE, margins=True), _ref("keys", name, *KEYS_RANGE))
    assert be._dev.n_opt_in >= 1
    assert {ln[3] for ln in be._dev.launches if "generic" in ln[0]} == {8 * 4 * 2048}


def test_launch_above_48k_without_opt_in_is_refused(emu):
    """The emulator refuses what a GPU refuses (so the opt-in test above can fail)."""
    dev = emu.EmuDevice()
    plan = _plan("4-6-6-6-1-relu-randX100-train-accepting")
    k = dev.compile("sampler.cu", [src.generic_kernel_name(0)])[src.generic_kernel_name(0)]
    stride = 2 * 6 * plan.m + 8
    with pytest.raises(emu.EmuLaunchError, match="opt in"):
        dev.launch(k, (1,), (256,), _raw_args(dev, plan, 4, 0, generic=True, stride=stride), 8 * 4 * 2048)


def test_fixed_kernel_counts_static_shared_memory(emu):
    """A card whose limit fits 4 warps' dynamic memory but not s_tally too: the backend uses 3 warps."""
    per_warp = 4 * src.fixed_layout_floats(7, 40, 40)
    lim = 4 * per_warp + 20
    be = _backend(emu, dev_kw=dict(smem_per_block=lim, smem_per_block_optin=lim), threads_per_block=128,
                  max_blocks=2)
    name = "7-40-40-1-relu-hot-constants"
    _assert_counts_equal(be.count_range(_plan(name), *COUNT_RANGE), _ref("counts", name, *COUNT_RANGE))
    assert {ln[2][0] for ln in be._dev.launches if "fixed" in ln[0]} == {96}


# --- the emulator catches broken launches -----------------------------------------------------------
def test_emulator_detects_broken_launches(emu):
    dev = emu.EmuDevice()
    plan = _plan("3-5-5-1-identity-uniform-nobias")
    name = src.fixed_kernel_name(3, 5, 5, 1, 4, 1)
    k = dev.compile("sampler.cu", [name])[name]
    smem = 4 * src.fixed_layout_floats(3, 5, 5)
    dev.launch(k, (2,), (64,), _raw_args(dev, plan, 9, 1), 2 * smem)  # the right configuration works
    with pytest.raises(emu.EmuLaunchError, match="wrote past"):       # too little dynamic shared memory
        dev.launch(k, (2,), (64,), _raw_args(dev, plan, 9, 1), smem)
    with pytest.raises(emu.EmuLaunchError, match="do not exist"):     # a partial warp: full-mask ballots
        dev.launch(k, (1,), (48,), _raw_args(dev, plan, 9, 1), 2 * smem)
    with pytest.raises(emu.EmuLaunchError, match="launch_bounds"):    # above __launch_bounds__(128)
        dev.launch(k, (1,), (256,), _raw_args(dev, plan, 9, 1), 8 * smem)
    args = _raw_args(dev, plan, 9, 1)
    args[6] = np.int64(plan.m)                                         # int parameter passed as int64
    with pytest.raises(emu.EmuLaunchError, match="parameter type i4"):
        dev.launch(k, (1,), (32,), args, smem)
    args = _raw_args(dev, plan, 9, 1)
    args[5] = args[5].astype(np.float64)                               # float* given doubles
    with pytest.raises(emu.EmuLaunchError, match="pointer to 4-byte"):
        dev.launch(k, (1,), (32,), args, smem)


def test_emulator_detects_a_missing_syncwarp(emu, tmp_path):
    """sampler.cu with the __syncwarp after the parameter generation removed: wrong keys, caught."""
    from cuda_emu import build

    text = (src.kernel_dir() / "sampler.cu").read_text()
    marker = "        __syncwarp();\n\n        // ---- layer 1"
    assert marker in text
    kdir = tmp_path / "kernels"
    shutil.copytree(src.kernel_dir(), kdir)
    (kdir / "sampler.cu").write_text(text.replace(marker, "\n        // ---- layer 1"))
    name = src.fixed_kernel_name(5, 8, 8, 1, 3, 0)
    lib = build.build_library([name], kernel_dir=kdir)
    dev = emu.EmuDevice(library=str(lib))
    plan = _plan("5-8-8-1-sign-boolean-R1")
    ref = _ref("keys", "5-8-8-1-sign-boolean-R1", *KEYS_RANGE)
    good = _backend(emu, threads_per_block=32, max_blocks=1)
    _assert_keys_equal(good.sample_keys(plan, *KEYS_RANGE, margins=True), ref)
    broken = CupyBackend(device=dev, threads_per_block=32, max_blocks=1)
    broken._functions = lambda f, names: dev.compile(f, [n for n in names if n == name] or names)
    got = broken.sample_keys(plan, *KEYS_RANGE, margins=True)
    assert not np.array_equal(got.keys, ref.keys)


# --- evaluation: poly.cu ------------------------------------------------------------------------------
EXACT_ACTS = ("identity", "relu")  # structured activations computed exactly (sign is dense-only)


def _random_structured(rng, act, centered, widths=(3, 17, 9, 1), wscale=0.5):
    layers = []
    for i, (fi, fo) in enumerate(zip(widths[:-1], widths[1:])):
        W = rng.standard_normal((fo, fi)) * (rng.random((fo, fi)) < 0.6) * wscale
        last = i == len(widths) - 2
        a = "identity" if last else act
        shift = rng.standard_normal(fo) * 0.3 if (centered and not last) else None
        layers.append(SparseLayer.from_dense(W, rng.standard_normal(fo) * 0.1 * wscale, a, shift))
    return StructuredNetwork(layers)


def _seed(*parts):
    return zlib.crc32("-".join(map(str, parts)).encode())  # stable across processes (no hash())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("centered", [False, True], ids=["plain", "centered"])
@pytest.mark.parametrize("act", sorted(ACT))
def test_structured_evaluate(emu, act, centered, dtype):
    rng = np.random.default_rng(_seed(act, centered))
    snet = _random_structured(rng, act, centered)
    X = rng.uniform(-1, 1, (203, 3))  # not a multiple of the block size
    got = _backend(emu, threads_per_block=64).evaluate(snet, X, dtype)
    ref = evaluate_structured_reference(snet, X, dtype)
    assert got.dtype == dtype and got.shape == ref.shape
    if act in EXACT_ACTS and not centered:
        assert np.array_equal(got, ref)
    else:
        assert_close_to_reference(got, ref, dtype)


@pytest.mark.parametrize("act", EXACT_ACTS)
def test_structured_float32_subnormal_intermediates_exact(emu, act):
    rng = np.random.default_rng(_seed("subnormal", act))
    widths, layers, s = (3, 17, 9, 1), [], 1.0
    for i, (fi, fo) in enumerate(zip(widths[:-1], widths[1:])):
        s *= 1e-14  # layer i's values ~ 1e-14**(i+1): 1e-14, 1e-28, 1e-42 (subnormal in float32)
        W = (rng.standard_normal((fo, fi)) * 1e-14).astype(np.float32).astype(np.float64)
        b = (rng.standard_normal(fo) * 0.1 * s).astype(np.float32).astype(np.float64)
        layers.append(SparseLayer.from_dense(W, b, "identity" if i == len(widths) - 2 else act))
    snet = StructuredNetwork(layers)
    X = rng.uniform(-1, 1, (70, 3))
    got = _backend(emu, threads_per_block=32).evaluate(snet, X, np.float32)
    ref = evaluate_structured_reference(snet, X, np.float32)
    assert np.count_nonzero((ref != 0) & (np.abs(ref) < np.float32(2.0**-126))) > 0
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_dense_float32_is_bit_identical_to_the_sampler(emu):
    net = MLP(7, (40, 40)).instantiate(3, 12345)
    X = fastpoly.boolean_inputs(7)
    got = _backend(emu, threads_per_block=32).evaluate(net, X, np.float32)
    ref = fastpoly.network.forward_reference(net, X, np.float32)
    assert np.array_equal(np.asarray(got, np.float32).view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_dense_evaluate(emu, dtype):
    rng = np.random.default_rng(0)
    net = Network([Layer(rng.standard_normal((9, 5)), rng.standard_normal(9), "tanh"),
                   Layer(rng.standard_normal((4, 9)), rng.standard_normal(4), "sign"),
                   Layer(rng.standard_normal((2, 4)), rng.standard_normal(2), "identity")])
    X = rng.standard_normal((150, 5))
    got = _backend(emu, threads_per_block=64).evaluate(net, X, dtype)
    assert_close_to_reference(got, fastpoly.network.forward_reference(net, X, dtype), dtype)


@pytest.mark.parametrize("act,dtype", [("softplus", "float64"), ("relu", "float32"), ("tanh", "float32")])
def test_poly_network_evaluate(emu, act, dtype):
    from fastpoly.poly import compile_polynomial

    net = compile_polynomial("x0*x1*x2 - 3*x1**2 + x2 + 0.5", activation=act, dtype=dtype)
    X = np.random.default_rng(_seed("poly", act)).uniform(-1, 1, (97, 3))
    got = _backend(emu, threads_per_block=32).evaluate(net, X, np.dtype(dtype).type)
    ref = net.evaluate_reference(X, dtype)
    if act == "relu":
        assert np.array_equal(got, ref)
    else:
        assert_close_to_reference(got, ref, np.dtype(dtype), extra_atol=network_atol(net))


def test_evaluate_chunks_on_a_small_budget(emu):
    rng = np.random.default_rng(5)
    snet = _random_structured(rng, "relu", False)
    X = rng.uniform(-1, 1, (500, 3))
    be = _backend(emu, max_sub_batch=64, threads_per_block=32)
    got = be.evaluate(snet, X, np.float64)
    assert len([ln for ln in be._dev.launches]) > 3 * 3  # several chunks of 3 layers
    assert np.array_equal(got, evaluate_structured_reference(snet, X, np.float64))
