"""The plan protocol: what the one driver needs of an estimator (rejection sampling, SGD training, GP draws).

A plan says *what* to compute -- validated once, frozen -- and never loops:

* the stream it draws from (``seed``), its inputs ``X`` (float32 rows), keys of ``n_words``
  uint64 words over ``key_rows``, and :meth:`EstimatorPlan.compat_meta` (what must match for two
  results to merge, and for a checkpoint to be resumed);
* :meth:`EstimatorPlan.result_meta`: the :class:`~fastpoly.counts.meta.ResultMeta` of its result;
* the backend's capability that computes one index range: an :class:`Engine`
  (``count_range(plan, lo, hi) -> CountBatch``), from ``plan.engine(backend_name)`` where the
  engine lives beside the plan (GP draws), or handed to the driver as the job's backend where it
  lives above it (SGD training: the trainers of :mod:`fastpoly.sgd.api`, which import the plan);
* :meth:`EstimatorPlan.job_spec` and :meth:`EstimatorPlan.job_arrays`: what a checkpoint stores
  so that :func:`fastpoly.resume` rebuilds the plan (``job_spec()["estimator"]`` picks the builder).

The sampler's :class:`~fastpoly.plan.SamplerPlan` (domain model, below the run room) is the
rejection-sampling plan; the functions of this module give it the protocol's answers
(``engine``: the sampling backend itself; the job spec: the legacy checkpoint fields).
:class:`fastpoly.sgd.plan.TrainPlan` and :class:`fastpoly.gp.sampling.GPDrawPlan` implement the
protocol themselves.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from fastpoly.backends import get_backend, resolve_backend_name
from fastpoly.backends.base import CountBatch
from fastpoly.counts.meta import ResultMeta, build_meta
from fastpoly.plan import SamplerPlan

__all__ = ["Engine", "EstimatorPlan", "engine_of", "result_meta_of", "job_spec_of", "job_arrays_of",
           "meta_dict", "sampler_result_meta"]


@runtime_checkable
class Engine(Protocol):
    """A backend's capability for one kind of plan, as the driver calls it."""

    name: str

    def count_range(self, plan: Any, lo: int, hi: int) -> CountBatch:
        """Compute samples/runs/draws ``lo .. hi-1`` and count their keys."""
        ...

    def prepare(self, plan: Any) -> None:
        """Compile or warm up for this plan (before the run's clock starts)."""
        ...

    def default_batch_size(self, plan: Any) -> int:
        """Indices per ``count_range`` call."""
        ...


@runtime_checkable
class EstimatorPlan(Protocol):
    """A validated, frozen estimator plan (see the module docstring)."""

    seed: int
    X: np.ndarray
    n_words: int
    key_rows: np.ndarray

    def compat_meta(self) -> dict[str, Any]:
        """What must match for two results to merge (and for a checkpoint to resume)."""
        ...

    def result_meta(self) -> ResultMeta:
        """What the result estimates."""
        ...

    def job_spec(self) -> dict[str, Any]:
        """JSON data a checkpoint stores to rebuild the plan (key ``estimator`` picks the builder)."""
        ...

    def job_arrays(self) -> dict[str, np.ndarray]:
        """Arrays a checkpoint stores beside ``inputs.npy`` (name -> array) to rebuild the plan."""
        ...


def sampler_result_meta(plan: SamplerPlan) -> ResultMeta:
    """The ResultMeta of rejection sampling: ``prior`` without a train set, else ``posterior``."""
    c = plan.compat_meta()
    # ``inputs`` stays None: the sampler's files keep their pinned metadata, which does not record it
    # (and comparing up to 2**20 rows with the Boolean inputs on every run would cost for nothing)
    return ResultMeta(
        estimator="posterior" if plan.conditioned else "prior",
        arch=c["arch"], inputs_digest=c["inputs_digest"], n_rows=c["n_rows"], inputs=None, seed=plan.seed,
        train_rows=tuple(c["train_rows"]), train_labels=tuple(c["train_labels"]),
    )


def result_meta_of(plan: Any) -> ResultMeta:
    """The :class:`ResultMeta` of any plan."""
    if isinstance(plan, SamplerPlan):
        return sampler_result_meta(plan)
    return plan.result_meta()


def engine_of(plan: Any, backend: Any) -> Any:
    """The engine that computes ranges of ``plan`` with ``backend`` (a name or an engine object)."""
    if not isinstance(backend, str) and hasattr(backend, "count_range"):
        return backend  # already an engine (e.g. a configured SGD trainer)
    if isinstance(plan, SamplerPlan):
        if backend == "auto" and not plan.is_mlp:  # CNNs: the CPU kernels (cupy's CNN sampler is untuned)
            return get_backend(resolve_backend_name("auto", ("numba", "numpy")))
        return get_backend(backend)
    make = getattr(plan, "engine", None)
    if make is None:
        raise ValueError(f"a {type(plan).__name__} runs with an engine object as its backend, not {backend!r}")
    return make(backend)


def job_spec_of(plan: Any) -> dict[str, Any] | None:
    """What a checkpoint stores to rebuild ``plan`` (None: a sampling plan, rebuilt from the legacy fields)."""
    if isinstance(plan, SamplerPlan):
        return None
    return plan.job_spec()


def job_arrays_of(plan: Any) -> dict[str, np.ndarray]:
    """Arrays beside ``inputs.npy`` that a checkpoint of ``plan`` stores."""
    if isinstance(plan, SamplerPlan):
        return {}
    return dict(plan.job_arrays())


def meta_dict(plan: Any, annotations: dict[str, Any] | None = None, ranges: Any = ()) -> dict[str, Any]:
    """The counts-file meta dict of a result of ``plan`` (the one builder, :func:`build_meta`)."""
    rm = result_meta_of(plan)
    extra = getattr(plan, "meta_extra", None)
    ann = dict(extra() if callable(extra) else {})
    if annotations:
        clash = set(annotations) & set(ann)
        if clash:
            raise ValueError(f"annotations may not replace the metadata {sorted(clash)}")
        ann.update(annotations)
    key_rows = plan.key_rows if getattr(plan, "conditioned", False) else None
    return build_meta(rm, n_key_bits=int(plan.key_rows.size), key_rows=key_rows, ranges=ranges, annotations=ann)
