"""A run of one estimator, validated once and frozen: what the API and the CLI hand the driver.

A :class:`SampleJob` is a plan (what to compute: :mod:`fastpoly.run.plans`), the
:class:`~fastpoly.run.options.RunOptions` (how: index range, checkpoint, memory budget, Dask, output)
and the backend.  Everything checkable is checked before the first sample is drawn, so that a bad
option never costs a long run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from fastpoly.plan import make_plan
from fastpoly.run.options import (
    N_INDICES,
    CheckpointPolicy,
    RunOptions,
    check_batch_size,
    check_json,
    check_n_samples,
)

__all__ = ["CheckpointPolicy", "RunOptions", "SampleJob", "check_n_samples", "check_batch_size", "make_job",
           "job_for", "N_INDICES", "check_json"]


@dataclass(frozen=True)
class SampleJob:
    """One validated run: a plan, its :class:`RunOptions`, the backend and the result's annotations.

    Build it with :func:`job_for` (a plan and options already validated) or :func:`make_job`
    (the arguments of :func:`fastpoly.sample`); run it with :func:`fastpoly.run.driver.run_job`.
    """

    plan: Any  # a SamplerPlan, TrainPlan, GPDrawPlan: see fastpoly.run.plans
    options: RunOptions
    backend: Any = "auto"
    annotations: dict[str, Any] = field(default_factory=dict)

    # the options, read through the job (the driver's vocabulary)
    @property
    def start(self) -> int:
        """First index."""
        return self.options.start

    @property
    def stop(self) -> int:
        """One past the last index."""
        return self.options.stop

    @property
    def n_samples(self) -> int:
        """Number of samples in the job's index range."""
        return self.options.n_samples

    def __getattr__(self, name: str) -> Any:
        # batch_size, memory_budget, checkpoint, client, task_size, out, compress, progress, check
        if name in RunOptions.__dataclass_fields__:
            return getattr(self.options, name)
        raise AttributeError(name)


def job_for(plan: Any, options: RunOptions, backend: Any = "auto",
            annotations: dict[str, Any] | None = None) -> SampleJob:
    """Bundle a validated plan and options (``annotations`` are checked to be storable)."""
    if not isinstance(options, RunOptions):
        raise ValueError(f"options must be a RunOptions (RunOptions.build(...)), got {type(options).__name__}")
    return SampleJob(plan=plan, options=options, backend=backend,
                     annotations=check_json(annotations, "annotations"))


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
    options: RunOptions | None = None,
) -> SampleJob:
    """Validate the arguments of :func:`fastpoly.sample` and bundle them (see there for their meaning).

    The run options are validated once, by :meth:`RunOptions.build` (or passed ready as
    ``options``, then the individual run arguments must be left at their defaults); the plan by
    :func:`fastpoly.plan.make_plan` (or passed ready as ``plan``: a
    :class:`~fastpoly.plan.SamplerPlan` or another plan of :mod:`fastpoly.run.plans`).

    Raises
    ------
    ValueError
        For any invalid argument, before anything is drawn or written.
    OSError
        If ``out`` cannot be written.
    ImportError
        If ``client`` asks for a Dask cluster and Dask is not installed (the message names the extra).
    """
    if plan is None:
        plan = make_plan(arch, X, seed, train)
    if options is None:
        options = RunOptions.build(
            n_samples, start, batch_size=batch_size, progress=progress, check=check, checkpoint=checkpoint,
            resume=resume, checkpoint_every=checkpoint_every, checkpoint_samples=checkpoint_samples,
            checkpoint_extra=checkpoint_extra, memory_budget=memory_budget, client=client, task_size=task_size,
            out=out, compress=compress,
        )
    return job_for(plan, options, backend, annotations)
