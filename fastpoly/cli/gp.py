"""``fastpoly gp kernel|logp|posterior|sample``: the NNGP approximation from the command line.

Registered by :mod:`fastpoly.cli` through :func:`register`; importing this
module is light (SciPy is imported when a subcommand runs).
"""
from __future__ import annotations

import math
import os
import re
import time

import numpy as np

from fastpoly.activations import supported
from fastpoly.analysis.conditioning import parse_target
from fastpoly.analysis.wording import wording
from fastpoly.api import Interrupted, numba_compilations
from fastpoly.arch import MLP, boolean_inputs, parse_arch
from fastpoly.atomic import atomic_open, check_output_file
from fastpoly.cli.options import (
    ARCH_OPTIONS,
    RUN_OPTIONS,
    SHARED_DEFAULTS,
    SHARED_JOB_OPTIONS,
    SHARED_RESULT_OPTIONS,
    CommandSpec,
    apply_defaults,
    close_client,
    dask_client,
    inputs_from_args,
    mlp_from_args,
    report_interrupt,
    restore_resume_args,
    run_options,
)
from fastpoly.cli.sample import claim_out, parse_count
from fastpoly.counts import FunctionCounts
from fastpoly.keys import parse_key_text, unpack_bits
from fastpoly.model.inputs import all_boolean_inputs
from fastpoly.model.spec import architecture_from_dict, parse
from fastpoly.plan import inputs_digest

__all__ = ["add_parser", "register", "run"]

#: train-set options: not part of a GP draw (the prior)
_TRAIN_SET = ("train_size", "train", "target", "labels", "train_seed")


def _arch_options(p):
    p.add_argument("arch", nargs="?", help="architecture 'inputs-hidden...-1', e.g. 7-40-40-1, or a CNN such as "
                                           "8x8x1-c16k3-c16k3-1 (then --inputs: images (m, H, W, C) or flat rows)")
    p.add_argument("--activation", default="relu", help=f"one of {', '.join(supported('nngp'))} (default relu)")
    p.add_argument("--sigma-w", type=float, default=1.0, help="W ~ N(0, sigma_w^2/fan_in) (default 1)")
    p.add_argument("--sigma-b", type=float, default=1.0, help="b ~ N(0, sigma_b^2) (default 1)")
    p.add_argument("--bias-scaling", default="none", help="none (default) or fan_in")
    p.add_argument("--no-bias", action="store_true", help="networks without biases")
    p.add_argument("--centered", action="store_true", help="Boolean inputs in {-1,+1} instead of {0,1}")
    p.add_argument("--inputs", metavar="X.npy", help="input rows (m x n_inputs .npy) instead of all Boolean inputs")


def _orthant_options(p, default="tilting"):
    p.add_argument("--method", default=default, help=f"tilting, ep or mc (default {default})")
    p.add_argument("--samples", default=None, help="samples per estimate (tilting: 20000, mc: 100000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the estimator (default 0)")


def _train_options(p):
    p.add_argument("--target", help="target over all rows: 0/1 string (char i = row i), hex key, or a .npy of 0/1")
    p.add_argument("--train-size", type=int, default=0, help="random train rows (as 'fastpoly sample' picks them)")
    p.add_argument("--train-seed", type=int, default=0, help="seed choosing the train rows (default 0)")


def add_parser(subparsers):
    """Add ``fastpoly gp`` and its four subcommands to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "gp",
        help="infinite-width Gaussian-process (NNGP) approximation: kernel, log P(S), P_B^GP(f|S), GP sampling",
        description=(
            "The NNGP approximation of a random MLP or CNN (e.g. 8x8x1-c16k3-c16k3-1 with --inputs images): "
            "its kernel on the inputs, the marginal likelihood "
            "log P(S) of a train set (orthant probability by minimax tilting, EP or Monte Carlo) with the "
            "PAC-Bayes bound, the GP posterior log P_B^GP(f|S) of given functions, and GP function "
            "sampling into a counts file."
        ),
    )
    sub = p.add_subparsers(dest="gp_command", metavar="GP_COMMAND")
    k = sub.add_parser("kernel", help="compute the NNGP kernel and save it (.npy)",
                       description="Compute the NNGP kernel of ARCH on the inputs; print a summary.  ARCH may "
                                   "be a CNN such as 8x8x1-c16k3-c16k3-1 (--inputs: images (m, H, W, C) or "
                                   "flat rows).")
    _arch_options(k)
    k.add_argument("--out", help="write the kernel to this .npy file")
    k.add_argument("--force", action="store_true", help="replace an existing --out file")
    k.add_argument("--variant", default="fastpoly",
                   help="fastpoly (default) or nn-pacbayes: the anchor's CNN kernel (pooling ignored, "
                        "no 1/k^2 in the filter variance; docs/guide/cnn-gp.md)")
    lp = sub.add_parser("logp", help="log P(S) of a train set and the PAC-Bayes bound",
                        description="log P(S) = log P(sign f_S = y_S) under the NNGP, and the anchors' "
                                    "PAC-Bayes bound (delta = 2^-10).")
    _arch_options(lp)
    _train_options(lp)
    _orthant_options(lp)
    lp.add_argument("--delta", type=float, default=2.0**-10, help="PAC-Bayes confidence (default 2^-10)")
    po = sub.add_parser("posterior", help="log P_B^GP(f|S) of the top functions of a counts file (or given ones)",
                        description="GP posterior of functions on the test rows: the top functions of a "
                                    "conditioned counts file (--counts; its train set is used), or --functions "
                                    "with --target and --train-size.  Prints exact and GP values side by side.")
    _arch_options(po)
    _train_options(po)
    _orthant_options(po)
    po.add_argument("--counts", metavar="FILE", help="a conditioned counts file (from 'fastpoly sample --train-size')")
    po.add_argument("--top", type=int, default=10, help="how many of its most frequent functions (default 10)")
    po.add_argument("--functions", nargs="+", help="functions on the test rows: 0/1 strings or hex keys")
    po.add_argument("--out", help="write the table (tab-separated) to this file")
    po.add_argument("--force", action="store_true", help="replace an existing --out file")
    sa = sub.add_parser("sample", parents=[ARCH_OPTIONS, RUN_OPTIONS],
                        help="draw GP functions and count them (the infinite-width prior P(f))",
                        description="Draw g ~ N(0, K) with the project's Philox normals (stream 3) and count "
                                    "the sign keys; writes OUT/counts.npz. The run options are those of "
                                    "'fastpoly sample' (checkpoint, resume, memory budget, Dask...).")
    sa.add_argument("--samples", help="number of GP draws (default 1e5)")
    sa.add_argument("--top", type=int, help="how many functions to list (default 10)")
    p.set_defaults(func=run)
    p.set_defaults(_gp_parser=p)
    return p


#: the name :mod:`fastpoly.cli` calls
register = add_parser


def _is_cnn_spec(spec):
    """True for a string with an image input or spatial layers (``8x8x1-c16k3-1``), not ``7-40-40-1``."""
    return not re.fullmatch(r"[\d\s-]*", spec)


def _mlp(args, counts=None):
    """The architecture: ``ARCH`` with the options (an MLP, or a CNN's Architecture), or the counts file's."""
    if not args.arch:
        if counts is not None:
            return architecture_from_dict(counts.meta["arch"])
        raise ValueError("give an architecture such as 7-40-40-1 or 8x8x1-c16k3-c16k3-1")
    if _is_cnn_spec(args.arch):
        return parse(args.arch, activation=args.activation, sigma_w=args.sigma_w, sigma_b=args.sigma_b,
                     bias_scaling=args.bias_scaling, bias=not args.no_bias)
    n, hidden = parse_arch(args.arch)
    return MLP(n, hidden, activation=args.activation, sigma_w=args.sigma_w, sigma_b=args.sigma_b,
               bias_scaling=args.bias_scaling, bias=not args.no_bias)


def _image_shape(arch):
    """``(H, W, C)`` of an architecture with an image input, else None."""
    shape = tuple(getattr(arch, "input_shape", ()) or ())
    return shape if len(shape) == 3 else None


def _images_missing(arch, shape):
    return ValueError(f"{arch.spec} takes images: give them with --inputs X.npy ((m, {', '.join(map(str, shape))}) "
                      f"or flat rows (m, {arch.n_inputs}))")


def _load_npy(path, what):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {what} {path!r}: {e}") from None


def _inputs(args, mlp, counts=None):
    shape = _image_shape(mlp)
    if args.inputs:
        X = _load_npy(args.inputs, "--inputs")
        if shape is not None:  # images (m, H, W, C) or flat rows (m, H*W*C): checked here, one line
            if X.ndim == 4 and tuple(X.shape[1:]) != shape:
                raise ValueError(f"--inputs images must have shape (m, {', '.join(map(str, shape))}) for "
                                 f"{mlp.spec}, got {X.shape}")
            if X.ndim not in (2, 4) or (X.ndim == 2 and X.shape[1] != mlp.n_inputs) or X.shape[0] < 1:
                raise ValueError(f"--inputs must hold images (m, {', '.join(map(str, shape))}) or flat rows "
                                 f"(m, {mlp.n_inputs}) for {mlp.spec}, got {X.shape}")
            X = X.reshape(X.shape[0], -1)
        return X
    if shape is not None:
        raise _images_missing(mlp, shape)
    made = (counts.meta.get("inputs") or {}) if counts is not None else {}
    if made.get("made") == "boolean" and "centered" in made:  # recorded by the counts file
        X = all_boolean_inputs(mlp.n_inputs, "gp", centered=bool(made["centered"]))  # the one input rule
        if inputs_digest(X) == counts.meta.get("inputs_digest"):
            return X
    X = all_boolean_inputs(mlp.n_inputs, "gp", centered=args.centered)
    # files written before the inputs were recorded: try the other Boolean encoding
    if counts is not None and counts.meta.get("inputs_digest") not in (None, inputs_digest(X)):
        Xc = boolean_inputs(mlp.n_inputs, centered=not args.centered)
        if counts.meta.get("inputs_digest") == inputs_digest(Xc):
            return Xc
        raise ValueError("the counts file was sampled on other inputs; pass them with --inputs X.npy")
    return X


def _train(args, m):
    if not args.target and not args.train_size:
        return None
    if not args.target or not args.train_size:
        raise ValueError("a train set needs both --target and --train-size")
    if not 0 < args.train_size < m:
        raise ValueError(f"--train-size must be in [1, {m - 1}], got {args.train_size}")
    t = args.target
    if t.endswith(".npy"):
        target = parse_target(_load_npy(t, "--target"), m)
    else:
        target = unpack_bits(parse_key_text(t, m, "--target")[None, :], m)[0]
    rows = np.sort(np.random.default_rng(args.train_seed).choice(m, args.train_size, replace=False))
    return rows, target[rows]


def _n(args):
    return None if args.samples is None else parse_count(str(args.samples))


#: orthant methods of --method
METHODS = ("tilting", "ep", "mc")


def _check_orthant(args):
    """Refuse bad or ignored estimator options before any work: --method, --samples with ep."""
    if args.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    if args.method == "ep" and args.samples is not None:
        raise ValueError("--samples does not apply to --method ep (a deterministic approximation); drop it")
    _n(args)


def _cmd_kernel(args):
    from fastpoly.gp.kernels import kernel

    if args.out:
        check_output_file(args.out, [args.inputs], args.force, "kernel file (--out)")
    mlp = _mlp(args)
    X = _inputs(args, mlp)
    t0 = time.perf_counter()
    K = kernel(mlp, X, variant=args.variant)
    dt = time.perf_counter() - t0
    d = np.sqrt(np.diag(K))
    pos = d > 0
    C = K[np.ix_(pos, pos)] / np.outer(d[pos], d[pos])
    off = C[~np.eye(C.shape[0], dtype=bool)]
    ev = np.linalg.eigvalsh(K)
    print(f"architecture   {mlp.spec} ({args.activation}, sigma_w={float(args.sigma_w)}, "
          f"sigma_b={float(args.sigma_b)}, bias_scaling={args.bias_scaling}{', no bias' if args.no_bias else ''})")
    print(f"kernel         {K.shape[0]} x {K.shape[1]} float64 in {dt:.3f} s")
    print(f"variance       [{np.min(np.diag(K)):.6g}, {np.max(np.diag(K)):.6g}]"
          f"  zero-variance rows: {int(np.count_nonzero(~pos))}")
    if off.size:
        print(f"correlation    [{off.min():.6f}, {off.max():.6f}] off the diagonal")
    print(f"eigenvalues    [{ev[0]:.4g}, {ev[-1]:.4g}]")
    if args.out:
        with atomic_open(args.out, "wb") as fh:
            np.save(fh, K)
        print(f"kernel file    {args.out}")
    return 0


def _cmd_logp(args):
    from fastpoly.gp.bayes import log_marginal, pac_bayes_bound

    _check_orthant(args)
    if not (isinstance(args.delta, float) and 0 < args.delta < 1):
        raise ValueError(f"--delta must be in (0, 1), got {args.delta}")
    mlp = _mlp(args)
    X = _inputs(args, mlp)
    train = _train(args, X.shape[0])
    if train is None:
        raise ValueError("logp needs --target and --train-size")
    t0 = time.perf_counter()
    kw = {} if args.method == "ep" else {"n_samples": _n(args), "seed": args.seed}
    r = log_marginal(mlp, X, train, args.method, **kw)
    dt = time.perf_counter() - t0
    m = len(train[0])
    se = "" if r.stderr is None else f" +- {r.stderr:.3g}"
    print(f"architecture   {mlp.spec} ({mlp.activation}); train rows {m} of {X.shape[0]}")
    ub = r.diagnostics.get("upper_bound")
    if ub is not None:  # Monte Carlo without a hit: a bound, not an estimate
        conf = r.diagnostics.get("upper_bound_confidence", 0.95)
        print(f"log P(S)       < {math.log(ub):.4f}  (P(S) < {ub:.3g}, {conf:.0%} upper bound: 0 hits in "
              f"{r.diagnostics['n_samples']:,} Monte Carlo samples; method {r.method}, {dt:.2f} s)")
        print("PAC-Bayes      not available: it needs an estimate of P(S) (use --method tilting)")
    else:
        print(f"log P(S)       {r.log_p:.6f}{se}  (natural log; log10 = {r.log_p / math.log(10):.4f}; "
              f"method {r.method}, {dt:.2f} s)")
        print(f"PAC-Bayes      generalisation error <= {pac_bayes_bound(r.log_p, m, args.delta):.4f} "
              f"(delta = {args.delta:.4g})")
    if r.diagnostics.get("warning"):
        print(f"warning        {r.diagnostics['warning']}")
    return 0


def _cmd_posterior(args):
    from fastpoly.gp.bayes import posterior

    _check_orthant(args)
    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    if args.out:
        check_output_file(args.out, [args.inputs, args.counts], args.force, "table file (--out)")
    counts = FunctionCounts.load(args.counts) if args.counts else None
    mlp = _mlp(args, counts)
    X = _inputs(args, mlp, counts)
    kw = {} if args.method == "ep" else {"n_samples": _n(args)}
    if counts is not None:
        if not counts.conditioned:
            raise ValueError("--counts must be a conditioned counts file (sampled with --train-size/--target)")
        if wording(counts.meta).estimator == "gp_posterior":
            raise ValueError("--counts holds GP posterior pseudo-counts already; give a sampled (P_B) or trained "
                             "(P_SGD) counts file")
        if args.functions or args.target or args.train_size:
            raise ValueError("--counts brings its own train set and functions; do not add --functions/--target")
        if counts.n_distinct == 0:
            raise ValueError(f"{args.counts} holds no function ({counts.n_accepted} of {counts.n_samples:,} "
                             f"{wording(counts.meta).samples} counted): nothing to compare with the GP posterior")
        top = counts.top(args.top)
        funcs = [t["key"] for t in top]
        train = (np.asarray(counts.meta["train_rows"]), np.asarray(counts.meta["train_labels"]))
        table = posterior(mlp, X, train, funcs, args.method, seed=args.seed, **kw)
    else:
        train = _train(args, X.shape[0])
        if train is None or not args.functions:
            raise ValueError("give --counts FILE, or --functions with --target and --train-size")
        for f in args.functions:  # functions on the test rows, unambiguous (see parse_key_text)
            parse_key_text(f, X.shape[0] - len(train[0]), "--functions (on the test rows)")
        table = posterior(mlp, X, train, args.functions, args.method, seed=args.seed, **kw)
    print(f"architecture   {mlp.spec} ({mlp.activation}); train rows {len(table.meta['train_rows'])}, "
          f"test rows {table.n_key_bits}")
    se = "" if table.stderr_S is None else f" +- {table.stderr_S:.3g}"
    print(f"log P(S)       {table.log_p_S:.6f}{se}  (GP, method {table.method})")
    wd = wording(counts.meta) if counts is not None else None
    if counts is not None and wd is not None:
        n, k = counts.n_samples, counts.n_accepted
        if wd.p_s_applies:
            print(f"P(S) exact     {k / n:.4g}  (log {math.log(max(k, 1) / n):.4f}; {k:,} of {n:,} samples"
                  f"{'; no sample fits S: log P(S) <= this value' if k == 0 else ''})")
        else:
            print(f"counts file    {wd.description}; {k:,} {wd.accepted} of {n:,} {wd.samples}"
                  f" ({wd.p_s_note})")
    w = max(len(table.hex(i)) for i in range(len(table)))
    head = f"\n{'key (hex, bit i = i-th test row)':<{w}}  {'log P_B^GP':>11}  {'stderr':>8}"
    col = (wd.log_quantity + (" exact" if wd.p_s_applies else " (file)")) if wd is not None else ""
    print(head + (f"  {col:>17}  {'count':>7}" if counts is not None else ""))
    for i in range(len(table)):
        line = f"{table.hex(i):<{w}}  {table.log_p[i]:>11.4f}  {table.stderr[i]:>8.3g}"
        if counts is not None:
            c = counts.count(table.hex(i))
            line += f"  {math.log(c / counts.n_accepted):>17.4f}  {c:>7}"
        print(line)
    if args.out:
        table.save(args.out)
        print(f"\ntable          {args.out}")
    return 0


def _norm(k, v):
    if k == "samples":
        return parse_count(str(v))
    if k == "arch":
        return str(v).strip() if _is_cnn_spec(str(v)) else parse_arch(str(v))
    if k in ("sigma_w", "sigma_b"):
        return float(v)
    return v


#: ``fastpoly gp sample``: its job options (restored from a checkpoint on --resume) and their defaults
SAMPLE_SPEC = CommandSpec(
    name="gp sample", count="samples",
    defaults=dict(SHARED_DEFAULTS, samples="1e5", out="fastpoly-gp-out", top=10),
    job_options=tuple(k for k in SHARED_JOB_OPTIONS if k not in _TRAIN_SET) + ("samples", "top"),
    result_options=tuple(k for k in SHARED_RESULT_OPTIONS if k not in _TRAIN_SET) + ("samples",),
    normalize=_norm,
)


def _cmd_sample(args):
    from fastpoly.gp.sampling import sample

    if getattr(args, "resume", None):
        restore_resume_args(args, SAMPLE_SPEC)
    apply_defaults(args, SAMPLE_SPEC)
    if args.top < 0:
        raise ValueError(f"--top must be >= 0, got {args.top}")
    mlp = mlp_from_args(args, layers=True)  # an MLP or a CNN (8x8x1-c16k3-c16k3-1)
    shape = _image_shape(mlp)
    if shape is not None and not args.inputs:
        raise _images_missing(mlp, shape)
    X = inputs_from_args(args, mlp.n_inputs, shape)
    n = parse_count(str(args.samples))
    path = os.path.join(args.out, "counts.npz")
    client = dask_client(args.dask) if getattr(args, "dask", None) else None
    try:
        lock = claim_out(args.out, path, args.force, bool(getattr(args, "resume", None)), args.checkpoint)
        try:
            opts = run_options(args, SAMPLE_SPEC, n, path, client)
            # one draw first: compiles (or loads) the kernels, so that the rate below is of sampling only
            n0 = numba_compilations()
            t0 = time.perf_counter()
            sample(mlp, X, 1, seed=args.seed, backend=args.backend)
            compile_s, compiled = time.perf_counter() - t0, numba_compilations() > n0
            t0 = time.perf_counter()
            try:
                c = sample(mlp, X, seed=args.seed, backend=args.backend, options=opts)
            except Interrupted as e:
                return report_interrupt(args, SAMPLE_SPEC, e)
            dt = time.perf_counter() - t0
        finally:
            if lock is not None:
                lock.release()
    finally:
        close_client(args, client)
    g = c.meta["gp"]
    print(f"architecture   {mlp.spec} ({mlp.activation}), infinite width (NNGP)")
    print(f"factor         {g['factor']} (rank {g['rank']}, zero-variance rows {len(g['zero_variance_rows'])}"
          f"{', clipped eigenvalues ' + str(g['clipped_eigenvalues']) if 'clipped_eigenvalues' in g else ''})")
    if compiled:
        print(f"compiling      {compile_s:.1f} s (GP sampling kernels; first run only, then cached)")
    if c.info.get("resumed_from"):
        print(f"resumed        from draw {c.info['resumed_from']:,} (checkpoint {args.checkpoint})")
    print(f"samples        {n:,} (seed {args.seed}, stream {g['stream']}) in {dt:.2f} s on {c.info['backend']}")
    print(f"distinct       {c.n_distinct:,} functions")
    for r, t in enumerate(c.top(args.top), 1):
        print(f"{r:>4}  {t['key']}  {t['probability']:.5f}  [{t['lower']:.5f}, {t['upper']:.5f}]  {t['ones']:>4}")
    print(f"counts file    {path}")
    return 0


_COMMANDS = {"kernel": _cmd_kernel, "logp": _cmd_logp, "posterior": _cmd_posterior, "sample": _cmd_sample}


def run(args):
    """Run ``fastpoly gp SUBCOMMAND`` (returns the exit code; ``ValueError`` for bad input)."""
    cmd = _COMMANDS.get(getattr(args, "gp_command", None))
    if cmd is None:
        args._gp_parser.print_help()
        return 2
    try:
        return cmd(args)
    except NotImplementedError as e:  # e.g. max pooling: no closed NNGP map (one line, exit 2)
        raise ValueError(str(e)) from None
