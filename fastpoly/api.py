"""The public entry points: :func:`sample`, :func:`sample_keys`, :func:`evaluate`."""
from __future__ import annotations

import time

import numpy as np

from .activations import EXACT_SAMPLER_ACTIVATIONS
from .backends import get_backend
from .counts import FunctionCounts
from .plan import make_plan

__all__ = ["sample", "sample_keys", "evaluate", "check_n_samples"]


def check_n_samples(n):
    """Validate a sample count (a positive integer; floats like 1e6 with integral value are accepted)."""
    if isinstance(n, (bool, np.bool_)):
        raise ValueError(f"n_samples must be a positive integer, got {n!r}")
    if isinstance(n, (float, np.floating)):
        if not np.isfinite(n) or n != int(n):
            raise ValueError(f"n_samples must be a positive integer, got {n!r}")
        n = int(n)
    if not isinstance(n, (int, np.integer)):
        raise ValueError(f"n_samples must be a positive integer, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n}")
    if n >= 2**64:
        raise ValueError("n_samples must be < 2**64")
    return n


def _check_batch_size(bs):
    if bs is None:
        return None
    if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
        raise ValueError(f"batch_size must be a positive integer, got {bs!r}")
    return int(bs)


def _meta(plan, start):
    from . import __version__

    meta = plan.compat_meta()
    meta.update(
        seed=plan.seed,
        ranges=[],
        n_key_bits=int(plan.key_rows.size),
        key_rows=plan.key_rows.tolist() if plan.conditioned else None,
        fastpoly_version=__version__,
    )
    return meta


def sample(
    arch,
    X=None,
    n_samples=1,
    seed=0,
    backend="auto",
    train=None,
    batch_size=None,
    progress=True,
    start=0,
    check=False,
):
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

    Returns
    -------
    FunctionCounts
        Exact counts; identical for any backend (relu/sign/identity), batch size
        or partition of the index range.
    """
    n_samples = check_n_samples(n_samples)
    batch_size = _check_batch_size(batch_size)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    start = int(start)
    if start + n_samples > 2**64:
        raise ValueError("start + n_samples exceeds the 2**64 sample indices of a stream")
    plan = make_plan(arch, X, seed, train)
    be = get_backend(backend)
    if check:
        _check_against_reference(be, plan, start, min(n_samples, 64 if check is True else int(check)))
    bs = batch_size or be.default_batch_size(plan)
    result = FunctionCounts.empty(plan.n_words, _meta(plan, start))
    result.info = {"backend": be.name, "batch_size": bs}
    bar = _progress_bar(n_samples, progress)
    t0 = time.perf_counter()
    try:
        pos, stop = start, start + n_samples
        while pos < stop:
            hi = min(stop, pos + bs)
            batch = be.count_range(plan, pos, hi)
            result._add_batch(batch, pos, hi)
            if bar is not None:
                bar.update(hi - pos)
            pos = hi
    finally:
        if bar is not None:
            bar.close()
    result.info["elapsed_s"] = time.perf_counter() - t0
    return result


def _progress_bar(total, progress):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return None
    return tqdm(total=total, unit="samples", unit_scale=True, mininterval=0.5, leave=False, smoothing=0.1)


def _check_against_reference(be, plan, start, n):
    if be.name == "numpy" or n <= 0:
        return
    from .reference import sample_keys_reference

    got = be.sample_keys(plan, start, start + n, margins=True)
    ref = sample_keys_reference(plan, start, start + n, margins=True)
    exact = plan.mlp.activation in EXACT_SAMPLER_ACTIVATIONS
    if exact:
        ok = np.array_equal(got.keys, ref.keys) and np.array_equal(got.accepted, ref.accepted)
    else:
        # smooth activations: disagreements allowed only for tiny reference margins
        diff = np.any(got.keys != ref.keys, axis=1) | (got.accepted != ref.accepted)
        ok = bool(np.all(ref.margins[diff] < 1e-4))
    if not ok:
        raise AssertionError(
            f"backend {be.name!r} disagrees with the NumPy reference on samples {start}..{start + n - 1}"
        )


def sample_keys(arch, X=None, seed=0, start=0, stop=1, backend="auto", train=None, margins=False):
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
    from .reference import _check_range

    start, stop = _check_range(start, stop)
    plan = make_plan(arch, X, seed, train)
    be = get_backend(backend)
    b = be.sample_keys(plan, start, stop, margins=margins)
    out = [b.keys]
    if train is not None:
        out.append(b.accepted)
    if margins:
        out.append(b.margins)
    return out[0] if len(out) == 1 else tuple(out)


def evaluate(net, X, backend="auto", dtype=None, check=False):
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
        result is outside the per-dtype tolerance (:mod:`fastpoly.tolerances`).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` for single-output networks, else ``(N, n_outputs)``.
    """
    from .network import _resolve_dtype

    X = np.asarray(X)
    if X.ndim == 1 and net.n_inputs == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != net.n_inputs:
        raise ValueError(f"X must have shape (N, {net.n_inputs}), got {X.shape}")
    if not np.issubdtype(X.dtype, np.number) or not np.all(np.isfinite(X)):
        raise ValueError("X must be finite numbers (no NaN or inf)")
    dt = _resolve_dtype(net, dtype)
    be = get_backend(backend)
    out = np.asarray(be.evaluate(net, X, dt))
    if check and be.name != "numpy":
        from .tolerances import assert_close_to_reference

        ref = np.asarray(get_backend("numpy").evaluate(net, X, dt))
        assert_close_to_reference(out.reshape(ref.shape), ref, dt)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    return out
