#!/usr/bin/env python
"""Compare fastpoly's backends with the baselines users write, in one run.

Prints samples/s (best of N rounds after a warm-up) and ratios, and writes JSON with --json.

    python bench/compare.py --json out.json             # full comparison on this machine
    python bench/compare.py --quick                      # seconds; a smoke test
    python bench/compare.py --device cuda --json g.json  # GPU: cupy backend vs PyTorch eager / torch.compile
    python bench/compare.py --gpu-only --json g.json     # ci/gpu-check.sh: GPU rows, CPU rows only at tiny N
    python bench/compare.py --gpu-only --emulate --json g.json  # the same on the CPU emulation of CUDA

``--gpu-only`` (implies ``--device cuda``): the cupy backend and PyTorch on CUDA (eager, then
``torch.compile`` last, since its cold compile is slow); the NumPy reference at <= 256 samples
and Numba at small N (for the ratios only); no P_SGD rows (bench/gpu_sgd.py has them); the
polynomial NumPy reference at <= 2,000 points.  The JSON (``"complete": false`` until the end)
is rewritten after every row, so a run stopped by its time slot keeps every finished row.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from baselines import numpy_blas_sampler, torch_available, torch_sampler  # noqa: E402
from gpu_common import PartialJSON, cupy_backend  # noqa: E402

import fastpoly  # noqa: E402

TARGET_S = 1.0  # seconds per timed round (set by --round-seconds)
REC = PartialJSON(None)  # rows, rewritten to --json after each one (main() sets the path)


def best_rate(fn, n, rounds, warmup=True, calibrate=True):
    """Best samples/s over ``rounds`` calls of ``fn(n')`` after a warm-up.

    ``n`` is an upper bound: the warm-up calibrates ``n'`` so one round takes about
    ``TARGET_S`` seconds, so a slow backend never overruns the time budget.
    """
    if warmup:
        fn(max(1, min(n, 1024)))
    k = max(1, min(n, 1024)) if calibrate else n
    while k < n:
        t = time.perf_counter()
        fn(k)
        dt = time.perf_counter() - t
        if dt >= TARGET_S / 4:
            k = int(min(n, max(k, k * TARGET_S / max(dt, 1e-9))))
            break
        k = min(n, k * 4)
    n = k
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t
        best = max(best, n / dt)
    return best


def sampler_rows(args, arch, X, train):
    rows = []
    label = "cond64" if train is not None else "prior"

    def add(name, kind, fn, n):
        try:
            r = best_rate(fn, n, args.rounds)
        except Exception as e:  # a baseline that cannot run here is reported, not fatal
            rows.append(REC.add({"workload": f"sampler-{label}", "name": name, "kind": kind, "error": repr(e)}))
            print(f"  {name:28s} failed: {e!r}", flush=True)
            return
        rows.append(REC.add({"workload": f"sampler-{label}", "name": name, "kind": kind, "samples_per_s": r,
                             "n": n}))
        print(f"  {name:28s} {r:14,.0f} samples/s", flush=True)

    scale = 0.01 if args.quick else 1.0
    torch_ok = torch_available() and not args.no_torch
    if args.gpu_only:
        be = cupy_backend(args.emulate)
        ok, why = be.availability()
        if ok:
            add("fastpoly cupy", "fastpoly",
                lambda k: fastpoly.sample(arch, X, k, seed=1, backend=be, train=train, progress=False),
                2_000 if args.emulate else 2_000_000_000)
        else:
            rows.append(REC.add({"workload": f"sampler-{label}", "name": "fastpoly cupy", "kind": "fastpoly",
                                 "error": why}))
        if torch_ok and train is None and not args.emulate:
            add("pytorch bmm (cuda eager)", "baseline",
                lambda n: torch_sampler(arch, X, n, device="cuda", batch=65536), 2_000_000)
        # CPU rows at tiny N: only to give the ratios a reference point
        add("fastpoly numpy (reference)", "reference",
            lambda n: fastpoly.sample(arch, X, n, seed=1, backend="numpy", train=train, progress=False), 256)
        if fastpoly.backends()["numba"]["available"] and not args.emulate:
            add("fastpoly numba", "fastpoly",
                lambda k: fastpoly.sample(arch, X, k, seed=1, backend="numba", train=train, progress=False), 100_000)
        if torch_ok and train is None and not args.emulate and not args.no_compile:
            add("pytorch bmm (cuda compile)", "baseline",
                lambda n: torch_sampler(arch, X, n, device="cuda", batch=65536, compiled=True), 2_000_000)
        return rows
    add("fastpoly numpy (reference)", "reference",
        lambda n: fastpoly.sample(arch, X, n, seed=1, backend="numpy", train=train, progress=False),
        max(16, int(4096 * scale)))
    if train is None:
        add("numpy batched BLAS", "baseline", lambda n: numpy_blas_sampler(arch, X, n), max(64, int(200000 * scale)))
        if torch_ok:
            add("pytorch bmm (cpu)", "baseline", lambda n: torch_sampler(arch, X, n, device="cpu"),
                max(64, int(200000 * scale)))
            if args.device == "cuda":
                add("pytorch bmm (cuda eager)", "baseline",
                    lambda n: torch_sampler(arch, X, n, device="cuda", batch=65536), int(2_000_000 * scale))
                add("pytorch bmm (cuda compile)", "baseline",
                    lambda n: torch_sampler(arch, X, n, device="cuda", batch=65536, compiled=True),
                    int(2_000_000 * scale))
    report = fastpoly.backends()
    for name in ("numba", "cupy"):
        if not report[name]["available"]:
            print(f"  fastpoly {name:19s} unavailable: {report[name]['reason']}")
            rows.append(REC.add({"workload": f"sampler-{label}", "name": f"fastpoly {name}", "kind": "fastpoly",
                                 "error": report[name]["reason"]}))
            continue
        n = {"numba": 10_000_000, "cupy": 2_000_000_000}[name]
        add(f"fastpoly {name}", "fastpoly",
            lambda k, name=name: fastpoly.sample(arch, X, k, seed=1, backend=name, train=train, progress=False),
            max(1000, int(n * scale)))
    return rows


def wide_sampler_rows(args):
    """Samples/s of a wide MLP on the cupy backend: the tiled sampler (kernels/sample_wide.cu) and the generic one.

    64-512-512-1 on 1,000 digit-sized rows (64 synthetic features in [0, 1]), unconditioned, exact
    counting; GFLOP/s = samples/s x 2 x multiply-adds per sample.  On the emulation: 16-128-128-1 on
    64 rows (the smallest net ``kernel="auto"`` sends to the wide sampler), a few samples.
    """
    rows = []
    spec, m, n = ("16-128-128-1", 64, 8) if args.emulate else ("64-512-512-1", 1000, 2_000_000)
    arch = fastpoly.MLP.from_string(spec)
    X = np.random.default_rng(0).random((m, arch.n_inputs), dtype=np.float32)
    fma = m * sum(a * b for a, b in zip(arch.widths[:-1], arch.widths[1:]))
    wl = f"sampler-wide-{spec}-m{m}"
    for kernel in ("wide", "generic"):
        name = f"fastpoly cupy ({kernel})"
        try:
            be = cupy_backend(args.emulate, kernel=kernel)
            ok, why = be.availability()
            if not ok:
                raise RuntimeError(why)
            # one timed round each: the GPU check's compare slot is tight (the wide module's NVRTC compile is ~2 s)
            r = best_rate(lambda k, be=be: fastpoly.sample(arch, X, k, seed=1, backend=be, progress=False), n, 1)
        except Exception as e:  # reported, not fatal
            rows.append(REC.add({"workload": wl, "name": name, "kind": "fastpoly", "error": repr(e)}))
            print(f"  {name:28s} failed: {e!r}", flush=True)
            continue
        rows.append(REC.add({"workload": wl, "name": name, "kind": "fastpoly" if kernel == "wide" else "baseline",
                             "samples_per_s": r, "gflops": r * 2 * fma / 1e9, "n": n}))
        print(f"  {name:28s} {r:14,.0f} samples/s  {r * 2 * fma / 1e9:10,.0f} GFLOP/s", flush=True)
    return rows


def poly_rows(args):
    try:
        from fastpoly.poly import compile_polynomial, random_polynomial
    except ImportError as e:
        print(f"  polynomial networks unavailable: {e}")
        return []
    rows = []
    n_points = args.poly_points or (10_000 if args.quick else 1_000_000)
    p = random_polynomial(16, 4, 50, seed=0)
    X = np.random.default_rng(0).uniform(-1, 1, (n_points, 16))
    report = fastpoly.backends()
    emu_be = cupy_backend(True) if args.emulate else None
    for dtype in ("float32", "float64"):
        net = compile_polynomial(p, activation="softplus", construction="tree", dtype=dtype)
        for name in ("numpy", "numba", "cupy"):
            if name == "cupy" and emu_be is not None:
                pass
            elif not report[name]["available"] or (args.emulate and name == "numba"):
                continue
            Xd = X.astype(dtype)
            # the reference is slow: fewer rounds; every row evaluates all n_points in each round
            rounds = max(1, args.rounds - 3) if name == "numpy" else args.rounds
            n_eval = min(n_points, args.ref_points) if name == "numpy" else n_points  # the reference: small N
            try:
                bk = emu_be if (name == "cupy" and emu_be is not None) else name
                r = best_rate(lambda n, bk=bk: fastpoly.evaluate(net, Xd[:n], backend=bk, dtype=dtype), n_eval,
                              rounds, calibrate=False)
            except Exception as e:
                rows.append(REC.add({"workload": f"poly-{dtype}", "name": f"fastpoly {name}", "error": repr(e)}))
                print(f"  {dtype} {name:10s} failed: {e!r}")
                continue
            rows.append(REC.add({"workload": f"poly-{dtype}", "name": f"fastpoly {name}",
                                 "kind": "reference" if name == "numpy" else "fastpoly", "points_per_s": r,
                                 "n": n_eval}))
            print(f"  {dtype} {name:10s} {r:14,.0f} points/s", flush=True)
    return rows


def ratios(rows):
    by = {}
    for r in rows:
        by.setdefault(r["workload"], []).append(r)
    lines = []
    for wl, rs in by.items():
        key = "samples_per_s" if wl.startswith(("sampler", "sgd")) else "points_per_s"
        ok = [r for r in rs if key in r]
        ref = next((r[key] for r in ok if r.get("kind") == "reference"), None)
        base = max((r[key] for r in ok if r.get("kind") == "baseline"), default=None)
        lines.append(f"\n{wl}")
        label = "runs_per_s" if wl.startswith("sgd") else key
        lines.append(f"  {'name':28s} {label:>16s} {'x reference':>12s} {'x best baseline':>16s}")
        for r in ok:
            xr = f"{r[key] / ref:12.1f}" if ref else f"{'':12s}"
            xb = f"{r[key] / base:16.2f}" if base else f"{'':16s}"
            r["x_reference"] = r[key] / ref if ref else None
            r["x_best_baseline"] = r[key] / base if base else None
            lines.append(f"  {r['name']:28s} {r[key]:16,.0f} {xr} {xb}")
    return "\n".join(lines)


def sgd_rows(args):
    """runs/s of the anchor recipe: fastpoly numba vs PyTorch CPU (batched bmm with masks, torch.func.vmap)."""
    from baselines import torch_sgd_bmm, torch_sgd_vmap

    rows = []

    def add(name, kind, fn, n):
        try:
            r = best_rate(fn, n, args.rounds)
        except Exception as e:  # a baseline that cannot run here is reported, not fatal
            rows.append(REC.add({"workload": "sgd-anchor32", "name": name, "kind": kind, "error": repr(e)}))
            print(f"  {name:28s} failed: {e!r}", flush=True)
            return
        rows.append(REC.add({"workload": "sgd-anchor32", "name": name, "kind": kind, "samples_per_s": r, "n": n}))
        print(f"  {name:28s} {r:14,.1f} runs/s", flush=True)

    scale = 0.05 if args.quick else 1.0
    add("fastpoly numpy (reference)", "reference",
        lambda n: fastpoly.sample_sgd_anchor(n_runs=n, backend="numpy", callback_leak=False), 1)
    add("fastpoly numba", "fastpoly",
        lambda n: fastpoly.sample_sgd_anchor(n_runs=n, backend="numba", callback_leak=False),
        max(16, int(4000 * scale)))
    if torch_available() and not args.no_torch:
        add("pytorch bmm + masks (cpu)", "baseline", lambda n: torch_sgd_bmm(n), max(16, int(2000 * scale)))
        add("pytorch func.vmap (cpu)", "baseline", lambda n: torch_sgd_vmap(n), max(16, int(2000 * scale)))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="7-40-40-1")
    ap.add_argument("--rounds", type=int, default=5, help="best of this many timed rounds (after a warm-up)")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device of the PyTorch baselines")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
    ap.add_argument("--no-poly", action="store_true", help="skip polynomial evaluation")
    ap.add_argument("--no-sgd", action="store_true", help="skip P_SGD training (anchor recipe, runs/s)")
    ap.add_argument("--threads", type=int, help="Numba threads (default: all cores)")
    ap.add_argument("--poly-points", type=int, help="points for polynomial evaluation (default 1e6)")
    ap.add_argument("--ref-points", type=int, default=20_000,
                    help="points for the NumPy reference's polynomial evaluation (default 2e4)")
    ap.add_argument("--round-seconds", type=float, default=None,
                    help="target duration of one timed round (default 1, --quick 0.05)")
    ap.add_argument("--gpu-only", action="store_true",
                    help="GPU rows (cupy, PyTorch CUDA); CPU rows only at tiny N; no P_SGD rows")
    ap.add_argument("--emulate", action="store_true", help="with --gpu-only: the cupy rows on the CPU emulation")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    ap.add_argument("--no-cnn", action="store_true", help="skip CNN sampling (bench/bench_cnn.py)")
    args = ap.parse_args(argv)
    if args.emulate and not args.gpu_only:
        ap.error("--emulate needs --gpu-only")
    if args.gpu_only:
        args.device = "cuda"
        args.no_sgd = True
        args.ref_points = min(args.ref_points, 2000)
    global TARGET_S, REC
    TARGET_S = args.round_seconds or (0.05 if args.quick else 1.0)
    if args.threads:
        os.environ["FASTPOLY_NUM_THREADS"] = str(args.threads)
    arch = fastpoly.MLP.from_string(args.arch)
    X = fastpoly.boolean_inputs(arch.n_inputs)
    m = X.shape[0]
    train_rows = np.arange(0, m, 2)[:64] if m >= 128 else np.arange(0, m, 2)
    train = (train_rows, np.zeros(train_rows.size, np.uint8))  # the constant-0 target: a realistic acceptance rate
    info = {
        "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "numpy": np.__version__, "fastpoly": fastpoly.__version__,
        "backends": fastpoly.backends(), "arch": args.arch, "rounds": args.rounds, "quick": args.quick,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu_only": args.gpu_only, "emulate": args.emulate,
    }
    REC = PartialJSON(args.json, info)
    print(f"fastpoly {fastpoly.__version__} compare: {args.arch} on {m} inputs, best of {args.rounds} rounds, "
          f"{os.cpu_count()} cpus; auto backend = {info['backends']['auto']}")
    rows = []
    print("\nsampler, unconditioned (RNG + forward + keys + exact counting)")
    rows += sampler_rows(args, arch, X, None)
    print(f"\nsampler, conditioned on {train_rows.size} train rows (rejection)")
    rows += sampler_rows(args, arch, X, train)
    if args.gpu_only:
        print("\nwide MLP sampler (cupy): tiled kernel vs the generic one")
        rows += wide_sampler_rows(args)
    if not args.no_cnn and not args.gpu_only and fastpoly.backends()["numba"]["available"]:
        from bench_cnn import cnn_rows

        print()
        rows += cnn_rows(args.rounds, args.quick, torch_available() and not args.no_torch, REC)
    if not args.no_poly:
        print("\npolynomial network evaluation (16 vars, degree 4, 50 terms, tree, softplus)")
        rows += poly_rows(args)
    if not args.no_poly and not args.quick:  # issue 22: LTR classifier (digits QDA) vs the same net in torch
        from bench_ltr import ltr_rows

        print("\nLTR classifier: digits QDA (64 inputs, 10 classes, softplus), probabilities")
        rows += ltr_rows(args.poly_points or 1_000_000, args.rounds, use_torch=not args.no_torch,
                         backends=("cupy",) if args.gpu_only else ("numba", "cupy"))
    if not args.no_sgd:
        print("\nP_SGD training, anchor recipe m = 32 (7-40-40-1, SGD lr 0.01, batch 8, ce, until fit + 1 epoch)")
        rows += sgd_rows(args)
        from bench_cnn_train import rows as cnn_train_rows  # CNN training, SGD and Adam (bench_cnn_train.py)

        rows += [REC.add(r) for r in cnn_train_rows(args.quick, args.rounds, args.no_torch)]
        from bench_wide import NARROW  # MLP training on digits: GFLOP/s vs matmul, runs/s vs PyTorch (bench_wide.py)
        from bench_wide import rows as wide_rows

        rows += [REC.add(r) for r in wide_rows(args.quick, args.rounds, args.no_torch)]
        rows += [REC.add(r) for r in wide_rows(args.quick, args.rounds, args.no_torch, widths=NARROW)]
    print(ratios(rows))
    REC.doc["rows"] = rows  # the same rows, now with their ratios
    REC.finish()
    if args.json:
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
