"""EP at scale: seconds and peak memory of the NNGP kernel, EP log P(S) and P_B^GP(f|S) for m train points.

Usage (each size runs in a fresh subprocess so its peak RSS is its own)::

    OPENBLAS_NUM_THREADS=1 python bench/ep_scale.py [--sizes 1000,2000,5000] [--test 100]
        [--functions 10] [--joint 2] [--max-sweeps N] [--kernel-only]

Data: scikit-learn's 8 x 8 digits (``fastpoly.data.load("digits")``, label < 5), and for m + test
beyond its 1797 images the same digits augmented -- each extra image a digit shifted by up
to one pixel with N(0, 0.05^2) pixel noise, clipped to [0, 1] -- so the kernel keeps the
structure of real images; 64-40-40-1 relu, sigma_w = sigma_b = 1.  Functions on the test
images: the test labels with a fraction 0, 0.02, 0.05, ... of them flipped.  Rows:

* ``kernel``: :func:`fastpoly.gp.scale.kernel_blocked` of m + test rows (and, with
  m = 1000, the FCN 784-1024-1024-1 kernel of MNIST-sized random images for the build time);
* ``P(S)``: :func:`condition_ep` (parallel EP, in-place LAPACK) -- seconds, CPU seconds (on a loaded
  machine with one BLAS thread, the time an unshared core would take), sweeps, seconds per sweep;
* ``shared``: P_B^GP of ``--functions`` functions by the shared route (all of them);
* ``joint``: the paper's definition for ``--joint`` functions (seconds per function);
* memory in units of m^2 doubles: the kernel (n^2 / m^2), the peak ``tracemalloc`` (NumPy
  buffers) of EP and of the joint route beyond what was held before them, and the process's peak RSS.

``--max-sweeps`` caps the EP sweeps (for m = 10,000 on a small machine): the row then reports
the seconds per sweep and is marked ``capped``; the total is extrapolated from the sweeps
the uncapped smaller sizes needed, and says so.  On a machine shared with other jobs set
``OPENBLAS_NUM_THREADS=1`` (OpenBLAS's spinning threads made a 1000 x 1000 Cholesky 100x
slower there).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np


def augmented_digits(n: int, seed: int = 0):
    """``n`` digit images (64 pixels in [0, 1]) and labels (digit < 5): the 1797 real ones, then augmented."""
    import fastpoly.data as D

    d = D.load("digits", binarize="lt5", n_test=0, dtype=np.float64, seed=seed)
    X, y = np.asarray(d.X_train), np.asarray(d.y_train)
    if n <= X.shape[0]:
        return X[:n], y[:n]
    rng = np.random.default_rng(seed + 1)
    extra = n - X.shape[0]
    src = rng.integers(0, X.shape[0], extra)
    imgs = X[src].reshape(extra, 8, 8)
    dx, dy = rng.integers(-1, 2, extra), rng.integers(-1, 2, extra)
    out = np.empty_like(imgs)
    for i in range(extra):
        out[i] = np.roll(np.roll(imgs[i], dy[i], axis=0), dx[i], axis=1)
    out = np.clip(out + 0.05 * rng.standard_normal(out.shape), 0.0, 1.0)
    return np.vstack([X, out.reshape(extra, 64)]), np.concatenate([y, y[src]])


def one_size(m: int, n_test: int, n_functions: int, n_joint: int, max_sweeps: int | None) -> dict:
    import fastpoly
    from fastpoly.gp.scale import condition_ep, gaussian_orthants, kernel_blocked, posterior_gp

    arch = fastpoly.MLP(64, (40, 40))
    X, y = augmented_digits(m + n_test)
    Xtr, ytr, Xte, yte = X[:m], y[:m], X[m:], y[m:]
    row: dict = {"m": m, "test": n_test, "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}
    tracemalloc.start()
    t = time.perf_counter()
    K = kernel_blocked(arch, X)
    row["kernel_s"] = time.perf_counter() - t
    if m == 1000:
        Xm = np.random.default_rng(0).random((m + n_test, 784))
        t = time.perf_counter()
        kernel_blocked(fastpoly.MLP(784, (1024, 1024), sigma_b=0.0357), Xm)
        row["kernel_fcn784_s"] = time.perf_counter() - t
        del Xm
    _, peak_kernel = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]  # K and the inputs, held before EP starts
    t, tc = time.perf_counter(), time.process_time()
    c = condition_ep(K[:m, :m], ytr, linalg="numpy", max_iter=max_sweeps or 300)
    row["logP_S_s"] = time.perf_counter() - t
    row["logP_S_cpu_s"] = time.process_time() - tc  # CPU seconds: the time on an unshared core (1 BLAS thread)
    row["logP_S"] = c.log_p_S
    row["sweeps"] = c.diagnostics["iterations"]
    row["converged"] = c.diagnostics["converged"]
    row["s_per_sweep"] = row["logP_S_s"] / max(row["sweeps"], 1)
    row["capped"] = bool(max_sweeps) and not c.diagnostics["converged"]
    rng = np.random.default_rng(1)
    fracs = [0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
    fs = np.array([np.where(rng.random(n_test) < fracs[i % len(fracs)], 1 - yte, yte)
                   for i in range(n_functions)])
    t, tc = time.perf_counter(), time.process_time()
    mean, cov = c.predictive(K[:m, m:], K[m:, m:])
    lp_shared, _, _ = gaussian_orthants(mean, cov, fs)
    row["shared_s"] = time.perf_counter() - t
    row["shared_cpu_s_per_function"] = (time.process_time() - tc) / max(n_functions, 1)
    row["shared_s_per_function"] = row["shared_s"] / max(n_functions, 1)
    _, peak_ep = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    base_joint = tracemalloc.get_traced_memory()[0]
    if n_joint and not row["capped"]:
        t, tc = time.perf_counter(), time.process_time()
        pj = posterior_gp(arch, Xtr, ytr, Xte, fs[:n_joint], mode="joint", K=K, linalg="numpy")
        # the call conditions on S again first: count only the per-function joint EPs
        cond = pj.meta["gp"]["conditioning"]
        row["joint_s_per_function"] = (time.perf_counter() - t - cond["seconds"]) / n_joint
        row["joint_cpu_s_per_function"] = (time.process_time() - tc - cond["cpu_seconds"]) / n_joint
        row["joint_log_p"] = pj.log_p.tolist()
        row["shared_log_p"] = lp_shared[:n_joint].tolist()
        row["joint_sweeps"] = [d["iterations"] for d in pj.diagnostics]
    _, peak_joint = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    md = float(m) * m * 8
    row["kernel_m2"] = K.nbytes / md
    row["peak_tracemalloc_kernel_m2"] = peak_kernel / md
    row["peak_tracemalloc_ep_extra_m2"] = (peak_ep - base) / md
    row["peak_tracemalloc_joint_extra_m2"] = (peak_joint - base_joint) / md
    row["peak_rss_GB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    row["peak_rss_m2"] = row["peak_rss_GB"] * 2**30 / md
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,2000,5000")
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--functions", type=int, default=10)
    ap.add_argument("--joint", type=int, default=2, help="functions by the joint (paper's) route per size")
    ap.add_argument("--max-sweeps", type=int, default=None)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one_size(a.one, a.test, a.functions, a.joint, a.max_sweeps)))
        return 0
    rows = []
    for m in (int(s) for s in a.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(m), "--test", str(a.test), "--functions", str(a.functions),
               "--joint", str(a.joint)] + (["--max-sweeps", str(a.max_sweeps)] if a.max_sweeps else [])
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode:
            print(f"m = {m}: failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            continue
        row = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(row)
        sweeps_ref = [x["sweeps"] for x in rows if x["converged"]]
        est = ""
        if row["capped"] and sweeps_ref:
            est = f"  (capped; x {max(sweeps_ref)} sweeps of the smaller sizes ~ {row['s_per_sweep'] * max(sweeps_ref):.0f} s)"
        jt = (f"; joint {row['joint_s_per_function']:.1f} s ({row['joint_cpu_s_per_function']:.1f} CPU s)/function "
              f"({row['joint_sweeps']} sweeps)"
              if "joint_s_per_function" in row else "")
        fcn = f"; FCN-784 kernel {row['kernel_fcn784_s']:.1f} s" if "kernel_fcn784_s" in row else ""
        print(f"m = {m:5d} + {row['test']}: kernel {row['kernel_s']:.2f} s{fcn}; log P(S) = {row['logP_S']:.2f} in "
              f"{row['logP_S_s']:.1f} s ({row['logP_S_cpu_s']:.1f} CPU s; {row['sweeps']} sweeps, "
              f"{row['s_per_sweep']:.2f} s/sweep){est}; "
              f"shared {row['shared_s_per_function'] * 1e3:.0f} ms ({row['shared_cpu_s_per_function'] * 1e3:.0f} CPU ms)"
              f"/function{jt}; memory (m^2 doubles): kernel "
              f"{row['kernel_m2']:.2f}, EP beyond it {row['peak_tracemalloc_ep_extra_m2']:.2f}, joint beyond it "
              f"{row['peak_tracemalloc_joint_extra_m2']:.2f} (tracemalloc); peak RSS {row['peak_rss_GB']:.2f} GB "
              f"= {row['peak_rss_m2']:.2f} m^2 doubles", flush=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
