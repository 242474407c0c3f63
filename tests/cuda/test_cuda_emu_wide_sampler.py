"""The wide (tiled, one block per sample) CUDA sampler ``kernels/sample_wide.cu``, run by the CPU emulation.

``CupyBackend(kernel="wide", device=EmuDevice())`` runs the backend's real glue with
``fastpoly_sample_wide<MODE>`` executed by the emulation of ``tests/cuda_emu`` (256 fibers per
block, ``__syncthreads`` as barriers, shared memory poisoned before every block): keys,
acceptance flags, margins (bit for bit) and counts must equal the NumPy reference.  The plans
are small but cut every tile boundary: widths and rows that are not multiples of the 64-neuron x
128-row tiles, several neuron tiles, fan-ins split into k-segments (``wide_kseg=16``) and partial
16-k chunks, 1-4 key words, 1-3 hidden layers, every sampler activation, no bias, uniform
weights, conditioned and unconditioned plans, several samples per block and several blocks.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from fastpoly import MLP, make_plan
from fastpoly.backends.cuda import source as src
from fastpoly.backends.cuda.backend import CupyBackend, FixedSampler, GenericSampler, WideSampler
from fastpoly.backends.reference import count_range_reference, sample_keys_reference

pytestmark = pytest.mark.cuda_emu

WIDE = "fastpoly_sample_wide"


def _rng_X(m, n, seed):
    return np.random.default_rng(seed).standard_normal((m, n)).astype(np.float32)


def _accepting(arch, X, rows, seed, index=5):
    """Train labels = the outputs of sample ``index`` on ``rows``: a conditioned plan that accepts."""
    base = make_plan(arch, X, seed=seed)
    z = sample_keys_reference(base, index, index + 1)
    bits = np.unpackbits(z.keys.view(np.uint8), bitorder="little")[: base.m]
    return np.asarray(rows), bits[np.asarray(rows)].astype(np.int64)


def _cond(arch, m, n_in, seed, rows):
    X = _rng_X(m, n_in, seed)
    return make_plan(arch, X, seed=seed, train=_accepting(arch, X, rows, seed))


PLANS = {
    "5-37-19-1-relu-X70": lambda: make_plan(MLP(5, (37, 19)), _rng_X(70, 5, 1), seed=1),
    "5-37-19-1-relu-X70-train-accepting": lambda: _cond(MLP(5, (37, 19)), 70, 5, 2, [0, 3, 31, 32, 69]),
    "3-130-1-tanh-X33": lambda: make_plan(MLP(3, (130,), activation="tanh"), _rng_X(33, 3, 3), seed=3),
    "4-20-17-9-1-identity-uniform-nobias-X150": lambda: make_plan(
        MLP(4, (20, 17, 9), activation="identity", weights="uniform", bias=False), _rng_X(150, 4, 4), seed=4),
    "6-66-1-erf-X140-train-accepting": lambda: _cond(MLP(6, (66,), activation="erf"), 140, 6, 5,
                                                     [1, 64, 127, 128, 139]),
    "7-12-70-1-sign-boolean128": lambda: make_plan(MLP(7, (12, 70), activation="sign"), None, seed=6),
    "3-40-5-30-1-relu-X90-narrow-hidden": lambda: make_plan(MLP(3, (40, 5, 30)), _rng_X(90, 3, 9), seed=9),
    # layer outputs ~1e-13, 1e-26, 1e-39: the output is subnormal (flush-to-zero would change every key)
    "3-20-20-1-identity-subnormal-intermediates": lambda: make_plan(
        MLP(3, (20, 20), activation="identity", bias=False, sigma_w=1e-13), None, seed=13),
    "2-9-9-9-1-relu-faninbias-X200-W4": lambda: make_plan(
        MLP(2, (9, 9, 9), sigma_b=0.5, bias_scaling="fan_in"), _rng_X(200, 2, 7), seed=7),
}

CONFIGS = {
    # k-segments of 16 (partial sums through the scratch), 3 blocks looping over many samples each
    "kseg16-3blocks": dict(kernel="wide", wide_kseg=16, max_blocks=3, max_sub_batch=37),
    # the default segment (one segment per layer here), 2 blocks, another sub-batch split
    "default-2blocks": dict(kernel="wide", max_blocks=2, max_sub_batch=53),
}

KEYS_RANGE = (2**32 - 40, 2**32 + 24)   # crosses the lo32 word of the Philox counter
COUNT_RANGE = (1000, 1160)

_P: dict = {}
_R: dict = {}


def _plan(name):
    if name not in _P:
        _P[name] = PLANS[name]()
    return _P[name]


def _ref(kind, name, start, stop):
    k = (kind, name, start, stop)
    if k not in _R:
        p = _plan(name)
        _R[k] = (sample_keys_reference(p, start, stop, margins=True) if kind == "keys"
                 else count_range_reference(p, start, stop))
    return _R[k]


def _backend(emu, dev_kw=None, **kw):
    return CupyBackend(device=emu.EmuDevice(**(dev_kw or {})), **kw)


def _assert_keys_equal(got, ref):
    assert np.array_equal(got.keys, ref.keys)
    assert np.array_equal(got.accepted, ref.accepted)
    assert np.array_equal(got.margins.view(np.uint32), ref.margins.view(np.uint32))


def _assert_counts_equal(got, ref):
    assert (got.n_samples, got.n_accepted) == (ref.n_samples, ref.n_accepted)
    assert np.array_equal(got.keys, ref.keys)
    assert np.array_equal(got.counts, ref.counts)
    assert np.array_equal(got.first_index, ref.first_index)


def _kernels(be):
    return {ln[0].split("<")[0] for ln in be._dev.launches}


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
@pytest.mark.parametrize("name", sorted(PLANS))
def test_wide_sample_keys_bit_identical(emu, name, cfg):
    be = _backend(emu, **CONFIGS[cfg])
    got = be.sample_keys(_plan(name), *KEYS_RANGE, margins=True)
    assert _kernels(be) == {WIDE}
    _assert_keys_equal(got, _ref("keys", name, *KEYS_RANGE))


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
@pytest.mark.parametrize("name", sorted(PLANS))
def test_wide_count_range_identical(emu, name, cfg):
    be = _backend(emu, **CONFIGS[cfg])
    got = be.count_range(_plan(name), *COUNT_RANGE)
    ref = _ref("counts", name, *COUNT_RANGE)
    assert ref.n_accepted > 0, "the plan must accept samples, or the comparison is empty"
    assert _kernels(be) <= {WIDE, src.SEGMENT_MIN_KERNEL} and WIDE in _kernels(be)
    _assert_counts_equal(got, ref)


def test_plans_cover_the_tile_boundaries():
    """The plan list crosses what the module docstring claims (a guard against silently weakened plans)."""
    plans = {n: _plan(n) for n in PLANS}
    widths = [w for p in plans.values() for w in p.dense.widths[1:-1]]
    assert any(w > 64 for w in widths) and any(w % 64 for w in widths)          # several / partial neuron tiles
    assert any(p.m > 128 for p in plans.values()) and any(p.m % 128 for p in plans.values())  # row tiles
    assert any(max(p.dense.widths[:-1]) > 16 * 3 for p in plans.values())     # several k-segments of 16
    assert any(max(p.dense.widths[:-1]) % 16 for p in plans.values())         # a partial chunk
    assert {p.n_words for p in plans.values()} >= {1, 2, 3, 4}
    assert {p.mlp.activation for p in plans.values()} == {"relu", "tanh", "erf", "sign", "identity"}
    assert {p.mlp.n_layers for p in plans.values()} == {2, 3, 4}
    assert any(min(p.dense.widths[1:-1]) <= 8 < max(p.dense.widths[1:-1]) for p in plans.values())  # narrow path
    assert sum(p.conditioned for p in plans.values()) >= 2
    assert any(not p.mlp.bias for p in plans.values()) and any(p.mlp.weights == "uniform" for p in plans.values())
    sub = _ref("keys", "3-20-20-1-identity-subnormal-intermediates", *KEYS_RANGE)
    assert np.count_nonzero(sub.keys) > 0 and np.all(sub.margins < np.float32(2.0**-126))
    n_keys = KEYS_RANGE[1] - KEYS_RANGE[0]
    assert n_keys > 3 * CONFIGS["kseg16-3blocks"]["max_blocks"]               # several samples per block


def test_wide_reverse_thread_order_same_results(emu):
    """The results do not depend on the order in which the emulated threads run between barriers."""
    name = "6-66-1-erf-X140-train-accepting"
    be = _backend(emu, dev_kw=dict(order="reverse"), kernel="wide", wide_kseg=16, max_blocks=2)
    _assert_counts_equal(be.count_range(_plan(name), *COUNT_RANGE), _ref("counts", name, *COUNT_RANGE))
    _assert_keys_equal(be.sample_keys(_plan(name), *KEYS_RANGE, margins=True), _ref("keys", name, *KEYS_RANGE))


def test_auto_picks_the_wide_sampler_by_size(emu):
    """kernel="auto": a hidden layer of >= 128 neurons on >= 64 rows takes the wide sampler (and opts in to
    more than 48 KiB of shared memory: kseg = 208 -> 53 KiB), with the reference's bits."""
    plan = make_plan(MLP(6, (200,)), _rng_X(64, 6, 8), seed=8)
    be = _backend(emu, max_blocks=2)
    assert isinstance(be._choose_kernel(plan), WideSampler)
    got = be.sample_keys(plan, 0, 12, margins=True)
    assert _kernels(be) == {WIDE}
    assert be._dev.n_opt_in >= 1 and {ln[3] for ln in be._dev.launches} == {208 * 64 * 4}
    _assert_keys_equal(got, sample_keys_reference(plan, 0, 12, margins=True))


def test_wide_segment_lowered_to_the_cards_shared_memory(emu):
    """A card with 48 KiB per block and no opt-in: kseg is lowered to fit (144), the bits do not change."""
    plan = make_plan(MLP(6, (200,)), _rng_X(64, 6, 8), seed=8)
    be = _backend(emu, dev_kw=dict(smem_per_block_optin=48 * 1024), max_blocks=2)
    got = be.count_range(plan, 0, 12)
    smem = {ln[3] for ln in be._dev.launches if ln[0].startswith(WIDE)}
    assert smem == {144 * 64 * 4} and be._dev.n_opt_in == 0
    _assert_counts_equal(got, count_range_reference(plan, 0, 12))


def test_kernel_choice_by_size():
    """auto: fixed where it fits, wide for a wide hidden layer on enough rows, else generic; forced choices."""
    wide = CupyBackend()._choose_kernel(make_plan(MLP(64, (512, 512)), _rng_X(1000, 64, 0), seed=0))
    assert wide == WideSampler(kseg=256, maxw=512, stride=2 * 512 * 1000 + 2 * 16)
    assert wide.kernel_names() == [src.wide_kernel_name(md) for md in (src.MODE_KEYS, src.MODE_COUNT)]
    assert wide.filename == "sample_wide.cu"
    few_rows = make_plan(MLP(64, (512, 512)), _rng_X(32, 64, 0), seed=0)
    assert isinstance(CupyBackend()._choose_kernel(few_rows), GenericSampler)
    narrow = make_plan(MLP(4, (127, 127)), _rng_X(500, 4, 0), seed=0)
    assert isinstance(CupyBackend()._choose_kernel(narrow), GenericSampler)
    assert isinstance(CupyBackend()._choose_kernel(make_plan("7-40-40-1", None, 1)), FixedSampler)
    forced = CupyBackend(kernel="wide", wide_kseg=32)._choose_kernel(make_plan("7-40-40-1", None, 1))
    assert forced == WideSampler(kseg=32, maxw=40, stride=2 * 40 * 128 + 4)
    # the segment is never longer than the widest fan-in (rounded up to 16)
    assert CupyBackend(kernel="wide")._choose_kernel(make_plan("7-40-40-1", None, 1)).kseg == 48
    for bad in (0, 8, 24):
        with pytest.raises(ValueError, match="wide_kseg"):
            CupyBackend(wide_kseg=bad)
    with pytest.raises(ValueError, match="unknown kernel"):
        CupyBackend(kernel="tiled")


def _raw_args(plan, n, stride, kseg):
    desc, scales = src.net_desc(plan.mlp)
    order, labels = src.row_order(plan)
    Xt = np.ascontiguousarray(plan.X[order].T, dtype=np.float32)
    W = plan.n_words
    return [np.uint64(plan.seed), np.uint64(0), np.uint64(n), desc, scales, Xt, np.int32(plan.m),
            np.int32(plan.key_rows.size), labels if labels.size else np.zeros(1, np.uint8),
            np.zeros((n, W), np.uint64), np.zeros(n, np.uint8), np.zeros(n, np.float32),
            np.zeros((n, W), np.uint64), np.zeros(n, np.uint64), np.zeros(src.STATS_WORDS, np.uint64),
            np.zeros(4 * stride, np.float32), np.int64(stride), np.int32(max(plan.mlp.widths[1:])), np.int32(kseg)]


@pytest.mark.parametrize("what", ["kseg-not-multiple-of-16", "block-of-128", "17-layers"])
def test_wide_kernel_guards_set_the_status_word(emu, what):
    """A launch that does not fit the kernel's layout draws nothing and reports it (no __trap())."""
    dev = emu.EmuDevice()
    plan = _plan("5-37-19-1-relu-X70")
    name = src.wide_kernel_name(src.MODE_KEYS)
    k = dev.compile("sample_wide.cu", [name])[name]
    stride = 2 * 37 * plan.m + 2 * plan.n_words + 4
    good = _raw_args(plan, 5, stride, 32)
    dev.launch(k, (2,), (256,), good, 32 * 64 * 4)
    assert good[14][src.STATUS_WORD] == 0 and good[10].any()
    _assert_keys_equal_raw(good, sample_keys_reference(plan, 0, 5, margins=True))
    args = _raw_args(plan, 5, stride, 24 if what == "kseg-not-multiple-of-16" else 32)
    block = 128 if what == "block-of-128" else 256
    if what == "17-layers":
        args[3] = args[3].copy()
        args[3][0] = src.MAX_LAYERS + 1
    dev.launch(k, (2,), (block,), args, 32 * 64 * 4)
    want = 1 if what == "17-layers" else 8
    assert args[14][src.STATUS_WORD] == want and not args[10].any()
    with pytest.raises(src.KernelStatusError, match="kernel guard failed"):
        src.check_status(args[14][src.STATUS_WORD], "the wide keys kernel")


def _assert_keys_equal_raw(args, ref):
    assert np.array_equal(args[9], ref.keys)
    assert np.array_equal(args[10].astype(bool), ref.accepted)
    assert np.array_equal(args[11].view(np.uint32), ref.margins.view(np.uint32))


def test_wide_kernel_needs_its_shared_memory(emu):
    """Too little dynamic shared memory for kseg: the emulator's canary catches the overrun (the test can fail)."""
    dev = emu.EmuDevice()
    plan = _plan("5-37-19-1-relu-X70")
    name = src.wide_kernel_name(src.MODE_COUNT)
    k = dev.compile("sample_wide.cu", [name])[name]
    stride = 2 * 37 * plan.m + 2 * plan.n_words + 4
    with pytest.raises(emu.EmuLaunchError, match="wrote past"):
        dev.launch(k, (1,), (256,), _raw_args(plan, 3, stride, 48), 16 * 64 * 4)


@pytest.mark.parametrize("mutation", ["missing-barrier", "k-descending", "narrow-k-descending"])
def test_emulator_catches_a_broken_wide_kernel(emu, tmp_path, mutation):
    """sample_wide.cu without the barrier that frees the staged inputs, or summing k backwards (tiled or narrow
    layers): wrong bits, caught."""
    import shutil

    from cuda_emu import build

    text = (src.kernel_dir() / "sample_wide.cu").read_text()
    old, new = {
        "missing-barrier": ("__syncthreads();  // s_h is free", "/* barrier removed */"),
        "k-descending": ("for (int kk = 0; kk < FP_WIDE_KC; ++kk)\n",
                         "for (int kk = FP_WIDE_KC - 1; kk >= 0; --kk)\n"),
        "narrow-k-descending": ("for (int k = 0; k < ks; ++k) z = fp_fma(", "for (int k = ks - 1; k >= 0; --k) z = fp_fma("),
    }[mutation]
    assert text.count(old) == 1
    kdir = tmp_path / "kernels"
    shutil.copytree(src.kernel_dir(), kdir)
    (kdir / "sample_wide.cu").write_text(text.replace(old, new))
    names = [src.wide_kernel_name(md) for md in (src.MODE_KEYS, src.MODE_COUNT)]
    dev = emu.EmuDevice(library=str(build.build_library(names, kernel_dir=kdir)))
    be = CupyBackend(device=dev, kernel="wide", max_blocks=2)
    be._functions = lambda f, names: dev.compile(f, names)
    plan = _plan("5-37-19-1-relu-X70")  # 37 -> 19: two full chunks of 16 inputs and a partial one
    ref = _ref("keys", "5-37-19-1-relu-X70", *KEYS_RANGE)
    got = be.sample_keys(plan, *KEYS_RANGE, margins=True)
    assert not np.array_equal(got.margins.view(np.uint32), ref.margins.view(np.uint32))


def test_wide_ptx_has_no_ftz():
    """The backend's own NVRTC path (no GPU needed) keeps subnormals in sample_wide.cu: no .ftz arithmetic."""
    path = src.find_nvrtc_library()
    if path is None:
        pytest.skip("libnvrtc not found (set FASTPOLY_NVRTC_LIB or pip install nvidia-cuda-nvrtc)")
    names = [src.wide_kernel_name(md) for md in (src.MODE_KEYS, src.MODE_COUNT)]
    ptx, lowered = src.build_ptx("sample_wide.cu", names, src.CtypesNVRTC(path), arch="90")
    assert src.ptx_ftz_instructions(ptx) == []
    assert set(lowered) == set(names)
    assert len(re.findall(r"\bfma\.rn\.f32\b", ptx)) >= 2 * 32 * 16  # the unrolled 4 x 8 x 16 chunk, both modes
