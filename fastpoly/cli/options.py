"""The option groups every estimator's command shares, and ``--resume`` for all of them.

``fastpoly sample`` (rejection sampling), ``fastpoly train`` (P_SGD) and ``fastpoly gp sample`` (GP
draws) are built from the same argparse option objects:

* :data:`RUN_OPTIONS` -- how to run: ``--seed``, ``--start``, ``--backend``, ``--batch-size``,
  ``--out``, ``--force``, ``--no-progress``, ``--checkpoint``, ``--checkpoint-every``, ``--resume``,
  ``--memory-budget``, ``--compress``, ``--dask``; turned into one validated
  :class:`~fastpoly.run.options.RunOptions` by :func:`run_options`;
* :data:`ARCH_OPTIONS` -- what network and which inputs: ``ARCH``, ``--activation``, ``--weights``,
  ``--sigma-w``, ``--sigma-b``, ``--bias-scaling``, ``--no-bias``, ``--centered``, ``--inputs X.npy``;
  :func:`mlp_from_args` and :func:`inputs_from_args` read them (one input rule: all Boolean inputs
  up to :data:`BOOLEAN_LIMIT` inputs, else ``--inputs``);
* :data:`TRAIN_OPTIONS` -- the train set: ``--train``, ``--train-size``, ``--target``,
  ``--labels y.npy``, ``--train-seed``.

They are argparse *parent* parsers: each command lists them in ``parents=`` and adds only its
own options (``--samples``/``--runs``, the recipe, ``--top``...).  Job options default to None so
that ``--resume DIR`` can tell what was typed: :func:`restore_resume_args` fills them from the
checkpoint and refuses a given option that would change the result; :func:`apply_defaults` fills
the rest.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastpoly.api import Interrupted, RunOptions, job_of
from fastpoly.arch import MLP, parse_arch
from fastpoly.backends import VALID_NAMES
from fastpoly.model.inputs import BOOLEAN_INPUT_LIMITS, all_boolean_inputs
from fastpoly.model.spec import parse

__all__ = ["ARCH_OPTIONS", "BOOLEAN_LIMIT", "RUN_OPTIONS", "TRAIN_OPTIONS", "CommandSpec", "apply_defaults",
           "dask_client", "inputs_from_args", "labels_as_target", "mlp_from_args", "report_interrupt",
           "restore_resume_args", "run_options"]

#: the CLI uses all 2**n Boolean inputs up to this many inputs; beyond, pass the rows with --inputs
BOOLEAN_LIMIT = BOOLEAN_INPUT_LIMITS["cli"]  # the one input rule (fastpoly.model.inputs)


def _run_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("run options (shared by sample, train and gp sample)")
    g.add_argument("--seed", type=int, help="stream seed in [0, 2**64) (default 0)")
    g.add_argument("--start", type=int, help="first index of the stream (default 0)")
    g.add_argument("--backend", default="auto", choices=VALID_NAMES, help="which backend runs the job (default auto)")
    g.add_argument("--batch-size", type=int, default=None,
                   help="indices per backend call (results do not depend on it)")
    g.add_argument("--out", help="output folder; an earlier result there is kept unless --force")
    g.add_argument("--force", action="store_true", help="overwrite the result of an earlier run in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--checkpoint", metavar="DIR",
                   help="save progress in DIR (atomically, every --checkpoint-every seconds and on Ctrl-C)")
    g.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between checkpoints (default 60; 0 = after every batch)")
    g.add_argument("--resume", metavar="DIR",
                   help="continue the run checkpointed in DIR (its options are read from DIR); the final "
                        "counts are identical to an uninterrupted run")
    g.add_argument("--memory-budget", metavar="BYTES",
                   help="memory for distinct keys while counting, e.g. 8GB; beyond it sorted runs are "
                        "spilled to disk (the checkpoint folder or a temporary one) and merged exactly")
    g.add_argument("--compress", action="store_true", default=None,
                   help="write counts.npz compressed (format 3: about half the size of format 2 for 128-bit "
                        "keys; every fastpoly command reads it)")
    g.add_argument("--dask", metavar="CLUSTER",
                   help="run on Dask: 'local' (one worker process per core), a number of local workers, "
                        "or a scheduler address tcp://host:8786 (needs the dask extra)")
    return p


def _arch_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("arch", nargs="?", help="architecture 'inputs-hidden...-1', e.g. 7-40-40-1 (7-1 is a perceptron)")
    g = p.add_argument_group("architecture and inputs (shared by sample, train and gp sample)")
    g.add_argument("--activation", help="relu, tanh, erf, sign or identity (default relu)")
    g.add_argument("--weights", help="gaussian (default), uniform (variance-matched) or truncated_normal (Keras)")
    g.add_argument("--sigma-w", type=float, help="weight scale: W ~ N(0, sigma_w^2/fan_in) (default 1)")
    g.add_argument("--sigma-b", type=float, help="bias scale: b ~ N(0, sigma_b^2) (default 1)")
    g.add_argument("--bias-scaling", help="none (default) or fan_in (b ~ N(0, sigma_b^2/fan_in))")
    g.add_argument("--no-bias", action="store_true", default=None, help="networks without biases")
    g.add_argument("--centered", action="store_true", default=None,
                   help="Boolean inputs in {-1,+1} instead of {0,1}")
    g.add_argument("--inputs", metavar="X.npy",
                   help=f"input rows (an m x n_inputs .npy) instead of all Boolean inputs (needed beyond "
                        f"{BOOLEAN_LIMIT} inputs)")
    return p


def _train_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("train set (shared by sample and train)")
    g.add_argument("--train-size", type=int, help="condition on this many random rows of the target")
    g.add_argument("--target", help="target function: 0/1 string (char i = row i) or hex key (bit i = row i)")
    g.add_argument("--labels", metavar="y.npy", help="target as a .npy of 0/1 labels, one per input row "
                                                     "(instead of --target; e.g. with --inputs)")
    g.add_argument("--train-seed", type=int, help="seed choosing the train rows (default 0)")
    g.add_argument("--train", help="explicit train set: anchor:M (the P_SGD anchor's S and target) or "
                                   "comma-separated rows (with --target or --labels)")
    return p


#: the shared parent parsers (the same option objects in every estimator's command)
RUN_OPTIONS = _run_parent()
ARCH_OPTIONS = _arch_parent()
TRAIN_OPTIONS = _train_parent()

#: defaults of the shared job options (None in the parsers, so that --resume sees what was given)
SHARED_DEFAULTS = {"seed": 0, "start": 0, "activation": "relu", "weights": "gaussian", "sigma_w": 1.0,
                   "sigma_b": 1.0, "bias_scaling": "none", "no_bias": False, "centered": False, "train_size": 0,
                   "train_seed": 0, "compress": False}
#: shared options stored in a checkpoint and restored on --resume
SHARED_JOB_OPTIONS = ("arch", "seed", "start", "activation", "weights", "sigma_w", "sigma_b", "bias_scaling",
                      "no_bias", "centered", "inputs", "train_size", "train", "target", "labels", "train_seed",
                      "out", "memory_budget", "compress")
#: shared options that decide the result: on --resume they must agree with the checkpoint
SHARED_RESULT_OPTIONS = ("arch", "seed", "start", "activation", "weights", "sigma_w", "sigma_b", "bias_scaling",
                         "no_bias", "centered", "inputs", "train_size", "train", "target", "labels", "train_seed")


@dataclass(frozen=True)
class CommandSpec:
    """What ``--resume`` and the defaults need to know of one estimator's command.

    Attributes
    ----------
    name : str
        The command as typed (``"sample"``, ``"train"``, ``"gp sample"``).
    count : str
        The attribute of its count option (``"samples"`` or ``"runs"``).
    defaults : dict
        Defaults of its job options (shared ones and its own).
    job_options, result_options : tuple of str
        Options stored with a checkpoint; those of them that decide the result.
    normalize : callable or None
        ``(option, value) -> comparable value`` (``1e6`` == ``1000000``...).
    """

    name: str
    count: str
    defaults: dict[str, Any]
    job_options: tuple[str, ...]
    result_options: tuple[str, ...]
    normalize: Callable[[str, Any], Any] | None = None

    def flag(self, k: str) -> str:
        """The option's flag as typed (``arch`` is positional)."""
        return k if k == "arch" else "--" + k.replace("_", "-")

    def extra(self, args: argparse.Namespace) -> dict[str, Any]:
        """What a checkpoint stores of the command line (restored by :func:`restore_resume_args`)."""
        return {"command": self.name, "cli": {k: getattr(args, k, None) for k in self.job_options}}


def _norm(spec: CommandSpec, k: str, v: Any) -> Any:
    if v is None:
        return None
    if spec.normalize is not None:
        try:
            return spec.normalize(k, v)
        except ValueError:
            return v
    return v


def restore_resume_args(args: argparse.Namespace, spec: CommandSpec) -> None:
    """``--resume DIR``: fill the job options from the checkpoint; refuse given ones that disagree."""
    _, extra = job_of(args.resume)
    stored = extra.get("cli")
    command = extra.get("command", "sample" if stored else None)
    if not stored or command != spec.name:
        how = f"'fastpoly {command} --resume'" if command else "fastpoly.resume(DIR)"
        raise ValueError(f"{args.resume} was not written by 'fastpoly {spec.name}'; resume it with {how}")
    conflicts = []
    for k in spec.job_options:
        if k not in stored:
            continue
        given = getattr(args, k, None)
        if given is None:
            setattr(args, k, stored[k])
        elif k in spec.result_options:
            want = spec.defaults.get(k) if stored[k] is None else stored[k]
            if _norm(spec, k, given) != _norm(spec, k, want):
                conflicts.append(f"{spec.flag(k)} {want} (given: {given})")
    if conflicts:
        raise ValueError(
            f"--resume {args.resume}: the checkpoint's run used {'; '.join(conflicts)}; drop those options "
            "(they are read from the checkpoint) or start a new run in another folder"
        )
    if args.checkpoint and os.path.abspath(args.checkpoint) != os.path.abspath(args.resume):
        raise ValueError("--resume DIR continues the checkpoint in DIR; do not also give --checkpoint")
    args.checkpoint = args.resume


def apply_defaults(args: argparse.Namespace, spec: CommandSpec) -> None:
    """Fill the job options that were neither typed nor restored with the command's defaults."""
    for k, v in spec.defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)


def mlp_from_args(args: argparse.Namespace, layers: bool = False) -> MLP:
    """The architecture of ``ARCH`` and the architecture options.

    ``7-40-40-1`` is an :class:`MLP`.  With ``layers=True`` (commands whose engines take any
    architecture: ``sample``) a string with an image input or spatial layers
    (``8x8x1-c16k3-c16k3-1``) is the :class:`~fastpoly.model.Architecture` of
    :func:`fastpoly.model.spec.parse`; otherwise such a string is refused (one line, exit 2).
    """
    if not args.arch:
        raise ValueError("give an architecture such as 7-40-40-1 (or --resume DIR)")
    kw = dict(weights=args.weights, sigma_w=args.sigma_w, sigma_b=args.sigma_b, bias_scaling=args.bias_scaling,
              bias=not args.no_bias)
    if layers and not re.fullmatch(r"[\d\s-]*", args.arch):
        return parse(args.arch, activation=args.activation, **kw)  # type: ignore[return-value]
    n_inputs, hidden = parse_arch(args.arch)
    return MLP(n_inputs, hidden, activation=args.activation, **kw)


def _load_npy(path: str, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {what} {path!r}: {e}") from None


def inputs_from_args(args: argparse.Namespace, n_inputs: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The input rows: ``--inputs X.npy``, else all Boolean inputs (``--centered``: in {-1, +1}).

    The one input rule of the CLI: all ``2**n`` Boolean inputs up to :data:`BOOLEAN_LIMIT` inputs.
    With an image ``shape`` (H, W, C) the file may also hold images ``(m, H, W, C)``; they are
    returned as flat rows (row-major H, W, C).
    """
    if getattr(args, "inputs", None):
        if args.centered:
            raise ValueError("--centered is for the Boolean inputs; --inputs gives the rows as they are")
        X = _load_npy(args.inputs, "--inputs")
        if shape is not None and len(shape) == 3 and X.ndim == 4:
            if tuple(X.shape[1:]) != tuple(shape):
                raise ValueError(f"--inputs images must have shape (m, {', '.join(map(str, shape))}) for this "
                                 f"architecture, got {X.shape}")
            X = X.reshape(X.shape[0], -1)
        if X.ndim != 2 or X.shape[1] != n_inputs or X.shape[0] < 1:
            raise ValueError(f"--inputs must hold an (m, {n_inputs}) array for this architecture, got {X.shape}")
        if not np.issubdtype(X.dtype, np.number) or not np.all(np.isfinite(X)):
            raise ValueError("--inputs must hold finite numbers")
        return X
    return all_boolean_inputs(n_inputs, "cli", centered=bool(args.centered))


def labels_as_target(args: argparse.Namespace, m: int) -> None:
    """``--labels y.npy``: set ``args.target`` to its 0/1 string over the ``m`` rows (refused with --target)."""
    path = getattr(args, "labels", None)
    if not path:
        return
    if args.target:
        raise ValueError("give the target either as --target or as --labels, not both")
    y = np.asarray(_load_npy(path, "--labels")).reshape(-1)
    if y.size != m:
        raise ValueError(f"--labels must hold one 0/1 label per input row ({m}), got {y.size}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("--labels must hold 0/1 labels")
    args.target = "".join("1" if v else "0" for v in y)


def dask_client(spec: Any) -> Any:
    """``--dask``: ``"local"``, a number of local workers, or a Client of a scheduler address."""
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


def close_client(args: argparse.Namespace, client: Any) -> None:
    """Close a client this command connected to a scheduler (local clusters close themselves)."""
    if client is not None and isinstance(getattr(args, "dask", None), str) \
            and args.dask.startswith(("tcp://", "tls://")):
        client.close()


def run_options(args: argparse.Namespace, spec: CommandSpec, n: int, path: str, client: Any = None,
                extra: dict[str, Any] | None = None) -> RunOptions:
    """The command's validated :class:`RunOptions` (errors name the flags).

    ``extra``: what the checkpoint stores of the command line (default ``spec.extra(args)``).
    """
    names = {"n_samples": "--" + spec.count, "start": "--start", "batch_size": "--batch-size",
             "checkpoint_every": "--checkpoint-every", "memory_budget": "--memory-budget", "compress": "--compress",
             "out": "--out", "resume": "--resume", "check": "--check"}
    return RunOptions.build(
        n, args.start, batch_size=args.batch_size, progress=not args.no_progress,
        check=bool(getattr(args, "check", False)), checkpoint=args.checkpoint,
        resume=bool(getattr(args, "resume", None)), checkpoint_every=args.checkpoint_every,
        checkpoint_extra=spec.extra(args) if extra is None else extra, memory_budget=args.memory_budget, client=client, out=path,
        compress=bool(args.compress), names=names,
    )


def report_interrupt(args: argparse.Namespace, spec: CommandSpec, e: Interrupted) -> int:
    """The exit code (128 + signal) and message of a checkpointed run stopped by a signal; re-raise otherwise."""
    if not args.checkpoint:
        raise e
    msg = str(e) or f"interrupted; the last checkpoint in {args.checkpoint} is intact"
    print(f"\nfastpoly {spec.name}: {msg}", file=sys.stderr)
    return 128 + e.signum
