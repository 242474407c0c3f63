"""The ``fastpoly`` command line: ``sample`` (the main job), ``compile``, ``plot``, ``analyze``, ``backends``.

Subcommands live in small modules that each provide ``register(subparsers)``;
this module only assembles them.  Any ``ValueError`` raised by the library
becomes a one-line error message and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from fastpoly.backends import backends
from fastpoly.counts import FunctionCounts
from fastpoly.version import __version__

__all__ = ["main", "build_parser"]

#: subcommand modules, each with ``register(subparsers)``; missing optional ones are skipped
SUBCOMMAND_MODULES = (
    "fastpoly.cli.sample",
    "fastpoly.cli.poly",
    "fastpoly.cli.analysis",
    "fastpoly.cli.gp",
    "fastpoly.cli.sgd",
)

#: ``fastpoly plot KIND``: kind -> ("module:function", needs a counts file, help)
PLOTS = {
    "gate-error": ("fastpoly.poly.plots:plot_gate_error", False,
                   "error vs lambda of the multiplication gate (float32 and float64)"),
    "shallow-vs-deep": ("fastpoly.poly.plots:plot_shallow_vs_deep", False,
                        "hidden neurons of shallow vs tree products, n = 2..20"),
    "rank": ("fastpoly.analysis.figures:plot_rank", True, "rank-frequency of a counts file (log-log, Zipf line)"),
    "complexity": ("fastpoly.analysis.figures:plot_complexity", True, "P(f) vs K_LZ with an upper-bound fit"),
    "ones": ("fastpoly.analysis.figures:plot_ones", True, "histogram of P(T), T = number of ones"),
    "error": ("fastpoly.analysis.figures:plot_error", True, "generalisation-error histogram (conditioned runs)"),
    "compare": ("fastpoly.cli.sgd:plot_compare_files", 2,
                "log-log scatter of two counts over the same test rows (P_SGD vs P_B), and a table"),
}


def _resolve(target):
    mod, func = target.split(":")
    return getattr(importlib.import_module(mod), func)


def _cmd_plot(args):
    target, needs_counts, _ = PLOTS[args.kind]
    try:
        func = _resolve(target)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"plot {args.kind!r} is not available in this build ({e})") from None
    if needs_counts == 2:
        if not (args.counts_file and args.counts_file_b):
            raise ValueError(f"plot {args.kind} needs two counts files")
        out = func(args.counts_file, args.counts_file_b, args.out)
    elif needs_counts:
        if not args.counts_file:
            raise ValueError(f"plot {args.kind} needs a COUNTS_FILE argument")
        counts = FunctionCounts.load(args.counts_file, mmap=True)
        out = func(counts, args.out) if args.out else func(counts)
    else:
        if args.counts_file:
            raise ValueError(f"plot {args.kind} takes no counts file")
        out = func(args.out) if args.out else func()
    for p in out if isinstance(out, (list, tuple)) else [out]:
        print(f"wrote {p}")
    return 0


def _cmd_backends(args):
    rep = backends()
    auto = rep.pop("auto")
    for name, r in rep.items():
        state = "available" if r["available"] else f"unavailable: {r['reason']}"
        print(f"{name:6s} {state}{'   <- auto' if name == auto else ''}")
    return 0


def build_parser():
    """The argparse parser with every registered subcommand."""
    p = argparse.ArgumentParser(
        prog="fastpoly",
        description=(
            "fastpoly: exact, reproducible sampling of random neural networks (prior P(f) and "
            "posterior P_B(f|S) over Boolean functions) and compilation of polynomials into "
            "Lin-Tegmark-Rolnick gate networks."
        ),
        epilog="Run 'fastpoly COMMAND --help' for the options of each command.",
    )
    p.add_argument("--version", action="version", version=f"fastpoly {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for modname in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError as e:
            if e.name and modname.startswith(e.name):
                continue  # optional subcommand module not in this build
            raise
        mod.register(sub)
    pp = sub.add_parser(
        "plot",
        help="draw a figure (PNG or PDF by the --out suffix)",
        description="Draw a figure. Kinds: "
        + "; ".join(f"{k}: {v[2]}" for k, v in PLOTS.items()),
    )
    pp.add_argument("kind", choices=sorted(PLOTS), help="which figure")
    pp.add_argument("counts_file", nargs="?", help="counts file (for rank, complexity, ones, error)")
    pp.add_argument("counts_file_b", nargs="?", help="second counts file (for compare)")
    pp.add_argument("--out", help="output path (.png or .pdf); default: a name in the current folder")
    pp.set_defaults(func=_cmd_plot)
    pb = sub.add_parser("backends", help="list the backends and whether they can run here",
                        description="List the backends and why each is or is not available.")
    pb.set_defaults(func=_cmd_backends)
    return p


def main(argv=None):
    """Entry point of the ``fastpoly`` command (returns the exit code)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as e:
        print(f"fastpoly {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
