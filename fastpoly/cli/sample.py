"""``fastpoly sample``: the main job (prior or posterior over Boolean functions of a random MLP)."""
from __future__ import annotations

import os
import time

import numpy as np

from fastpoly.analysis.figures import plot_rank
from fastpoly.analysis.stats import wilson_interval
from fastpoly.api import Interrupted, sample
from fastpoly.arch import parse_arch
from fastpoly.atomic import FolderLock, check_writable_folder
from fastpoly.backends import get_backend
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
from fastpoly.keys import hex_to_key, key_to_hex, pack_bits, unpack_bits
from fastpoly.sgd.anchor import parse_train_spec

__all__ = ["register", "run_sample", "parse_count", "claim_out", "train_set_from_args"]


def parse_count(text):
    """Parse a sample count such as ``1e6``, ``250000`` or ``1_000_000`` (positive integer)."""
    try:
        v = float(text.replace("_", ""))
    except ValueError:
        raise ValueError(f"--samples must be a positive integer (e.g. 1e6), got {text!r}") from None
    if not np.isfinite(v) or v != int(v) or v < 1:
        raise ValueError(f"--samples must be a positive integer (e.g. 1e6), got {text!r}")
    return int(v)


def parse_target_arg(text, m):
    t = text.strip()
    if len(t) == m and set(t) <= {"0", "1"}:
        return np.frombuffer(t.encode(), np.uint8) - ord("0")
    digits = (m + 3) // 4
    forms = (f"a {m}-character 0/1 string (character i = row i) or a hex key of at most {digits} digits "
             f"(bit i = row i)")
    if t and set(t) <= {"0", "1"} and len(t) > digits:
        raise ValueError(f"--target must be {forms}; got a 0/1 string of {len(t)} characters")
    try:
        key = hex_to_key(t, m)
    except ValueError:
        raise ValueError(f"--target must be {forms}, got {text!r}") from None
    if len(t.lower().removeprefix("0x")) > digits:
        raise ValueError(f"--target must be {forms}; got a hex key of {len(t.lower().removeprefix('0x'))} digits")
    return unpack_bits(key[None, :], m)[0]


def register(sub):
    p = sub.add_parser(
        "sample",
        parents=[ARCH_OPTIONS, TRAIN_OPTIONS, RUN_OPTIONS],
        help="sample random networks and count the Boolean functions they compute (the main job)",
        description=(
            "Draw random networks of architecture ARCH (e.g. 7-40-40-1: 7 inputs, two hidden layers "
            "of 40, one output), evaluate each on all Boolean inputs, and count exactly how often each "
            "function appears (the prior P(f)); with --train-size and --target, keep only networks "
            "that fit the target on a random train set (the posterior P_B(f|S)). Prints backend, "
            "samples/s, distinct functions and the top 10; writes counts.npz and rank.png to --out."
        ),
    )
    # the job's options default to None (see SPEC.defaults) so that --resume can tell what was given
    p.add_argument("--samples", help="number of networks to draw (default 1e6)")
    p.add_argument("--top", type=int, help="how many functions to list (default 10)")
    p.add_argument("--no-plot", action="store_true", default=None, help="do not draw the rank-frequency plot")
    p.add_argument("--check", action="store_true", help="check the first 64 samples against the NumPy reference")
    p.set_defaults(func=run_sample)
    return p


def _norm(k, v):
    """An option's value in a comparable form (``1e6`` == ``1000000``, ``7-40-1`` == ``7 - 40 - 1``)."""
    if k == "samples":
        return parse_count(str(v))
    if k == "arch":
        return parse_arch(str(v))
    if k in ("sigma_w", "sigma_b"):
        return float(v)
    if k == "target":
        return str(v).strip().lower().removeprefix("0x")
    return v


#: ``fastpoly sample``: its job options (restored from a checkpoint on --resume) and their defaults
SPEC = CommandSpec(
    name="sample", count="samples",
    defaults=dict(SHARED_DEFAULTS, samples="1e6", out="fastpoly-out", top=10, no_plot=False),
    job_options=SHARED_JOB_OPTIONS + ("samples", "top", "no_plot"),
    result_options=SHARED_RESULT_OPTIONS + ("samples",),
    normalize=_norm,
)


def _check_options(args):
    """Options that only the command knows (the run options are validated by RunOptions)."""
    if args.top < 0:
        raise ValueError(f"--top must be >= 0, got {args.top}")


def claim_out(out, path, force=False, resume=False, checkpoint=None):
    """Create the ``--out`` folder, check it is writable and lock it for this run.

    Refuses to replace ``path`` (the result of an earlier run) unless ``force`` or ``resume``;
    returns the :class:`~fastpoly.atomic.FolderLock` to release when the run ends (None when
    the folder is the checkpoint folder, whose own lock covers it).  Used by every command that
    writes a result folder (``sample``, ``train``, ``gp sample``).
    """
    check_writable_folder(out, "output folder (--out)")
    same = checkpoint and os.path.realpath(checkpoint) == os.path.realpath(out)
    lock = None if same else FolderLock(out, "output folder (--out)").acquire()
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
        if target is None:
            if not args.target:
                raise ValueError("--train ROWS needs --target")
            target = parse_target_arg(args.target, m)
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
        restore_resume_args(args, SPEC)
    apply_defaults(args, SPEC)
    _check_options(args)
    n = parse_count(str(args.samples))
    mlp = mlp_from_args(args, layers=True)
    X = inputs_from_args(args, mlp.n_inputs, mlp.input_shape)
    m = X.shape[0]
    extra_args = SPEC.extra(args)
    labels_as_target(args, m)
    rows, target = train_set_from_args(args, m)
    train = None if rows is None else (rows, target[rows])
    client = None
    if getattr(args, "dask", None):
        client = dask_client(args.dask)
        be = None  # each worker resolves args.backend itself
    else:
        be = get_backend(args.backend)
    path = os.path.join(args.out, "counts.npz")
    try:
        lock = _claim_out(args, path)
        try:
            opts = run_options(args, SPEC, n, path, client, extra=extra_args)
            return _run_and_report(args, mlp, X, n, train, target, be, path, opts)
        finally:
            if lock is not None:
                lock.release()
    finally:
        close_client(args, client)


def _run_and_report(args, mlp, X, n, train, target, be, path, opts):
    m = X.shape[0]
    annotations = None
    if train is not None:
        annotations = {"target": key_to_hex(pack_bits(target.astype(bool)), m)}
    t0 = time.perf_counter()
    try:
        counts = sample(mlp, X, seed=args.seed, backend=be if be is not None else args.backend, train=train,
                        annotations=annotations, options=opts)
    except Interrupted as e:
        return report_interrupt(args, SPEC, e)
    dt = time.perf_counter() - t0
    compile_s = float(counts.info.get("compile_s", 0.0) or 0.0)
    run_s = float(counts.info.get("elapsed_s", dt))
    ini = next(x.init for x in mlp.layers if hasattr(x, "init"))
    print(f"architecture   {mlp.spec}  ({mlp.activation}, {mlp.weights}, sigma_w={ini.sigma_w}, "
          f"sigma_b={ini.sigma_b}, bias_scaling={ini.bias_scaling}{', no bias' if not ini.bias else ''})")
    if be is not None:
        print(f"backend        {be.describe()}")
    else:
        print(f"backend        {counts.info.get('backend')} on {counts.info.get('n_workers')} Dask workers")
    if counts.info.get("resumed_from"):
        print(f"resumed        from sample {counts.info['resumed_from']:,} (checkpoint {args.checkpoint})")
    if counts.info.get("spilled_runs"):
        print(f"spilled        {counts.info['spilled_runs']} sorted runs merged")
    print(f"samples        {counts.n_samples:,} (seed {args.seed}, indices {args.start}..{args.start + n - 1})")
    done_now = counts.n_samples - int(counts.info.get("resumed_from", 0) or 0)
    if compile_s >= 0.5:
        print(f"compiling      {compile_s:.1f} s (kernels for this architecture; first run only, then cached)")
    print(f"samples/s      {done_now / run_s:,.0f}  ({run_s:.2f} s drawing and counting; {dt:.2f} s in all)")
    if train is not None:
        lo, hi = _wilson(counts.n_accepted, counts.n_samples)
        print(f"accepted       {counts.n_accepted:,}  P(S) = {counts.n_accepted / counts.n_samples:.4g} "
              f"[{lo:.3g}, {hi:.3g}]  (train rows: {len(train[0])}, key covers {m - len(train[0])} test rows)")
    print(f"distinct       {counts.n_distinct:,} functions")
    top = counts.top(args.top)
    if top:
        w = max(len(t["key"]) for t in top)
        print(f"\n{'rank':>4}  {'key (hex, bit i = row i)':<{w}}  {'P(f)':>10}  {'95% interval':>23}  {'ones':>4}")
        for r, t in enumerate(top, 1):
            print(f"{r:>4}  {t['key']:<{w}}  {t['probability']:>10.5f}  "
                  f"[{t['lower']:.5f}, {t['upper']:.5f}]  {t['ones']:>4}")
    print(f"\ncounts file    {path}")
    if not args.no_plot:
        print(f"rank plot      {plot_rank(counts, os.path.join(args.out, 'rank.png'))}")
    return 0


def _wilson(k, n):
    lo, hi = wilson_interval(k, n)
    return float(lo), float(hi)
