"""GP function sampling: the infinite-width prior P(f) by drawing ``g ~ N(0, K)`` and counting sign keys.

``g = F z`` with ``F F^T = K`` and ``z`` the project's Philox4x32-10 normals
(:func:`fastpoly.stream.rng.stream_normals`) of **stream 3** (counter word 1 = 3), so
sample ``i`` of seed ``s`` is a pure function of ``(s, i)`` and uses numbers
disjoint from the networks' weights (stream 0).  Normal ``j`` of sample ``i``
multiplies column ``j`` of ``F``.

* ``F``: Cholesky of ``K`` on the rows of positive variance; if that fails (singular
  ``K``), ``V sqrt(max(w, 0))`` from ``eigh`` on the positive eigenvalues
  (``meta['gp']`` reports the factor, its rank and how much was clipped).
  Rows of zero variance (``sigma_b = 0`` and ``x = 0``) get ``g = 0`` exactly:
  output bit 0, no regularisation.
* Arithmetic: float64; ``g_r = (((0 + F_r0 z_0) + F_r1 z_1) + ...)`` summed in
  increasing ``j``, every product and sum rounded separately (no FMA, no BLAS),
  so the NumPy and Numba paths give **bit-identical** ``g`` and keys.
* Keys: bit ``r`` = 1 iff ``g_r > 0`` strictly (``docs/design.md#keys``).

A CuPy path is not provided (no GPU to test it on); ``backend="cupy"`` raises.

GP draws are an estimator plan (:class:`GPDrawPlan`, see :mod:`fastpoly.run.plans`) run by the
one driver like rejection sampling and SGD training: checkpoint/resume (also
:func:`fastpoly.resume`), memory budget, Dask and progress work the same way, and the counts are
identical for any batch size, partition or interruption.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastpoly.backends import VALID_NAMES, backend_for, lacks
from fastpoly.backends.base import CountBatch
from fastpoly.backends.counting import count_keys
from fastpoly.counts import FunctionCounts
from fastpoly.counts.meta import ResultMeta, describe_inputs
from fastpoly.gp.kernels import as_mlp, check_inputs, kernel
from fastpoly.gp.orthants import check_covariance
from fastpoly.keys import pack_bits
from fastpoly.model.architecture import Architecture
from fastpoly.model.spec import architecture_from_dict
from fastpoly.plan import inputs_digest
from fastpoly.run.driver import run_job
from fastpoly.run.job import job_for
from fastpoly.run.options import RunOptions
from fastpoly.stream.rng import check_seed

__all__ = ["GP_STREAM", "SAMPLE_BACKENDS", "GPDrawPlan", "GPDrawer", "gp_factor", "gp_values", "make_gp_plan",
           "sample"]

#: the Philox stream id (counter word 1) of GP normals; networks' parameters use stream 0
GP_STREAM = 3
SAMPLE_BACKENDS = ("auto", "numpy", "numba")


def gp_factor(K: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(F, rows, info)``: ``F F^T == K[rows][:, rows]`` on the rows of positive variance.

    ``F`` is lower triangular (Cholesky) when possible, else ``V sqrt(w)`` over the
    positive eigenvalues of ``eigh``.  ``info`` reports the factor and its regularisation.
    """
    K = check_covariance(K)
    dg = np.diag(K)
    rows = np.flatnonzero(dg > 0)
    info = {"zero_variance_rows": np.flatnonzero(dg <= 0).tolist()}
    Kr = K[np.ix_(rows, rows)]
    if rows.size == 0:
        return np.zeros((0, 0)), rows, dict(info, factor="none", rank=0)
    try:
        F = np.linalg.cholesky(Kr)
        info.update(factor="cholesky", rank=int(rows.size))
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(Kr)
        tol = 1e-12 * float(w[-1]) * rows.size
        keep = w > tol
        info.update(
            factor="eigh", rank=int(np.count_nonzero(keep)),
            clipped_eigenvalues=int(np.count_nonzero(~keep)),
            largest_clipped=float(np.max(np.abs(w[~keep]))) if np.any(~keep) else 0.0,
        )
        F = np.ascontiguousarray(V[:, keep] * np.sqrt(w[keep]))
    return np.ascontiguousarray(F), rows, info


def gp_values(F: np.ndarray, seed: int, indices, backend: str = "numpy", lower: bool | None = None) -> np.ndarray:
    """The GP values ``g`` (float64, ``(n, rows)``) of samples ``indices`` (for tests and diagnostics)."""
    idx = np.asarray(indices, np.uint64).reshape(-1)
    if lower is None:
        lower = F.shape[0] == F.shape[1] and not np.any(np.triu(F, 1))
    return backend_for("gp_values", backend).gp_values(F, seed, idx, GP_STREAM, bool(lower))


def _resolve_backend(backend: str) -> str:
    """The backend that draws: :func:`fastpoly.backends.backend_for` ``("gp_values", backend)``."""
    if not isinstance(backend, str) or backend not in VALID_NAMES:
        raise ValueError(f"unknown backend {backend!r}; valid for gp.sample: {', '.join(SAMPLE_BACKENDS)}")
    why = lacks(backend, "gp_values")
    if why:
        raise ValueError(f"gp.sample cannot use backend {backend!r}: {why}")
    return backend_for("gp_values", backend).name


@dataclass(frozen=True, eq=False)
class GPDrawPlan:
    """GP draws ``g ~ N(0, K)`` of the NNGP of ``arch`` on ``X``, keyed by sign (validated, frozen).

    Build it with :func:`make_gp_plan`.  Implements the estimator plan protocol of
    :mod:`fastpoly.run.plans` (estimator ``"gp_draws"``).

    Attributes
    ----------
    arch : Architecture
        An MLP or a CNN (:func:`fastpoly.model.spec.parse`).
    X : float64 array (m, n_inputs)
    seed : int
    K : float64 array (m, m)
        The kernel (computed from ``arch`` and ``X``, or given).
    F, rows, info
        The factor of :func:`gp_factor`.
    """

    arch: Architecture
    X: np.ndarray
    seed: int
    K: np.ndarray
    F: np.ndarray
    rows: np.ndarray
    info: dict[str, Any]

    estimator = "gp_draws"
    conditioned = False

    @property
    def m(self) -> int:
        """Number of input rows (key bits)."""
        return int(self.X.shape[0])

    @property
    def n_words(self) -> int:
        """uint64 words per key."""
        return (self.m + 63) // 64

    @property
    def key_rows(self) -> np.ndarray:
        """All rows."""
        return np.arange(self.m, dtype=np.int64)

    @property
    def lower(self) -> bool:
        """Whether ``F`` is the (lower-triangular) Cholesky factor."""
        return self.info["factor"] == "cholesky"

    @property
    def digest(self) -> str:
        """Digest of the inputs (as float32, like every counts file)."""
        return inputs_digest(np.asarray(self.X, np.float32))

    def compat_meta(self) -> dict[str, Any]:
        """What must match for two GP results to merge (the ``nngp`` limit keeps them apart from networks)."""
        return {"arch": dict(self.arch.to_dict(), limit="nngp"), "inputs_digest": self.digest,
                "n_rows": self.m, "train_rows": [], "train_labels": []}

    def result_meta(self) -> ResultMeta:
        """What the result estimates: the infinite-width prior, by GP draws."""
        c = self.compat_meta()
        return ResultMeta(estimator="gp_draws", arch=c["arch"], inputs_digest=c["inputs_digest"], n_rows=c["n_rows"],
                          inputs=describe_inputs(self.X, self.arch.n_inputs), seed=self.seed)

    def meta_extra(self) -> dict[str, Any]:
        """The factor's report (``meta['gp']``)."""
        return {"gp": dict(self.info, stream=GP_STREAM)}

    def engine(self, backend: Any = "auto") -> GPDrawer:
        """The GP drawer of a backend name (``auto``, ``numpy`` or ``numba``)."""
        return GPDrawer(backend)

    def job_spec(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild this plan (the kernel goes to ``job_arrays``)."""
        return {"estimator": "gp_draws", "arch": self.arch.to_dict()}

    def job_arrays(self) -> dict[str, np.ndarray]:
        """The kernel (it may have been given rather than computed)."""
        return {"kernel": self.K}

    @classmethod
    def from_job(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray], X: np.ndarray, seed: int) -> GPDrawPlan:
        """Rebuild the plan a checkpoint stored."""
        return make_gp_plan(architecture_from_dict(spec["arch"]), X, seed, K=arrays["kernel"])


def make_gp_plan(arch: Any, X: Any = None, seed: Any = 0, K: Any = None) -> GPDrawPlan:
    """Validate a GP draw job and factor its kernel (see :func:`sample`)."""
    arch = as_mlp(arch)
    X = check_inputs(arch, X)
    seed = check_seed(seed)
    m = X.shape[0]
    if K is None:
        K = kernel(arch, X)
    elif np.shape(K) != (m, m):
        raise ValueError(f"K must have shape ({m}, {m}) for these inputs, got {np.shape(K)}")
    K = np.ascontiguousarray(K, np.float64)
    F, rows, info = gp_factor(K)
    return GPDrawPlan(arch, X, seed, K, F, rows, info)


class GPDrawer:
    """The GP-draw capability of a backend (numpy or numba): draws and counts one index range."""

    def __init__(self, backend: Any = "auto") -> None:
        self.name = _resolve_backend(backend)

    def count_range(self, plan: GPDrawPlan, lo: int, hi: int) -> CountBatch:
        """Draw samples ``lo .. hi-1`` and count their sign keys."""
        idx = np.arange(lo, hi, dtype=np.uint64)
        bits = np.zeros((hi - lo, plan.m), bool)
        if plan.rows.size:
            bits[:, plan.rows] = gp_values(plan.F, plan.seed, idx, self.name, plan.lower) > 0
        k, c, f = count_keys(pack_bits(bits), idx)
        return CountBatch(k, c, f, hi - lo, hi - lo)

    def prepare(self, plan: GPDrawPlan) -> None:
        """Compile the Numba path (one draw, discarded)."""
        if self.name == "numba" and plan.rows.size:
            gp_values(plan.F, plan.seed, np.zeros(1, np.uint64), "numba", plan.lower)

    def default_batch_size(self, plan: GPDrawPlan) -> int:
        """Draws per call (about 2 million values)."""
        return max(256, (1 << 21) // max(plan.m, 1))

    def for_workers(self) -> GPDrawer:
        """Dask workers get this (picklable) object."""
        return self

    def describe(self) -> str:
        """One line for the CLI."""
        return f"{self.name} (GP draws)"


def sample(
    arch,
    X=None,
    n_samples: int = 1,
    seed: int = 0,
    backend: str = "auto",
    *,
    start: int = 0,
    batch_size: int | None = None,
    K: np.ndarray | None = None,
    progress: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    checkpoint_every: float = 60.0,
    checkpoint_samples: int | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
    memory_budget: int | str | None = None,
    client: Any = None,
    task_size: int | None = None,
    out: str | os.PathLike[str] | None = None,
    compress: bool = False,
    annotations: dict[str, Any] | None = None,
    options: RunOptions | None = None,
) -> FunctionCounts:
    """Draw ``g ~ N(0, K)`` (the NNGP of ``arch`` on ``X``) and count the sign keys exactly.

    Parameters
    ----------
    arch : Architecture (MLP or CNN) or str
    X : array_like (m, n_inputs), (m, H, W, C) or None
        Inputs: rows, or images for a CNN (None: all Boolean inputs).
    n_samples : int
        Number of GP draws.
    seed : int
        Stream seed in ``[0, 2**64)``; draws use Philox stream :data:`GP_STREAM` (3).
    backend : {"auto", "numpy", "numba"}
        ``auto``: numba if importable.  Both give identical counts.
    start : int
        First sample index (runs over disjoint index ranges merge exactly).
    batch_size : int or None
        Samples per batch (the result does not depend on it).
    K : array or None
        A precomputed kernel over the rows of X.
    progress, checkpoint, resume, checkpoint_every, checkpoint_samples, checkpoint_extra, memory_budget, client,
    task_size, out, compress, annotations
        As in :func:`fastpoly.sample`: GP draws run through the same driver, so a checkpointed,
        interrupted and resumed run (also with :func:`fastpoly.resume`) gives the bytes of an
        uninterrupted one.
    options : RunOptions or None
        All run options at once (:class:`fastpoly.run.options.RunOptions`); then ``n_samples``,
        ``start``, ``batch_size`` and the options above must be left at their defaults.

    Returns
    -------
    FunctionCounts
        Keys over all rows of X; ``meta['estimator'] == "gp_draws"``, ``meta['arch']`` carries
        ``"limit": "nngp"`` (so GP counts never merge with finite-width counts) and ``meta['gp']``
        the factor (``cholesky`` or ``eigh``), rank, clipped eigenvalues and zero-variance rows.
    """
    plan = make_gp_plan(arch, X, seed, K)
    drawer = GPDrawer(backend)
    if options is None:
        options = RunOptions.build(
            n_samples, start, batch_size=batch_size, progress=progress, checkpoint=checkpoint, resume=resume,
            checkpoint_every=checkpoint_every, checkpoint_samples=checkpoint_samples,
            checkpoint_extra=checkpoint_extra, memory_budget=memory_budget, client=client, task_size=task_size,
            out=out, compress=compress,
        )
    elif (n_samples, start, batch_size, progress, checkpoint, resume, checkpoint_every, checkpoint_samples,
          checkpoint_extra, memory_budget, client, task_size, out, compress) != \
            (1, 0, None, False, None, False, 60.0, None, None, None, None, None, None, False):
        raise ValueError("give the run options either as options= or one by one, not both")
    return run_job(job_for(plan, options, drawer, annotations))
