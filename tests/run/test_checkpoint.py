"""Checkpoint and resume: SIGKILL at random moments, Ctrl-C, foreign and corrupted checkpoints."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from support import checkpoint_generation, subprocess_env, wait_for, wait_for_generation

import fastpoly
from fastpoly import MLP
from fastpoly.api import resume
from fastpoly.run.checkpoint import Checkpoint, CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCH = MLP(4, (5,))
N = 12000

WORKER = """
import sys, fastpoly
ck, out = sys.argv[1], sys.argv[2]
fastpoly.sample(fastpoly.MLP(4, (5,)), n_samples={n}, seed=11, backend="numpy", batch_size=40,
                progress=False, checkpoint=ck, resume=True, checkpoint_every=0, memory_budget=2048,
                out=out)
"""


def _reference(tmp_path, n=N):
    ref = fastpoly.sample(ARCH, n_samples=n, seed=11, backend="numpy", progress=False)
    return ref.to_bytes()


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_identical_file(tmp_path):
    expect = _reference(tmp_path)
    ck, out = str(tmp_path / "ck"), str(tmp_path / "counts.npz")
    rng = np.random.default_rng(2024)
    kills = 0
    progress = []
    for attempt in range(40):
        p = subprocess.Popen([sys.executable, "-c", WORKER.format(n=N), ck, out], env=subprocess_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < 5:
            # wait until this worker has saved a random number (1..4) of new checkpoint generations, then kill
            # it: no guessed sleeps, and the kill lands anywhere in the save/draw cycle of the next batch
            want = checkpoint_generation(ck) + int(rng.integers(1, 5))
            wait_for(lambda: checkpoint_generation(ck) >= want or p.poll() is not None,
                     f"checkpoint generation {want}", timeout=60)
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
                st = Checkpoint.open(ck).state
                progress.append(st["n_samples"] if st else 0)
                continue
        err = p.communicate(timeout=120)[1]
        assert p.returncode == 0, err.decode()[-2000:]
        break
    assert kills >= 3, "the worker finished before it could be killed several times"
    assert progress == sorted(progress) and len(set(progress)) == len(progress)  # progress is kept
    with open(out, "rb") as fh:
        assert fh.read() == expect
    # the completed checkpoint returns the same result without sampling
    again = fastpoly.sample(ARCH, n_samples=N, seed=11, backend="numpy", progress=False, checkpoint=ck,
                            resume=True)
    assert again.info.get("already_complete") and again.to_bytes() == expect
    assert not [f for f in os.listdir(ck) if f.endswith(".run") or f.startswith(".tmp-")]


@pytest.mark.slow
def test_ctrl_c_saves_and_cli_resume(tmp_path):
    n = 40000
    out1, out2, ck = tmp_path / "a", tmp_path / "b", tmp_path / "ck"
    base = [sys.executable, "-m", "fastpoly", "sample", "4-5-1", "--samples", str(n), "--seed", "3",
            "--backend", "numpy", "--batch-size", "40", "--no-plot", "--no-progress"]
    r = subprocess.run(base + ["--out", str(out1)], env=subprocess_env(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    p = subprocess.Popen(base + ["--out", str(out2), "--checkpoint", str(ck), "--checkpoint-every", "0"],
                         env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_generation(ck, 3, proc=p)  # a few batches saved: interrupt in the middle of the run
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err.decode()
    assert b"checkpoint saved" in err and b"--resume" in err
    st = Checkpoint.open(ck).state
    assert 0 < st["n_samples"] < n and not st["complete"]
    r = subprocess.run([sys.executable, "-m", "fastpoly", "sample", "--resume", str(ck), "--no-progress"],
                       env=subprocess_env(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert b"resumed" in r.stdout
    assert (out2 / "counts.npz").read_bytes() == (out1 / "counts.npz").read_bytes()


def _partial_checkpoint(tmp_path, n=2000, stop_after=800):
    """A checkpoint of a run stopped part-way (simulated by a KeyboardInterrupt from the progress bar hook)."""
    ck = tmp_path / "ck"
    job = dict(arch=ARCH, n_samples=n, seed=11, backend="numpy", progress=False, batch_size=100)
    import fastpoly.run.driver as api

    real = api.local_batches

    def stopping(be, plan, todo, bs, **kw):
        for lo, hi, b in real(be, plan, todo, bs, **kw):
            if lo >= stop_after:
                raise KeyboardInterrupt
            yield lo, hi, b

    api.local_batches = stopping
    try:
        with pytest.raises(KeyboardInterrupt):
            fastpoly.sample(**job, checkpoint=ck, checkpoint_every=0, memory_budget=1024)
    finally:
        api.local_batches = real
    return ck, job


def test_resume_in_python_and_via_resume_function(tmp_path):
    ck, job = _partial_checkpoint(tmp_path)
    st = Checkpoint.open(ck).state
    assert st["n_samples"] == 800 and st["runs"]
    ref = fastpoly.sample(**job)
    got = resume(ck, backend="numpy", progress=False)
    assert got.to_bytes() == ref.to_bytes()
    assert got.info["resumed_from"] == 800


def test_existing_checkpoint_without_resume_is_refused(tmp_path):
    ck, job = _partial_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="resume"):
        fastpoly.sample(**job, checkpoint=ck)


@pytest.mark.parametrize("change", ["seed", "n_samples", "arch", "train"])
def test_foreign_checkpoint_refused(tmp_path, change):
    ck, job = _partial_checkpoint(tmp_path)
    other = dict(job)
    if change == "seed":
        other["seed"] = 12
    elif change == "n_samples":
        other["n_samples"] = 3000
    elif change == "arch":
        other["arch"] = MLP(4, (6,))
    else:
        other["train"] = ([0], [1])
    with pytest.raises(CheckpointError, match="another job"):
        fastpoly.sample(**other, checkpoint=ck, resume=True)


def test_corrupted_checkpoint_refused(tmp_path):
    ck, job = _partial_checkpoint(tmp_path)
    state = json.loads((ck / "state.json").read_text())
    # edited state (checksum no longer matches)
    edited = dict(state, n_samples=state["n_samples"] + 1)
    (ck / "state.json").write_text(json.dumps(edited))
    with pytest.raises(CheckpointError, match="checksum"):
        fastpoly.sample(**job, checkpoint=ck, resume=True)
    (ck / "state.json").write_text(json.dumps(state))
    # a modified run file
    run = ck / state["runs"][0]["name"]
    raw = bytearray(run.read_bytes())
    raw[-1] ^= 0xFF
    run.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum"):
        fastpoly.sample(**job, checkpoint=ck, resume=True)
    run.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        fastpoly.sample(**job, checkpoint=ck, resume=True)
    # garbage instead of JSON; a folder that is not a checkpoint
    (ck / "state.json").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError):
        fastpoly.sample(**job, checkpoint=ck, resume=True)
    (ck / "job.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a fastpoly checkpoint"):
        Checkpoint.open(ck)


def test_resume_on_empty_folder_starts_fresh_and_checks_arguments(tmp_path):
    ref = fastpoly.sample(ARCH, n_samples=500, seed=1, backend="numpy", progress=False)
    got = fastpoly.sample(ARCH, n_samples=500, seed=1, backend="numpy", progress=False,
                          checkpoint=tmp_path / "new", resume=True)
    assert got.to_bytes() == ref.to_bytes()
    with pytest.raises(ValueError, match="checkpoint=DIR"):
        fastpoly.sample(ARCH, n_samples=10, resume=True)
    with pytest.raises(ValueError, match="checkpoint_every"):
        fastpoly.sample(ARCH, n_samples=10, checkpoint=tmp_path / "x", checkpoint_every=-1)


def test_time_sized_batches_grow_shrink_and_cover_every_index():
    """``local_batches(target_s=...)``: calls sized by the measured rate, capped, in order, covering all."""
    import time as _time

    from fastpoly.backends.base import CountBatch
    from fastpoly.run.batches import local_batches

    class Slow:
        cost = 1e-4  # seconds per sample

        def count_range(self, plan, lo, hi):
            _time.sleep(self.cost * (hi - lo))
            e = np.zeros((0, 1), np.uint64)
            return CountBatch(e, np.zeros(0, np.int64), np.zeros(0, np.uint64), hi - lo, 0)

    eng = Slow()
    sizes = []
    for lo, hi, b in local_batches(eng, None, [(0, 3000), (5000, 5004)], 1000, target_s=0.02, first=2):
        sizes.append((lo, hi))
        if lo >= 1000:
            eng.cost = 1e-3  # ten times slower: the next call shrinks
    assert sizes[0] == (0, 2) and sizes[1] == (2, 10)  # the first call, then at most 4x growth
    flat = [i for lo, hi in sizes for i in range(lo, hi)]
    assert flat == list(range(3000)) + list(range(5000, 5004))
    n = [hi - lo for lo, hi in sizes]
    assert max(n) <= 1000 and n[-1] <= 4
    i = next(k for k, (lo, _) in enumerate(sizes) if lo >= 1000)
    # call i + 1 is the first slow one; the call after it shrinks to the new rate (0.02 s / 1e-3 = 20 samples)
    assert n[i + 2] < n[i + 1] / 4
