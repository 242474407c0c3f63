"""``fastpoly train`` (P_SGD counts of a training recipe) and the helper of ``fastpoly plot compare``."""
from __future__ import annotations

import os
import time

import numpy as np

from fastpoly.api import Interrupted
from fastpoly.arch import parse_arch
from fastpoly.atomic import atomic_open
from fastpoly.cli.options import (
    ARCH_OPTIONS,
    RUN_OPTIONS,
    SHARED_DEFAULTS,
    SHARED_JOB_OPTIONS,
    SHARED_RESULT_OPTIONS,
    TRAIN_OPTIONS,
    CommandSpec,
    apply_defaults,
    close_client,
    dask_client,
    inputs_from_args,
    labels_as_target,
    mlp_from_args,
    report_interrupt,
    restore_resume_args,
    run_options,
)
from fastpoly.cli.sample import claim_out, parse_count, train_set_from_args
from fastpoly.keys import key_to_hex, pack_bits
from fastpoly.model.optimizers import LOSSES, OPTIMIZERS
from fastpoly.sgd.api import compare, plot_compare, sample_sgd, sample_sgd_anchor
from fastpoly.sgd.recipe import Recipe

__all__ = ["plot_compare_files", "register", "run_train"]


def register(sub):
    """Add the ``train`` subcommand (the run, architecture and train-set options are those of ``sample``)."""
    p = sub.add_parser(
        "train",
        parents=[ARCH_OPTIONS, TRAIN_OPTIONS, RUN_OPTIONS],
        help="train many networks from the prior stream with SGD/Adam and count the functions they reach (P_SGD)",
        description=(
            "Train N networks of architecture ARCH (run i starts from sample i of the prior stream, bit for bit) "
            "on a train set S of the inputs and count the functions they reach on the remaining rows: "
            "P_SGD(f|S), keyed like 'fastpoly sample --train' (P_B(f|S)). Writes counts.npz (and records.npz "
            "with --records) to --out. '--anchor 32' runs the published nn-pacbayes recipe. With --checkpoint, "
            "Ctrl-C keeps the progress and --resume DIR (or fastpoly.resume(DIR)) continues it."
        ),
    )
    # job options default to None (see SPEC.defaults) so that --resume can tell what was given
    p.add_argument("--runs", help="number of runs (default 1000)")
    r = p.add_argument_group("training recipe")
    r.add_argument("--optimizer", choices=list(OPTIMIZERS), help="the optimizer table: " + ", ".join(OPTIMIZERS) + " (default sgd)")
    r.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    r.add_argument("--momentum", type=float, help="SGD / RMSprop momentum (default 0)")
    r.add_argument("--nesterov", action="store_true", default=None)
    r.add_argument("--beta1", type=float, help="Adam beta1 (default 0.9)")
    r.add_argument("--beta2", type=float, help="Adam beta2 (default 0.999)")
    r.add_argument("--eps", type=float,
                   help="Adam / Adagrad / RMSprop epsilon (default 1e-8 for adam, 1e-7 for adagrad and rmsprop)")
    r.add_argument("--rho", type=float, help="RMSprop decay rate (default 0.9, Keras)")
    r.add_argument("--initial-accumulator", type=float, help="Adagrad's initial accumulator (default 0.1, Keras)")
    r.add_argument("--eps-outside-sqrt", action="store_true", default=None,
                   help="Adagrad / RMSprop: divide by sqrt(v) + eps (tf.keras 2.x) instead of sqrt(v + eps) (Keras 3)")
    r.add_argument("--loss", choices=list(LOSSES), help=", ".join(LOSSES) + " (default ce)")
    r.add_argument("--batch", type=int, help="minibatch size (default 8)")
    r.add_argument("--max-epochs", type=int, help="default 3000")
    r.add_argument("--fit-threshold", type=float, help="logit threshold of the fit check (default 0; anchor: 0.5)")
    r.add_argument("--epochs-after-fit", type=int, help="default 0 (anchor: 1)")
    r.add_argument("--min-epochs", type=int, help="default 0")
    r.add_argument("--anchor", type=int, metavar="M", help="the anchor recipe and S (M = 32 or 64) on 7-40-40-1")
    r.add_argument("--callback-leak", action="store_true", default=None,
                   help="with --anchor: emulate the leaked callback")
    r.add_argument("--workers", type=int, help="with --callback-leak: MPI workers (default 400)")
    p.add_argument("--records", action="store_true", help="also write per-run records (records.npz)")
    p.add_argument("--top", type=int, help="how many functions to list (default 5)")
    p.set_defaults(func=run_train)
    return p


#: recipe options: name -> default
_RECIPE = {"optimizer": "sgd", "lr": None, "momentum": 0.0, "nesterov": False, "beta1": 0.9, "beta2": 0.999,
           "eps": None, "rho": 0.9, "initial_accumulator": 0.1, "eps_outside_sqrt": False,
           "loss": "ce", "batch": 8, "max_epochs": 3000,
           "fit_threshold": 0.0,
           "epochs_after_fit": None, "min_epochs": 0}
_OWN = ("runs", "anchor", "callback_leak", "workers") + tuple(_RECIPE)


def _norm(k, v):
    if k == "runs":
        return parse_count(str(v))
    if k == "arch":
        return parse_arch(str(v))
    if k in ("sigma_w", "sigma_b", "lr", "momentum", "beta1", "beta2", "eps", "fit_threshold", "rho",
             "initial_accumulator"):
        return float(v)
    if k == "target":
        return str(v).strip().lower().removeprefix("0x")
    return v


#: ``fastpoly train``: its job options (restored from a checkpoint on --resume) and their defaults
SPEC = CommandSpec(
    name="train", count="runs",
    defaults=dict(SHARED_DEFAULTS, runs="1000", out="fastpoly-train", top=5, anchor=0, callback_leak=False,
                  workers=400, **{k: v for k, v in _RECIPE.items() if v is not None}),
    job_options=SHARED_JOB_OPTIONS + _OWN + ("top",),
    result_options=SHARED_RESULT_OPTIONS + _OWN,
    normalize=_norm,
)


def run_train(args):
    if getattr(args, "resume", None):
        restore_resume_args(args, SPEC)
    apply_defaults(args, SPEC)
    if args.top < 0:
        raise ValueError(f"--top must be >= 0, got {args.top}")
    n = parse_count(str(args.runs))
    path = os.path.join(args.out, "counts.npz")
    extra = SPEC.extra(args)
    client = dask_client(args.dask) if getattr(args, "dask", None) else None
    try:
        lock = claim_out(args.out, path, args.force, bool(getattr(args, "resume", None)), args.checkpoint)
        try:
            opts = run_options(args, SPEC, n, path, client, extra=extra)
            return _train_and_report(args, n, path, opts)
        finally:
            if lock is not None:
                lock.release()
    finally:
        close_client(args, client)


def _train_and_report(args, n, path, opts):
    t0 = time.perf_counter()
    try:
        if args.anchor:
            res = sample_sgd_anchor(m=args.anchor, epochs_after_fit=args.epochs_after_fit or 1, seed=args.seed,
                                    backend=args.backend, callback_leak=args.callback_leak, workers=args.workers,
                                    records=args.records, options=opts)
        else:
            mlp = mlp_from_args(args)
            X = inputs_from_args(args, mlp.n_inputs)
            labels_as_target(args, X.shape[0])
            rows, tgt = train_set_from_args(args, X.shape[0], required=True)
            recipe = Recipe(optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                            beta1=args.beta1, beta2=args.beta2, eps=args.eps, rho=args.rho,
                            initial_accumulator=args.initial_accumulator, eps_in_sqrt=not args.eps_outside_sqrt,
                            loss=args.loss,
                            batch_size=args.batch, max_epochs=args.max_epochs, fit_threshold=args.fit_threshold,
                            epochs_after_fit=args.epochs_after_fit or 0, min_epochs=args.min_epochs)
            res = sample_sgd(mlp, X, (rows, tgt[rows]), seed=args.seed, backend=args.backend, recipe=recipe,
                             records=args.records, options=opts,
                             annotations={"target": key_to_hex(pack_bits(np.asarray(tgt, bool)), X.shape[0])})
    except Interrupted as e:
        return report_interrupt(args, SPEC, e)
    dt = time.perf_counter() - t0
    r = res.meta["sgd_recipe"]
    run_s = float(res.info.get("elapsed_s", dt))
    done_now = res.n_samples - int(res.info.get("resumed_from", 0) or 0)
    print(f"architecture   {'-'.join(map(str, res.meta['arch']['widths']))}  recipe {r}")
    if res.info.get("resumed_from"):
        print(f"resumed        from run {res.info['resumed_from']:,} (checkpoint {args.checkpoint})")
    print(f"runs           {res.n_samples:,} (seed {res.meta['seed']}), fitted {res.n_accepted:,}, "
          f"failed {res.n_samples - res.n_accepted:,}  [{res.info.get('backend')}]")
    print(f"runs/s         {done_now / max(run_s, 1e-9):,.0f}  ({run_s:.2f} s training; {dt:.2f} s in all)")
    print(f"distinct       {res.n_distinct:,} functions on {res.n_key_bits} test rows")
    for t in res.top(args.top):
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
