"""Public entry points of P_SGD sampling.

:func:`sample_sgd` (P_SGD(f|S) as a :class:`~fastpoly.FunctionCounts`) and
:func:`sample_sgd_anchor` (the published Boolean experiment, with or without its callback leak).
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from fastpoly.backends import BackendUnavailable, availability, resolve_backend_name
from fastpoly.backends.base import CountBatch
from fastpoly.counts import FunctionCounts
from fastpoly.run.driver import numba_compilations, run_job
from fastpoly.run.job import check_n_samples, make_job
from fastpoly.sgd.anchor import anchor_problem, anchor_recipe
from fastpoly.sgd.cuda import train_range_cuda
from fastpoly.sgd.plan import TrainPlan, make_train_plan
from fastpoly.sgd.recipe import Recipe
from fastpoly.sgd.reference import TrainBatch, count_batch, train_range_reference

__all__ = ["TRAIN_BACKENDS", "sample_sgd", "sample_sgd_anchor", "train_runs"]

TRAIN_BACKENDS = ("numpy", "numba", "cupy")


def _train_backend(backend, device=None):
    """The trainer for a backend name: the name ``"auto"`` resolves to, checked to be available."""
    if backend == "cupy" and device is not None:
        return "cupy"  # an explicit device (e.g. the CPU emulation of CUDA in tests)
    name = resolve_backend_name(backend) if isinstance(backend, str) else None
    if name not in TRAIN_BACKENDS:
        raise ValueError(f"unknown training backend {backend!r}; valid: auto, {', '.join(TRAIN_BACKENDS)}")
    ok, why = availability(name)
    if not ok:
        raise BackendUnavailable(f"backend {name!r} is not available: {why}")
    return name


class TrainBackend:
    """A trainer in the shape of a sampling backend, so the one run driver runs P_SGD jobs.

    ``count_range(tp, lo, hi)`` trains runs ``lo .. hi-1`` and counts the functions of
    the fitted ones (a :class:`~fastpoly.backends.base.CountBatch`, like a sampler's);
    so checkpoint/resume, spilling, progress and Dask work for runs exactly as for
    samples.  With ``records=True`` the per-run :class:`TrainBatch` es of this process
    are kept in :attr:`kept`.
    """

    def __init__(self, backend: Any = "auto", records: bool = False, device: Any = None) -> None:
        self.name = _train_backend(backend, device)
        self.device = device
        self.records = bool(records)
        self.kept: list[TrainBatch] = []
        #: runs of this process that diverged (a parameter became inf or NaN)
        self.n_diverged = 0
        self._prepared: Any = None
        self._prepared_for: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # compiled state stays behind; a worker prepares its own
        return {"name": self.name, "records": False, "kept": [], "device": None, "_prepared": None,
                "_prepared_for": None, "n_diverged": 0}

    def train(self, tp: TrainPlan, lo: int, hi: int, params: bool = False) -> TrainBatch:
        """Per-run results of runs ``lo .. hi-1``."""
        if self.name == "numpy":
            return train_range_reference(tp, lo, hi, params=params)
        if self.name == "cupy":
            return train_range_cuda(tp, lo, hi, params=params, device=self.device)
        from fastpoly.sgd.numba_kernels import PreparedTrain, train_range_numba  # numba: heavy, optional

        if self._prepared_for is not tp:
            self._prepared, self._prepared_for = PreparedTrain(tp), tp
        return train_range_numba(tp, lo, hi, params=params, prepared=self._prepared)

    def count_range(self, tp: TrainPlan, lo: int, hi: int) -> CountBatch:
        """Train runs ``lo .. hi-1`` and count the functions the fitted ones reach."""
        b = self.train(tp, lo, hi)
        self.n_diverged += b.n_diverged
        if self.records:
            self.kept.append(b)
        return count_batch(b)

    def prepare(self, tp: TrainPlan) -> None:
        """Compile the trainer for this plan (one run, result discarded)."""
        if self.name != "numpy":
            self.train(tp, 0, 1)

    def default_batch_size(self, tp: TrainPlan) -> int:
        """Runs per kernel call."""
        return {"numpy": 64, "numba": 4096}.get(self.name, 1 << 18)

    def for_workers(self) -> TrainBackend:
        """Dask workers get this (picklable) object."""
        return self

    def describe(self) -> str:
        """One line for the CLI."""
        return f"{self.name} (SGD trainer)"


def train_runs(tp: TrainPlan, lo: int, hi: int, backend: Any = "auto", params: bool = False) -> TrainBatch:
    """Per-run results of runs ``lo .. hi-1`` (keys, init keys, status, first-fit epoch, epochs, loss)."""
    return TrainBackend(backend).train(tp, lo, hi, params=params)


def _records(batches):
    if not batches:
        return {}
    cat = {k: np.concatenate([getattr(b, k) for b in batches]) for k in
           ("keys", "init_keys", "status", "first_fit", "epochs", "loss")}
    cat["index"] = np.concatenate([np.arange(b.lo, b.hi, dtype=np.uint64) for b in batches])
    return cat


def _run(tp: TrainPlan, trainer: TrainBackend, n_runs: Any, start: Any, batch_size: Any, progress: bool,
         annotations: dict[str, Any] | None, run_options: dict[str, Any]) -> FunctionCounts:
    """Run a P_SGD job through the one driver (checkpoint, spill, Dask as for ``sample``)."""
    if trainer.records and run_options.get("client") is not None:
        raise ValueError("records=True keeps per-run records in this process; it cannot be combined with client=")
    ann = {"kind": "P_SGD"}
    ann.update(annotations or {})
    job = make_job(None, n_samples=n_runs, backend=trainer, batch_size=batch_size, progress=progress,
                   start=start, annotations=ann, plan=tp, **run_options)
    n_div0 = trainer.n_diverged
    res = run_job(job)
    res.info["n_failed"] = res.n_samples - res.n_accepted
    if run_options.get("client") is None and not res.info.get("resumed_from"):
        # diverged runs are among the failed ones, counted apart (runs of this process)
        res.info["n_diverged"] = trainer.n_diverged - n_div0
    if trainer.records:
        res.info["records"] = _records(trainer.kept)
    return res


def sample_sgd(arch: Any, X: Any = None, train: Any = None, n_runs: int | float = 1, seed: int = 0,
               backend: Any = "auto", recipe: Recipe | dict[str, Any] | None = None, start: int = 0,
               batch_size: int | None = None, records: bool = False, progress: bool = False,
               annotations: dict[str, Any] | None = None, checkpoint: str | os.PathLike[str] | None = None,
               resume: bool = False, checkpoint_every: float = 60.0, memory_budget: int | str | None = None,
               client: Any = None, out: str | os.PathLike[str] | None = None, task_size: int | None = None,
               **recipe_options: Any) -> FunctionCounts:
    """Train ``n_runs`` networks from independent initialisations and count the functions they reach.

    Run ``i`` starts from ``arch.instantiate(seed, i)`` (bit for bit: network ``i``
    of the prior stream) and is trained on the train set S by the recipe; the
    function it reaches is read on the remaining (test) rows, keyed exactly as
    rejection sampling keys them.  So ``P_SGD(f|S) = count / n_accepted`` is
    directly comparable with ``fastpoly.sample(..., train=S)`` (P_B(f|S)).

    Parameters
    ----------
    arch : MLP or str
        Architecture (relu or identity hidden layers).
    X : array_like (m, n_inputs) or None
        Input rows; None: all Boolean inputs.
    train : (row indices, 0/1 labels)
        The train set S, in the order of the train points.
    n_runs : int
        Runs ``start .. start + n_runs - 1``.
    seed : int
        Stream seed (initialisations and minibatch orders).
    backend : {"auto", "numba", "numpy", "cupy"} or TrainBackend
        Results are bit-identical on every backend and for any ``batch_size``.
    recipe : Recipe, dict or None
        Training recipe; keyword options (``optimizer=``, ``lr=``, ``batch_size`` is
        the *run* batch here, so the minibatch size is ``minibatch=``...) are
        applied on top: any :class:`~fastpoly.sgd.recipe.Recipe` field may be given
        as a keyword, with ``minibatch`` standing for its ``batch_size``.
    start : int
        First run index.
    batch_size : int or None
        Runs per kernel call (results do not depend on it).
    records : bool
        Keep per-run records in ``result.info["records"]``: ``index``, ``status``
        (0 stopped by the rule, 1 reached max_epochs fitting S, 2 failed),
        ``first_fit``, ``epochs``, ``loss`` (final train loss), ``init_keys`` (the
        initialisation's function on the test rows) and ``keys`` (the reached one).
    progress : bool
        Progress bar (tqdm).
    annotations : dict or None
        Extra metadata (e.g. ``{"target": hex}``).
    checkpoint, resume, checkpoint_every, memory_budget, client, out, task_size
        As in :func:`fastpoly.sample`: P_SGD jobs run through the same driver, so
        checkpoints, resuming, spilling past a memory budget and Dask clusters give
        byte-identical results (``records`` are kept only for the runs trained in
        this process, and not with ``client``).

    Returns
    -------
    FunctionCounts
        ``n_samples`` = runs, ``n_accepted`` = runs that fit S (so ``n_samples -
        n_accepted`` failed; also ``info["n_failed"]``), ``meta["sgd_recipe"]`` =
        the whole recipe, ``meta["kind"] = "P_SGD"``.

    Raises
    ------
    ValueError
        Empty or inconsistent train sets, labels not 0/1, bad recipe values.
    """
    tp = _plan(arch, X, train, seed, recipe, recipe_options)
    trainer = backend if isinstance(backend, TrainBackend) else TrainBackend(backend, records=records)
    opts = dict(checkpoint=checkpoint, resume=resume, checkpoint_every=checkpoint_every,
                memory_budget=memory_budget, client=client, out=out, task_size=task_size)
    return _run(tp, trainer, n_runs, start, batch_size, progress, annotations, opts)


def _plan(arch, X, train, seed, recipe, opts):
    if recipe is None:
        recipe = Recipe()
    if isinstance(recipe, dict):
        recipe = Recipe.from_dict(recipe)
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a Recipe or a dict, got {type(recipe).__name__}")  # noqa: TRY004
    if opts:
        opts = dict(opts)
        if "minibatch" in opts:
            opts["batch_size"] = opts.pop("minibatch")
        unknown = set(opts) - set(Recipe.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown recipe options {sorted(unknown)}; valid: {sorted(Recipe.__dataclass_fields__)}")
        recipe = recipe.replace(**opts)
    return make_train_plan(arch, X, train, seed, recipe)


def leak_table(tp: TrainPlan, workers: int, n_runs: int, start: int, trainer) -> tuple:
    """First-fit epoch ``E[w]`` of each worker and the run that set it (the worker's first run that fits).

    Worker ``w`` runs ``start + w, start + w + workers, ...``; its first runs are
    trained with the intended rule until one fits at an epoch end.
    """
    E = np.full(workers, -1, np.int64)
    frm = np.full(workers, 2**62, np.int64)
    open_ = np.ones(workers, bool)
    k = 0
    while open_.any():
        lo = start + k * workers
        hi = min(start + n_runs, lo + workers)
        if hi <= lo:
            break
        b = trainer(lo, hi)  # the k-th run of every worker, in one call
        w = np.arange(hi - lo)
        got = open_[: hi - lo] & (b.first_fit > 0)
        E[w[got]] = b.first_fit[got]
        frm[w[got]] = lo + w[got]
        open_[w[got]] = False
        if hi - lo < workers:
            break
        k += 1
    return E, frm


#: the run options :func:`sample_sgd_anchor` passes on (as in :func:`sample_sgd`)
_ANCHOR_RUN_OPTIONS = ("checkpoint", "resume", "checkpoint_every", "memory_budget", "client", "out", "task_size")


def sample_sgd_anchor(m: int = 32, epochs_after_fit: int = 1, n_runs: int | float = 1000, seed: int = 0,
                      backend: Any = "auto", callback_leak: bool = True, workers: int = 400,
                      batch_size: int | None = None, records: bool = False, progress: bool = False,
                      **run_options: Any) -> FunctionCounts:
    """The anchor Boolean experiment (nn-pacbayes, Mingard et al. 2021) in one call.

    Parameters
    ----------
    m : {32, 64}
        Train-set size (S = ``RandomState(42069).choice(128, m, replace=False)``).
    epochs_after_fit : int
        1 or 64 in the published runs.
    n_runs : int
    seed : int
    backend : {"auto", "numba", "numpy", "cupy"} or TrainBackend
    callback_leak : bool
        True: emulate the leaked early-stopping callback of the anchor (one callback
        per MPI worker, never reset): run ``i`` belongs to worker ``i % workers``;
        the worker's first run that fits sets ``E`` (its first-fit epoch) and every
        later run of the worker stops at the first fitted epoch end
        ``e >= E + epochs_after_fit``.  False: the intended rule (each run stops at
        its own first fitted epoch end ``e >= e_first + epochs_after_fit``).
    workers : int
        MPI workers of the anchor (400).
    **run_options
        ``checkpoint``, ``resume``, ``memory_budget``, ``client``, ``out``... as in :func:`sample_sgd`.

    Returns
    -------
    FunctionCounts
        As :func:`sample_sgd`; ``meta["target"]`` holds the target and
        ``meta["sgd_recipe"]["callback_leak_workers"]`` the emulated workers.
    """
    bad = sorted(set(run_options) - set(_ANCHOR_RUN_OPTIONS))
    if bad:
        raise ValueError(f"sample_sgd_anchor got unexpected options {bad} (the anchor experiment runs from run 0 "
                         f"with its own recipe); valid extra options: {', '.join(_ANCHOR_RUN_OPTIONS)}")
    arch, X, train, target_hex = anchor_problem(m)
    tp = make_train_plan(arch, X, train, seed, anchor_recipe(epochs_after_fit))
    n_runs = check_n_samples(n_runs)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    trainer = backend if isinstance(backend, TrainBackend) else TrainBackend(backend, records=records)
    timing: dict[str, Any] = {}
    if callback_leak:
        # compile before the leak table trains, so that compilation is reported apart
        n0 = numba_compilations()
        t = time.perf_counter()
        trainer.prepare(tp)
        timing = {"compile_s": time.perf_counter() - t, "compiled": numba_compilations() > n0}
        t = time.perf_counter()
        E, frm = leak_table(tp, int(workers), n_runs, 0, lambda lo, hi: trainer.train(tp, lo, hi))
        timing["leak_table_s"] = time.perf_counter() - t
        tp = tp.with_leak(int(workers), E, frm)
    ann = {"target": target_hex, "anchor": {"m": int(m), "callback_leak": bool(callback_leak),
                                            "workers": int(workers) if callback_leak else None}}
    res = _run(tp, trainer, n_runs, 0, batch_size, progress, ann, run_options)
    if timing:
        res.info["compile_s"] = timing["compile_s"] + float(res.info.get("compile_s", 0.0) or 0.0)
        res.info["compiled"] = timing["compiled"] or bool(res.info.get("compiled"))
        res.info["leak_table_s"] = timing["leak_table_s"]
    return res

