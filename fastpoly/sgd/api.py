"""Public entry points of P_SGD sampling.

:func:`sample_sgd` (P_SGD(f|S) as a :class:`~fastpoly.FunctionCounts`) and
:func:`sample_sgd_anchor` (the published Boolean experiment, with or without its callback leak).
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from fastpoly.analysis import compare as _cmp
from fastpoly.backends import backend_for
from fastpoly.backends.base import CountBatch, TrainBatch, count_batch
from fastpoly.counts import FunctionCounts
from fastpoly.run.driver import numba_compilations, run_job
from fastpoly.run.job import job_for
from fastpoly.run.options import RunOptions
from fastpoly.sgd.anchor import anchor_problem, anchor_recipe
from fastpoly.sgd.plan import TrainPlan, make_train_plan
from fastpoly.sgd.recipe import Recipe
from fastpoly.sgd.reference import train_range_reference

__all__ = ["TRAIN_BACKENDS", "compare", "load_counts", "plot_compare", "sample_sgd", "sample_sgd_anchor", "train_runs"]

TRAIN_BACKENDS = ("numpy", "numba", "cupy")


class TrainBackend:
    """A plan-bound adapter that lets the one run driver run P_SGD jobs on a backend.

    It is not a second backend table: the backend object is the one of
    :func:`fastpoly.backends.backend_for` ``("train", backend)``, and :meth:`train` is its
    :meth:`~fastpoly.backends.base.Backend.train_range` (for the NumPy reference backend: the
    reference trainer, :func:`~fastpoly.sgd.reference.train_range_reference`, the definition).
    ``count_range(tp, lo, hi)`` trains runs ``lo`` to ``hi - 1`` and counts the functions of
    the fitted ones (a :class:`~fastpoly.backends.base.CountBatch`, like a sampler's);
    so checkpoint/resume, spilling, progress and Dask work for runs exactly as for
    samples.  With ``records=True`` the per-run :class:`TrainBatch` es of this process
    are kept in :attr:`kept`.
    """

    def __init__(self, backend: Any = "auto", records: bool = False, device: Any = None) -> None:
        named = isinstance(backend, str) and backend in ("auto",) + TRAIN_BACKENDS
        if not named and not callable(getattr(backend, "train_range", None)):
            raise ValueError(f"unknown training backend {backend!r}; valid: auto, {', '.join(TRAIN_BACKENDS)}")
        if device is not None and backend not in ("cupy", "auto"):
            raise ValueError(f"a device is for the cupy backend, not {backend!r}")
        self.backend = backend_for("train", device if device is not None else backend)
        self.name = self.backend.name
        self.device = device
        self.records = bool(records)
        self.kept: list[TrainBatch] = []

    def __getstate__(self) -> dict[str, Any]:
        # compiled state stays behind; a worker gets the backend of the same name (memoised there)
        return {"name": self.name, "records": False, "kept": [], "device": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.backend = backend_for("train", self.name)

    def train(self, tp: TrainPlan, lo: int, hi: int, params: bool = False) -> TrainBatch:
        """Per-run results of runs ``lo`` to ``hi - 1``."""
        if self.backend.reference:
            return train_range_reference(tp, lo, hi, params=params)
        return self.backend.train_range(tp, lo, hi, params=params)

    def count_range(self, tp: TrainPlan, lo: int, hi: int) -> CountBatch:
        """Train runs ``lo`` to ``hi - 1`` and count the functions the fitted ones reach."""
        b = self.train(tp, lo, hi)
        if self.records:
            self.kept.append(b)
        return count_batch(b)

    def prepare(self, tp: TrainPlan) -> None:
        """Compile the trainer for this plan (one run, result discarded)."""
        if not self.backend.reference:
            self.train(tp, 0, 1)

    def default_batch_size(self, tp: TrainPlan) -> int:
        """Runs per kernel call (at most; the CPU trainers size their calls by time, see below)."""
        return {"numpy": 64, "numba": 4096}.get(self.name, 1 << 18)

    def first_batch_size(self, tp: TrainPlan) -> int | None:
        """Runs of the first call of a CPU trainer; the driver then sizes its calls by time.

        A run may take milliseconds (a small MLP) or seconds (a CNN on hundreds of images), so a fixed
        number of runs per call could hold a checkpoint, the progress bar or Ctrl-C for hours.
        None (the GPU trainer): fixed batches of :meth:`default_batch_size`.
        """
        return 8 if self.name in ("numpy", "numba") else None

    def for_workers(self) -> TrainBackend:
        """Dask workers get this (picklable) object."""
        return self

    def describe(self) -> str:
        """One line for the CLI."""
        return f"{self.name} (SGD trainer)"


def train_runs(tp: TrainPlan, lo: int, hi: int, backend: Any = "auto", params: bool = False) -> TrainBatch:
    """Per-run results of runs ``lo`` to ``hi - 1`` (keys, init keys, status, first-fit epoch, epochs, loss)."""
    return TrainBackend(backend).train(tp, lo, hi, params=params)


def _records(batches):
    if not batches:
        return {}
    cat = {k: np.concatenate([getattr(b, k) for b in batches]) for k in
           ("keys", "init_keys", "status", "first_fit", "epochs", "loss")}
    cat["index"] = np.concatenate([np.arange(b.lo, b.hi, dtype=np.uint64) for b in batches])
    return cat


def _options(n_runs: Any, start: Any, batch_size: Any, progress: bool, run_options: dict[str, Any],
             options: RunOptions | None) -> RunOptions:
    """The run's options: ``options`` as given, or built (validated once) from the individual arguments."""
    if options is not None:
        if not isinstance(options, RunOptions):
            raise ValueError(f"options must be a RunOptions, got {type(options).__name__}")
        given = {k: v for k, v in run_options.items() if v not in (None, False)}
        if given:
            raise ValueError(f"give the run options either as options= or one by one, not both ({sorted(given)})")
        return options
    ro = dict(run_options)
    unknown = set(ro) - {"checkpoint", "resume", "checkpoint_every", "checkpoint_samples", "checkpoint_extra",
                         "memory_budget", "client", "out", "task_size", "compress"}
    if unknown:
        raise ValueError(f"unknown run options {sorted(unknown)}")
    return RunOptions.build(n_runs, start, batch_size=batch_size, progress=progress,
                            names={"n_samples": "n_runs"}, **ro)


def _run(tp: TrainPlan, trainer: TrainBackend, annotations: dict[str, Any] | None,
         options: RunOptions) -> FunctionCounts:
    """Run a P_SGD job through the one driver (checkpoint, spill, Dask as for ``sample``)."""
    if trainer.records and options.client is not None:
        raise ValueError("records=True keeps per-run records in this process; it cannot be combined with client=")
    if trainer.records and options.checkpoint is not None:
        raise ValueError("records=True keeps per-run records of this process only; it cannot be combined with "
                         "checkpoint= (a resumed run would lack the records of the runs before the interruption)")
    job = job_for(tp, options, trainer, annotations)
    res = run_job(job)
    res.info["n_failed"] = res.n_samples - res.n_accepted
    # res.info["n_diverged"] (set by the driver, kept in checkpoints, summed over Dask tasks): diverged runs are
    # among the failed ones, counted apart; absent when resumed from a checkpoint written without the tally
    if trainer.records:
        res.info["records"] = _records(trainer.kept)
    return res


def sample_sgd(arch: Any, X: Any = None, train: Any = None, n_runs: int | float = 1, seed: int = 0,
               backend: Any = "auto", recipe: Recipe | dict[str, Any] | None = None, start: int = 0,
               batch_size: int | None = None, records: bool = False, progress: bool = False,
               annotations: dict[str, Any] | None = None, checkpoint: str | os.PathLike[str] | None = None,
               resume: bool = False, checkpoint_every: float = 60.0, memory_budget: int | str | None = None,
               client: Any = None, out: str | os.PathLike[str] | None = None, task_size: int | None = None,
               compress: bool = False, checkpoint_samples: int | None = None,
               checkpoint_extra: dict[str, Any] | None = None, options: RunOptions | None = None,
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
    checkpoint, resume, checkpoint_every, checkpoint_samples, checkpoint_extra, memory_budget, client, out,
    task_size, compress
        As in :func:`fastpoly.sample`: P_SGD jobs run through the same driver, so
        checkpoints, resuming (also with :func:`fastpoly.resume`), spilling past a memory budget
        and Dask clusters give byte-identical results (``records`` are kept only for the runs
        trained in this process: not with ``client`` or ``checkpoint``).
    options : RunOptions or None
        All run options at once (:class:`fastpoly.run.options.RunOptions`, with ``start`` and the
        number of runs); then ``n_runs``, ``start``, ``batch_size``, ``progress`` and the options
        above are taken from it and must not be given.

    Returns
    -------
    FunctionCounts
        ``n_samples`` = runs, ``n_accepted`` = runs that fit S (so ``n_samples -
        n_accepted`` failed; also ``info["n_failed"]``), ``meta["sgd_recipe"]`` =
        the whole recipe, ``meta["estimator"] = "psgd"`` (and the legacy ``meta["kind"] = "P_SGD"``).

    Raises
    ------
    ValueError
        Empty or inconsistent train sets, labels not 0/1, bad recipe values.
    """
    tp = _plan(arch, X, train, seed, recipe, recipe_options)
    trainer = backend if isinstance(backend, TrainBackend) else TrainBackend(backend, records=records)
    opts = dict(checkpoint=checkpoint, resume=resume, checkpoint_every=checkpoint_every,
                checkpoint_samples=checkpoint_samples, checkpoint_extra=checkpoint_extra,
                memory_budget=memory_budget, client=client, out=out, task_size=task_size, compress=compress)
    if options is not None:
        if (n_runs, start, batch_size, progress) != (1, 0, None, False) or checkpoint_every != 60.0:
            raise ValueError("with options=, give n_runs, start, batch_size, progress and checkpoint_every there")
        opts = {k: v for k, v in opts.items() if k != "checkpoint_every"}
    return _run(tp, trainer, annotations, _options(n_runs, start, batch_size, progress, opts, options))


def _plan(arch, X, train, seed, recipe, opts):
    if recipe is None:
        # built from the options at once, so that lr / eps left out take the chosen optimizer's defaults
        opts = dict(opts or {})
        if "minibatch" in opts:
            opts["batch_size"] = opts.pop("minibatch")
        unknown = set(opts) - set(Recipe.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown recipe options {sorted(unknown)}; valid: {sorted(Recipe.__dataclass_fields__)}")
        return make_train_plan(arch, X, train, seed, Recipe(**opts))
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
                      options: RunOptions | None = None, **run_options: Any) -> FunctionCounts:
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
    options : RunOptions or None
        All run options at once (then ``n_runs``, ``batch_size``, ``progress`` come from it).
    **run_options
        ``checkpoint``, ``resume``, ``memory_budget``, ``client``, ``out``, ``compress``... as in
        :func:`sample_sgd`.

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
    if options is not None and ((n_runs, batch_size, progress) != (1000, None, False) or run_options):
        raise ValueError("with options=, give n_runs, batch_size, progress and the run options there")
    opts = _options(n_runs, 0, batch_size, progress, run_options, options)
    if opts.start != 0:
        raise ValueError("the anchor experiment runs from index 0 (its leaked callback depends on the first runs)")
    n_runs = opts.n_samples
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
    res = _run(tp, trainer, ann, opts)
    if timing:
        res.info["compile_s"] = timing["compile_s"] + float(res.info.get("compile_s", 0.0) or 0.0)
        res.info["compiled"] = timing["compiled"] or bool(res.info.get("compiled"))
        res.info["leak_table_s"] = timing["leak_table_s"]
    return res


def load_counts(x: Any) -> Any:
    """A counts object as it is, or the counts file at a path loaded."""
    return x if isinstance(x, FunctionCounts) else FunctionCounts.load(x)


def compare(a: Any, b: Any, k: int = 2, target: Any = None, top: int = 10, names: tuple[str, str] = ("a", "b"),
            confidence: float = 0.95) -> _cmp.Comparison:
    """Compare two counts over the same test rows (e.g. P_SGD and P_B): :func:`fastpoly.analysis.compare.compare`.

    ``a`` and ``b`` are :class:`~fastpoly.FunctionCounts` or counts file paths (loaded here).
    """
    return _cmp.compare(load_counts(a), load_counts(b), k=k, target=target, top=top, names=names, confidence=confidence)


def plot_compare(a: Any, b: Any, out: Any = "compare.png", k: int = 1, target: Any = None,
                 names: tuple[str, str] | None = None, title: str | None = None) -> str:
    """The paper's log-log figure of two counts (:func:`fastpoly.analysis.compare.plot_compare`); paths are loaded.

    ``names`` default to what the files' metadata says they estimate (e.g. ``P_SGD(f|S)``, ``P_B(f|S)``).
    """
    return _cmp.plot_compare(load_counts(a), load_counts(b), out=out, k=k, target=target, names=names, title=title)
