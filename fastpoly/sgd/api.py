"""Public entry points of P_SGD sampling.

:func:`sample_sgd` (P_SGD(f|S) as a :class:`~fastpoly.FunctionCounts`) and
:func:`sample_sgd_anchor` (the published Boolean experiment, with or without its callback leak).
"""
from __future__ import annotations

import time

import numpy as np

from fastpoly.backends import resolve_backend_name
from fastpoly.counts import FunctionCounts
from fastpoly.counts.spill import CountAccumulator
from fastpoly.run.driver import result_meta
from fastpoly.run.job import check_n_samples
from fastpoly.sgd.anchor import anchor_problem, anchor_recipe
from fastpoly.sgd.plan import TrainPlan, make_train_plan
from fastpoly.sgd.recipe import Recipe
from fastpoly.sgd.reference import TrainBatch, count_batch, train_range_reference

__all__ = ["TRAIN_BACKENDS", "sample_sgd", "sample_sgd_anchor", "train_runs"]

TRAIN_BACKENDS = ("numpy", "numba")


def _train_backend(backend):
    if backend == "auto":
        try:
            import numba  # noqa: F401
        except ImportError:
            return "numpy"
        return "numba"
    if backend == "cupy":
        raise ValueError("the cupy training backend is not available yet (kernels/train.cu is built and "
                         "host-tested, not wired to CuPy); use backend='numba' or 'numpy'")
    name = resolve_backend_name(backend) if isinstance(backend, str) else None
    if name not in TRAIN_BACKENDS:
        raise ValueError(f"unknown training backend {backend!r}; valid: auto, {', '.join(TRAIN_BACKENDS)}")
    return name


class _Trainer:
    """``train(lo, hi) -> TrainBatch`` for one plan and backend (kernels prepared once)."""

    def __init__(self, tp, backend):
        self.tp = tp
        self.name = _train_backend(backend)
        self._prepared = None

    def __call__(self, lo, hi, params=False):
        if self.name == "numpy":
            return train_range_reference(self.tp, lo, hi, params=params)
        from fastpoly.sgd.numba_kernels import PreparedTrain, train_range_numba

        if self._prepared is None:
            self._prepared = PreparedTrain(self.tp)
        return train_range_numba(self.tp, lo, hi, params=params, prepared=self._prepared)


def train_runs(tp: TrainPlan, lo: int, hi: int, backend="auto", params=False) -> TrainBatch:
    """Per-run results of runs ``lo .. hi-1`` (keys, init keys, status, first-fit epoch, epochs, loss)."""
    return _Trainer(tp, backend)(lo, hi, params=params)


def _records(batches):
    if not batches:
        return {}
    cat = {k: np.concatenate([getattr(b, k) for b in batches]) for k in
           ("keys", "init_keys", "status", "first_fit", "epochs", "loss")}
    cat["index"] = np.concatenate([np.arange(b.lo, b.hi, dtype=np.uint64) for b in batches])
    return cat


def _count(tp, trainer, start, stop, batch_size, records, progress):
    acc = CountAccumulator(tp.plan.n_words)
    kept = []
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=stop - start, unit="runs", unit_scale=True, mininterval=0.5, leave=False)
        except ImportError:  # pragma: no cover
            bar = None
    try:
        pos = start
        while pos < stop:
            hi = min(stop, pos + batch_size)
            b = trainer(pos, hi)
            cb = count_batch(b)
            acc.add(cb.keys, cb.counts, cb.first_index, cb.n_samples, cb.n_accepted, pos, hi)
            if records:
                kept.append(b)
            if bar is not None:
                bar.update(hi - pos)
            pos = hi
        k, c, f = acc.result_arrays()
    finally:
        if bar is not None:
            bar.close()
        acc.cleanup()
    return (k, c, f, acc.n_samples, acc.n_accepted, acc.ranges), kept


def _finish(tp, res, kept, start, annotations, info, records):
    k, c, f, n, n_ok, ranges = res
    meta = result_meta(tp.plan)
    meta.update(tp.compat_meta())
    meta.update(ranges=[list(r) for r in ranges], n_failed=int(n - n_ok), kind="P_SGD")
    if annotations:
        clash = set(annotations) & set(meta)
        if clash:
            raise ValueError(f"annotations may not replace the metadata {sorted(clash)}")
        meta.update(annotations)
    out = FunctionCounts(k, c, f, n, n_ok, meta)
    out.info = dict(info)
    if records:
        out.info["records"] = _records(kept)
    return out


def sample_sgd(arch, X=None, train=None, n_runs=1, seed=0, backend="auto", recipe=None, start=0,
               batch_size=None, records=False, progress=False, annotations=None, **recipe_options):
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
    backend : {"auto", "numba", "numpy"}
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

    Returns
    -------
    FunctionCounts
        ``n_samples`` = runs, ``n_accepted`` = runs that fit S; ``meta["n_failed"]``
        = runs that did not, ``meta["sgd_recipe"]`` = the whole recipe.

    Raises
    ------
    ValueError
        Empty or inconsistent train sets, labels not 0/1, bad recipe values.
    """
    tp = _plan(arch, X, train, seed, recipe, recipe_options)
    n_runs = check_n_samples(n_runs)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    start = int(start)
    trainer = _Trainer(tp, backend)
    bs = _run_batch(batch_size, trainer.name)
    t0 = time.perf_counter()
    res, kept = _count(tp, trainer, start, start + n_runs, bs, records, progress)
    info = {"backend": trainer.name, "batch_size": bs, "elapsed_s": time.perf_counter() - t0}
    return _finish(tp, res, kept, start, annotations, info, records)


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


def _run_batch(bs, name):
    if bs is None:
        return 64 if name == "numpy" else 4096
    if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
        raise ValueError(f"batch_size must be a positive integer, got {bs!r}")
    return int(bs)


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


def sample_sgd_anchor(m=32, epochs_after_fit=1, n_runs=1000, seed=0, backend="auto", callback_leak=True,
                      workers=400, batch_size=None, records=False, progress=False) -> FunctionCounts:
    """The anchor Boolean experiment (nn-pacbayes, Mingard et al. 2021) in one call.

    Parameters
    ----------
    m : {32, 64}
        Train-set size (S = ``RandomState(42069).choice(128, m, replace=False)``).
    epochs_after_fit : int
        1 or 64 in the published runs.
    n_runs : int
    seed : int
    backend : {"auto", "numba", "numpy"}
    callback_leak : bool
        True: emulate the leaked early-stopping callback of the anchor (one callback
        per MPI worker, never reset): run ``i`` belongs to worker ``i % workers``;
        the worker's first run that fits sets ``E`` (its first-fit epoch) and every
        later run of the worker stops at the first fitted epoch end
        ``e >= E + epochs_after_fit``.  False: the intended rule (each run stops at
        its own first fitted epoch end ``e >= e_first + epochs_after_fit``).
    workers : int
        MPI workers of the anchor (400).

    Returns
    -------
    FunctionCounts
        As :func:`sample_sgd`; ``meta["target"]`` holds the target and
        ``meta["sgd_recipe"]["callback_leak_workers"]`` the emulated workers.
    """
    arch, X, train, target_hex = anchor_problem(m)
    tp = make_train_plan(arch, X, train, seed, anchor_recipe(epochs_after_fit))
    n_runs = check_n_samples(n_runs)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    trainer = _Trainer(tp, backend)
    t0 = time.perf_counter()
    if callback_leak:
        E, frm = leak_table(tp, int(workers), n_runs, 0, trainer)
        tp = tp.with_leak(int(workers), E, frm)
        trainer = _Trainer(tp, backend)
    bs = _run_batch(batch_size, trainer.name)
    res, kept = _count(tp, trainer, 0, n_runs, bs, records, progress)
    info = {"backend": trainer.name, "batch_size": bs, "elapsed_s": time.perf_counter() - t0}
    ann = {"target": target_hex, "anchor": {"m": int(m), "callback_leak": bool(callback_leak),
                                            "workers": int(workers) if callback_leak else None}}
    return _finish(tp, res, kept, 0, ann, info, records)

