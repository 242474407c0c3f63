"""Dask: a 2-worker LocalCluster gives the single-process counts file byte for byte; dead workers lose nothing."""
from __future__ import annotations

import os

import pytest

distributed = pytest.importorskip("distributed")

import fastpoly  # noqa: E402
from fastpoly import MLP  # noqa: E402

ARCH = MLP(4, (5,))
N = 6000


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def _single(**kw):
    return fastpoly.sample(ARCH, n_samples=N, seed=21, backend="numpy", progress=False, **kw)


def test_two_workers_equal_single_process(client):
    ref = _single()
    got = fastpoly.sample(ARCH, n_samples=N, seed=21, backend="numpy", progress=False, client=client,
                          task_size=700)
    assert got.to_bytes() == ref.to_bytes()
    # conditioned runs and spilling on the client too
    tr = ([1, 6], [0, 1])
    ref_c = _single(train=tr)
    got_c = fastpoly.sample(ARCH, n_samples=N, seed=21, backend="numpy", progress=False, client=client,
                            train=tr, memory_budget=1024, task_size=500)
    assert got_c.to_bytes() == ref_c.to_bytes()


def _interrupt(client, ck, after, task_size):
    """A checkpointed run on ``client`` stopped by Ctrl-C after ``after`` completed tasks."""
    import fastpoly.run.distributed as dd

    real = dd.dask_batches

    def stop_after(*a, **k):
        for i, item in enumerate(real(*a, **k)):
            if i == after:
                raise KeyboardInterrupt
            yield item

    dd.dask_batches = stop_after
    try:
        with pytest.raises(KeyboardInterrupt):
            fastpoly.sample(ARCH, n_samples=N, seed=21, backend="numpy", progress=False, client=client,
                            task_size=task_size, checkpoint=ck, checkpoint_every=0)
    finally:
        dd.dask_batches = real


def test_dask_with_checkpoint_resume(client, tmp_path):
    ref = _single()
    ck = tmp_path / "ck"
    _interrupt(client, ck, 3, 500)
    from fastpoly.run.checkpoint import Checkpoint

    st = Checkpoint.open(ck).state
    assert st["n_samples"] == 1500 and len(st["ranges"]) >= 1  # completed tasks, in any order
    got = fastpoly.sample(ARCH, n_samples=N, seed=21, backend="numpy", progress=False, client=client,
                          task_size=800, checkpoint=ck, resume=True)
    assert got.to_bytes() == ref.to_bytes()


class _RecordingClient:
    """A client that records the keys of the tasks submitted through it."""

    def __init__(self, client):
        self._client = client
        self.keys = []

    def submit(self, *a, **k):
        self.keys.append(k.get("key"))
        return self._client.submit(*a, **k)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_interrupted_run_then_same_ranges_again(client, tmp_path):
    """Regression (a CI failure): an interrupted call cancels its pending tasks asynchronously; a resume
    that resubmits the same ranges at once must not share their keys (it would be cancelled with them)."""
    ref = _single()
    rec = _RecordingClient(client)
    ck = tmp_path / "ck"
    _interrupt(rec, ck, 1, 500)
    first = set(rec.keys)
    got = fastpoly.sample(ARCH, n_samples=N, seed=21, backend="numpy", progress=False, client=rec,
                          task_size=500, checkpoint=ck, resume=True)
    assert got.to_bytes() == ref.to_bytes()
    assert len(first) == N // 500 and not first & set(rec.keys[len(first):])


def test_worker_dies_mid_task_loses_nothing(client, tmp_path):
    """The first attempt of one task kills its worker process; Dask reruns the task elsewhere."""
    ref = _single()
    marker = str(tmp_path / "killed-once")
    from fastpoly.run.distributed import count_task

    def dying_task(job, lo, hi, backend, batch_size):  # pickled by value (a local function)
        if lo == 2000 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the worker process dies mid-task
        return count_task(job, lo, hi, backend, batch_size)

    from fastpoly.counts.spill import CountAccumulator
    from fastpoly.counts.store import FunctionCounts
    from fastpoly.plan import make_plan
    from fastpoly.run.distributed import dask_batches

    plan = make_plan(ARCH, None, 21, None)
    acc = CountAccumulator(plan.n_words)
    for lo, hi, b in dask_batches(client, plan, [(0, N)], "numpy", None, 1000, _task=dying_task):
        acc.add(b.keys, b.counts, b.first_index, b.n_samples, b.n_accepted, lo, hi)
    assert os.path.exists(marker)  # the fault really happened
    meta = dict(ref.meta)
    got = FunctionCounts(*acc.result_arrays(), acc.n_samples, acc.n_accepted, meta)
    assert acc.ranges == [[0, N]]
    assert got.to_bytes() == ref.to_bytes()


def test_local_cluster_default_and_bad_client():
    with pytest.raises(ValueError, match="client"):
        fastpoly.sample(ARCH, n_samples=10, client="remote-please")
    got = fastpoly.sample(ARCH, n_samples=600, seed=21, backend="numpy", progress=False, client=2)
    assert got.to_bytes() == fastpoly.sample(ARCH, n_samples=600, seed=21, backend="numpy",
                                             progress=False).to_bytes()
