"""The public entry points: :func:`sample`, :func:`sample_keys`, :func:`evaluate`."""
from __future__ import annotations

import os
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
    checkpoint=None,
    resume=False,
    checkpoint_every=60.0,
    client=None,
    memory_budget=None,
    checkpoint_samples=None,
    out=None,
    checkpoint_extra=None,
    task_size=None,
    annotations=None,
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
    checkpoint : path or None
        Folder for checkpoints (:mod:`fastpoly.checkpoint`): progress is saved
        atomically every ``checkpoint_every`` seconds (and ``checkpoint_samples``
        samples), and on Ctrl-C (the run then stops with ``KeyboardInterrupt``
        after saving).  Spilled runs live there too.
    resume : bool
        Continue the run saved in ``checkpoint`` (refused with
        :class:`fastpoly.checkpoint.CheckpointError` if it is another job or
        corrupted; an empty folder starts afresh).  The result is identical to an
        uninterrupted run.  Without ``resume`` the folder must not hold a checkpoint.
    checkpoint_every : float
        Seconds between checkpoints (default 60; 0 = after every batch).
    client : dask.distributed.Client, "local", int or None
        Run the index range as tasks on a Dask cluster (:mod:`fastpoly.distributed`;
        ``"local"`` or an int starts a LocalCluster of that many worker processes).
        The result is byte-for-byte the single-process result.
    memory_budget : int, str or None
        Bytes (or ``"2GB"``) of distinct keys held in memory while counting;
        beyond it, sorted runs are spilled to disk (the checkpoint folder, or a
        temporary folder) and merged exactly at the end with the same budget.
    checkpoint_samples : int or None
        Also checkpoint after this many samples since the last save.
    out : path or None
        Write the final counts file here.  With spilled runs the result is
        streamed to the file (never held in memory) and returned memory-mapped.
    checkpoint_extra : dict or None
        JSON-serialisable data stored with the checkpoint's job (the CLI keeps its options there).
    task_size : int or None
        Samples per Dask task (default: about 8 tasks per worker, at most 1e7).
    annotations : dict or None
        JSON-serialisable entries added to the result's ``meta`` (saved in the
        counts file), e.g. ``{"target": hex}`` so that generalisation errors can
        be computed later.  They must not use the reserved metadata names.

    Returns
    -------
    FunctionCounts
        Exact counts; identical for any backend (relu/sign/identity), batch size,
        partition of the index range, checkpointing, spilling or Dask cluster.
    """
    from .spill import CountAccumulator, parse_memory

    n_samples = check_n_samples(n_samples)
    batch_size = _check_batch_size(batch_size)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    start = int(start)
    if start + n_samples > 2**64:
        raise ValueError("start + n_samples exceeds the 2**64 sample indices of a stream")
    every = _check_every(checkpoint_every)
    every_n = None if checkpoint_samples is None else check_n_samples(checkpoint_samples)
    budget = parse_memory(memory_budget)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=DIR")
    plan = make_plan(arch, X, seed, train)
    stop = start + n_samples

    ck = None
    if checkpoint is not None:
        from .checkpoint import Checkpoint, CheckpointError

        if os.path.exists(os.path.join(os.fspath(checkpoint), "job.json")):
            if not resume:
                raise CheckpointError(
                    f"{checkpoint} already holds a checkpoint; pass resume=True (CLI: --resume) "
                    "to continue it, or choose another folder"
                )
            ck = Checkpoint.open(checkpoint)
            ck.check_job(plan, start, stop)
            if ck.complete:
                res = ck.load_result()
                if out is not None:
                    res.save(out)
                res.info = {"resumed": True, "already_complete": True}
                return res
        else:
            ck = Checkpoint.create(checkpoint, plan, start, stop, extra=checkpoint_extra)

    be = None if client is not None else get_backend(backend)
    if check and be is not None:
        _check_against_reference(be, plan, start, min(n_samples, 64 if check is True else int(check)))
    acc = CountAccumulator(plan.n_words, budget, spill_dir=None if ck is None else ck.dir)
    resumed_from = 0
    if ck is not None:
        ck.restore(acc)
        resumed_from = acc.n_samples
    todo = _complement(acc.ranges, start, stop)
    meta = _meta(plan, start)
    if annotations:
        clash = set(annotations) & set(meta)
        if clash:
            raise ValueError(f"annotations may not replace the metadata {sorted(clash)}")
        meta.update(annotations)
    info = {"resumed_from": resumed_from} if ck is not None else {}
    bar = _progress_bar(n_samples, progress)
    if bar is not None and resumed_from:
        bar.update(resumed_from)
    t0 = time.perf_counter()
    stopper = _InterruptFlag(enabled=ck is not None)
    own_cluster = None
    try:
        with stopper:
            if client is not None:
                from .distributed import dask_batches, get_client

                cl, own_cluster = get_client(client)
                bs = batch_size
                batches = dask_batches(cl, plan, todo, backend, bs, task_size)
                info.update(backend=f"dask ({backend})", n_workers=len(cl.scheduler_info().get("workers", {})))
            else:
                bs = batch_size or be.default_batch_size(plan)
                batches = _local_batches(be, plan, todo, bs)
                info.update(backend=be.name, batch_size=bs)
            last_t, last_n = time.monotonic(), acc.n_samples
            try:
                for lo, hi, b in batches:
                    acc.add(b.keys, b.counts, b.first_index, b.n_samples, b.n_accepted, lo, hi)
                    if bar is not None:
                        bar.update(hi - lo)
                    if ck is not None:
                        if stopper.hit:
                            ck.save(acc)
                            raise KeyboardInterrupt(
                                f"interrupted: checkpoint saved in {ck.dir} after {acc.n_samples:,} of "
                                f"{n_samples:,} samples; resume with resume=True (CLI: --resume {ck.dir})"
                            )
                        now = time.monotonic()
                        if (now - last_t >= every) or (every_n is not None and acc.n_samples - last_n >= every_n):
                            ck.save(acc)
                            last_t, last_n = time.monotonic(), acc.n_samples
            finally:
                close = getattr(batches, "close", None)
                if close is not None:
                    close()
        meta["ranges"] = [list(r) for r in acc.ranges]
        result = _finish(acc, meta, out)
        if ck is not None:
            ck.finish(result, out=out)
        info["spilled_runs"] = len(acc.runs)
    finally:
        if bar is not None:
            bar.close()
        if own_cluster is not None:
            own_cluster()
        if ck is None:
            acc.cleanup()
    info["elapsed_s"] = time.perf_counter() - t0
    result.info = info
    return result


def _finish(acc, meta, out):
    """Assemble the FunctionCounts (streamed to ``out`` when runs were spilled)."""
    if out is not None and acc.runs:
        from .spill import write_counts_file

        tmp = FunctionCounts.empty(acc.n_words, meta)
        tmp.n_samples, tmp.n_accepted = acc.n_samples, acc.n_accepted
        write_counts_file(out, tmp._payload(), acc.chunks(), acc.n_words)
        return FunctionCounts.load(out, mmap=True)
    k, c, f = acc.result_arrays()
    result = FunctionCounts(k, c, f, acc.n_samples, acc.n_accepted, meta)
    if out is not None:
        result.save(out)
    return result


def _check_every(v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not v >= 0 \
            or not np.isfinite(v):
        raise ValueError(f"checkpoint_every must be a number of seconds >= 0, got {v!r}")
    return float(v)


def _complement(ranges, start, stop):
    """Sub-ranges of ``[start, stop)`` not covered by the (merged, sorted) ``ranges``."""
    todo, pos = [], start
    for a, b in sorted((int(a), int(b)) for a, b in ranges):
        if b <= pos or a >= stop:
            continue
        if a > pos:
            todo.append((pos, min(a, stop)))
        pos = max(pos, b)
    if pos < stop:
        todo.append((pos, stop))
    return todo


def _local_batches(be, plan, todo, bs):
    for lo0, hi0 in todo:
        pos = lo0
        while pos < hi0:
            hi = min(hi0, pos + bs)
            yield pos, hi, be.count_range(plan, pos, hi)
            pos = hi


class _InterruptFlag:
    """While active (main thread only), Ctrl-C sets ``hit`` instead of raising at once."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.hit = False
        self._old = None

    def __enter__(self):
        import signal
        import threading

        if self.enabled and threading.current_thread() is threading.main_thread():
            def handler(signum, frame):
                if self.hit:  # second Ctrl-C: stop at once (the last checkpoint stays valid)
                    raise KeyboardInterrupt
                self.hit = True

            self._old = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        return False


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
        result is outside the per-dtype tolerance (:mod:`fastpoly.tolerances`;
        compiled polynomial networks: also within 5% of their certified error).

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
        from .tolerances import assert_close_to_reference, network_atol

        ref = np.asarray(get_backend("numpy").evaluate(net, X, dt))
        assert_close_to_reference(out.reshape(ref.shape), ref, dt, extra_atol=network_atol(net))
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    return out
