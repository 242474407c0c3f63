"""P_SGD jobs run through the one driver: checkpoint/resume, spilling and Dask give identical bytes."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly.run.driver as driver
from fastpoly import MLP, boolean_inputs
from fastpoly.run.checkpoint import CheckpointError
from fastpoly.sgd import sample_sgd

pytest.importorskip("numba")

X4 = boolean_inputs(4)
TRAIN = (np.array([1, 2, 4, 7, 8, 11, 13, 14]), np.array([0, 1, 1, 0, 1, 0, 0, 1]))
KW = dict(arch=MLP(4, (6, 6)), X=X4, train=TRAIN, seed=3, backend="numba", optimizer="sgd", lr=0.1,
          max_epochs=60, minibatch=4, progress=False)
N = 120


@pytest.fixture(scope="module")
def ref():
    return sample_sgd(n_runs=N, **KW)


def test_batch_size_and_spilling_do_not_change_bytes(ref, tmp_path):
    assert ref.n_samples == N and ref.meta["kind"] == "P_SGD" and "sgd_recipe" in ref.meta
    got = sample_sgd(n_runs=N, batch_size=7, memory_budget=1024, out=tmp_path / "c.npz", **KW)
    assert got.to_bytes() == ref.to_bytes()
    assert (tmp_path / "c.npz").read_bytes() == ref.to_bytes()


def test_interrupted_run_resumes_identically(ref, tmp_path, monkeypatch):
    real = driver.local_batches

    def stop_after(be, plan, todo, bs, **kw):
        for i, item in enumerate(real(be, plan, todo, bs, **kw)):
            if i == 3:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(driver, "local_batches", stop_after)
    ck = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):
        sample_sgd(n_runs=N, batch_size=10, checkpoint=ck, checkpoint_every=0, **KW)
    monkeypatch.setattr(driver, "local_batches", real)
    # another recipe must not continue this checkpoint
    with pytest.raises(CheckpointError, match="sgd_recipe"):
        sample_sgd(n_runs=N, batch_size=10, checkpoint=ck, resume=True, **dict(KW, lr=0.2))
    got = sample_sgd(n_runs=N, batch_size=10, checkpoint=ck, resume=True, **KW)
    assert got.info["resumed_from"] == 30
    assert got.to_bytes() == ref.to_bytes()


def test_records_need_the_local_process(ref):
    with pytest.raises(ValueError, match="records"):
        sample_sgd(n_runs=N, records=True, client="local", **KW)


@pytest.mark.slow
def test_dask_cluster_gives_identical_bytes(ref):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        got = sample_sgd(n_runs=N, client=client, task_size=25, **KW)
    assert got.to_bytes() == ref.to_bytes()
