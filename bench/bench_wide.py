"""Wide networks: P_SGD training of 64-512-512-1 on digits, fastpoly vs NumPy matmul vs PyTorch CPU.

Workload: ``64-512-512-1`` relu on ``m`` train images of scikit-learn's 8x8 digits (label >= 5; pixels
/ 16), exactly ``E`` epochs per run (``min_epochs = max_epochs = E``), minibatch ``B`` (128 and 32),
SGD (lr 0.01) and Adam (lr 0.001), cross-entropy.  Figures:

* **runs/s** of each variant, best of the rounds (rounds interleaved over the variants: the machine
  may be shared and its load drifts), and fastpoly's ratio to the matmul rate measured just before it in
  each round (the median of these is the steadier figure on a loaded machine);
* **GFLOP/s** = runs/s x the training FLOPs of one run: ``E m (2 W + 2 W + 2 (W - W_1))`` (forward,
  weight gradient, input error after the first layer; ``W`` weights, ``W_1`` those of the first
  layer).  The fit check at every epoch end, the final loss and the key functions (the run's function
  on the 100 key images before and after training) are extra work that every variant does and that is
  not counted (fastpoly's fit check stops at the first miss; the PyTorch variants take the final loss
  from the last fit check's logits; before 2026-12-07 they skipped the final loss and the key
  functions: adding them moved their rates within the rounds' noise);
* the **NumPy matmul rate**: float32 ``(B x 512) @ (512 x 512)`` in the same process, best of the rounds
  (and at least one BLAS thread's rate times the cores, see :func:`matmul_rate`): the machine's
  practical float32 matrix-product rate (the issue's yardstick: fastpoly >= 40 % of it).

PyTorch variants (torch CPU, one process, as a user would write them): ``bmm`` -- the runs' parameters
stacked, ``torch.baddbmm`` per layer, autograd, ``torch.optim`` on the stacked tensors (elementwise,
so the same per-run SGD / Adam), each run its own minibatch order; ``loop`` -- one ``nn.Sequential``
and one ``torch.optim`` optimiser per run, trained one after another.  For compute-bound wide nets
the ratio fastpoly / PyTorch is bounded by (FMA roof / PyTorch's rate): PyTorch's matmuls already run
near the machine's matmul rate, so no exact fixed-order kernel can beat them by much.

Usage::

    python bench/bench_wide.py [--quick] [--rounds 3] [--m 1000] [--epochs 3]
    python bench/bench_wide.py --ab     # one core: the wide schedule vs the 256-bit tiles, % of matmul
    python bench/bench_wide.py --sampler  # one core: sampling on 1,000 digits, % of matmul
    python bench/bench_wide.py --narrow   # 64-40-40-1, Adam: runs/s against PyTorch CPU (goal >= 5x)
    python -m pytest bench/bench_wide.py --benchmark-disable -q     # the smoke run (small sizes)

The machine may be shared: say so with the figures.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pytest

ARCH = "64-512-512-1"
WIDTHS = (64, 512, 512, 1)
#: the narrow network of the real-data experiment (``--narrow``): there the goal is the ratio to PyTorch
NARROW = (64, 40, 40, 1)
M_TRAIN, M_KEY = 1000, 100


def data(m=M_TRAIN, n_key=M_KEY):
    """``m + n_key`` digit images (64 pixels / 16, float32) and their labels (digit >= 5)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    n = m + n_key
    return (d.data[:n] / 16.0).astype(np.float32), (d.target[:n] >= 5).astype(np.uint8)


def flops_per_run(epochs, m, widths=WIDTHS):
    """Training FLOPs of one run: forward, weight gradient and (after the first layer) input error."""
    W = sum(widths[i] * widths[i + 1] for i in range(len(widths) - 1))
    W1 = widths[0] * widths[1]
    return epochs * m * (2 * W + 2 * W + 2 * (W - W1))


def recipe(opt, epochs, batch):
    from fastpoly.sgd import Recipe

    return Recipe(optimizer=opt, lr=0.01 if opt == "sgd" else 0.001, batch_size=batch, max_epochs=epochs,
                  min_epochs=epochs, epochs_after_fit=epochs)


def _matmul_once(A, B, reps):
    t = time.perf_counter()
    for _ in range(reps):
        A @ B
    return reps * 2 * A.shape[0] * A.shape[1] * B.shape[1] / (time.perf_counter() - t) / 1e9


def matmul_rate(batch=128, width=512, rounds=3, reps=50):
    """float32 GFLOP/s of NumPy ``(batch x width) @ (width x width)``, best of ``rounds``.

    The larger of the BLAS on all its threads and (where ``threadpoolctl`` is installed) one BLAS thread
    times the cores: on a shared machine a multi-threaded BLAS loses most when one of its threads waits
    for a core, so the yardstick is the better of the two (the conservative one for the ratio).
    """
    rng = np.random.default_rng(0)
    A = rng.random((batch, width), dtype=np.float32)
    B = rng.random((width, width), dtype=np.float32)
    A @ B
    best = max(_matmul_once(A, B, reps) for _ in range(rounds))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return best
    with threadpool_limits(1):
        one = max(_matmul_once(A, B, reps) for _ in range(rounds))
    return max(best, one * (os.cpu_count() or 1))


def _spec(widths):
    return "-".join(str(w) for w in widths)


def fastpoly_runner(opt, epochs, batch, X, y, m, widths=WIDTHS):
    from fastpoly.sgd import make_train_plan, train_runs

    tp = make_train_plan(_spec(widths), X, (np.arange(m), y[:m]), 0, recipe(opt, epochs, batch))
    state = {"lo": 0}

    def run(n):
        lo = state["lo"]
        state["lo"] += n
        train_runs(tp, lo, lo + n, backend="numba")
    return run


def _torch_params(n, seed, widths=WIDTHS):
    import torch

    g = torch.Generator().manual_seed(seed)
    ps = []
    for fi, fo in zip(widths[:-1], widths[1:]):
        ps += [torch.randn(n, fi, fo, generator=g) / fi ** 0.5, torch.randn(n, 1, fo, generator=g) * 0.1]
    return g, ps


def _torch_opt(opt, params):
    import torch

    return torch.optim.SGD(params, lr=0.01) if opt == "sgd" else torch.optim.Adam(params, lr=0.001)


def torch_bmm_runner(opt, epochs, batch, X, y, m, widths=WIDTHS):
    """The runs' parameters stacked: ``baddbmm`` per layer, autograd, ``torch.optim`` on the stacks.

    Each run also yields what a P_SGD run yields: its function on the key rows (``X[m:]``, the test
    images) before and after training, and the final loss (from the last fit check's logits).
    """
    import torch

    Xt = torch.from_numpy(X[:m])
    yt = torch.from_numpy(y[:m].astype(np.float32))
    Xk = torch.from_numpy(X[m:])

    def logits(ps, h):  # h (n, b, 64)
        for i in range(0, len(ps), 2):
            h = torch.baddbmm(ps[i + 1], h, ps[i])
            if i + 2 < len(ps):
                h = torch.relu(h)
        return h[..., 0]

    def run(n):
        g, ps = _torch_params(n, 0, widths)
        with torch.no_grad():
            f0 = logits(ps, Xk.expand(n, -1, -1)) > 0  # the initial function
        ps = [p.requires_grad_(True) for p in ps]
        o = _torch_opt(opt, ps)
        for _ in range(epochs):
            perm = torch.argsort(torch.rand(n, m, generator=g), dim=1)
            for a in range(0, m, batch):
                idx = perm[:, a:a + batch]
                o.zero_grad(set_to_none=True)
                z = logits(ps, Xt[idx])
                lo = torch.nn.functional.binary_cross_entropy_with_logits(z, yt[idx], reduction="none").mean(1).sum()
                lo.backward()
                o.step()
            with torch.no_grad():  # the fit check on all train points
                z = logits(ps, Xt.expand(n, m, widths[0]))
                ((z > 0) == (yt > 0.5)).all(1)
        with torch.no_grad():  # the final loss and the reached function
            torch.nn.functional.binary_cross_entropy_with_logits(z, yt.expand(n, m), reduction="none").mean(1)
            f1 = logits(ps, Xk.expand(n, -1, -1)) > 0
        return f0, f1
    return run


def torch_loop_runner(opt, epochs, batch, X, y, m, widths=WIDTHS):
    """One ``nn.Sequential`` and one optimiser per run, the runs one after another (outputs as ``torch_bmm_runner``)."""
    import torch

    Xt = torch.from_numpy(X[:m])
    yt = torch.from_numpy(y[:m].astype(np.float32))
    Xk = torch.from_numpy(X[m:])

    def run(n):
        torch.manual_seed(0)
        for _ in range(n):
            layers: list = []
            for i, (fi, fo) in enumerate(zip(widths[:-1], widths[1:])):
                layers.append(torch.nn.Linear(fi, fo))
                if i < len(widths) - 2:
                    layers.append(torch.nn.ReLU())
            net = torch.nn.Sequential(*layers)
            with torch.no_grad():
                net(Xk)[:, 0] > 0  # the initial function
            o = _torch_opt(opt, net.parameters())
            for _ in range(epochs):
                perm = torch.randperm(m)
                for a in range(0, m, batch):
                    idx = perm[a:a + batch]
                    o.zero_grad(set_to_none=True)
                    lo = torch.nn.functional.binary_cross_entropy_with_logits(net(Xt[idx])[:, 0], yt[idx])
                    lo.backward()
                    o.step()
                with torch.no_grad():
                    z = net(Xt)[:, 0]
                    ((z > 0) == (yt > 0.5)).all()
            with torch.no_grad():  # the final loss and the reached function
                torch.nn.functional.binary_cross_entropy_with_logits(z, yt)
                net(Xk)[:, 0] > 0
    return run


def rows(quick=False, rounds=3, no_torch=False, epochs=None, m=None, configs=None, widths=WIDTHS):
    """Rows ``{"workload", "name", "kind", "samples_per_s", "gflops", ...}`` (runs/s) per optimiser and batch.

    ``widths``: :data:`WIDTHS` (the wide net, 64-512-512-1) or :data:`NARROW` (64-40-40-1, the
    real-data experiment's FCN: many more runs per timing, workload names ``sgd-narrow-...``).
    """
    m = m or (200 if quick else M_TRAIN)
    E = epochs or (1 if quick else 3)
    X, y = data(m)
    hid = max(widths[1:-1])
    narrow = hid < 128
    k = 32 if narrow and not quick else 1  # runs per timing: a narrow run is ~200x cheaper
    n_fp = (2 if quick else 4) * k
    n_bmm = (2 if quick else 4) * k
    n_loop = (1 if quick else 2) * max(1, k // 4)
    fl = flops_per_run(E, m, widths)
    configs = configs or ((("adam", 32), ("adam", 128)) if narrow else (("sgd", 128), ("sgd", 32), ("adam", 128)))
    out = []
    for opt, batch in configs:
        wl = f"sgd-{'narrow' if narrow else 'wide'}-{opt}-b{batch}"
        print(f"\n{_spec(widths)} {opt}, batch {batch}: {m} digits, {E} epochs per run "
              f"({fl / 1e9:.2f} GFLOP of training per run)", flush=True)
        cands = [("fastpoly numba", "fastpoly", fastpoly_runner(opt, E, batch, X, y, m, widths), n_fp)]
        if not no_torch:
            cands += [("pytorch bmm (cpu)", "baseline", torch_bmm_runner(opt, E, batch, X, y, m, widths), n_bmm),
                      ("pytorch nn.Sequential loop", "baseline", torch_loop_runner(opt, E, batch, X, y, m, widths),
                       n_loop)]
        best = {name: 0.0 for name, _, _, _ in cands}
        failed = {}
        for name, _, fn, _n in cands:
            try:
                fn(1)  # warm-up (compiles)
            except Exception as e:  # a baseline that cannot run here is reported, not fatal
                failed[name] = e
        mm = 0.0
        per_round = []  # fastpoly's GFLOP/s over the matmul rate measured just before it, per round
        for _ in range(rounds):
            # a pause before each timing: PyTorch's OpenMP workers spin a while after their last
            # parallel region and would slow the next variant down
            time.sleep(0.3)
            mm_r = matmul_rate(batch, hid, rounds=3)
            mm = max(mm, mm_r)
            for name, kind, fn, n in cands:
                if name not in failed:
                    time.sleep(0.3)
                    t = time.perf_counter()
                    fn(n)
                    r = n / (time.perf_counter() - t)
                    best[name] = max(best[name], r)
                    if kind == "fastpoly":
                        per_round.append(100 * r * fl / 1e9 / mm_r)
        print(f"  {'numpy matmul':28s} {mm:10.1f} GFLOP/s  (float32 ({batch} x {hid}) @ ({hid} x {hid}))", flush=True)
        for name, kind, _fn, n in cands:
            if name in failed:
                print(f"  {name:28s} failed: {failed[name]!r}", flush=True)
                out.append({"workload": wl, "name": name, "kind": kind, "error": repr(failed[name])})
                continue
            r = best[name]
            gf = r * fl / 1e9
            row = {"workload": wl, "name": name, "kind": kind, "samples_per_s": r, "n": n, "gflops": gf,
                   "matmul_gflops": mm, "pct_matmul": 100 * gf / mm}
            extra = ""
            if kind == "fastpoly" and per_round:
                row["pct_matmul_per_round"] = per_round
                extra = f" (per round, against the matmul just before: median {np.median(per_round):.1f} %)"
            print(f"  {name:28s} {r:10.3f} runs/s {gf:8.1f} GFLOP/s  {row['pct_matmul']:5.1f} % of matmul{extra}",
                  flush=True)
            out.append(row)
        fp = next((x["samples_per_s"] for x in out if x["workload"] == wl and x["kind"] == "fastpoly"), None)
        base = max((x["samples_per_s"] for x in out if x["workload"] == wl and x["kind"] == "baseline"
                    and "samples_per_s" in x), default=None)
        if fp and base:
            bgf = base * fl / 1e9
            print(f"  fastpoly / best PyTorch: {fp / base:.2f}x (bound for an exact kernel at the matmul rate: "
                  f"{mm / bgf:.2f}x)", flush=True)
    return out


def ab_one_thread(rounds=3, m=M_TRAIN, epochs=3):
    """One core: fastpoly's 512-bit schedule vs its 256-bit tiles vs one-thread NumPy matmul, round by round.

    Prints, per optimiser and batch, the median over rounds of (training GFLOP/s) / (matmul GFLOP/s measured
    just before) for ``PreparedTrain(tp, wide=False)`` and ``wide=True``: on a shared machine the per-core
    ratio measured back to back is the steadiest figure.
    """
    import numba

    from fastpoly.backends.numba.train import PreparedTrain
    from fastpoly.sgd import make_train_plan

    X, y = data(m)
    fl = flops_per_run(epochs, m)
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
        limit: object = threadpool_limits(1)
    except ImportError:
        limit = None
    try:
        for opt, batch in (("sgd", 128), ("sgd", 32), ("adam", 128)):
            tp = make_train_plan(ARCH, X, (np.arange(m), y[:m]), 0, recipe(opt, epochs, batch))
            pts = {w: PreparedTrain(tp, wide=w) for w in (False, True)}
            for p in pts.values():
                p.run(0, 1, 1)
            res: dict = {False: [], True: []}
            rng = np.random.default_rng(0)
            A = rng.random((batch, 512), dtype=np.float32)
            B = rng.random((512, 512), dtype=np.float32)
            for r in range(rounds):
                mm = max(_matmul_once(A, B, 100) for _ in range(3))
                for w, p in pts.items():
                    t = time.perf_counter()
                    p.run(r + 1, r + 2, 1)
                    res[w].append(100 * fl / (time.perf_counter() - t) / 1e9 / mm)
            print(f"{ARCH} {opt} batch {batch}, one thread, % of one-thread matmul (median of {rounds}): "
                  f"256-bit tiles {np.median(res[False]):.0f} %, wide schedule {np.median(res[True]):.0f} %",
                  flush=True)
    finally:
        numba.set_num_threads(old)
        if limit is not None:
            limit.restore_original_limits()  # type: ignore[attr-defined]


def sampler_ab(rounds=4, m=M_TRAIN, n=4):
    """One core: sampling 64-512-512-1 on ``m`` digit images, the wide blocks vs the 4-neuron blocks vs matmul.

    Prints the median over rounds of (forward GFLOP/s: ``2 W m`` per sample) / (one-thread NumPy
    ``(m x 512) @ (512 x 512)`` GFLOP/s measured just before), for ``prepare(plan, wide=False)`` and
    ``wide=True``.  Drawing the 295k parameters of a sample (Philox, Box-Muller) is extra work not counted.
    """
    import numba

    from fastpoly.backends.numba.sampler import prepare
    from fastpoly.plan import make_plan

    X, _ = data(m, 0)
    W = sum(WIDTHS[i] * WIDTHS[i + 1] for i in range(len(WIDTHS) - 1))
    fl = 2 * W * m
    plan = make_plan(ARCH, X, 1)
    pps = {w: prepare(plan, wide=w) for w in (False, True)}
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    A = rng.random((m, 512), dtype=np.float32)
    B = rng.random((512, 512), dtype=np.float32)
    res: dict = {False: [], True: []}
    try:
        from threadpoolctl import threadpool_limits
        limit: object = threadpool_limits(1)
    except ImportError:
        limit = None
    try:
        for p in pps.values():
            p.run(0, 1, 1, False, False)
        for r in range(rounds):
            mm = max(_matmul_once(A, B, 5) for _ in range(2))
            for w, p in pps.items():
                t = time.perf_counter()
                p.run(10 * r, n, 1, False, False)
                res[w].append(100 * n * fl / (time.perf_counter() - t) / 1e9 / mm)
    finally:
        numba.set_num_threads(old)
        if limit is not None:
            limit.restore_original_limits()  # type: ignore[attr-defined]
    print(f"sampler {ARCH} on {m} digits, one thread, % of one-thread matmul (median of {rounds}): "
          f"4-neuron blocks {np.median(res[False]):.0f} %, wide blocks {np.median(res[True]):.0f} %", flush=True)


# --- pytest-benchmark (small sizes under --benchmark-disable) ----------------------------------


def _smoke(request):
    return request.config.getoption("benchmark_disable", False)


def test_numba_train_wide(benchmark, request):
    """Runs of 64-512-512-1 on digits (SGD, batch 128), every run exactly E epochs."""
    pytest.importorskip("numba")
    pytest.importorskip("sklearn")
    from fastpoly.sgd import make_train_plan, train_runs

    m, E, n = (100, 1, 2) if _smoke(request) else (M_TRAIN, 3, 4)
    X, y = data(m)
    tp = make_train_plan(ARCH, X, (np.arange(m), y[:m]), 0, recipe("sgd", E, 128))
    train_runs(tp, 0, 1, backend="numba")  # compile / load from cache outside the timing
    b = benchmark.pedantic(train_runs, args=(tp, 0, n), kwargs={"backend": "numba"}, rounds=3, iterations=1)
    assert b.keys.shape[0] == n and np.all(b.epochs == E)
    if benchmark.stats:
        benchmark.extra_info["gflops"] = n * flops_per_run(E, m) / benchmark.stats["min"] / 1e9


def test_numpy_matmul_rate(benchmark, request):
    """The yardstick: float32 (128 x 512) @ (512 x 512)."""
    rng = np.random.default_rng(0)
    A = rng.random((128, 512), dtype=np.float32)
    B = rng.random((512, 512), dtype=np.float32)
    C = benchmark(np.matmul, A, B)
    assert C.shape == (128, 512)


def test_torch_bmm_wide(benchmark, request):
    """The batched PyTorch variant on the same workload (skipped without torch)."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    m, E, n = (100, 1, 2) if _smoke(request) else (M_TRAIN, 3, 4)
    X, y = data(m)
    run = torch_bmm_runner("sgd", E, 128, X, y, m)
    benchmark.pedantic(run, args=(n,), rounds=3, iterations=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--m", type=int, help="train images (default 1,000; --quick 200)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--ab", action="store_true", help="one core: the wide schedule vs the 256-bit tiles vs matmul")
    ap.add_argument("--sampler", action="store_true", help="one core: the sampler's wide blocks vs matmul")
    ap.add_argument("--narrow", action="store_true",
                    help="the real-data experiment's 64-40-40-1 (Adam, batch 32 and 128) instead of 64-512-512-1")
    args = ap.parse_args(argv)
    if args.ab or args.sampler:
        if args.ab:
            ab_one_thread(args.rounds, args.m or M_TRAIN, args.epochs or 3)
        if args.sampler:
            sampler_ab(args.rounds, args.m or M_TRAIN)
        return 0
    rows(args.quick, args.rounds, args.no_torch, args.epochs, args.m, widths=NARROW if args.narrow else WIDTHS)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
