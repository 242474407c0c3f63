#!/usr/bin/env python
"""CNN sampling: fastpoly (Numba) against PyTorch CPU, on 100 8x8 digit images, ``8x8x1-c16k3-c16k3-1`` relu.

    python bench/bench_cnn.py                 # best of 5 rounds, JSON with --json
    python bench/bench_cnn.py --quick         # seconds; a smoke test

Rows (samples/s = random networks drawn, evaluated on the 100 images and counted per second):

* ``fastpoly numba`` -- ``fastpoly.sample(arch, X, n, backend="numba")`` (Philox draws, the layer-sequence
  kernel, exact counting of the functions);
* ``pytorch grouped conv (cpu)`` -- S networks at once as ONE grouped convolution per layer (groups = S),
  parameters from ``torch.randn``, keys packed and counted with ``torch.unique``;
* ``pytorch vmap (cpu)`` -- ``torch.func.vmap`` of ``F.conv2d`` over the parameters of S networks.

The FMA roof: multiply-adds of one network on the 100 images (convolutions and the dense logit) times the
rate, over the machine's float32 FMA peak (threads x clock x 2 FMA units x SIMD lanes: 16 with AVX-512,
8 with AVX2; the clock from /proc/cpuinfo).  ``compare.py`` runs these rows too (its ``--no-cnn`` skips them).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpoly  # noqa: E402

ARCH = "8x8x1-c16k3-c16k3-1"


def digit_images(m=100):
    """The first ``m`` 8x8 digits of scikit-learn (values / 16), shape (m, 8, 8, 1) float32."""
    from sklearn.datasets import load_digits

    return (load_digits().images[:m] / 16.0).astype(np.float32)[..., None]


def fma_per_sample(arch, m):
    """Multiply-adds of one network on ``m`` rows (weighted layers only)."""
    total = 0
    for layer, shape in zip(arch.layers, arch.shapes):
        blocks = layer.param_layout(shape)
        if blocks:
            total += int(np.prod(layer.out_shape(shape))) * blocks[0].fan_in
    return total * m


def fp32_fma_peak(threads):
    """(FMA/s, how) of the CPU: threads x GHz x 2 units x lanes (AVX-512: 16, AVX2: 8)."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return None, "no /proc/cpuinfo"
    lanes = 16 if "avx512f" in info else 8 if "avx2" in info else 4
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    if not mhz:
        return None, "no clock in /proc/cpuinfo"
    ghz = max(mhz) / 1000
    return threads * ghz * 1e9 * 2 * lanes, f"{threads} threads x {ghz:.2f} GHz x 2 FMA units x {lanes} lanes"


def _torch_keys(bits, torch):
    S, m = bits.shape
    n_words = (m + 62) // 63
    pad = n_words * 63 - m
    if pad:
        bits = torch.nn.functional.pad(bits, (0, pad))
    pw = 2 ** torch.arange(63, dtype=torch.int64)
    keys = (bits.view(S, n_words, 63).to(torch.int64) * pw).sum(-1)
    torch.unique(keys, dim=0, return_counts=True)


def torch_grouped(X, n_samples, batch=256, seed=0, filters=16, k=3):
    """S networks as one grouped convolution per layer (groups = S), the dense logit as a batched product."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    Xt = torch.as_tensor(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))  # (m, 1, 8, 8)
    m = Xt.shape[0]
    done = 0
    with torch.no_grad():
        while done < n_samples:
            S = min(batch, n_samples - done)
            W1 = torch.randn((S * filters, 1, k, k), generator=g) * (1 / (k * k) ** 0.5)
            b1 = torch.randn(S * filters, generator=g)
            W2 = torch.randn((S * filters, filters, k, k), generator=g) * (1 / (k * k * filters) ** 0.5)
            b2 = torch.randn(S * filters, generator=g)
            h = F.relu(F.conv2d(Xt.expand(m, S, 8, 8), W1, b1, groups=S))
            h = F.relu(F.conv2d(h, W2, b2, groups=S))  # (m, S*16, 4, 4)
            fi = h.shape[1] // S * h.shape[2] * h.shape[3]
            W3 = torch.randn((S, fi), generator=g) * (1 / fi ** 0.5)
            b3 = torch.randn(S, generator=g)
            z = torch.einsum("msf,sf->sm", h.reshape(m, S, fi), W3) + b3[:, None]
            _torch_keys(z > 0, torch)
            done += S
    return done


def torch_vmap(X, n_samples, batch=256, seed=0, filters=16, k=3):
    """``torch.func.vmap`` of the per-network forward over the parameters of S networks."""
    import torch
    import torch.nn.functional as F
    from torch.func import vmap

    g = torch.Generator().manual_seed(seed)
    Xt = torch.as_tensor(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))

    def net(W1, b1, W2, b2, W3, b3):
        h = F.relu(F.conv2d(Xt, W1, b1))
        h = F.relu(F.conv2d(h, W2, b2))
        return h.reshape(h.shape[0], -1) @ W3 + b3

    f = vmap(net)
    done = 0
    with torch.no_grad():
        while done < n_samples:
            S = min(batch, n_samples - done)
            W1 = torch.randn((S, filters, 1, k, k), generator=g) * (1 / (k * k) ** 0.5)
            b1 = torch.randn((S, filters), generator=g)
            W2 = torch.randn((S, filters, filters, k, k), generator=g) * (1 / (k * k * filters) ** 0.5)
            b2 = torch.randn((S, filters), generator=g)
            W3 = torch.randn((S, filters * 16), generator=g) * (1 / (filters * 16) ** 0.5)
            b3 = torch.randn((S,), generator=g)
            z = f(W1, b1, W2, b2, W3, b3)
            _torch_keys(z > 0, torch)
            done += S
    return done


def best_rate(fn, n, rounds):
    """Best samples/s of ``fn(n)`` over ``rounds`` timed calls after one warm-up call."""
    fn(max(1, n // 4))
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        fn(n)
        best = max(best, n / (time.perf_counter() - t))
    return best


def cnn_rows(rounds=5, quick=False, torch_ok=True, record=None):
    """The CNN sampling rows (list of dicts); prints them."""
    X = digit_images(100)
    arch = fastpoly.model.parse(ARCH)
    fma = fma_per_sample(arch, X.shape[0])
    import numba

    threads = numba.get_num_threads()
    peak, how = fp32_fma_peak(threads)
    rows = []

    def add(name, kind, fn, n):
        try:
            r = best_rate(fn, n, rounds)
        except Exception as e:  # a baseline that cannot run here is reported, not fatal
            row = {"workload": "sampler-cnn", "name": name, "kind": kind, "error": repr(e)}
            print(f"  {name:28s} failed: {e!r}", flush=True)
        else:
            row = {"workload": "sampler-cnn", "name": name, "kind": kind, "samples_per_s": r, "n": n,
                   "fma_per_sample": fma, "fp32_fma_peak": peak, "peak_from": how,
                   "of_roof": (r * fma / peak) if peak else None}
            roof = f"  {100 * r * fma / peak:5.1f}% of the FP32 FMA roof" if peak else ""
            print(f"  {name:28s} {r:12,.0f} samples/s{roof}", flush=True)
        rows.append(record.add(row) if record is not None else row)

    n = 64 if quick else 2000
    print(f"CNN sampling {ARCH} relu on {X.shape[0]} digit images ({fma:,} FMA per network); "
          f"roof: {how}", flush=True)
    add("fastpoly numba", "fastpoly",
        lambda k: fastpoly.sample(arch, X, k, seed=1, backend="numba", progress=False), n)
    if torch_ok:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            torch_ok = False
    if torch_ok:
        add("pytorch grouped conv (cpu)", "baseline", lambda k: torch_grouped(X, k), n)
        add("pytorch vmap (cpu)", "baseline", lambda k: torch_vmap(X, k), n)
    fp = [r["samples_per_s"] for r in rows if r.get("kind") == "fastpoly" and "samples_per_s" in r]
    bl = [r["samples_per_s"] for r in rows if r.get("kind") == "baseline" and "samples_per_s" in r]
    if fp and bl:
        print(f"  fastpoly numba / best PyTorch CPU: {fp[0] / max(bl):.2f}x", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    rows = cnn_rows(args.rounds, args.quick, not args.no_torch)
    if args.json:
        import json

        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "arch": ARCH, "time": time.strftime("%Y-%m-%d %H:%M:%S")}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
