"""``fastpoly analyze`` and the research helpers.

``fastpoly analyze`` prints the summary table of a counts file; ``fastpoly condition``, ``fastpoly merge`` and ``fastpoly anchors``.
"""
from __future__ import annotations

import os

import numpy as np

from fastpoly.analysis.blocks import DEFAULT_BLOCK
from fastpoly.analysis.complexity import complexity_table, resolve_analysis_backend
from fastpoly.analysis.conditioning import parse_target
from fastpoly.analysis.histograms import full_keys_block, summarize
from fastpoly.analysis.stats import interval as binomial_interval
from fastpoly.analysis.wording import few_points_caveat, wording
from fastpoly.atomic import check_output_file, check_writable
from fastpoly.backends import VALID_NAMES
from fastpoly.cli.sample import parse_target_arg
from fastpoly.counts.anchors import counts_from_anchor_file, write_count_strings
from fastpoly.counts.store import FunctionCounts, merge_files
from fastpoly.counts.table import write_table

__all__ = ["register", "analyze", "run_analyze", "run_condition", "run_merge", "run_anchors"]


def register(sub):
    p = sub.add_parser(
        "analyze",
        help="summary table of a counts file: P(f) with intervals, K_LZ, entropy, T, CSR, P(S), errors",
        description=(
            "Print what a counts file says: the run (architecture, seed, index ranges), samples, "
            "distinct functions, for conditioned runs the marginal likelihood P(S) with its interval "
            "and the posterior mean generalisation error, the fitted simplicity-bias bound "
            "log10 P <= a + b K_LZ, and the most frequent functions with their probability, 95% "
            "interval, K_LZ, entropy, T (number of ones), critical sample ratio and first sample index."
        ),
    )
    p.add_argument("counts_file", help="a counts file (counts.npz) written by fastpoly sample")
    p.add_argument("--top", type=int, default=20, help="functions to list (default 20)")
    p.add_argument("--interval", default="wilson", choices=["wilson", "clopper-pearson"],
                   help="binomial interval (default wilson)")
    p.add_argument("--order", default="rows", choices=["rows", "msb"],
                   help="string order for K_LZ: rows (fastpoly / C++ anchor, default) or msb (Python anchors)")
    p.add_argument("--backend", default="auto", choices=VALID_NAMES,
                   help="what computes K_LZ, T and CSR of the stored functions: numba, numpy (reference), cupy "
                        "(kernels/klz.cu on the GPU); auto = numba if importable, else numpy (default auto)")
    p.add_argument("--table", "--csv", dest="csv", metavar="PATH",
                   help="also write one row per function to PATH (CSV, most frequent first; streamed, "
                        "written atomically)")
    p.add_argument("--min-count", type=int, default=1, metavar="K",
                   help="the --table lists only functions seen at least K times (default 1: all)")
    p.set_defaults(func=run_analyze)

    c = sub.add_parser(
        "condition",
        help="condition a prior counts file on a train set offline (same result as online rejection)",
        description=(
            "Keep the functions of COUNTS_FILE that agree with TARGET on the train rows, drop those rows "
            "from the keys and write the posterior counts. With the same --train-size/--train-seed/"
            "--target as 'fastpoly sample' the file is identical to the online run's."
        ),
    )
    c.add_argument("counts_file")
    c.add_argument("--target", required=True,
                   help="target function: 0/1 string (char i = row i) or hex key (bit i = row i)")
    c.add_argument("--train-size", type=int, help="number of random train rows")
    c.add_argument("--train-seed", type=int, default=0, help="seed choosing the train rows (default 0)")
    c.add_argument("--train-rows", help="explicit comma-separated train rows instead of --train-size")
    c.add_argument("--out", required=True, help="output counts file")
    c.add_argument("--compress", action="store_true", help="write the posterior as a compressed counts file (format 3)")
    c.add_argument("--force", action="store_true", help="replace an existing --out file")
    c.set_defaults(func=run_condition)

    m = sub.add_parser(
        "merge",
        help="merge counts files of compatible runs (bounded memory)",
        description="Merge counts files of the same architecture, inputs and train set whose index ranges "
                    "do not overlap, with a bounded-memory k-way merge.",
    )
    m.add_argument("counts_files", nargs="+")
    m.add_argument("--out", required=True)
    m.add_argument("--memory-budget", default="1GB", help="memory for the merge (default 1GB)")
    m.add_argument("--compress", action="store_true",
                   help="write a compressed counts file (format 3: about half the size, decoded block by block)")
    m.add_argument("--force", action="store_true", help="replace an existing --out file (never an input)")
    m.set_defaults(func=run_merge)

    a = sub.add_parser(
        "anchors",
        help="convert between counts files and the anchors' 'count string' text files",
        description=(
            "import: read a 'count string' file (sort | uniq -c output) into a counts file; export: write "
            "a counts file as 'count string' lines. Conventions: cpp (C++ anchor, reversed strings), "
            "python (Python anchors, MSB-first inputs), rows (fastpoly, character i = row i)."
        ),
    )
    a.add_argument("direction", choices=["import", "export"])
    a.add_argument("path", help="import: the text file; export: the counts file")
    a.add_argument("--arch", help="architecture of the anchor run (import), e.g. 7-40-40-1")
    a.add_argument("--convention", default="cpp", choices=["cpp", "python", "rows"])
    a.add_argument("--out", required=True, help="output path")
    a.add_argument("--force", action="store_true", help="replace an existing --out file")
    a.set_defaults(func=run_anchors)
    return p


def _fmt_arch(meta):
    a = meta.get("arch") or {}
    w = a.get("widths")
    s = "-".join(map(str, w)) if w else "?"
    return (f"{s}  ({a.get('activation')}, {a.get('weights')}, sigma_w={a.get('sigma_w')}, "
            f"sigma_b={a.get('sigma_b')}, bias_scaling={a.get('bias_scaling')}"
            f"{', no bias' if a.get('bias') is False else ''})")


def analyze(counts, top=20, interval="wilson", order="rows", block=DEFAULT_BLOCK, backend="auto"):
    """The analysis behind ``fastpoly analyze`` as a dict (summary values and the top table).

    One streaming pass over the (memory-mapped) counts builds exact histograms
    (:func:`fastpoly.analysis.histograms.summarize`, K_LZ, T and CSR on ``backend``); memory is one
    block of keys, whatever the number of functions.
    """
    c = counts
    out = {"n_samples": c.n_samples, "n_accepted": c.n_accepted, "n_distinct": c.n_distinct}
    if c.n_samples:
        lo, hi = binomial_interval(c.n_accepted, c.n_samples, 0.95, interval)
        out["p_S"] = (c.n_accepted / c.n_samples, float(lo), float(hi))
    if c.n_distinct == 0:
        out["singletons"] = 0
        out["top"] = []
        return out
    sm = summarize(c, order=order, top=max(0, int(top)), block=block, backend=backend)
    out["singletons"] = sm.singletons()
    out.update(sm.means())
    rho = sm.spearman()
    if rho is not None:
        out["spearman_logp_klz"] = rho
    out["bound"] = sm.bound()
    out["bound_basis"] = sm.bound_support()[0]
    if sm.error_weight is not None:
        out["mean_error"] = sm.mean_error()
    out["top"] = _top_rows(c, sm.top, interval, order, with_error=sm.error_weight is not None)
    return out


def _top_rows(c, idx, interval, order, with_error):
    """The rows of the top table for the functions ``idx`` (values as in the full table)."""
    if idx.size == 0:
        return []
    keys, cnt, first = c.rows(idx)
    n = c.n_accepted
    p = cnt / n if n else np.full(idx.size, np.nan)
    plo, phi = binomial_interval(cnt, n, 0.95, interval)
    cx = complexity_table(full_keys_block(c, keys), c.n_rows, boolean=c.is_boolean(), order=order)
    err = None
    if with_error:
        sub = FunctionCounts(keys, cnt, first, c.n_samples, c.n_accepted, c.meta)
        err = sub.generalization_error()
    rows = []
    for j in range(idx.size):
        r = {
            "key": c.hex(int(idx[j])), "count": int(cnt[j]), "probability": float(p[j]),
            "lower": float(plo[j]), "upper": float(phi[j]), "klz": float(cx["klz"][j]),
            "entropy": float(cx["entropy"][j]), "ones": int(cx["ones"][j]),
            "first_index": int(first[j]),
        }
        if "csr" in cx:
            r["csr"] = float(cx["csr"][j])
        if err is not None:
            r["error"] = float(err[j])
        rows.append(r)
    return rows


def run_analyze(args):
    if args.top < 0:
        raise ValueError("--top must be >= 0")
    if args.csv:
        check_writable(args.csv, "CSV file (--csv)")
    if args.min_count < 1:
        raise ValueError("--min-count must be >= 1")
    resolve_analysis_backend(args.backend)  # an unavailable backend fails before the file is read
    c = FunctionCounts.load(args.counts_file, mmap=True)
    a = analyze(c, args.top, args.interval, args.order, backend=args.backend)
    meta = c.meta
    ival = "Wilson" if args.interval == "wilson" else "Clopper-Pearson"
    print(f"counts file    {args.counts_file}  (checksum verified)")
    print(f"architecture   {_fmt_arch(meta)}")
    rng = meta.get("ranges") or meta.get("ranges_by_seed")
    print(f"seed           {meta.get('seed')}   index ranges {rng}")
    print(f"inputs         {c.n_rows} rows{' (all Boolean inputs)' if c.is_boolean() else ''}"
          f"{'; key covers ' + str(c.n_key_bits) + ' test rows' if c.conditioned else ''}")
    wd = wording(meta)
    print(f"estimator      {wd.description}")
    print(f"{wd.samples:<14} {c.n_samples:,}")
    if c.conditioned or wd.estimator == "psgd":
        ps, lo, hi = a["p_S"]
        if wd.p_s_applies:
            print(f"accepted       {c.n_accepted:,}   P(S) = {ps:.4g}  95% {ival} [{lo:.4g}, {hi:.4g}]"
                  f"   (train set: {len(meta['train_rows'])} rows)")
            if c.n_accepted == 0:
                print(f"               no sample fits the train set: P(S) <= {hi:.3g} (95% {ival} upper bound)")
        elif wd.estimator == "psgd":
            print(f"{wd.accepted:<14} {c.n_accepted:,}   {wd.rate_name} = {ps:.4g}  95% {ival} [{lo:.4g}, {hi:.4g}]"
                  f"   (train set: {len(meta.get('train_rows') or [])} rows; {wd.p_s_note})")
        else:
            print(f"{wd.accepted:<14} {c.n_accepted:,}   ({wd.p_s_note})")
    print(f"distinct       {c.n_distinct:,} functions ({a['singletons']:,} seen once)")
    if c.n_distinct:
        print(f"{wd.means_under}:  K_LZ {a['mean_klz']:.2f}   "
              f"entropy {a['mean_entropy']:.3f}   T {a['mean_ones']:.2f}"
              + (f"   CSR {a['mean_csr']:.4f}" if "mean_csr" in a else ""))
        if "spearman_logp_klz" in a:
            print(f"Spearman(log {wd.quantity}, K_LZ) = {a['spearman_logp_klz']:.3f}"
                  f"{few_points_caveat(c.n_distinct)}")
        aa, bb = a["bound"]
        if np.isfinite(aa):
            print(f"upper bound    log10 {wd.quantity} <= {aa:.3f} {bb:+.4f} K_LZ   ({a['bound_basis']}; "
                  f"K_LZ order {args.order})")
        if "mean_error" in a:
            print(f"{wd.mean_error}  {a['mean_error']:.4f}   (target {meta['target']})")
    if a["top"]:
        w = max([len("key (hex, bit i = row i)")] + [len(r["key"]) for r in a["top"]])  # columns under their header
        has_csr = "csr" in a["top"][0]
        has_err = "error" in a["top"][0]
        qw = max(10, len(wd.quantity))
        head = (f"\n{'rank':>4}  {'key (hex, bit i = row i)':<{w}}  {wd.quantity:>{qw}}  {'95% interval':>23}  "
                f"{'K_LZ':>6}  {'H':>5}  {'T':>4}" + ("  {:>6}".format("CSR") if has_csr else "")
                + ("  {:>6}".format("error") if has_err else "") + f"  {'first index':>12}")
        print(head)
        for k, r in enumerate(a["top"], 1):
            line = (f"{k:>4}  {r['key']:<{w}}  {r['probability']:>{qw}.6f}  [{r['lower']:.6f}, {r['upper']:.6f}]"
                    f"  {r['klz']:>6.1f}  {r['entropy']:>5.3f}  {r['ones']:>4}")
            if has_csr:
                line += f"  {r['csr']:>6.4f}"
            if has_err:
                line += f"  {r['error']:>6.4f}"
            line += f"  {r['first_index']:>12}"
            print(line)
    if args.csv:
        n = write_table(c, args.csv, args.interval, args.order, min_count=args.min_count)
        print(f"\ntable          {args.csv}" + (f"  ({n:,} functions seen >= {args.min_count} times)"
                                                 if args.min_count > 1 else ""))
    return 0


def _train_rows(args, m):
    if args.train_rows and args.train_size:
        raise ValueError("give the train set once: --train-rows or --train-size, not both")
    if args.train_rows:
        try:
            rows = np.asarray([int(v) for v in args.train_rows.split(",") if v.strip()], np.int64)
        except (ValueError, OverflowError):
            raise ValueError(f"--train-rows must be comma-separated integers, got {args.train_rows!r}") from None
        bad = rows[(rows < 0) | (rows >= m)]
        if bad.size:
            raise ValueError(f"--train-rows must be rows in [0, {m - 1}] of the counts file, got {bad.tolist()[:5]}")
        return rows
    if not args.train_size:
        raise ValueError("give --train-size (random rows, as fastpoly sample chooses them) or --train-rows")
    if not 0 < args.train_size < m:
        raise ValueError(f"--train-size must be in [1, {m - 1}], got {args.train_size}")
    # the same choice as 'fastpoly sample --train-size --train-seed'
    return np.sort(np.random.default_rng(args.train_seed).choice(m, args.train_size, replace=False))


def run_condition(args):
    check_output_file(args.out, [args.counts_file], args.force)
    c = FunctionCounts.load(args.counts_file, mmap=True)  # streamed block by block (any size, either format)
    wd = wording(c.meta)
    if wd.estimator not in ("prior", "posterior"):
        raise ValueError(f"condition rejects samples of a prior; {args.counts_file} holds {wd.description}")
    tgt = parse_target_arg(args.target, c.n_rows)
    rows = _train_rows(args, c.n_rows)
    post = c.condition(rows, target=parse_target(tgt, c.n_rows))
    lo, hi = post.posterior()["p_S_interval"]
    post.save(args.out, compress=args.compress)
    print(f"train rows     {len(rows)}   accepted {post.n_accepted:,} of {post.n_samples:,}   "
          f"P(S) = {post.n_accepted / post.n_samples:.4g} [{lo:.3g}, {hi:.3g}]")
    if post.n_accepted == 0:
        print(f"no function    none of the {post.n_samples:,} samples fits the train set: P(S) <= {hi:.3g} "
              "(95% Wilson upper bound); the posterior file is empty")
    else:
        print(f"distinct       {post.n_distinct:,} functions consistent with the train set")
    print(f"wrote {args.out}")
    return 0


def run_merge(args):
    check_output_file(args.out, args.counts_files, args.force)
    r = merge_files(args.counts_files, args.out, memory_budget=args.memory_budget, compress=args.compress)
    print(f"merged {len(args.counts_files)} files: {r.n_samples:,} samples, {r.n_distinct:,} distinct functions")
    print(f"wrote {args.out}")
    return 0


def run_anchors(args):
    check_output_file(args.out, [args.path], args.force)
    if args.direction == "import":
        if not args.arch:
            raise ValueError("anchors import needs --arch (e.g. 7-40-40-1)")
        c = counts_from_anchor_file(args.path, args.arch, args.convention)
        c.save(args.out)
        print(f"read {c.n_distinct:,} functions ({c.n_samples:,} samples); wrote {args.out}")
    else:
        c = FunctionCounts.load(args.path)
        write_count_strings(c, args.out, args.convention)
        print(f"wrote {c.n_distinct:,} lines to {os.fspath(args.out)}")
    return 0
