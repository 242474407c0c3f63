"""``fastpoly train`` (P_SGD counts of a training recipe) and the helper of ``fastpoly plot compare``."""
from __future__ import annotations

import os
import time

import numpy as np

from fastpoly.analysis.compare import side_names
from fastpoly.analysis.stats import wilson_interval
from fastpoly.api import Interrupted
from fastpoly.arch import parse_arch
from fastpoly.atomic import atomic_open, check_output_file
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
from fastpoly.model.spec import architecture_from_dict
from fastpoly.plotting import check_figure_path
from fastpoly.sgd.api import compare, load_counts, plot_compare, sample_sgd, sample_sgd_anchor
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
    r.add_argument("--optimizer", choices=list(OPTIMIZERS),
                   help="the optimizer table: " + ", ".join(OPTIMIZERS) + " (default sgd)")
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


#: options of a free recipe: with --anchor (which sets them) they are refused, never dropped
_RECIPE_OPTIONS = ("optimizer", "lr", "momentum", "nesterov", "beta1", "beta2", "eps", "loss", "batch", "max_epochs",
                   "fit_threshold", "min_epochs", "start", "train", "train_size", "train_seed", "target")
def _flag(k):
    return "--" + k.replace("_", "-")


def check_train_options(args):
    """Every option takes effect or is refused: ``--anchor`` (a preset) refuses the options it sets.

    Runs before the defaults are filled (``apply_defaults``), so ``None`` means "not given".  Raises
    ``ValueError`` naming the options.
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
            args.epochs_after_fit = 1  # the preset's; an explicit 0 stays 0
        if args.workers is not None and not args.callback_leak:
            raise ValueError("--workers applies only with --callback-leak")
        if args.workers is None:
            args.workers = 400
    else:
        if args.callback_leak or args.workers is not None:
            raise ValueError(f"{'--callback-leak' if args.callback_leak else '--workers'} applies only to the "
                             "anchor experiment (--anchor M)")


#: recipe options: name -> default
_RECIPE = {"optimizer": "sgd", "lr": None, "momentum": 0.0, "nesterov": False, "beta1": 0.9, "beta2": 0.999,
           "eps": None, "rho": 0.9, "initial_accumulator": 0.1, "eps_outside_sqrt": False,
           "loss": "ce", "batch": 8, "max_epochs": 3000, "fit_threshold": 0.0,
           "epochs_after_fit": 0, "min_epochs": 0}  # epochs_after_fit: 1 with --anchor (check_train_options)
_OWN = ("runs", "anchor", "callback_leak", "workers") + tuple(_RECIPE)


def _norm(k, v):
    if k == "runs":
        return parse_count(str(v), "--runs")
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
    else:
        check_train_options(args)
    apply_defaults(args, SPEC)
    if args.top < 0:
        raise ValueError(f"--top must be >= 0, got {args.top}")
    n = parse_count(str(args.runs), "--runs")
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
            eaf = 1 if args.epochs_after_fit is None else args.epochs_after_fit  # the preset's 1; an explicit 0 stays
            res = sample_sgd_anchor(m=args.anchor, epochs_after_fit=eaf, seed=args.seed,
                                    backend=args.backend, callback_leak=args.callback_leak, workers=args.workers,
                                    records=args.records, options=opts)
        else:
            mlp = mlp_from_args(args, layers=True)  # MLPs and CNNs (docs/guide/cnn-training.md)
            X = inputs_from_args(args, mlp.n_inputs, mlp.input_shape)
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
    print(f"architecture   {architecture_from_dict(res.meta['arch']).spec}  recipe {r}")
    if res.info.get("resumed_from"):
        print(f"resumed        from run {res.info['resumed_from']:,} (checkpoint {args.checkpoint})")
    n_div = res.info.get("n_diverged")
    failed = res.n_samples - res.n_accepted
    div = "" if n_div is None else f" (diverged {n_div:,}, did not fit {failed - n_div:,})"
    print(f"runs           {res.n_samples:,} (seed {res.meta['seed']}), fitted {res.n_accepted:,}, "
          f"failed {failed:,}{div}  [{res.info.get('backend')}]")
    if n_div:
        print(f"diverged       {n_div:,} runs stopped at a non-finite parameter (inf or NaN loss): "
              "lower the learning rate")
    compile_s = float(res.info.get("compile_s", 0.0) or 0.0)
    if res.info.get("compiled", compile_s >= 0.5):
        print(f"compiling      {compile_s:.1f} s (trainer kernels for this architecture; cached for the next run)")
    if res.info.get("leak_table_s"):
        print(f"leak table     {res.info['leak_table_s']:.2f} s (first-fit epochs of the emulated workers)")
    count_s = float(res.info.get("counting_s", run_s))
    print(f"runs/s         {done_now / max(count_s, 1e-9):,.0f}  ({count_s:.2f} s training and counting; "
          f"{dt:.2f} s in all)")
    print(f"distinct       {res.n_distinct:,} functions on {res.n_key_bits} test rows")
    if res.n_accepted == 0:
        hi = float(wilson_interval(0, res.n_samples)[1])
        print(f"no function    no run fitted the train set: fit rate <= {hi:.3g} (95% Wilson upper bound); "
              "the counts file is empty")
    for t in res.top(args.top):
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
