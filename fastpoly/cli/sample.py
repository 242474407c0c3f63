"""``fastpoly sample``: the main job (prior or posterior over Boolean functions of a random MLP)."""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from fastpoly.analysis.figures import plot_rank
from fastpoly.analysis.stats import wilson_interval
from fastpoly.analysis.wording import wording
from fastpoly.api import sample
from fastpoly.arch import MLP, boolean_inputs, parse_arch
from fastpoly.atomic import FolderLock, check_writable_folder
from fastpoly.backends import VALID_NAMES, get_backend
from fastpoly.keys import key_to_hex, pack_bits, parse_key_text, unpack_bits
from fastpoly.run.checkpoint import job_of
from fastpoly.run.driver import Interrupted
from fastpoly.sgd.anchor import parse_train_spec

__all__ = ["register", "run_sample", "parse_count", "claim_out", "train_set_from_args"]


def parse_count(text, what="--samples"):
    """Parse a count such as ``1e6``, ``250000`` or ``1_000_000`` (positive integer); errors name ``what``."""
    try:
        v = float(text.replace("_", ""))
    except ValueError:
        raise ValueError(f"{what} must be a positive integer (e.g. 1e6), got {text!r}") from None
    if not np.isfinite(v) or v != int(v) or v < 1:
        raise ValueError(f"{what} must be a positive integer (e.g. 1e6), got {text!r}")
    return int(v)


def parse_target_arg(text, m, what="--target"):
    """A target over ``m`` rows from the command line (forms of :func:`fastpoly.keys.parse_key_text`)."""
    return unpack_bits(parse_key_text(text, m, what)[None, :], m)[0]


def register(sub):
    p = sub.add_parser(
        "sample",
        help="sample random networks and count the Boolean functions they compute (the main job)",
        description=(
            "Draw random networks of architecture ARCH (e.g. 7-40-40-1: 7 inputs, two hidden layers "
            "of 40, one output), evaluate each on all Boolean inputs, and count exactly how often each "
            "function appears (the prior P(f)); with --train-size and --target, keep only networks "
            "that fit the target on a random train set (the posterior P_B(f|S)). Prints backend, "
            "samples/s, distinct functions and the top 10; writes counts.npz and rank.png to --out."
        ),
    )
    p.add_argument("arch", nargs="?", help="architecture 'inputs-hidden...-1', e.g. 7-40-40-1 (7-1 is a perceptron)")
    # the job's options default to None here (see _DEFAULTS) so that --resume can tell what was given
    p.add_argument("--samples", help="number of networks to draw (default 1e6)")
    p.add_argument("--seed", type=int, help="stream seed in [0, 2**64) (default 0)")
    p.add_argument("--start", type=int, help="first sample index (default 0)")
    p.add_argument("--backend", default="auto", choices=VALID_NAMES, help="which backend runs the job (default auto)")
    p.add_argument("--activation", help="relu, tanh, erf, sign or identity (default relu)")
    p.add_argument("--weights", help="gaussian (default) or uniform (variance-matched)")
    p.add_argument("--sigma-w", type=float, help="weight scale: W ~ N(0, sigma_w^2/fan_in) (default 1)")
    p.add_argument("--sigma-b", type=float, help="bias scale: b ~ N(0, sigma_b^2) (default 1)")
    p.add_argument("--bias-scaling", help="none (default) or fan_in (b ~ N(0, sigma_b^2/fan_in))")
    p.add_argument("--no-bias", action="store_true", default=None, help="networks without biases")
    p.add_argument("--centered", action="store_true", default=None, help="Boolean inputs in {-1,+1} instead of {0,1}")
    p.add_argument("--train-size", type=int, help="condition on this many random rows of the target")
    p.add_argument("--target", help="target function: 0/1 string (char i = row i) or hex key (bit i = row i)")
    p.add_argument("--train-seed", type=int, help="seed choosing the train rows (default 0)")
    p.add_argument("--train", help="explicit train set: anchor:M (the P_SGD anchor's S and target) or "
                                    "comma-separated rows (with --target)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per backend call (results do not depend on it)")
    p.add_argument("--out", help="output folder (default ./fastpoly-out); an earlier result there is kept "
                                 "unless --force")
    p.add_argument("--force", action="store_true", help="overwrite the result of an earlier run in --out")
    p.add_argument("--top", type=int, help="how many functions to list (default 10)")
    p.add_argument("--no-plot", action="store_true", default=None, help="do not draw the rank-frequency plot")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--check", action="store_true", help="check the first 64 samples against the NumPy reference")
    p.add_argument("--checkpoint", metavar="DIR",
                   help="save progress in DIR (atomically, every --checkpoint-every seconds and on Ctrl-C)")
    p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between checkpoints (default 60)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run checkpointed in DIR (its options are read from DIR); the final "
                        "counts are identical to an uninterrupted run")
    p.add_argument("--memory-budget", metavar="BYTES",
                   help="memory for distinct keys while counting, e.g. 8GB; beyond it sorted runs are "
                        "spilled to disk (the checkpoint folder or a temporary one) and merged exactly")
    p.add_argument("--compress", action="store_true", default=None,
                   help="write counts.npz compressed (format 3: about half the size of format 2 for 128-bit "
                        "keys, one sequential pass, no temporary copies; every fastpoly command reads it)")
    p.add_argument("--dask", metavar="CLUSTER",
                   help="run on Dask: 'local' (one worker process per core), a number of local workers, "
                        "or a scheduler address tcp://host:8786 (needs the dask extra)")
    p.set_defaults(func=run_sample)
    return p


#: options restored from a checkpoint on --resume
_JOB_OPTIONS = ("arch", "samples", "seed", "start", "activation", "weights", "sigma_w", "sigma_b",
                "bias_scaling", "no_bias", "centered", "train_size", "train", "target", "train_seed", "out", "top",
                "no_plot", "memory_budget", "compress")
#: the defaults of the job options (None in the parser, so that --resume sees what was given)
_DEFAULTS = {"samples": "1e6", "seed": 0, "start": 0, "activation": "relu", "weights": "gaussian", "sigma_w": 1.0,
             "sigma_b": 1.0, "bias_scaling": "none", "no_bias": False, "centered": False, "train_size": 0,
             "train_seed": 0, "out": "fastpoly-out", "top": 10, "no_plot": False,
             "compress": False}
#: options that decide the result: on --resume they must agree with the checkpoint
_RESULT_OPTIONS = ("arch", "samples", "seed", "start", "activation", "weights", "sigma_w", "sigma_b",
                   "bias_scaling", "no_bias", "centered", "train_size", "train", "target", "train_seed")


def _norm(k, v):
    """An option's value in a comparable form (``1e6`` == ``1000000``, ``7-40-1`` == ``7 - 40 - 1``)."""
    if v is None:
        return None
    try:
        if k == "samples":
            return parse_count(str(v))
        if k == "arch":
            return parse_arch(str(v))
        if k in ("sigma_w", "sigma_b"):
            return float(v)
    except ValueError:
        return v
    if k == "target":
        return str(v).strip().lower().removeprefix("0x")
    return v


def _restore_resume_args(args):
    _, extra = job_of(args.resume)
    stored = extra.get("cli")
    if not stored:
        raise ValueError(
            f"{args.resume} was not written by 'fastpoly sample'; resume it from Python with "
            "fastpoly.resume(DIR)"
        )
    conflicts = []
    for k in _JOB_OPTIONS:
        given = getattr(args, k, None)
        if k not in stored:
            continue
        if given is None:
            setattr(args, k, stored[k])
        elif k in _RESULT_OPTIONS and _norm(k, given) != _norm(k, _fill(k, stored[k])):
            flag = k if k == "arch" else "--" + k.replace("_", "-")
            conflicts.append(f"{flag} {_fill(k, stored[k])} (given: {given})")
    if conflicts:
        raise ValueError(
            f"--resume {args.resume}: the checkpoint's run used {'; '.join(conflicts)}; drop those options "
            "(they are read from the checkpoint) or start a new run in another folder"
        )
    if args.checkpoint and os.path.abspath(args.checkpoint) != os.path.abspath(args.resume):
        raise ValueError("--resume DIR continues the checkpoint in DIR; do not also give --checkpoint")
    args.checkpoint = args.resume


def _fill(k, v):
    return _DEFAULTS.get(k) if v is None else v


def _apply_defaults(args):
    for k, v in _DEFAULTS.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)


def _check_options(args):
    """Options that can be checked before anything is drawn (the rest is checked by make_job)."""
    if args.top < 0:
        raise ValueError(f"--top must be >= 0, got {args.top}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.check and getattr(args, "dask", None):
        raise ValueError("--check runs in this process; it cannot be combined with --dask")
    if not np.isfinite(args.checkpoint_every) or args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be a number of seconds >= 0, got {args.checkpoint_every}")


def claim_out(out, path, force=False, resume=False, checkpoint=None):
    """Create the ``--out`` folder, check it is writable and lock it for this run.

    Refuses to replace ``path`` (the result of an earlier run) unless ``force`` or ``resume``;
    returns the :class:`~fastpoly.atomic.FolderLock` to release when the run ends (None when
    the folder is the checkpoint folder, whose own lock covers it).  Used by every command that
    writes a result folder (``sample``, ``train``, ``gp sample``).
    """
    existed = os.path.isdir(out)
    check_writable_folder(out, "output folder (--out)")
    same = checkpoint and os.path.realpath(checkpoint) == os.path.realpath(out)
    # a folder this command created is removed again if the command fails before writing into it
    lock = None if same else FolderLock(out, "output folder (--out)", remove_empty=not existed).acquire()
    if os.path.exists(path) and not (force or resume):
        if lock is not None:
            lock.release()
        raise ValueError(
            f"{out} already holds the result of an earlier run ({os.path.basename(path)}); pass --force to "
            "replace it or choose another --out"
        )
    return lock


def _claim_out(args, path):
    return claim_out(args.out, path, args.force, bool(getattr(args, "resume", None)), args.checkpoint)


def train_set_from_args(args, m, required=False):
    """The train rows and the full target of ``--train anchor:M|ROWS`` or ``--train-size N --target T``.

    Returns ``(rows, target)`` (int64 rows, uint8 target over all ``m`` rows), or ``(None, None)``
    when no train set is given and ``required`` is False.
    """
    if getattr(args, "train", None):
        rows, target = parse_train_spec(args.train, m)
        bad = rows[(rows < 0) | (rows >= m)]
        if bad.size:
            raise ValueError(f"--train rows must be in [0, {m - 1}] (the {m} Boolean inputs), got {bad.tolist()[:5]}")
        if np.unique(rows).size != rows.size:
            raise ValueError("--train lists a row more than once")
        if rows.size >= m:
            raise ValueError(f"--train must leave at least one test row (it lists {rows.size} of {m} rows)")
        if getattr(args, "train_size", None):
            raise ValueError("give the train set once: --train or --train-size, not both")
        if target is None:
            if not args.target:
                raise ValueError("--train ROWS needs --target")
            target = parse_target_arg(args.target, m)
        elif args.target:
            raise ValueError(f"--train {args.train} brings its own target; drop --target")
        return rows, target
    if not (args.train_size or args.target):
        if required:
            raise ValueError("give the train set: --train anchor:M, or --train ROWS / --train-size N with --target")
        return None, None
    if not args.target or not args.train_size:
        raise ValueError("conditioning needs both --train-size and --target")
    if not 0 < args.train_size < m:
        raise ValueError(f"--train-size must be in [1, {m - 1}], got {args.train_size}")
    target = parse_target_arg(args.target, m)
    rows = np.sort(np.random.default_rng(args.train_seed).choice(m, args.train_size, replace=False))
    return rows, target


def run_sample(args):
    if getattr(args, "resume", None):
        _restore_resume_args(args)
    _apply_defaults(args)
    _check_options(args)
    if not args.arch:
        raise ValueError("give an architecture such as 7-40-40-1 (or --resume DIR)")
    n = parse_count(str(args.samples))
    n_inputs, hidden = parse_arch(args.arch)
    mlp = MLP(
        n_inputs, hidden, activation=args.activation, weights=args.weights, sigma_w=args.sigma_w,
        sigma_b=args.sigma_b, bias_scaling=args.bias_scaling, bias=not args.no_bias,
    )
    if n_inputs > 20:
        raise ValueError("the CLI samples on all Boolean inputs; use at most 20 inputs (the API takes any X)")
    X = boolean_inputs(n_inputs, centered=args.centered)
    m = X.shape[0]
    rows, target = train_set_from_args(args, m)
    train = None if rows is None else (rows, target[rows])
    client = None
    if getattr(args, "dask", None):
        client = _dask_client(args.dask)
        be = None  # each worker resolves args.backend itself
    else:
        be = get_backend(args.backend)
    path = os.path.join(args.out, "counts.npz")
    lock = _claim_out(args, path)
    try:
        return _run_and_report(args, mlp, X, n, train, target, client, be, path)
    finally:
        if lock is not None:
            lock.release()


def _run_and_report(args, mlp, X, n, train, target, client, be, path):
    m = X.shape[0]
    extra = {"cli": {k: getattr(args, k, None) for k in _JOB_OPTIONS}}
    annotations = None
    if train is not None:
        annotations = {"target": key_to_hex(pack_bits(target.astype(bool)), m)}
    t0 = time.perf_counter()
    try:
        counts = sample(
            mlp, X, n, seed=args.seed, backend=be if be is not None else args.backend, train=train,
            batch_size=args.batch_size, progress=not args.no_progress, start=args.start, check=args.check,
            checkpoint=args.checkpoint, resume=bool(getattr(args, "resume", None)),
            checkpoint_every=args.checkpoint_every, memory_budget=args.memory_budget, client=client,
            out=path, checkpoint_extra=extra, annotations=annotations, compress=bool(args.compress),
        )
    except Interrupted as e:
        if args.checkpoint:
            msg = str(e) or f"interrupted; the last checkpoint in {args.checkpoint} is intact"
            print(f"\nfastpoly sample: {msg}", file=sys.stderr)
            return 128 + e.signum
        raise
    finally:
        if client is not None and isinstance(args.dask, str) and args.dask.startswith(("tcp://", "tls://")):
            client.close()
    dt = time.perf_counter() - t0
    compile_s = float(counts.info.get("compile_s", 0.0) or 0.0)
    run_s = float(counts.info.get("elapsed_s", dt))
    print(f"architecture   {mlp.spec}  ({mlp.activation}, {mlp.weights}, sigma_w={mlp.sigma_w}, "
          f"sigma_b={mlp.sigma_b}, bias_scaling={mlp.bias_scaling}{', no bias' if not mlp.bias else ''})")
    if be is not None:
        print(f"backend        {be.describe()}")
    else:
        print(f"backend        {counts.info.get('backend')} on {counts.info.get('n_workers')} Dask workers")
    if counts.info.get("resumed_from"):
        print(f"resumed        from sample {counts.info['resumed_from']:,} (checkpoint {args.checkpoint})")
    if counts.info.get("spilled_runs"):
        print(f"spilled        {counts.info['spilled_runs']} sorted runs merged")
    print(f"samples        {counts.n_samples:,} (seed {args.seed}, indices {args.start}..{args.start + n - 1})")
    if args.check:
        k = min(64, n)
        print("check          " + ("the numpy backend is the reference itself (nothing to compare)" if be.name == "numpy"
                                   else f"samples {args.start}..{args.start + k - 1} agree with the NumPy reference"))
    done_now = counts.n_samples - int(counts.info.get("resumed_from", 0) or 0)
    if counts.info.get("compiled", compile_s >= 0.5):  # only when kernels were compiled, not loaded
        print(f"compiling      {compile_s:.1f} s (kernels for this architecture; first run only, then cached)")
    count_s = float(counts.info.get("counting_s", run_s))
    print(f"samples/s      {done_now / max(count_s, 1e-9):,.0f}  ({count_s:.2f} s drawing and counting"
          + (f" {done_now:,} samples this run" if counts.info.get("resumed_from") else "")
          + f"; {dt:.2f} s in all)")
    if counts.info.get("finish_s", 0.0) >= 0.1:
        print(f"merging        {counts.info['finish_s']:.2f} s (final merge of the counts and the write)")
    if train is not None:
        lo, hi = _wilson(counts.n_accepted, counts.n_samples)
        print(f"accepted       {counts.n_accepted:,}  P(S) = {counts.n_accepted / counts.n_samples:.4g} "
              f"[{lo:.3g}, {hi:.3g}]  (train rows: {len(train[0])}, key covers {m - len(train[0])} test rows)")
    print(f"distinct       {counts.n_distinct:,} functions")
    top = counts.top(args.top)
    if top:
        w = max([len("key (hex, bit i = row i)")] + [len(t["key"]) for t in top])  # columns under their header
        print(f"\n{'rank':>4}  {'key (hex, bit i = row i)':<{w}}  {wording(counts.meta).quantity:>10}  {'95% interval':>23}  {'ones':>4}")
        for r, t in enumerate(top, 1):
            print(f"{r:>4}  {t['key']:<{w}}  {t['probability']:>10.5f}  "
                  f"[{t['lower']:.5f}, {t['upper']:.5f}]  {t['ones']:>4}")
    print(f"\ncounts file    {path}")
    if not args.no_plot:
        print(f"rank plot      {plot_rank(counts, os.path.join(args.out, 'rank.png'))}")
    return 0


def _dask_client(spec):
    spec = str(spec)
    if spec.startswith(("tcp://", "tls://")) or ":" in spec:
        try:
            from dask.distributed import Client
        except ImportError:
            raise ImportError('--dask needs dask.distributed, which is not installed: pip install "fastpoly[dask]"') from None
        return Client(spec)
    if spec == "local":
        return "local"
    try:
        n = int(spec)
    except ValueError:
        raise ValueError(f"--dask must be 'local', a number of workers or tcp://host:port, got {spec!r}") from None
    if n < 1:
        raise ValueError(f"--dask workers must be >= 1, got {n}")
    return n


def _wilson(k, n):
    lo, hi = wilson_interval(k, n)
    return float(lo), float(hi)
