"""The one driver: a validated :class:`~fastpoly.run.job.SampleJob` -> exact :class:`FunctionCounts`.

Every estimator -- rejection sampling, SGD training, GP draws -- is a plan of
:mod:`fastpoly.run.plans` run here; plain, checkpointed, spilled and Dask runs all go through
:func:`run_job`:

1. open (or create) the checkpoint and restore its progress;
2. choose the batch source -- the local batch loop or Dask tasks -- for the ranges still to draw;
3. add every counted batch to a :class:`~fastpoly.counts.spill.CountAccumulator` (spilling sorted
   runs past the memory budget), saving checkpoints on time/sample triggers and on Ctrl-C;
4. assemble the result (streamed to ``out`` when runs were spilled).
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from fastpoly.activations import EXACT_SAMPLER_ACTIVATIONS
from fastpoly.backends.base import Backend, CountBatch
from fastpoly.backends.reference import sample_keys_reference
from fastpoly.counts.fileformat import write_counts_file
from fastpoly.counts.spill import CountAccumulator
from fastpoly.counts.store import FunctionCounts
from fastpoly.plan import SamplerPlan
from fastpoly.run import distributed
from fastpoly.run.batches import complement, local_batches
from fastpoly.run.checkpoint import Checkpoint
from fastpoly.run.job import SampleJob
from fastpoly.run.plans import engine_of, meta_dict
from fastpoly.run.rescue import rescue_result

__all__ = ["run_job", "result_meta", "check_against_reference", "Interrupted", "STOP_SIGNALS"]

Batches = Iterator[tuple[int, int, CountBatch]]

#: seconds one engine call aims at when an engine sizes its batches by time (``first_batch_size``):
#: at most this, and half the checkpoint interval when that is shorter
BATCH_SECONDS = 10.0
#: signals that stop a run like Ctrl-C (with a checkpoint: after saving it)
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT, SIGTERM or SIGHUP (``signum``); with a checkpoint, after saving it."""

    def __init__(self, message: str = "", signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = int(signum)


def result_meta(plan: Any, annotations: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata of a result of ``plan`` (its ResultMeta, key rows, version, annotations; no ranges yet)."""
    return meta_dict(plan, annotations)


def _open_checkpoint(job: SampleJob) -> tuple[Checkpoint | None, FunctionCounts | None]:
    """The job's checkpoint (created or reopened), or the finished result of a completed one."""
    pol = job.checkpoint
    if pol is None:
        return None, None
    ck = Checkpoint.claim(pol.directory, job.plan, job.start, job.stop, resume=pol.resume, extra=pol.extra,
                          annotations=job.annotations)
    if ck.complete:
        try:
            res = ck.load_result()
            if job.out is not None:
                res.save(job.out, compress=job.compress)
        finally:
            ck.release()
        res.info = {"resumed": True, "already_complete": True}
        if ck.state.get("n_diverged") is not None:
            res.info["n_diverged"] = int(ck.state["n_diverged"])
        return ck, res
    return ck, None


def _batch_source(job: SampleJob, be: Backend | None, todo: list[tuple[int, int]],
                  info: dict[str, Any]) -> tuple[Batches, Any]:
    """``(batches, close_cluster)``: Dask tasks when the job has a client, else the local loop."""
    if job.client is not None:
        cl, own_cluster = distributed.get_client(job.client)
        batches = distributed.dask_batches(cl, job.plan, todo, job.backend, job.batch_size, job.task_size)
        info.update(backend=f"dask ({job.backend})", n_workers=len(cl.scheduler_info().get("workers", {})))
        return batches, own_cluster
    assert be is not None
    bs = job.batch_size or be.default_batch_size(job.plan)
    info.update(backend=be.name, batch_size=bs)
    # engines with a first_batch_size (the CPU trainers) size their calls by time, bs at most
    first = getattr(be, "first_batch_size", lambda plan: None)(job.plan)
    if job.batch_size is None and first is not None:
        every = job.checkpoint.every_s if job.checkpoint is not None else BATCH_SECONDS
        target = min(BATCH_SECONDS, max(every / 2, 0.5))
        info["batch_seconds"] = target
        return local_batches(be, job.plan, todo, bs, target_s=target, first=first), None
    return local_batches(be, job.plan, todo, bs), None


def _prepare(be: Backend | None, job: SampleJob, info: dict[str, Any]) -> None:
    """Compile the backend's kernels for this plan before the clock of the run starts."""
    if be is None:
        return
    n0 = numba_compilations()
    t = time.perf_counter()
    be.prepare(job.plan)
    info["compile_s"] = time.perf_counter() - t
    info["compiled"] = numba_compilations() > n0  # False: the kernels came from the disk cache


def numba_compilations() -> int:
    """Kernel signatures compiled so far by Numba in this process (0 when Numba was never loaded).

    The difference before and after a step tells whether it compiled (rather than loaded from the
    disk cache), so that compilation time is reported only when it happened.
    """
    m = sys.modules.get("fastpoly.backends.numba.jit")
    return int(m.compilations()) if m is not None else 0


def run_job(job: SampleJob) -> FunctionCounts:
    """Run a sampling job to its exact result (see :func:`fastpoly.sample` for the semantics).

    Returns
    -------
    FunctionCounts
        With ``info``: backend, batch size, ``compile_s`` (kernel compilation/warm-up, first run
        only), ``elapsed_s`` (drawing, counting and the final merge and write, without compilation),
        ``counting_s`` and ``finish_s`` (its two parts), ``resumed_from``, ``spilled_runs`` and
        ``n_diverged`` (diverged training runs; 0 for sampling; absent when a resumed checkpoint predates it).

    Raises
    ------
    Interrupted
        On SIGINT, SIGTERM or SIGHUP (with a checkpoint: after saving it).
    fastpoly.run.rescue.ResultNotSaved
        If ``out`` cannot be written at the end; the message says where the result was kept.
    """
    ck, done = _open_checkpoint(job)
    if done is not None:
        return done
    try:
        return _run(job, ck)
    finally:
        if ck is not None:
            ck.release()


def _run(job: SampleJob, ck: Checkpoint | None) -> FunctionCounts:
    """:func:`run_job` once the checkpoint folder (if any) is claimed."""
    be = None if job.client is not None else engine_of(job.plan, job.backend)
    info: dict[str, Any] = {"resumed_from": 0} if ck is not None else {}
    _prepare(be, job, info)
    if job.check and be is not None and isinstance(job.plan, SamplerPlan):
        check_against_reference(be, job.plan, job.start, job.check)
    acc = CountAccumulator(job.plan.n_words, job.memory_budget, spill_dir=None if ck is None else ck.dir)
    if ck is not None:
        ck.restore(acc)
        info["resumed_from"] = acc.n_samples
    meta = result_meta(job.plan, job.annotations)
    bar = _progress_bar(job.n_samples, job.progress, "runs" if job.annotations.get("kind") == "P_SGD" else "samples")
    if bar is not None and acc.n_samples:
        bar.update(acc.n_samples)
    t0 = time.perf_counter()
    own_cluster = None
    try:
        with _InterruptFlag(enabled=ck is not None) as stopper:
            batches, own_cluster = _batch_source(job, be, complement(acc.ranges, job.start, job.stop), info)
            _consume(job, batches, acc, ck, stopper, bar)
        t1 = time.perf_counter()
        info["counting_s"] = t1 - t0  # drawing and counting only: rates exclude the final merge
        meta["ranges"] = [list(r) for r in acc.ranges]
        try:
            result = _finish(acc, meta, job.out, job.compress)
        except OSError as e:
            if job.out is None:
                raise
            raise rescue_result(e, acc, meta, job.out, ck, compress=job.compress) from e
        if ck is not None:
            ck.finish(result, out=job.out, n_diverged=acc.n_diverged)
        info["finish_s"] = time.perf_counter() - t1  # the final merge and the write
        info["spilled_runs"] = len(acc.runs)
        if acc.n_diverged is not None:
            info["n_diverged"] = acc.n_diverged
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


def _consume(job: SampleJob, batches: Batches, acc: CountAccumulator, ck: Checkpoint | None,
             stopper: _InterruptFlag, bar: Any) -> None:
    """Add every batch to ``acc``; checkpoint on the policy's triggers and on Ctrl-C."""
    pol = job.checkpoint
    last_t, last_n = time.monotonic(), acc.n_samples
    try:
        for lo, hi, b in batches:
            acc.add(b.keys, b.counts, b.first_index, b.n_samples, b.n_accepted, lo, hi, b.n_diverged)
            if bar is not None:
                bar.update(hi - lo)
            if ck is None or pol is None:
                continue
            if stopper.hit:
                ck.save(acc)
                raise Interrupted(
                    f"interrupted ({signal.Signals(stopper.signum).name}): checkpoint saved in {ck.dir} after "
                    f"{acc.n_samples:,} of {job.n_samples:,} samples; resume with resume=True (CLI: --resume {ck.dir})",
                    stopper.signum,
                )
            now = time.monotonic()
            if (now - last_t >= pol.every_s) or (pol.every_n is not None and acc.n_samples - last_n >= pol.every_n):
                ck.save(acc)
                last_t, last_n = time.monotonic(), acc.n_samples
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _finish(acc: CountAccumulator, meta: dict[str, Any], out: str | None, compress: bool = False) -> FunctionCounts:
    """Assemble the FunctionCounts.

    With ``out`` and runs on disk or a memory budget, the merged result streams into ``out``
    (sorted chunks, never all distinct keys in memory at once) and is returned memory-mapped
    (a compressed file, ``compress``: decoded block by block).
    """
    if out is not None and (acc.runs or acc.memory_budget is not None):
        tmp = FunctionCounts.empty(acc.n_words, meta)
        tmp.n_samples, tmp.n_accepted = acc.n_samples, acc.n_accepted
        write_counts_file(out, tmp._payload(), acc.chunks(), acc.n_words, compress=compress)
        acc.release_memory()
        return FunctionCounts.load(out, mmap=True)
    k, c, f = acc.result_arrays()
    result = FunctionCounts(k, c, f, acc.n_samples, acc.n_accepted, meta)
    if out is not None:
        result.save(out, compress=compress)
    return result


class _InterruptFlag:
    """While active (main thread only), SIGINT, SIGTERM and SIGHUP stop the run as :class:`Interrupted`.

    ``enabled`` (a checkpoint can be saved): the first signal only sets ``hit`` (and ``signum``)
    so that the batch loop saves the checkpoint and stops; a second one stops at once.  Otherwise
    the signal raises at once, so that temporary files are cleaned up on the way out.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.hit = False
        self.signum = int(signal.SIGINT)
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            def handler(signum: int, frame: Any) -> None:
                if not self.enabled or self.hit:  # second signal: stop at once (the last checkpoint stays valid)
                    raise Interrupted(f"interrupted ({signal.Signals(signum).name})", signum)
                self.hit, self.signum = True, signum

            for s in STOP_SIGNALS:
                self._old[s] = signal.signal(s, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}


def _progress_bar(total: int, progress: bool, unit: str = "samples") -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, mininterval=0.5, leave=False, smoothing=0.1)


def check_against_reference(be: Backend, plan: SamplerPlan, start: int, n: int) -> None:
    """Recompute samples ``start`` to ``start + n - 1`` with the NumPy reference; raise ``AssertionError`` on a mismatch.

    relu/sign/identity keys must be identical; smooth activations may differ only where
    the reference margin is below 1e-4.
    """
    if be.name == "numpy" or n <= 0:
        return
    got = be.sample_keys(plan, start, start + n, margins=True)
    ref = sample_keys_reference(plan, start, start + n, margins=True)
    if plan.mlp.activation in EXACT_SAMPLER_ACTIVATIONS:
        ok = np.array_equal(got.keys, ref.keys) and np.array_equal(got.accepted, ref.accepted)
    else:
        diff = np.any(got.keys != ref.keys, axis=1) | (got.accepted != ref.accepted)
        ok = bool(np.all(ref.margins[diff] < 1e-4))
    if not ok:
        raise AssertionError(
            f"backend {be.name!r} disagrees with the NumPy reference on samples {start}..{start + n - 1}"
        )
