"""The ``fastpoly`` command line: ``sample`` (the main job), ``compile``, ``plot``, ``analyze``, ``backends``, ``clean``.

Subcommands live in small modules that each provide ``register(subparsers)``;
this module only assembles them and keeps the CLI contract: every error a user (or the machine)
can fix -- a bad option, an unreadable or unwritable file, a full disk, a backend or optional
package that is missing, a job too large for memory -- is **one line on stderr and exit code 2**,
never a traceback (set ``FASTPOLY_DEBUG=1`` to see one).  SIGINT, SIGTERM and SIGHUP stop a
command with exit code 128 + signal (a checkpointed ``sample``, ``train`` or ``gp sample`` saves its
checkpoint first).
"""
from __future__ import annotations

import argparse
import errno
import importlib
import inspect
import os
import signal
import sys
import threading
from typing import Any

from fastpoly.analysis.complexity import resolve_analysis_backend
from fastpoly.api import STOP_SIGNALS, Interrupted
from fastpoly.atomic import check_output_file, remove_stale_temporaries
from fastpoly.backends import VALID_NAMES, BackendUnavailable, backends
from fastpoly.counts import FunctionCounts
from fastpoly.plotting import check_figure_path
from fastpoly.version import __version__

__all__ = ["main", "build_parser", "USER_ERRORS", "error_message"]

#: exception classes reported as one line with exit code 2
USER_ERRORS = (ValueError, OSError, BackendUnavailable, MemoryError, OverflowError, ImportError)

#: subcommand modules, each with ``register(subparsers)``; missing optional ones are skipped
SUBCOMMAND_MODULES = (
    "fastpoly.cli.sample",
    "fastpoly.cli.poly",
    "fastpoly.cli.analysis",
    "fastpoly.cli.gp",
    "fastpoly.cli.sgd",
    "fastpoly.cli.data",
    "fastpoly.cli.experiment",
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
    if args.backend != "auto" and not (needs_counts is True and "backend" in inspect.signature(func).parameters):
        raise ValueError(f"plot {args.kind} takes no --backend (it computes no K_LZ)")
    if needs_counts != 2:  # the one overwrite policy (compare checks its figure and its table itself)
        params = inspect.signature(func).parameters
        default = next((params[k].default for k in ("out", "path") if k in params), None)
        out_path = args.out or default
        if out_path:
            check_figure_path(out_path)
            inputs = [args.counts_file] if args.counts_file else []
            check_output_file(out_path, inputs, args.force, "figure (--out)")
    if needs_counts == 2:
        if not (args.counts_file and args.counts_file_b):
            raise ValueError(f"plot {args.kind} needs two counts files")
        out = func(args.counts_file, args.counts_file_b, args.out, force=args.force)
    elif needs_counts:
        if not args.counts_file:
            raise ValueError(f"plot {args.kind} needs a COUNTS_FILE argument")
        kw = {}
        if "backend" in inspect.signature(func).parameters:
            resolve_analysis_backend(args.backend)  # fail before reading the file
            kw["backend"] = args.backend
        counts = FunctionCounts.load(args.counts_file, mmap=True)
        out = func(counts, args.out, **kw) if args.out else func(counts, **kw)
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
    pp.add_argument("--backend", default="auto", choices=VALID_NAMES,
                    help="complexity, ones, error: what computes K_LZ, T and CSR (numba, numpy, cupy; "
                         "default auto = numba if importable, else numpy)")
    pp.add_argument("--force", action="store_true",
                    help="replace an existing figure (and compare's table); an input is never replaced")
    pp.set_defaults(func=_cmd_plot)
    pb = sub.add_parser("backends", help="list the backends and whether they can run here",
                        description="List the backends and why each is or is not available.")
    pb.set_defaults(func=_cmd_backends)
    pc = sub.add_parser("clean", help="remove the temporary files that killed fastpoly commands left in a folder",
                        description="Remove the temporary files (.tmp-PID-*, merge-PID-*.run) whose writing "
                                    "process no longer runs; files of live processes are kept.  Every writing "
                                    "command does this in its output folder by itself.")
    pc.add_argument("folder", help="the folder to clean (not recursive)")
    pc.set_defaults(func=_cmd_clean)
    return p


def _cmd_clean(args):
    if not os.path.isdir(args.folder):
        raise ValueError(f"{args.folder} is not a folder")
    removed = remove_stale_temporaries(args.folder)
    size = sum(n for _, n in removed)
    for p, n in removed:
        print(f"removed {p}  ({n:,} bytes)")
    print(f"{len(removed)} stale temporary file{'s' if len(removed) != 1 else ''} removed ({size:,} bytes) "
          f"from {args.folder}")
    return 0


def error_message(e: BaseException) -> str:
    """The one-line message for a user error (see :data:`USER_ERRORS`)."""
    if isinstance(e, MemoryError):
        msg = "out of memory" + (f" ({e})" if str(e) else "") + \
            ": try a smaller --batch-size, a --memory-budget or a smaller job"
    elif isinstance(e, OSError) and e.strerror:
        what = e.strerror
        if e.errno in (errno.ENOSPC, errno.EDQUOT) and "disk full" not in what and "No space" not in what:
            what += " (disk full)"
        files = [os.fspath(f) for f in (e.filename, e.filename2) if f is not None]
        msg = f"{' -> '.join(files)}: {what}" if files else what
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())


def _stop_handler(signum: int, frame: Any) -> None:
    raise Interrupted(f"interrupted ({signal.Signals(signum).name})", signum)


def main(argv=None):
    """Entry point of the ``fastpoly`` command (returns the exit code)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, message printed)
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            if s != signal.SIGINT:
                old[s] = signal.signal(s, _stop_handler)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        if os.environ.get("FASTPOLY_DEBUG"):
            raise
        print(f"fastpoly {args.command}: error: {error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"fastpoly {args.command}: {str(e) or 'interrupted'}", file=sys.stderr)
        return 128 + int(getattr(e, "signum", signal.SIGINT))
    finally:
        for s, h in old.items():
            signal.signal(s, h)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
