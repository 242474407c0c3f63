"""P_SGD(f|S) vs P_B^GP(f|S) on real images, per optimizer (the experiment of Mingard et al., JMLR 2021).

:func:`psgd_vs_gp` (CLI: ``fastpoly experiment psgd-vs-gp``) does, for one dataset, one
architecture and several optimizers:

1. loads the data (:func:`fastpoly.data.load`): ``m`` train images and ``|E|`` test images,
   0/1 labels.  Datasets with an official split (MNIST family, CIFAR-10) use the anchor's
   preset ``"nn-pacbayes"`` (label >= C/2 -> 1, pixels / 255, the first ``|E|`` official
   test images in order, ``m`` train images drawn by ``data_seed``); the digits (no official
   split) are scaled by 1/16, labelled digit >= 5 -> 1 and split by a seeded permutation;
2. per optimizer trains ``n_runs`` networks from the prior stream (run ``i`` starts from
   network ``i`` of ``seed``) through the one run driver, with a checkpoint and a counts file
   in ``out/runs/<optimizer>/`` (so ``resume=True`` continues an interrupted run, and a
   finished one is read back: the results are identical), and counts the functions reached on
   the test images (bit ``i`` of a key = test image ``i``);
3. builds the NNGP kernel of the ``m + |E|`` images once, runs EP on S once (``log P(S)``),
   and computes ``log P_B^GP(f|S) = log P(S u f_E) - log P(S)`` (joint EP, the paper's
   definition; :func:`fastpoly.gp.posterior_gp`) for every function some optimizer found at
   least ``min_count`` times -- one call for the union of those functions, so the kernel and
   the EP of S are shared by all optimizers;
4. writes into ``out``: ``results.json`` (data meta with digest, split and transform; the
   architecture; the recipe, seeds, counts and timings per optimizer; the GP's ``log P(S)``
   and settings; the statistics), ``functions.csv`` (one row per optimizer and function seen
   at least ``min_count`` times: key, count, P_SGD, log P_SGD, log P_B^GP, test errors),
   ``psgd_vs_gp.png`` (one panel per optimizer: log P_SGD vs log P_B^GP coloured by test
   errors, with the line y = x), ``mass_by_errors.png`` and ``summary.txt`` (Pearson and
   Spearman r with seeded bootstrap intervals, the mass by number of test errors, the top
   functions);
5. with ``check=N``, checks EP on the ``N`` most frequent evaluated functions where that is
   possible at full scale: the orthant of ``f_E`` under EP's predictive ``q_S`` by EP and by
   minimax tilting (agrees / differs / unreliable when tilting's effective sample size is too
   small), and the joint minus shared ``log P_B^GP`` (how far adding ``f_E`` moves the S sites);
   the S part of EP is not checked there (its error at small m: ``bench/ep_error.py``) unless
   ``check_full`` asks for tilting of the whole orthants, which says where it is unreliable.

Defaults follow the anchor (nn-pacbayes): ``sigma_w = 1``, ``sigma_b = 1/sqrt(n_inputs)``
(0.0357 for 784 pixels, 0.125 for the 8 x 8 digits), cross-entropy, Keras' fit threshold
(logit > 0.5 counts as a correct train label), stop once all train images are fitted plus
``epochs_after_fit`` epochs, minibatch ``min(128, m)`` (the anchor's 128 for MNIST-sized
sets), the optimizers' default learning rates (0.01 for sgd, 0.001 otherwise).  The
architecture presets: ``"fcn"`` = ``n_inputs-40-40-1`` relu, ``"cnn"`` =
``HxWxC-c16k3-c16k3-1`` (two 3 x 3 convolutions, valid padding, then the output); any
architecture string (e.g. ``"784-1024-1024-1"``) is taken as given.

What the numbers are: ``P_SGD(f|S) = count / fitted runs``; runs that did not fit S within
``max_epochs`` are left out (recorded).  ``P_B^GP`` is the EP approximation of the
infinite-width posterior; only functions with ``count >= min_count`` get one (their P_SGD
is resolved to within a factor of about ``1 + 2/sqrt(count)``).  The mass table sums
``P_B^GP`` over the functions evaluated only, so its columns are lower bounds of the GP's
mass at each error count.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fastpoly.atomic import atomic_open, check_writable_folder
from fastpoly.counts import FunctionCounts
from fastpoly.keys import key_to_hex, unpack_bits
from fastpoly.model.architecture import Architecture
from fastpoly.model.spec import parse
from fastpoly.sgd.api import sample_sgd
from fastpoly.sgd.recipe import OPTIMIZERS, Recipe
from fastpoly.version import __version__

__all__ = ["ARCH_PRESETS", "DEFAULT_OPTIMIZERS", "correlations", "experiment_arch", "experiment_data", "parse_lr",
           "psgd_vs_gp"]

#: the four optimizers of the paper, in its order
DEFAULT_OPTIMIZERS = ("sgd", "adam", "adagrad", "rmsprop")
#: architecture presets (filled with the data's input size / image shape)
ARCH_PRESETS = {"fcn": "{n}-40-40-1", "cnn": "{h}x{w}x{c}-c16k3-c16k3-1"}
#: files written into ``out`` (besides ``runs/``)
OUTPUT_FILES = ("results.json", "functions.csv", "psgd_vs_gp.png", "mass_by_errors.png", "summary.txt")
_CSV_FIELDS = ("optimizer", "key", "count", "p_sgd", "log_p_sgd", "log_p_gp", "test_errors")
#: columns added to ``functions.csv`` with ``check > 0`` (empty for the functions not checked)
_CHECK_FIELDS = ("check", "check_ep_shared", "check_tilting", "check_tilting_stderr", "check_tilting_ess",
                 "check_diff", "check_joint_minus_shared")
#: columns added with ``check_full`` (the whole log P_B^GP by tilting of both orthants)
_CHECK_FULL_FIELDS = ("check_full", "check_full_tilting", "check_full_stderr", "check_full_ess", "check_full_diff")
#: what the full-scale check does not cover (written into results.json and summary.txt)
CHECK_NOT_COVERED = (
    "the S part of EP: the EP log P(S) and the S sites at the joint fixed point are not checked here; "
    "their error is measured by bench/ep_error.py at the small m where minimax tilting of the full "
    "orthants is reliable (up to m ~ 256 on the digits FCN kernel: bench/results/ep-error/, docs/guide/gp.md)")
#: with ``check_full``: the S part is checked where tilting's effective sample size holds
CHECK_FULL_NOTE = (
    "the S part of EP is checked by tilting of the full m- and (m + |E|)-dimensional orthants only where tilting's "
    "effective sample size holds (verdict 'unreliable' otherwise; on the digits FCN kernel it holds up to m ~ 256: "
    "bench/results/ep-error/, docs/guide/gp.md)")


def _int(v: Any, what: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{what} must be an integer >= {lo}, got {v!r}")
    return int(v)


def experiment_data(data: str = "digits", data_path: str | os.PathLike[str] | None = None, n_train: int = 1000,
                    n_test: int = 100, data_seed: int = 0) -> Any:
    """The experiment's :class:`fastpoly.data.Dataset` (see the module docstring for the conventions).

    Raises
    ------
    ValueError
        Unknown dataset, missing or malformed files, sizes larger than the split.
    """
    from fastpoly.data import load, source

    n_train = _int(n_train, "the number of train images", 1)
    n_test = _int(n_test, "the number of test images", 1)
    src = source(data)
    if src.official_split:
        return load(data, data_path, preset="nn-pacbayes", n_train=n_train, n_test=n_test, seed=data_seed)
    return load(data, data_path, binarize="threshold", normalize="scale", n_train=n_train, n_test=n_test,
                seed=data_seed, split="pooled")


def experiment_arch(arch: str | Architecture, image_shape: Sequence[int], sigma_w: float = 1.0,
                    sigma_b: float | None = None) -> Architecture:
    """The architecture: a preset (``"fcn"``, ``"cnn"``) or a string such as ``"8x8x1-c16k3-c16k3-1"``.

    ``sigma_b`` None: ``1/sqrt(n_inputs)`` (the anchor's rule).  An :class:`Architecture` is
    returned as given (its own ``sigma_w``, ``sigma_b``).

    Raises
    ------
    ValueError
        Unknown preset, bad string, or inputs that do not match the images.
    """
    shape = tuple(int(s) for s in image_shape)
    h, w, c = (shape + (1, 1, 1))[:3] if len(shape) >= 2 else (shape[0], 1, 1)
    n_in = int(np.prod(shape))
    if isinstance(arch, Architecture):
        a = arch
    else:
        if not isinstance(arch, str):
            raise ValueError(f"arch must be 'fcn', 'cnn' or an architecture string, got {type(arch).__name__}")
        spec = ARCH_PRESETS[arch].format(n=n_in, h=h, w=w, c=c) if arch in ARCH_PRESETS else arch
        sb = 1.0 / math.sqrt(n_in) if sigma_b is None else sigma_b
        a = parse(spec, sigma_w=sigma_w, sigma_b=sb)
    if a.n_inputs != n_in:
        raise ValueError(f"the architecture takes {a.n_inputs} inputs, the images have {n_in} "
                         f"(shape {'x'.join(map(str, shape))})")
    if len(a.input_shape) == 3 and tuple(a.input_shape) != (h, w, c):
        raise ValueError(f"the architecture's images are {'x'.join(map(str, a.input_shape))}, the data's "
                         f"{h}x{w}x{c}")
    return a


def correlations(x: np.ndarray, y: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, Any]:
    """Pearson and Spearman r of ``(x, y)`` with percentile bootstrap intervals (pairs resampled, seeded).

    Returns
    -------
    dict
        ``n``, ``pearson``, ``pearson_ci``, ``spearman``, ``spearman_ci`` (None where undefined:
        fewer than 3 points or a constant coordinate), ``n_boot``, ``seed``, ``confidence``.
    """
    from scipy.stats import rankdata

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n = int(x.size)
    out: dict[str, Any] = {"n": n, "pearson": None, "pearson_ci": None, "spearman": None, "spearman_ci": None,
                           "n_boot": int(n_boot), "seed": int(seed), "confidence": confidence}

    def r(a: np.ndarray, b: np.ndarray) -> float:
        if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
            return math.nan
        return float(np.corrcoef(a, b)[0, 1])

    if n < 3:
        return out
    rx, ry = rankdata(x), rankdata(y)
    p, s = r(x, y), r(rx, ry)
    out["pearson"] = None if math.isnan(p) else p
    out["spearman"] = None if math.isnan(s) else s
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        bp, bs = [], []
        for _ in range(int(n_boot)):
            i = rng.integers(0, n, n)
            bp.append(r(x[i], y[i]))
            bs.append(r(rankdata(x[i]), rankdata(y[i])))
        q = [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100]
        for name, v in (("pearson_ci", bp), ("spearman_ci", bs)):
            a = np.asarray(v)
            a = a[np.isfinite(a)]
            if a.size:
                lo, hi = np.percentile(a, q)
                out[name] = [float(lo), float(hi)]
    return out


def _errors(keys: np.ndarray, n_test: int, truth: np.ndarray) -> np.ndarray:
    if keys.shape[0] == 0:
        return np.zeros(0, np.int64)
    bits = unpack_bits(np.asarray(keys), n_test).astype(bool)
    return np.count_nonzero(bits != truth[None, :], axis=1).astype(np.int64)


def parse_lr(lr: Any, optimizers: Sequence[str]) -> dict[str, float | None]:
    """Learning rate per optimizer from None, a number, a dict, or a string ``"0.01"`` / ``"sgd=0.05,adagrad=0.01"``.

    Optimizers not named get their default (None).

    Raises
    ------
    ValueError
        Malformed text, an optimizer not in ``optimizers``, or a value that is not a number.
    """
    if lr is None:
        return {o: None for o in optimizers}
    if isinstance(lr, str):
        text = lr.strip()
        if "=" not in text:
            try:
                return {o: float(text) for o in optimizers}
            except ValueError:
                raise ValueError(f"lr must be a number or OPTIMIZER=LR,..., got {lr!r}") from None
        d: dict[str, Any] = {}
        for part in text.split(","):
            name, eq, val = part.partition("=")
            try:
                d[name.strip().lower()] = float(val) if eq else None
            except ValueError:
                raise ValueError(f"lr must be a number or OPTIMIZER=LR,..., got {lr!r}") from None
            if not eq:
                raise ValueError(f"lr must be a number or OPTIMIZER=LR,..., got {lr!r}")
        lr = d
    if isinstance(lr, dict):
        bad = sorted(set(lr) - set(optimizers))
        if bad:
            raise ValueError(f"lr names optimizers that are not run: {', '.join(map(str, bad))}")
        return {o: (None if lr.get(o) is None else lr[o]) for o in optimizers}
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
        raise ValueError(f"lr must be a number, a dict or a string, got {type(lr).__name__}")
    return {o: float(lr) for o in optimizers}


def _recipe(optimizer: str, minibatch: int, max_epochs: int, epochs_after_fit: int, fit_threshold: float,
            loss: str, lr: float | None) -> Recipe:
    return Recipe(optimizer=optimizer, lr=lr, loss=loss, batch_size=minibatch, max_epochs=max_epochs,
                  fit_threshold=fit_threshold, epochs_after_fit=epochs_after_fit)


def _train_one(arch: Architecture, X: np.ndarray, train: tuple[np.ndarray, np.ndarray], n_runs: int, seed: int,
               recipe: Recipe, folder: str, resume: bool, backend: Any, progress: bool) -> tuple[FunctionCounts,
                                                                                                 float]:
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    res = sample_sgd(arch, X, train, n_runs, seed=seed, backend=backend, recipe=recipe, progress=progress,
                     checkpoint=os.path.join(folder, "checkpoint"), resume=resume, checkpoint_every=60.0,
                     out=os.path.join(folder, "counts.npz"))
    return res, time.perf_counter() - t0


def psgd_vs_gp(
    out: str | os.PathLike[str],
    *,
    data: str = "digits",
    data_path: str | os.PathLike[str] | None = None,
    arch: str | Architecture = "fcn",
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
    n_train: int = 1000,
    n_test: int = 100,
    n_runs: int = 1000,
    min_count: int = 2,
    seed: int = 0,
    data_seed: int = 0,
    sigma_w: float = 1.0,
    sigma_b: float | None = None,
    minibatch: int | None = None,
    max_epochs: int = 1000,
    epochs_after_fit: int = 64,
    fit_threshold: float = 0.5,
    loss: str = "ce",
    lr: float | str | dict[str, float] | None = None,
    backend: Any = "auto",
    linalg: str = "auto",
    gp_mode: str = "joint",
    max_functions: int | None = None,
    check: int = 0,
    check_samples: int = 20_000,
    check_seed: int = 0,
    check_full: bool = False,
    n_boot: int = 1000,
    boot_seed: int = 0,
    resume: bool = False,
    progress: bool = False,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Run the experiment and write its files into ``out`` (see the module docstring).

    Parameters
    ----------
    out : path
        Output folder (created).  Holding an earlier ``results.json`` it is refused unless
        ``resume`` (which continues or re-reads the runs and recomputes the rest identically).
    data, data_path, n_train, n_test, data_seed
        The dataset (:func:`experiment_data`).
    arch : {"fcn", "cnn"}, an architecture string or an Architecture
        See :func:`experiment_arch`; ``sigma_w``, ``sigma_b`` apply to presets and strings.
    optimizers : sequence of {"sgd", "adam", "adagrad", "rmsprop"}
    n_runs : int
        Training runs per optimizer.
    min_count : int
        Functions found at least this many times by an optimizer get ``log P_B^GP``.
    seed : int
        Stream seed of the initialisations and minibatch orders (the same for every optimizer:
        run ``i`` of each optimizer starts from the same network).
    minibatch, max_epochs, epochs_after_fit, fit_threshold, loss, lr
        The recipe (:class:`fastpoly.sgd.recipe.Recipe`); ``minibatch`` None: ``min(128, m)``;
        ``lr``: one number for all, or per optimizer (:func:`parse_lr`); None: each optimizer's
        default.
    backend
        Training backend (``"auto"``, ``"numba"``, ``"numpy"``, ``"cupy"``).
    linalg : {"auto", "numpy", "cupy"}
        EP's linear algebra.
    gp_mode : {"joint", "shared"}
        :func:`fastpoly.gp.posterior_gp`'s mode (joint: the paper's definition).
    max_functions : int or None
        At most this many functions get ``log P_B^GP`` (the most frequent first, by their
        largest count over the optimizers); None: all with ``count >= min_count``.
    check : int
        Check EP on the ``check`` most frequent evaluated functions (0: no check), with what can
        be checked at full scale: (a) the E part -- the orthant of ``f_E`` under EP's predictive
        ``q_S`` on the test images, by EP (the shared mode's ``log P_B^GP``) and by minimax tilting
        (:func:`fastpoly.gp.scale.gaussian_orthants` with ``check=True``: ``agrees`` / ``differs`` /
        ``unreliable`` where tilting's effective sample size is too small); (b) joint minus shared
        ``log P_B^GP``: how much adding ``f_E`` moves the S sites.  It does not check the S part of
        EP (:data:`CHECK_NOT_COVERED`).  Adds the ``check_*`` columns to ``functions.csv``, a
        ``gp["check"]`` block to ``results.json`` and lines to ``summary.txt``.
    check_samples, check_seed : int
        Tilting's importance samples and seed (function ``j`` of the check: ``check_seed + j``).
    check_full : bool
        Also estimate the whole ``log P_B^GP = log P(S u f_E) - log P(S)`` of the checked functions by
        minimax tilting of both orthants (``m`` and ``m + |E|`` dimensions; standard errors in quadrature) and
        compare it with EP: the S part too, but only where tilting's effective sample size holds
        (on the digits FCN kernel up to m ~ 256); beyond, the verdict is ``unreliable``.  Cost: one
        tilting of an ``(m + |E|)``-dimensional orthant per function (seconds at m = 1000).
    n_boot, boot_seed
        Bootstrap resamples and seed of the correlation intervals.
    resume : bool
        Continue (or re-read) the checkpointed runs in ``out/runs``.
    progress : bool
        Progress bars while training.
    log : callable or None
        Given one line before each step (e.g. ``print``).

    Returns
    -------
    dict
        The content of ``results.json``.

    Raises
    ------
    ValueError
        Bad options, data or architecture; an ``out`` with earlier results and ``resume`` False.
    """
    from fastpoly.gp.kernels import kernel
    from fastpoly.gp.scale import kernel_blocked, posterior_gp

    say = log or (lambda msg: None)
    t_all = time.perf_counter()
    opts = [str(o).strip().lower() for o in (optimizers.split(",") if isinstance(optimizers, str) else optimizers)]
    if not opts or any(o not in OPTIMIZERS for o in opts):
        raise ValueError(f"optimizers must be a non-empty list of {', '.join(OPTIMIZERS)}, got {optimizers!r}")
    if len(set(opts)) != len(opts):
        raise ValueError(f"optimizers repeat: {','.join(opts)}")
    n_runs = _int(n_runs, "the number of runs", 1)
    min_count = _int(min_count, "min_count", 1)
    n_boot = _int(n_boot, "n_boot", 0)
    if max_functions is not None:
        max_functions = _int(max_functions, "max_functions", 1)
    check = _int(check, "check", 0)
    check_samples = _int(check_samples, "check_samples", 2)
    check_seed = _int(check_seed, "check_seed", 0)
    if not isinstance(check_full, bool):
        raise ValueError(f"check_full must be True or False, got {check_full!r}")
    if check_full and not check:
        raise ValueError("check_full needs check > 0 (the functions to check)")
    if gp_mode not in ("joint", "shared"):
        raise ValueError(f"unknown gp mode {gp_mode!r}; valid: joint, shared")
    if linalg not in ("auto", "numpy", "cupy"):
        raise ValueError(f"unknown linalg {linalg!r}; valid: auto, numpy, cupy")
    if linalg == "cupy" and importlib.util.find_spec("cupy") is None:
        raise ImportError('linalg="cupy" needs CuPy (pip install "fastpoly[gpu]")')
    out = check_writable_folder(out, "output folder")
    if os.path.exists(os.path.join(out, "results.json")) and not resume:
        raise ValueError(f"{out} holds the results of an earlier experiment; pass resume=True (CLI: --resume) "
                         "to continue or recompute them, or choose another folder")

    t0 = time.perf_counter()
    ds = experiment_data(data, data_path, n_train, n_test, data_seed)
    t_data = time.perf_counter() - t0
    a = experiment_arch(arch, ds.meta["image_shape"], sigma_w, sigma_b)
    m, k = ds.X_train.shape[0], ds.X_test.shape[0]
    mb = min(128, m) if minibatch is None else _int(minibatch, "minibatch", 1)
    lrs = parse_lr(lr, opts)
    recipes = {o: _recipe(o, mb, max_epochs, epochs_after_fit, fit_threshold, loss, lrs[o]) for o in opts}
    X = np.vstack([ds.X_train, ds.X_test]).astype(np.float32)
    train = (np.arange(m, dtype=np.int64), np.asarray(ds.y_train, np.uint8))
    truth = np.asarray(ds.y_test, bool)
    say(f"{ds.name}: {m} train / {k} test images, {a.spec}; {n_runs:,} runs per optimizer ({', '.join(opts)})")

    per: dict[str, dict[str, Any]] = {}
    counts: dict[str, FunctionCounts] = {}
    for o in opts:
        say(f"training {n_runs:,} networks with {o} ...")
        res, dt = _train_one(a, X, train, n_runs, seed, recipes[o], os.path.join(out, "runs", o), resume,
                             backend, progress)
        counts[o] = res
        c = np.asarray(res.counts, np.int64)
        errs = _errors(np.asarray(res.keys), k, truth)
        keep = c >= min_count
        per[o] = {"recipe": recipes[o].to_dict(), "n_runs": int(res.n_samples), "n_fitted": int(res.n_accepted),
                  "n_failed": int(res.n_samples - res.n_accepted), "distinct": int(res.n_distinct),
                  "functions_min_count": int(keep.sum()), "runs_min_count": int(c[keep].sum()),
                  "p_sgd_min_count": float(c[keep].sum() / res.n_accepted) if res.n_accepted else 0.0,
                  "mean_test_errors": float(np.sum(c * errs) / max(1, c.sum())) if c.size else None,
                  "counts_file": os.path.join("runs", o, "counts.npz"),
                  "seconds": dt, "resumed_from": res.info.get("resumed_from"),
                  "read_back": bool(res.info.get("already_complete")), "backend": str(backend),
                  "engine": res.meta.get("engine")}
        say(f"  {o}: {res.n_accepted:,} of {res.n_samples:,} runs fitted S, {res.n_distinct:,} distinct functions, "
            f"{int(keep.sum())} seen >= {min_count} times ({dt:.1f} s)")

    # the union of the functions to evaluate, most frequent first (ties by key)
    best: dict[bytes, tuple[int, np.ndarray]] = {}
    for o in opts:
        res = counts[o]
        keys = np.asarray(res.keys)
        for jj in np.flatnonzero(np.asarray(res.counts) >= min_count):
            kb = keys[jj].tobytes()
            cj = int(res.counts[jj])
            if kb not in best or best[kb][0] < cj:
                best[kb] = (cj, keys[jj])
    order = sorted(best, key=lambda kb: (-best[kb][0], kb))
    if max_functions is not None:
        order = order[:max_functions]
    fkeys = np.array([best[kb][1] for kb in order], np.uint64).reshape(len(order), (k + 63) // 64)

    gp: dict[str, Any] = {"mode": gp_mode, "route": "ep", "n_functions": len(order), "max_functions": max_functions}
    log_gp: dict[bytes, float] = {}
    if order:
        say(f"NNGP kernel of {m + k} images ...")
        t0 = time.perf_counter()
        K = kernel(a, X) if len(a.input_shape) == 3 else kernel_blocked(a, X)
        gp["seconds_kernel"] = time.perf_counter() - t0
        say(f"EP: log P(S) once, then log P_B^GP of {len(order)} functions ({gp_mode}) ...")
        t0 = time.perf_counter()
        post = posterior_gp(a, ds.X_train, ds.y_train, ds.X_test, unpack_bits(fkeys, k).astype(np.uint8), K=K,
                            mode=gp_mode, linalg=linalg, data_meta=ds.meta)
        gp["seconds_posterior"] = time.perf_counter() - t0
        gp["log_p_S"] = post.log_p_S
        gp["pac_bayes_bound"] = post.meta["gp"].get("pac_bayes_bound")
        gp["conditioning"] = post.meta["gp"].get("conditioning")
        gp["method"] = post.method
        gp["not_converged"] = int(sum(1 for d in post.diagnostics if d.get("converged") is False))
        for i_f, kb in enumerate(order):
            log_gp[kb] = float(post.log_p[i_f])
        say(f"  log P(S) = {post.log_p_S:.3f}; {gp['seconds_posterior']:.1f} s")
        if check:
            n_chk = min(check, len(order))
            say(f"check: EP's E orthant against minimax tilting for the {n_chk} most frequent functions ...")
            t0 = time.perf_counter()
            gp["check"] = _check(a, ds, K, fkeys[:n_chk], [log_gp[kb] for kb in order[:n_chk]], gp_mode, linalg,
                                 check_samples, check_seed, truth, check_full)
            gp["seconds_check"] = time.perf_counter() - t0
            c_ = gp["check"]
            say(f"  {c_['agrees']} agree, {c_['differs']} differ, {c_['unreliable']} unreliable; "
                f"{gp['seconds_check']:.1f} s")
        del K

    checked = {f["key"]: {"check": f["check"].split(":")[0], "check_ep_shared": f["log_p_shared"],
                          "check_tilting": f["tilting_log_p"], "check_tilting_stderr": f["tilting_stderr"],
                          "check_tilting_ess": f["tilting_ess"], "check_diff": f["check_diff"],
                          "check_joint_minus_shared": f["joint_minus_shared"],
                          **({"check_full": f["full_check"], "check_full_tilting": f["full_tilting"],
                              "check_full_stderr": f["full_stderr"], "check_full_ess": f["full_ess"],
                              "check_full_diff": f["full_diff"]} if "full_check" in f else {})}
               for f in gp.get("check", {}).get("functions", [])}
    rows: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    for o in opts:
        res = counts[o]
        keys, c = np.asarray(res.keys), np.asarray(res.counts, np.int64)
        n_fit = int(res.n_accepted)
        errs = _errors(keys, k, truth)
        sel = [j for j in np.flatnonzero(c >= min_count) if keys[j].tobytes() in log_gp]
        sel.sort(key=lambda j: (-int(c[j]), keys[j].tobytes()))
        xs, ys = [], []
        for j in sel:
            p = c[j] / n_fit
            lg = log_gp[keys[j].tobytes()]
            row = {"optimizer": o, "key": key_to_hex(keys[j], k), "count": int(c[j]), "p_sgd": float(p),
                   "log_p_sgd": float(math.log(p)), "log_p_gp": lg, "test_errors": int(errs[j])}
            if check:
                row.update(checked.get(row["key"], {}))
            rows.append(row)
            xs.append(lg)
            ys.append(math.log(p))
        st = correlations(np.array(xs), np.array(ys), n_boot, boot_seed)
        # mass by number of test errors: P_SGD over every function found, and over the evaluated ones;
        # P_B^GP summed over the evaluated functions (a lower bound of the GP's mass there)
        mass: dict[int, list[float]] = {}
        for i_f in range(c.size):
            mass.setdefault(int(errs[i_f]), [0.0, 0.0, 0.0])[0] += c[i_f] / n_fit
        for j in sel:
            e = int(errs[j])
            mass[e][1] += c[j] / n_fit
            mass[e][2] += math.exp(log_gp[keys[j].tobytes()])
        st["mass_by_errors"] = [{"errors": e, "p_sgd_all": v[0], "p_sgd_evaluated": v[1], "p_gp_evaluated": v[2]}
                                for e, v in sorted(mass.items())]
        stats[o] = st

    meta = {
        "experiment": "psgd-vs-gp",
        "fastpoly_version": __version__,
        "data": ds.meta,
        "arch": a.to_dict(),
        "arch_spec": a.spec,
        "sigma_w": getattr(a, "sigma_w", sigma_w) if isinstance(arch, Architecture) else sigma_w,
        "sigma_b": (getattr(a, "sigma_b", None) if isinstance(arch, Architecture)
                    else 1.0 / math.sqrt(a.n_inputs) if sigma_b is None else sigma_b),
        "n_train": m, "n_test": k, "n_runs": n_runs, "min_count": min_count, "seed": seed, "data_seed": data_seed,
        "optimizers": per,
        "gp": gp,
        "stats": stats,
        "bootstrap": {"n_boot": n_boot, "seed": boot_seed, "confidence": 0.95, "resampled": "functions (pairs)"},
        "timings": {"data_s": t_data, "total_s": time.perf_counter() - t_all},
    }
    _write(out, meta, rows, opts, k, check > 0, check_full)
    say(f"wrote {', '.join(OUTPUT_FILES)} in {out}")
    return meta


def _full_verdict(diff: float, se: float, ok: bool) -> str:
    if not ok:
        return "unreliable"
    return "agrees" if abs(diff) <= max(5 * se, 0.01) else "differs"


def _check(a: Architecture, ds: Any, K: np.ndarray, fkeys: np.ndarray, log_joint: list[float], gp_mode: str,
           linalg: str, n_samples: int, seed: int, truth: np.ndarray, full: bool = False) -> dict[str, Any]:
    """The full-scale checks of EP for the functions ``fkeys`` (see :func:`psgd_vs_gp`'s ``check``)."""
    from fastpoly.gp.scale import posterior_gp

    k = truth.size
    bits = unpack_bits(fkeys, k).astype(np.uint8)
    sh = posterior_gp(a, ds.X_train, ds.y_train, ds.X_test, bits, K=K, mode="shared", check=True,
                      n_samples=n_samples, seed=seed, linalg=linalg)
    errs = _errors(fkeys, k, truth)
    funcs: list[dict[str, Any]] = []
    for j in range(bits.shape[0]):
        dj = sh.diagnostics[j]
        ls = float(sh.log_p[j])
        funcs.append({"key": key_to_hex(fkeys[j], k), "test_errors": int(errs[j]), "log_p_gp": log_joint[j],
                      "log_p_shared": ls, "tilting_log_p": float(dj["tilting_log_p"]),
                      "tilting_stderr": float(dj["tilting_stderr"]), "tilting_ess": float(dj["tilting_ess"]),
                      "check": str(dj["check"]),
                      "check_diff": float(dj["check_diff"]) if "check_diff" in dj else None,
                      "joint_minus_shared": log_joint[j] - ls if gp_mode == "joint" else None,
                      "tilting_seed": seed + j})
    full_block: dict[str, Any] | None = None
    if full:
        from fastpoly.gp.tilting import tilting_log_prob

        m = ds.X_train.shape[0]
        sS = np.where(np.asarray(ds.y_train) == 1, 1.0, -1.0)
        # seeds: [seed, 1] for P(S), [seed, 2, j] for P(S u f_E) of function j
        tS = tilting_log_prob(K[:m, :m] * np.outer(sS, sS), n_samples=n_samples, seed=np.random.default_rng([seed, 1]))
        okS = "warning" not in tS.diagnostics
        full_block = {"tilting_log_p_S": tS.log_p, "tilting_log_p_S_stderr": tS.stderr,
                      "tilting_log_p_S_ess": float(tS.diagnostics["ess"]), "ep_log_p_S": sh.log_p_S,
                      "log_p_S_diff": sh.log_p_S - tS.log_p,
                      "log_p_S_check": _full_verdict(sh.log_p_S - tS.log_p, tS.stderr, okS),
                      "seeds": "numpy.random.default_rng([seed, 1]) for P(S), ([seed, 2, j]) for P(S u f_E) of function j"}
        for j, f in enumerate(funcs):
            s_all = np.concatenate([sS, np.where(bits[j] == 1, 1.0, -1.0)])
            t = tilting_log_prob(K * np.outer(s_all, s_all), n_samples=n_samples,
                                 seed=np.random.default_rng([seed, 2, j]))
            ok = okS and "warning" not in t.diagnostics
            tl = t.log_p - tS.log_p
            se = math.hypot(t.stderr, tS.stderr)
            f.update(full_tilting=tl, full_stderr=se, full_ess=min(float(t.diagnostics["ess"]),
                                                                   full_block["tilting_log_p_S_ess"]),
                     full_diff=log_joint[j] - tl if ok else None, full_check=_full_verdict(log_joint[j] - tl, se, ok))
    verdict = [f["check"].split(":")[0] for f in funcs]
    diffs: list[float] = [abs(f["check_diff"]) for f in funcs if f["check_diff"] is not None]
    jms: list[float] = [f["joint_minus_shared"] for f in funcs if f["joint_minus_shared"] is not None]
    return {"n": len(funcs), "n_samples": n_samples, "seed": seed, "agrees": verdict.count("agrees"),
            "differs": verdict.count("differs"), "unreliable": verdict.count("unreliable"),
            "max_abs_diff": max(diffs) if diffs else None,
            "joint_minus_shared_range": [min(jms), max(jms)] if jms else None,
            "log_p_S_shared": sh.log_p_S,
            "covers": "(a) the E part: the orthant of f_E under EP's predictive q_S on the test images, EP "
                      "against minimax tilting; (b) joint minus shared log P_B^GP: how much adding f_E moves "
                      "the S sites" + ("; (c) the whole log P_B^GP by tilting of both orthants, where tilting's "
                                       "effective sample size holds" if full else ""),
            "not_covered": CHECK_NOT_COVERED if full_block is None else CHECK_FULL_NOTE,
            "full": full_block, "functions": funcs}


# --------------------------------------------------------------------------- output files

def _num(v: Any, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _write(out: str, meta: dict[str, Any], rows: list[dict[str, Any]], opts: list[str], k: int,
           check: bool = False, full: bool = False) -> None:
    fields = list(_CSV_FIELDS) + (list(_CHECK_FIELDS) if check else []) + (list(_CHECK_FULL_FIELDS) if full else [])
    with atomic_open(os.path.join(out, "functions.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            rr = {**r, "p_sgd": f"{r['p_sgd']:.10g}", "log_p_sgd": f"{r['log_p_sgd']:.6f}",
                  "log_p_gp": f"{r['log_p_gp']:.6f}"}
            if check:
                rr.update({c: _num(r.get(c), ".6f") for c in _CHECK_FIELDS[1:]})
                rr["check_tilting_ess"] = _num(r.get("check_tilting_ess"), ".1f")
                rr["check"] = r.get("check", "")
            if full:
                rr.update({c: _num(r.get(c), ".6f") for c in _CHECK_FULL_FIELDS[1:]})
                rr["check_full_ess"] = _num(r.get("check_full_ess"), ".1f")
                rr["check_full"] = r.get("check_full", "")
            w.writerow(rr)
    with atomic_open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(summary_text(meta, rows))
    _figures(out, meta, rows, opts, k)
    with atomic_open(os.path.join(out, "results.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=False, default=_jsonable)
        f.write("\n")


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (set, tuple)):
        return list(x)
    return str(x)


def _fmt_r(st: dict[str, Any], name: str) -> str:
    v, ci = st.get(name), st.get(name + "_ci")
    if v is None:
        return "n/a"
    return f"{v:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def summary_text(meta: dict[str, Any], rows: list[dict[str, Any]], top: int = 10) -> str:
    """The text report: setup, correlations, mass by test errors, top functions per optimizer."""
    d = meta["data"]
    gp = meta["gp"]
    L = [f"P_SGD(f|S) vs P_B^GP(f|S): {d['dataset']} ({d['transform']['binarize']}, {d['transform']['normalize']}), "
         f"m = {meta['n_train']} train, {meta['n_test']} test images, {meta['arch_spec']} "
         f"(sigma_w {meta['sigma_w']}, sigma_b "
         f"{meta['sigma_b'] if meta['sigma_b'] is None else format(meta['sigma_b'], '.4g')})",
         f"runs per optimizer {meta['n_runs']:,}, seed {meta['seed']}; P_B^GP for functions seen >= "
         f"{meta['min_count']} times ({gp['n_functions']} functions, EP {gp['mode']}); "
         f"log P(S) = {gp.get('log_p_S', float('nan')):.3f}",
         "",
         f"{'optimizer':10s} {'fitted':>8s} {'distinct':>8s} {'>=k':>5s} {'P_SGD(>=k)':>10s} "
         f"{'Pearson r [95% CI]':>26s} {'Spearman r [95% CI]':>26s}"]
    for o, p in meta["optimizers"].items():
        st = meta["stats"][o]
        L.append(f"{o:10s} {p['n_fitted']:8,d} {p['distinct']:8,d} {p['functions_min_count']:5d} "
                 f"{p['p_sgd_min_count']:10.3f} {_fmt_r(st, 'pearson'):>26s} {_fmt_r(st, 'spearman'):>26s}")
    L += ["", "mass by number of test errors (P_SGD over all functions found; P_SGD and P_B^GP over the "
              "functions evaluated):"]
    for o in meta["optimizers"]:
        L.append(f"  {o}:  errors  P_SGD(all)  P_SGD(eval)  P_B^GP(eval)")
        for r in meta["stats"][o]["mass_by_errors"]:
            L.append(f"  {'':{len(o)}s}   {r['errors']:6d}  {r['p_sgd_all']:10.4f}  {r['p_sgd_evaluated']:11.4f}  "
                     f"{r['p_gp_evaluated']:12.3e}")
    L += ["", f"top functions (at most {top} per optimizer; key: hex, bit i = test image i):"]
    for o in meta["optimizers"]:
        mine = [r for r in rows if r["optimizer"] == o][:top]
        L.append(f"  {o}:  {'count':>6s} {'P_SGD':>8s} {'log P_SGD':>9s} {'log P_B^GP':>10s} {'errors':>6s}  key")
        for r in mine:
            L.append(f"  {'':{len(o)}s}   {r['count']:6d} {r['p_sgd']:8.4f} {r['log_p_sgd']:9.3f} "
                     f"{r['log_p_gp']:10.3f} {r['test_errors']:6d}  {r['key']}")
    if "check" in gp:
        L += [""] + check_text(gp["check"])
    return "\n".join(L) + "\n"


def check_text(c: dict[str, Any]) -> list[str]:
    """The lines of ``summary.txt`` that report the EP check (``results.json``'s ``gp["check"]``)."""
    mx = c["max_abs_diff"]
    jr = c["joint_minus_shared_range"]
    L = [f"EP check on the {c['n']} most frequent evaluated functions (minimax tilting, {c['n_samples']:,} "
         f"samples, seed {c['seed']} + j):",
         f"  covers: {c['covers']}.",
         f"  does NOT cover: {c['not_covered']}.",
         f"  E part: {c['agrees']} agree (within 5 standard errors or 0.01 nats), {c['differs']} differ, "
         f"{c['unreliable']} unreliable (tilting's effective sample size below 1 % of its samples: no verdict)"
         + ("" if mx is None else f"; largest |EP - tilting| where judged: {mx:.3f} nats") + ".",
         ("  joint - shared log P_B^GP (the S sites' response to f_E): "
          + ("n/a (shared mode)" if jr is None else f"{jr[0]:+.3f} to {jr[1]:+.3f} nats") + "."),
         f"  {'errors':>6s} {'log P_B^GP':>10s} {'EP(f_E|q_S)':>11s} {'tilting':>9s} {'+-':>7s} {'ESS':>8s} "
         f"{'EP-tilt':>8s} {'joint-shd':>9s}  verdict     key"]
    for f in c["functions"]:
        L.append(f"  {f['test_errors']:6d} {f['log_p_gp']:10.3f} {f['log_p_shared']:11.3f} "
                 f"{f['tilting_log_p']:9.3f} {f['tilting_stderr']:7.4f} {f['tilting_ess']:8.0f} "
                 f"{_num(f['check_diff'], '+8.3f') or 'n/a':>8s} {_num(f['joint_minus_shared'], '+9.3f') or 'n/a':>9s}"
                 f"  {f['check'].split(':')[0]:10s}  {f['key']}")
    fb = c.get("full")
    if fb:
        fv = [f["full_check"] for f in c["functions"]]
        L += ["", "  the whole log P_B^GP by tilting of both orthants (S and S u f_E; standard errors in quadrature):",
              f"  log P(S): EP {fb['ep_log_p_S']:.3f}, tilting {fb['tilting_log_p_S']:.3f} +- "
              f"{fb['tilting_log_p_S_stderr']:.3f} (ESS {fb['tilting_log_p_S_ess']:.0f}): {fb['log_p_S_check']}",
              f"  log P_B^GP: {fv.count('agrees')} agree, {fv.count('differs')} differ, {fv.count('unreliable')} "
              "unreliable (tilting's effective sample size below 1 % of its samples on either orthant: no verdict; "
              "the tilting values are then not to be trusted)",
              f"  {'errors':>6s} {'log P_B^GP':>10s} {'tilting':>9s} {'+-':>7s} {'ESS':>8s} {'EP-tilt':>8s}  verdict     key"]
        for f in c["functions"]:
            L.append(f"  {f['test_errors']:6d} {f['log_p_gp']:10.3f} {f['full_tilting']:9.3f} {f['full_stderr']:7.4f} "
                     f"{f['full_ess']:8.0f} {_num(f['full_diff'], '+8.3f') or 'n/a':>8s}  {f['full_check']:10s}  "
                     f"{f['key']}")
    return L


def _figures(out: str, meta: dict[str, Any], rows: list[dict[str, Any]], opts: list[str], k: int) -> None:
    from fastpoly.plotting import pyplot, save_figure

    plt = pyplot()
    n = len(opts)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 0.8, 3.7), squeeze=False, layout="constrained")
    allerr = [r["test_errors"] for r in rows] or [0]
    vmin, vmax = min(allerr), max(max(allerr), min(allerr) + 1)
    sc = None
    for ax, o in zip(axes[0], opts):
        mine = [r for r in rows if r["optimizer"] == o]
        st = meta["stats"][o]
        if mine:
            x = np.array([r["log_p_gp"] for r in mine])
            y = np.array([r["log_p_sgd"] for r in mine])
            sc = ax.scatter(x, y, c=[r["test_errors"] for r in mine], cmap="viridis", vmin=vmin, vmax=vmax, s=14,
                            edgecolors="none")
            lo = min(x.min(), y.min()) - 0.5
            hi = max(x.max(), y.max()) + 0.5
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_title(f"{o}: Pearson {_fmt_r(st, 'pearson').split(' [')[0]}, "
                     f"Spearman {_fmt_r(st, 'spearman').split(' [')[0]}\n({len(mine)} functions)", fontsize=8)
        ax.set_xlabel("log P_B^GP(f|S)  (EP)", fontsize=8)
        ax.set_ylabel("log P_SGD(f|S)", fontsize=8)
        ax.tick_params(labelsize=7)
    if sc is not None:
        cb = fig.colorbar(sc, ax=list(axes[0]), fraction=0.03, pad=0.01)
        cb.set_label("test errors", fontsize=8)
    d = meta["data"]
    fig.suptitle(f"{d['dataset']}, {meta['arch_spec']}, m = {meta['n_train']}, |E| = {k}, "
                 f"{meta['n_runs']:,} runs per optimizer, functions seen >= {meta['min_count']} times "
                 f"(95% bootstrap intervals in summary.txt)", fontsize=9)
    save_figure(fig, os.path.join(out, "psgd_vs_gp.png"), tight=False)

    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False, sharey=True, layout="constrained")
    for ax, o in zip(axes[0], opts):
        mb = meta["stats"][o]["mass_by_errors"]
        e = np.array([r["errors"] for r in mb])
        for off, key, lab in ((-0.27, "p_sgd_all", "P_SGD (all found)"), (0.0, "p_sgd_evaluated", "P_SGD (evaluated)"),
                              (0.27, "p_gp_evaluated", "P_B^GP (evaluated)")):
            v = np.array([r[key] for r in mb])
            ax.bar(e + off, np.where(v > 0, v, np.nan), width=0.27, label=lab)
        ax.set_yscale("log")
        ax.set_title(o, fontsize=9)
        ax.set_xlabel("test errors", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("probability mass", fontsize=8)
    axes[0][0].legend(fontsize=6)
    save_figure(fig, os.path.join(out, "mass_by_errors.png"), tight=False)
