#!/usr/bin/env python
"""Smoke step of the GPU check: compile and launch every CUDA kernel once, record each result.

    python bench/gpu_smoke.py --json OUT/smoke.json            # ci/gpu-check.sh, first step (~20 s)
    python bench/gpu_smoke.py --emulate --json OUT/smoke.json  # the same on the CPU emulation

One row per kernel (``fastpoly_sample_fixed`` keys and count modes with ``fastpoly_segment_min``,
``fastpoly_sample_generic`` both modes, ``fastpoly_sample_wide`` both modes, ``fastpoly_csr_layer`` float/double, plain and fused,
``fastpoly_train``, ``fastpoly_train_math``, ``fastpoly_klz_ints``, ``fastpoly_train_wide``): compile seconds + first
launch, and whether the result equals the reference (NumPy on at most 256 samples, Numba for
K_LZ, the bit-exact float32 library for the loss math).  A failing kernel is recorded with its
error and the next one still runs; the JSON is rewritten after every row.  Exit status 0 only
if every row passed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpu_common import PartialJSON, cupy_backend, emu_device  # noqa: E402

import fastpoly  # noqa: E402
from fastpoly import MLP, make_plan  # noqa: E402
from fastpoly.backends.reference import count_range_reference, sample_keys_reference  # noqa: E402

N = 256  # samples per sampler check (the NumPy reference of the anchor: ~0.8 CPU-s)


def _same_counts(got, ref):
    return bool((got.n_samples, got.n_accepted) == (ref.n_samples, ref.n_accepted)
                and np.array_equal(got.keys, ref.keys) and np.array_equal(got.counts, ref.counts)
                and np.array_equal(got.first_index, ref.first_index))


def _same_keys(got, ref):
    return bool(np.array_equal(got.keys, ref.keys) and np.array_equal(got.accepted, ref.accepted)
                and np.array_equal(got.margins.view(np.uint32), ref.margins.view(np.uint32)))


def checks(emulate):
    """(name, kernels, function returning (ok, detail)) of every smoke check."""
    anchor = make_plan(MLP(7, (40, 40)), None, seed=0)
    rng = np.random.default_rng(3)
    Xg = rng.standard_normal((100, 4)).astype(np.float32)
    generic = make_plan(MLP(4, (6, 6, 6)), Xg, seed=3)
    wide = make_plan(MLP(4, (130, 20)), Xg, seed=4)  # kernel="auto" takes the wide sampler (>= 128 wide, >= 64 rows)

    def fixed_keys():
        got = cupy_backend(emulate).sample_keys(anchor, 2**32 - 100, 2**32 - 100 + N, margins=True)
        return _same_keys(got, sample_keys_reference(anchor, 2**32 - 100, 2**32 - 100 + N, margins=True)), ""

    def fixed_count():
        be = cupy_backend(emulate)
        got = be.count_range(anchor, 1000, 1000 + N)
        return _same_counts(got, count_range_reference(anchor, 1000, 1000 + N)), f"{got.counts.size} distinct"

    def generic_both():
        be = cupy_backend(emulate, kernel="generic")
        k = be.sample_keys(generic, 0, N, margins=True)
        c = be.count_range(generic, 0, N)
        return (_same_keys(k, sample_keys_reference(generic, 0, N, margins=True))
                and _same_counts(c, count_range_reference(generic, 0, N))), ""

    def wide_both():
        be = cupy_backend(emulate, kernel="wide", wide_kseg=32)  # several k-segments and neuron tiles
        k = be.sample_keys(wide, 0, N, margins=True)
        c = be.count_range(wide, 0, N)
        return (_same_keys(k, sample_keys_reference(wide, 0, N, margins=True))
                and _same_counts(c, count_range_reference(wide, 0, N))), f"{c.counts.size} distinct"

    def csr():
        from fastpoly.poly.structured import SparseLayer, StructuredNetwork, evaluate_structured_reference
        from fastpoly.tolerances import assert_close_to_reference

        g = np.random.default_rng(5)
        snet = StructuredNetwork([SparseLayer.from_dense(g.standard_normal((9, 3)), g.standard_normal(9), "softplus"),
                                  SparseLayer.from_dense(g.standard_normal((1, 9)), g.standard_normal(1), "identity")])
        X = g.uniform(-1, 1, (300, 3))
        be = cupy_backend(emulate)
        for dt in (np.float32, np.float64):
            assert_close_to_reference(be.evaluate(snet, X, dt), evaluate_structured_reference(snet, X, dt), dt)
        net = MLP(7, (40, 40)).instantiate(3, 12345)  # dense float32: the fused instantiation
        X7 = fastpoly.boolean_inputs(7)
        got = np.asarray(be.evaluate(net, X7, np.float32), np.float32)
        ref = fastpoly.network.forward_reference(net, X7, np.float32)
        return bool(np.array_equal(got.view(np.uint32), ref.view(np.uint32))), ""

    def train():
        from fastpoly.backends.cuda.train import train_range_cuda
        from fastpoly.sgd import Recipe, make_train_plan
        from fastpoly.sgd.reference import train_range_reference

        X4 = fastpoly.boolean_inputs(4)
        rows = np.array([3, 0, 7, 12, 5, 9, 14, 1])
        tp = make_train_plan("4-6-5-1", X4, (rows, ((rows >> 1) & 1).astype(np.uint8)), 3,
                             Recipe(lr=0.1, batch_size=3, max_epochs=40, epochs_after_fit=1))
        got = train_range_cuda(tp, 0, 4, params=True, device=emu_device() if emulate else None)
        ref = train_range_reference(tp, 0, 4, params=True)
        ok = all(np.array_equal(getattr(got, f), getattr(ref, f))
                 for f in ("keys", "init_keys", "status", "first_fit", "epochs"))
        ok = ok and np.array_equal(got.params.view(np.uint32), ref.params.view(np.uint32))
        return bool(ok), f"epochs {got.epochs.tolist()}"

    def train_wide():
        from fastpoly.backends.cuda.train import train_range_cuda
        from fastpoly.sgd import Recipe, make_train_plan
        from fastpoly.sgd.reference import train_range_reference

        g = np.random.default_rng(11)
        X = g.random((40, 5), dtype=np.float32)
        tp = make_train_plan(MLP(5, (70, 33)), X, (np.arange(30), (g.random(30) < 0.5).astype(np.uint8)), 3,
                             Recipe(optimizer="adam", lr=0.01, batch_size=8, max_epochs=3))
        got = train_range_cuda(tp, 0, 4, params=True, device=emu_device() if emulate else None, path="tiled")
        ref = train_range_reference(tp, 0, 4, params=True)
        ok = all(np.array_equal(getattr(got, f), getattr(ref, f))
                 for f in ("keys", "init_keys", "status", "first_fit", "epochs"))
        ok = ok and np.array_equal(got.loss.view(np.uint32), ref.loss.view(np.uint32))
        ok = ok and np.array_equal(got.params.view(np.uint32), ref.params.view(np.uint32))
        return bool(ok), f"epochs {got.epochs.tolist()}"

    def train_math():
        from fastpoly.backends.cuda.train import loss_math_cuda
        from fastpoly.stream import fmath_train as sf

        x = np.random.default_rng(7).standard_normal(500).astype(np.float32) * 20
        got = loss_math_cuda(x, device=emu_device() if emulate else None)
        want = [sf.exp32(x), sf.sigmoid32(x), sf.softplus32(x), sf.log1p32(np.abs(x))]
        return all(np.array_equal(np.asarray(w, np.float32).view(np.uint32), got[i].view(np.uint32))
                   for i, w in enumerate(want)), ""

    def klz():
        from fastpoly.backends.cuda.klz import complexity_ints_cuda
        from fastpoly.backends.numba import klz as numba_klz

        keys = np.random.default_rng(1).integers(0, 2**64, size=(200, 2), dtype=np.uint64)
        ref = numba_klz.complexity_ints(keys, 128, 7)
        got = complexity_ints_cuda(keys, 128, 7, device=emu_device() if emulate else None)
        return all(np.array_equal(g, r) for g, r in zip(got, ref)), ""

    return [
        ("sampler fixed keys (7-40-40-1)", "fastpoly_sample_fixed<7, 40, 40, 4, 0, 0>", fixed_keys),
        ("sampler fixed count (7-40-40-1)", "fastpoly_sample_fixed<7, 40, 40, 4, 0, 1>, fastpoly_segment_min",
         fixed_count),
        ("sampler generic keys + count", "fastpoly_sample_generic<0>, fastpoly_sample_generic<1>", generic_both),
        ("sampler wide keys+count 4-130-20-1", "fastpoly_sample_wide<0>, fastpoly_sample_wide<1>", wide_both),
        ("csr layer float/double, fused", "fastpoly_csr_layer<float|double, 0|1>", csr),
        ("P_SGD trainer", "fastpoly_train", train),
        ("trainer loss math", "fastpoly_train_math", train_math),
        ("K_LZ", "fastpoly_klz_ints", klz),
        ("P_SGD tiled wide trainer (5-70-33-1)", "fastpoly_train_wide", train_wide),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None)
    ap.add_argument("--emulate", action="store_true", help="run on the CPU emulation of CUDA (tests/cuda_emu)")
    a = ap.parse_args(argv)
    info = {"emulate": a.emulate}
    try:
        be = cupy_backend(a.emulate)
        ok, why = be.availability()
        info["device"] = be.describe() if ok else f"unavailable: {why}"
        if not a.emulate:
            from fastpoly.backends.cuda.backend import CupyDevice

            dev = be._device()
            info["arch"] = getattr(dev, "arch", None)
            if isinstance(dev, CupyDevice):
                info["nvrtc"] = list(dev._nvrtc().version())
    except Exception as exc:  # noqa: BLE001 - reported in the JSON
        info["device"] = f"error: {exc!r}"
    out = PartialJSON(a.json, info)
    print(f"smoke: {info.get('device')}", flush=True)
    failed = 0
    for name, kernels, fn in checks(a.emulate):
        t0 = time.perf_counter()
        row = {"check": name, "kernels": kernels}
        try:
            ok, detail = fn()
            row.update(ok=bool(ok), detail=detail)
        except Exception as exc:  # noqa: BLE001 - every kernel is tried; the error is the result
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                       traceback=traceback.format_exc(limit=6))
        row["seconds"] = round(time.perf_counter() - t0, 3)
        out.add(row)
        failed += not row["ok"]
        print(f"  {'ok  ' if row['ok'] else 'FAIL'} {name:36s} {row['seconds']:7.2f} s  "
              f"{row.get('error', row.get('detail', ''))}", flush=True)
    out.finish(passed=len(out.rows) - failed, failed=failed)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
