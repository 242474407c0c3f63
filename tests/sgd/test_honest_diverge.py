"""Diverging training is detected: a non-finite parameter ends the run, a non-finite final loss marks it,
and every trainer (NumPy reference, Numba, the CUDA kernel through the emulation) agrees bit for bit.

Issue 23: "diverging training (lr 1e10) runs all epochs at NaN loss with RuntimeWarnings".
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastpoly import boolean_inputs
from fastpoly.cli.main import main
from fastpoly.sgd import Recipe, make_train_plan
from fastpoly.sgd.reference import STATUS_FAILED, train_range_reference

STATUS_DIVERGED = 3  # fastpoly.sgd.reference.STATUS_DIVERGED (checked below)

X4 = boolean_inputs(4)
ROWS = np.array([3, 0, 7, 12, 5, 9, 14, 1])
LABELS = ((ROWS >> 1) & 1).astype(np.uint8)

#: recipes whose runs diverge: by a parameter (sgd, ends the run early) or by the final loss (adam: the
#: parameters stay finite, the logits overflow); "mixed" has diverged and failed runs side by side
PLANS = {
    "sgd-huge-lr": Recipe(lr=1e30, batch_size=3, max_epochs=20),
    "sgd-mixed": Recipe(lr=1e18, batch_size=3, max_epochs=20),
    "adam-loss-overflows": Recipe(optimizer="adam", lr=1e30, batch_size=3, max_epochs=6),
    "mse-momentum": Recipe(lr=1e20, momentum=0.9, loss="mse", batch_size=8, max_epochs=10),
}


def _plan(name):
    return make_train_plan("4-6-1", X4, (ROWS, LABELS), seed=0, recipe=PLANS[name])


def _same(a, b):
    for f in ("keys", "init_keys", "status", "first_fit", "epochs"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), (f, getattr(a, f), getattr(b, f))
    assert np.array_equal(a.loss.view(np.uint32), b.loss.view(np.uint32)), (a.loss, b.loss)


def _reference(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # divergence is detected, not warned about
        return train_range_reference(_plan(name), 0, 8)


def test_reference_detects_divergence_without_warnings():
    from fastpoly.sgd import reference

    assert reference.STATUS_DIVERGED == STATUS_DIVERGED
    b = _reference("sgd-huge-lr")
    div = b.status == STATUS_DIVERGED
    assert div.sum() >= 6 and b.n_diverged == div.sum() and not np.any(b.fitted)
    assert np.all(b.epochs[div] < 20), "a non-finite parameter ends the run"
    assert np.all(~np.isfinite(b.loss[div]))
    mixed = _reference("sgd-mixed")
    assert {STATUS_DIVERGED, STATUS_FAILED} <= set(mixed.status.tolist())
    adam = _reference("adam-loss-overflows")
    assert np.any(adam.status == STATUS_DIVERGED) and np.all(~np.isfinite(adam.loss[adam.status == STATUS_DIVERGED]))


@pytest.mark.parametrize("name", sorted(PLANS))
def test_numba_agrees_on_diverging_runs(name):
    pytest.importorskip("numba")
    from fastpoly.backends.numba.train import train_range_numba

    _same(_reference(name), train_range_numba(_plan(name), 0, 8))


@pytest.mark.cuda_emu
@pytest.mark.parametrize("name", sorted(PLANS))
def test_cuda_kernel_agrees_on_diverging_runs(emu, name):
    from fastpoly.backends.cuda.train import train_range_cuda

    _same(_reference(name), train_range_cuda(_plan(name), 0, 8, device=emu.EmuDevice()))


def test_train_cli_counts_diverged_runs_apart(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rc = main(["train", "4-6-1", "--train", "3,0,7,12,5,9,14,1", "--target", "0011" * 4, "--runs", "6",
                   "--lr", "1e30", "--batch", "3", "--max-epochs", "20", "--backend", "numpy", "--out", str(tmp_path / "t"),
                   "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    n = int(np.count_nonzero(_reference("sgd-huge-lr").status[:6] == STATUS_DIVERGED))
    assert n >= 4
    assert f"fitted 0, failed 6 (diverged {n}, did not fit {6 - n})" in out
    assert f"diverged       {n} runs stopped at a non-finite parameter" in out
    assert "no run fitted the train set" in out



def test_diverged_tally_survives_checkpoint_resume_and_tasks(tmp_path, monkeypatch):
    """The diverged count is part of each counted batch: summed over tasks, kept in checkpoints, and reported
    after a resume (before, it was a per-process tally, lost on resume and under Dask)."""
    from fastpoly.run import driver
    from fastpoly.run.distributed import count_task
    from fastpoly.sgd import sample_sgd
    from fastpoly.sgd.api import TrainBackend

    status = _reference("sgd-mixed").status
    expected = int(np.count_nonzero(status == STATUS_DIVERGED))
    assert 0 < expected < 8
    kw = dict(seed=0, backend="numpy", lr=1e18, minibatch=3, max_epochs=20)
    whole = sample_sgd("4-6-1", X4, (ROWS, LABELS), 8, **kw)
    assert whole.info["n_diverged"] == expected
    # Dask-style tasks: each returns its own tally
    parts = [count_task(_plan("sgd-mixed"), lo, hi, TrainBackend("numpy"), 3) for lo, hi in ((0, 5), (5, 8))]
    assert [int(p[5]) for p in parts] == [int(np.count_nonzero(status[a:b] == STATUS_DIVERGED))
                                          for a, b in ((0, 5), (5, 8))]
    # interrupted after 2 batches of 2 runs, resumed: the tally of the first part is kept
    real = driver.local_batches

    def stop_after(be, plan, todo, bs, **kw):
        for i, item in enumerate(real(be, plan, todo, bs, **kw)):
            if i == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(driver, "local_batches", stop_after)
    ck = tmp_path / "ck"
    with pytest.raises(KeyboardInterrupt):
        sample_sgd("4-6-1", X4, (ROWS, LABELS), 8, checkpoint=ck, checkpoint_every=0, batch_size=2, **kw)
    monkeypatch.setattr(driver, "local_batches", real)
    got = sample_sgd("4-6-1", X4, (ROWS, LABELS), 8, checkpoint=ck, resume=True, batch_size=2, **kw)
    assert got.info["resumed_from"] == 4 and got.info["n_diverged"] == expected
    again = sample_sgd("4-6-1", X4, (ROWS, LABELS), 8, checkpoint=ck, resume=True, **kw)
    assert again.info["already_complete"] and again.info["n_diverged"] == expected
