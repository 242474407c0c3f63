"""``fastpoly train`` (P_SGD counts of a training recipe) and the helper of ``fastpoly plot compare``."""
from __future__ import annotations

import os
import time

import numpy as np

from fastpoly.arch import MLP, parse_arch
from fastpoly.atomic import atomic_open
from fastpoly.cli.sample import claim_out, parse_count, train_set_from_args
from fastpoly.keys import key_to_hex, pack_bits
from fastpoly.model.inputs import all_boolean_inputs
from fastpoly.model.optimizers import LOSSES, OPTIMIZERS
from fastpoly.sgd.api import compare, plot_compare, sample_sgd, sample_sgd_anchor
from fastpoly.sgd.recipe import Recipe

__all__ = ["plot_compare_files", "register", "run_train"]


def register(sub):
    """Add the ``train`` subcommand."""
    p = sub.add_parser(
        "train",
        help="train many networks from the prior stream with SGD/Adam and count the functions they reach (P_SGD)",
        description=(
            "Train N networks of architecture ARCH (run i starts from sample i of the prior stream, bit for bit) "
            "on a train set S of the Boolean inputs and count the functions they reach on the remaining rows: "
            "P_SGD(f|S), keyed like 'fastpoly sample --train' (P_B(f|S)). Writes counts.npz (and records.npz "
            "with --records) to --out. '--anchor 32' runs the published nn-pacbayes recipe."
        ),
    )
    p.add_argument("arch", nargs="?", default=None, help="architecture, e.g. 7-40-40-1 (default with --anchor)")
    p.add_argument("--runs", default="1000", help="number of runs (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first run index")
    p.add_argument("--backend", default="auto", help="auto, numba or numpy")
    p.add_argument("--train", help="anchor:M (the anchor's S and target) or comma-separated rows (needs --target)")
    p.add_argument("--train-size", type=int, default=0, help="random train set of this size (needs --target)")
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--target", help="0/1 string (char i = row i) or hex key (bit i = row i)")
    p.add_argument("--optimizer", default="sgd", choices=list(OPTIMIZERS))  # the optimizer table
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--loss", default="ce", choices=list(LOSSES))
    p.add_argument("--batch", type=int, default=8, help="minibatch size (default 8)")
    p.add_argument("--max-epochs", type=int, default=3000)
    p.add_argument("--fit-threshold", type=float, default=0.0, help="logit threshold of the fit check (anchor: 0.5)")
    p.add_argument("--epochs-after-fit", type=int, default=0)
    p.add_argument("--min-epochs", type=int, default=0)
    p.add_argument("--anchor", type=int, metavar="M", help="the anchor recipe and S (M = 32 or 64) on 7-40-40-1")
    p.add_argument("--callback-leak", action="store_true", help="with --anchor: emulate the leaked callback")
    p.add_argument("--workers", type=int, default=400, help="with --callback-leak: MPI workers (default 400)")
    p.add_argument("--records", action="store_true", help="also write per-run records (records.npz)")
    p.add_argument("--out", default="fastpoly-train", help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite the result of an earlier run in --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_train)
    return p


def run_train(args):
    n = parse_count(str(args.runs))
    path = os.path.join(args.out, "counts.npz")
    lock = claim_out(args.out, path, args.force)
    try:
        return _train_and_report(args, n, path)
    finally:
        if lock is not None:
            lock.release()


def _train_and_report(args, n, path):
    t0 = time.perf_counter()
    if args.anchor:
        res = sample_sgd_anchor(m=args.anchor, epochs_after_fit=args.epochs_after_fit or 1, n_runs=n,
                                seed=args.seed, backend=args.backend, callback_leak=args.callback_leak,
                                workers=args.workers, records=args.records, progress=not args.no_progress)
    else:
        if not args.arch:
            raise ValueError("give an architecture such as 7-40-40-1 (or --anchor 32)")
        n_in, hidden = parse_arch(args.arch)
        X = all_boolean_inputs(n_in, "cli")  # the one input rule (fastpoly.model.inputs)
        rows, tgt = train_set_from_args(args, X.shape[0], required=True)
        recipe = Recipe(optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                        beta1=args.beta1, beta2=args.beta2, eps=args.eps, loss=args.loss, batch_size=args.batch,
                        max_epochs=args.max_epochs, fit_threshold=args.fit_threshold,
                        epochs_after_fit=args.epochs_after_fit, min_epochs=args.min_epochs)
        res = sample_sgd(MLP(n_in, hidden), X, (rows, tgt[rows]), n_runs=n, seed=args.seed, backend=args.backend,
                         recipe=recipe, start=args.start, records=args.records, progress=not args.no_progress,
                         annotations={"target": key_to_hex(pack_bits(np.asarray(tgt, bool)), X.shape[0])})
    dt = time.perf_counter() - t0
    res.save(path)
    r = res.meta["sgd_recipe"]
    print(f"architecture   {'-'.join(map(str, res.meta['arch']['widths']))}  recipe {r}")
    print(f"runs           {res.n_samples:,} (seed {res.meta['seed']}), fitted {res.n_accepted:,}, "
          f"failed {res.n_samples - res.n_accepted:,}  [{res.info.get('backend')}]")
    print(f"runs/s         {res.n_samples / dt:,.0f}  ({dt:.2f} s)")
    print(f"distinct       {res.n_distinct:,} functions on {res.n_key_bits} test rows")
    for t in res.top(5):
        print(f"  {t['key']}  P_SGD {t['probability']:.4f} [{t['lower']:.4f}, {t['upper']:.4f}]")
    if args.records:
        rec = res.info["records"]
        with atomic_open(os.path.join(args.out, "records.npz"), "wb") as fh:
            np.savez(fh, **rec)
        print(f"mean epochs    {rec['epochs'].mean():.1f}  (first fit {rec['first_fit'][rec['first_fit'] > 0].mean():.1f})")
    print(f"counts file    {path}")
    return 0


def plot_compare_files(a, b, out=None):
    """``fastpoly plot compare A.npz B.npz --out fig.png``: the figure, and the table next to it."""
    out = out or "compare.png"
    plot_compare(a, b, out, names=("P_a", "P_b"))
    c = compare(a, b, k=2, names=("a", "b"))
    base = os.path.splitext(out)[0]
    with open(base + ".txt", "w") as fh:
        fh.write(c.to_text(30) + "\n")
    return [out, base + ".txt"]
