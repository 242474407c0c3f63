"""``fastpoly experiment psgd-vs-gp``: P_SGD vs P_B^GP per optimizer on real images.

Registered by :mod:`fastpoly.cli.main` through :func:`register`; the work is
:func:`fastpoly.experiments.psgd_vs_gp.psgd_vs_gp` (imported when the command runs).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from fastpoly.backends import VALID_NAMES

__all__ = ["register", "run_psgd_vs_gp"]


def _positive(v: str) -> int:
    try:
        n = int(v.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}")
    return n


def _count(v: str, what: str, lo: int) -> int:
    """An integer option read after parsing, so that a bad value is one line (exit 2) like other bad input."""
    try:
        n = int(str(v).replace("_", "").replace(",", ""))
    except ValueError:
        raise ValueError(f"{what} must be an integer >= {lo}, got {v!r}") from None
    if n < lo:
        raise ValueError(f"{what} must be an integer >= {lo}, got {v!r}")
    return n


def register(sub: Any) -> None:
    """Add the ``experiment`` subcommand (``experiment psgd-vs-gp``)."""
    p = sub.add_parser(
        "experiment",
        help="worked experiments combining the estimators (psgd-vs-gp: P_SGD vs P_B^GP on real images)",
        description="Worked experiments that combine the estimators. 'fastpoly experiment psgd-vs-gp': "
                    "train networks with several optimizers on real images, count the functions they "
                    "reach on the test images, compute the NNGP posterior log P_B^GP(f|S) (EP) of the "
                    "frequent ones, and write the comparison (figures, correlations, tables).",
    )
    sub2 = p.add_subparsers(dest="experiment_command", metavar="EXPERIMENT")
    e = sub2.add_parser(
        "psgd-vs-gp",
        help="log P_SGD(f|S) vs log P_B^GP(f|S) per optimizer (Mingard et al. 2021)",
        description=(
            "Per optimizer: train --runs networks (run i starts from network i of the prior stream) on --train "
            "images until every train image is fitted (Keras threshold: logit > 0.5) plus --epochs-after-fit "
            "epochs, count the functions reached on the --test images, compute log P_B^GP(f|S) = "
            "log P(S u f_E) - log P(S) by EP (one kernel and one EP of S shared by all optimizers) for every "
            "function seen at least --min-count times, and write results.json, functions.csv, psgd_vs_gp.png, "
            "mass_by_errors.png and summary.txt into --out (runs and checkpoints in OUT/runs/OPTIMIZER). "
            "Interrupted runs continue with --resume; rerunning a finished one with --resume gives the same "
            "results. Data are read from --data-path or $FASTPOLY_DATA, never downloaded."
        ),
    )
    e.add_argument("--data", default="digits",
                   help="digits (bundled with scikit-learn), mnist, fashion-mnist, kmnist, emnist[-SPLIT], cifar10 "
                        "(default digits)")
    e.add_argument("--data-path", default=None, help="folder of the dataset's files (default: $FASTPOLY_DATA)")
    e.add_argument("--arch", default="fcn",
                   help="fcn (N-40-40-1), cnn (HxWxC-c16k3-c16k3-1) or an architecture string such as "
                        "784-1024-1024-1 or 8x8x1-c16k3-c16k3-1 (default fcn)")
    e.add_argument("--optimizer", default="sgd,adam,adagrad,rmsprop",
                   help="comma-separated optimizers (default sgd,adam,adagrad,rmsprop)")
    e.add_argument("--train", type=_positive, default=1000, help="train images m (default 1000)")
    e.add_argument("--test", type=_positive, default=100, help="test images: the set E the functions are read on (default 100)")
    e.add_argument("--runs", type=_positive, default=1000, help="training runs per optimizer (default 1000)")
    e.add_argument("--min-count", type=_positive, default=2,
                   help="P_B^GP for functions seen at least this many times (default 2)")
    e.add_argument("--max-functions", type=_positive, default=None,
                   help="at most this many functions get P_B^GP, the most frequent first (default: all)")
    e.add_argument("--check", default="0", metavar="N",
                   help="check EP on the N most frequent evaluated functions (default 0: none): EP's orthant of "
                        "f_E under its predictive q_S against minimax tilting (agrees / differs / unreliable when "
                        "tilting's effective sample size is too small), and joint minus shared log P_B^GP; the "
                        "S part of EP is not checked (see summary.txt)")
    e.add_argument("--check-samples", default="20000", metavar="N",
                   help="importance samples of the check's tilting (default 20000)")
    e.add_argument("--check-full", action="store_true",
                   help="with --check: also estimate the whole log P_B^GP of the checked functions by tilting of "
                        "both orthants (S and S u f_E), the S part included, with the verdict 'unreliable' where "
                        "tilting's effective sample size collapses (beyond m ~ 256 on the digits FCN kernel)")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--resume", action="store_true",
                   help="continue the runs checkpointed in --out (or re-read finished ones) and rewrite the results")
    e.add_argument("--backend", default="auto", choices=VALID_NAMES, help="training backend (default auto)")
    e.add_argument("--linalg", default="auto", choices=["auto", "numpy", "cupy"],
                   help="EP's linear algebra (default auto: CuPy when a GPU is usable)")
    r = e.add_argument_group("recipe and initialisation (defaults: the anchor's)")
    r.add_argument("--seed", type=int, default=0, help="stream seed of the initialisations (default 0)")
    r.add_argument("--data-seed", type=int, default=0, help="seed of the train-image draw (default 0)")
    r.add_argument("--sigma-w", type=float, default=1.0, help="weight scale (default 1)")
    r.add_argument("--sigma-b", type=float, default=None, help="bias scale (default 1/sqrt(inputs))")
    r.add_argument("--batch", type=_positive, default=None, help="minibatch size (default min(128, m))")
    r.add_argument("--lr", default=None,
                   help="learning rate: one number, or per optimizer as sgd=0.05,adagrad=0.01 (default: each "
                        "optimizer's own: 0.01 for sgd, 0.001 for adam, adagrad, rmsprop)")
    r.add_argument("--max-epochs", type=_positive, default=1000, help="default 1000")
    r.add_argument("--epochs-after-fit", type=int, default=64, help="epochs after S is fitted (default 64)")
    r.add_argument("--gp-mode", default="joint", choices=["joint", "shared"],
                   help="EP mode of P_B^GP (default joint: the paper's definition)")
    r.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the correlations "
                                                                 "(default 1000)")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")
    e.set_defaults(func=run_psgd_vs_gp)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_psgd_vs_gp(args: argparse.Namespace) -> int:
    """Run the experiment; bad input raises ``ValueError`` (one line, exit 2)."""
    from fastpoly.experiments.psgd_vs_gp import psgd_vs_gp

    check = _count(args.check, "--check", 0)
    check_samples = _count(args.check_samples, "--check-samples", 2)
    res = psgd_vs_gp(
        args.out, data=args.data, data_path=args.data_path, arch=args.arch, optimizers=args.optimizer,
        n_train=args.train, n_test=args.test, n_runs=args.runs, min_count=args.min_count, seed=args.seed,
        data_seed=args.data_seed, sigma_w=args.sigma_w, sigma_b=args.sigma_b, minibatch=args.batch,
        max_epochs=args.max_epochs, epochs_after_fit=args.epochs_after_fit, lr=args.lr, backend=args.backend,
        linalg=args.linalg, gp_mode=args.gp_mode, max_functions=args.max_functions, check=check,
        check_samples=check_samples, check_full=args.check_full, n_boot=args.bootstrap,
        resume=args.resume, progress=not args.no_progress and sys.stderr.isatty(),
        log=lambda msg: print(msg, file=sys.stderr, flush=True))
    for o, st in res["stats"].items():
        def f(name: str, st: dict[str, Any] = st) -> str:
            v, ci = st[name], st[name + "_ci"]
            return "n/a" if v is None else f"{v:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
        print(f"{o:8s} {st['n']:4d} functions  Pearson r {f('pearson')}  Spearman r {f('spearman')}")
    return 0
