"""CNN training: fastpoly's layer trainer vs the best PyTorch CPU variants (runs/s), and % of the FMA roof.

Workload: ``8x8x1-c8k3-ap2-1`` relu on 200 train images of scikit-learn's digits (parity labels), 100
key images; minibatch 32; exactly ``E`` epochs per run (``min_epochs = max_epochs = E``: every variant
does the same work, the fit check on all train points at every epoch end included); SGD (lr 0.1) and
Adam (lr 0.01).  PyTorch variants (torch CPU, as a user would write them):

* ``vmap``: ``torch.func.vmap(grad(loss))`` over the stacked parameters of the networks, each network
  its own minibatch;
* ``grouped``: one grouped convolution (``groups`` = networks) and a batched dense head, autograd
  on the sum of the networks' losses, ``torch.optim`` on the stacked parameters (elementwise,
  so the same per-network SGD / Adam).

The float32 FMA roof is ``cores x FMA ports (2) x SIMD lanes (16 with AVX-512, 8 with AVX2) x clock``;
the work counted per run and epoch: forward, weight gradient and (after the first layer) input error
on the train points, and the forward of the fit check -- multiply-adds of conv and dense layers only.
Besides runs per wall-clock second, each variant's runs per CPU second of the process (all its
threads: fastpoly's lanes, PyTorch's intra-op pool) are reported -- steadier than wall time on a
shared machine.  Usage: ``python bench/bench_cnn_train.py [--quick] [--rounds 3]``.  The machine may
be shared: say so with the figures.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ARCH = "8x8x1-c8k3-ap2-1"
M_TRAIN, M_KEY, BATCH = 200, 100, 32


def data():
    from sklearn.datasets import load_digits

    d = load_digits()
    n = M_TRAIN + M_KEY
    X = (d.images[:n] / 16.0).astype(np.float32)[..., None]
    y = (d.target[:n] % 2).astype(np.uint8)
    return X, y


def recipe(opt, epochs):
    from fastpoly.sgd import Recipe

    lr = 0.1 if opt == "sgd" else 0.01
    return Recipe(optimizer=opt, lr=lr, batch_size=BATCH, max_epochs=epochs, min_epochs=epochs,
                  epochs_after_fit=epochs)


def fastpoly_runner(opt, epochs, X, y):
    from fastpoly.sgd import make_train_plan, train_runs

    tp = make_train_plan(ARCH, X, (np.arange(M_TRAIN), y[:M_TRAIN]), 0, recipe(opt, epochs))
    state = {"lo": 0}

    def run(n):
        lo = state["lo"]
        state["lo"] += n
        train_runs(tp, lo, lo + n, backend="numba")
    return run


def _torch_setup(n, X, y, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    F, K = 8, 3
    Xt = torch.from_numpy(X[:M_TRAIN, :, :, 0]).float()  # (m, 8, 8)
    yt = torch.from_numpy(y[:M_TRAIN]).float()
    W1 = torch.randn(n, F, 1, K, K, generator=g) / K
    b1 = torch.randn(n, F, generator=g)
    W2 = torch.randn(n, F * 9, generator=g) / np.sqrt(F * 9)
    b2 = torch.randn(n, 1, generator=g)
    return g, Xt, yt, [W1, b1, W2, b2]


def _torch_opt(opt, params):
    import torch

    return (torch.optim.SGD(params, lr=0.1) if opt == "sgd" else torch.optim.Adam(params, lr=0.01))


def torch_vmap_runner(opt, epochs, X, y):
    import torch
    from torch.func import grad, vmap

    def net(ps, x):  # x (b, 8, 8)
        W1, b1, W2, b2 = ps
        h = torch.nn.functional.conv2d(x[:, None], W1, b1)
        h = torch.nn.functional.avg_pool2d(torch.relu(h), 2)
        return h.permute(0, 2, 3, 1).reshape(x.shape[0], -1) @ W2 + b2[0]

    def loss(ps, x, yy):
        return torch.nn.functional.binary_cross_entropy_with_logits(net(ps, x), yy)

    gfn = vmap(grad(loss), in_dims=(0, 0, 0))
    fwd = vmap(net, in_dims=(0, None))

    def run(n):
        g, Xt, yt, ps = _torch_setup(n, X, y, 0)
        ps = [p.requires_grad_(False) for p in ps]
        o = _torch_opt(opt, ps)
        m = Xt.shape[0]
        for _ in range(epochs):
            perm = torch.argsort(torch.rand(n, m, generator=g), dim=1)
            for a in range(0, m, BATCH):
                idx = perm[:, a:a + BATCH]
                grads = gfn(tuple(ps), Xt[idx], yt[idx])
                for p, gr in zip(ps, grads):
                    p.grad = gr
                o.step()
            with torch.no_grad():
                z = fwd(tuple(ps), Xt)
                ((z > 0) == (yt > 0.5)).all(1)
    return run


def torch_grouped_runner(opt, epochs, X, y):
    import torch

    def logits(ps, xg):  # xg (b, n, 8, 8): network r's minibatch in channel r
        W1, b1, W2, b2 = ps
        n, F = W1.shape[0], W1.shape[1]
        h = torch.nn.functional.conv2d(xg, W1.reshape(n * F, 1, 3, 3), b1.reshape(-1), groups=n)
        h = torch.nn.functional.avg_pool2d(torch.relu(h), 2)  # (b, n*F, 3, 3)
        h = h.reshape(h.shape[0], n, F, 3, 3).permute(0, 1, 3, 4, 2).reshape(h.shape[0], n, -1)
        return torch.einsum("bnk,nk->bn", h, W2) + b2[:, 0]

    def run(n):
        g, Xt, yt, ps = _torch_setup(n, X, y, 0)
        ps = [p.requires_grad_(True) for p in ps]
        o = _torch_opt(opt, ps)
        m = Xt.shape[0]
        for _ in range(epochs):
            perm = torch.argsort(torch.rand(n, m, generator=g), dim=1)
            for a in range(0, m, BATCH):
                idx = perm[:, a:a + BATCH]  # (n, b)
                xg = Xt[idx].permute(1, 0, 2, 3)  # (b, n, 8, 8)
                yy = yt[idx].T  # (b, n)
                o.zero_grad(set_to_none=True)
                z = logits(ps, xg)
                lo = torch.nn.functional.binary_cross_entropy_with_logits(z, yy, reduction="none").mean(0).sum()
                lo.backward()
                o.step()
            with torch.no_grad():
                z = logits(ps, Xt[:, None].expand(m, n, 8, 8))
                ((z > 0) == (yt[:, None] > 0.5)).all(0)
    return run


def fma_per_run(epochs):
    """Multiply-adds of one run (conv + dense layers): train forward, weight gradient, input error, fit check."""
    from fastpoly.model.spec import parse

    a = parse(ARCH)
    fwd = inp = 0
    first = True
    for layer, shape in zip(a.layers, a.shapes):
        blocks = layer.param_layout(shape)
        if blocks:
            f = int(np.prod(layer.out_shape(shape))) * blocks[0].fan_in
            fwd += f
            if not first:
                inp += f
            first = False
    return epochs * M_TRAIN * (3 * fwd + inp)


def fma_roof():
    """float32 FMA/s of the machine: cores x 2 ports x lanes x clock (from /proc/cpuinfo)."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return None, "unknown"
    lanes = 16 if " avx512f" in info else 8 if " avx2" in info else 4
    mhz = [float(x.split(":")[1]) for x in info.splitlines() if x.startswith("cpu MHz")]
    if not mhz:
        return None, "unknown"
    cores = os.cpu_count() or 1
    return cores * 2 * lanes * max(mhz) * 1e6, f"{cores} cores x 2 FMA ports x {lanes} lanes x {max(mhz):.0f} MHz"


def rows(quick=False, rounds=3, no_torch=False, epochs=None):
    """Rows ``{"workload", "name", "kind", "samples_per_s", "n"}`` (runs/s) for SGD and Adam."""
    X, y = data()
    E = epochs or (2 if quick else 5)
    n_fp = 16 if quick else 256
    n_t = 16 if quick else 256
    out = []
    roof, roof_desc = fma_roof()
    fma = fma_per_run(E)
    for opt in ("sgd", "adam"):
        wl = f"sgd-cnn-{opt}"
        print(f"\n{ARCH} {opt}: {M_TRAIN} train images, batch {BATCH}, {E} epochs per run", flush=True)
        cands = [("fastpoly numba", "fastpoly", fastpoly_runner(opt, E, X, y), n_fp)]
        if not no_torch:
            cands += [("pytorch func.vmap (cpu)", "baseline", torch_vmap_runner(opt, E, X, y), n_t),
                      ("pytorch grouped conv (cpu)", "baseline", torch_grouped_runner(opt, E, X, y), n_t)]
        # rounds interleaved over the variants (the machine is shared: its load drifts), best of each
        best = {name: 0.0 for name, _, _, _ in cands}
        best_cpu = {name: 0.0 for name, _, _, _ in cands}  # runs per CPU second (all threads of the process)
        failed = {}
        for name, _, fn, n in cands:
            try:
                fn(max(1, n // 8))  # warm-up (compiles)
            except Exception as e:  # a baseline that cannot run here is reported, not fatal
                failed[name] = e
        for _ in range(rounds):
            for name, _, fn, n in cands:
                if name not in failed:
                    t, c = time.perf_counter(), time.process_time()
                    fn(n)
                    best[name] = max(best[name], n / (time.perf_counter() - t))
                    best_cpu[name] = max(best_cpu[name], n / max(time.process_time() - c, 1e-9))
        for name, kind, fn, n in cands:
            if name in failed:
                print(f"  {name:28s} failed: {failed[name]!r}", flush=True)
                out.append({"workload": wl, "name": name, "kind": kind, "error": repr(failed[name])})
                continue
            r = best[name]
            row = {"workload": wl, "name": name, "kind": kind, "samples_per_s": r, "n": n,
                   "samples_per_cpu_s": best_cpu[name]}
            extra = ""
            if kind == "fastpoly" and roof:
                row["fma_roof_pct"] = 100 * r * fma / roof
                extra = f"  ({row['fma_roof_pct']:.2f} % of the FMA roof: {roof_desc})"
            print(f"  {name:28s} {r:12,.1f} runs/s  {best_cpu[name]:10,.1f} runs/CPU-s{extra}", flush=True)
            out.append(row)
        fp = next((x["samples_per_s"] for x in out if x["workload"] == wl and x["kind"] == "fastpoly"), None)
        base = max((x["samples_per_s"] for x in out if x["workload"] == wl and x["kind"] == "baseline"
                    and "samples_per_s" in x), default=None)
        if fp and base:
            print(f"  fastpoly / best PyTorch: {fp / base:.2f}x", flush=True)
        fpc = next((x["samples_per_cpu_s"] for x in out if x["workload"] == wl and x["kind"] == "fastpoly"), None)
        basec = max((x["samples_per_cpu_s"] for x in out if x["workload"] == wl and x["kind"] == "baseline"
                     and "samples_per_cpu_s" in x), default=None)
        if fpc and basec:
            print(f"  fastpoly / best PyTorch per CPU second: {fpc / basec:.2f}x", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    rows(args.quick, args.rounds, args.no_torch, args.epochs)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
