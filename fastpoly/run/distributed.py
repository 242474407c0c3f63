"""Sampling on a Dask cluster: ``sample(..., client=...)``.

The index range is split into tasks; each task is a pure function of the job
(architecture, inputs, seed, train set) and its index range ``[lo, hi)``, so a
task that fails or whose worker dies is simply run again (Dask reschedules
tasks of dead workers; ``retries`` covers exceptions) and nothing is lost or
double counted.  The client merges the tasks' sorted counts exactly, in any
completion order, so the counts file is byte for byte the single-process one.

Clusters
--------
* One machine, several processes: ``sample(..., client="local")`` (or an int,
  the number of worker processes) starts and stops a ``LocalCluster`` with one
  thread per worker.  Give Numba workers one thread each, or set
  ``FASTPOLY_NUM_THREADS`` so that workers x threads <= cores.
* GPUs: with `dask-cuda <https://docs.rapids.ai/api/dask-cuda/stable/>`_,
  ``LocalCUDACluster()`` starts one worker per GPU (each sees one device via
  ``CUDA_VISIBLE_DEVICES``); ``backend="auto"`` then picks ``cupy`` on every worker::

      from dask_cuda import LocalCUDACluster
      from dask.distributed import Client
      client = Client(LocalCUDACluster())
      counts = fastpoly.sample("7-40-40-1", n_samples=10**10, client=client, memory_budget="32GB",
                               checkpoint="run1-ckpt", out="run1.npz")

* SLURM (or PBS, LSF, SGE) with `dask-jobqueue <https://jobqueue.dask.org>`_::

      from dask_jobqueue import SLURMCluster
      cluster = SLURMCluster(cores=16, processes=1, memory="64GB", walltime="12:00:00",
                             job_extra_directives=["--gres=gpu:1"])
      cluster.scale(jobs=8)
      client = Client(cluster)

  or connect to a running scheduler with ``Client("tcp://host:8786")``.  Only
  the client needs the disk for spilling and checkpoints; workers return sorted
  counts per task.

Install the extra with ``pip install "fastpoly[dask]"`` (``dask[distributed]>=2023.6``).
"""
from __future__ import annotations

import hashlib
import math
import uuid

import numpy as np

from fastpoly.backends.base import CountBatch
from fastpoly.run.batches import count_ranges
from fastpoly.run.plans import engine_of

__all__ = ["get_client", "dask_batches", "count_task", "split_ranges"]

#: most samples in one task by default (bounds the memory of one task's result)
MAX_TASK = 10**7


def require_distributed() -> None:
    """Raise ImportError (naming the extra to install) unless dask.distributed can be imported."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ImportError(
            "running on Dask (sample(client=...), CLI --dask) needs dask.distributed, which is not "
            "installed: pip install \"fastpoly[dask]\" (or \"dask[distributed]>=2023.6\")"
        ) from None


def get_client(client):
    """Resolve ``client`` to ``(Client, closer)``; ``closer`` is None unless a cluster was started here.

    ``"local"``: a LocalCluster with one worker process per core; an int ``n``: with ``n``
    worker processes; a ``Client`` (or anything with ``submit``) is used as is.
    """
    if hasattr(client, "submit") and hasattr(client, "scheduler_info"):
        return client, None
    if isinstance(client, bool) or not (client == "local" or isinstance(client, (int, np.integer))):
        raise ValueError(f"client must be a dask.distributed.Client, 'local' or a number of workers, got {client!r}")
    require_distributed()
    import os

    from dask.distributed import Client, LocalCluster

    n = (os.cpu_count() or 1) if client == "local" else int(client)
    if n < 1:
        raise ValueError(f"the number of workers must be >= 1, got {n}")
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
    cl = Client(cluster)

    def close():
        cl.close()
        cluster.close()

    return cl, close


def _job_token(plan):
    h = hashlib.sha256()
    h.update(repr(sorted(plan.compat_meta().items())).encode())
    h.update(str(plan.seed).encode())
    return h.hexdigest()[:16]


def count_task(plan, lo, hi, backend="auto", batch_size=None):
    """Draw and count samples ``[lo, hi)`` of a plan (runs on a worker; pure).

    ``plan`` is the job's plan object itself (scattered once to every worker) and
    ``backend`` a backend name or a picklable engine (e.g. an SGD trainer): the worker resolves
    it with :func:`fastpoly.run.plans.engine_of`.

    Returns
    -------
    (keys, counts, first_index, n_samples, n_accepted, n_diverged)
    """
    be = engine_of(plan, backend)
    b = count_ranges(be, plan, [(lo, hi)], batch_size or be.default_batch_size(plan))
    return b.keys, b.counts, b.first_index, b.n_samples, b.n_accepted, b.n_diverged


def split_ranges(todo, task_size):
    """Cut ``[(lo, hi), ...]`` into pieces of at most ``task_size`` samples."""
    out = []
    for lo, hi in todo:
        for a in range(lo, hi, task_size):
            out.append((a, min(hi, a + task_size)))
    return out


def dask_batches(client, plan, todo, backend="auto", batch_size=None, task_size=None, _task=None):
    """Submit the ranges ``todo`` as tasks; yield ``(lo, hi, CountBatch)`` as they complete.

    Closing the generator cancels the tasks still pending.
    """
    from distributed import as_completed

    bname = backend if isinstance(backend, str) else getattr(backend, "name", "auto")
    # what each worker resolves: a name (workers build their own memoised backend) or a picklable object
    for_workers = backend if isinstance(backend, str) else backend.for_workers()
    total = sum(hi - lo for lo, hi in todo)
    if total == 0:
        return
    nw = max(1, len(client.scheduler_info().get("workers", {})))
    if task_size is None:
        task_size = int(min(MAX_TASK, max(1, math.ceil(total / (8 * nw)))))
    elif isinstance(task_size, bool) or not isinstance(task_size, (int, np.integer)) or task_size < 1:
        raise ValueError(f"task_size must be a positive integer, got {task_size!r}")
    tasks = split_ranges(todo, int(task_size))
    [job_f] = client.scatter([plan], broadcast=True, hash=False)
    # the job's digest plus a nonce for this call: a cancelled earlier call's tasks (cancellation
    # is asynchronous on the scheduler) can never share a key with this call's, which would
    # cancel them too (a resumed run resubmits the same ranges)
    token = f"{_job_token(plan)}-{uuid.uuid4().hex[:8]}"
    fn = _task or count_task
    futs = {}
    flist = []
    for lo, hi in tasks:
        f = client.submit(fn, job_f, lo, hi, for_workers, batch_size, key=f"fastpoly-count-{token}-{bname}-{lo}-{hi}",
                          retries=3, pure=False)
        futs[f.key] = (lo, hi)
        flist.append(f)
    ac = as_completed(flist)
    del flist
    try:
        for f in ac:
            lo, hi = futs[f.key]
            k, c, fi, ns, na, nd = f.result()
            f.release()
            yield lo, hi, CountBatch(k, c, fi, ns, na, int(nd))
    finally:
        pending = list(getattr(ac, "futures", []))
        if pending:
            client.cancel(pending)
