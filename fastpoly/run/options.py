"""How to run an estimator, validated once: :class:`RunOptions` (and its :class:`CheckpointPolicy`).

The API entry points (:func:`fastpoly.sample`, :func:`fastpoly.sample_sgd`, :func:`fastpoly.gp.sample`)
and the CLI commands (``sample``, ``train``, ``gp sample``) build one frozen ``RunOptions`` with
:meth:`RunOptions.build` and hand it to the driver as one object; nothing downstream re-checks it.
Error messages name the option as the caller knows it (``names``: the CLI passes its flags).

``out`` is a counts file.  A folder is accepted too (an existing folder, or a path ending in a
path separator): the file is then ``FOLDER/counts.npz``, as the CLI's ``--out FOLDER`` writes it.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastpoly.atomic import check_writable
from fastpoly.counts.spill import parse_memory
from fastpoly.run.distributed import require_distributed

__all__ = ["N_INDICES", "CheckpointPolicy", "RunOptions", "check_n_samples", "check_batch_size", "check_json",
           "out_file"]

#: the stream has 2**64 sample indices
N_INDICES = 2**64
#: the counts file written into an ``out`` folder
COUNTS_NAME = "counts.npz"


def check_n_samples(n: Any, what: str = "n_samples") -> int:
    """Validate a sample count (a positive integer; floats like 1e6 with integral value are accepted).

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer below ``2**64``.
    """
    if isinstance(n, (bool, np.bool_)):
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    if isinstance(n, (float, np.floating)):
        if not math.isfinite(n) or n != int(n):
            raise ValueError(f"{what} must be a positive integer, got {n!r}")
        n = int(n)
    if not isinstance(n, (int, np.integer)):
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"{what} must be a positive integer, got {n}")
    if n >= N_INDICES:
        raise ValueError(f"{what} must be < 2**64")
    return n


def check_batch_size(bs: Any, what: str = "batch_size") -> int | None:
    """Validate a batch size (None or a positive integer)."""
    if bs is None:
        return None
    if isinstance(bs, (bool, np.bool_)) or not isinstance(bs, (int, np.integer)) or bs < 1:
        raise ValueError(f"{what} must be a positive integer, got {bs!r}")
    return int(bs)


def check_json(d: Any, what: str) -> dict[str, Any]:
    """A dict that JSON can store (it is saved in a counts file or a checkpoint); raise ValueError otherwise."""
    d = dict(d or {})
    try:
        json.dumps(d, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be JSON-serialisable (str, numbers, lists, dicts): {e}") from None
    return d


def out_file(out: str | os.PathLike[str]) -> str:
    """The counts file that ``out`` names: ``out`` itself, or ``out/counts.npz`` for a folder."""
    s = os.fspath(out)
    if os.path.isdir(s) or s.endswith(("/", os.sep)):
        return os.path.join(s, COUNTS_NAME)
    return s


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where and how often a run saves its progress.

    Attributes
    ----------
    directory : str
        The checkpoint folder (spilled runs live there too).
    resume : bool
        Continue the checkpoint found there (else the folder must not hold one).
    every_s : float
        Seconds between saves (0 = after every batch).
    every_n : int or None
        Also save after this many samples since the last save.
    extra : dict
        JSON-serialisable data stored with the job (the CLI keeps its options there).
    """

    directory: str
    resume: bool = False
    every_s: float = 60.0
    every_n: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: the API's argument names; the CLI passes its flags instead (``names=``) so errors name what was typed
API_NAMES = {k: k for k in ("n_samples", "start", "batch_size", "checkpoint_every", "checkpoint_samples",
                            "memory_budget", "task_size", "check", "compress", "out", "resume", "client")}


@dataclass(frozen=True)
class RunOptions:
    """How one estimator run is carried out; the stream range ``[start, stop)`` of its plan.

    Build it with :meth:`build` (which validates); every field is then final.
    """

    start: int
    stop: int
    batch_size: int | None = None
    memory_budget: int | None = None
    checkpoint: CheckpointPolicy | None = None
    client: Any = None
    task_size: int | None = None
    out: str | None = None
    compress: bool = False
    progress: bool = True
    check: int = 0

    @property
    def n_samples(self) -> int:
        """Number of samples (runs, draws) in the index range."""
        return self.stop - self.start

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with some fields changed (not re-validated: for the driver's own use)."""
        from dataclasses import replace

        return replace(self, **changes)

    @classmethod
    def build(
        cls,
        n_samples: Any = 1,
        start: Any = 0,
        *,
        batch_size: Any = None,
        progress: Any = True,
        check: Any = False,
        checkpoint: str | os.PathLike[str] | None = None,
        resume: Any = False,
        checkpoint_every: Any = 60.0,
        checkpoint_samples: Any = None,
        checkpoint_extra: dict[str, Any] | None = None,
        memory_budget: Any = None,
        client: Any = None,
        task_size: Any = None,
        out: str | os.PathLike[str] | None = None,
        compress: Any = False,
        names: dict[str, str] | None = None,
    ) -> RunOptions:
        """Validate the run options once (see :func:`fastpoly.sample` for their meaning).

        ``names`` maps the API names to what the caller calls them (the CLI: ``--samples``...), for
        the error messages.  ``out`` that can be written is checked here (its folder is created and a
        probe file written), and that Dask is installed when a cluster is asked for.

        Raises
        ------
        ValueError
            For any invalid option, before anything is drawn or written.
        OSError
            If ``out`` cannot be written.
        ImportError
            If ``client`` asks for a Dask cluster and Dask is not installed.
        """
        nm = dict(API_NAMES, **(names or {}))
        n = check_n_samples(n_samples, nm["n_samples"])
        if isinstance(start, (bool, np.bool_)) or not isinstance(start, (int, np.integer)) or start < 0:
            raise ValueError(f"{nm['start']} must be a non-negative integer, got {start!r}")
        start = int(start)
        if start + n > N_INDICES:
            raise ValueError(f"{nm['start']} + {nm['n_samples']} exceeds the 2**64 sample indices of a stream")
        if resume and checkpoint is None:
            raise ValueError(f"{nm['resume']}=True needs checkpoint=DIR (a checkpoint folder)")
        policy = None
        if checkpoint is not None:
            every = checkpoint_every
            if isinstance(every, (bool, np.bool_)) or not isinstance(every, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(every) or not every >= 0:
                raise ValueError(f"{nm['checkpoint_every']} must be a number of seconds >= 0, got {every!r}")
            policy = CheckpointPolicy(
                directory=os.fspath(checkpoint),
                resume=bool(resume),
                every_s=float(every),
                every_n=None if checkpoint_samples is None
                else check_n_samples(checkpoint_samples, nm["checkpoint_samples"]),
                extra=check_json(checkpoint_extra, "checkpoint_extra"),
            )
        if task_size is not None and (isinstance(task_size, bool) or not isinstance(task_size, (int, np.integer))
                                      or task_size < 1):
            raise ValueError(f"{nm['task_size']} must be a positive integer, got {task_size!r}")
        if isinstance(check, (bool, np.bool_)):
            n_check = 64 if check else 0
        elif isinstance(check, (int, np.integer)) and check >= 0:
            n_check = int(check)
        else:
            raise ValueError(f"{nm['check']} must be True, False or a number of samples >= 0, got {check!r}")
        if not isinstance(compress, (bool, np.bool_)):
            raise ValueError(f"{nm['compress']} must be True or False, got {compress!r}")
        if compress and out is None:
            raise ValueError(f"{nm['compress']} needs {nm['out']} (it is the format of the counts file written there)")
        budget = parse_memory(memory_budget)
        bs = check_batch_size(batch_size, nm["batch_size"])
        if client is not None and not hasattr(client, "submit"):
            require_distributed()
        path = None if out is None else check_writable(out_file(out), "output file")
        return cls(start=start, stop=start + n, batch_size=bs, memory_budget=budget, checkpoint=policy,
                   client=client, task_size=None if task_size is None else int(task_size), out=path,
                   compress=bool(compress), progress=bool(progress), check=min(n, n_check))
