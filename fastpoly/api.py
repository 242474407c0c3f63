"""The public entry points: :func:`sample`, :func:`sample_keys`, :func:`evaluate`, :func:`resume`.

Each validates its arguments and hands the work on: :func:`sample` validates its run options once
into a frozen :class:`~fastpoly.run.options.RunOptions`, its plan into a
:class:`~fastpoly.plan.SamplerPlan`, and runs them with the one driver
(:func:`fastpoly.run.driver.run_job`), like :func:`fastpoly.sample_sgd` and :func:`fastpoly.gp.sample`
do for the other two estimators; :func:`resume` continues any of them; the others call a backend
directly.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from fastpoly.backends import get_backend
from fastpoly.backends.base import check_range
from fastpoly.counts.store import FunctionCounts
from fastpoly.model.spec import architecture_from_dict
from fastpoly.network import Network, resolve_dtype
from fastpoly.plan import make_plan
from fastpoly.run.checkpoint import Checkpoint, CheckpointError, job_of
from fastpoly.run.driver import STOP_SIGNALS, Interrupted, run_job  # the CLI reaches the driver through here
from fastpoly.run.job import job_for
from fastpoly.run.options import RunOptions
from fastpoly.run.plans import engine_of
from fastpoly.tolerances import assert_close_to_reference, network_atol

__all__ = ["sample", "sample_keys", "evaluate", "resume", "Interrupted", "RunOptions", "STOP_SIGNALS", "job_of"]


def sample(
    arch: Any,
    X: Any = None,
    n_samples: int | float = 1,
    seed: int = 0,
    backend: Any = "auto",
    train: Any = None,
    batch_size: int | None = None,
    progress: bool = True,
    start: int = 0,
    check: bool | int = False,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    checkpoint_every: float = 60.0,
    client: Any = None,
    memory_budget: int | str | None = None,
    checkpoint_samples: int | None = None,
    out: str | os.PathLike[str] | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
    task_size: int | None = None,
    annotations: dict[str, Any] | None = None,
    compress: bool = False,
    options: RunOptions | None = None,
) -> FunctionCounts:
    """Draw random networks, evaluate them on ``X`` and count the functions exactly.

    Parameters
    ----------
    arch : MLP or str
        Architecture, e.g. ``fastpoly.MLP(7, (40, 40))`` or ``"7-40-40-1"``.
    X : array_like (m, n_inputs) or None
        Input rows (any finite floats).  None: all ``2**n_inputs`` Boolean inputs.
    n_samples : int
        Number of networks to draw (samples ``start .. start+n_samples-1`` of the stream).
    seed : int
        Stream seed in ``[0, 2**64)``.
    backend : {"auto", "numpy", "numba", "cupy"}
    train : (row indices, 0/1 labels) or None
        Condition by rejection: only networks that output ``labels`` on those
        rows are counted, and keys cover the remaining (test) rows.
    batch_size : int or None
        Samples per backend call (results are identical for any value).
    progress : bool
        Show a progress bar with rate and ETA (tqdm) on long runs.
    start : int
        First sample index (to split one stream over several runs or machines;
        merge the results with :meth:`FunctionCounts.merge`).
    check : bool or int
        Recompute the first ``check`` samples (``True`` = 64) with the NumPy
        reference and raise ``AssertionError`` if the keys differ.
    checkpoint : path or None
        Folder for checkpoints (:mod:`fastpoly.run.checkpoint`): progress is saved
        atomically every ``checkpoint_every`` seconds (and ``checkpoint_samples``
        samples), and on Ctrl-C (the run then stops with ``KeyboardInterrupt``
        after saving).  Spilled runs live there too.
    resume : bool
        Continue the run saved in ``checkpoint`` (refused with
        :class:`fastpoly.run.checkpoint.CheckpointError` if it is another job or
        corrupted; an empty folder starts afresh).  The result is identical to an
        uninterrupted run.  Without ``resume`` the folder must not hold a checkpoint.
    checkpoint_every : float
        Seconds between checkpoints (default 60; 0 = after every batch).
    client : dask.distributed.Client, "local", int or None
        Run the index range as tasks on a Dask cluster (:mod:`fastpoly.run.distributed`;
        ``"local"`` or an int starts a LocalCluster of that many worker processes).
        The result is byte-for-byte the single-process result.
    memory_budget : int, str or None
        Bytes (or ``"2GB"``) of distinct keys held in memory while counting;
        beyond it, sorted runs are spilled to disk (the checkpoint folder, or a
        temporary folder) and merged exactly at the end with the same budget.
    checkpoint_samples : int or None
        Also checkpoint after this many samples since the last save.
    out : path or None
        Write the final counts file here: a file path, or a folder (an existing one, or a path
        ending in ``/``), which then gets ``counts.npz`` as the CLI's ``--out`` does.  With spilled
        runs the result is streamed to the file (never held in memory) and returned memory-mapped.
    checkpoint_extra : dict or None
        JSON-serialisable data stored with the checkpoint's job (the CLI keeps its options there).
    task_size : int or None
        Samples per Dask task (default: about 8 tasks per worker, at most 1e7).
    annotations : dict or None
        JSON-serialisable entries added to the result's ``meta`` (saved in the
        counts file), e.g. ``{"target": hex}`` so that generalisation errors can
        be computed later.  They must not use the reserved metadata names.
    compress : bool
        Write ``out`` as a compressed counts file (format 3, about half the size of format 2
        for 128-bit keys; read by :meth:`FunctionCounts.load` like any counts file).  Needs ``out``.
    options : RunOptions or None
        All run options at once (:meth:`fastpoly.run.options.RunOptions.build`, validated once):
        then ``n_samples``, ``start``, ``batch_size``, ``progress``, ``check``, ``checkpoint*``,
        ``resume``, ``client``, ``memory_budget``, ``out``, ``task_size`` and ``compress`` are taken
        from it and must be left at their defaults.

    Returns
    -------
    FunctionCounts
        Exact counts; identical for any backend (relu/sign/identity), batch size,
        partition of the index range, checkpointing, spilling or Dask cluster.

    Raises
    ------
    ValueError
        For invalid arguments or a job too large for this machine's memory, before anything is drawn.
    OSError
        If ``out`` or the checkpoint folder cannot be written (checked before the first sample);
        :class:`fastpoly.atomic.FolderInUse` if another run holds the checkpoint folder.
    fastpoly.run.driver.Interrupted
        On Ctrl-C, SIGTERM or SIGHUP (a ``KeyboardInterrupt``; with a checkpoint, after saving it).
    fastpoly.run.rescue.ResultNotSaved
        If ``out`` cannot be written at the end (e.g. a full disk); the result was kept in the
        checkpoint or a fallback file (``saved_to``), as the message says.
    """
    run_args = dict(batch_size=batch_size, progress=progress, check=check, checkpoint=checkpoint, resume=resume,
                    checkpoint_every=checkpoint_every, checkpoint_samples=checkpoint_samples,
                    checkpoint_extra=checkpoint_extra, memory_budget=memory_budget, client=client,
                    task_size=task_size, out=out, compress=compress)
    plan = make_plan(arch, X, seed, train)
    if options is None:
        options = RunOptions.build(n_samples, start, **run_args)
    else:
        _refuse_both(options, dict(run_args, n_samples=n_samples, start=start), _SAMPLE_DEFAULTS)
    return run_job(job_for(plan, options, backend, annotations))


#: the defaults of sample()'s run arguments (what ``options=`` requires to be left alone)
_SAMPLE_DEFAULTS = dict(n_samples=1, start=0, batch_size=None, progress=True, check=False, checkpoint=None,
                        resume=False, checkpoint_every=60.0, checkpoint_samples=None, checkpoint_extra=None,
                        memory_budget=None, client=None, task_size=None, out=None, compress=False)


def _refuse_both(options: Any, given: dict[str, Any], defaults: dict[str, Any]) -> None:
    if not isinstance(options, RunOptions):
        raise ValueError(f"options must be a RunOptions (RunOptions.build(...)), got {type(options).__name__}")
    both = sorted(k for k, v in given.items() if v is not defaults[k] and v != defaults[k])
    if both:
        raise ValueError(f"give the run options either as options= or one by one, not both ({', '.join(both)})")


def sample_keys(
    arch: Any,
    X: Any = None,
    seed: int = 0,
    start: int = 0,
    stop: int = 1,
    backend: Any = "auto",
    train: Any = None,
    margins: bool = False,
) -> np.ndarray | tuple[np.ndarray, ...]:
    """Per-sample results for pipelines: keys of samples ``start .. stop-1`` in index order.

    Parameters
    ----------
    arch, X, seed, backend, train
        As in :func:`sample`.
    start, stop : int
        Index range ``[start, stop)`` of the stream.
    margins : bool
        Also return each sample's smallest ``|output|`` over the rows of X.

    Returns
    -------
    keys : uint64 array (stop - start, n_words)
        Key of every sample (over the test rows when ``train`` is given).
    accepted : bool array (stop - start,)
        Returned when ``train`` is given: whether the sample fits the train set.
    margins : float32 array (stop - start,)
        Returned when ``margins=True``.
    """
    start, stop = check_range(start, stop)
    plan = make_plan(arch, X, seed, train)
    be = engine_of(plan, backend)
    b = be.sample_keys(plan, start, stop, margins=margins)
    out = [b.keys]
    if train is not None:
        out.append(b.accepted)
    if margins:
        out.append(b.margins)
    return out[0] if len(out) == 1 else tuple(out)


def evaluate(net: Network, X: Any, backend: Any = "auto", dtype: Any = None, check: bool = False) -> np.ndarray:
    """Outputs of a network on every row of ``X``.

    Parameters
    ----------
    net : Network
        A plain network (e.g. from ``MLP.instantiate``) or a compiled polynomial network.
    X : array_like (N, n_inputs)
    backend : {"auto", "numpy", "numba", "cupy"}
    dtype : {None, "float32", "float64"}
        Arithmetic type (default: the network's own).
    check : bool
        Also compute the NumPy reference and raise ``AssertionError`` if the
        result is outside the per-dtype tolerance (:mod:`fastpoly.tolerances`;
        compiled polynomial networks: also within 5% of their certified error).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` for single-output networks, else ``(N, n_outputs)``.
    """
    if not isinstance(getattr(net, "n_inputs", None), int) or not hasattr(net, "layers"):
        raise ValueError(
            f"net must be a fastpoly Network (e.g. MLP.instantiate(...) or compile_polynomial(...)), "
            f"got {type(net).__name__}"
        )
    X = np.asarray(X)
    if np.iscomplexobj(X):
        raise ValueError("X must be real numbers, got a complex array")
    if X.ndim == 1 and net.n_inputs == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != net.n_inputs:
        raise ValueError(f"X must have shape (N, {net.n_inputs}), got {X.shape}")
    if not np.issubdtype(X.dtype, np.number) or not np.all(np.isfinite(X)):
        raise ValueError("X must be finite numbers (no NaN or inf)")
    dt = resolve_dtype(net, dtype)
    be = get_backend(backend)
    out = np.asarray(be.evaluate(net, X, dt))
    if check and be.name != "numpy":
        ref = np.asarray(get_backend("numpy").evaluate(net, X, dt))
        assert_close_to_reference(out.reshape(ref.shape), ref, dt, extra_atol=network_atol(net))
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    return out


#: run options :func:`resume` accepts (the job itself is read from the checkpoint)
RESUME_OPTIONS = ("batch_size", "progress", "checkpoint_every", "checkpoint_samples", "memory_budget", "client",
                  "out", "compress", "task_size")


def resume(directory: str | os.PathLike[str], backend: Any = "auto", **kwargs: Any) -> FunctionCounts:
    """Continue the run saved in ``directory``, whatever its estimator (the job is read from the checkpoint).

    Rejection sampling (``sample(..., checkpoint=DIR)``, ``fastpoly sample --checkpoint``), P_SGD
    training (``sample_sgd(..., checkpoint=DIR)``, ``fastpoly train --checkpoint``) and GP draws
    (``gp.sample(..., checkpoint=DIR)``, ``fastpoly gp sample --checkpoint``): the plan -- the
    architecture, inputs, seed, train set, recipe, kernel -- and the result's annotations are
    rebuilt from the checkpoint, so the result is the one of an uninterrupted run, byte for byte.

    Parameters
    ----------
    directory : path
        A checkpoint folder.
    backend : str
        Backend name (sampling: see :func:`fastpoly.backends`; training: auto, numpy, numba, cupy;
        GP draws: auto, numpy, numba).
    **kwargs
        Run options (:data:`RESUME_OPTIONS`): ``batch_size``, ``progress``, ``checkpoint_every``,
        ``checkpoint_samples``, ``memory_budget``, ``client``, ``out``, ``compress``, ``task_size``.

    Returns
    -------
    FunctionCounts
        Identical to the result of an uninterrupted run.

    Raises
    ------
    fastpoly.run.checkpoint.CheckpointError
        If the folder holds no checkpoint, a damaged one, or one of an unknown estimator.
    """
    unknown = sorted(set(kwargs) - set(RESUME_OPTIONS))
    if unknown:
        raise ValueError(f"resume() takes the run options {', '.join(RESUME_OPTIONS)}; got {', '.join(unknown)} "
                         "(the job itself is read from the checkpoint)")
    ck = Checkpoint.open(directory)
    job, est = ck.job, ck.estimator
    start, stop = int(job["start"]), int(job["stop"])
    options = RunOptions.build(stop - start, start, checkpoint=directory, resume=True, **kwargs)
    annotations = job.get("annotations")
    if est in ("prior", "posterior"):
        plan: Any = make_plan(architecture_from_dict(job["compat"]["arch"]), ck.X, job["seed"], ck.train_set())
    elif est == "psgd":
        from fastpoly.sgd.api import TrainBackend  # light until needed: training pulls in its trainers
        from fastpoly.sgd.plan import TrainPlan

        plan = TrainPlan.from_job(job["plan"], job["compat"], ck.X, job["seed"])
        if isinstance(backend, str):
            backend = TrainBackend(backend)
    elif est == "gp_draws":
        from fastpoly.gp.sampling import GPDrawPlan  # imports SciPy

        plan = GPDrawPlan.from_job(job["plan"], ck.arrays, ck.X, job["seed"])
    else:
        raise CheckpointError(f"{directory}: a checkpoint of an unknown estimator {est!r} (newer fastpoly?)")
    return run_job(job_for(plan, options, backend, annotations))
