"""``fastpoly train`` (P_SGD counts of a training recipe) and the helper of ``fastpoly plot compare``."""
from __future__ import annotations

import os
import time

import numpy as np

from fastpoly.analysis.stats import wilson_interval
from fastpoly.arch import MLP, boolean_inputs, parse_arch
from fastpoly.atomic import atomic_open, check_output_file
from fastpoly.cli.sample import claim_out, parse_count, train_set_from_args
from fastpoly.keys import key_to_hex, pack_bits
from fastpoly.plotting import check_figure_path
from fastpoly.sgd.api import sample_sgd, sample_sgd_anchor
from fastpoly.sgd.compare import compare, load_counts, plot_compare, side_names
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
    p.add_argument("--start", type=int, default=None, help="first run index (default 0)")
    p.add_argument("--backend", default="auto", help="auto, numba or numpy")
    p.add_argument("--train", help="anchor:M (the anchor's S and target) or comma-separated rows (needs --target)")
    p.add_argument("--train-size", type=int, default=None, help="random train set of this size (needs --target)")
    p.add_argument("--train-seed", type=int, default=None, help="seed choosing the train rows (default 0)")
    p.add_argument("--target", help="0/1 string (char i = row i) or hex key (bit i = row i)")
    p.add_argument("--optimizer", default=None, choices=["sgd", "adam"], help="default sgd")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--momentum", type=float, default=None, help="default 0")
    p.add_argument("--nesterov", action="store_true", default=None)
    p.add_argument("--beta1", type=float, default=None, help="default 0.9")
    p.add_argument("--beta2", type=float, default=None, help="default 0.999")
    p.add_argument("--eps", type=float, default=None, help="default 1e-8")
    p.add_argument("--loss", default=None, choices=["ce", "mse"], help="default ce")
    p.add_argument("--batch", type=int, default=None, help="minibatch size (default 8)")
    p.add_argument("--max-epochs", type=int, default=None, help="default 3000")
    p.add_argument("--fit-threshold", type=float, default=None,
                   help="logit threshold of the fit check (default 0; anchor: 0.5)")
    p.add_argument("--epochs-after-fit", type=int, default=None, help="default 0 (with --anchor: 1)")
    p.add_argument("--min-epochs", type=int, default=None, help="default 0")
    p.add_argument("--anchor", type=int, metavar="M", help="the anchor recipe and S (M = 32 or 64) on 7-40-40-1")
    p.add_argument("--callback-leak", action="store_true", help="with --anchor: emulate the leaked callback")
    p.add_argument("--workers", type=int, default=None, help="with --callback-leak: MPI workers (default 400)")
    p.add_argument("--records", action="store_true", help="also write per-run records (records.npz)")
    p.add_argument("--out", default="fastpoly-train", help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite the result of an earlier run in --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_train)
    return p


#: options of a free recipe: with --anchor (which sets them) they are refused, never dropped
_RECIPE_OPTIONS = ("optimizer", "lr", "momentum", "nesterov", "beta1", "beta2", "eps", "loss", "batch", "max_epochs",
                   "fit_threshold", "min_epochs", "start", "train", "train_size", "train_seed", "target")
#: defaults of the options above (None in the parser, so that a given option can be told apart)
_TRAIN_DEFAULTS = {"start": 0, "train_size": 0, "train_seed": 0, "optimizer": "sgd", "momentum": 0.0,
                   "nesterov": False, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "loss": "ce", "batch": 8,
                   "max_epochs": 3000, "fit_threshold": 0.0, "min_epochs": 0, "epochs_after_fit": 0}


def _flag(k):
    return "--" + k.replace("_", "-")


def check_train_options(args):
    """Every option takes effect or is refused: ``--anchor`` (a preset) refuses the options it sets.

    Fills the defaults of the options not given.  Raises ``ValueError`` naming the options.
    """
    if args.anchor is not None:
        given = [_flag(k) for k in _RECIPE_OPTIONS if getattr(args, k, None) is not None]
        if args.arch is not None and args.arch.replace(" ", "") != "7-40-40-1":
            given.insert(0, f"architecture {args.arch}")
        if given:
            raise ValueError(
                f"--anchor {args.anchor} sets the architecture (7-40-40-1), train set, target and recipe of the "
                f"published experiment; it does not take {', '.join(given)} (drop them, or give the recipe "
                "without --anchor)"
            )
        if args.epochs_after_fit is None:
            args.epochs_after_fit = 1
        if args.workers is not None and not args.callback_leak:
            raise ValueError("--workers applies only with --callback-leak")
        if args.workers is None:
            args.workers = 400
    else:
        if args.callback_leak or args.workers is not None:
            raise ValueError(f"{'--callback-leak' if args.callback_leak else '--workers'} applies only to the "
                             "anchor experiment (--anchor M)")
    for k, v in _TRAIN_DEFAULTS.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)


def run_train(args):
    check_train_options(args)
    n = parse_count(str(args.runs), "--runs")
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
        res = sample_sgd_anchor(m=args.anchor, epochs_after_fit=args.epochs_after_fit, n_runs=n,
                                seed=args.seed, backend=args.backend, callback_leak=args.callback_leak,
                                workers=args.workers, records=args.records, progress=not args.no_progress)
    else:
        if not args.arch:
            raise ValueError("give an architecture such as 7-40-40-1 (or --anchor 32)")
        n_in, hidden = parse_arch(args.arch)
        if n_in > 20:
            raise ValueError("the CLI trains on all Boolean inputs; use at most 20 inputs")
        X = boolean_inputs(n_in)
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
    n_div = res.info.get("n_diverged")
    failed = res.n_samples - res.n_accepted
    div = "" if n_div is None else f" (diverged {n_div:,}, did not fit {failed - n_div:,})"
    print(f"runs           {res.n_samples:,} (seed {res.meta['seed']}), fitted {res.n_accepted:,}, "
          f"failed {failed:,}{div}  [{res.info.get('backend')}]")
    if n_div:
        print(f"diverged       {n_div:,} runs stopped at a non-finite parameter (inf or NaN loss): "
              "lower the learning rate")
    compile_s = float(res.info.get("compile_s", 0.0) or 0.0)
    run_s = float(res.info.get("elapsed_s", dt))
    if res.info.get("compiled", compile_s >= 0.5):
        print(f"compiling      {compile_s:.1f} s (trainer kernels for this architecture; cached for the next run)")
    if res.info.get("leak_table_s"):
        print(f"leak table     {res.info['leak_table_s']:.2f} s (first-fit epochs of the emulated workers)")
    done_now = res.n_samples - int(res.info.get("resumed_from", 0) or 0)
    count_s = float(res.info.get("counting_s", run_s))
    print(f"runs/s         {done_now / max(count_s, 1e-9):,.0f}  ({count_s:.2f} s training and counting; "
          f"{dt:.2f} s in all)")
    print(f"distinct       {res.n_distinct:,} functions on {res.n_key_bits} test rows")
    if res.n_accepted == 0:
        hi = float(wilson_interval(0, res.n_samples)[1])
        print(f"no function    no run fitted the train set: fit rate <= {hi:.3g} (95% Wilson upper bound); "
              "the counts file is empty")
    for t in res.top(5):
        print(f"  {t['key']}  P_SGD {t['probability']:.4f} [{t['lower']:.4f}, {t['upper']:.4f}]")
    if args.records:
        rec = res.info["records"]
        with atomic_open(os.path.join(args.out, "records.npz"), "wb") as fh:
            np.savez(fh, **rec)
        ff = rec["first_fit"][rec["first_fit"] > 0]
        print(f"mean epochs    {rec['epochs'].mean():.1f}  "
              + (f"(first fit {ff.mean():.1f})" if ff.size else "(no run ever fitted the train set)"))
    print(f"counts file    {path}")
    return 0


def plot_compare_files(a, b, out=None, force=False):
    """``fastpoly plot compare A.npz B.npz --out fig.png``: the figure, and the table next to it.

    Figure and table use the same ``k`` (2: functions seen at least twice in both), so the title
    and the table agree; the sides are named from the files' metadata (P_SGD, P_B, ...).  An
    existing table is replaced only with ``force``; either input as an output is refused.
    """
    out = out or "compare.png"
    check_figure_path(out)
    txt = os.path.splitext(out)[0] + ".txt"
    for p in (out, txt):
        check_output_file(p, [a, b], force, "plot compare output")
    ca, cb = load_counts(a), load_counts(b)
    labels = (os.path.basename(os.fspath(a)), os.path.basename(os.fspath(b)))
    if labels[0] == labels[1]:  # e.g. two folders' counts.npz: the paths as given tell them apart
        labels = (os.fspath(a), os.fspath(b))
    names = side_names(ca, cb, labels)
    k = 2
    c = compare(ca, cb, k=k, names=names)
    plot_compare(ca, cb, out, k=k, names=names)
    with atomic_open(txt, "w") as fh:
        fh.write(c.to_text(30) + "\n")
    return [out, txt]
