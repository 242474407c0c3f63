"""EP's error on log P_B^GP(f|S), measured against minimax tilting where tilting's effective sample size holds.

The experiment ``fastpoly experiment psgd-vs-gp`` computes the paper's
``log P_B^GP(f|S) = log P(S u f_E) - log P(S)`` by joint EP at m = 1000, where nobody can
compute the exact orthant probabilities.  This script calibrates EP at small m on the same
kernel (the experiment's digits preset: 8 x 8 digits / 16, label >= 5, FCN 64-40-40-1 relu,
sigma_w = 1, sigma_b = 1/8): for each train size m and test-set size |E| it computes

* ``log P(S)`` and ``log P(S u f_E)`` by minimax tilting (Botev 2017; unbiased, with a standard
  error) of the full m- and (m + |E|)-dimensional orthants, so the tilting estimate of
  ``log P_B^GP(f|S)`` is their difference with the standard errors added in quadrature;
* the same by joint EP (the experiment's default) and by the shared mode (S sites fixed at
  their S-only values);

for functions of several kinds: the test labels' own function, the labels with k test labels
flipped (k random positions, seeded), and the functions SGD finds on that S (``--sgd-runs``
runs of SGD, lr 0.1, batch min(32, m), fit + 8 epochs: the committed FCN recipe; the
``--sgd-top`` most frequent).  It reports the error EP - tilting (nats) +- the tilting
standard error, the effective sample sizes, and whether tilting is reliable there (effective
sample size >= 1 % of the samples and >= 50, tilting's own rule): where it is not, the row
says so and takes no part in the summaries.

Usage (reproducible: every random choice is seeded by ``--seed``)::

    OPENBLAS_NUM_THREADS=1 python bench/ep_error.py OUTDIR [--sizes 8,16,32,64,128,256] [--test 8,32]
        [--flips 1,2,4,8,16] [--sgd-runs 300] [--sgd-top 4] [--samples 20000] [--seed 0] [--quick]

Writes ``OUTDIR/ep_error.csv`` (one row per case), ``ep_error.json`` (settings and rows),
``ep_error.txt`` (the tables) and ``ep_error.png`` (error vs test errors, one colour per m).
``--quick``: the smoke size (m = 8, 16; |E| = 8; 2,000 samples; 20 SGD runs); ``--report-only``
rewrites the text and the figure from ``OUTDIR/ep_error.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np

FIELDS = ("m", "n_test", "kind", "k_flip", "sgd_count", "test_errors", "ep_joint", "ep_shared", "tilting",
          "tilting_stderr", "ess_joint", "ess_S", "reliable", "err_joint", "err_shared", "ep_log_p_S",
          "tilting_log_p_S", "tilting_log_p_S_stderr", "joint_iterations")


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _tilt(K: np.ndarray, signs: np.ndarray, n_samples: int, rng: np.random.Generator):
    from fastpoly.gp.tilting import tilting_log_prob

    t = tilting_log_prob(K * np.outer(signs, signs), n_samples=n_samples, seed=rng)
    return t.log_p, t.stderr, float(t.diagnostics["ess"]), "warning" not in t.diagnostics


def _sgd_functions(arch, Xtr, ytr, Xte, n_runs: int, seed: int, top: int):
    """The ``top`` functions SGD finds most often on S (bits over the test rows, counts, fitted runs)."""
    from fastpoly.keys import unpack_bits
    from fastpoly.sgd.api import sample_sgd
    from fastpoly.sgd.recipe import Recipe

    m = Xtr.shape[0]
    X = np.vstack([Xtr, Xte]).astype(np.float32)
    rec = Recipe(optimizer="sgd", lr=0.1, batch_size=min(32, m), max_epochs=1000, fit_threshold=0.5,
                 epochs_after_fit=8)
    res = sample_sgd(arch, X, (np.arange(m, dtype=np.int64), np.asarray(ytr, np.uint8)), n_runs, seed=seed,
                     backend="numba", recipe=rec)
    keys, c = np.asarray(res.keys), np.asarray(res.counts, np.int64)
    if c.size == 0:
        return np.zeros((0, Xte.shape[0]), np.uint8), c, int(res.n_accepted)
    order = sorted(range(c.size), key=lambda j: (-int(c[j]), keys[j].tobytes()))[:top]
    bits = unpack_bits(keys[order], Xte.shape[0]).astype(np.uint8)
    return bits, c[order], int(res.n_accepted)


def one_size(arch, data, m: int, n_test: int, args) -> list[dict]:
    """Every case of one (m, |E|)."""
    from fastpoly.gp.scale import kernel_blocked, posterior_gp

    Xtr, ytr = np.asarray(data.X_train[:m], np.float64), np.asarray(data.y_train[:m], np.uint8)
    Xte, yte = np.asarray(data.X_test[:n_test], np.float64), np.asarray(data.y_test[:n_test], np.uint8)
    K = kernel_blocked(arch, np.vstack([Xtr, Xte]))
    sS = np.where(ytr == 1, 1.0, -1.0)
    lpS, seS, essS, okS = _tilt(K[:m, :m], sS, args.samples, _rng(args.seed, m, n_test, 0))
    cases: list[tuple[str, int, int, np.ndarray]] = [("labels", 0, 0, yte.copy())]
    for kf in args.flips:
        if kf > n_test:
            continue
        f = yte.copy()
        pos = _rng(args.seed, m, n_test, 1, kf).choice(n_test, kf, replace=False)
        f[pos] ^= 1
        cases.append(("flip", kf, 0, f))
    if args.sgd_runs:
        bits, counts, n_fit = _sgd_functions(arch, Xtr, ytr, Xte, args.sgd_runs, args.seed, args.sgd_top)
        for b, cnt in zip(bits, counts):
            for i, (kind, kf, _, f) in enumerate(cases):
                if np.array_equal(f, b):  # SGD found a function already listed: note its count there
                    cases[i] = (kind + "+sgd", kf, int(cnt), f)
                    break
            else:
                cases.append(("sgd", 0, int(cnt), b))
    F = np.array([c[3] for c in cases], np.uint8)
    joint = posterior_gp(arch, Xtr, ytr, Xte, F, K=K, mode="joint", linalg="numpy")
    shared = posterior_gp(arch, Xtr, ytr, Xte, F, K=K, mode="shared", linalg="numpy")
    rows = []
    for j, (kind, kf, cnt, f) in enumerate(cases):
        s_all = np.concatenate([sS, np.where(f == 1, 1.0, -1.0)])
        lp, se, ess, ok = _tilt(K, s_all, args.samples, _rng(args.seed, m, n_test, 2, j))
        tl = lp - lpS
        tse = math.hypot(se, seS)
        rows.append({"m": m, "n_test": n_test, "kind": kind, "k_flip": kf, "sgd_count": cnt,
                     "test_errors": int(np.count_nonzero(f != yte)), "ep_joint": float(joint.log_p[j]),
                     "ep_shared": float(shared.log_p[j]), "tilting": tl, "tilting_stderr": tse,
                     "ess_joint": ess, "ess_S": essS, "reliable": bool(ok and okS),
                     "err_joint": float(joint.log_p[j]) - tl, "err_shared": float(shared.log_p[j]) - tl,
                     "ep_log_p_S": joint.log_p_S, "tilting_log_p_S": lpS, "tilting_log_p_S_stderr": seS,
                     "joint_iterations": int(joint.diagnostics[j]["iterations"])})
    return rows


def _fmt(v, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def report(rows: list[dict], settings: dict) -> str:
    """The text tables: log P(S) per size, every case, and the errors summarised by m and by test errors."""
    L = [f"EP's error on log P_B^GP(f|S) against minimax tilting ({settings['n_samples']:,} samples per orthant), "
         f"digits FCN {settings['arch']} (the psgd-vs-gp preset), seed {settings['seed']}",
         "error = EP - tilting in nats (+- tilting's standard error, both orthants in quadrature); "
         "'unreliable' = tilting's effective sample size below 1 % of its samples (or 50) on P(S) or on "
         "P(S u f_E): no verdict there.", "",
         "log P(S):   m  |E|   EP         tilting +- se      EP - tilting   ESS(S)"]
    seen = set()
    for r in rows:
        if (r["m"], r["n_test"]) in seen:
            continue
        seen.add((r["m"], r["n_test"]))
        ok = "" if r["ess_S"] >= max(50, 0.01 * settings["n_samples"]) else "  unreliable"
        L.append(f"          {r['m']:4d} {r['n_test']:3d}  {r['ep_log_p_S']:9.3f}  {r['tilting_log_p_S']:9.3f} +- "
                 f"{r['tilting_log_p_S_stderr']:.3f}   {r['ep_log_p_S'] - r['tilting_log_p_S']:+8.3f}   "
                 f"{r['ess_S']:8.0f}{ok}")
    L += ["", "cases:   m  |E|  kind        k  sgd#  errors  EP joint  EP shared   tilting +- se     "
              "joint-tilt  shared-tilt  ESS(S u f)"]
    for r in rows:
        L.append(f"       {r['m']:4d} {r['n_test']:3d}  {r['kind']:10s} {r['k_flip']:2d} {r['sgd_count']:5d}  "
                 f"{r['test_errors']:5d}  {r['ep_joint']:8.3f}  {r['ep_shared']:9.3f}  {r['tilting']:8.3f} +- "
                 f"{r['tilting_stderr']:5.3f}  {r['err_joint']:+9.3f}  {r['err_shared']:+11.3f}  "
                 f"{r['ess_joint']:9.0f}{'' if r['reliable'] else '  unreliable'}")
    L += ["", "summary over the reliable cases (mean error +- its standard error over cases; range):"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["reliable"]:
            groups.setdefault((r["m"], r["n_test"]), []).append(r)
    L.append("    m  |E|  cases  joint - tilting                 shared - tilting                "
             "unreliable")
    for (m, nE) in sorted({(r["m"], r["n_test"]) for r in rows}):
        g = groups.get((m, nE), [])
        bad = sum(1 for r in rows if (r["m"], r["n_test"]) == (m, nE) and not r["reliable"])
        parts = []
        for key in ("err_joint", "err_shared"):
            v = np.array([r[key] for r in g])
            parts.append(f"{v.mean():+7.3f} +- {v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else 0:.3f} "
                         f"[{v.min():+7.3f}, {v.max():+7.3f}]" if v.size else f"{'n/a':31s}")
        L.append(f"  {m:4d} {nE:3d}  {len(g):5d}  {parts[0]:31s} {parts[1]:31s} {bad:5d}")
    L += ["", "by |E| and test errors (reliable cases, all m):",
          "   |E|  errors  cases  mean joint - tilting  mean shared - tilting  largest |joint - tilting|"]
    by_e: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        if r["reliable"]:
            by_e.setdefault((r["n_test"], r["test_errors"]), []).append(r)
    for nE, e in sorted(by_e):
        g = by_e[nE, e]
        L.append(f"  {nE:4d}  {e:6d}  {len(g):5d}  {np.mean([r['err_joint'] for r in g]):+20.3f}  "
                 f"{np.mean([r['err_shared'] for r in g]):+21.3f}  {max(abs(r['err_joint']) for r in g):25.3f}")
    return "\n".join(L) + "\n"


def figure(rows: list[dict], path: str) -> None:
    """Error vs test errors: colour = m, marker = |E|, hollow = tilting unreliable (no error bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = sorted({r["m"] for r in rows})
    es = sorted({r["n_test"] for r in rows})
    marks = dict(zip(es, "os^Dv"))
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.0), layout="constrained")
    for ax, key, title in ((axes[0], "err_joint", "joint EP (the experiment's)"),
                           (axes[1], "err_shared", "shared EP (S sites fixed at their S-only values)")):
        for i, m in enumerate(ms):
            col = cmap(i / max(1, len(ms) - 1))
            for nE in es:
                for rel in (True, False):
                    g = [r for r in rows if r["m"] == m and r["n_test"] == nE and r["reliable"] == rel]
                    if not g:
                        continue
                    x = np.array([r["test_errors"] for r in g]) + 0.1 * (i - len(ms) / 2)
                    y = np.array([r[key] for r in g])
                    e = np.array([r["tilting_stderr"] for r in g])
                    ax.errorbar(x, y, yerr=e if rel else None, fmt=marks[nE], color=col, ms=4, lw=0.8,
                                mfc=col if rel else "none",
                                label=f"m = {m}, |E| = {nE}" + ("" if rel else " (unreliable)"))
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("test errors of f", fontsize=8)
        ax.set_ylabel("EP - tilting (nats)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[1].legend(fontsize=5.5, loc="upper left", ncol=2)
    fig.suptitle("EP's error on log P_B^GP(f|S) = log P(S u f_E) - log P(S), digits FCN 64-40-40-1 "
                 "(bars: tilting's standard error; hollow: tilting's ESS too small)", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output folder")
    p.add_argument("--sizes", default="8,16,32,64,128,256", help="train sizes m")
    p.add_argument("--test", default="8,32", help="test-set sizes |E|")
    p.add_argument("--flips", default="1,2,4,8,16", help="numbers of test labels flipped")
    p.add_argument("--sgd-runs", type=int, default=300, help="SGD runs per (m, |E|) (0: none)")
    p.add_argument("--sgd-top", type=int, default=4, help="the most frequent SGD functions checked")
    p.add_argument("--samples", type=int, default=20_000, help="tilting samples per orthant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke size")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite ep_error.txt and ep_error.png from OUTDIR/ep_error.json (no computation)")
    args = p.parse_args(argv)
    if args.report_only:
        with open(os.path.join(args.out, "ep_error.json")) as f:
            saved = json.load(f)
        text = report(saved["rows"], saved["settings"])
        with open(os.path.join(args.out, "ep_error.txt"), "w") as f:
            f.write(text)
        figure(saved["rows"], os.path.join(args.out, "ep_error.png"))
        print(text)
        return 0
    if args.quick:
        args.sizes, args.test, args.flips, args.sgd_runs, args.samples = "8,16", "8", "1,2", 20, 2000
    try:
        args.sizes = [int(v) for v in str(args.sizes).split(",")]
        args.test = [int(v) for v in str(args.test).split(",")]
        args.flips = [int(v) for v in str(args.flips).split(",") if v]
    except ValueError:
        print("ep_error.py: --sizes, --test and --flips are comma-separated integers", file=sys.stderr)
        return 2
    if min(args.sizes) < 1 or min(args.test) < 1 or args.samples < 2 or args.sgd_runs < 0 or args.sgd_top < 1:
        print("ep_error.py: sizes, test sizes, samples and SGD counts must be positive", file=sys.stderr)
        return 2
    from fastpoly.experiments.psgd_vs_gp import experiment_arch, experiment_data

    os.makedirs(args.out, exist_ok=True)
    data = experiment_data("digits", None, max(args.sizes), max(args.test), args.seed)
    arch = experiment_arch("fcn", data.meta["image_shape"])
    rows: list[dict] = []
    t_all = time.perf_counter()
    for m in args.sizes:
        for nE in args.test:
            t0 = time.perf_counter()
            got = one_size(arch, data, m, nE, args)
            rows += got
            rel = [r for r in got if r["reliable"]]
            print(f"m = {m:4d}, |E| = {nE:3d}: {len(got)} cases, {len(rel)} reliable, "
                  f"mean joint - tilting {np.mean([r['err_joint'] for r in rel]) if rel else math.nan:+.3f}, "
                  f"shared - tilting {np.mean([r['err_shared'] for r in rel]) if rel else math.nan:+.3f} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    settings = {"arch": arch.spec, "sigma_b": 1 / 8, "data": "digits (psgd-vs-gp preset: /16, label >= 5)",
                "data_digest": data.meta.get("source_digest"), "sizes": args.sizes, "test_sizes": args.test,
                "flips": args.flips, "sgd_runs": args.sgd_runs, "sgd_top": args.sgd_top,
                "sgd_recipe": "sgd lr 0.1, batch min(32, m), fit + 8 epochs", "n_samples": args.samples,
                "seed": args.seed, "seconds": time.perf_counter() - t_all,
                "command": "python bench/ep_error.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    with open(os.path.join(args.out, "ep_error.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(FIELDS), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    with open(os.path.join(args.out, "ep_error.json"), "w") as f:
        json.dump({"settings": settings, "rows": rows}, f, indent=1)
        f.write("\n")
    text = report(rows, settings)
    with open(os.path.join(args.out, "ep_error.txt"), "w") as f:
        f.write(text)
    figure(rows, os.path.join(args.out, "ep_error.png"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
