#!/usr/bin/env python
"""The m = 32 anchor recipe on the GPU (``kernels/train.cu``) against PyTorch's batched ``bmm`` training.

    python bench/gpu_sgd.py --runs 1e6 --time-limit 40 --json OUT/sgd.json     # ci/gpu-check.sh

fastpoly: ``fastpoly.backends.cuda.train.train_range_cuda`` on the anchor plan (7-40-40-1 relu, 128 Boolean
inputs, m = 32, plain SGD lr 0.01, batch 8, ce, fit threshold 0.5, 1 epoch after fit, at most 3000
epochs), in launches of about 5 s (at most ``--chunk`` runs) until ``--runs`` are trained or ``--time-limit`` seconds
have passed (the rate is then measured on what ran).  Goal: >= 1e6 runs in < 30 s on an H100/H200.

PyTorch (``bench/baselines.py``: ``torch_sgd_bmm`` and ``torch_sgd_vmap``, the recipe as a user
writes it: all runs in one batch, masks for finished runs): ``--torch-runs`` networks for ``--torch-epochs`` epochs, timed per
epoch.  A batch of runs needs as many epochs as its slowest run, so its rate is projected twice:
``optimistic`` = runs / (epoch time x mean epochs of fastpoly's runs) and ``batch`` = runs /
(epoch time x max epochs of fastpoly's first runs of that batch size).  Writes a JSON summary.

Wide rows (``--wide-runs N``, 0: skipped): ``--wide-arch`` (default 784-1024-1024-1, relu, SGD lr 0.01,
batch 128) on synthetic MNIST-sized inputs (uniform [0, 1), no data needed), exactly ``--wide-epochs``
epochs per run, one launch per path of ``--wide-path`` (default ``tiled,layers``): the tiled kernel
(``kernels/train_wide.cu``, one block per run) with ``N`` runs on ``--wide-m`` images, right after the
anchor runs; the layer kernel (``kernels/train_cnn.cu``, one thread per run: far too slow for the same
sizes) with ``--wide-layers-runs`` runs on ``--wide-layers-m`` images, after the PyTorch baselines.  Each
row reports runs/s, training GFLOP/s (``E m (2 W + 2 W + 2 (W - W_1))`` per run, as ``bench/bench_wide.py``
counts; the fit check, final loss and keys not counted) and the projected time of the issue's goal at that
rate: 1e4 runs on 10,000 images for ``--wide-goal-epochs`` epochs (docs/guide/wide-networks.md has the
arithmetic).  ``wide`` in the JSON is the first row, ``wide_rows`` all of them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastpoly.sgd.anchor import anchor_problem, anchor_recipe  # noqa: E402
from fastpoly.sgd.plan import make_train_plan  # noqa: E402
from fastpoly.sgd.reference import STATUS_FAILED  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=float, default=1e6)
    ap.add_argument("--chunk", type=float, default=1e6)
    ap.add_argument("--time-limit", type=float, default=40.0, help="seconds for the fastpoly runs")
    ap.add_argument("--torch-runs", type=int, default=100000)
    ap.add_argument("--torch-epochs", type=int, default=10)
    ap.add_argument("--warmup-runs", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--emulate", action="store_true", help="the CPU emulation of CUDA (tiny sizes; no PyTorch)")
    ap.add_argument("--wide-runs", type=int, default=528, help="runs of the tiled wide row (0: no wide rows)")
    ap.add_argument("--wide-arch", default="784-1024-1024-1")
    ap.add_argument("--wide-m", type=int, default=1024, help="train images of the tiled wide row")
    ap.add_argument("--wide-layers-runs", type=int, default=2, help="runs of the layer-kernel wide row")
    ap.add_argument("--wide-layers-m", type=int, default=64, help="train images of the layer-kernel wide row")
    ap.add_argument("--wide-epochs", type=int, default=1)
    ap.add_argument("--wide-goal-epochs", type=int, default=10, help="epochs per run assumed by the projection")
    ap.add_argument("--wide-path", type=_paths, default="tiled,layers",
                    help="comma-separated CUDA trainer paths of the wide rows, in order: tiled, layers, auto")
    a = ap.parse_args(argv)

    from fastpoly.backends.cuda.train import default_device
    from fastpoly.backends.cuda.train import train_range_cuda as _train

    if a.emulate:
        from gpu_common import emu_device

        dev = emu_device()
    else:
        dev = default_device()

    def train_range_cuda(tp, lo, hi):
        return _train(tp, lo, hi, device=dev)

    arch, X, train, _ = anchor_problem(32)
    tp = make_train_plan(arch, X, train, a.seed, anchor_recipe(1))
    res = {"recipe": tp.recipe.to_dict(), "arch": arch.spec, "m": 32, "device": dev.properties()}
    t0 = time.perf_counter()
    warm = train_range_cuda(tp, 0, a.warmup_runs)  # NVRTC compile (or the PTX cache), module load, first launch
    res["warmup_s"] = time.perf_counter() - t0
    n_goal, chunk = int(a.runs), min(int(a.chunk), 10000)
    done, epochs, fitted, t_train = 0, [], 0, 0.0
    while done < n_goal and t_train < a.time_limit:
        n = min(chunk, n_goal - done)
        t1 = time.perf_counter()
        b = train_range_cuda(tp, done, done + n)
        dt = time.perf_counter() - t1
        t_train += dt
        # launches of about 5 s (at most --chunk runs), and none that would overrun the time limit by much
        chunk = int(min(int(a.chunk), max(1000, n / dt * min(5.0, max(0.5, a.time_limit - t_train)))))
        epochs.append(b.epochs)
        fitted += int(np.count_nonzero(b.status != STATUS_FAILED))
        done += n
        res["progress"] = {"runs": done, "seconds": t_train, "runs_per_s": done / t_train}
        _write(a.json, res)  # partial: a run stopped by its slot keeps what it measured
    ep = np.concatenate(epochs)
    rate = done / t_train
    res["fastpoly"] = {
        "runs": done, "seconds": t_train, "runs_per_s": rate, "projected_1e6_s": 1e6 / rate,
        "goal_1e6_in_30s": bool(1e6 / rate < 30), "fitted_fraction": fitted / done,
        "mean_epochs": float(ep.mean()), "max_epochs": int(ep.max()), "warmup_mean_epochs": float(warm.epochs.mean()),
    }
    print(f"fastpoly cuda: {done} anchor runs in {t_train:.2f} s = {rate:,.0f} runs/s "
          f"(1e6 runs: {1e6 / rate:.1f} s; goal < 30 s); fitted {fitted / done:.4f}, mean epochs {ep.mean():.1f}, "
          f"max {ep.max()}", flush=True)

    _write(a.json, res)
    # the fast wide rows (tiled: compiled by the smoke step) before the PyTorch baselines, the slow layer
    # kernel's (one thread per run, compiled here) after them: a step cut short by its slot keeps the rest
    res["wide_rows"] = []
    wide_paths = list(a.wide_path) if a.wide_runs > 0 else []

    def wide(paths):
        for path in paths:
            res["wide_rows"].append(wide_row(a, _train, dev, path))
            res["wide"] = res["wide_rows"][0]
            _write(a.json, res)

    wide([p for p in wide_paths if p != "layers"])
    res["torch"] = {}
    try:
        if a.emulate:
            raise RuntimeError("--emulate: no PyTorch baselines")
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("torch has no CUDA device")
        from baselines import torch_sgd_bmm, torch_sgd_vmap
    except Exception as exc:  # no torch / no CUDA torch: the fastpoly numbers still count
        res["torch"]["error"] = repr(exc)
        print(f"torch baselines skipped: {exc!r}", flush=True)
    else:
        nt, te = int(a.torch_runs), int(a.torch_epochs)
        batch_max = int(ep[:nt].max())
        for name, fn in (("bmm + masks", torch_sgd_bmm), ("func.vmap", torch_sgd_vmap)):
            try:
                fn(min(nt, 1000), seed=a.seed, device="cuda", max_epochs=2)  # warm-up (kernels, allocator)
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                fn(nt, seed=a.seed, device="cuda", max_epochs=te, after=10**9)  # no run stops early
                torch.cuda.synchronize()
            except Exception as exc:  # out of memory, API differences: reported, not fatal
                res["torch"][name] = {"error": repr(exc)}
                print(f"torch {name} failed: {exc!r}", flush=True)
                continue
            per_epoch = (time.perf_counter() - t1) / te
            opt = nt / (per_epoch * ep.mean())
            bat = nt / (per_epoch * batch_max)
            res["torch"][name] = {"runs": nt, "epochs_timed": te, "s_per_epoch": per_epoch,
                                  "runs_per_s_optimistic": opt, "runs_per_s_batch": bat,
                                  "batch_max_epochs": batch_max, "speedup_vs_optimistic": rate / opt,
                                  "speedup_vs_batch": rate / bat}
            print(f"torch {name} (cuda): {nt} runs, {per_epoch * 1e3:.1f} ms/epoch -> {opt:,.0f} runs/s optimistic "
                  f"(mean epochs), {bat:,.0f} runs/s as one batch (max {batch_max} epochs); fastpoly "
                  f"x{rate / opt:.1f} / x{rate / bat:.1f} (goal >= 10x the best)", flush=True)

    _write(a.json, res)
    wide([p for p in wide_paths if p == "layers"])
    return 0


def _flops_per_run(widths, epochs, m):
    W = sum(widths[i] * widths[i + 1] for i in range(len(widths) - 1))
    return epochs * m * (2 * W + 2 * W + 2 * (W - widths[0] * widths[1]))


def _paths(text):
    paths = [p.strip() for p in str(text).split(",") if p.strip()]
    bad = [p for p in paths if p not in ("tiled", "layers", "auto")]
    if not paths or bad:
        raise argparse.ArgumentTypeError(f"--wide-path takes tiled, layers or auto (comma-separated), got {text!r}")
    return paths


def wide_row(a, train, dev, path):
    """One launch of a wide MLP on ``path``; runs/s, GFLOP/s, the goal's projection at that rate."""
    from fastpoly import MLP
    from fastpoly.sgd import Recipe

    mlp = MLP.from_string(a.wide_arch)
    if path == "layers":
        m, n = int(a.wide_layers_m), int(a.wide_layers_runs)
    else:
        m, n = int(a.wide_m), int(a.wide_runs)
    E = int(a.wide_epochs)
    rng = np.random.default_rng(a.seed)
    X = rng.random((m + 64, mlp.n_inputs), dtype=np.float32)
    y = (rng.random(m) < 0.5).astype(np.uint8)
    tp = make_train_plan(mlp, X, (np.arange(m), y), a.seed,
                         Recipe(lr=0.01, batch_size=128, max_epochs=E, min_epochs=E, epochs_after_fit=E))
    t0 = time.perf_counter()
    train(tp, 0, 1, device=dev, path=path)  # compile, upload, one run
    warm = time.perf_counter() - t0
    t1 = time.perf_counter()
    b = train(tp, 1, 1 + n, device=dev, path=path)
    dt = time.perf_counter() - t1
    fl = _flops_per_run(mlp.widths, E, m)
    goal_fl = 1e4 * _flops_per_run(mlp.widths, int(a.wide_goal_epochs), 10_000)
    rate = n / dt
    out = {"arch": mlp.spec, "path": path, "m": m, "epochs": E, "runs": n, "seconds": dt, "warmup_s": warm, "runs_per_s": rate,
           "gflops": rate * fl / 1e9, "goal_epochs": int(a.wide_goal_epochs),
           "goal_projected_s": goal_fl / (rate * fl), "epochs_ok": bool(np.all(b.epochs == E))}
    print(f"fastpoly cuda wide ({path}) {mlp.spec}: {n} runs x {E} epochs on {m} images in {dt:.2f} s = {rate:,.2f} runs/s, "
          f"{out['gflops']:.1f} GFLOP/s of training; goal (1e4 runs, 10,000 images, {a.wide_goal_epochs} epochs) "
          f"projected {out['goal_projected_s'] / 60:.1f} min (goal <= 15)", flush=True)
    return out


def _write(path, res):
    if path:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(res, fh, indent=2, default=str)
        os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
