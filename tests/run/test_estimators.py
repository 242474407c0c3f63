"""The three estimators as sibling plans of the one driver (issue 19 part C).

Rejection sampling, P_SGD training and GP draws: each checkpoints and resumes (``fastpoly.resume``
rebuilds any of them), each writes a ResultMeta, each command offers the same run options.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from support import subprocess_env, wait_for_generation

import fastpoly
import fastpoly.run.driver as driver
from fastpoly import MLP, FunctionCounts, boolean_inputs
from fastpoly.cli.main import build_parser, main
from fastpoly.counts.meta import ESTIMATORS, ResultMeta, describe_inputs, estimator_of
from fastpoly.gp import sample as gp_sample
from fastpoly.gp.sampling import GPDrawPlan, make_gp_plan
from fastpoly.run.checkpoint import Checkpoint
from fastpoly.run.options import RunOptions
from fastpoly.sgd import sample_sgd
from fastpoly.sgd.plan import TrainPlan, make_train_plan

X3 = boolean_inputs(3)
TRAIN3 = (np.array([0, 1, 2, 3]), np.array([0, 1, 1, 0]))
#: a short training job (numba: compiled once, then cached)
TRAIN_ARGS = ["3-4-1", "--train", "0,1,2,3", "--target", "01101001", "--max-epochs", "100", "--lr", "0.5",
              "--backend", "numba", "--no-progress", "--batch-size", "64"]
DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")


def _interrupt_after(monkeypatch, n_batches):
    """Make the driver's batch loop stop with a KeyboardInterrupt after ``n_batches`` batches."""
    real = driver.local_batches

    def stopping(be, plan, todo, bs, **kw):
        for i, item in enumerate(real(be, plan, todo, bs, **kw)):
            if i == n_batches:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(driver, "local_batches", stopping)
    return lambda: monkeypatch.setattr(driver, "local_batches", real)


# --- done-when: fastpoly.resume resumes an interrupted `fastpoly train --checkpoint` to the bytes ---------------
@pytest.mark.slow
def test_sigint_of_fastpoly_train_then_fastpoly_resume_gives_the_uninterrupted_bytes(tmp_path, capsys):
    pytest.importorskip("numba")
    n = "20000"
    assert main(["train", *TRAIN_ARGS, "--runs", n, "--out", str(tmp_path / "whole")]) == 0
    whole = (tmp_path / "whole" / "counts.npz").read_bytes()
    capsys.readouterr()
    ck = tmp_path / "ck"
    p = subprocess.Popen([sys.executable, "-m", "fastpoly", "train", *TRAIN_ARGS, "--runs", n, "--out",
                          str(tmp_path / "part"), "--checkpoint", str(ck), "--checkpoint-every", "0"],
                         env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_generation(ck, 2, proc=p)  # the first checkpoint generations are on disk: interrupt now
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "checkpoint saved" in err and "--resume" in err and "Traceback" not in err
    st = Checkpoint.open(ck).state
    assert 0 < st["n_samples"] < int(n) and not st["complete"]
    assert not (tmp_path / "part" / "counts.npz").exists()
    res = fastpoly.resume(ck, progress=False)
    assert res.info["resumed_from"] == st["n_samples"]
    assert res.to_bytes() == whole
    assert res.meta["estimator"] == "psgd" and res.meta["target"] == "96"


def test_fastpoly_train_resume_on_the_command_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("numba")
    args = [*TRAIN_ARGS, "--runs", "1000"]
    assert main(["train", *args, "--out", str(tmp_path / "whole")]) == 0
    capsys.readouterr()
    ck = tmp_path / "ck"
    restore = _interrupt_after(monkeypatch, 3)
    assert main(["train", *args, "--out", str(tmp_path / "part"), "--checkpoint", str(ck), "--checkpoint-every",
                 "0", "--compress"]) == 130
    restore()
    # a result option that differs from the checkpoint's is refused, one line
    assert main(["train", "--resume", str(ck), "--lr", "0.1"]) == 2
    assert "--lr 0.5 (given: 0.1)" in capsys.readouterr().err
    # another command cannot continue it
    assert main(["sample", "--resume", str(ck)]) == 2
    assert "fastpoly train --resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(ck), "--no-progress"]) == 0
    assert "resumed        from run 192" in capsys.readouterr().out
    got = FunctionCounts.load(tmp_path / "part" / "counts.npz")
    assert got.to_bytes() == (tmp_path / "whole" / "counts.npz").read_bytes()


# --- P_SGD through the API ---------------------------------------------------------------------------------------
def test_psgd_checkpoint_stores_the_recipe_and_resume_rebuilds_it(tmp_path, monkeypatch):
    pytest.importorskip("numba")
    kw = dict(seed=2, backend="numba", max_epochs=80, lr=0.3, minibatch=2, progress=False)
    ref = sample_sgd("3-4-1", X3, TRAIN3, n_runs=300, **kw)
    restore = _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        sample_sgd("3-4-1", X3, TRAIN3, n_runs=300, batch_size=50, checkpoint=tmp_path / "ck", checkpoint_every=0,
                   **kw)
    restore()
    ck = Checkpoint.open(tmp_path / "ck")
    assert ck.estimator == "psgd" and ck.job["plan"]["recipe"]["lr"] == 0.3
    got = fastpoly.resume(tmp_path / "ck", backend="numba", batch_size=64, progress=False)
    assert got.to_bytes() == ref.to_bytes()


def test_train_plan_job_spec_round_trip_keeps_the_leak_emulation():
    tp = make_train_plan("3-4-1", X3, TRAIN3, 7, {"lr": 0.25, "max_epochs": 9})
    tp = tp.with_leak(3, [2, -1, 5], [0, 2**62, 2])
    spec = tp.job_spec()
    back = TrainPlan.from_job(spec, tp.compat_meta(), np.asarray(X3, np.float32), 7)
    assert back.compat_meta() == tp.compat_meta()
    assert back.leak_workers == 3 and back.leak_E.tolist() == [2, -1, 5] and back.leak_from.tolist() == [0, 2**62, 2]


def test_records_with_a_checkpoint_are_refused(tmp_path):
    with pytest.raises(ValueError, match="records=True .* checkpoint="):
        sample_sgd("3-4-1", X3, TRAIN3, n_runs=10, backend="numpy", records=True, checkpoint=tmp_path / "ck")


# --- GP draws: checkpoint, resume, Dask-ready plan ------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "numba"], ids=lambda b: f"backend={b}")
def test_gp_draws_checkpoint_and_resume_to_identical_bytes(tmp_path, monkeypatch, backend):
    if backend == "numba":
        pytest.importorskip("numba")
    arch = MLP(3, (5,))
    ref = gp_sample(arch, X3, 3000, seed=4, backend=backend)
    assert ref.meta["estimator"] == "gp_draws" and ref.meta["arch"]["limit"] == "nngp"
    restore = _interrupt_after(monkeypatch, 4)
    out = tmp_path / "res.npz"
    with pytest.raises(KeyboardInterrupt):
        gp_sample(arch, X3, 3000, seed=4, backend=backend, batch_size=250, checkpoint=tmp_path / "ck",
                  checkpoint_every=0, memory_budget=2048, out=out)
    restore()
    st = Checkpoint.open(tmp_path / "ck").state
    assert st["n_samples"] == 1000 and not st["complete"]
    got = fastpoly.resume(tmp_path / "ck", backend=backend, out=out)
    assert got.info["resumed_from"] == 1000
    assert got.to_bytes() == ref.to_bytes() == out.read_bytes()
    # a completed checkpoint returns the result without drawing
    again = fastpoly.resume(tmp_path / "ck")
    assert again.info.get("already_complete") and again.to_bytes() == ref.to_bytes()


def test_gp_checkpoint_keeps_a_given_kernel(tmp_path, monkeypatch):
    arch = MLP(3, (5,))
    K = make_gp_plan(arch, X3).K * 1.5  # a kernel that arch and X do not give
    ref = gp_sample(arch, X3, 2000, seed=1, backend="numpy", K=K)
    restore = _interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        gp_sample(arch, X3, 2000, seed=1, backend="numpy", K=K, batch_size=500, checkpoint=tmp_path / "ck",
                  checkpoint_every=0)
    restore()
    assert fastpoly.resume(tmp_path / "ck", backend="numpy").to_bytes() == ref.to_bytes()
    # the stored kernel is checked like the inputs
    np.save(tmp_path / "ck" / "kernel.npy", K * 2)
    with pytest.raises(ValueError, match="kernel.npy does not match"):
        Checkpoint.open(tmp_path / "ck")


def test_gp_sample_command_resumes_and_compresses(tmp_path, capsys, monkeypatch):
    args = ["gp", "sample", "3-5-1", "--samples", "3000", "--backend", "numpy", "--no-progress", "--batch-size",
            "200"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    restore = _interrupt_after(monkeypatch, 2)
    assert main([*args, "--out", str(tmp_path / "part"), "--checkpoint", str(tmp_path / "ck"), "--checkpoint-every",
                 "0", "--compress"]) == 130
    restore()
    capsys.readouterr()
    assert main(["gp", "sample", "--resume", str(tmp_path / "ck"), "--no-progress"]) == 0
    assert "resumed        from draw 400" in capsys.readouterr().out
    whole = FunctionCounts.load(tmp_path / "whole" / "counts.npz")
    part = FunctionCounts.load(tmp_path / "part" / "counts.npz")
    assert part.to_bytes() == whole.to_bytes()


def test_gp_plan_rebuilds_from_its_job_spec():
    plan = make_gp_plan("3-6-1", X3, seed=9)
    back = GPDrawPlan.from_job(plan.job_spec(), plan.job_arrays(), np.asarray(X3, np.float32), 9)
    assert back.compat_meta() == plan.compat_meta() and np.array_equal(back.F, plan.F)


# --- ResultMeta --------------------------------------------------------------------------------------------------
def test_every_estimator_says_what_it_is(tmp_path):
    prior = fastpoly.sample("3-4-1", n_samples=200, backend="numpy", progress=False)
    post = fastpoly.sample("3-4-1", n_samples=200, backend="numpy", progress=False, train=TRAIN3)
    gp = gp_sample("3-4-1", n_samples=200, backend="numpy")
    psgd = sample_sgd("3-4-1", X3, TRAIN3, n_runs=2, backend="numpy", max_epochs=3)
    # the sampler's files keep their pinned metadata (no new key: the golden test); the others record it
    assert [c.meta.get("estimator") for c in (prior, post, gp, psgd)] == [None, None, "gp_draws", "psgd"]
    assert [ResultMeta.from_meta(c.meta).estimator for c in (prior, post, gp, psgd)] == \
        ["prior", "posterior", "gp_draws", "psgd"]
    assert "estimator" not in prior.meta and "estimator" not in post.meta
    assert gp.meta["inputs"] == psgd.meta["inputs"] == {"made": "boolean", "centered": False}
    rm = psgd.result_meta
    assert rm.recipe == psgd.meta["sgd_recipe"] and rm.train_rows == (0, 1, 2, 3) and rm.version == 1
    # a saved and reloaded file says the same
    psgd.save(tmp_path / "p.npz")
    assert ResultMeta.from_meta(FunctionCounts.load(tmp_path / "p.npz").meta) == rm


def test_legacy_files_are_read(tmp_path):
    old = FunctionCounts.load(os.path.join(DATA, "counts-v1-3-4-1-seed11-n300.npz"))
    rm = ResultMeta.from_meta(old.meta)
    assert rm.estimator == "prior" and rm.version == 0 and rm.inputs is None
    assert estimator_of({"kind": "P_SGD", "train_rows": [1]}) == "psgd"
    assert estimator_of({"arch": {"limit": "nngp"}, "gp": {"factor": "cholesky"}}) == "gp_draws"
    assert estimator_of({"arch": {"limit": "nngp"}, "gp": {"method": "ep"}, "train_rows": [1]}) == "gp_posterior"
    assert set(ESTIMATORS) == {"prior", "posterior", "psgd", "gp_draws", "gp_posterior"}
    with pytest.raises(ValueError, match="unknown estimator"):
        ResultMeta("nngp", {}, "", 0)


def test_inputs_are_recorded_not_guessed():
    assert describe_inputs(boolean_inputs(4, centered=True), 4) == {"made": "boolean", "centered": True}
    assert describe_inputs(boolean_inputs(4)[:5], 4) == {"made": "given"}
    c = gp_sample("3-4-1", boolean_inputs(3, centered=True), 100, backend="numpy")
    assert c.meta["inputs"] == {"made": "boolean", "centered": True}


# --- RunOptions ---------------------------------------------------------------------------------------------------
def test_run_options_are_validated_once_and_frozen(tmp_path):
    o = RunOptions.build(1e3, 5, batch_size=10, out=str(tmp_path / "folder") + os.sep)
    assert (o.start, o.stop, o.n_samples, o.batch_size) == (5, 1005, 1000, 10)
    assert o.out == os.path.join(str(tmp_path / "folder"), "counts.npz")  # a folder gets counts.npz, as the CLI
    with pytest.raises(AttributeError):
        o.start = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="--runs must be a positive integer"):
        RunOptions.build(0, names={"n_samples": "--runs"})
    with pytest.raises(ValueError, match="compress"):
        RunOptions.build(10, compress=True)


def test_api_takes_one_options_object(tmp_path):
    opts = RunOptions.build(300, 0, batch_size=64, progress=False, out=tmp_path)
    c = fastpoly.sample("3-4-1", backend="numpy", options=opts)
    assert (tmp_path / "counts.npz").read_bytes() == c.to_bytes()
    assert c.to_bytes() == fastpoly.sample("3-4-1", n_samples=300, backend="numpy", progress=False).to_bytes()
    with pytest.raises(ValueError, match="not both .*n_samples"):
        fastpoly.sample("3-4-1", n_samples=5, backend="numpy", options=opts)
    g = gp_sample("3-4-1", options=RunOptions.build(300, progress=False), backend="numpy")
    assert g.n_samples == 300
    with pytest.raises(ValueError, match="not both"):
        gp_sample("3-4-1", n_samples=5, options=RunOptions.build(300))


def test_an_existing_folder_as_out_gets_counts_npz(tmp_path):
    c = fastpoly.sample("3-4-1", n_samples=100, backend="numpy", progress=False, out=tmp_path)
    assert (tmp_path / "counts.npz").read_bytes() == c.to_bytes()


# --- the CLI on par -------------------------------------------------------------------------------------------------
def _actions(parser):
    return {a.dest: a for a in parser._actions}


def test_every_estimator_command_has_the_same_option_objects():
    p = build_parser()
    sub = next(a for a in p._actions if a.dest == "command").choices
    gp = next(a for a in sub["gp"]._actions if a.dest == "gp_command").choices
    cmds = {"sample": sub["sample"], "train": sub["train"], "gp sample": gp["sample"]}
    run = ("seed", "start", "backend", "batch_size", "out", "force", "no_progress", "checkpoint", "checkpoint_every",
           "resume", "memory_budget", "compress", "dask")
    arch = ("arch", "activation", "weights", "sigma_w", "sigma_b", "bias_scaling", "no_bias", "centered", "inputs")
    acts = {name: _actions(c) for name, c in cmds.items()}
    for dest in run + arch:
        objs = {id(a[dest]) for a in acts.values()}
        assert len(objs) == 1, f"{dest} is not one shared option object"
    for dest in ("train", "train_size", "target", "labels", "train_seed"):
        assert acts["sample"][dest] is acts["train"][dest]


def test_train_takes_given_inputs_and_labels(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.uint8)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    assert main(["train", "3-4-1", "--inputs", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--train", "0,1,2,3,4,5", "--runs", "4", "--max-epochs", "5", "--backend", "numpy",
                 "--no-progress", "--out", str(tmp_path / "o")]) == 0
    c = FunctionCounts.load(tmp_path / "o" / "counts.npz")
    assert c.meta["inputs"] == {"made": "given"} and c.n_key_bits == 6 and c.meta["n_rows"] == 12
    capsys.readouterr()
    assert main(["train", "3-4-1", "--inputs", str(tmp_path / "X.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--target", "01", "--train", "0,1", "--runs", "4", "--backend", "numpy", "--out",
                 str(tmp_path / "o2")]) == 2
    assert "either as --target or as --labels" in capsys.readouterr().err


def test_gp_posterior_table_is_a_counts_store_file(tmp_path):
    from fastpoly.gp import posterior
    from fastpoly.gp.bayes import GPPosterior

    t = posterior("3-4-1", X3, TRAIN3, ["0110", "1001", "1111", "0000"], "ep")
    t.save(tmp_path / "t.npz")
    c = FunctionCounts.load(tmp_path / "t.npz")
    assert c.meta["estimator"] == "gp_posterior" and ResultMeta.from_meta(c.meta).train_rows == (0, 1, 2, 3)
    back = GPPosterior.load(tmp_path / "t.npz")
    order = {t.hex(i): i for i in range(len(t))}
    for j in range(len(back)):
        i = order[back.hex(j)]
        assert back.log_p[j] == t.log_p[i] and np.isnan(back.stderr[j]) == np.isnan(t.stderr[i])
    assert back.log_p_S == t.log_p_S and back.method == "ep" and back.meta["gp"] == t.meta["gp"]
    with pytest.raises(ValueError, match="not a GP posterior table"):
        GPPosterior.from_counts(fastpoly.sample("3-4-1", n_samples=10, backend="numpy", progress=False))


def test_gp_draws_and_training_run_on_dask():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster)
    try:
        ref = gp_sample("3-5-1", X3, 2000, seed=6, backend="numpy")
        got = gp_sample("3-5-1", X3, 2000, seed=6, backend="numpy", client=client, task_size=300)
        assert got.to_bytes() == ref.to_bytes()
        kw = dict(seed=2, backend="numpy", max_epochs=4, progress=False)
        ref = sample_sgd("3-4-1", X3, TRAIN3, n_runs=12, **kw)
        got = sample_sgd("3-4-1", X3, TRAIN3, n_runs=12, client=client, task_size=5, **kw)
        assert got.to_bytes() == ref.to_bytes()
    finally:
        client.close()
        cluster.close()


def test_sample_takes_given_inputs_with_the_shared_option(tmp_path, capsys):
    X = np.random.default_rng(1).normal(size=(10, 3)).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    assert main(["sample", "3-4-1", "--inputs", str(tmp_path / "X.npy"), "--samples", "500", "--backend", "numpy",
                 "--no-progress", "--no-plot", "--out", str(tmp_path / "o")]) == 0
    got = FunctionCounts.load(tmp_path / "o" / "counts.npz")
    assert got.to_bytes() == fastpoly.sample("3-4-1", X, 500, backend="numpy", progress=False).to_bytes()
    capsys.readouterr()
    assert main(["sample", "3-4-1", "--inputs", str(tmp_path / "X.npy"), "--centered", "--out",
                 str(tmp_path / "o2")]) == 2
    assert "--centered is for the Boolean inputs" in capsys.readouterr().err
    assert main(["gp", "sample", "21-4-1", "--out", str(tmp_path / "o3")]) == 2
    assert "pass the rows with --inputs X.npy" in capsys.readouterr().err
