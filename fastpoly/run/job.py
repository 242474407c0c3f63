"""A sampling job, validated once and frozen: what :func:`fastpoly.sample` and the CLI hand the driver.

Everything checkable is checked here, before the first sample is drawn, so that
a bad option never costs a long run.
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
from fastpoly.plan import SamplerPlan, make_plan
from fastpoly.run.distributed import require_distributed

__all__ = ["CheckpointPolicy", "SampleJob", "check_n_samples", "check_batch_size", "make_job"]

#: the stream has 2**64 sample indices
N_INDICES = 2**64


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


def check_batch_size(bs: Any) -> int | None:
    """Validate a batch size (None or a positive integer)."""
    if bs is None:
        return None
    if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
        raise ValueError(f"batch_size must be a positive integer, got {bs!r}")
    return int(bs)


def _check_start(start: Any) -> int:
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    return int(start)


def check_json(d: Any, what: str) -> dict[str, Any]:
    """A dict that JSON can store (it is saved in a counts file or a checkpoint); raise ValueError otherwise."""
    d = dict(d or {})
    try:
        json.dumps(d, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be JSON-serialisable (str, numbers, lists, dicts): {e}") from None
    return d


def _check_every(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not v >= 0 \
            or not np.isfinite(v):
        raise ValueError(f"checkpoint_every must be a number of seconds >= 0, got {v!r}")
    return float(v)


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


@dataclass(frozen=True)
class SampleJob:
    """One validated sampling job: the stream range ``[start, stop)`` of a plan and how to run it.

    Build it with :func:`make_job` (which validates); run it with :func:`fastpoly.run.driver.run_job`.
    """

    plan: SamplerPlan | Any  # any plan the backend's count_range takes (see make_job)
    start: int
    stop: int
    backend: Any = "auto"
    batch_size: int | None = None
    memory_budget: int | None = None
    checkpoint: CheckpointPolicy | None = None
    client: Any = None
    task_size: int | None = None
    out: str | None = None
    progress: bool = True
    check: int = 0
    annotations: dict[str, Any] = field(default_factory=dict)
    compress: bool = False

    @property
    def n_samples(self) -> int:
        """Number of samples in the job's index range."""
        return self.stop - self.start


def make_job(
    arch: Any,
    X: Any = None,
    n_samples: Any = 1,
    seed: Any = 0,
    backend: Any = "auto",
    train: Any = None,
    batch_size: Any = None,
    progress: bool = True,
    start: Any = 0,
    check: bool | int = False,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    checkpoint_every: Any = 60.0,
    client: Any = None,
    memory_budget: Any = None,
    checkpoint_samples: Any = None,
    out: str | os.PathLike[str] | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
    task_size: Any = None,
    annotations: dict[str, Any] | None = None,
    plan: Any = None,
    compress: Any = False,
) -> SampleJob:
    """Validate the arguments of :func:`fastpoly.sample` and bundle them (see there for their meaning).

    Everything checkable is checked here, before the first sample: the arguments, the
    architecture's memory needs (:func:`fastpoly.plan.make_plan`), that ``annotations`` and
    ``checkpoint_extra`` can be stored, that ``out`` can be written (its folder is created and a
    probe file written) and that Dask is installed when a cluster is asked for.

    ``plan`` (keyword only in practice): an already validated plan -- a
    :class:`~fastpoly.plan.SamplerPlan` or another plan the driver can run, such as a
    :class:`fastpoly.sgd.plan.TrainPlan` -- used instead of ``arch, X, seed, train``.

    Raises
    ------
    ValueError
        For any invalid argument, before anything is drawn or written.
    OSError
        If ``out`` cannot be written.
    ImportError
        If ``client`` asks for a Dask cluster and Dask is not installed (the message names the extra).
    """
    n = check_n_samples(n_samples)
    start = _check_start(start)
    if start + n > N_INDICES:
        raise ValueError("start + n_samples exceeds the 2**64 sample indices of a stream")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=DIR")
    policy = None
    if checkpoint is not None:
        policy = CheckpointPolicy(
            directory=os.fspath(checkpoint),
            resume=bool(resume),
            every_s=_check_every(checkpoint_every),
            every_n=None if checkpoint_samples is None else check_n_samples(checkpoint_samples, "checkpoint_samples"),
            extra=check_json(checkpoint_extra, "checkpoint_extra"),
        )
    if task_size is not None and (isinstance(task_size, bool) or not isinstance(task_size, (int, np.integer))
                                  or task_size < 1):
        raise ValueError(f"task_size must be a positive integer, got {task_size!r}")
    if isinstance(check, bool):
        n_check = 64 if check else 0
    elif isinstance(check, (int, np.integer)) and check >= 0:
        n_check = int(check)
    else:
        raise ValueError(f"check must be True, False or a number of samples >= 0, got {check!r}")
    annotations = check_json(annotations, "annotations")
    if not isinstance(compress, (bool, np.bool_)):
        raise ValueError(f"compress must be True or False, got {compress!r}")
    if compress and out is None:
        raise ValueError("compress=True needs out=PATH (it is the format of the counts file written there)")
    if plan is None:
        plan = make_plan(arch, X, seed, train)
    budget = parse_memory(memory_budget)
    bs = check_batch_size(batch_size)
    if client is not None and not hasattr(client, "submit"):
        require_distributed()
    if out is not None:
        out = check_writable(out, "output file")
    return SampleJob(
        plan=plan,
        start=start,
        stop=start + n,
        backend=backend,
        batch_size=bs,
        memory_budget=budget,
        checkpoint=policy,
        client=client,
        task_size=None if task_size is None else int(task_size),
        out=out,
        progress=bool(progress),
        check=min(n, n_check),
        annotations=annotations,
        compress=bool(compress),
    )
