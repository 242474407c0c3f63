"""Nothing lost, nothing laundered (issue 10): pre-flight checks, rescued results, atomic figures,
exclusive folders, SIGTERM/SIGHUP, and the smaller cases."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from support import subprocess_env, wait_for

import fastpoly
from fastpoly.atomic import LOCK_NAME, FolderInUse, FolderLock
from fastpoly.cli.main import main
from fastpoly.run.checkpoint import CheckpointError
from fastpoly.run.rescue import ResultNotSaved

ROOT = Path(__file__).resolve().parents[2]
ARCH = "3-4-1"


_env = subprocess_env


def _fail_writes_in(monkeypatch, folder, err=errno.ENOSPC):
    """Every temporary file in ``folder`` (but the pre-flight probe) fails like a full disk."""
    real = tempfile.mkstemp
    folder = str(folder).rstrip("/")

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):
        if dir is not None and str(dir).rstrip("/") == folder and not str(prefix).startswith(".tmp-probe-"):
            raise OSError(err, os.strerror(err))
        return real(suffix, prefix, dir, text)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def _no_sampling(monkeypatch):
    """Fail the test if anything is drawn."""
    import fastpoly.run.driver as driver

    def boom(*a, **k):
        raise AssertionError("sampling started")

    monkeypatch.setattr(driver, "_run", boom)


# --- case 2: pre-flight, and results kept when the final write fails ----------------------------
def test_preflight_out_not_writable(tmp_path, monkeypatch):
    _no_sampling(monkeypatch)
    f = tmp_path / "a-file"
    f.write_text("x")
    with pytest.raises(OSError):
        fastpoly.sample(ARCH, n_samples=10**9, backend="numpy", progress=False, out=f / "c.npz")
    (tmp_path / "dir" / "counts.npz").mkdir(parents=True)  # a folder gets counts.npz (as the CLI's --out)...
    with pytest.raises(IsADirectoryError):  # ...which must then be a file
        fastpoly.sample(ARCH, n_samples=10**9, backend="numpy", progress=False, out=tmp_path / "dir")
    real = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "denied"))
                        if k.get("dir") == str(tmp_path / "ro") else real(*a, **k))
    with pytest.raises(PermissionError, match="cannot write"):
        fastpoly.sample(ARCH, n_samples=10**9, backend="numpy", progress=False, out=tmp_path / "ro" / "c.npz")
    assert (tmp_path / "ro").is_dir()  # the folder is created by the check


def test_preflight_annotations_and_options(tmp_path, monkeypatch):
    _no_sampling(monkeypatch)
    with pytest.raises(ValueError, match="JSON"):
        fastpoly.sample(ARCH, n_samples=10**9, progress=False, annotations={"x": object()}, out=tmp_path / "c.npz")
    with pytest.raises(ValueError, match="JSON"):
        fastpoly.sample(ARCH, n_samples=10**9, progress=False, annotations={"x": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        fastpoly.sample(ARCH, n_samples=10**9, progress=False, checkpoint=tmp_path / "ck",
                        checkpoint_extra={"f": open})
    assert not (tmp_path / "c.npz").exists() and not (tmp_path / "ck").exists()


def test_disk_full_at_the_end_result_goes_to_a_fallback(tmp_path, monkeypatch):
    d = tmp_path / "full"
    d.mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    _fail_writes_in(monkeypatch, d)
    ref = fastpoly.sample(ARCH, n_samples=500, backend="numpy", progress=False)
    for budget in (None, 2048):  # in memory, and with sorted runs spilled to disk
        with pytest.raises(ResultNotSaved, match="saved to") as ei:
            fastpoly.sample(ARCH, n_samples=500, backend="numpy", progress=False, out=d / "c.npz",
                            memory_budget=budget, batch_size=50)
        assert str(ei.value.saved_to).startswith(str(tmp_path / "tmp"))
        assert Path(ei.value.saved_to).read_bytes() == ref.to_bytes()
        assert list(d.iterdir()) == []


def test_disk_full_at_the_end_checkpoint_keeps_everything(tmp_path, monkeypatch):
    d, ck = tmp_path / "full", tmp_path / "ck"
    d.mkdir()
    _fail_writes_in(monkeypatch, d)
    with pytest.raises(ResultNotSaved, match="checkpoint") as ei:
        fastpoly.sample(ARCH, n_samples=700, backend="numpy", progress=False, out=d / "c.npz", checkpoint=ck,
                        batch_size=100, checkpoint_every=1e9)
    assert ei.value.saved_to == str(ck)
    monkeypatch.undo()
    got = fastpoly.resume(ck, backend="numpy", progress=False, out=d / "c.npz")
    assert got.info["resumed_from"] == 700  # nothing was drawn again
    ref = fastpoly.sample(ARCH, n_samples=700, backend="numpy", progress=False)
    assert (d / "c.npz").read_bytes() == ref.to_bytes()


# --- case 4: figures and tables are written atomically ---------------------------------------
@pytest.mark.parametrize("what", ["plot", "sample-plot", "csv", "anchors"])
def test_outputs_are_atomic_on_a_failing_disk(what, tmp_path, monkeypatch, capsys):
    import fastpoly.atomic as atomic

    c = fastpoly.sample(ARCH, n_samples=300, backend="numpy", progress=False)
    src = tmp_path / "c.npz"
    c.save(src)
    out = tmp_path / "o"
    out.mkdir()

    def full_fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # the data did not fit

    args = {
        "plot": ["plot", "rank", str(src), "--out", str(out / "r.png")],
        "sample-plot": ["sample", ARCH, "--samples", "300", "--backend", "numpy", "--no-progress", "--out", str(out)],
        "csv": ["analyze", str(src), "--csv", str(out / "t.csv")],
        "anchors": ["anchors", "export", str(src), "--out", str(out / "a.txt")],
    }[what]
    if what == "sample-plot":  # the counts file is written; the figure fails
        import fastpoly.plotting as plotting

        real = plotting.atomic_write_bytes

        def fail_png(path, data):
            if str(path).endswith(".png"):
                monkeypatch.setattr(atomic.os, "fsync", full_fsync)
            return real(path, data)

        monkeypatch.setattr(plotting, "atomic_write_bytes", fail_png)
    else:
        monkeypatch.setattr(atomic.os, "fsync", full_fsync)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "No space left on device" in err
    left = sorted(p.name for p in out.iterdir())
    assert left == (["counts.npz"] if what == "sample-plot" else []), left  # no partial, empty or temp file


# --- case 5: one run per checkpoint folder (and per --out folder) ---------------------------
_HOLD = textwrap.dedent("""
    import sys, time
    from fastpoly.atomic import FolderLock
    FolderLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(60)
""")


def test_folder_lock_names_the_holder_and_dies_with_it(tmp_path):
    d = tmp_path / "ck"
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(d)], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(FolderInUse, match=f"pid {p.pid}"):
            FolderLock(d).acquire()
        with pytest.raises(FolderInUse):
            fastpoly.sample(ARCH, n_samples=100, backend="numpy", progress=False, checkpoint=d)
    finally:
        p.kill()  # SIGKILL: no cleanup runs, the lock file stays behind
        p.wait()
    assert (d / LOCK_NAME).exists()
    with FolderLock(d) as lk:  # a dead holder's lock is not stale: the kernel released it
        assert lk.held
    assert not (d / LOCK_NAME).exists()
    fastpoly.sample(ARCH, n_samples=100, backend="numpy", progress=False, checkpoint=d)


@pytest.mark.parametrize("flock", ["none", "unsupported"])
def test_folder_lock_without_flock_uses_an_exclusive_create(flock, tmp_path, monkeypatch):
    import json

    import fastpoly.atomic as atomic

    if flock == "none":
        monkeypatch.setattr(atomic, "fcntl", None)
    else:
        class NoFlock:
            LOCK_EX = LOCK_NB = 0

            @staticmethod
            def flock(fd, op):
                raise OSError(errno.ENOLCK, "no locks available")

        monkeypatch.setattr(atomic, "fcntl", NoFlock)
    d = tmp_path / "f"
    with FolderLock(d):
        with pytest.raises(FolderInUse, match=f"pid {os.getpid()}"):
            FolderLock(d).acquire()
    assert not (d / LOCK_NAME).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (d / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": __import__("socket").gethostname()}))
    with FolderLock(d) as lk:  # the holder is gone: taken over
        assert lk.held


_RACE = textwrap.dedent("""
    import os, sys, time
    from fastpoly.cli.main import main
    ready, go = sys.argv[1], sys.argv[2]
    open(ready, "w").close()  # imported: now both start on the same signal
    while not os.path.exists(go):
        time.sleep(0.001)
    sys.exit(main(sys.argv[3:]))
""")


@pytest.mark.slow
def test_two_processes_race_for_one_checkpoint(tmp_path):
    ck, go = tmp_path / "ck", tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACE, str(tmp_path / f"ready{i}"), str(go), "sample", "5-8-8-1",
                          "--samples", "3000",
                          "--backend", "numpy", "--batch-size", "100", "--no-progress", "--no-plot",
                          "--checkpoint", str(ck), "--checkpoint-every", "0", "--out", str(tmp_path / f"o{i}")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        for i in range(2)
    ]
    wait_for(lambda: all((tmp_path / f"ready{i}").exists() for i in range(2)), "both racers imported")
    go.write_text("go")
    res = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(rc for rc, _ in res)
    assert codes == [0, 2], res
    loser = next(err for rc, err in res if rc == 2)
    assert "Traceback" not in loser and len(loser.strip().splitlines()) == 1
    assert "in use by pid" in loser or "already holds a checkpoint" in loser
    winner = next(i for i, (rc, _) in enumerate(res) if rc == 0)
    ref = fastpoly.sample("5-8-8-1", n_samples=3000, backend="numpy", progress=False)
    assert (tmp_path / f"o{winner}" / "counts.npz").read_bytes() == ref.to_bytes()
    assert not (ck / LOCK_NAME).exists()


def test_two_runs_cannot_share_an_out_folder(tmp_path, capsys):
    out = tmp_path / "o"
    with FolderLock(out):  # another run is writing there
        assert main(["sample", ARCH, "--samples", "100", "--backend", "numpy", "--no-progress", "--no-plot",
                     "--out", str(out)]) == 2
        assert "in use by pid" in capsys.readouterr().err
    assert not (out / "counts.npz").exists()


# --- case 6: SIGTERM and SIGHUP save the checkpoint -----------------------------------------
def _run_until_checkpointed(tmp_path, sig, extra=()):
    ck, out = tmp_path / "ck", tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-m", "fastpoly", "sample", "5-8-8-1", "--samples", "400000",
                          "--backend", "numpy", "--batch-size", "64", "--no-progress", "--no-plot",
                          "--checkpoint", str(ck), "--checkpoint-every", "0", "--out", str(out), *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    wait_for(lambda: (ck / "state.json").exists(), "the first checkpoint", proc=p)
    p.send_signal(sig)
    out_s, err = p.communicate(timeout=120)
    return p.returncode, err, ck, out


@pytest.mark.slow
def test_sigterm_saves_the_checkpoint_and_resume_is_identical(tmp_path, capsys):
    rc, err, ck, out = _run_until_checkpointed(tmp_path, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM == 143, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "checkpoint saved" in err
    assert not (ck / LOCK_NAME).exists()
    assert main(["sample", "--resume", str(ck), "--backend", "numba", "--no-progress"]) == 0
    assert "resumed" in capsys.readouterr().out
    ref = fastpoly.sample("5-8-8-1", n_samples=400000, backend="numba", progress=False)
    assert (out / "counts.npz").read_bytes() == ref.to_bytes()


@pytest.mark.slow
def test_sighup_saves_the_checkpoint(tmp_path):
    rc, err, ck, _ = _run_until_checkpointed(tmp_path, signal.SIGHUP)
    assert rc == 128 + signal.SIGHUP, err
    assert "SIGHUP" in err and "checkpoint saved" in err
    assert CheckpointError  # the checkpoint opens and is incomplete
    from fastpoly.run.checkpoint import Checkpoint

    c = Checkpoint.open(ck)
    assert not c.complete and 0 < c.state["n_samples"] < 400000


# --- case 7: the smaller cases --------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck7")
    assert main(["sample", ARCH, "--samples", "300", "--seed", "5", "--backend", "numpy", "--no-progress",
                 "--no-plot", "--checkpoint", str(d / "ck"), "--out", str(d / "o")]) == 0
    return d / "ck"


@pytest.mark.parametrize(("extra", "names"), [
    (["--seed", "3"], ["--seed 5", "given: 3"]),
    (["--seed", "0"], ["--seed 5", "given: 0"]),  # the default value, given explicitly
    (["3-5-1"], ["arch 3-4-1", "given: 3-5-1"]),
    (["--samples", "400", "--activation", "tanh"], ["--samples 300", "--activation relu"]),
])
def test_resume_refuses_conflicting_options(extra, names, finished_checkpoint, capsys):
    assert main(["sample", *extra, "--resume", str(finished_checkpoint), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    for n in names:
        assert n in err


def test_resume_accepts_agreeing_options(finished_checkpoint, capsys):
    assert main(["sample", ARCH, "--seed", "5", "--samples", "3e2", "--resume", str(finished_checkpoint),
                 "--no-progress", "--no-plot"]) == 0


def test_target_of_wrong_length_names_both_forms(tmp_path, capsys):
    assert main(["sample", "7-40-1", "--train-size", "3", "--target", "01" * 63 + "0", "--samples", "10",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "0/1 string of exactly 128 characters" in err and "32 digits" in err and "127 characters" in err


def test_default_out_is_not_overwritten(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["sample", ARCH, "--samples", "100", "--backend", "numpy", "--no-progress", "--no-plot"]
    assert main(args) == 0
    first = (tmp_path / "fastpoly-out" / "counts.npz").read_bytes()
    assert main(args + ["--seed", "9"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "fastpoly-out" / "counts.npz").read_bytes() == first
    assert main(args + ["--seed", "9", "--force"]) == 0
    assert (tmp_path / "fastpoly-out" / "counts.npz").read_bytes() != first


def test_complex_inputs_are_refused():
    X = np.array([[1 + 1j, 0], [0, 1]])
    with pytest.raises(ValueError, match="complex"):
        fastpoly.sample("2-1", X, n_samples=10, backend="numpy", progress=False)
    with pytest.raises(ValueError, match="complex"):
        fastpoly.sample_keys("2-1", X, backend="numpy")
    net = fastpoly.MLP(2, ()).instantiate(0, 0)
    with pytest.raises(ValueError, match="complex"):
        fastpoly.evaluate(net, X, backend="numpy")


def test_evaluate_without_a_network_says_what_is_expected():
    with pytest.raises(ValueError, match="Network"):
        fastpoly.evaluate(None, np.zeros((2, 3)))


def test_counts_condition_rows_out_of_range():
    c = fastpoly.sample(ARCH, n_samples=100, backend="numpy", progress=False)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        c.condition([1, 999], target="01010101")
