"""The CLI contract (issues 9 and 10): every user error is one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import errno
import importlib
import sys
import tempfile
import time

import pytest

import fastpoly
from fastpoly.cli.main import main

backends_mod = importlib.import_module("fastpoly.backends")  # the attribute fastpoly.backends is a function


def one_line_error(capsys, rc, *words):
    """Check exit code 2 and a single 'fastpoly CMD: error: ...' line containing ``words``."""
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("fastpoly ") and ": error: " in lines[0], err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def counts_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("c") / "c.npz"
    fastpoly.sample("3-4-1", n_samples=300, seed=1, backend="numpy", progress=False).save(p)
    return p


def _sample(out, *extra):
    return ["sample", "3-4-1", "--samples", "200", "--backend", "numpy", "--no-progress", "--no-plot",
            "--out", str(out), *extra]


def _fail_writes_in(monkeypatch, folder, err=errno.ENOSPC, probe_ok=True):
    """Make every temporary file in ``folder`` fail like a full (or read-only) disk; probes may pass."""
    real = tempfile.mkstemp
    folder = str(folder)

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):
        if dir is not None and str(dir).rstrip("/") == folder.rstrip("/") and not (
                probe_ok and str(prefix).startswith(".tmp-probe-")):
            raise OSError(err, "No space left on device" if err == errno.ENOSPC else "Permission denied")
        return real(suffix, prefix, dir, text)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


# --- OSError family, in every command -------------------------------------------------------
def test_sample_out_is_an_existing_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    one_line_error(capsys, main(_sample(f)), "is an existing file")


def test_sample_out_not_writable(tmp_path, capsys, monkeypatch):
    d = tmp_path / "ro"
    d.mkdir()
    _fail_writes_in(monkeypatch, d, errno.EACCES, probe_ok=False)
    t = time.perf_counter()
    one_line_error(capsys, main(_sample(d, "--samples", "1e9")), "Permission denied", str(d))
    assert time.perf_counter() - t < 10  # refused before drawing 1e9 samples


def test_sample_disk_full_at_the_end_keeps_the_result(tmp_path, capsys, monkeypatch):
    d = tmp_path / "full"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    _fail_writes_in(monkeypatch, d)
    line = one_line_error(capsys, main(_sample(d)), "No space left on device", "saved to")
    rescued = line.split("saved to ")[1].split(" instead")[0]
    assert rescued.startswith(str(tmp_path / "tmp"))
    ref = fastpoly.sample("3-4-1", n_samples=200, backend="numpy", progress=False)
    assert fastpoly.FunctionCounts.load(rescued).to_bytes() == ref.to_bytes()


@pytest.mark.parametrize("cmd", ["analyze", "condition", "merge", "plot", "anchors-export"])
@pytest.mark.parametrize("what", ["missing", "folder"])
def test_unreadable_input_in_every_command(cmd, what, tmp_path, capsys):
    bad = tmp_path / "missing.npz" if what == "missing" else tmp_path
    out = str(tmp_path / "out.x")
    args = {
        "analyze": ["analyze", str(bad)],
        "condition": ["condition", str(bad), "--target", "01010101", "--train-size", "2", "--out", out],
        "merge": ["merge", str(bad), "--out", out],
        "plot": ["plot", "rank", str(bad), "--out", str(tmp_path / "r.png")],
        "anchors-export": ["anchors", "export", str(bad), "--out", out],
    }[cmd]
    one_line_error(capsys, main(args), str(bad))


def test_anchors_import_missing_file(tmp_path, capsys):
    one_line_error(capsys, main(["anchors", "import", str(tmp_path / "no.txt"), "--arch", "3-4-1",
                                 "--out", str(tmp_path / "o.npz")]), "no.txt")


@pytest.mark.parametrize("cmd", ["condition", "merge", "anchors-export", "plot", "analyze-csv"])
def test_output_is_a_folder_in_every_command(cmd, tmp_path, capsys, counts_file):
    d = tmp_path / "dir.png"
    d.mkdir()
    args = {
        "condition": ["condition", str(counts_file), "--target", "01010101", "--train-size", "2", "--out", str(d)],
        "merge": ["merge", str(counts_file), "--out", str(d)],
        "anchors-export": ["anchors", "export", str(counts_file), "--out", str(d)],
        "plot": ["plot", "rank", str(counts_file), "--out", str(d)],
        "analyze-csv": ["analyze", str(counts_file), "--csv", str(d)],
    }[cmd]
    one_line_error(capsys, main(args), "is a folder")


def test_merge_disk_full(tmp_path, capsys, monkeypatch, counts_file):
    d = tmp_path / "full"
    d.mkdir()
    _fail_writes_in(monkeypatch, d)
    one_line_error(capsys, main(["merge", str(counts_file), "--out", str(d / "m.npz")]), "disk full")
    assert list(d.iterdir()) == []


# --- the other error classes -----------------------------------------------------------------
def test_backend_unavailable(tmp_path, capsys, monkeypatch):
    real = backends_mod.availability
    monkeypatch.setattr(backends_mod, "availability",
                        lambda name: (False, "cupy is not installed") if name == "cupy" else real(name))
    one_line_error(capsys, main(_sample(tmp_path, "--backend", "cupy")), "cupy", "not available")


def test_backend_choices_are_listed(tmp_path, capsys):
    assert main(_sample(tmp_path, "--backend", "tpu")) == 2
    err = capsys.readouterr().err
    for name in ("numpy", "numba", "cupy", "auto"):
        assert name in err


@pytest.mark.parametrize("arch", ["7-1000000000-1", "7-99999999999999999999999-1"])
def test_absurd_architectures_are_refused_up_front(arch, tmp_path, capsys):
    t = time.perf_counter()
    args = ["sample", arch, "--samples", "10", "--backend", "numpy", "--no-progress", "--out", str(tmp_path)]
    one_line_error(capsys, main(args), "needs at least", "memory")
    assert time.perf_counter() - t < 10


@pytest.mark.parametrize("poly", ["x100000000*x0", "x99999999999999999*x0"])
def test_absurd_polynomials_are_refused_up_front(poly, capsys):
    t = time.perf_counter()
    one_line_error(capsys, main(["compile", poly]), "at most 4096")
    assert time.perf_counter() - t < 5


@pytest.mark.parametrize("exc", [MemoryError(), MemoryError("cannot allocate 9 TB"), OverflowError("int too large"),
                                 ImportError("no module named x; pip install y")])
def test_memory_overflow_and_import_errors_are_one_line(exc, tmp_path, capsys, monkeypatch):
    import fastpoly.cli.sample as cli_sample

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(cli_sample, "sample", boom)
    line = one_line_error(capsys, main(_sample(tmp_path)))
    assert ("out of memory" in line) if isinstance(exc, MemoryError) else (str(exc) in line)


def test_dask_missing_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    one_line_error(capsys, main(_sample(tmp_path, "--dask", "2")), "fastpoly[dask]")
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    one_line_error(capsys, main(_sample(tmp_path / "b", "--dask", "tcp://localhost:1")), "fastpoly[dask]")


def test_condition_train_rows_out_of_range(tmp_path, capsys, counts_file):
    one_line_error(capsys, main(["condition", str(counts_file), "--target", "01010101", "--train-rows", "1,999",
                                 "--out", str(tmp_path / "p.npz")]), "999", "[0, 7]")
    assert not (tmp_path / "p.npz").exists()


def test_options_checked_before_the_run(tmp_path, capsys):
    one_line_error(capsys, main(_sample(tmp_path, "--top", "-1", "--samples", "1e9")), "--top")
    assert not (tmp_path / "counts.npz").exists()
    one_line_error(capsys, main(["analyze", str(tmp_path / "x.npz"), "--top", "-1"]), "--top")


# --- result folders: every command that writes one refuses to replace an earlier result -------
_RESULT_COMMANDS = {
    "sample": lambda out: _sample(out),
    "train": lambda out: ["train", "3-4-1", "--train", "0,3,5", "--target", "01101001", "--runs", "8", "--lr", "0.1",
                          "--max-epochs", "50", "--backend", "numpy", "--no-progress", "--out", str(out)],
    "gp-sample": lambda out: ["gp", "sample", "3-4-1", "--samples", "300", "--backend", "numpy", "--out", str(out)],
}


@pytest.mark.parametrize("cmd", list(_RESULT_COMMANDS))
def test_result_folder_needs_force(cmd, tmp_path, capsys):
    out = tmp_path / "o"
    args = _RESULT_COMMANDS[cmd](out)
    assert main(args) == 0
    capsys.readouterr()
    before = (out / "counts.npz").read_bytes()
    one_line_error(capsys, main(args), "already holds", "--force")
    assert (out / "counts.npz").read_bytes() == before
    assert main([*args, "--force"]) == 0
    assert (out / "counts.npz").read_bytes() == before  # same run, same bytes
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "lock or temporary files left behind"


def test_result_folder_locked_by_a_running_command(tmp_path, capsys):
    from fastpoly.atomic import FolderLock

    out = tmp_path / "o"
    out.mkdir()
    lock = FolderLock(str(out), "output folder").acquire()
    try:
        one_line_error(capsys, main(_RESULT_COMMANDS["gp-sample"](out)), str(out))
    finally:
        lock.release()
